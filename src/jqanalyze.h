/*
 * jqanalyze.h - static facts about a mapping expression that let the
 * engine do less work than running jq on the whole raw item:
 *
 *   - the input paths it reads (so parsing materialises only those), and
 *   - whether it is a simple form the engine evaluates itself with libjq's
 *     own primitives (jv_get for `.a.b`, jv_equal for ==, jq 1.6's `+`
 *     rules with jv_string_concat & co.): a literal, a path, a path
 *     compared with a literal, or a sum of literals and paths. Results and
 *     error messages are jq's (spec/02-mapping checks them against jq).
 *
 * Both analyses are conservative: when in doubt the expression "reads the
 * whole input" and is "not simple". Input: an expression already rewritten
 * by oc_jq_rewrite (no single-quoted literals, balanced brackets).
 */
#ifndef OC_JQANALYZE_H
#define OC_JQANALYZE_H

#include <stddef.h>
#include <jv.h>

/* Append to *paths (a jv array, consumed and replaced) one array of keys
 * per input path the expression reads, e.g. [["a","b"],["c"]] for
 * `.a.b + .c`: the expression observes nothing of its input but the
 * subtrees at those paths (and, along them, the lookups). Returns 0, or 1
 * when it may read its input in any other way (`.`, `..`, `keys`, `.[]`,
 * a function applied to the input, `def`, ...): then *paths is unusable. */
int oc_jq_input_paths(const char *code, size_t n, jv *paths);

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
