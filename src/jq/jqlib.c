/*
 * jqlib.c - the C side of the prelude's builtins (see jqlib.h): regular
 * expressions, string repetition and search, @base32d, and the size
 * checks, plus the bounded dump and the value measure.
 *
 * Messages are jq 1.7.1's. Regular expressions are in jqregex.c.
 *
 * Owns nothing beyond a call.
 */
#include "jqlib.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_ERR_SHOWN 15               /* jq's type_error excerpt buffer */
#define PRINT_DEPTH 257                 /* jq prints deeper values as a marker */

/* {==================== value measures ==================== */

typedef struct memo_entry {
  const void *ptr;
  int offset, size;
  size_t bytes;
  int depth;
} memo_entry_t;

typedef struct weigher {
  size_t limit;
  int depth_limit, too_deep, stop;
  memo_entry_t *memo;
  size_t memo_n, memo_cap;              /* cap: a power of two */
} weigher_t;

static size_t memo_slot(const weigher_t *w, jv v)
{
  uintptr_t h = (uintptr_t)v.u.ptr ^ ((uintptr_t)v.offset << 7)
                ^ ((uintptr_t)v.size << 17);
  h ^= h >> 13;
  return (size_t)(h * 2654435761u) & (w->memo_cap - 1);
}

static memo_entry_t *memo_find(weigher_t *w, jv v)
{
  size_t i;
  if (!w->memo)
    return NULL;
  for (i = memo_slot(w, v); w->memo[i].ptr; i = (i + 1) & (w->memo_cap - 1))
    if (w->memo[i].ptr == (const void *)v.u.ptr
        && w->memo[i].offset == v.offset && w->memo[i].size == v.size)
      return &w->memo[i];
  return NULL;
}

static void memo_put(weigher_t *w, jv v, size_t bytes, int depth)
{
  size_t i;
  if (w->memo_n * 2 >= w->memo_cap) {
    memo_entry_t *old = w->memo;
    size_t oldcap = w->memo_cap, k;
    size_t cap = oldcap ? oldcap * 2 : 64;
    memo_entry_t *nm = calloc(cap, sizeof *nm);
    if (!nm)
      return;                           /* measure without the memo */
    w->memo = nm;
    w->memo_cap = cap;
    w->memo_n = 0;
    for (k = 0; k < oldcap; k++)
      if (old[k].ptr) {
        jv key;
        memset(&key, 0, sizeof key);
        key.u.ptr = (struct jv_refcnt *)old[k].ptr;
        key.offset = (unsigned short)old[k].offset;
        key.size = old[k].size;
        for (i = memo_slot(w, key); w->memo[i].ptr;
             i = (i + 1) & (cap - 1))
          ;
        w->memo[i] = old[k];
        w->memo_n++;
      }
    free(old);
  }
  for (i = memo_slot(w, v); w->memo[i].ptr; i = (i + 1) & (w->memo_cap - 1))
    ;
  w->memo[i].ptr = v.u.ptr;
  w->memo[i].offset = v.offset;
  w->memo[i].size = v.size;
  w->memo[i].bytes = bytes;
  w->memo[i].depth = depth;
  w->memo_n++;
}

static size_t add_sat(size_t a, size_t b)
{
  return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Bytes of v's compact JSON text (estimated: strings unescaped, numbers
 * 24) and, in *depth, its container nesting. level: v's own depth. */
static size_t weigh(weigher_t *w, jv v, int level, int *depth)
{
  jv_kind k = jv_get_kind(v);
  size_t bytes = 2;
  int d = 0, shared;
  memo_entry_t *e;
  *depth = 0;
  switch (k) {
  case JV_KIND_STRING:
    return (size_t)jv_string_length_bytes(jv_copy(v)) + 2;
  case JV_KIND_NUMBER:
    return 24;
  case JV_KIND_ARRAY: case JV_KIND_OBJECT:
    break;
  default:
    return 5;
  }
  if (level > w->depth_limit) {
    w->too_deep = 1;
    w->stop = 1;
    return 20;                          /* "<skipped: too deep>" */
  }
  shared = jv_get_refcnt(v) > 1;
  if (shared && (e = memo_find(w, v))) {
    *depth = e->depth;
    if (level + e->depth > w->depth_limit) {
      w->too_deep = 1;
      w->stop = 1;
    }
    return e->bytes;
  }
  if (k == JV_KIND_ARRAY) {
    int i, n = jv_array_length(jv_copy(v));
    for (i = 0; i < n && !w->stop; i++) {
      jv x = jv_array_get(jv_copy(v), i);
      bytes = add_sat(bytes, weigh(w, x, level + 1, &d) + 1);
      if (d + 1 > *depth)
        *depth = d + 1;
      jv_free(x);
      if (bytes > w->limit)
        w->stop = 1;
    }
  } else {
    int it;
    for (it = jv_object_iter(v); jv_object_iter_valid(v, it) && !w->stop;
         it = jv_object_iter_next(v, it)) {
      jv key = jv_object_iter_key(v, it), x = jv_object_iter_value(v, it);
      bytes = add_sat(bytes, (size_t)jv_string_length_bytes(key) + 4);
      bytes = add_sat(bytes, weigh(w, x, level + 1, &d));
      if (d + 1 > *depth)
        *depth = d + 1;
      jv_free(x);
      if (bytes > w->limit)
        w->stop = 1;
    }
  }
  if (!*depth)
    *depth = 1;
  if (shared && !w->stop)
    memo_put(w, v, bytes, *depth);
  return bytes;
}

