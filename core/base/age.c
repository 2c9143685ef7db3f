/* age.c - the age file format v1 (https://age-encryption.org/v1), so that
 * `age -d -i KEYFILE` decrypts what the engine encrypted and the engine
 * restores what age encrypted: X25519 recipient stanzas, HKDF-SHA256, the
 * header's HMAC, and ChaCha20-Poly1305 in the STREAM construction (64 KiB
 * chunks, a 11-byte big-endian counter and a last-chunk flag as nonce).
 *
 * Both directions work on pieces of any size and keep at most one chunk
 * (plus the header while it is read): bounded memory whatever the size.
 * Keys never leave this file in a message: errors name what is wrong with
 * a key, never its text. */
#include "base/base.h"

#include <ctype.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AGE_MAGIC "age-encryption.org/v1\n"
#define AGE_CHUNK 65536u
#define AGE_TAG 16u
#define AGE_HEADER_MAX 65536u

struct eng__age {
  bool encrypt;
  unsigned char pub[32], priv[32];
  EVP_CIPHER_CTX *aead;
  unsigned char counter[11];
  uint64_t chunks; /* chunks done */
  enum { AGE_HEADER, AGE_NONCE, AGE_BODY, AGE_DONE } phase;
  eng__buf in; /* bytes not processed yet, from in_pos */
  size_t in_pos;
  bool failed;
};

/* ---- bech32 (BIP 173) ------------------------------------------------------ */

static const char b32set[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t b32_polymod(const unsigned char *v, size_t n) {
  static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa,
                                  0x3d4233dd, 0x2a1462b3};
  uint32_t chk = 1;
  for (size_t i = 0; i < n; i++) {
    uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v[i];
    for (int j = 0; j < 5; j++)
      if ((top >> j) & 1) chk ^= gen[j];
  }
  return chk;
}

/* text (len n, one case) with human-readable part hrp: its 32-byte key. */
static bool b32_decode(const char *text, size_t n, const char *hrp,
                       unsigned char key[32]) {
  size_t hl = strlen(hrp);
  if (n < hl + 1 + 6 || n > 200 || text[hl] != '1') return false;
  bool lower = false, upper = false;
  unsigned char v[256];
  size_t k = 0;
  for (size_t i = 0; i < hl; i++) {
    int c = (unsigned char)text[i];
    lower |= islower(c) != 0;
    upper |= isupper(c) != 0;
    v[k++] = (unsigned char)(tolower(c) >> 5);
  }
  v[k++] = 0;
  for (size_t i = 0; i < hl; i++) v[k++] = (unsigned char)(tolower((unsigned char)text[i]) & 31);
  if (strncasecmp(text, hrp, hl) != 0) return false;
  size_t dstart = k;
  for (size_t i = hl + 1; i < n; i++) {
    int c = (unsigned char)text[i];
    lower |= islower(c) != 0;
    upper |= isupper(c) != 0;
    const char *p = strchr(b32set, tolower(c));
    if (!c || !p) return false;
    v[k++] = (unsigned char)(p - b32set);
  }
  if ((lower && upper) || b32_polymod(v, k) != 1) return false;
  /* 5-bit groups to bytes, without padding bits set */
  uint32_t acc = 0;
  int bits = 0;
  size_t out = 0;
  for (size_t i = dstart; i < k - 6; i++) {
    acc = (acc << 5) | v[i];
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      if (out == 32) return false;
      key[out++] = (unsigned char)(acc >> bits);
    }
  }
  return out == 32 && bits < 5 && !(acc & ((1u << bits) - 1));
}

/* ---- keys ------------------------------------------------------------------ */

