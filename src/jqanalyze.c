/*
 * jqanalyze.c - input paths read by a jq expression, and simple forms
 * (see jqanalyze.h).
 *
 * The path analysis tracks, token by token, whether the current input of
 * the expression is still the item itself ("root"): it stays root across
 * `,` `+` `==` `and` `//` `if/then/else` `[...]` `{...}` `(...)`, string
 * interpolation and index expressions, and stops being root after a `|`
 * (unless the segment before it is an `as` / `label` binding), inside
 * reduce/foreach update clauses, and inside arguments of functions applied
 * to something else than the item. A field chain `.a.b` that starts a term
 * in root context records the path [a, b]. Anything else that touches the
 * root (`.`, `..`, `.[expr]`, `keys`, `select(...)`, `.a |= ...`, `def`,
 * `@base64` alone...) makes the answer "whole input". Uncertain spots are
 * treated as root, which can only add paths or give up: never lose one.
 *
 * Owns nothing.
 */
#include "jqanalyze.h"

#include "jqlex.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* {==================== tokens ==================== */

enum {
  T_FIELD,                       /* .a or ."a" (key in str/n) */
  T_FIELD_DYN,                   /* ."...\(...)..." or with \u escapes */
  T_DOT, T_DOTIDX, T_RECURSE,    /* .  .[  .. */
  T_IDENT, T_KEYWORD, T_VAR, T_FORMAT, T_STRING, T_NUMBER,
  T_PIPE, T_COMMA, T_COLON, T_SEMI, T_QUESTION, T_ASSIGN, T_OP,
  T_OPEN, T_CLOSE
};

typedef struct tok {
  int kind;
  const char *s;                 /* token text (for T_FIELD: the key) */
  size_t n;
  int plain;                     /* T_STRING/T_FIELD: no \( and no \u */
} tok_t;

typedef struct toks {
  tok_t *t;
  size_t n, cap;
} toks_t;

static const char *const keywords[] = {
  "as", "import", "include", "module", "def", "if", "then", "elif", "else",
  "end", "reduce", "foreach", "try", "catch", "label", "__loc__", NULL
};

