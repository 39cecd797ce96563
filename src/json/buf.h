/*
 * buf.h - a growable byte buffer, the engine's one string builder.
 *
 * A buffer owns its bytes (p, NUL-terminated when n > 0 after oc_buf_cstr).
 * Allocation failure is sticky: the buffer sets `oom` and ignores further
 * appends, so callers check once at the end instead of after every append.
 */
#ifndef OC_BUF_H
#define OC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct oc_buf {
  char *p;
  size_t n, cap;
  int oom;
} oc_buf_t;

#define OC_BUF_INIT { NULL, 0, 0, 0 }

void oc_buf_init(oc_buf_t *b);
void oc_buf_free(oc_buf_t *b);
void oc_buf_reset(oc_buf_t *b);
int oc_buf_reserve(oc_buf_t *b, size_t extra);
void oc_buf_add(oc_buf_t *b, const void *p, size_t n);
void oc_buf_adds(oc_buf_t *b, const char *s);
void oc_buf_addc(oc_buf_t *b, char c);
void oc_buf_printf(oc_buf_t *b, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
/* NUL-terminate and return the bytes ("" for an empty or failed buffer). */
const char *oc_buf_cstr(oc_buf_t *b);
/* Hand the bytes over to the caller (free() them); the buffer is reset. */
char *oc_buf_steal(oc_buf_t *b, size_t *len);

/* Append a JSON string literal (quotes and escapes) for s[0..n). */
void oc_buf_add_json_string(oc_buf_t *b, const char *s, size_t n);

/* 64-bit hash of a byte range (not cryptographic; for change detection). */
uint64_t oc_hash64(const void *p, size_t n, uint64_t seed);

#endif
