/*
 * json.h - JSON text <-> jq values (jv), canonical form and hashing.
 *
 * The parser is event driven (SAX style) so that one scanner feeds both jv
 * values (this file) and Lua tables (src/lua/ljson.c). It never echoes its
 * input in an error: messages name the line, column and at most a short
 * excerpt. Nesting is bounded by the caller's max_depth.
 */
#ifndef OC_JSON_H
#define OC_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "buf.h"

#define OC_JSON_MAX_DEPTH 200   /* default nesting bound for raw data */
#define OC_ERR_SIZE 512         /* size of every error message buffer */

/* Event callbacks; a non-zero return stops the parse (the callback has
 * written its message into the parser's err buffer via oc_json_fail). */
typedef struct oc_json_sax {
  int (*null_value)(void *ud);
  int (*boolean)(void *ud, int v);
  int (*number)(void *ud, double d, const char *tok, size_t n);
  int (*string)(void *ud, const char *s, size_t n);
  int (*key)(void *ud, const char *s, size_t n);
  int (*begin_object)(void *ud);
  int (*end_object)(void *ud);
  int (*begin_array)(void *ud);
  int (*end_array)(void *ud);
} oc_json_sax_t;

typedef struct oc_json_parser {
  const char *s, *end, *start;
  int max_depth;
  const oc_json_sax_t *sax;
  void *ud;
  oc_buf_t scratch;              /* unescaped strings */
  char err[OC_ERR_SIZE];
} oc_json_parser_t;

/* Parse one JSON value from s[0..n); *used gets the bytes consumed
 * (trailing whitespace included). Returns 0, or -1 with p->err set.
 * The parser must be released with oc_json_parser_free. */
void oc_json_parser_init(oc_json_parser_t *p, const oc_json_sax_t *sax,
                         void *ud, int max_depth);
void oc_json_parser_free(oc_json_parser_t *p);
int oc_json_parse_value(oc_json_parser_t *p, const char *s, size_t n,
                        size_t *used);
/* Describe the parser's current position (for callback errors). */
void oc_json_parser_where(oc_json_parser_t *p, char *out, size_t outlen);

/* Interned object keys: repeated keys share one jv string (and its cached
 * hash). Bounded; owned by whoever builds jv values (never global). */
typedef struct oc_keycache oc_keycache_t;
oc_keycache_t *oc_keycache_new(void);
void oc_keycache_free(oc_keycache_t *kc);
/* A new reference to the jv string for s[0..n) (cache may be NULL). */
jv oc_keycache_get(oc_keycache_t *kc, const char *s, size_t n);

/* Parse JSON text into a jv. On success returns the value (caller frees);
 * on failure returns jv_invalid() and writes the message into err. */
jv oc_json_to_jv(const char *s, size_t n, int max_depth, oc_keycache_t *kc,
                 char *err, size_t errlen);

/* Parse a stream of JSON values (a JSON array, or values separated by
 * whitespace/newlines) calling each(value, index, ud) for each element.
 * The value is owned by the callee. Returns 0 or -1 with err set. */
typedef int (*oc_json_each_fn)(jv value, size_t index, void *ud);
int oc_json_each(const char *s, size_t n, int max_depth, oc_keycache_t *kc,
                 oc_json_each_fn each, void *ud, char *err, size_t errlen);

/* Serialise a jv (borrowed) as compact JSON. Flags: */
#define OC_DUMP_SORT_KEYS 1     /* object keys in byte order */
#define OC_DUMP_DROP_NULLS 2    /* omit object members whose value is null */
int oc_json_dump(jv v, oc_buf_t *out, int flags);
/* Canonical form hash: sorted keys, null members dropped. */
uint64_t oc_json_hash(jv v, oc_buf_t *scratch);
/* Append a number the way the engine writes numbers everywhere. */
void oc_json_add_number(oc_buf_t *b, double d);

/* Short description of a jv for messages ("object", "\"abc\"", "12"...),
 * truncated to fit out. */
void oc_jv_describe(jv v, char *out, size_t outlen);

#endif