static int is_ident_start(int c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_word(int c)
{
  return is_ident_start(c) || (c >= '0' && c <= '9');
}

static int word_is(const tok_t *k, const char *w)
{
  return k->n == strlen(w) && !memcmp(k->s, w, k->n);
}

static int push_tok(toks_t *ts, int kind, const char *s, size_t n, int plain)
{
  if (ts->n == ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 32;
    tok_t *nt = realloc(ts->t, cap * sizeof *nt);
    if (!nt)
      return -1;
    ts->t = nt;
    ts->cap = cap;
  }
  ts->t[ts->n].kind = kind;
  ts->t[ts->n].s = s;
  ts->t[ts->n].n = n;
  ts->t[ts->n].plain = plain;
  ts->n++;
  return 0;
}

static const char *skip_code(const char *q, const char *end);

/* q on the opening quote; returns the byte after the closing quote (or
 * end). *plain is cleared by \( and \u. */
static const char *skip_string(const char *q, const char *end, int *plain)
{
  for (q++; q < end && *q != '"'; q++) {
    if (*q != '\\' || q + 1 >= end)
      continue;
    if (q[1] == '(') {
      *plain = 0;
      q = skip_code(q + 2, end);   /* on the closing ')' */
      if (q >= end)
        return end;
    } else {
      if (q[1] == 'u')
        *plain = 0;
      q++;
    }
  }
  return q < end ? q + 1 : end;
}

/* Code until the ')' that closes an interpolation; returns it (or end). */
static const char *skip_code(const char *q, const char *end)
{
  int depth = 0, plain;
  while (q < end) {
    if (*q == '"') {
      q = skip_string(q, end, &plain);
      continue;
    }
    if (*q == '#') {
      while (q < end && *q != '\n')
        q++;
      continue;
    }
    if (*q == '(' || *q == '[' || *q == '{')
      depth++;
    else if (*q == ')' || *q == ']' || *q == '}') {
      if (depth == 0)
        return q;
      depth--;
    }
    q++;
  }
  return end;
}

static const char *scan_number(const char *q, const char *end)
{
  while (q < end && *q >= '0' && *q <= '9')
    q++;
  if (q < end && *q == '.')
    for (q++; q < end && *q >= '0' && *q <= '9'; q++)
      ;
  if (q < end && (*q == 'e' || *q == 'E')) {
    const char *e = q + 1;
    if (e < end && (*e == '+' || *e == '-'))
      e++;
    if (e < end && *e >= '0' && *e <= '9') {
      for (q = e; q < end && *q >= '0' && *q <= '9'; q++)
        ;
    }
  }
  return q;
}

/* Operators, longest first. */
static const struct { const char *op; int kind; } ops[] = {
  {"?//", T_ASSIGN}, {"//=", T_ASSIGN}, {"|=", T_ASSIGN}, {"+=", T_ASSIGN},
  {"-=", T_ASSIGN}, {"*=", T_ASSIGN}, {"/=", T_ASSIGN}, {"%=", T_ASSIGN},
  {"==", T_OP}, {"!=", T_OP}, {"<=", T_OP}, {">=", T_OP}, {"//", T_OP},
  {"=", T_ASSIGN}, {"|", T_PIPE}, {",", T_COMMA}, {":", T_COLON},
  {";", T_SEMI}, {"?", T_QUESTION}, {"<", T_OP}, {">", T_OP},
  {"+", T_OP}, {"-", T_OP}, {"*", T_OP}, {"/", T_OP}, {"%", T_OP},
  {NULL, 0}
};

/* A token starting with '.': field, .[ , .., number or bare dot. */
static int lex_dot(toks_t *ts, const char **qp, const char *end)
{
  const char *q = *qp, *e;
  int plain = 1;
  if (q + 1 < end && is_ident_start((unsigned char)q[1])) {
    for (e = q + 1; e < end && is_word((unsigned char)*e); e++)
      ;
    *qp = e;
    return push_tok(ts, T_FIELD, q + 1, (size_t)(e - q - 1), 1);
  }
  if (q + 1 < end && q[1] == '"') {
    e = skip_string(q + 1, end, &plain);
    *qp = e;
    return push_tok(ts, plain ? T_FIELD : T_FIELD_DYN, q + 1,
                    (size_t)(e - q - 1), plain);
  }
  if (q + 1 < end && q[1] >= '0' && q[1] <= '9') {
    *qp = scan_number(q, end);
    return push_tok(ts, T_NUMBER, q, (size_t)(*qp - q), 1);
  }
  if (q + 1 < end && q[1] == '.') {
    *qp = q + 2;
    return push_tok(ts, T_RECURSE, q, 2, 1);
  }
  *qp = q + 1;
  return push_tok(ts, q + 1 < end && q[1] == '[' ? T_DOTIDX : T_DOT, q, 1,
                  1);
}

/* Tokenise code[0..n). Returns 0, or -1 (memory, or a byte we do not
 * know: the caller then assumes the worst). */
static int tokenize(const char *code, size_t n, toks_t *ts)
{
  const char *q = code, *end = code + n, *e;
  int i, plain;
  while (q < end) {
    unsigned char c = (unsigned char)*q;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      q++;
    } else if (c == '#') {
      while (q < end && *q != '\n')
        q++;
    } else if (c == '.') {
      if (lex_dot(ts, &q, end))
        return -1;
    } else if (c == '"') {
      plain = 1;
      e = skip_string(q, end, &plain);
      if (push_tok(ts, T_STRING, q, (size_t)(e - q), plain))
        return -1;
      q = e;
    } else if (c >= '0' && c <= '9') {
      e = scan_number(q, end);
      if (push_tok(ts, T_NUMBER, q, (size_t)(e - q), 1))
        return -1;
      q = e;
    } else if (is_ident_start(c) || c == '$' || c == '@') {
      int kind = c == '$' ? T_VAR : c == '@' ? T_FORMAT : T_IDENT;
      e = q + (c == '$' || c == '@');
      while (e < end && (is_word((unsigned char)*e)
                         || (*e == ':' && e + 1 < end && e[1] == ':')))
        e += *e == ':' ? 2 : 1;
      if (kind == T_IDENT)
        for (i = 0; keywords[i]; i++)
          if ((size_t)(e - q) == strlen(keywords[i])
              && !memcmp(q, keywords[i], (size_t)(e - q)))
            kind = T_KEYWORD;
      if (kind == T_IDENT && ((e - q == 3 && !memcmp(q, "and", 3))
                              || (e - q == 2 && !memcmp(q, "or", 2))))
        kind = T_OP;
      if (push_tok(ts, kind, q, (size_t)(e - q), 1))
        return -1;
      q = e;
    } else if (strchr("([{", c)) {
      if (push_tok(ts, T_OPEN, q++, 1, 1))
        return -1;
    } else if (strchr(")]}", c)) {
      if (push_tok(ts, T_CLOSE, q++, 1, 1))
        return -1;
    } else {
      for (i = 0; ops[i].op; i++) {
        size_t k = strlen(ops[i].op);
        if ((size_t)(end - q) >= k && !memcmp(q, ops[i].op, k))
          break;
      }
      if (!ops[i].op || push_tok(ts, ops[i].kind, q, strlen(ops[i].op), 1))
        return -1;
      q += strlen(ops[i].op);
    }
  }
  return 0;
}

