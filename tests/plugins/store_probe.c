/* store_probe: one operation on a plugin's state store (ABI 1.3), for the
 * functional tests.
 *
 *   store_probe [PLUGIN.so] URL put KEY FILE [COND]   new ETag on stdout
 *   store_probe [PLUGIN.so] URL get KEY               bytes on stdout,
 *                                                     "etag: ETAG" on stderr
 *   store_probe [PLUGIN.so] URL del KEY [COND]
 *   store_probe [PLUGIN.so] URL list PREFIX           "KEY SIZE" lines
 *
 * PLUGIN.so defaults to the s3 plugin of this build tree. The store is the
 * one whose scheme is URL's. Exit status 0, or -rc for an eng_err (its name
 * and the message on stderr), or 64 for a usage error. FILE "-" is stdin. */
#include <engine/plugin.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
  fprintf(stderr,
          "usage: store_probe [PLUGIN.so] URL put KEY FILE [COND] | get KEY "
          "| del KEY [COND] | list PREFIX\n");
  exit(64);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    perror(path);
    exit(64);
  }
  size_t cap = 4096, n = 0;
  char *d = malloc(cap);
  size_t k;
  while (d && (k = fread(d + n, 1, cap - n, f)) > 0) {
    n += k;
    if (n == cap) d = realloc(d, cap *= 2);
  }
  if (!d) abort();
  if (f != stdin) fclose(f);
  *len = n;
  return d;
}

static void print_key(void *ud, const char *key, int64_t size) {
  (void)ud;
  printf("%s %" PRId64 "\n", key, size);
}

static int plugin_arg(const char *s) {
  size_t n = strlen(s);
  return n > 3 && !strcmp(s + n - 3, ".so");
}

int main(int argc, char **argv) {
  char defpath[4096];
  int a = 1;
  const char *so;
  if (argc > 1 && plugin_arg(argv[1])) {
    so = argv[a++];
  } else { /* BUILD/tests/plugins/store_probe -> BUILD/plugins/s3/s3.so */
    const char *slash = strrchr(argv[0], '/');
    int dl = slash ? (int)(slash - argv[0]) : 1;
    snprintf(defpath, sizeof defpath, "%.*s/../../plugins/s3/s3.so", dl,
             slash ? argv[0] : ".");
    so = defpath;
  }
  if (argc - a < 3) usage();
  const char *url = argv[a], *op = argv[a + 1], *key = argv[a + 2];
  const char *arg4 = argc - a > 3 ? argv[a + 3] : NULL;
  const char *arg5 = argc - a > 4 ? argv[a + 4] : NULL;

  void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "store_probe: %s\n", dlerror());
    return 64;
  }
  eng_plugin_entry_fn entry;
  *(void **)&entry = dlsym(h, ENG_PLUGIN_ENTRY_SYMBOL);
  const eng_plugin *p = entry ? entry() : NULL;
  if (!p || p->abi_major != ENG_ABI_MAJOR || p->abi_minor < 3 ||
      p->size < offsetof(eng_plugin, n_stores) + sizeof p->n_stores) {
    fprintf(stderr, "store_probe: %s is not an ABI 1.3 plugin\n", so);
    return 64;
  }
  const char *sep = strstr(url, "://");
  const eng_store_scheme *st = NULL;
  for (size_t i = 0; sep && i < p->n_stores; i++)
    if (strlen(p->stores[i].scheme) == (size_t)(sep - url) &&
        !strncmp(p->stores[i].scheme, url, (size_t)(sep - url)))
      st = &p->stores[i];
  if (!st) {
    fprintf(stderr, "store_probe: plugin %s serves no store for %s\n",
            p->name, url);
    return 64;
  }

  char err[2048] = "";
  char etag[ENG_ETAG_MAX] = "";
  void *store = NULL;
  int rc = st->open(url, &store, err, sizeof err);
  if (rc == ENG_OK) {
    if (!strcmp(op, "put")) {
      if (!arg4) usage();
      size_t len;
      char *data = slurp(arg4, &len);
      rc = st->put(store, key, data, len, arg5, etag, err, sizeof err);
      if (rc == ENG_OK) printf("%s\n", etag);
      free(data);
    } else if (!strcmp(op, "get")) {
      char *data = NULL;
      size_t len = 0;
      rc = st->get(store, key, &data, &len, etag, err, sizeof err);
      if (rc == ENG_OK) {
        if (data[len] != '\0') {
          fprintf(stderr, "store_probe: data not NUL-terminated\n");
          rc = ENG_ERR_PROTOCOL;
        }
        fwrite(data, 1, len, stdout);
        fprintf(stderr, "etag: %s\n", etag);
      }
      free(data);
    } else if (!strcmp(op, "del")) {
      rc = st->del(store, key, arg4, err, sizeof err);
    } else if (!strcmp(op, "list")) {
      rc = st->list(store, key, print_key, NULL, err, sizeof err);
    } else {
      usage();
    }
    st->close(store);
  }
  fflush(stdout);
  if (rc != ENG_OK) {
    fprintf(stderr, "%s: %s\n", eng_err_name(rc), err);
    return -rc;
  }
  return 0;
}
