/*
 * jqform.c - simple forms: expressions the engine evaluates itself with
 * libjq's own primitives instead of running jq (see jqform.h). Each form's
 * results and error messages are jq 1.6's; spec/02-mapping/analysis_spec
 * compares them with jq on whole items. Owns nothing.
 */
#include "jqform.h"

#include "jqtok.h"
#include "json/json.h"

#include <stdlib.h>
#include <string.h>

/* {==================== simple forms ==================== */

/* A literal token as a value, or jv_invalid(). */
static jv literal(const oc_jq_tok_t *k)
{
  char tmp[64];
  if (k->kind == T_STRING)
    return oc_jq_token_key(k);
  if (k->kind == T_IDENT) {
    if (oc_jq_word_is(k, "true")) return jv_true();
    if (oc_jq_word_is(k, "false")) return jv_false();
    if (oc_jq_word_is(k, "null")) return jv_null();
    return jv_invalid();
  }
  if (k->kind == T_NUMBER && k->n < sizeof tmp) {
    memcpy(tmp, k->s, k->n);
    tmp[k->n] = '\0';
    return oc_json_number_jv(strtod(tmp, NULL), tmp, k->n);   /* as jq's */
  }
  return jv_invalid();
}

/* t[from..to) is a chain of plain fields: .a.b."c". */
static jv field_path(const oc_jq_tok_t *t, size_t from, size_t to)
{
  jv path;
  size_t i;
  if (from >= to)
    return jv_invalid();
  path = jv_array();
  for (i = from; i < to; i++) {
    jv key = t[i].kind == T_FIELD ? oc_jq_token_key(&t[i]) : jv_invalid();
    if (!jv_is_valid(key)) {
      jv_free(path);
      return key;
    }
    path = jv_array_append(path, key);
  }
  return path;
}

/* t[from..to) as a term of a sum: [0, literal] or [1, path]. */
static jv sum_term(const oc_jq_tok_t *t, size_t from, size_t to)
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
static jv sum_terms(const oc_jq_toks_t *ts)
{
  jv terms = jv_array();
  size_t i, from = 0;
  for (i = 0; i <= ts->n; i++) {
    jv term;
    if (i < ts->n && !(ts->t[i].kind == T_OP && oc_jq_word_is(&ts->t[i], "+")))
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
  oc_jq_toks_t ts = {NULL, 0, 0};
  size_t i, op = 0;
  out->kind = OC_JQ_COMPLEX;
  out->value = jv_invalid();
  out->path = jv_invalid();
  out->terms = jv_invalid();
  if (oc_jq_tokenize(code, n, &ts) || ts.n == 0) {
    free(ts.t);
    return;
  }
  for (i = 0; i < ts.n; i++)
    if (ts.t[i].kind == T_OP && (oc_jq_word_is(&ts.t[i], "==")
                                 || oc_jq_word_is(&ts.t[i], "!=")))
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
      out->kind = oc_jq_word_is(&ts.t[op], "==") ? OC_JQ_EQ : OC_JQ_NE;
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