size_t oc_jqlib_weigh(jv v, size_t limit, int depth_limit, int *too_deep)
{
  weigher_t w;
  int depth;
  size_t bytes;
  memset(&w, 0, sizeof w);
  w.limit = limit;
  w.depth_limit = depth_limit;
  bytes = weigh(&w, v, 1, &depth);
  free(w.memo);
  if (too_deep)
    *too_deep = w.too_deep;
  return w.stop && !w.too_deep && bytes <= limit ? limit + 1 : bytes;
}

/* A copy of v small enough to print, with the same first `*budget`
 * bytes of JSON text. */
static jv clone_bounded(jv v, long *budget, int level)
{
  jv_kind k = jv_get_kind(v);
  jv out;
  if (k == JV_KIND_STRING) {
    int n = jv_string_length_bytes(jv_copy(v));
    const char *s = jv_string_value(v);
    if (*budget >= n) {
      *budget -= n + 2;
      return jv_copy(v);
    }
    n = *budget > 0 ? (int)*budget : 0;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;
    *budget = 0;
    return jv_string_sized(s, n);
  }
  if (k != JV_KIND_ARRAY && k != JV_KIND_OBJECT) {
    *budget -= 8;
    return jv_copy(v);
  }
  *budget -= 2;
  if (level > 64)
    return k == JV_KIND_ARRAY ? jv_array() : jv_object();
  if (k == JV_KIND_ARRAY) {
    int i, n = jv_array_length(jv_copy(v));
    out = jv_array();
    for (i = 0; i < n && *budget > 0; i++) {
      jv x = jv_array_get(jv_copy(v), i);
      out = jv_array_append(out, clone_bounded(x, budget, level + 1));
      jv_free(x);
      *budget -= 1;
    }
    return out;
  }
  out = jv_object();
  {
    int it;
    for (it = jv_object_iter(v); jv_object_iter_valid(v, it) && *budget > 0;
         it = jv_object_iter_next(v, it)) {
      jv key = jv_object_iter_key(v, it), x = jv_object_iter_value(v, it);
      *budget -= jv_string_length_bytes(jv_copy(key)) + 4;
      out = jv_object_set(out, key, clone_bounded(x, budget, level + 1));
      jv_free(x);
    }
  }
  return out;
}

void oc_jqlib_dump_bounded(jv v, oc_buf_t *out, size_t limit)
{
  long budget = (long)(limit > 1 << 20 ? 1 << 20 : limit) + 16;
  jv c = clone_bounded(v, &budget, 0);
  jv s = jv_dump_string(c, 0);
  size_t n = (size_t)jv_string_length_bytes(jv_copy(s));
  oc_buf_add(out, jv_string_value(s), n < limit ? n : limit);
  jv_free(s);
}

/* }==================== */

/* {==================== helpers ==================== */

/* jq's type_error: "<kind> (<json, 14 bytes>) <msg>". bad borrowed. */
jv oc_jqlib_type_error(jv bad, const char *msg)
{
  oc_buf_t b = OC_BUF_INIT;
  char shown[TYPE_ERR_SHOWN];
  size_t n;
  oc_jqlib_dump_bounded(bad, &b, 64);
  n = b.n < TYPE_ERR_SHOWN - 1 ? b.n : TYPE_ERR_SHOWN - 1;
  memcpy(shown, oc_buf_cstr(&b), n);
  shown[n] = '\0';
  if (b.n > TYPE_ERR_SHOWN - 1)
    memcpy(shown + TYPE_ERR_SHOWN - 4, "...", 3);
  oc_buf_free(&b);
  return jv_invalid_with_msg(jv_string_fmt("%s (%s) %s",
                                           jv_kind_name(jv_get_kind(bad)),
                                           shown, msg));
}