static bool x25519(const unsigned char priv[32], const unsigned char peer[32],
                   unsigned char out[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
  EVP_PKEY_CTX *c = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
  size_t n = 32;
  bool ok = c && p && EVP_PKEY_derive_init(c) == 1 &&
            EVP_PKEY_derive_set_peer(c, p) == 1 &&
            EVP_PKEY_derive(c, out, &n) == 1 && n == 32;
  EVP_PKEY_CTX_free(c);
  EVP_PKEY_free(k);
  EVP_PKEY_free(p);
  static const unsigned char zero[32];
  return ok && CRYPTO_memcmp(out, zero, 32) != 0;
}

static bool x25519_public(const unsigned char priv[32], unsigned char pub[32]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
  size_t n = 32;
  bool ok = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32;
  EVP_PKEY_free(k);
  return ok;
}

int eng__age_key_parse(const char *text, unsigned char pub[32],
                       unsigned char priv[32], bool *has_priv) {
  const char *line = text;
  while (line && *line) {
    const char *end = line + strcspn(line, "\r\n");
    while (line < end && isspace((unsigned char)*line)) line++;
    const char *e = end;
    while (e > line && isspace((unsigned char)e[-1])) e--;
    size_t n = (size_t)(e - line);
    if (n && line[0] != '#') {
      if (b32_decode(line, n, "age-secret-key-", priv)) {
        *has_priv = true;
        return x25519_public(priv, pub) ? 0 : -1;
      }
      if (b32_decode(line, n, "age", pub)) {
        *has_priv = false;
        return 0;
      }
      return -1; /* the first key line decides */
    }
    line = *end ? end + 1 : NULL;
  }
  return -1;
}

/* ---- primitives ------------------------------------------------------------ */

static bool hkdf(const unsigned char *ikm, size_t ikm_n,
                 const unsigned char *salt, size_t salt_n, const char *info,
                 unsigned char out[32]) {
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *c = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  if (!c) return false;
  OSSL_PARAM p[5], *q = p;
  *q++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
  *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_n);
  if (salt_n)
    *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt,
                                             salt_n);
  *q++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info,
                                           strlen(info));
  *q = OSSL_PARAM_construct_end();
  bool ok = EVP_KDF_derive(c, out, 32, p) == 1;
  EVP_KDF_CTX_free(c);
  return ok;
}

/* ChaCha20-Poly1305 of n bytes in place-free form: out gets n (+ tag when
 * sealing) bytes; opening checks the tag that follows the n bytes. */
static bool aead(EVP_CIPHER_CTX *c, bool seal, const unsigned char nonce[12],
                 const unsigned char *in, size_t n, unsigned char *out) {
  int len = 0;
  if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, seal) != 1) return false;
  if (!seal &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, AGE_TAG, (void *)(in + n)) != 1)
    return false;
  if (n && EVP_CipherUpdate(c, out, &len, in, (int)n) != 1) return false;
  if (EVP_CipherFinal_ex(c, out + len, &len) != 1) return false;
  return !seal ||
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, AGE_TAG, out + n) == 1;
}

static EVP_CIPHER_CTX *aead_new(const unsigned char key[32], bool seal) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (c && EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, key, NULL,
                             seal) == 1)
    return c;
  EVP_CIPHER_CTX_free(c);
  return NULL;
}

static bool aead_once(const unsigned char key[32], bool seal,
                      const unsigned char *in, size_t n, unsigned char *out) {
  static const unsigned char zero[12];
  EVP_CIPHER_CTX *c = aead_new(key, seal);
  bool ok = c && aead(c, seal, zero, in, n, out);
  EVP_CIPHER_CTX_free(c);
  return ok;
}

/* ---- base64 without padding (the header's encoding) ------------------------ */

static const char b64set[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_add(eng__buf *b, const unsigned char *p, size_t n) {
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 8) | p[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      eng__buf_add(b, &b64set[(acc >> bits) & 63], 1);
    }
  }
  if (bits) eng__buf_add(b, &b64set[(acc << (6 - bits)) & 63], 1);
}

/* Canonical unpadded base64 of exactly want bytes. */
static bool b64_decode(const char *s, size_t n, unsigned char *out,
                       size_t want) {
  if (n != (want * 8 + 5) / 6) return false;
  uint32_t acc = 0;
  int bits = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p = s[i] ? strchr(b64set, s[i]) : NULL;
    if (!p) return false;
    acc = (acc << 6) | (uint32_t)(p - b64set);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[k++] = (unsigned char)(acc >> bits);
    }
  }
  return k == want && !(acc & ((1u << bits) - 1));
}

