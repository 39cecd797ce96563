/*
 * json.h - JSON text <-> jq values (jv), canonical form and hashing
 * (json.c); numbers as jq has them (json_num.c).
 *
 * The parser is event driven (SAX style) so that one scanner feeds both jv
 * values (this file) and Lua tables (src/lua/ljson.c). It never echoes its
 * input in an error: messages name the line, column and at most a short
 * excerpt. Nesting is bounded by the caller's max_depth, for every item of
 * a stream alike. A number keeps its literal where a double would change
 * its value (docs/numbers.md).
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
  int outer;                     /* levels not counted against max_depth:
                                    1 inside a streamed top-level array,
                                    whose elements each nest max_depth */
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
/* The same for the value at text + off: positions in messages (line,
 * column) count from the start of text, as for the values before it in
 * a stream; *used counts from off. */
int oc_json_parse_next(oc_json_parser_t *p, const char *text, size_t n,
                       size_t off, size_t *used);
/* Parse a stream: one JSON array whose elements are the items (the
 * callbacks see its begin/end at the top level), or values separated by
 * whitespace (NDJSON). Every item nests at most max_depth levels either
 * way; positions count from the start of s. Returns 0 or -1 (p->err). */
int oc_json_parse_stream(oc_json_parser_t *p, const char *s, size_t n);

/* A cursor over a stream (the elements of one JSON array, or NDJSON
 * values), one element at a time, so that a caller can stop between two:
 * oc_json_cursor_next() moves c->off to the start of the next element and
 * returns 1 (the caller parses it with oc_json_parse_next(.., c->off, &used)
 * and adds `used` to c->off), 0 at the end, or -1 with p->err set (the
 * same messages as oc_json_parse_stream). Start with {0, 0}. */
enum { OC_CURSOR_START, OC_CURSOR_ARRAY, OC_CURSOR_NDJSON, OC_CURSOR_AFTER,
       OC_CURSOR_DONE };
typedef struct oc_json_cursor {
  size_t off;
  int state;
} oc_json_cursor_t;
int oc_json_cursor_next(oc_json_cursor_t *c, oc_json_parser_t *p,
                        const char *s, size_t n);
/* The array ended at c->off: only whitespace may follow. */
int oc_json_cursor_next_end(oc_json_cursor_t *c, oc_json_parser_t *p,
                            const char *s, size_t n);

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
#define OC_DUMP_CANON_NUMBERS 4 /* numbers by value (json_num.c) */
#define OC_DUMP_CANONICAL (OC_DUMP_SORT_KEYS | OC_DUMP_DROP_NULLS \
                           | OC_DUMP_CANON_NUMBERS)
int oc_json_dump(jv v, oc_buf_t *out, int flags);
/* Canonical form hash: sorted keys, null members dropped, numbers by
 * value (OC_DUMP_CANONICAL). */
uint64_t oc_json_hash(jv v, oc_buf_t *scratch);

/* {==================== numbers (json_num.c) ==================== */

/* Room for any number oc_json_format_double writes, NUL included. */
#define OC_NUM_BUF 48

/* The text jq prints for a double (libjq's dtoa: the shortest digits
 * that give d back, exponent form past 15 trailing zeros or before
 * 0.0001, infinities as +-DBL_MAX, NaN as null) into out[OC_NUM_BUF];
 * returns its length. */
size_t oc_json_format_double(double d, char *out);
/* Append that text. */
void oc_json_add_number(oc_buf_t *b, double d);

/* Does printing d (strtod of the JSON number token tok[0..n)) give back
 * the token's value? False beyond 2^53 (most integers), past 17
 * significant digits, on overflow (1e400) and underflow (1e-400). */
int oc_json_number_faithful(double d, const char *tok, size_t n);
/* The jv for the JSON number token tok[0..n) whose strtod is d (may be
 * +-inf, as jq keeps it): a plain number when faithful, else a number
 * that also carries its literal (libjq 1.7's literal numbers; with
 * libjq 1.6 integers below 2^64 only, see json_num.c). */
jv oc_json_number_jv(double d, const char *tok, size_t n);
/* 1 when libjq keeps number literals itself (1.7 with decNumber): then
 * jq sees literals as jq 1.7 does; 0: the libjq 1.6 way. */
int oc_json_jq_literals(void);
/* The literal a number jv (borrowed) carries, or NULL: a pointer into
 * buf[OC_NUM_BUF] or into v (valid while v lives). */
const char *oc_json_number_literal(jv v, char *buf);
/* Append a number jv (borrowed): its literal when it carries one that
 * the double would change, else oc_json_add_number. canonical: by value,
 * spelled one way (-0 as 0, literals normalised) for hashes and
 * comparisons. */
void oc_json_add_jv_number(oc_buf_t *b, jv v, int canonical);
/* Is v (borrowed) written as null: null, or a NaN number (as jq)? */
int oc_json_is_null(jv v);
/* Is s[0..n) exactly one JSON number? */
int oc_json_is_number(const char *s, size_t n);
/* Compare two JSON number tokens by their decimal values: <0, 0, >0. */
int oc_json_number_cmp(const char *a, size_t an, const char *b, size_t bn);

/* }==================== */

/* Short description of a jv for messages ("object", "\"abc\"", "12"...),
 * truncated to fit out. */
void oc_jv_describe(jv v, char *out, size_t outlen);

#endif
