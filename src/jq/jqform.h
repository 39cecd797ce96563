/*
 * jqform.h - simple forms of mapping expressions, evaluated by the engine
 * with libjq's own primitives (jv_get for `.a.b`, jv_equal for ==, jq
 * 1.6's `+` rules with jv_string_concat & co.): a literal, a path, a path
 * compared with a literal, or a sum of literals and paths. Results and
 * error messages are jq's. Input: an expression already rewritten by
 * oc_jq_rewrite.
 */
#ifndef OC_JQFORM_H
#define OC_JQFORM_H

#include <stddef.h>
#include <jv.h>

/* Simple forms. */
enum {
  OC_JQ_COMPLEX = 0,             /* run it with jq */
  OC_JQ_CONST,                   /* "x", 5, true, false, null */
  OC_JQ_PATH,                    /* .a, .a.b, ."a" */
  OC_JQ_EQ,                      /* path == const, const == path */
  OC_JQ_NE,                      /* != */
  OC_JQ_PLUS                     /* t + t + ...: each a const or a path */
};

typedef struct oc_jq_form {
  int kind;
  jv value;                      /* CONST, EQ, NE: the literal */
  jv path;                       /* PATH, EQ, NE: array of keys */
  jv terms;                      /* PLUS: [[0, const] | [1, path], ...] */
} oc_jq_form_t;

/* Recognise a simple form. Always fills out (value/path/terms invalid
 * when not used); the caller frees them with oc_jq_form_free. */
void oc_jq_simple_form(const char *code, size_t n, oc_jq_form_t *out);
void oc_jq_form_free(oc_jq_form_t *f);

/* Evaluate a simple form on input (borrowed): jq's first (and only)
 * output, or jv_invalid_with_msg(...) with jq's own error message. */
jv oc_jq_form_eval(const oc_jq_form_t *f, jv input);

#endif