/* The key of a plain T_FIELD / T_STRING token as a jv string, or
 * jv_invalid() when it cannot be decoded exactly as jq would. */
static jv token_key(const tok_t *k)
{
  char err[OC_ERR_SIZE];
  jv v;
  if (k->kind == T_FIELD && k->s[0] != '"')
    return jv_string_sized(k->s, (int)k->n);
  if (!k->plain)
    return jv_invalid();
  v = oc_json_to_jv(k->s, k->n, 1, NULL, err, sizeof err);
  if (jv_get_kind(v) != JV_KIND_STRING) {
    jv_free(v);
    return jv_invalid();
  }
  return v;
}

/* }==================== */

/* {==================== input paths ==================== */

#define MAX_FRAMES (OC_JQLEX_MAX_NESTING * 2)

typedef struct frame {
  char open;                     /* ( [ { i(f) or 0 (top) */
  unsigned char base_root, root; /* input is the item: at start / now */
  unsigned char seg_binds;       /* `as`/`label` in this pipe segment */
  unsigned char reduce_args;     /* (INIT; UPDATE...) of reduce/foreach */
  unsigned char obj_key;         /* in {...}: a key comes next */
  unsigned char reduce_state;    /* 1: after reduce, 2: after its `as` */
} frame_t;

typedef struct analysis {
  const tok_t *t;
  size_t nt;
  frame_t fr[MAX_FRAMES];
  int top;
  jv paths;
  int whole;                     /* gave up */
} analysis_t;

static int analyze(const char *code, size_t n, int root, jv *paths);

static void add_path(analysis_t *a, jv path)
{
  a->paths = jv_array_append(a->paths, path);
}

/* The interpolations of a string token, analysed in context root. */
static int string_parts(analysis_t *a, const tok_t *k, int root)
{
  const char *q = k->s + 1, *end = k->s + k->n, *close;
  while (q < end) {
    if (*q == '\\' && q + 1 < end && q[1] == '(') {
      close = skip_code(q + 2, end);
      if (analyze(q + 2, (size_t)(close - q - 2), root, &a->paths))
        return 1;
      q = close + 1;
    } else if (*q == '"') {
      break;
    } else {
      q += *q == '\\' ? 2 : 1;
    }
  }
  return 0;
}

/* t[i..i+3] is `.["key"]` (dot = 1) or t[i..i+2] is `["key"]` (dot = 0)
 * with a plain string: its key, else jv_invalid(). */
static jv literal_index(const analysis_t *a, size_t i, int dot)
{
  const tok_t *t = a->t;
  if (dot && (t[i].kind != T_DOTIDX || ++i >= a->nt))
    return jv_invalid();
  if (i + 2 >= a->nt || t[i].kind != T_OPEN || t[i].s[0] != '['
      || t[i + 1].kind != T_STRING || t[i + 2].kind != T_CLOSE)
    return jv_invalid();
  return token_key(&t[i + 1]);
}

/* A chain of plain fields starting a term in root context at t[i]:
 * .a.b."c"["d"] or .["a"].b (a `?` may separate fields). Records the path;
 * returns the index of the last token used, or -1 to give up. */
