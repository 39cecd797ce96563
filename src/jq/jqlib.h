/*
 * jqlib.h - builtins the mapping program's prelude (jqprelude.c) asks C
 * for, through libjq's debug and input callbacks (`[4, fn, args...] |
 * debug | input`, see mapping_prog.c): regular expressions with jq
 * 1.7.1's results on both libjq versions (libjq 1.6's own loops or
 * crashes on empty matches), string repetition and substring search that
 * cannot run away inside C, @base32d, and size checks that stop a builtin
 * before it allocates more than the memory limit in one C call (libjq
 * cannot be interrupted inside a builtin). Plus two value measures the
 * engine uses on whatever jq produced.
 *
 * Owns nothing beyond a call.
 */
#ifndef OC_JQLIB_H
#define OC_JQLIB_H

#include <stddef.h>
#include <jv.h>

#include "json/buf.h"
#include "jqbudget.h"

/* Function numbers (second element of a request). */
enum {
  OC_FN_REPEAT = 1,              /* [str, n]: jq 1.7.1's string * number */
  OC_FN_GUARD_JSON = 2,          /* [v]: v, if its JSON text fits */
  OC_FN_GUARD_FORMAT = 3,        /* [v, fmt]: v, if @fmt's output fits */
  OC_FN_BASE32D = 4,             /* [s]: @base32d */
  OC_FN_GUARD_SPLIT = 5,         /* [s, sep]: s, if split(sep) fits */
  OC_FN_GUARD_SETPATH = 6,       /* [v, path]: v, if setpath(path) fits */
  OC_FN_MATCH = 7,               /* [s, re, flags, test]: _match_impl */
  OC_FN_STRINDICES = 8,          /* [s, sub]: _strindices (1.7.1) */
  OC_FN_GUARD_EXPLODE = 9,       /* [s]: s, if explode fits */
  OC_FN_TRIM = 10,               /* [s, 1|2|3]: jq 1.8's ltrim/rtrim/trim */
  OC_FN_TYPE_ERROR = 11,         /* [v, msg]: jq's "<kind> (<v>) <msg>" */
  OC_FN_MODIFY_STEP = 12         /* [[doc, dels], path, [v] | []]: one
                                  * step of `|=` (jq 1.7.1), in place */
};

typedef struct oc_jqlib {
  oc_budget_t *budget;           /* may be NULL */
  size_t mem_limit;              /* bytes; 0: no size checks */
  int breach;                    /* out: OC_BREACH_SIZE when refused */
} oc_jqlib_t;

/* Answer request [4, fn, args...] (consumed): the value `input` returns in
 * the program, or jv_invalid_with_msg (a jq error, with jq 1.7.1's
 * wording). Sets lib->breach when the result would exceed the memory
 * limit (the caller then halts the program). */
jv oc_jqlib_call(oc_jqlib_t *lib, jv req);

/* Append at most limit bytes of v's compact JSON text (jq's own printer
 * on a bounded copy: exact for the part shown, cheap for any v). v is
 * borrowed. */
void oc_jqlib_dump_bounded(jv v, oc_buf_t *out, size_t limit);

/* The size of v's compact JSON text, estimated, and its nesting depth;
 * shared containers are measured once (a value built by doubling
 * `[., .]` sixty times is measured in sixty steps). Stops early: returns
 * a number above limit when the size passes it, and sets *too_deep when
 * the depth passes depth_limit. v is borrowed. */
size_t oc_jqlib_weigh(jv v, size_t limit, int depth_limit, int *too_deep);

/* For jqregex.c: jq 1.7.1's _match_impl(re; flags; test) on input (all
 * borrowed); jq's "<kind> (<v>) msg" error (bad borrowed); whether bytes
 * pass the memory limit (then lib->breach is set); code points in
 * s[0..to). */
jv oc_jqlib_match(oc_jqlib_t *lib, jv input, jv re, jv mods, jv testmode);
jv oc_jqlib_type_error(jv bad, const char *msg);
int oc_jqlib_refuse(oc_jqlib_t *lib, size_t bytes);
long oc_jqlib_codepoints(const char *s, const char *to);

#endif