/* ---- the header ------------------------------------------------------------ */

/* The next line of buf[*pos..len): its start and length (without '\n');
 * false when no whole line is there yet. */
static bool next_line(const char *buf, size_t len, size_t *pos,
                      const char **line, size_t *n) {
  const char *nl = memchr(buf + *pos, '\n', len - *pos);
  if (!nl) return false;
  *line = buf + *pos;
  *n = (size_t)(nl - *line);
  *pos = (size_t)(nl - buf) + 1;
  return true;
}

/* A stanza's body: lines of 64 characters ending with a shorter one. */
static int read_body(const char *buf, size_t len, size_t *pos, const char **b,
                     size_t *bn) {
  *b = buf + *pos;
  *bn = 0;
  for (;;) {
    const char *l;
    size_t n;
    if (!next_line(buf, len, pos, &l, &n)) return 0;
    for (size_t i = 0; i < n; i++)
      if (!strchr(b64set, l[i]) || !l[i]) return -1;
    if (n > 64) return -1;
    *bn += n;
    if (n < 64) return 1;
  }
}

static int hdr_fail(char *err, size_t errlen, const char *why) {
  snprintf(err, errlen, "not a valid age file: %s", why);
  return -1;
}

long eng__age_header_parse(const char *buf, size_t len, eng__age_header *h,
                           char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  size_t m = strlen(AGE_MAGIC);
  if (memcmp(buf, AGE_MAGIC, len < m ? len : m) != 0)
    return hdr_fail(err, errlen, "no age-encryption.org/v1 header");
  if (len < m) return 0;
  size_t pos = m;
  for (;;) {
    if (pos >= AGE_HEADER_MAX) return hdr_fail(err, errlen, "header too long");
    size_t start = pos;
    const char *l;
    size_t n;
    if (!next_line(buf, len, &pos, &l, &n))
      return len > AGE_HEADER_MAX ? hdr_fail(err, errlen, "header too long") : 0;
    if (n >= 3 && !memcmp(l, "---", 3)) {
      if (n != 4 + 43 || l[3] != ' ' || !b64_decode(l + 4, 43, h->mac, 32))
        return hdr_fail(err, errlen, "malformed MAC line");
      h->mac_len = start + 3;
      return h->stanzas ? (long)pos : hdr_fail(err, errlen, "no recipient stanza");
    }
    if (n < 4 || memcmp(l, "-> ", 3) != 0 || l[3] == ' ' || l[n - 1] == ' ')
      return hdr_fail(err, errlen, "malformed stanza");
    for (size_t i = 3; i < n; i++)
      if (l[i] < 33 && l[i] != ' ') return hdr_fail(err, errlen, "malformed stanza");
    const char *b;
    size_t bn;
    int r = read_body(buf, len, &pos, &b, &bn);
    if (r <= 0) return r < 0 ? hdr_fail(err, errlen, "malformed stanza body") : 0;
    h->stanzas++;
    if (n == 3 + 6 + 1 + 43 && !memcmp(l + 3, "X25519 ", 7) &&
        h->x25519 < ENG__AGE_MAX_STANZAS) {
      unsigned char *share = h->share[h->x25519], *body = h->body[h->x25519];
      if (!b64_decode(l + 10, 43, share, 32) || !b64_decode(b, bn, body, 32))
        return hdr_fail(err, errlen, "malformed X25519 stanza");
      h->x25519++;
    }
  }
}

static bool unwrap(const eng__age *a, const eng__age_header *h,
                   unsigned char file_key[16]) {
  for (int i = 0; i < h->x25519; i++) {
    unsigned char shared[32], salt[64], wrap[32];
    if (!x25519(a->priv, h->share[i], shared)) continue;
    memcpy(salt, h->share[i], 32);
    memcpy(salt + 32, a->pub, 32);
    if (!hkdf(shared, 32, salt, 64, "age-encryption.org/v1/X25519", wrap))
      continue;
    if (aead_once(wrap, false, h->body[i], 16, file_key)) return true;
  }
  return false;
}