static long chain(analysis_t *a, size_t i)
{
  const tok_t *t = a->t;
  jv path = jv_array();
  int n = 0;
  while (i < a->nt) {
    jv key;
    size_t used;
    if (t[i].kind == T_FIELD) {
      key = token_key(&t[i]);
      used = 1;
    } else if (n == 0 && t[i].kind == T_DOTIDX) {
      key = literal_index(a, i, 1);
      used = 4;
    } else if (n > 0 && t[i].kind == T_OPEN) {
      key = literal_index(a, i, 0);
      used = 3;
    } else {
      break;
    }
    if (!jv_is_valid(key)) {
      jv_free(key);
      break;
    }
    path = jv_array_append(path, key);
    n++;
    i += used;
    if (i + 1 < a->nt && t[i].kind == T_QUESTION && t[i + 1].kind == T_FIELD)
      i++;
  }
  if (n == 0) {
    jv_free(path);
    return -1;
  }
  add_path(a, path);
  return (long)i - 1;
}

/* Identifiers that may start a term on the item without reading it:
 * literals, generators of their own, and functions whose arguments are
 * evaluated on the item and whose result derives only from them. */
static int harmless_ident(const tok_t *k, const tok_t *next)
{
  static const char *const plain[] = {"true", "false", "null", "empty",
    "now", "env", "builtins", "infinite", "nan", "input_line_number",
    "input_filename", "input", "inputs", NULL};
  static const char *const with_args[] = {"range", "error", "first", "last",
    "limit", "isempty", "nth", NULL};
  int i;
  for (i = 0; plain[i]; i++)
    if (word_is(k, plain[i]))
      return 1;
  if (!next || next->kind != T_OPEN || next->s[0] != '(')
    return 0;
  for (i = 0; with_args[i]; i++)
    if (word_is(k, with_args[i]))
      return 1;
  return 0;
}

static int push_frame(analysis_t *a, char open)
{
  frame_t *f = &a->fr[a->top], *g;
  if (a->top + 1 >= MAX_FRAMES)
    return 1;
  g = &a->fr[++a->top];
  memset(g, 0, sizeof *g);
  g->open = open;
  g->base_root = g->root = f->root;
  g->obj_key = open == '{';
  if (open == '(' && f->reduce_state == 2) {
    g->reduce_args = 1;
    f->reduce_state = 0;
  }
  return 0;
}

/* A keyword; returns 1 to give up. *term_end says whether it ends a
 * term (only `end` does). */
static int keyword(analysis_t *a, const tok_t *k, int *term_end)
{
  frame_t *f = &a->fr[a->top];
  *term_end = 0;
  if (word_is(k, "if"))
    return push_frame(a, 'i');
  if (word_is(k, "then") || word_is(k, "elif") || word_is(k, "else")) {
    if (f->open != 'i')
      return 1;
    f->root = f->base_root;
    f->seg_binds = 0;
    return 0;
  }
  if (word_is(k, "end")) {
    if (f->open != 'i' || a->top == 0)
      return 1;
    a->top--;
    *term_end = 1;
    return 0;
  }
  if (word_is(k, "as")) {
    if (f->reduce_state == 1)
      f->reduce_state = 2;
    else
      f->seg_binds = 1;
    return 0;
  }
  if (word_is(k, "reduce") || word_is(k, "foreach")) {
    f->reduce_state = 1;
    return 0;
  }
  if (word_is(k, "label")) {
    f->seg_binds = 1;
    return 0;
  }
  if (word_is(k, "try") || word_is(k, "catch"))
    return 0;
  if (word_is(k, "def"))
    return f->root;
  return 1;                      /* import, include, module, __loc__ */
}

/* An identifier/keyword/string in key position of {...}; shorthand keys
 * ({a}, {"a"}) read .a. Returns 1 to give up. */
static int object_key(analysis_t *a, size_t i)
{
  const tok_t *k = &a->t[i], *next = i + 1 < a->nt ? &a->t[i + 1] : NULL;
  frame_t *f = &a->fr[a->top];
  int shorthand = next && (next->kind == T_COMMA || (next->kind == T_CLOSE
                                                     && next->s[0] == '}'));
  if (k->kind == T_STRING && string_parts(a, k, f->root))
    return 1;
  if (!shorthand || !f->root)
    return 0;
  {
    jv key = k->kind == T_STRING ? token_key(k)
             : jv_string_sized(k->s, (int)k->n);
    if (!jv_is_valid(key)) {
      jv_free(key);
      return 1;
    }
    add_path(a, jv_array_append(jv_array(), key));
  }
  return 0;
}

