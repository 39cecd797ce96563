/*
 * json.c - JSON scanner (SAX events), the jv builder on top of it, the
 * canonical serialiser and hashing.
 *
 * Owns: nothing global. A parser owns its scratch buffer; a key cache owns
 * one reference to each interned key string.
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {==================== scanner ==================== */

void oc_json_parser_init(oc_json_parser_t *p, const oc_json_sax_t *sax,
                         void *ud, int max_depth)
{
  memset(p, 0, sizeof *p);
  p->sax = sax;
  p->ud = ud;
  p->max_depth = max_depth > 0 ? max_depth : OC_JSON_MAX_DEPTH;
  oc_buf_init(&p->scratch);
}

void oc_json_parser_free(oc_json_parser_t *p)
{
  oc_buf_free(&p->scratch);
}

void oc_json_parser_where(oc_json_parser_t *p, char *out, size_t outlen)
{
  const char *q;
  int line = 1, col = 1;
  for (q = p->start; q < p->s; q++) {
    if (*q == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  snprintf(out, outlen, "line %d, column %d", line, col);
}

/* Write "invalid JSON at line L, column C: <what> (near '<excerpt>')". */
static int fail(oc_json_parser_t *p, const char *what)
{
  char where[64], near[40];
  size_t i, k = 0;
  oc_json_parser_where(p, where, sizeof where);
  for (i = 0; p->s + i < p->end && i < 16 && k + 5 < sizeof near; i++) {
    unsigned char c = (unsigned char)p->s[i];
    if (c >= 0x20 && c < 0x7f && c != '\'')
      near[k++] = (char)c;
    else
      k += (size_t)snprintf(near + k, sizeof near - k, "\\x%02x", c);
  }
  near[k] = '\0';
  if (p->s >= p->end)
    snprintf(p->err, sizeof p->err, "invalid JSON at %s: %s (at end of "
             "input)", where, what);
  else
    snprintf(p->err, sizeof p->err, "invalid JSON at %s: %s (near '%s')",
             where, what, near);
  return -1;
}

static void skip_ws(oc_json_parser_t *p)
{
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r'
                           || *p->s == '\t'))
    p->s++;
}