static bool header_mac(const unsigned char file_key[16], const char *hdr,
                       size_t n, unsigned char mac[32]) {
  unsigned char key[32];
  unsigned int len = 32;
  return hkdf(file_key, 16, NULL, 0, "header", key) &&
         HMAC(EVP_sha256(), key, 32, (const unsigned char *)hdr, n, mac, &len);
}

/* ---- streams --------------------------------------------------------------- */

eng__age *eng__age_new(const unsigned char pub[32], const unsigned char *priv) {
  eng__age *a = eng__xcalloc(1, sizeof *a);
  a->encrypt = priv == NULL;
  memcpy(a->pub, pub, 32);
  if (priv) memcpy(a->priv, priv, 32);
  return a;
}

void eng__age_free(eng__age *a) {
  if (!a) return;
  EVP_CIPHER_CTX_free(a->aead);
  OPENSSL_cleanse(a->priv, sizeof a->priv);
  eng__buf_free(&a->in);
  free(a);
}

static bool payload_key(eng__age *a, const unsigned char file_key[16],
                        const unsigned char nonce[16]) {
  unsigned char key[32];
  bool ok = hkdf(file_key, 16, nonce, 16, "payload", key);
  if (ok) a->aead = aead_new(key, a->encrypt);
  OPENSSL_cleanse(key, sizeof key);
  return ok && a->aead;
}

/* The header, the nonce and the payload key of a new file. */
static bool seal_header(eng__age *a, eng__buf *out) {
  unsigned char file_key[16], eph[32], share[32], shared[32], salt[64],
      wrap[32], body[32], mac[32], nonce[16];
  bool ok = RAND_bytes(file_key, 16) == 1 && RAND_bytes(eph, 32) == 1 &&
            RAND_bytes(nonce, 16) == 1 && x25519_public(eph, share) &&
            x25519(eph, a->pub, shared);
  memcpy(salt, share, 32);
  memcpy(salt + 32, a->pub, 32);
  ok = ok && hkdf(shared, 32, salt, 64, "age-encryption.org/v1/X25519", wrap) &&
       aead_once(wrap, true, file_key, 16, body);
  eng__buf h = {0};
  eng__buf_adds(&h, AGE_MAGIC "-> X25519 ");
  b64_add(&h, share, 32);
  eng__buf_adds(&h, "\n");
  b64_add(&h, body, 32);
  eng__buf_adds(&h, "\n---");
  ok = ok && header_mac(file_key, h.data, h.len, mac);
  eng__buf_adds(&h, " ");
  b64_add(&h, mac, 32);
  eng__buf_adds(&h, "\n");
  eng__buf_add(out, h.data, h.len);
  eng__buf_add(out, nonce, 16);
  eng__buf_free(&h);
  ok = ok && payload_key(a, file_key, nonce);
  OPENSSL_cleanse(file_key, sizeof file_key);
  OPENSSL_cleanse(eph, sizeof eph);
  OPENSSL_cleanse(shared, sizeof shared);
  return ok;
}

/* One chunk of the payload through the AEAD into out. */
static bool chunk(eng__age *a, const unsigned char *in, size_t n, bool last,
                  eng__buf *out) {
  unsigned char nonce[12];
  memcpy(nonce, a->counter, 11);
  nonce[11] = last ? 1 : 0;
  size_t room = a->encrypt ? n + AGE_TAG : n - AGE_TAG;
  if (out->cap < out->len + room + 1) {
    out->data = eng__xrealloc(out->data, out->len + room + 1);
    out->cap = out->len + room + 1;
  }
  if (!aead(a->aead, a->encrypt, nonce, in, a->encrypt ? n : n - AGE_TAG,
            (unsigned char *)out->data + out->len))
    return false;
  out->len += room;
  for (int i = 10; i >= 0 && ++a->counter[i] == 0; i--) {
  }
  a->chunks++;
  return true;
}