/* One token at index *ip; returns 1 to give up. */
static int step(analysis_t *a, size_t *ip, int *prev_end)
{
  size_t i = *ip;
  const tok_t *k = &a->t[i], *next = i + 1 < a->nt ? &a->t[i + 1] : NULL;
  frame_t *f = &a->fr[a->top];
  int start = !*prev_end, end_term = 0;
  if (f->open == '{' && f->obj_key && start
      && (k->kind == T_IDENT || k->kind == T_KEYWORD || k->kind == T_STRING
          || k->kind == T_VAR)) {
    *prev_end = 1;
    return k->kind == T_VAR ? 0 : object_key(a, i);
  }
  switch (k->kind) {
  case T_FIELD: case T_FIELD_DYN: case T_DOTIDX:
    if (start && f->root) {
      long last = k->kind == T_FIELD_DYN ? -1 : chain(a, i);
      if (last < 0)
        return 1;
      *ip = (size_t)last;
    } else if (k->kind == T_FIELD_DYN && string_parts(a, k, f->root)) {
      return 1;
    }
    *prev_end = 1;
    return 0;
  case T_DOT: case T_RECURSE:
    *prev_end = 1;
    return f->root;
  case T_STRING:
    *prev_end = 1;
    return string_parts(a, k, f->root);
  case T_NUMBER: case T_QUESTION:
    *prev_end = 1;
    return 0;
  case T_VAR:
    *prev_end = 1;
    return k->n >= 5 && !memcmp(k->s, "$__oc", 5);
  case T_FORMAT:
    *prev_end = 0;               /* a string may follow */
    return start && f->root && (!next || next->kind != T_STRING);
  case T_IDENT:
    *prev_end = 1;
    return start && f->root && !harmless_ident(k, next);
  case T_KEYWORD:
    if (keyword(a, k, &end_term))
      return 1;
    *prev_end = end_term;
    return 0;
  case T_PIPE:
    if (f->seg_binds)
      f->seg_binds = 0;
    else
      f->root = 0;
    *prev_end = 0;
    return 0;
  case T_COMMA:
    f->root = f->base_root;
    f->seg_binds = 0;
    f->obj_key = f->open == '{';
    *prev_end = 0;
    return 0;
  case T_COLON:
    if (f->open == '{')
      f->obj_key = 0;
    *prev_end = 0;
    return 0;
  case T_SEMI:
    f->root = f->reduce_args ? 0 : f->base_root;
    f->seg_binds = 0;
    *prev_end = 0;
    return 0;
  case T_ASSIGN:
    *prev_end = 0;
    return f->root;
  case T_OP:
    *prev_end = 0;
    return 0;
  case T_OPEN:
    *prev_end = 0;
    return push_frame(a, k->s[0]);
  case T_CLOSE:
    if (a->top == 0 || f->open != (k->s[0] == ')' ? '('
                                    : k->s[0] == ']' ? '[' : '{'))
      return 1;
    a->top--;
    *prev_end = 1;
    return 0;
  default:
    return 1;
  }
}

static int analyze(const char *code, size_t n, int root, jv *paths)
{
  analysis_t *a = malloc(sizeof *a);
  toks_t ts = {NULL, 0, 0};
  size_t i;
  int prev_end = 0, whole = 0;
  if (!a)
    return 1;
  memset(&a->fr[0], 0, sizeof a->fr[0]);
  a->fr[0].base_root = a->fr[0].root = (unsigned char)root;
  a->top = 0;
  a->paths = *paths;
  if (tokenize(code, n, &ts)) {
    whole = 1;
  } else {
    a->t = ts.t;
    a->nt = ts.n;
    for (i = 0; i < ts.n && !whole; i++)
      whole = step(a, &i, &prev_end);
    if (a->top != 0)
      whole = 1;
  }
  *paths = a->paths;
  free(ts.t);
  free(a);
  return whole;
}

int oc_jq_input_paths(const char *code, size_t n, jv *paths)
{
  return analyze(code, n, 1, paths);
}

/* }==================== */

