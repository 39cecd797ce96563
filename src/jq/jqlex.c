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

#include "jqtok.h"
#include "json/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lexer {
  const char *s, *end, *start;
  oc_buf_t *out;
  char *err;
  size_t errlen;
  int depth;                     /* interpolation recursion */
  int term_end;                  /* the last token can end a term */
  char last;                     /* the last significant byte written */
} lexer_t;

#define MAX_IFS 64              /* nested `if`s tracked per bracket level */

/* What one bracket level (lex_code's stack) knows. */
typedef struct level {
  char open;                     /* ( [ { */
  const char *at;                /* where it opened (messages) */
  int index;                     /* '[' after a term: an index or slice */
  size_t body;                   /* output offset after the '[' */
  size_t colon;                  /* output offset of a slice's ':', or 0 */
  int ifs;                       /* `if`s opened at this level */
  unsigned char has_else[MAX_IFS];
} level_t;

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
  x->term_end = 0;
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
      x->term_end = 1;
      x->last = '"';
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
      x->term_end = 1;
      x->last = '"';
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

static int word_is(const char *w, size_t n, const char *kw)
{
  return n == strlen(kw) && !memcmp(w, kw, n);
}

static int is_keyword(const char *w, size_t n)
{
  static const char *const kw[] = {"if", "then", "elif", "else", "end",
    "as", "def", "reduce", "foreach", "try", "catch", "label", "import",
    "include", "and", "or", "__loc__", NULL};
  int i;
  for (i = 0; kw[i]; i++)
    if (word_is(w, n, kw[i]))
      return 1;
  return 0;
}

/* $__loc__ -> jq 1.7.1's value with the line inside the expression (the
 * program around it would give a line of the generated text); written
 * `"__loc__": ...` where it is a key of {$__loc__}. The '$' is already in
 * the output. */
static void lex_loc(lexer_t *x, const char *w, level_t *lv)
{
  const char *q;
  int line = 1, shorthand;
  for (q = x->start; q < w; q++)
    line += *q == '\n';
  x->out->n--;                               /* the '$' */
  q = skip_blank(x, x->s);
  shorthand = lv && lv->open == '{' && (x->last == '{' || x->last == ',')
              && q < x->end && (*q == '}' || *q == ',');
  oc_buf_printf(x->out, "%s({\"file\":\"<top-level>\",\"line\":%d})",
                shorthand ? "\"__loc__\": " : "", line);
}

/* libjq's own underscore builtins (1.6 and 1.7.1, top level): the
 * operators' functions, the C halves of public builtins, and 1.6's
 * `_input` (the engine's channel to C). Public ones are guarded by the
 * prelude; these would bypass a guard or reach a C routine with
 * arguments no public builtin passes. jq's manual names none of them;
 * `_nwise` (guarded, common in the wild) stays allowed. */
static const char *const libjq_internal[] = {
  "_plus", "_minus", "_multiply", "_divide", "_mod", "_equal", "_notequal",
  "_less", "_lesseq", "_greater", "_greatereq", "_negate", "_match_impl",
  "_strindices", "_input", "_sort_by_impl", "_group_by_impl",
  "_min_by_impl", "_max_by_impl", "_modify", "_assign", "_flatten", NULL};

/* Whether the name w[0..n) (a function, or a $variable / label without
 * its '$') is reserved: the engine's own definitions and bindings
 * (__oc_..., see jqprelude.c, mapping_prog.c) and libjq's internals. */
static int reserved_name(const char *w, size_t n)
{
  int i;
  if (n >= 5 && !memcmp(w, "__oc_", 5))
    return 1;
  for (i = 0; libjq_internal[i]; i++)
    if (word_is(w, n, libjq_internal[i]))
      return 1;
  return 0;
}

/* An identifier in code (s on its first byte): copied; `import "..."` and
 * `include "..."` are refused (libjq would look for modules on disk);
 * `if ... end` without `else` gets `else . end` (jq 1.7). */
