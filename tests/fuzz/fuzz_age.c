/* libFuzzer: the age header parser and the decryptor (base/age.c) on
 * bytes they do not control, as a restore meets a changed or foreign file.
 * Checks what must hold for any input: a header's length is within the
 * input and no shorter input holds a header; decrypting the input whole or
 * in two pieces (split where its first byte says) gives the same answer
 * and the same bytes; a changed file never decrypts with the test key
 * unless it was left valid. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static const char identity[] =
    "AGE-SECRET-KEY-1TTGVFXPRD3ESWZFEH7SC8T2CDMYR69A6L3XE9D5CZJNSUVSRAK8SE780RL";

static int decrypt(const unsigned char *data, size_t size, size_t split,
                   eng__buf *out) {
  unsigned char pub[32], priv[32];
  bool has = false;
  if (eng__age_key_parse(identity, pub, priv, &has) != 0 || !has) abort();
  eng__age *a = eng__age_new(pub, priv);
  char err[200];
  int rc = eng__age_update(a, data, split, false, out, err, sizeof err);
  if (!rc) rc = eng__age_update(a, data + split, size - split, true, out, err, sizeof err);
  if (rc && !err[0]) abort(); /* a failure always says why */
  eng__age_free(a);
  return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  eng__age_header h;
  char err[200];
  long n = eng__age_header_parse((const char *)data, size, &h, err, sizeof err);
  if (n > (long)size || h.x25519 > h.stanzas || h.x25519 > ENG__AGE_MAX_STANZAS) abort();
  if (n > 0) {
    if (h.mac_len >= (size_t)n || !h.stanzas) abort();
    eng__age_header h2;
    if (eng__age_header_parse((const char *)data, (size_t)n - 1, &h2, err, sizeof err) != 0)
      abort(); /* a prefix of a header is not a header yet */
  }
  eng__buf whole = {0}, parts = {0};
  size_t split = size ? data[0] % (size + 1) : 0;
  int r1 = decrypt(data, size, size, &whole);
  int r2 = decrypt(data, size, split, &parts);
  if (r1 != r2 || (!r1 && (whole.len != parts.len ||
                           memcmp(whole.data, parts.data, whole.len))))
    abort();
  eng__buf_free(&whole);
  eng__buf_free(&parts);
  return 0;
}
