/*
 * jqlex.c - single-quote rewriting, self-containment checks and leading
 * path extraction for jq expressions (see jqlex.h).
 *
 * Ocean rewrites single quotes with two regular expressions, which breaks
 * on `[.a, 'x']` and mangles quotes inside strings and comments. This is a
 * real (small) lexer instead: it walks code, strings and comments, so a
 * quote is only rewritten where it is code. Owns nothing.
 */
#include "jqlex.h"

#include "json/json.h"

#include <stdio.h>
#include <string.h>

typedef struct lexer {
  const char *s, *end, *start;
  oc_buf_t *out;
  char *err;
  size_t errlen;
  int depth;                     /* interpolation recursion */
} lexer_t;

static int is_ident_start(int c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_word(int c)
{
  return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Write "<what> at line L, column C" for position at. */
static int lex_fail(lexer_t *x, const char *at, const char *what)
{
  const char *q;
  int line = 1, col = 1;
  for (q = x->start; q < at && q < x->end; q++) {
    if (*q == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  snprintf(x->err, x->errlen, "%s at line %d, column %d", what, line, col);
  return -1;
}

static int lex_code(lexer_t *x, int interpolation);

/* A \( ... ) interpolation: s is on the '('. Copies it through the
 * matching ')'. */
static int lex_interpolation(lexer_t *x)
{
  const char *open = x->s - 1;
  int rc;
  if (++x->depth > OC_JQLEX_MAX_NESTING)
    return lex_fail(x, open, "string interpolation nested too deeply");
  oc_buf_addc(x->out, '(');
  x->s++;
  rc = lex_code(x, 1);
  x->depth--;
  if (rc)
    return rc;
  if (x->s >= x->end)
    return lex_fail(x, open, "unterminated string interpolation");
  oc_buf_addc(x->out, ')');
  x->s++;
  return 0;
}

/* A double-quoted string: s is on the opening quote. */
static int lex_dstring(lexer_t *x)
{
  const char *open = x->s, *run;
  oc_buf_addc(x->out, '"');
  run = ++x->s;
  while (x->s < x->end) {
    char c = *x->s;
    if (c == '"') {
      oc_buf_add(x->out, run, (size_t)(x->s - run + 1));
      x->s++;
      return 0;
    }
    if (c != '\\') {
      x->s++;
      continue;
    }
    if (x->s + 1 >= x->end)
      break;
    if (x->s[1] == '(') {
      oc_buf_add(x->out, run, (size_t)(x->s - run + 1));
      x->s++;
      if (lex_interpolation(x))
        return -1;
      run = x->s;
      continue;
    }
    x->s += 2;
  }
  return lex_fail(x, open, "unterminated string literal");
}

/* A single-quoted literal: s is on the opening quote. */
static int lex_sstring(lexer_t *x)
{
  const char *open = x->s;
  oc_buf_addc(x->out, '"');
  x->s++;
  while (x->s < x->end) {
    char c = *x->s;
    if (c == '\'') {
      if (x->s + 1 < x->end && is_word((unsigned char)x->s[1])) {
        oc_buf_addc(x->out, '\'');          /* an apostrophe in a word */
        x->s++;
        continue;
      }
      oc_buf_addc(x->out, '"');
      x->s++;
      return 0;
    }
    if (c == '"') {
      oc_buf_adds(x->out, "\\\"");
      x->s++;
      continue;
    }
    if (c == '\\' && x->s + 1 < x->end) {
      if (x->s[1] == '\'') {
        oc_buf_addc(x->out, '\'');
        x->s += 2;
      } else if (x->s[1] == '(') {
        oc_buf_addc(x->out, '\\');
        x->s++;
        if (lex_interpolation(x))
          return -1;
      } else {
        oc_buf_add(x->out, x->s, 2);
        x->s += 2;
      }
      continue;
    }
    oc_buf_addc(x->out, c);
    x->s++;
  }
  return lex_fail(x, open, "unterminated single-quoted string literal");
}

static void lex_comment(lexer_t *x)
{
  const char *q = x->s;
  while (q < x->end && *q != '\n')
    q++;
  oc_buf_add(x->out, x->s, (size_t)(q - x->s));
  x->s = q;
}

/* Skip whitespace and comments from q (read only). */
static const char *skip_blank(const lexer_t *x, const char *q)
{
  for (;;) {
    while (q < x->end && (*q == ' ' || *q == '\t' || *q == '\n'
                          || *q == '\r'))
      q++;
    if (q >= x->end || *q != '#')
      return q;
    while (q < x->end && *q != '\n')
      q++;
  }
}

/* An identifier in code (s on its first byte): copied; `import "..."` and
 * `include "..."` are refused (libjq would look for modules on disk). */
static int lex_ident(lexer_t *x)
{
  const char *w = x->s, *next;
  size_t n;
  int keyword_position = w == x->start
    || (w[-1] != '.' && w[-1] != '$' && !is_word((unsigned char)w[-1]));
  while (x->s < x->end && (is_word((unsigned char)*x->s)
                           || (*x->s == ':' && x->s + 1 < x->end
                               && x->s[1] == ':')))
    x->s += *x->s == ':' ? 2 : 1;
  n = (size_t)(x->s - w);
  oc_buf_add(x->out, w, n);
  if (!keyword_position || !((n == 6 && !memcmp(w, "import", 6))
                             || (n == 7 && !memcmp(w, "include", 7))))
    return 0;
  next = skip_blank(x, x->s);
  if (next < x->end && (*next == '"' || *next == '\''))
    return lex_fail(x, w, "import/include is not allowed in mappings");
  return 0;
}

static int lex_close(lexer_t *x, char *stack, int *top, int interpolation)
{
  char c = *x->s, want = c == ')' ? '(' : c == ']' ? '[' : '{';
  char msg[40];
  if (*top == 0) {
    if (interpolation && c == ')')
      return 1;                            /* end of \( ... ) */
    snprintf(msg, sizeof msg, "unexpected '%c'", c);
    return lex_fail(x, x->s, msg);
  }
  if (stack[*top - 1] != want) {
    snprintf(msg, sizeof msg, "unexpected '%c'", c);
    return lex_fail(x, x->s, msg);
  }
  (*top)--;
  oc_buf_addc(x->out, c);
  x->s++;
  return 0;
}

/* Code until the end of input, or (interpolation) until the ')' that
 * closes the \( ... ), left unconsumed. */
static int lex_code(lexer_t *x, int interpolation)
{
  char stack[OC_JQLEX_MAX_NESTING];
  const char *opened[OC_JQLEX_MAX_NESTING];
  int top = 0, rc;
  while (x->s < x->end) {
    unsigned char c = (unsigned char)*x->s;
    switch (c) {
    case '"': rc = lex_dstring(x); break;
    case '\'': rc = lex_sstring(x); break;
    case '#': lex_comment(x); rc = 0; break;
    case '(': case '[': case '{':
      if (top == OC_JQLEX_MAX_NESTING)
        return lex_fail(x, x->s, "brackets nested too deeply");
      opened[top] = x->s;
      stack[top++] = (char)c;
      oc_buf_addc(x->out, (char)c);
      x->s++;
      rc = 0;
      break;
    case ')': case ']': case '}':
      rc = lex_close(x, stack, &top, interpolation);
      if (rc > 0)
        return 0;
      break;
    default:
      if (is_ident_start(c)) {
        rc = lex_ident(x);
      } else {
        oc_buf_addc(x->out, (char)c);
        x->s++;
        rc = 0;
      }
    }
    if (rc)
      return -1;
  }
  if (top > 0) {
    char msg[40];
    snprintf(msg, sizeof msg, "'%c' is not closed", stack[top - 1]);
    return lex_fail(x, opened[top - 1], msg);
  }
  return 0;
}

int oc_jq_rewrite(const char *src, size_t n, oc_buf_t *out, char *err,
                  size_t errlen)
{
  lexer_t x;
  x.s = x.start = src;
  x.end = src + n;
  x.out = out;
  x.err = err;
  x.errlen = errlen;
  x.depth = 0;
  if (lex_code(&x, 0))
    return -1;
  if (out->oom) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return 0;
}

/* {==================== leading path ==================== */

static const char *skip_ws(const char *q, const char *end)
{
  while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
    q++;
  return q;
}

/* A plain string literal at q (no interpolation) as a jv string; *next is
 * set past it. jv_invalid() when it is not one. */
static jv path_string(const char *q, const char *end, const char **next)
{
  const char *e = q + 1;
  char msg[OC_ERR_SIZE];
  jv v;
  while (e < end && *e != '"') {
    if (*e == '\\') {
      if (e + 1 < end && e[1] == '(')
        return jv_invalid();
      e++;
    }
    e++;
  }
  if (e >= end)
    return jv_invalid();
  v = oc_json_to_jv(q, (size_t)(e - q + 1), 1, NULL, msg, sizeof msg);
  if (jv_get_kind(v) != JV_KIND_STRING) {
    jv_free(v);
    return jv_invalid();
  }
  *next = e + 1;
  return v;
}

/* One path segment at q: .key  ."key"  .["key"]  ["key"]. */
static jv path_segment(const char *q, const char *end, int first,
                       const char **next)
{
  const char *e;
  if (q < end && *q == '.') {
    q++;
    if (q < end && is_ident_start((unsigned char)*q)) {
      for (e = q; e < end && is_word((unsigned char)*e); e++)
        ;
      *next = e;
      return jv_string_sized(q, (int)(e - q));
    }
    if (q < end && *q == '"')
      return path_string(q, end, next);
    if (q >= end || *q != '[')
      return jv_invalid();
  } else if (first || q >= end || *q != '[') {
    return jv_invalid();
  }
  q = skip_ws(q + 1, end);                   /* on the '[' */
  if (q < end && *q == '"') {
    jv k = path_string(q, end, &e);
    if (!jv_is_valid(k))
      return k;
    e = skip_ws(e, end);
    if (e < end && *e == ']') {
      *next = e + 1;
      return k;
    }
    jv_free(k);
  }
  return jv_invalid();
}

jv oc_jq_leading_path(const char *src, size_t n)
{
  const char *q = src, *end = src + n, *next;
  jv path = jv_array();
  q = skip_ws(q, end);
  while (q < end && *q == '(')
    q = skip_ws(q + 1, end);
  for (;;) {
    jv seg = path_segment(q, end, jv_array_length(jv_copy(path)) == 0,
                          &next);
    if (!jv_is_valid(seg))
      break;
    path = jv_array_append(path, seg);
    q = next;
  }
  q = skip_ws(q, end);
  if (jv_array_length(jv_copy(path)) > 0
      && (q >= end || *q == ')' || *q == '|'
          || (*q == '/' && q + 1 < end && q[1] == '/')))
    return path;
  jv_free(path);
  return jv_invalid();
}

/* }==================== */