static int lex_ident(lexer_t *x, level_t *lv)
{
  const char *w = x->s, *next;
  size_t n;
  int after_dollar = w != x->start && w[-1] == '$';
  int keyword_position = w == x->start
    || (w[-1] != '.' && !after_dollar && !is_word((unsigned char)w[-1]));
  while (x->s < x->end && (is_word((unsigned char)*x->s)
                           || (*x->s == ':' && x->s + 1 < x->end
                               && x->s[1] == ':')))
    x->s += *x->s == ':' ? 2 : 1;
  n = (size_t)(x->s - w);
  next = skip_blank(x, x->s);
  if (after_dollar && word_is(w, n, "__loc__")) {
    lex_loc(x, w, lv);
    x->term_end = 1;
    x->last = ')';
    return 0;
  }
  /* a keyword as an object key ({if: 1}) is a plain word */
  if (keyword_position && next < x->end && *next == ':' && (next + 1 >= x->end
                                                           || next[1] != ':'))
    keyword_position = 0;
  /* a name the user's text calls, defines or binds (not a .field, not an
   * object key: {k: v}, {k}) must not be one of the engine's */
  if (!(w != x->start && w[-1] == '.'
        && !(w - 1 != x->start && w[-2] == '.'))
      && !(lv && lv->open == '{' && !after_dollar
           && (x->last == '{' || x->last == ','))
      && reserved_name(w, n)) {
    char what[OC_ERR_SIZE];
    snprintf(what, sizeof what, "reserved name '%s%.*s'",
             after_dollar ? "$" : "", (int)(n > 64 ? 64 : n), w);
    return lex_fail(x, w, what);
  }
  if (keyword_position && lv && word_is(w, n, "end") && lv->ifs > 0
      && !lv->has_else[--lv->ifs])
    oc_buf_adds(x->out, "else . ");
  oc_buf_add(x->out, w, n);
  x->last = w[n - 1];
  x->term_end = !keyword_position || !is_keyword(w, n)
                || word_is(w, n, "end");
  if (!keyword_position || !lv)
    ;
  else if (word_is(w, n, "if") && lv->ifs < MAX_IFS)
    lv->has_else[lv->ifs++] = 0;
  else if (word_is(w, n, "else") && lv->ifs > 0)
    lv->has_else[lv->ifs - 1] = 1;
  if (!keyword_position || !(word_is(w, n, "import")
                             || word_is(w, n, "include")))
    return 0;
  if (next < x->end && (*next == '"' || *next == '\''))
    return lex_fail(x, w, "import/include is not allowed in mappings");
  return 0;
}

/* The ']' of a slice `[a:b]` just came: rewrite it as an index by
 * __oc_slice(a; b) (an empty bound is null). Same key, same paths, and
 * libjq 1.6 cannot meet a nan bound: its parse_slice asserts on one. */
static void close_slice(lexer_t *x, level_t *lv)
{
  oc_buf_t *o = x->out;
  size_t blen = o->n - lv->body;
  char *body = malloc(blen + 1);
  size_t a = lv->colon - lv->body, i;
  int empty_a = 1, empty_b = 1;
  if (!body) {
    o->oom = 1;
    return;
  }
  memcpy(body, o->p + lv->body, blen);
  for (i = 0; i < a; i++)
    empty_a &= body[i] == ' ' || body[i] == '\t' || body[i] == '\n'
               || body[i] == '\r';
  for (i = a + 1; i < blen; i++)
    empty_b &= body[i] == ' ' || body[i] == '\t' || body[i] == '\n'
               || body[i] == '\r';
  o->n = lv->body;
  oc_buf_adds(o, "__oc_slice(");
  if (empty_a)
    oc_buf_adds(o, "null");
  else
    oc_buf_add(o, body, a);
  oc_buf_adds(o, "; ");
  if (empty_b)
    oc_buf_adds(o, "null");
  else
    oc_buf_add(o, body + a + 1, blen - a - 1);
  oc_buf_addc(o, ')');
  free(body);
}

/* Whether body[0..n) is blank, a number literal or a plain string
 * literal: an index that can never be a slice object. */
static int constant_key(const char *b, size_t n)
{
  size_t i = 0, j;
  while (i < n && strchr(" \t\r\n", b[i]))
    i++;
  while (n > i && strchr(" \t\r\n", b[n - 1]))
    n--;
  if (i == n)
    return 1;                              /* .[] */
  if (b[i] == '"') {
    if (n - i < 2 || b[n - 1] != '"')
      return 0;
    for (j = i + 1; j + 1 < n; j++)
      if (b[j] == '\\')
        return 0;                          /* escapes, \( ... ) */
    return 1;
  }
  for (j = i; j < n; j++)
    if (!strchr("0123456789.eE+-", b[j]))
      return 0;
  return 1;
}

/* The ']' of an index `x[e]` just came: unless e is a constant, rewrite
 * it as x[__oc_idx(e)], which turns a slice object's nan bound into null
 * (jq 1.7.1's answer): libjq 1.6's parse_slice asserts on one. */
