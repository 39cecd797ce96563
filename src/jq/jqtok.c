/*
 * jqtok.c - a tokenizer for jq expressions, just precise enough for the
 * analyses in jqanalyze.c and jqform.c (see jqtok.h). Owns nothing.
 */
#include "jqtok.h"

#include "json/json.h"

#include <stdlib.h>
#include <string.h>

/* {==================== tokens ==================== */

static const char *const keywords[] = {
  "as", "import", "include", "module", "def", "if", "then", "elif", "else",
  "end", "reduce", "foreach", "try", "catch", "label", "__loc__", NULL
};

int oc_jq_is_ident_start(int c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

int oc_jq_is_word(int c)
{
  return oc_jq_is_ident_start(c) || (c >= '0' && c <= '9');
}

int oc_jq_word_is(const oc_jq_tok_t *k, const char *w)
{
  return k->n == strlen(w) && !memcmp(k->s, w, k->n);
}

static int push_tok(oc_jq_toks_t *ts, int kind, const char *s, size_t n,
                    int plain)
{
  if (ts->n == ts->cap) {
    size_t cap = ts->cap ? ts->cap * 2 : 32;
    oc_jq_tok_t *nt = realloc(ts->t, cap * sizeof *nt);
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

/* q on the opening quote; returns the byte after the closing quote (or
 * end). *plain is cleared by \( and \u. */
const char *oc_jq_skip_string(const char *q, const char *end, int *plain)
{
  for (q++; q < end && *q != '"'; q++) {
    if (*q != '\\' || q + 1 >= end)
      continue;
    if (q[1] == '(') {
      *plain = 0;
      q = oc_jq_skip_code(q + 2, end);   /* on the closing ')' */
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
const char *oc_jq_skip_code(const char *q, const char *end)
{
  int depth = 0, plain;
  while (q < end) {
    if (*q == '"') {
      q = oc_jq_skip_string(q, end, &plain);
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
static int lex_dot(oc_jq_toks_t *ts, const char **qp, const char *end)
{
  const char *q = *qp, *e;
  int plain = 1;
  if (q + 1 < end && oc_jq_is_ident_start((unsigned char)q[1])) {
    for (e = q + 1; e < end && oc_jq_is_word((unsigned char)*e); e++)
      ;
    *qp = e;
    return push_tok(ts, T_FIELD, q + 1, (size_t)(e - q - 1), 1);
  }
  if (q + 1 < end && q[1] == '"') {
    e = oc_jq_skip_string(q + 1, end, &plain);
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
int oc_jq_tokenize(const char *code, size_t n, oc_jq_toks_t *ts)
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
      e = oc_jq_skip_string(q, end, &plain);
      if (push_tok(ts, T_STRING, q, (size_t)(e - q), plain))
        return -1;
      q = e;
    } else if (c >= '0' && c <= '9') {
      e = scan_number(q, end);
      if (push_tok(ts, T_NUMBER, q, (size_t)(e - q), 1))
        return -1;
      q = e;
    } else if (oc_jq_is_ident_start(c) || c == '$' || c == '@') {
      int kind = c == '$' ? T_VAR : c == '@' ? T_FORMAT : T_IDENT;
      e = q + (c == '$' || c == '@');
      while (e < end && (oc_jq_is_word((unsigned char)*e)
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
jv oc_jq_token_key(const oc_jq_tok_t *k)
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
