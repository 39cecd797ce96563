/*
 * buf.c - growable byte buffer, JSON string escaping and a 64-bit hash.
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void oc_buf_init(oc_buf_t *b)
{
  b->p = NULL;
  b->n = b->cap = 0;
  b->oom = 0;
}

void oc_buf_free(oc_buf_t *b)
{
  free(b->p);
  oc_buf_init(b);
}

void oc_buf_reset(oc_buf_t *b)
{
  b->n = 0;
  b->oom = 0;
}

/* Make room for `extra` more bytes plus a NUL; 0 on success. */
int oc_buf_reserve(oc_buf_t *b, size_t extra)
{
  size_t need, cap;
  char *p;
  if (b->oom)
    return -1;
  need = b->n + extra + 1;
  if (need <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap *= 2;
  p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void oc_buf_add(oc_buf_t *b, const void *p, size_t n)
{
  if (n == 0 || oc_buf_reserve(b, n))
    return;
  memcpy(b->p + b->n, p, n);
  b->n += n;
}

void oc_buf_adds(oc_buf_t *b, const char *s)
{
  oc_buf_add(b, s, strlen(s));
}

void oc_buf_addc(oc_buf_t *b, char c)
{
  if (oc_buf_reserve(b, 1))
    return;
  b->p[b->n++] = c;
}

void oc_buf_printf(oc_buf_t *b, const char *fmt, ...)
{
  va_list ap;
  int len;
  va_start(ap, fmt);
  len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (len < 0 || oc_buf_reserve(b, (size_t)len))
    return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)len;
}

const char *oc_buf_cstr(oc_buf_t *b)
{
  if (b->oom || oc_buf_reserve(b, 0))
    return "";
  b->p[b->n] = '\0';
  return b->p;
}

char *oc_buf_steal(oc_buf_t *b, size_t *len)
{
  char *p;
  oc_buf_cstr(b);
  p = b->oom ? NULL : b->p;
  if (len)
    *len = p ? b->n : 0;
  if (!p)
    free(b->p);
  oc_buf_init(b);
  return p;
}

void oc_buf_add_json_string(oc_buf_t *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789abcdef";
  size_t i, run = 0;
  oc_buf_addc(b, '"');
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    oc_buf_add(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default:
      memcpy(u, "\\u00", 4);
      u[4] = hex[c >> 4];
      u[5] = hex[c & 15];
      u[6] = '\0';
      esc = u;
    }
    oc_buf_adds(b, esc);
  }
  oc_buf_add(b, s + run, n - run);
  oc_buf_addc(b, '"');
}

static uint64_t mix64(uint64_t x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/* Word-at-a-time multiply/xor hash with a murmur3 finaliser. */
uint64_t oc_hash64(const void *data, size_t n, uint64_t seed)
{
  const unsigned char *p = data;
  uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL), w;
  while (n >= 8) {
    memcpy(&w, p, 8);
    h = (h ^ mix64(w)) * 0x9e3779b97f4a7c15ULL;
    h = (h << 31) | (h >> 33);
    p += 8;
    n -= 8;
  }
  w = 0;
  memcpy(&w, p, n);
  h ^= mix64(w ^ ((uint64_t)n << 56));
  return mix64(h);
}