static void close_index(lexer_t *x, level_t *lv)
{
  oc_buf_t *o = x->out;
  size_t blen = o->n - lv->body;
  char *body;
  if (constant_key(o->p + lv->body, blen))
    return;
  body = malloc(blen + 1);
  if (!body) {
    o->oom = 1;
    return;
  }
  memcpy(body, o->p + lv->body, blen);
  o->n = lv->body;
  oc_buf_adds(o, "__oc_idx(");
  oc_buf_add(o, body, blen);
  oc_buf_addc(o, ')');
  free(body);
}

static int lex_close(lexer_t *x, level_t *stack, int *top, int interpolation)
{
  char c = *x->s, want = c == ')' ? '(' : c == ']' ? '[' : '{';
  char msg[40];
  if (*top == 0) {
    if (interpolation && c == ')')
      return 1;                            /* end of \( ... ) */
    snprintf(msg, sizeof msg, "unexpected '%c'", c);
    return lex_fail(x, x->s, msg);
  }
  if (stack[*top - 1].open != want) {
    snprintf(msg, sizeof msg, "unexpected '%c'", c);
    return lex_fail(x, x->s, msg);
  }
  (*top)--;
  if (c == ']' && stack[*top].colon)
    close_slice(x, &stack[*top]);
  else if (c == ']' && stack[*top].index)
    close_index(x, &stack[*top]);
  oc_buf_addc(x->out, c);
  x->s++;
  x->term_end = 1;
  x->last = c;
  return 0;
}

static int lex_open(lexer_t *x, level_t *stack, int *top)
{
  level_t *lv;
  char c = *x->s;
  if (*top == OC_JQLEX_MAX_NESTING)
    return lex_fail(x, x->s, "brackets nested too deeply");
  lv = &stack[(*top)++];
  lv->open = c;
  lv->at = x->s;
  lv->index = c == '[' && x->term_end;
  lv->colon = 0;
  lv->ifs = 0;
  oc_buf_addc(x->out, c);
  lv->body = x->out->n;
  x->s++;
  x->term_end = 0;
  x->last = c;
  return 0;
}

/* A '.' in code: `.a.[0]` / `.a.["k"]` (jq 1.7) lose the dot. */
static void lex_dot(lexer_t *x)
{
  const char *q = skip_blank(x, x->s + 1);
  int dots = (x->s > x->start && x->s[-1] == '.')
             || (x->s + 1 < x->end && x->s[1] == '.');
  if (x->term_end && !dots && q < x->end && *q == '[') {
    x->s++;                                /* Term '.' '[' ... */
    return;
  }
  oc_buf_addc(x->out, '.');
  x->s++;
  x->term_end = 1;
  x->last = '.';
}

/* Code until the end of input, or (interpolation) until the ')' that
 * closes the \( ... ), left unconsumed. */
static int lex_code(lexer_t *x, int interpolation)
{
  level_t *stack = malloc(sizeof *stack * OC_JQLEX_MAX_NESTING);
  level_t top_level;
  int top = 0, rc = 0;
  if (!stack)
    return lex_fail(x, x->s, "out of memory");
  top_level.open = 0;
  top_level.ifs = 0;
  while (x->s < x->end && !rc) {
    unsigned char c = (unsigned char)*x->s;
    level_t *lv = top ? &stack[top - 1] : &top_level;
    switch (c) {
    case '"': rc = lex_dstring(x); break;
    case '\'': rc = lex_sstring(x); break;
    case '#': lex_comment(x); break;
    case ' ': case '\t': case '\n': case '\r':
      oc_buf_addc(x->out, (char)c);
      x->s++;
      break;
    case '(': case '[': case '{':
      rc = lex_open(x, stack, &top);
      break;
    case ')': case ']': case '}':
      rc = lex_close(x, stack, &top, interpolation);
      if (rc > 0) {
        free(stack);
        return 0;
      }
      break;
    case '.':
      lex_dot(x);
      break;
    case ':':
      if (top && lv->index && !lv->colon && !(x->s + 1 < x->end
                                               && x->s[1] == ':'))
        lv->colon = x->out->n;
      /* fall through */
    default:
      if (is_ident_start(c)) {
        rc = lex_ident(x, lv);
      } else {
        oc_buf_addc(x->out, (char)c);
        x->s++;
        x->term_end = (c >= '0' && c <= '9') || c == '?' || c == '$';
        if (c != '$')
          x->last = (char)c;
      }
    }
  }
  if (!rc && top > 0) {
    char msg[40];
    snprintf(msg, sizeof msg, "'%c' is not closed", stack[top - 1].open);
    rc = lex_fail(x, stack[top - 1].at, msg);
  }
  free(stack);
  return rc ? -1 : 0;
}

