/*
 * jqanalyze.c - the input paths a jq expression reads (see jqanalyze.h).
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
#include "jqtok.h"

#include <stdlib.h>
#include <string.h>

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
  const oc_jq_tok_t *t;
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
static int string_parts(analysis_t *a, const oc_jq_tok_t *k, int root)
{
  const char *q = k->s + 1, *end = k->s + k->n, *close;
  while (q < end) {
    if (*q == '\\' && q + 1 < end && q[1] == '(') {
      close = oc_jq_skip_code(q + 2, end);
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
  const oc_jq_tok_t *t = a->t;
  if (dot && (t[i].kind != T_DOTIDX || ++i >= a->nt))
    return jv_invalid();
  if (i + 2 >= a->nt || t[i].kind != T_OPEN || t[i].s[0] != '['
      || t[i + 1].kind != T_STRING || t[i + 2].kind != T_CLOSE)
    return jv_invalid();
  return oc_jq_token_key(&t[i + 1]);
}

/* A chain of plain fields starting a term in root context at t[i]:
 * .a.b."c"["d"] or .["a"].b (a `?` may separate fields). Records the path;
 * returns the index of the last token used, or -1 to give up. */
static long chain(analysis_t *a, size_t i)
{
  const oc_jq_tok_t *t = a->t;
  jv path = jv_array();
  int n = 0;
  while (i < a->nt) {
    jv key;
    size_t used;
    if (t[i].kind == T_FIELD) {
      key = oc_jq_token_key(&t[i]);
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
static int harmless_ident(const oc_jq_tok_t *k,
                          const oc_jq_tok_t *next)
{
  static const char *const plain[] = {"true", "false", "null", "empty",
    "now", "env", "builtins", "infinite", "nan", "input_line_number",
    "input_filename", "input", "inputs", NULL};
  static const char *const with_args[] = {"range", "error", "first", "last",
    "limit", "isempty", "nth", "__oc_slice", "__oc_idx", NULL};
  int i;
  for (i = 0; plain[i]; i++)
    if (oc_jq_word_is(k, plain[i]))
      return 1;
  if (!next || next->kind != T_OPEN || next->s[0] != '(')
    return 0;
  for (i = 0; with_args[i]; i++)
    if (oc_jq_word_is(k, with_args[i]))
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
static int keyword(analysis_t *a, const oc_jq_tok_t *k, int *term_end)
{
  frame_t *f = &a->fr[a->top];
  *term_end = 0;
  if (oc_jq_word_is(k, "if"))
    return push_frame(a, 'i');
  if (oc_jq_word_is(k, "then") || oc_jq_word_is(k, "elif")
      || oc_jq_word_is(k, "else")) {
    if (f->open != 'i')
      return 1;
    f->root = f->base_root;
    f->seg_binds = 0;
    return 0;
  }
  if (oc_jq_word_is(k, "end")) {
    if (f->open != 'i' || a->top == 0)
      return 1;
    a->top--;
    *term_end = 1;
    return 0;
  }
  if (oc_jq_word_is(k, "as")) {
    if (f->reduce_state == 1)
      f->reduce_state = 2;
    else
      f->seg_binds = 1;
    return 0;
  }
  if (oc_jq_word_is(k, "reduce") || oc_jq_word_is(k, "foreach")) {
    f->reduce_state = 1;
    return 0;
  }
  if (oc_jq_word_is(k, "label")) {
    f->seg_binds = 1;
    return 0;
  }
  if (oc_jq_word_is(k, "try") || oc_jq_word_is(k, "catch"))
    return 0;
  if (oc_jq_word_is(k, "def"))
    return f->root;
  return 1;                      /* import, include, module, __loc__ */
}

/* An identifier/keyword/string in key position of {...}; shorthand keys
 * ({a}, {"a"}) read .a. Returns 1 to give up. */
static int object_key(analysis_t *a, size_t i)
{
  const oc_jq_tok_t *k = &a->t[i], *next = i + 1 < a->nt ? &a->t[i + 1] : NULL;
  frame_t *f = &a->fr[a->top];
  int shorthand = next && (next->kind == T_COMMA || (next->kind == T_CLOSE
                                                     && next->s[0] == '}'));
  if (k->kind == T_STRING && string_parts(a, k, f->root))
    return 1;
  if (!shorthand || !f->root)
    return 0;
  {
    jv key = k->kind == T_STRING ? oc_jq_token_key(k)
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
  const oc_jq_tok_t *k = &a->t[i], *next = i + 1 < a->nt ? &a->t[i + 1] : NULL;
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
  oc_jq_toks_t ts = {NULL, 0, 0};
  size_t i;
  int prev_end = 0, whole = 0;
  if (!a)
    return 1;
  memset(&a->fr[0], 0, sizeof a->fr[0]);
  a->fr[0].base_root = a->fr[0].root = (unsigned char)root;
  a->top = 0;
  a->paths = *paths;
  if (oc_jq_tokenize(code, n, &ts)) {
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

/* {==================== catches ==================== */

/* Can a token end a term (so that a following `[` indexes it)? */
static int ends_term(const oc_jq_tok_t *k)
{
  switch (k->kind) {
  case T_FIELD: case T_FIELD_DYN: case T_DOT: case T_DOTIDX: case T_RECURSE:
  case T_IDENT: case T_VAR: case T_STRING: case T_NUMBER: case T_FORMAT:
  case T_QUESTION:
    return 1;
  case T_CLOSE:
    return 1;
  case T_KEYWORD:
    return oc_jq_word_is(k, "end");
  default:
    return 0;
  }
}

/* Interpolations of a string token: do they catch? */
static int string_catches(const oc_jq_tok_t *k, int jq17)
{
  const char *q = k->s, *end = k->s + k->n, *close;
  if (k->plain)
    return 0;
  while (q < end) {
    if (*q == '\\' && q + 1 < end && q[1] == '(') {
      close = oc_jq_skip_code(q + 2, end);
      if (oc_jq_catches(q + 2, (size_t)(close - q - 2), jq17))
        return 1;
      q = close + 1;
    } else {
      q += *q == '\\' ? 2 : 1;
    }
  }
  return 0;
}

int oc_jq_catches(const char *code, size_t n, int jq17)
{
  oc_jq_toks_t ts = {NULL, 0, 0};
  size_t *open = NULL, top = 0, i;
  unsigned char *index = NULL;       /* per '[': an index bracket */
  int r = 0;
  if (oc_jq_tokenize(code, n, &ts) || (ts.n && !(open = malloc(ts.n
      * sizeof *open))) || (ts.n && !(index = calloc(ts.n, 1)))) {
    free(ts.t);
    free(open);
    return 1;
  }
  for (i = 0; i < ts.n && !r; i++) {
    const oc_jq_tok_t *k = &ts.t[i];
    if (k->kind == T_ASSIGN && k->n == 3 && !memcmp(k->s, "?//", 3))
      r = 1;
    else if (k->kind == T_STRING || k->kind == T_FIELD_DYN)
      r = string_catches(k, jq17);
    else if (jq17)
      continue;
    else if (k->kind == T_KEYWORD && oc_jq_word_is(k, "try"))
      r = 1;
    else if (k->kind == T_OPEN) {
      index[i] = k->s[0] == '[' && i > 0 && ends_term(&ts.t[i - 1]);
      open[top++] = i;
    } else if (k->kind == T_CLOSE) {
      if (top == 0) {
        r = 1;
        break;
      }
      top--;
      /* `]` remembers its `[`: is the `?` after it an index's? */
      index[i] = k->s[0] == ']' && index[open[top]];
    } else if (k->kind == T_QUESTION) {
      const oc_jq_tok_t *p = i > 0 ? &ts.t[i - 1] : NULL;
      r = !(p && (p->kind == T_FIELD || p->kind == T_FIELD_DYN
                  || (p->kind == T_CLOSE && index[i - 1])));
    }
  }
  free(ts.t);
  free(open);
  free(index);
  return r;
}

/* }==================== */


/* {==================== single output ==================== */

/* Builtins with at most one output per combination of their arguments'
 * outputs (and no other way to backtrack into work). */
static const char *const single_fns[] = {
  "true", "false", "null", "not", "empty", "error", "length",
  "utf8bytelength", "keys", "keys_unsorted", "values", "has", "in",
  "inside", "contains", "select", "type", "tostring", "tonumber",
  "tojson", "fromjson", "ascii_downcase", "ascii_upcase", "ltrimstr",
  "rtrimstr", "trimstr", "trim", "ltrim", "rtrim", "startswith",
  "endswith", "test", "split", "join", "sub", "gsub", "ascii", "implode",
  "explode", "reverse", "sort", "unique", "min", "max", "flatten",
  "floor", "ceil", "round", "trunc", "fabs", "sqrt", "pow", "log", "exp",
  "log10", "log2", "exp2", "exp10", "abs", "significand", "ldexp",
  "scalb", "infinite", "nan", "isinfinite", "isnan", "isnormal",
  "isvalid", "objects", "arrays", "strings", "numbers", "booleans",
  "nulls", "iterables", "scalars", "getpath", "setpath", "delpaths",
  "to_entries", "from_entries", "indices", "index", "rindex",
  "toarray", "transpose", "walk", "path", "now", "mktime", "gmtime",
  "localtime", "strftime", "strflocaltime", "strptime", "todate",
  "fromdate", "date", "todateiso8601", "fromdateiso8601", "dateadd",
  "datesub", "env", "builtins", "input_line_number", "input_filename",
  "have_decnum", "have_literal_numbers", "toboolean", "halt",
  "halt_error", "debug", "stderr", "input", "until",
  "__oc_slice", "__oc_idx", "__oc_n", NULL
};

/* Builtins whose arguments may have any number of outputs: they collect
 * them, or take the first or last. */
static const char *const collect_fns[] = {
  "map", "map_values", "first", "last", "any", "all", "isempty", "add",
  "min_by", "max_by", "sort_by", "group_by", "unique_by", "with_entries",
  "del", "pick", "IN", "INDEX", NULL
};

/* Regex builtins with one output unless given flags (a second argument). */
static const char *const one_match_fns[] = {"match", "capture", NULL};

static int word_in(const oc_jq_tok_t *k, const char *const *list)
{
  size_t i;
  for (i = 0; list[i]; i++)
    if (oc_jq_word_is(k, list[i]))
      return 1;
  return 0;
}

/* The index of the bracket closing the one opened at t[i], or nt. */
static size_t closing(const oc_jq_tok_t *t, size_t nt, size_t i, int *semi)
{
  size_t depth = 0;
  for (; i < nt; i++) {
    if (t[i].kind == T_OPEN)
      depth++;
    else if (t[i].kind == T_CLOSE && --depth == 0)
      return i;
    else if (t[i].kind == T_SEMI && depth == 1 && semi)
      *semi = 1;
  }
  return nt;
}

static int string_single(const oc_jq_tok_t *k)
{
  const char *q = k->s, *end = k->s + k->n, *close;
  if (k->plain)
    return 1;
  while (q < end) {
    if (*q == '\\' && q + 1 < end && q[1] == '(') {
      close = oc_jq_skip_code(q + 2, end);
      if (!oc_jq_single(q + 2, (size_t)(close - q - 2)))
        return 0;
      q = close + 1;
    } else {
      q += *q == '\\' ? 2 : 1;
    }
  }
  return 1;
}

/* One token of oc_jq_single; *i may skip ahead. Returns 0 when the
 * expression may have several outputs. */
static int single_step(const oc_jq_tok_t *t, size_t nt, size_t *i,
                       char *stack, size_t *top)
{
  const oc_jq_tok_t *k = &t[*i];
  int next_open = *i + 1 < nt && t[*i + 1].kind == T_OPEN
                  && t[*i + 1].s[0] == '(';
  switch (k->kind) {
  case T_RECURSE:
    return 0;
  case T_COMMA:
    return *top > 0 && stack[*top - 1] == '{';
  case T_ASSIGN:
    return !(k->n == 3 && !memcmp(k->s, "?//", 3));
  case T_STRING: case T_FIELD_DYN:
    return string_single(k);
  case T_KEYWORD:
    if (oc_jq_word_is(k, "reduce")) {
      size_t depth = 0;          /* its source may have any outputs */
      for ((*i)++; *i < nt; (*i)++) {
        if (t[*i].kind == T_OPEN)
          depth++;
        else if (t[*i].kind == T_CLOSE && depth-- == 0)
          return 0;
        else if (depth == 0 && t[*i].kind == T_KEYWORD
                 && oc_jq_word_is(&t[*i], "as"))
          return 1;
      }
      return 0;
    }
    return !(oc_jq_word_is(k, "foreach") || oc_jq_word_is(k, "label")
             || oc_jq_word_is(k, "def") || oc_jq_word_is(k, "import")
             || oc_jq_word_is(k, "include") || oc_jq_word_is(k, "module"));
  case T_IDENT:
    if (word_in(k, collect_fns)) {
      if (next_open)
        *i = closing(t, nt, *i + 1, NULL);
      return *i < nt;
    }
    if (word_in(k, one_match_fns)) {
      int semi = 0;
      return next_open && (closing(t, nt, *i + 1, &semi), !semi);
    }
    return word_in(k, single_fns);
  case T_OPEN:
    if (k->s[0] == '[' && !(*i > 0 && (t[*i - 1].kind == T_DOTIDX
                                       || ends_term(&t[*i - 1])))) {
      *i = closing(t, nt, *i, NULL);         /* [...] collects */
      return *i < nt;
    }
    if (k->s[0] == '[' && *i + 1 < nt && t[*i + 1].kind == T_CLOSE)
      return 0;                              /* .[] */
    if (*top >= MAX_FRAMES)
      return 0;
    stack[(*top)++] = k->s[0];
    return 1;
  case T_CLOSE:
    if (*top == 0)
      return 0;
    (*top)--;
    return 1;
  default:
    return 1;
  }
}

int oc_jq_single(const char *code, size_t n)
{
  oc_jq_toks_t ts = {NULL, 0, 0};
  char stack[MAX_FRAMES];
  size_t i, top = 0;
  int r = 1;
  if (oc_jq_tokenize(code, n, &ts))
    return 0;
  for (i = 0; i < ts.n && r; i++)
    r = single_step(ts.t, ts.n, &i, stack, &top);
  free(ts.t);
  return r && top == 0;
}

/* }==================== */

/* {==================== paths and division ==================== */

/* Builtins of libjq 1.6 that reach its own path(...) / _modify with
 * paths that can still be resumed when an error passes (the prelude's
 * versions of path, paths, tostream, _modify... collect them first). */
static const char *const raw_path_fns[] = {
  "map_values", "INDEX", "with_entries", "from_entries", NULL
};

/* Other builtins known not to reach a raw path expression. */
static const char *const path_free_fns[] = {
  "range", "recurse", "limit", "nth", "splits", "scan", "paths",
  "leaf_paths", "while", "repeat", "tostream", "combinations", "skip",
  NULL
};

static int tokens_path_free(const oc_jq_toks_t *ts)
{
  size_t i;
  for (i = 0; i < ts->n; i++) {
    const oc_jq_tok_t *k = &ts->t[i];
    if ((k->kind == T_STRING || k->kind == T_FIELD_DYN) && !k->plain) {
      const char *q = k->s, *end = k->s + k->n, *close;
      while (q < end) {
        if (*q == '\\' && q + 1 < end && q[1] == '(') {
          close = oc_jq_skip_code(q + 2, end);
          if (!oc_jq_path_free(q + 2, (size_t)(close - q - 2)))
            return 0;
          q = close + 1;
        } else {
          q += *q == '\\' ? 2 : 1;
        }
      }
    } else if (k->kind == T_IDENT
               && (word_in(k, raw_path_fns)
                   || !(word_in(k, single_fns) || word_in(k, collect_fns)
                        || word_in(k, path_free_fns)
                        || word_in(k, one_match_fns)))) {
      return 0;
    }
  }
  return 1;
}

int oc_jq_path_free(const char *code, size_t n)
{
  oc_jq_toks_t ts = {NULL, 0, 0};
  int r;
  if (oc_jq_tokenize(code, n, &ts))
    return 0;
  r = tokens_path_free(&ts);
  free(ts.t);
  return r;
}

int oc_jq_may_split(const char *code, size_t n)
{
  oc_jq_toks_t ts = {NULL, 0, 0};
  size_t i;
  int r = 0;
  if (oc_jq_tokenize(code, n, &ts))
    return 1;
  for (i = 0; i < ts.n && !r; i++) {
    const oc_jq_tok_t *k = &ts.t[i];
    if ((k->kind == T_OP && k->n == 1 && k->s[0] == '/')
        || (k->kind == T_ASSIGN && k->n == 2 && !memcmp(k->s, "/=", 2)))
      r = !(i + 1 < ts.n && ts.t[i + 1].kind == T_NUMBER);
    else if ((k->kind == T_STRING || k->kind == T_FIELD_DYN) && !k->plain)
      r = 1;                     /* interpolations: not worth a look */
  }
  free(ts.t);
  return r;
}

/* }==================== */