static int age_fail(eng__age *a, char *err, size_t errlen, const char *why) {
  a->failed = true;
  snprintf(err, errlen, "%s", why);
  return -1;
}

/* Decryption: the header, then the nonce; 0, 1 to go on, or -1. */
static int open_header(eng__age *a, char *err, size_t errlen) {
  const char *p = a->in.data + a->in_pos;
  size_t n = a->in.len - a->in_pos;
  if (a->phase == AGE_HEADER) {
    eng__age_header h;
    long used = eng__age_header_parse(p, n, &h, err, errlen);
    if (used < 0) a->failed = true;
    if (used <= 0) return used < 0 ? -1 : 0;
    unsigned char file_key[16], mac[32];
    if (!unwrap(a, &h, file_key))
      return age_fail(a, err, errlen,
                      "the key does not decrypt this age file (wrong key, or "
                      "the header was changed)");
    bool ok = header_mac(file_key, p, h.mac_len, mac) &&
              CRYPTO_memcmp(mac, h.mac, 32) == 0;
    /* the identity is not needed any more: priv holds the file key until
     * the nonce is there */
    memcpy(a->priv, file_key, 16);
    OPENSSL_cleanse(file_key, sizeof file_key);
    if (!ok)
      return age_fail(a, err, errlen,
                      "the age header's MAC does not match: the file was changed");
    a->in_pos += (size_t)used;
    a->phase = AGE_NONCE;
    return 1;
  }
  if (n < 16) return 0;
  bool ok = payload_key(a, a->priv, (const unsigned char *)p);
  OPENSSL_cleanse(a->priv, sizeof a->priv);
  if (!ok) return age_fail(a, err, errlen, "cannot derive the payload key");
  a->in_pos += 16;
  a->phase = AGE_BODY;
  return 1;
}

int eng__age_update(eng__age *a, const void *buf, size_t len, bool end,
                    eng__buf *out, char *err, size_t errlen) {
  if (a->failed || a->phase == AGE_DONE)
    return age_fail(a, err, errlen, "the age stream already ended or failed");
  if (a->encrypt && a->phase == AGE_HEADER) {
    if (!seal_header(a, out)) return age_fail(a, err, errlen, "cannot encrypt");
    a->phase = AGE_BODY;
  }
  eng__buf_add(&a->in, buf, len);
  while (!a->encrypt && a->phase != AGE_BODY) {
    int r = open_header(a, err, errlen);
    if (r < 0) return -1;
    if (r == 0) {
      if (end) return age_fail(a, err, errlen, "the age file is cut short in its header");
      return 0;
    }
  }
  size_t full = a->encrypt ? AGE_CHUNK : AGE_CHUNK + AGE_TAG;
  while (a->in.len - a->in_pos > full) {
    if (!chunk(a, (unsigned char *)a->in.data + a->in_pos, full, false, out))
      return age_fail(a, err, errlen,
                      "an age chunk does not authenticate: the file was "
                      "changed or is not complete");
    a->in_pos += full;
  }
  if (end) {
    size_t n = a->in.len - a->in_pos;
    if (!a->encrypt && (n < AGE_TAG || (n == AGE_TAG && a->chunks)))
      return age_fail(a, err, errlen, "the age file is cut short");
    if (!chunk(a, (unsigned char *)a->in.data + a->in_pos, n, true, out))
      return age_fail(a, err, errlen,
                      "the last age chunk does not authenticate: the file "
                      "was changed or is not complete");
    a->in_pos = a->in.len;
    a->phase = AGE_DONE;
  }
  if (a->in_pos > AGE_CHUNK) { /* keep the buffer at about one chunk */
    memmove(a->in.data, a->in.data + a->in_pos, a->in.len - a->in_pos);
    a->in.len -= a->in_pos;
    a->in_pos = 0;
  }
  return 0;
}