/* {==================== simple forms ==================== */

/* A literal token as a value, or jv_invalid(). */
static jv literal(const tok_t *k)
{
  char tmp[64];
  if (k->kind == T_STRING)
    return token_key(k);
  if (k->kind == T_IDENT) {
    if (word_is(k, "true")) return jv_true();
    if (word_is(k, "false")) return jv_false();
    if (word_is(k, "null")) return jv_null();
    return jv_invalid();
  }
  if (k->kind == T_NUMBER && k->n < sizeof tmp) {
    memcpy(tmp, k->s, k->n);
    tmp[k->n] = '\0';
    return jv_number(strtod(tmp, NULL));
  }
  return jv_invalid();
}

/* t[from..to) is a chain of plain fields: .a.b."c". */
static jv field_path(const tok_t *t, size_t from, size_t to)
{
  jv path = jv_array();
  size_t i;
  if (from >= to)
    return jv_invalid();
  for (i = from; i < to; i++) {
    jv key = t[i].kind == T_FIELD ? token_key(&t[i]) : jv_invalid();
    if (!jv_is_valid(key)) {
      jv_free(path);
      return key;
    }
    path = jv_array_append(path, key);
  }
  return path;
}

/* t[from..to) as a term of a sum: [0, literal] or [1, path]. */
static jv sum_term(const tok_t *t, size_t from, size_t to)
{
  jv v = to == from + 1 ? literal(&t[from]) : jv_invalid();
  if (jv_is_valid(v))
    return jv_array_append(jv_array_append(jv_array(), jv_number(0)), v);
  jv_free(v);
  v = field_path(t, from, to);
  if (!jv_is_valid(v))
    return v;
  return jv_array_append(jv_array_append(jv_array(), jv_number(1)), v);
}

/* t1 + t2 + ...: the terms, or jv_invalid(). */
static jv sum_terms(const toks_t *ts)
{
  jv terms = jv_array();
  size_t i, from = 0;
  for (i = 0; i <= ts->n; i++) {
    jv term;
    if (i < ts->n && !(ts->t[i].kind == T_OP && word_is(&ts->t[i], "+")))
      continue;
    term = sum_term(ts->t, from, i);
    if (!jv_is_valid(term)) {
      jv_free(terms);
      return term;
    }
    terms = jv_array_append(terms, term);
    from = i + 1;
  }
  if (jv_array_length(jv_copy(terms)) < 2) {
    jv_free(terms);
    return jv_invalid();
  }
  return terms;
}

void oc_jq_form_free(oc_jq_form_t *f)
{
  jv_free(f->value);
  jv_free(f->path);
  jv_free(f->terms);
  f->value = f->path = f->terms = jv_invalid();
  f->kind = OC_JQ_COMPLEX;
}

void oc_jq_simple_form(const char *code, size_t n, oc_jq_form_t *out)
{
  toks_t ts = {NULL, 0, 0};
  size_t i, op = 0;
  out->kind = OC_JQ_COMPLEX;
  out->value = jv_invalid();
  out->path = jv_invalid();
  out->terms = jv_invalid();
  if (tokenize(code, n, &ts) || ts.n == 0) {
    free(ts.t);
    return;
  }
  for (i = 0; i < ts.n; i++)
    if (ts.t[i].kind == T_OP && (word_is(&ts.t[i], "==")
                                 || word_is(&ts.t[i], "!=")))
      op = op ? ts.n : i;        /* a second one: not simple */
  if (op == 0 && ts.n == 1 && jv_is_valid(out->value = literal(&ts.t[0]))) {
    out->kind = OC_JQ_CONST;
  } else if (op == 0 && ts.n >= 1) {
    jv_free(out->value);
    out->value = jv_invalid();
    out->path = field_path(ts.t, 0, ts.n);
    out->kind = jv_is_valid(out->path) ? OC_JQ_PATH : OC_JQ_COMPLEX;
    if (out->kind == OC_JQ_COMPLEX) {
      out->terms = sum_terms(&ts);
      out->kind = jv_is_valid(out->terms) ? OC_JQ_PLUS : OC_JQ_COMPLEX;
    }
  } else if (op > 0 && op < ts.n) {
    int lit_left = op == 1 && jv_is_valid(out->value = literal(&ts.t[0]));
    if (!lit_left && op + 2 == ts.n) {
      jv_free(out->value);
      out->value = literal(&ts.t[op + 1]);
    }
    out->path = lit_left ? field_path(ts.t, op + 1, ts.n)
                : op + 2 == ts.n ? field_path(ts.t, 0, op) : jv_invalid();
    if (jv_is_valid(out->value) && jv_is_valid(out->path))
      out->kind = word_is(&ts.t[op], "==") ? OC_JQ_EQ : OC_JQ_NE;
  }
  if (out->kind == OC_JQ_COMPLEX)
    oc_jq_form_free(out);
  free(ts.t);
}

