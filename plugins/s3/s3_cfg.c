/*
 * s3_cfg.c - where to talk to and as whom, plus the plugin's small helpers.
 *
 * Precedence, as the AWS CLI has it: action parameters, then the
 * environment (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_REGION,
 * AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN), then the profile (AWS_PROFILE, default "default") of
 * the shared files (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
 * AWS_CONFIG_FILE or ~/.aws/config). Custom endpoints use path-style
 * addressing (http://host:port/bucket/key); AWS's own uses virtual-host
 * style (https://bucket.s3.REGION.amazonaws.com/key) unless the bucket name
 * has a dot (TLS certificates would not match). The shared files are small
 * local files read once per call.
 */
#include "s3_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

/* The host's services, set by the plugin's init(). */
const eng_host *s3_host;

/* ---- memory and buffers ------------------------------------------------- */

void *s3_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

void *s3_xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

char *s3_xstrdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = s3_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

char *s3_asprintf(const char *fmt, ...) {
  s3_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return s3_xstrdup("");
  if ((size_t)n < sizeof tmp) return s3_xstrdup(tmp);
  b.data = s3_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(b.data, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return b.data;
}

void s3_buf_add(s3_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) abort();
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void s3_buf_adds(s3_buf *b, const char *s) { s3_buf_add(b, s, strlen(s)); }

void s3_buf_addf(s3_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  char *t = s3_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(t, (size_t)n + 1, fmt, ap);
  va_end(ap);
  s3_buf_add(b, t, (size_t)n);
  free(t);
}

void s3_buf_free(s3_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- encodings, hashes, time ----------------------------------------------- */

char *s3_uri_encode(const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = s3_xmalloc(n * 3 + 1), *p = o;
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
        (keep_slash && *c == '/')) {
      *p++ = (char)*c;
    } else {
      *p++ = '%';
      *p++ = hex[*c >> 4];
      *p++ = hex[*c & 15];
    }
  }
  *p = '\0';
  return o;
}

char *s3_upload_query(const char *upload_id) {
  char *uid = s3_uri_encode(upload_id, 0);
  char *q = s3_asprintf("uploadId=%s", uid);
  free(uid);
  return q;
}

void s3_hex(const unsigned char *d, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}

void s3_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
  s3_hex(md, 32, out);
}

void s3_hex_to_b64(const char hex[65], char out[45]) {
  unsigned char md[32];
  for (int i = 0; i < 32; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
    md[i] = (unsigned char)strtoul(b, NULL, 16);
  }
  EVP_EncodeBlock((unsigned char *)out, md, 32); /* 44 characters + NUL */
}

int s3_is_sha256(const char *s) {
  if (!s) return 0;
  size_t i = 0;
  for (; s[i]; i++)
    if (!isxdigit((unsigned char)s[i])) return 0;
  return i == 64;
}

int64_t s3_parse_time(const char *s) {
  if (!s || !*s) return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!e) {
    memset(&tm, 0, sizeof tm);
    e = strptime(s, "%a, %d %b %Y %H:%M:%S", &tm);
  }
  if (!e) return -1;
  return (int64_t)timegm(&tm);
}

