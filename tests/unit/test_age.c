/* Unit tests for core/base/age.c: keys as age-keygen writes them, a file
 * the age tool (1.1) encrypted, round trips across chunk boundaries in
 * pieces of any size, and what must fail: a changed byte, a wrong key, a
 * file cut short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* age-keygen's output */
static const char key_file[] =
    "# created: 2026-12-07T12:23:37Z\n"
    "# public key: age1fp4j8dag99rkw43s7lch6rfsmaxhna995yaukte0w5v5wtdy6pdqxjcl0f\n"
    "AGE-SECRET-KEY-1TTGVFXPRD3ESWZFEH7SC8T2CDMYR69A6L3XE9D5CZJNSUVSRAK8SE780RL\n";
static const char recipient[] =
    "age1fp4j8dag99rkw43s7lch6rfsmaxhna995yaukte0w5v5wtdy6pdqxjcl0f";
static const char other_key[] =
    "AGE-SECRET-KEY-10DFGDWQCDJ8S7G6XEUGHVHDCZKHYS9U2FWJQAD9SZ57VKVW82M4S82ZKAG";

/* printf 'hello from age 1.1\n' | age -r RECIPIENT */
static const char age_header[] =
    "age-encryption.org/v1\n"
    "-> X25519 JFG/TbIUIjyI5FclHWyzaWAReQCJYDYWT5HvXHe+M08\n"
    "vfMVvu6TqfLxtpWcFijJMHZkvGguES/FT8Zpllh5qwk\n"
    "--- YdSiHq2rwHivLo7eSg+Gok0sc1YoMj4oIpVQzTftmQo\n";
static const char age_payload_hex[] =
    "8c1aba368e0608cf9cc483a4e28a515b61efb032eb3d94dd5396124fb020a3292f6964c9"
    "fa5a57f2cdbb1b768edd0ded8f0cf7";

static eng__buf age_file(void) {
  eng__buf b = {0};
  eng__buf_adds(&b, age_header);
  for (size_t i = 0; age_payload_hex[i]; i += 2) {
    unsigned v;
    sscanf(age_payload_hex + i, "%2x", &v);
    unsigned char c = (unsigned char)v;
    eng__buf_add(&b, &c, 1);
  }
  return b;
}

/* Run data through a, in pieces of step bytes; 0 or -1. */
static int run(eng__age *a, const char *data, size_t n, size_t step,
               eng__buf *out) {
  char err[200];
  for (size_t off = 0; off < n; off += step) {
    size_t k = n - off < step ? n - off : step;
    if (eng__age_update(a, data + off, k, false, out, err, sizeof err)) {
      eng__age_free(a);
      return -1;
    }
  }
  int rc = eng__age_update(a, NULL, 0, true, out, err, sizeof err);
  eng__age_free(a);
  return rc;
}

static eng__age *decryptor(const char *key) {
  unsigned char pub[32], priv[32];
  bool has = false;
  if (eng__age_key_parse(key, pub, priv, &has) || !has) return NULL;
  return eng__age_new(pub, priv);
}

static void test_keys(void **state) {
  (void)state;
  unsigned char pub[32], priv[32], pub2[32], priv2[32];
  bool has = false;
  assert_int_equal(eng__age_key_parse(key_file, pub, priv, &has), 0);
  assert_true(has);
  assert_int_equal(eng__age_key_parse(recipient, pub2, priv2, &has), 0);
  assert_false(has);
  assert_memory_equal(pub, pub2, 32); /* the identity's public key */
  /* one changed character breaks the checksum */
  char bad[sizeof recipient];
  memcpy(bad, recipient, sizeof recipient);
  bad[10] = bad[10] == 'q' ? 'p' : 'q';
  assert_int_equal(eng__age_key_parse(bad, pub, priv, &has), -1);
  assert_int_equal(eng__age_key_parse("# only a comment\n", pub, priv, &has), -1);
  assert_int_equal(eng__age_key_parse("", pub, priv, &has), -1);
}