static jv get_path(jv path, jv v)
{
  int i, n = jv_array_length(jv_copy(path));
  for (i = 0; i < n && jv_is_valid(v); i++)
    v = jv_get(v, jv_array_get(jv_copy(path), i));
  return v;
}

/* jq 1.6's `+` (f_plus in builtin.c), message included. */
static jv plus(jv a, jv b)
{
  jv_kind ka = jv_get_kind(a), kb = jv_get_kind(b);
  char b1[15], b2[15];
  jv err;
  if (ka == JV_KIND_NULL) {
    jv_free(a);
    return b;
  }
  if (kb == JV_KIND_NULL) {
    jv_free(b);
    return a;
  }
  if (ka == kb && ka == JV_KIND_NUMBER) {
    double d = jv_number_value(a) + jv_number_value(b);
    jv_free(a);
    jv_free(b);
    return jv_number(d);
  }
  if (ka == kb && ka == JV_KIND_STRING)
    return jv_string_concat(a, b);
  if (ka == kb && ka == JV_KIND_ARRAY)
    return jv_array_concat(a, b);
  if (ka == kb && ka == JV_KIND_OBJECT)
    return jv_object_merge(a, b);
  err = jv_invalid_with_msg(jv_string_fmt("%s (%s) and %s (%s) cannot be "
    "added", jv_kind_name(ka), jv_dump_string_trunc(jv_copy(a), b1, sizeof b1),
    jv_kind_name(kb), jv_dump_string_trunc(jv_copy(b), b2, sizeof b2)));
  jv_free(a);
  jv_free(b);
  return err;
}

/* A sum: jq evaluates the right operand of `+` first, so the terms are
 * evaluated right to left (the rightmost failing one gives the error),
 * then added left to right. */
static jv eval_sum(jv terms, jv input)
{
  int i, n = jv_array_length(jv_copy(terms));
  jv *v = n > 0 ? malloc(sizeof(jv) * (size_t)n) : NULL, acc;
  if (!v)
    return jv_invalid_with_msg(jv_string("out of memory"));
  for (i = n - 1; i >= 0; i--) {
    jv term = jv_array_get(jv_copy(terms), i);
    jv kind = jv_array_get(jv_copy(term), 0), x = jv_array_get(term, 1);
    if (jv_number_value(kind) == 0) {
      v[i] = x;
    } else {
      v[i] = get_path(x, jv_copy(input));
      jv_free(x);
    }
    if (!jv_is_valid(v[i])) {
      jv err = v[i];
      for (i++; i < n; i++)
        jv_free(v[i]);
      free(v);
      return err;
    }
  }
  acc = v[0];
  for (i = 1; i < n; i++) {
    if (jv_is_valid(acc))
      acc = plus(acc, v[i]);
    else
      jv_free(v[i]);
  }
  free(v);
  return acc;
}

jv oc_jq_form_eval(const oc_jq_form_t *f, jv input)
{
  jv v;
  int eq;
  switch (f->kind) {
  case OC_JQ_CONST:
    return jv_copy(f->value);
  case OC_JQ_PATH:
    return get_path(f->path, jv_copy(input));
  case OC_JQ_EQ: case OC_JQ_NE:
    v = get_path(f->path, jv_copy(input));
    if (!jv_is_valid(v))
      return v;
    eq = jv_equal(v, jv_copy(f->value));
    return jv_bool(f->kind == OC_JQ_EQ ? eq : !eq);
  case OC_JQ_PLUS:
    return eval_sum(f->terms, input);
  default:
    return jv_invalid_with_msg(jv_string("BUG: not a simple form"));
  }
}

/* }==================== */
