/*
 * jqtok.h - the token view of a jq expression shared by jqanalyze.c (input
 * paths) and jqform.c (simple forms). Internal to the engine.
 */
#ifndef OC_JQTOK_H
#define OC_JQTOK_H

#include <stddef.h>
#include <jv.h>

enum {
  T_FIELD,                       /* .a or ."a" (key in str/n) */
  T_FIELD_DYN,                   /* ."...\(...)..." or with \u escapes */
  T_DOT, T_DOTIDX, T_RECURSE,    /* .  .[  .. */
  T_IDENT, T_KEYWORD, T_VAR, T_FORMAT, T_STRING, T_NUMBER,
  T_PIPE, T_COMMA, T_COLON, T_SEMI, T_QUESTION, T_ASSIGN, T_OP,
  T_OPEN, T_CLOSE
};

typedef struct oc_jq_tok {
  int kind;
  const char *s;                 /* token text (for T_FIELD: the key) */
  size_t n;
  int plain;                     /* T_STRING/T_FIELD: no \( and no \u */
} oc_jq_tok_t;

typedef struct oc_jq_toks {
  oc_jq_tok_t *t;
  size_t n, cap;
} oc_jq_toks_t;

/* Tokenise code[0..n) into ts (ts->t is malloc'ed: free it). Returns 0, or
 * -1 (memory, or a byte we do not know: the caller then assumes the
 * worst). Comments are dropped; a string token spans its quotes. */
int oc_jq_tokenize(const char *code, size_t n, oc_jq_toks_t *ts);
/* The key of a plain T_FIELD / T_STRING token as a jv string, or
 * jv_invalid() when it cannot be decoded exactly as jq would. */
jv oc_jq_token_key(const oc_jq_tok_t *k);
int oc_jq_word_is(const oc_jq_tok_t *k, const char *w);
int oc_jq_is_ident_start(int c);
int oc_jq_is_word(int c);
/* From a string token's opening quote / inside an interpolation: the byte
 * after the closing quote, the ')' that closes the interpolation. */
const char *oc_jq_skip_string(const char *q, const char *end, int *plain);
const char *oc_jq_skip_code(const char *q, const char *end);

#endif