int oc_jqlib_refuse(oc_jqlib_t *lib, size_t bytes)
{
  if (lib->mem_limit && bytes > lib->mem_limit) {
    lib->breach = OC_BREACH_SIZE;
    return 1;
  }
  return 0;
}

/* The length in bytes of the UTF-8 sequence led by c (jq's rule). */
static int utf8_len(unsigned char c)
{
  return c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
}

/* Code points in s[0..to) (to on a sequence start or past it). */
long oc_jqlib_codepoints(const char *s, const char *to)
{
  long n = 0;
  while (s < to) {
    s += utf8_len((unsigned char)*s);
    n++;
  }
  return n;
}

/* }==================== */

/* {==================== strings ==================== */

/* jq 1.7.1's string * number: null for n < 0 or nan, else the string
 * (int)n times. */
static jv repeat(oc_jqlib_t *lib, jv str, jv num)
{
  double d = jv_number_value(num);
  size_t len = (size_t)jv_string_length_bytes(jv_copy(str)), n, total, i;
  char *buf;
  jv r;
  if (d < 0 || isnan(d))
    return jv_null();
  n = d >= (double)INT_MAX ? (size_t)INT_MAX : (size_t)d;
  if (len == 0 || n == 0)
    return jv_string("");
  total = len > (size_t)INT_MAX / n ? (size_t)INT_MAX + 1 : len * n;
  if (oc_jqlib_refuse(lib, total))
    return jv_null();
  if (total > (size_t)INT_MAX - 1)
    return jv_invalid_with_msg(jv_string("Repeat string result too long"));
  if (!(buf = malloc(total)))
    return jv_invalid_with_msg(jv_string("Repeat string result too long"));
  memcpy(buf, jv_string_value(str), len);
  for (i = len; i < total; i *= 2)       /* double what is there */
    memcpy(buf + i, buf, i <= total - i ? i : total - i);
  r = jv_string_sized(buf, (int)total);
  free(buf);
  return r;
}

/* jq 1.7.1's _strindices: byte offsets of every (overlapping) match. */
static jv strindices(oc_jqlib_t *lib, jv s, jv sub)
{
  const char *h = jv_string_value(s), *n = jv_string_value(sub), *p;
  size_t hl = (size_t)jv_string_length_bytes(jv_copy(s));
  size_t nl = (size_t)jv_string_length_bytes(jv_copy(sub)), count = 0;
  jv a = jv_array();
  if (nl == 0)
    return a;
  for (p = h; (p = memmem(p, hl - (size_t)(p - h), n, nl)); p++) {
    if (oc_jqlib_refuse(lib, ++count * 16))
      break;
    a = jv_array_append(a, jv_number((double)(p - h)));
  }
  return a;
}

static int b32_value(int c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a';
  if (c >= '2' && c <= '7')
    return c - '2' + 26;
  return -1;
}

/* @base32d: RFC 4648 base32 (as written by @base32), padding optional. */
static jv base32d(jv s)
{
  const char *p = jv_string_value(s);
  int n = jv_string_length_bytes(jv_copy(s)), i, bits = 0;
  unsigned long acc = 0;
  oc_buf_t b = OC_BUF_INIT;
  jv r;
  while (n > 0 && p[n - 1] == '=')
    n--;
  for (i = 0; i < n; i++) {
    int v = b32_value((unsigned char)p[i]);
    if (v < 0) {
      oc_buf_free(&b);
      return oc_jqlib_type_error(s, "is not valid base32 data");
    }
    acc = (acc << 5) | (unsigned long)v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      oc_buf_addc(&b, (char)((acc >> bits) & 0xff));
    }
  }
  r = jv_string_sized(b.p ? b.p : "", (int)b.n);
  oc_buf_free(&b);
  return r;
}