static void test_decrypts_age_tool(void **state) {
  (void)state;
  eng__buf f = age_file(), out = {0};
  for (size_t step = 1; step <= f.len; step += 37) {
    out.len = 0;
    assert_int_equal(run(decryptor(key_file), f.data, f.len, step, &out), 0);
    assert_int_equal(out.len, 19);
    assert_memory_equal(out.data, "hello from age 1.1\n", 19);
  }
  /* every single changed byte fails */
  for (size_t i = 0; i < f.len; i++) {
    f.data[i] ^= 0x01;
    out.len = 0;
    assert_int_equal(run(decryptor(key_file), f.data, f.len, 4096, &out), -1);
    f.data[i] ^= 0x01;
  }
  /* a wrong key, a cut file */
  assert_int_equal(run(decryptor(other_key), f.data, f.len, 4096, &out), -1);
  assert_int_equal(run(decryptor(key_file), f.data, f.len - 1, 4096, &out), -1);
  assert_int_equal(run(decryptor(key_file), f.data, 100, 4096, &out), -1);
  eng__buf_free(&f);
  eng__buf_free(&out);
}

static void test_round_trip(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072, 300001};
  unsigned char pub[32], priv[32];
  bool has;
  assert_int_equal(eng__age_key_parse(recipient, pub, priv, &has), 0);
  char *plain = malloc(300001);
  for (size_t i = 0; i < 300001; i++) plain[i] = (char)(i * 7 + i / 251);
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    eng__buf enc = {0}, dec = {0};
    assert_int_equal(run(eng__age_new(pub, NULL), plain, sizes[s], 10007, &enc), 0);
    /* 16 bytes of tag per 64 KiB chunk, the last one even when empty */
    size_t chunks = sizes[s] ? (sizes[s] + 65535) / 65536 : 1;
    eng__age_header h;
    char err[100];
    long hl = eng__age_header_parse(enc.data, enc.len, &h, err, sizeof err);
    assert_true(hl > 0);
    assert_int_equal(h.x25519, 1);
    assert_int_equal(enc.len, (size_t)hl + 16 + sizes[s] + 16 * chunks);
    assert_int_equal(run(decryptor(key_file), enc.data, enc.len, 65552, &dec), 0);
    assert_int_equal(dec.len, sizes[s]);
    if (sizes[s]) assert_memory_equal(dec.data, plain, sizes[s]);
    /* a chunk dropped from the middle, or the last chunk, fails */
    if (chunks > 2) {
      dec.len = 0;
      assert_int_equal(run(decryptor(key_file), enc.data, enc.len - 65552, 65552,
                           &dec), -1);
    }
    eng__buf_free(&enc);
    eng__buf_free(&dec);
  }
  free(plain);
}

static void test_header_parse(void **state) {
  (void)state;
  eng__age_header h;
  char err[100];
  size_t n = strlen(age_header);
  assert_int_equal(eng__age_header_parse(age_header, n, &h, err, sizeof err), (long)n);
  assert_int_equal(h.stanzas, 1);
  assert_int_equal(eng__age_header_parse(age_header, n - 1, &h, err, sizeof err), 0);
  assert_int_equal(eng__age_header_parse("PGDMP", 5, &h, err, sizeof err), -1);
  assert_non_null(strstr(err, "not a valid age file"));
  /* an unknown stanza is read past; a file without any is refused */
  const char *grease = "age-encryption.org/v1\n-> x-grease a b\nAAAA\n"
                       "--- YdSiHq2rwHivLo7eSg+Gok0sc1YoMj4oIpVQzTftmQo\n";
  assert_int_equal(eng__age_header_parse(grease, strlen(grease), &h, err, sizeof err),
                   (long)strlen(grease));
  assert_int_equal(h.x25519, 0);
  const char *none = "age-encryption.org/v1\n"
                     "--- YdSiHq2rwHivLo7eSg+Gok0sc1YoMj4oIpVQzTftmQo\n";
  assert_int_equal(eng__age_header_parse(none, strlen(none), &h, err, sizeof err), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_decrypts_age_tool),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_header_parse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