void s3_format_time(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- s3:// URLs ---------------------------------------------------------------- */

int s3_url_parse(const char *url, char **bucket, char **key,
                 int allow_empty_key, char *err, size_t errlen) {
  *bucket = *key = NULL;
  if (!url || strncmp(url, "s3://", 5) != 0) {
    snprintf(err, errlen, "'%s' is not an s3:// URL (s3://BUCKET/KEY)",
             url ? url : "");
    return ENG_ERR_INVALID;
  }
  const char *b = url + 5;
  const char *slash = strchr(b, '/');
  size_t blen = slash ? (size_t)(slash - b) : strlen(b);
  if (blen == 0) {
    snprintf(err, errlen, "'%s' names no bucket (s3://BUCKET/KEY)", url);
    return ENG_ERR_INVALID;
  }
  for (size_t i = 0; i < blen; i++) {
    unsigned char c = (unsigned char)b[i];
    if (!(islower(c) || isdigit(c) || c == '-' || c == '.' || c == '_' ||
          isupper(c))) {
      snprintf(err, errlen, "'%s': invalid bucket name", url);
      return ENG_ERR_INVALID;
    }
  }
  const char *k = slash ? slash + 1 : "";
  if (!*k && !allow_empty_key) {
    snprintf(err, errlen, "'%s' names no object key (s3://BUCKET/KEY)", url);
    return ENG_ERR_INVALID;
  }
  *bucket = s3_xmalloc(blen + 1);
  memcpy(*bucket, b, blen);
  (*bucket)[blen] = '\0';
  *key = s3_xstrdup(k);
  return ENG_OK;
}

/* ---- the shared files ------------------------------------------------------------ */

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

/* Value of `key` in section [section] (or [profile section] when
 * alt_prefix) of an INI file; NULL when absent. Caller frees. */
static char *ini_get(const char *path, const char *section, int profile_prefix,
                     const char *key) {
  FILE *f = path ? fopen(path, "r") : NULL;
  if (!f) return NULL;
  char line[1024], *val = NULL;
  int in = 0;
  while (fgets(line, sizeof line, f)) {
    char *s = trim(line);
    if (*s == '#' || *s == ';' || !*s) continue;
    if (*s == '[') {
      char *e = strchr(s, ']');
      if (!e) continue;
      *e = '\0';
      char *name = trim(s + 1);
      if (profile_prefix && strncmp(name, "profile ", 8) == 0)
        name = trim(name + 8);
      in = strcmp(name, section) == 0;
      continue;
    }
    if (!in) continue;
    char *eq = strchr(s, '=');
    if (!eq) continue;
    *eq = '\0';
    if (strcmp(trim(s), key) == 0) {
      free(val);
      val = s3_xstrdup(trim(eq + 1));
    }
  }
  fclose(f);
  return val;
}

static char *home_file(const char *env, const char *name) {
  const char *p = getenv(env);
  if (p && *p) return s3_xstrdup(p);
  const char *home = getenv("HOME");
  if (!home || !*home) return NULL;
  return s3_asprintf("%s/.aws/%s", home, name);
}

static char *env_dup(const char *name) {
  const char *v = getenv(name);
  return v && *v ? s3_xstrdup(v) : NULL;
}

static const char *param_str(const json_t *params, const char *name) {
  const char *v = params ? json_string_value(json_object_get(params, name))
                         : NULL;
  return v && *v ? v : NULL;
}

int s3_cfg_load(eng_call *call, const json_t *params, s3_cfg *cfg,
                char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  const char *profile = getenv("AWS_PROFILE");
  if (!profile || !*profile) profile = "default";
  char *cred_file = home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
  char *conf_file = home_file("AWS_CONFIG_FILE", "config");

  /* endpoint */
  const char *ep = param_str(params, "endpoint");
  char *epv = ep ? s3_xstrdup(ep) : env_dup("AWS_ENDPOINT_URL_S3");
  if (!epv) epv = env_dup("AWS_ENDPOINT_URL");
  if (!epv) epv = ini_get(conf_file, profile, 1, "endpoint_url");

  /* region */
  const char *rg = param_str(params, "region");
  cfg->region = rg ? s3_xstrdup(rg) : env_dup("AWS_REGION");
  if (!cfg->region) cfg->region = env_dup("AWS_DEFAULT_REGION");
  if (!cfg->region) cfg->region = ini_get(conf_file, profile, 1, "region");
  if (!cfg->region) cfg->region = s3_xstrdup("us-east-1");

  if (epv) {
    size_t n = strlen(epv);
    while (n > 0 && epv[n - 1] == '/') epv[--n] = '\0';
    if (!strstr(epv, "://")) {
      cfg->endpoint = s3_asprintf("https://%s", epv);
      free(epv);
    } else {
      cfg->endpoint = epv;
    }
    cfg->path_style = 1;
  } else {
    cfg->endpoint = s3_asprintf("https://s3.%s.amazonaws.com", cfg->region);
    cfg->aws = 1;
  }

  /* credentials: the variables as a pair, else the profile */
  char *akid = env_dup("AWS_ACCESS_KEY_ID");
  char *secret = env_dup("AWS_SECRET_ACCESS_KEY");
  char *token = NULL;
  if (akid && secret) {
    token = env_dup("AWS_SESSION_TOKEN");
  } else {
    free(akid);
    free(secret);
    akid = ini_get(cred_file, profile, 0, "aws_access_key_id");
    secret = ini_get(cred_file, profile, 0, "aws_secret_access_key");
    token = ini_get(cred_file, profile, 0, "aws_session_token");
    if (!akid || !secret) {
      free(akid);
      free(secret);
      free(token);
      akid = ini_get(conf_file, profile, 1, "aws_access_key_id");
      secret = ini_get(conf_file, profile, 1, "aws_secret_access_key");
      token = ini_get(conf_file, profile, 1, "aws_session_token");
    }
  }
  free(cred_file);
  free(conf_file);
  if (!akid || !secret) {
    free(akid);
    free(secret);
    free(token);
    snprintf(err, errlen,
             "no AWS credentials: set AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in "
             "~/.aws/credentials (profile '%s' has none)",
             profile);
    s3_cfg_free(cfg);
    return ENG_ERR_AUTH;
  }
  cfg->akid = akid;
  cfg->secret = secret;
  cfg->token = token;
  cfg->ca_bundle = env_dup("AWS_CA_BUNDLE");
  if (call) {
    s3_host->secret(call, cfg->secret);
    if (cfg->token) s3_host->secret(call, cfg->token);
  }
  return ENG_OK;
}

void s3_cfg_copy(s3_cfg *dst, const s3_cfg *src) {
  dst->endpoint = s3_xstrdup(src->endpoint);
  dst->path_style = src->path_style;
  dst->aws = src->aws;
  dst->region = s3_xstrdup(src->region);
  dst->akid = s3_xstrdup(src->akid);
  dst->secret = s3_xstrdup(src->secret);
  dst->token = s3_xstrdup(src->token);
  dst->ca_bundle = s3_xstrdup(src->ca_bundle);
}

void s3_cfg_free(s3_cfg *cfg) {
  free(cfg->endpoint);
  free(cfg->region);
  free(cfg->akid);
  if (cfg->secret) {
    memset(cfg->secret, 0, strlen(cfg->secret));
    free(cfg->secret);
  }
  free(cfg->token);
  free(cfg->ca_bundle);
  memset(cfg, 0, sizeof *cfg);
}
