/*
 * lcrypto.c - message authentication for webhook processors, on OpenSSL's
 * libcrypto (a well-kept library: no hash code of our own):
 *
 *   core.hmac(algorithm, key, message [, encoding]) -> string
 *       RFC 2104 HMAC of message (bytes) under key (bytes). algorithm:
 *       "sha1", "sha256", "sha384" or "sha512"; encoding: "hex" (the
 *       default: lower-case hex, as GitHub's X-Hub-Signature-256 and
 *       Python's hexdigest()), "base64" (RFC 4648 with padding, no line
 *       breaks: Shopify, Twilio, ...) or "raw" (the digest's bytes).
 *       Follows Python's hmac.new(key, msg, hashlib.sha256).hexdigest().
 *   core.secure_compare(a, b) -> boolean
 *       a == b for two strings, in a time that depends only on their
 *       length (CRYPTO_memcmp), as Python's hmac.compare_digest; false
 *       when the lengths differ (the length is not secret: a signature's
 *       length is public) or when either is not a string.
 *
 * Errors (API misuse, raised where the caller called): an algorithm or
 * encoding this does not know, a key, message or algorithm that is not a
 * string. The messages never hold the key or the message, and quote a
 * bad algorithm or encoding name only when it is a short word.
 *
 * Only HMAC(), EVP_sha*(), EVP_EncodeBlock() and CRYPTO_memcmp(), which
 * OpenSSL 1.1 and 3.x both have (and do not deprecate): inside nginx the
 * module may run against the OpenSSL the server itself loaded.
 */
#include "lbind.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Raise "ocean.<fn>: <message>" at the caller's line (level 1: the code
 * that called the C function, as luaL_argerror). */
static int crypto_error(lua_State *L, const char *fn, const char *msg)
{
  luaL_where(L, 1);
  lua_pushfstring(L, "ocean.%s: %s", fn, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* The string argument arg (named what), strictly a string: a number is
 * not turned into one (a key given as a number is a mistake). */
static const char *check_str(lua_State *L, int arg, const char *what,
                             size_t *len)
{
  if (lua_type(L, arg) != LUA_TSTRING) {
    lua_pushfstring(L, "the %s (argument %d) must be a string, got %s",
                    what, arg, luaL_typename(L, arg));
    crypto_error(L, "hmac", lua_tostring(L, -1));
  }
  return lua_tolstring(L, arg, len);
}

/* Whether a bad algorithm or encoding name may be quoted in an error: a
 * short word only. A key passed in the wrong place (hmac(key, msg,
 * "sha256")) must not end up in a log. */
static int quotable(const char *s, size_t len)
{
  size_t i;
  if (len == 0 || len > 10)
    return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return 0;
  }
  return 1;
}

static const EVP_MD *digest_of(const char *name)
{
  if (strcmp(name, "sha256") == 0) return EVP_sha256();
  if (strcmp(name, "sha1") == 0) return EVP_sha1();
  if (strcmp(name, "sha512") == 0) return EVP_sha512();
  if (strcmp(name, "sha384") == 0) return EVP_sha384();
  return NULL;
}

static int lhmac(lua_State *L)
{
  static const char hexdig[] = "0123456789abcdef";
  size_t alen, klen, mlen, i;
  const char *alg = check_str(L, 1, "algorithm", &alen);
  const char *key = check_str(L, 2, "key", &klen);
  const char *msg = check_str(L, 3, "message", &mlen);
  const char *enc = "hex";
  const EVP_MD *md;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;

  if (!lua_isnoneornil(L, 4)) {
    if (lua_type(L, 4) != LUA_TSTRING) {
      lua_pushfstring(L, "the encoding (argument 4) must be \"hex\", \"base64\" "
                      "or \"raw\", got %s", luaL_typename(L, 4));
      return crypto_error(L, "hmac", lua_tostring(L, -1));
    }
    size_t elen;
    enc = lua_tolstring(L, 4, &elen);
    if (strlen(enc) != elen || (strcmp(enc, "hex") != 0 && strcmp(enc, "base64") != 0
        && strcmp(enc, "raw") != 0)) {
      lua_pushfstring(L, "unknown encoding %s%s%s (argument 4): use \"hex\", "
                      "\"base64\" or \"raw\"", quotable(enc, elen) ? "'" : "",
                      quotable(enc, elen) ? enc : "(not shown)",
                      quotable(enc, elen) ? "'" : "");
      return crypto_error(L, "hmac", lua_tostring(L, -1));
    }
  }
  md = strlen(alg) == alen ? digest_of(alg) : NULL;
  if (md == NULL) {
    int q = quotable(alg, alen);
    lua_pushfstring(L, "unknown algorithm %s%s%s (argument 1): use \"sha256\", "
                    "\"sha1\", \"sha384\" or \"sha512\" (lower case)",
                    q ? "'" : "", q ? alg : "(not shown: a key in the wrong place?)",
                    q ? "'" : "");
    return crypto_error(L, "hmac", lua_tostring(L, -1));
  }
  if (klen > INT_MAX)
    return crypto_error(L, "hmac", "the key (argument 2) is longer than 2 GiB");
  if (HMAC(md, key, (int)klen, (const unsigned char *)msg, mlen, mac, &n)
      == NULL)
    return crypto_error(L, "hmac", "OpenSSL's HMAC failed");

  if (enc[0] == 'r') {
    lua_pushlstring(L, (const char *)mac, n);
  } else if (enc[0] == 'h') {
    char hex[EVP_MAX_MD_SIZE * 2];
    for (i = 0; i < n; i++) {
      hex[2 * i] = hexdig[mac[i] >> 4];
      hex[2 * i + 1] = hexdig[mac[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * (size_t)n);
  } else {
    /* 4 characters per 3 bytes, and the NUL EVP_EncodeBlock writes */
    unsigned char b64[(EVP_MAX_MD_SIZE + 2) / 3 * 4 + 1];
    int len = EVP_EncodeBlock(b64, mac, (int)n);
    lua_pushlstring(L, (const char *)b64, (size_t)len);
  }
  return 1;
}

static int lsecure_compare(lua_State *L)
{
  size_t alen, blen;
  const char *a, *b;
  if (lua_type(L, 1) != LUA_TSTRING || lua_type(L, 2) != LUA_TSTRING) {
    lua_pushboolean(L, 0);
    return 1;
  }
  a = lua_tolstring(L, 1, &alen);
  b = lua_tolstring(L, 2, &blen);
  lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
  return 1;
}

static const luaL_Reg crypto_funcs[] = {
  {"hmac", lhmac},
  {"secure_compare", lsecure_compare},
  {NULL, NULL}
};

void oc_open_crypto(lua_State *L)
{
  luaL_setfuncs(L, crypto_funcs, 0);
}