static int is_space(long c)
{
  /* Unicode's White_Space property */
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0
         || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028
         || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point at s (valid UTF-8, as jq strings are). */
static long decode(const unsigned char *s, int len)
{
  long c = len == 1 ? s[0] : len == 2 ? s[0] & 0x1f : len == 3 ? s[0] & 0x0f
           : s[0] & 0x07;
  int i;
  for (i = 1; i < len; i++)
    c = (c << 6) | (s[i] & 0x3f);
  return c;
}

/* jq 1.8's trim (op 3), ltrim (1), rtrim (2). */
static jv trim(jv s, int op)
{
  const char *p = jv_string_value(s), *b = p, *e;
  int n = jv_string_length_bytes(jv_copy(s));
  e = p + n;
  if (op & 1)
    while (b < e) {
      int l = utf8_len((unsigned char)*b);
      if (!is_space(decode((const unsigned char *)b, l)))
        break;
      b += l;
    }
  if (op & 2)
    while (e > b) {
      const char *q = e - 1;
      while (q > b && ((unsigned char)*q & 0xc0) == 0x80)
        q--;
      if (!is_space(decode((const unsigned char *)q, (int)(e - q))))
        break;
      e = q;
    }
  return jv_string_sized(b, (int)(e - b));
}

/* }==================== */

/* {==================== size checks ==================== */

static jv guard_json(oc_jqlib_t *lib, jv v)
{
  if (lib->mem_limit)
    oc_jqlib_refuse(lib, oc_jqlib_weigh(v, lib->mem_limit, PRINT_DEPTH, NULL));
  return jv_copy(v);
}

/* The worst expansion of @fmt's output over its input's text. */
static size_t format_factor(const char *f)
{
  if (!strcmp(f, "html"))
    return 6;
  if (!strcmp(f, "uri") || !strcmp(f, "sh") || !strcmp(f, "csv"))
    return 3;
  if (!strcmp(f, "tsv") || !strcmp(f, "base64") || !strcmp(f, "base32"))
    return 2;
  return 1;
}

static jv guard_format(oc_jqlib_t *lib, jv v, jv fmt)
{
  if (lib->mem_limit && jv_get_kind(fmt) == JV_KIND_STRING) {
    size_t w = oc_jqlib_weigh(v, lib->mem_limit, PRINT_DEPTH, NULL);
    size_t f = format_factor(jv_string_value(fmt));
    oc_jqlib_refuse(lib, w > SIZE_MAX / f ? SIZE_MAX : w * f);
  }
  return jv_copy(v);
}

/* split(sep) makes one string per piece: ~48 bytes each. */
static jv guard_split(oc_jqlib_t *lib, jv s, jv sep)
{
  if (lib->mem_limit && jv_get_kind(s) == JV_KIND_STRING
      && jv_get_kind(sep) == JV_KIND_STRING) {
    const char *h = jv_string_value(s), *n = jv_string_value(sep), *p;
    size_t hl = (size_t)jv_string_length_bytes(jv_copy(s));
    size_t nl = (size_t)jv_string_length_bytes(jv_copy(sep)), pieces = 1;
    if (nl == 0)
      pieces = (size_t)oc_jqlib_codepoints(h, h + hl);
    else
      for (p = h; (p = memmem(p, hl - (size_t)(p - h), n, nl)); p += nl)
        pieces++;
    oc_jqlib_refuse(lib, pieces * 48 + hl);
  }
  return jv_copy(s);
}

static jv guard_explode(oc_jqlib_t *lib, jv s)
{
  if (lib->mem_limit && jv_get_kind(s) == JV_KIND_STRING) {
    const char *h = jv_string_value(s);
    size_t n = (size_t)jv_string_length_bytes(jv_copy(s));
    oc_jqlib_refuse(lib, (size_t)oc_jqlib_codepoints(h, h + n) * 16);
  }
  return jv_copy(s);
}

/* setpath(path; _) grows arrays to reach numeric indexes: refuse growth
 * past the memory limit (libjq would allocate it in one call, or abort). */
static jv guard_setpath(oc_jqlib_t *lib, jv v, jv path)
{
  jv cur = jv_copy(v);
  size_t grow = 0;
  int i, n;
  if (!lib->mem_limit || jv_get_kind(path) != JV_KIND_ARRAY) {
    jv_free(cur);
    return jv_copy(v);
  }
  n = jv_array_length(jv_copy(path));
  for (i = 0; i < n && !lib->breach; i++) {
    jv k = jv_array_get(jv_copy(path), i);
    if (jv_get_kind(k) == JV_KIND_NUMBER) {
      double d = jv_number_value(k);
      int len = jv_get_kind(cur) == JV_KIND_ARRAY
                ? jv_array_length(jv_copy(cur)) : 0;
      if (d > (double)len) {
        double extra = (d - (double)len + 1) * 16;
        grow = add_sat(grow, extra > (double)SIZE_MAX ? SIZE_MAX
                       : (size_t)extra);
        oc_jqlib_refuse(lib, grow);
      }
    }
    if (jv_get_kind(cur) == JV_KIND_ARRAY
        || jv_get_kind(cur) == JV_KIND_OBJECT) {
      jv next = jv_get(jv_copy(cur), jv_copy(k));
      jv_free(cur);
      cur = jv_is_valid(next) ? next : (jv_free(next), jv_null());
    } else {
      jv_free(cur);
      cur = jv_null();
    }
    jv_free(k);
  }
  jv_free(cur);
  return jv_copy(v);
}

/* One path of `paths |= update` (jq 1.7.1's semantics): state is [doc,
 * paths to delete], u the update's first output as [v], or [] for none
 * (the path is deleted once all paths are done). The document is taken
 * out of the state before it is changed, so that libjq changes it in
 * place (the request held the only other reference). */
static jv modify_step(oc_jqlib_t *lib, jv state, jv path, jv u)
{
  jv doc, r;
  if (jv_get_kind(state) != JV_KIND_ARRAY || jv_get_kind(u) != JV_KIND_ARRAY) {
    jv_free(state);
    return jv_invalid_with_msg(jv_string("BUG: bad |= state"));
  }
  if (jv_array_length(jv_copy(u)) == 0) {
    jv dels = jv_array_get(jv_copy(state), 1);
    state = jv_array_set(state, 1, jv_null());
    dels = jv_array_append(dels, jv_copy(path));
    return jv_array_set(state, 1, dels);
  }
  doc = jv_array_get(jv_copy(state), 0);
  state = jv_array_set(state, 0, jv_null());
  r = guard_setpath(lib, doc, path);
  jv_free(r);
  if (lib->breach) {
    jv_free(doc);
    jv_free(state);
    return jv_null();
  }
  doc = jv_setpath(doc, jv_copy(path), jv_array_get(jv_copy(u), 0));
  if (!jv_is_valid(doc)) {
    jv_free(state);
    return doc;
  }
  return jv_array_set(state, 0, doc);
}

/* }==================== */

jv oc_jqlib_call(oc_jqlib_t *lib, jv req)
{
  jv a[5], r;
  int i, n = jv_array_length(jv_copy(req)), fn;
  for (i = 0; i < 5; i++)
    a[i] = i + 1 < n ? jv_array_get(jv_copy(req), i + 1) : jv_null();
  jv_free(req);              /* before answering: the input is not shared */
  fn = jv_get_kind(a[0]) == JV_KIND_NUMBER ? (int)jv_number_value(a[0]) : 0;
  switch (fn) {
  case OC_FN_REPEAT:
    r = repeat(lib, a[1], a[2]);
    break;
  case OC_FN_GUARD_JSON:
    r = guard_json(lib, a[1]);
    break;
  case OC_FN_GUARD_FORMAT:
    r = guard_format(lib, a[1], a[2]);
    break;
  case OC_FN_BASE32D:
    r = jv_get_kind(a[1]) == JV_KIND_STRING ? base32d(a[1])
        : oc_jqlib_type_error(a[1], "cannot be base32-decoded, as it is not a "
                     "string");
    break;
  case OC_FN_GUARD_SPLIT:
    r = guard_split(lib, a[1], a[2]);
    break;
  case OC_FN_GUARD_SETPATH:
    r = guard_setpath(lib, a[1], a[2]);
    break;
  case OC_FN_MATCH:
    r = oc_jqlib_match(lib, a[1], a[2], a[3], a[4]);
    break;
  case OC_FN_STRINDICES:
    r = strindices(lib, a[1], a[2]);
    break;
  case OC_FN_GUARD_EXPLODE:
    r = guard_explode(lib, a[1]);
    break;
  case OC_FN_TRIM:
    r = jv_get_kind(a[1]) == JV_KIND_STRING
        ? trim(a[1], jv_get_kind(a[2]) == JV_KIND_NUMBER
               ? (int)jv_number_value(a[2]) : 3)
        : jv_invalid_with_msg(jv_string("trim input must be a string"));
    break;
  case OC_FN_MODIFY_STEP:
    r = modify_step(lib, a[1], a[2], a[3]);
    a[1] = jv_null();                   /* consumed: changed in place */
    break;
  case OC_FN_TYPE_ERROR:
    r = oc_jqlib_type_error(a[1], jv_get_kind(a[2]) == JV_KIND_STRING
                   ? jv_string_value(a[2]) : "is not valid");
    break;
  default:
    r = jv_invalid_with_msg(jv_string("BUG: unknown builtin request"));
  }
  for (i = 0; i < 5; i++)
    jv_free(a[i]);
  return r;
}