/* {==================== constant folding ==================== */

/* libjq 1.7 computes `literal op literal` while compiling, in C and with
 * no way to stop it: `"x" * 1e10` spends seconds there, `"x" * 1e9`
 * allocates a gigabyte. In a run of literals and arithmetic that holds a
 * `*`, every string literal becomes `("x" | __oc_n)` (the prelude's
 * identity): no longer a constant, the product is computed when the
 * program runs, by the guarded _multiply. */
static int foldable(const oc_jq_tok_t *k)
{
  if (k->kind == T_STRING)
    return k->plain;
  if (k->kind == T_NUMBER)
    return 1;
  if (k->kind == T_OPEN || k->kind == T_CLOSE)
    return k->s[0] == '(' || k->s[0] == ')';
  return k->kind == T_OP && strchr("+-*/%", k->s[0]) && k->n == 1;
}

static void nofold(const char *code, size_t n, oc_buf_t *out);

/* A string token with interpolations: each \( ... ) part gets the same
 * treatment. */
static void nofold_string(const oc_jq_tok_t *k, oc_buf_t *out)
{
  const char *q = k->s, *end = k->s + k->n, *run = q, *close;
  while (q < end) {
    if (*q == '\\' && q + 1 < end && q[1] == '(') {
      oc_buf_add(out, run, (size_t)(q + 2 - run));
      close = oc_jq_skip_code(q + 2, end);
      nofold(q + 2, (size_t)(close - q - 2), out);
      q = run = close;
    } else {
      q += *q == '\\' ? 2 : 1;
    }
  }
  oc_buf_add(out, run, (size_t)(end - run));
}

static void nofold(const char *code, size_t n, oc_buf_t *out)
{
  oc_jq_toks_t ts = {NULL, 0, 0};
  unsigned char *wrap;
  size_t i, j, at = 0;
  if (oc_jq_tokenize(code, n, &ts) || !ts.n
      || !(wrap = calloc(ts.n, 1))) {
    free(ts.t);
    oc_buf_add(out, code, n);
    return;
  }
  for (i = 0; i < ts.n; i = j) {          /* runs of foldable tokens */
    int star = 0;
    for (j = i; j < ts.n && foldable(&ts.t[j]); j++)
      star |= ts.t[j].kind == T_OP && ts.t[j].s[0] == '*';
    if (star)
      for (; i < j; i++)
        wrap[i] = ts.t[i].kind == T_STRING;
    if (j == i)
      j++;
  }
  for (i = 0; i < ts.n; i++) {
    const oc_jq_tok_t *k = &ts.t[i];
    if (k->kind != T_STRING && k->kind != T_FIELD_DYN)
      continue;
    if (!wrap[i] && k->plain)
      continue;
    oc_buf_add(out, code + at, (size_t)(k->s - code) - at);
    if (wrap[i])
      oc_buf_addc(out, '(');
    if (k->plain)
      oc_buf_add(out, k->s, k->n);
    else
      nofold_string(k, out);
    if (wrap[i])
      oc_buf_adds(out, " | __oc_n)");
    at = (size_t)(k->s - code) + k->n;
  }
  oc_buf_add(out, code + at, n - at);
  free(wrap);
  free(ts.t);
}

/* }==================== */

int oc_jq_rewrite(const char *src, size_t n, oc_buf_t *out, char *err,
                  size_t errlen)
{
  lexer_t x;
  oc_buf_t lexed = OC_BUF_INIT;
  x.s = x.start = src;
  x.end = src + n;
  x.out = &lexed;
  x.err = err;
  x.errlen = errlen;
  x.depth = 0;
  x.term_end = 0;
  x.last = 0;
  if (lex_code(&x, 0)) {
    oc_buf_add(out, lexed.p, lexed.n);
    oc_buf_free(&lexed);
    return -1;
  }
  if (!lexed.oom)
    nofold(lexed.p ? lexed.p : "", lexed.n, out);
  if (lexed.oom || out->oom) {
    oc_buf_free(&lexed);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  oc_buf_free(&lexed);
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
