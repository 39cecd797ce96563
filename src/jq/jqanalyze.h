/*
 * jqanalyze.h - the input paths a mapping expression reads, so that raw
 * items are parsed (or converted from Lua) only where the mapping looks.
 * The simple forms the engine evaluates itself are in jqform.h.
 *
 * Conservative: when in doubt the expression "reads the whole input".
 * Input: an expression already rewritten by oc_jq_rewrite (no
 * single-quoted literals, balanced brackets).
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

/* Whether the expression contains a construct that catches errors:
 * `try`, `?//`, or `?` applied to an expression (not `.a?` / `.[...]?`,
 * which only ignore their own index error). With libjq 1.6 (jq17 == 0)
 * such a catch also stops a `break` raised after the expression produced
 * a value; with 1.7 only `?//` does. Conservative: 1 when unsure. */
int oc_jq_catches(const char *code, size_t n, int jq17);

/* Whether the expression has at most one output, its backtracking doing
 * no work past it: no `,` outside {...} / [...], `.[]`, `..`, generator
 * builtins (range, recurse, paths, limit, splits, scan, ...), user defs,
 * foreach, label, `?//`. A slot that is single needs no break to stop
 * after its first output. Conservative: 0 when unsure (and a wrong 1 only
 * costs a restart: the program notices a second output). */
int oc_jq_single(const char *code, size_t n);

/* Whether the expression cannot reach one of libjq 1.6's own path
 * expressions that an error can unwind after it ended (its stack_restore
 * asserts then, unless the program runs inside path(...): mapping_prog.c).
 * Conservative: 0 for any name it does not know. */
int oc_jq_path_free(const char *code, size_t n);

/* Whether the expression may divide a string by a string (`/` or `/=`
 * not followed by a number literal): the prelude's guard of `/` is
 * needed then. Conservative. */
int oc_jq_may_split(const char *code, size_t n);


#endif