static int hexval(int c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(oc_json_parser_t *p, const char *q, unsigned *out)
{
  unsigned v = 0;
  int i;
  if (p->end - q < 4)
    return -1;
  for (i = 0; i < 4; i++) {
    int h = hexval((unsigned char)q[i]);
    if (h < 0)
      return -1;
    v = v * 16 + (unsigned)h;
  }
  *out = v;
  return 0;
}

static void add_utf8(oc_buf_t *b, unsigned cp)
{
  char u[4];
  if (cp < 0x80) {
    u[0] = (char)cp;
    oc_buf_add(b, u, 1);
  } else if (cp < 0x800) {
    u[0] = (char)(0xc0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3f));
    oc_buf_add(b, u, 2);
  } else if (cp < 0x10000) {
    u[0] = (char)(0xe0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[2] = (char)(0x80 | (cp & 0x3f));
    oc_buf_add(b, u, 3);
  } else {
    u[0] = (char)(0xf0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    u[3] = (char)(0x80 | (cp & 0x3f));
    oc_buf_add(b, u, 4);
  }
}

/* Decode one escape at p->s (just after the backslash) into scratch. */
static int unescape(oc_json_parser_t *p)
{
  unsigned cp, lo;
  char c = *p->s++;
  switch (c) {
  case '"': case '\\': case '/': oc_buf_addc(&p->scratch, c); return 0;
  case 'b': oc_buf_addc(&p->scratch, '\b'); return 0;
  case 'f': oc_buf_addc(&p->scratch, '\f'); return 0;
  case 'n': oc_buf_addc(&p->scratch, '\n'); return 0;
  case 'r': oc_buf_addc(&p->scratch, '\r'); return 0;
  case 't': oc_buf_addc(&p->scratch, '\t'); return 0;
  case 'u': break;
  default:
    p->s--;
    return fail(p, "invalid escape in string");
  }
  if (read_hex4(p, p->s, &cp)) {
    p->s--;
    return fail(p, "invalid \\u escape in string");
  }
  p->s += 4;
  if (cp >= 0xd800 && cp < 0xdc00) {           /* high surrogate */
    if (p->end - p->s >= 6 && p->s[0] == '\\' && p->s[1] == 'u'
        && !read_hex4(p, p->s + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
      p->s += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else {
      cp = 0xfffd;
    }
  } else if (cp >= 0xdc00 && cp < 0xe000) {    /* lone low surrogate */
    cp = 0xfffd;
  }
  add_utf8(&p->scratch, cp);
  return 0;
}

/* Scan a string literal at p->s (on the opening quote). Sets out and n to
 * the decoded bytes: a pointer into the input when there was no escape,
 * else into the scratch buffer (valid until the next string). */
static int scan_string(oc_json_parser_t *p, const char **out, size_t *n)
{
  const char *q = ++p->s, *run;
  while (q < p->end && *q != '"' && *q != '\\'
         && (unsigned char)*q >= 0x20)
    q++;
  if (q < p->end && *q == '"') {
    *out = p->s;
    *n = (size_t)(q - p->s);
    p->s = q + 1;
    return 0;
  }
  oc_buf_reset(&p->scratch);
  run = p->s;
  p->s = q;
  for (;;) {
    if (p->s >= p->end)
      return fail(p, "unterminated string");
    if (*p->s == '"')
      break;
    if ((unsigned char)*p->s < 0x20)
      return fail(p, "control character in string");
    if (*p->s == '\\') {
      oc_buf_add(&p->scratch, run, (size_t)(p->s - run));
      p->s++;
      if (p->s >= p->end)
        return fail(p, "unterminated string");
      if (unescape(p))
        return -1;
      run = p->s;
      continue;
    }
    p->s++;
  }
  oc_buf_add(&p->scratch, run, (size_t)(p->s - run));
  p->s++;
  if (p->scratch.oom)
    return fail(p, "out of memory");
  *out = p->scratch.p ? p->scratch.p : "";
  *n = p->scratch.n;
  return 0;
}

static int scan_number(oc_json_parser_t *p)
{
  const char *q = p->s, *tok = p->s;
  char small[64], *num = small;
  double d;
  int rc;
  size_t n;
  if (q < p->end && *q == '-')
    q++;
  if (q < p->end && *q == '0') {
    q++;
  } else if (q < p->end && *q >= '1' && *q <= '9') {
    while (q < p->end && *q >= '0' && *q <= '9')
      q++;
  } else {
    return fail(p, "invalid number");
  }
  if (q < p->end && *q == '.') {
    q++;
    if (q >= p->end || *q < '0' || *q > '9') {
      p->s = q;
      return fail(p, "invalid number (digit expected after '.')");
    }
    while (q < p->end && *q >= '0' && *q <= '9')
      q++;
  }
  if (q < p->end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < p->end && (*q == '+' || *q == '-'))
      q++;
    if (q >= p->end || *q < '0' || *q > '9') {
      p->s = q;
      return fail(p, "invalid number (digit expected in exponent)");
    }
    while (q < p->end && *q >= '0' && *q <= '9')
      q++;
  }
  n = (size_t)(q - tok);
  if (n >= sizeof small && !(num = malloc(n + 1)))
    return fail(p, "out of memory");
  memcpy(num, tok, n);
  num[n] = '\0';
  d = strtod(num, NULL);          /* +-inf on overflow, kept as jq does */
  if (num != small)
    free(num);
  p->s = q;
  rc = p->sax->number(p->ud, d, tok, n);
  return rc ? -1 : 0;
}

static int scan_literal(oc_json_parser_t *p, const char *word)
{
  size_t n = strlen(word);
  if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0)
    return fail(p, "unexpected character");
  p->s += n;
  return 0;
}

static int scan_value(oc_json_parser_t *p, int depth);

static int scan_object(oc_json_parser_t *p, int depth)
{
  const char *k;
  size_t kn;
  if (p->sax->begin_object(p->ud))
    return -1;
  p->s++;
  skip_ws(p);
  if (p->s < p->end && *p->s == '}') {
    p->s++;
    return p->sax->end_object(p->ud) ? -1 : 0;
  }
  for (;;) {
    skip_ws(p);
    if (p->s >= p->end || *p->s != '"')
      return fail(p, "object key (a string) expected");
    if (scan_string(p, &k, &kn) || p->sax->key(p->ud, k, kn))
      return -1;
    skip_ws(p);
    if (p->s >= p->end || *p->s != ':')
      return fail(p, "':' expected after object key");
    p->s++;
    if (scan_value(p, depth + 1))
      return -1;
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    if (p->s < p->end && *p->s == '}') {
      p->s++;
      return p->sax->end_object(p->ud) ? -1 : 0;
    }
    return fail(p, "',' or '}' expected in object");
  }
}

static int scan_array(oc_json_parser_t *p, int depth)
{
  if (p->sax->begin_array(p->ud))
    return -1;
  p->s++;
  skip_ws(p);
  if (p->s < p->end && *p->s == ']') {
    p->s++;
    return p->sax->end_array(p->ud) ? -1 : 0;
  }
  for (;;) {
    if (scan_value(p, depth + 1))
      return -1;
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    if (p->s < p->end && *p->s == ']') {
      p->s++;
      return p->sax->end_array(p->ud) ? -1 : 0;
    }
    return fail(p, "',' or ']' expected in array");
  }
}

static int scan_value(oc_json_parser_t *p, int depth)
{
  const char *str;
  size_t n;
  skip_ws(p);
  if (p->s >= p->end)
    return fail(p, "value expected");
  switch (*p->s) {
  case '{':
  case '[':
    if (depth - p->outer >= p->max_depth) {
      char what[64];
      snprintf(what, sizeof what, "nesting deeper than %d levels",
               p->max_depth);
      return fail(p, what);
    }
    return *p->s == '{' ? scan_object(p, depth) : scan_array(p, depth);
  case '"':
    if (scan_string(p, &str, &n))
      return -1;
    return p->sax->string(p->ud, str, n) ? -1 : 0;
  case 't':
    return scan_literal(p, "true") || p->sax->boolean(p->ud, 1) ? -1 : 0;
  case 'f':
    return scan_literal(p, "false") || p->sax->boolean(p->ud, 0) ? -1 : 0;
  case 'n':
    return scan_literal(p, "null") || p->sax->null_value(p->ud) ? -1 : 0;
  default:
    if (*p->s == '-' || (*p->s >= '0' && *p->s <= '9'))
      return scan_number(p);
    return fail(p, "unexpected character");
  }
}

int oc_json_parse_next(oc_json_parser_t *p, const char *text, size_t n,
                       size_t off, size_t *used)
{
  int rc;
  p->start = text;
  p->s = text + off;
  p->end = text + n;
  p->err[0] = '\0';
  rc = scan_value(p, 0);
  if (rc == 0)
    skip_ws(p);
  if (used)
    *used = (size_t)(p->s - (text + off));
  return rc;
}

int oc_json_parse_value(oc_json_parser_t *p, const char *s, size_t n,
                        size_t *used)
{
  return oc_json_parse_next(p, s, n, 0, used);
}

int oc_json_parse_stream(oc_json_parser_t *p, const char *s, size_t n)
{
  size_t off = 0, used;
  int first = 1, streamed = 0;
  p->outer = 0;
  while (off < n) {
    while (off < n && (s[off] == ' ' || s[off] == '\n' || s[off] == '\r'
                       || s[off] == '\t'))
      off++;
    if (off >= n)
      break;
    if (streamed) {              /* nothing may follow a top-level array */
      p->start = s;
      p->s = s + off;
      p->end = s + n;
      return fail(p, "unexpected data after the JSON array");
    }
    streamed = first && s[off] == '[';
    first = 0;
    p->outer = streamed;         /* items nest alike, in an array or not */
    if (oc_json_parse_next(p, s, n, off, &used)) {
      if (!p->err[0])
        fail(p, "invalid JSON");
      return -1;
    }
    off += used;
  }
  return 0;
}


/* Stop at s + off with "what" (for the cursor). */
static int fail_at(oc_json_parser_t *p, const char *s, size_t n, size_t off,
                   const char *what)
{
  p->start = s;
  p->s = s + off;
  p->end = s + n;
  return fail(p, what);
}

static size_t skip_ws_at(const char *s, size_t n, size_t off)
{
  while (off < n && (s[off] == ' ' || s[off] == '\n' || s[off] == '\r'
                     || s[off] == '\t'))
    off++;
  return off;
}

int oc_json_cursor_next(oc_json_cursor_t *c, oc_json_parser_t *p,
                        const char *s, size_t n)
{
  size_t off = skip_ws_at(s, n, c->off);
  switch (c->state) {
  case OC_CURSOR_START:
    if (off >= n)
      break;
    if (s[off] != '[') {
      c->state = OC_CURSOR_NDJSON;
      c->off = off;
      return 1;
    }
    c->state = OC_CURSOR_ARRAY;
    off = skip_ws_at(s, n, off + 1);
    if (off < n && s[off] == ']') {
      c->off = off + 1;
      return oc_json_cursor_next_end(c, p, s, n);
    }
    c->off = off;
    return 1;
  case OC_CURSOR_ARRAY:
    if (off < n && s[off] == ',') {
      c->off = skip_ws_at(s, n, off + 1);
      return 1;
    }
    if (off < n && s[off] == ']') {
      c->off = off + 1;
      return oc_json_cursor_next_end(c, p, s, n);
    }
    c->state = OC_CURSOR_DONE;
    return fail_at(p, s, n, off, "',' or ']' expected in array");
  case OC_CURSOR_NDJSON:
    if (off >= n)
      break;
    c->off = off;
    return 1;
  case OC_CURSOR_AFTER:
    if (off < n) {
      c->state = OC_CURSOR_DONE;
      return fail_at(p, s, n, off, "unexpected data after the JSON array");
    }
    break;
  default:
    return 0;
  }
  c->state = OC_CURSOR_DONE;
  c->off = n;
  return 0;
}

int oc_json_cursor_next_end(oc_json_cursor_t *c, oc_json_parser_t *p,
                            const char *s, size_t n)
{
  c->state = OC_CURSOR_AFTER;
  return oc_json_cursor_next(c, p, s, n);
}

/* }==================== */

/* {==================== key cache ==================== */

#define KC_SLOTS 1024           /* power of two */
#define KC_MAX_KEY 64

struct oc_keycache {
  jv key[KC_SLOTS];
  unsigned char used[KC_SLOTS];
};

oc_keycache_t *oc_keycache_new(void)
{
  return calloc(1, sizeof(oc_keycache_t));
}

void oc_keycache_free(oc_keycache_t *kc)
{
  int i;
  if (!kc)
    return;
  for (i = 0; i < KC_SLOTS; i++)
    if (kc->used[i])
      jv_free(kc->key[i]);
  free(kc);
}

jv oc_keycache_get(oc_keycache_t *kc, const char *s, size_t n)
{
  unsigned slot;
  jv k;
  if (!kc || n > KC_MAX_KEY)
    return jv_string_sized(s, (int)n);
  slot = (unsigned)oc_hash64(s, n, 7) & (KC_SLOTS - 1);
  if (kc->used[slot]) {
    k = kc->key[slot];
    if ((size_t)jv_string_length_bytes(jv_copy(k)) == n
        && memcmp(jv_string_value(k), s, n) == 0)
      return jv_copy(k);
    return jv_string_sized(s, (int)n);   /* collision: don't evict */
  }
  k = jv_string_sized(s, (int)n);
  kc->key[slot] = jv_copy(k);
  kc->used[slot] = 1;
  return k;
}

/* }==================== */

/* {==================== jv builder ==================== */

typedef struct jv_builder {
  jv *stack, *keys;
  int top, cap;
  oc_keycache_t *kc;
  jv result;
  int done;
  /* streaming: elements of a top-level array go to `each` one by one */
  oc_json_each_fn each;
  void *each_ud;
  size_t count;
  int stream_array;              /* inside the streamed top-level array */
  oc_json_parser_t *parser;
} jv_builder_t;

static int jb_fail_each(jv_builder_t *b)
{
  if (!b->parser->err[0])
    snprintf(b->parser->err, sizeof b->parser->err, "item %zu rejected",
             b->count);
  return -1;
}

static int jb_add(jv_builder_t *b, jv v)
{
  if (b->top < 0) {
    if (b->each) {
      if (b->each(v, b->count++, b->each_ud))
        return jb_fail_each(b);
      return 0;
    }
    b->result = v;
    b->done = 1;
    return 0;
  }
  if (jv_get_kind(b->stack[b->top]) == JV_KIND_ARRAY) {
    b->stack[b->top] = jv_array_append(b->stack[b->top], v);
  } else {
    b->stack[b->top] = jv_object_set(b->stack[b->top], b->keys[b->top], v);
    b->keys[b->top] = jv_invalid();
  }
  return 0;
}

static int jb_push(jv_builder_t *b, jv container)
{
  if (b->top + 1 >= b->cap) {
    int cap = b->cap ? b->cap * 2 : 16;
    jv *s = realloc(b->stack, sizeof(jv) * (size_t)cap);
    jv *k;
    if (!s) {
      jv_free(container);
      return -1;
    }
    b->stack = s;
    k = realloc(b->keys, sizeof(jv) * (size_t)cap);
    if (!k) {
      jv_free(container);
      return -1;
    }
    b->keys = k;
    b->cap = cap;
  }
  b->top++;
  b->stack[b->top] = container;
  b->keys[b->top] = jv_invalid();
  return 0;
}

static int jb_pop(jv_builder_t *b)
{
  jv v = b->stack[b->top];
  jv_free(b->keys[b->top]);
  b->top--;
  return jb_add(b, v);
}

static int jb_null(void *ud) { return jb_add(ud, jv_null()); }
static int jb_bool(void *ud, int v) { return jb_add(ud, jv_bool(v)); }
static int jb_number(void *ud, double d, const char *t, size_t n)
{
  return jb_add(ud, oc_json_number_jv(d, t, n));
}
static int jb_string(void *ud, const char *s, size_t n)
{
  return jb_add(ud, jv_string_sized(s, (int)n));
}
static int jb_key(void *ud, const char *s, size_t n)
{
  jv_builder_t *b = ud;
  b->keys[b->top] = oc_keycache_get(b->kc, s, n);
  return 0;
}
static int jb_begin_object(void *ud) { return jb_push(ud, jv_object()); }
static int jb_begin_array(void *ud)
{
  jv_builder_t *b = ud;
  if (b->each && b->top < 0 && !b->stream_array && b->count == 0) {
    b->stream_array = 1;        /* stream this array's elements */
    return 0;
  }
  return jb_push(ud, jv_array());
}
static int jb_end(void *ud)
{
  jv_builder_t *b = ud;
  if (b->top < 0 && b->stream_array) {
    b->stream_array = 0;
    b->done = 1;
    return 0;
  }
  return jb_pop(b);
}

static const oc_json_sax_t jb_sax = {
  jb_null, jb_bool, jb_number, jb_string, jb_key,
  jb_begin_object, jb_end, jb_begin_array, jb_end
};

static void jb_free(jv_builder_t *b)
{
  while (b->top >= 0) {
    jv_free(b->stack[b->top]);
    jv_free(b->keys[b->top]);
    b->top--;
  }
  free(b->stack);
  free(b->keys);
}

jv oc_json_to_jv(const char *s, size_t n, int max_depth, oc_keycache_t *kc,
                 char *err, size_t errlen)
{
  jv_builder_t b;
  oc_json_parser_t p;
  size_t used;
  int rc;
  memset(&b, 0, sizeof b);
  b.top = -1;
  b.kc = kc;
  oc_json_parser_init(&p, &jb_sax, &b, max_depth);
  b.parser = &p;
  rc = oc_json_parse_value(&p, s, n, &used);
  if (rc == 0 && used != n) {
    p.s = s + used;
    rc = fail(&p, "unexpected data after the JSON value");
  }
  if (rc) {
    snprintf(err, errlen, "%s", p.err);
    if (b.done)
      jv_free(b.result);
    jb_free(&b);
    oc_json_parser_free(&p);
    return jv_invalid();
  }
  jb_free(&b);
  oc_json_parser_free(&p);
  return b.result;
}

int oc_json_each(const char *s, size_t n, int max_depth, oc_keycache_t *kc,
                 oc_json_each_fn each, void *ud, char *err, size_t errlen)
{
  jv_builder_t b;
  oc_json_parser_t p;
  int rc;
  memset(&b, 0, sizeof b);
  b.top = -1;
  b.kc = kc;
  b.each = each;
  b.each_ud = ud;
  oc_json_parser_init(&p, &jb_sax, &b, max_depth);
  b.parser = &p;
  rc = oc_json_parse_stream(&p, s, n);
  if (rc)
    snprintf(err, errlen, "%s", p.err);
  jb_free(&b);
  oc_json_parser_free(&p);
  return rc;
}

/* }==================== */

/* {==================== serialiser ==================== */

static int dump(jv v, oc_buf_t *out, int flags, int depth);

static int dump_member(jv key, jv val, oc_buf_t *out, int flags, int depth,
                       int *first)
{
  int rc = 0;
  if ((flags & OC_DUMP_DROP_NULLS) && oc_json_is_null(val)) {
    jv_free(val);
    return 0;
  }
  if (!*first)
    oc_buf_addc(out, ',');
  *first = 0;
  oc_buf_add_json_string(out, jv_string_value(key),
                         (size_t)jv_string_length_bytes(jv_copy(key)));
  oc_buf_addc(out, ':');
  rc = dump(val, out, flags, depth + 1);
  jv_free(val);
  return rc;
}

static int dump_object(jv v, oc_buf_t *out, int flags, int depth)
{
  int first = 1, rc = 0, i, n;
  oc_buf_addc(out, '{');
  if (flags & OC_DUMP_SORT_KEYS) {
    jv keys = jv_keys(jv_copy(v));
    n = jv_array_length(jv_copy(keys));
    for (i = 0; i < n && !rc; i++) {
      jv k = jv_array_get(jv_copy(keys), i);
      rc = dump_member(k, jv_object_get(jv_copy(v), jv_copy(k)), out, flags,
                       depth, &first);
      jv_free(k);
    }
    jv_free(keys);
  } else {
    jv_object_foreach(v, k, val) {
      if (!rc)
        rc = dump_member(k, val, out, flags, depth, &first);
      else
        jv_free(val);
      jv_free(k);
    }
  }
  oc_buf_addc(out, '}');
  return rc;
}

/* Serialise v (borrowed). -1 if nested deeper than 1000 levels. */
static int dump(jv v, oc_buf_t *out, int flags, int depth)
{
  int i, n, rc = 0;
  if (depth > 1000)
    return -1;
  switch (jv_get_kind(v)) {
  case JV_KIND_INVALID:
  case JV_KIND_NULL: oc_buf_adds(out, "null"); break;
  case JV_KIND_TRUE: oc_buf_adds(out, "true"); break;
  case JV_KIND_FALSE: oc_buf_adds(out, "false"); break;
  case JV_KIND_NUMBER:
    oc_json_add_jv_number(out, v, flags & OC_DUMP_CANON_NUMBERS);
    break;
  case JV_KIND_STRING:
    oc_buf_add_json_string(out, jv_string_value(v),
                           (size_t)jv_string_length_bytes(jv_copy(v)));
    break;
  case JV_KIND_ARRAY:
    oc_buf_addc(out, '[');
    n = jv_array_length(jv_copy(v));
    for (i = 0; i < n && !rc; i++) {
      jv e = jv_array_get(jv_copy(v), i);
      if (i)
        oc_buf_addc(out, ',');
      rc = dump(e, out, flags, depth + 1);
      jv_free(e);
    }
    oc_buf_addc(out, ']');
    break;
  case JV_KIND_OBJECT:
    rc = dump_object(v, out, flags, depth);
    break;
  }
  return rc;
}

int oc_json_dump(jv v, oc_buf_t *out, int flags)
{
  return dump(v, out, flags, 0) || out->oom ? -1 : 0;
}

uint64_t oc_json_hash(jv v, oc_buf_t *scratch)
{
  oc_buf_reset(scratch);
  dump(v, scratch, OC_DUMP_CANONICAL, 0);
  return oc_hash64(scratch->p ? scratch->p : "", scratch->n, 0x6f63);
}

void oc_jv_describe(jv v, char *out, size_t outlen)
{
  oc_buf_t b = OC_BUF_INIT;
  jv_kind k = jv_get_kind(v);
  if (k == JV_KIND_OBJECT || k == JV_KIND_ARRAY) {
    snprintf(out, outlen, "%s", jv_kind_name(k));
    return;
  }
  dump(v, &b, 0, 0);
  if (b.n + 1 > outlen && outlen > 4)
    snprintf(out, outlen, "%.*s...", (int)(outlen - 4), oc_buf_cstr(&b));
  else
    snprintf(out, outlen, "%s", oc_buf_cstr(&b));
  oc_buf_free(&b);
}

/* }==================== */
