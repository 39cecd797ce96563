/*
 * jqlex.h - a small lexer over jq expressions written in mappings.
 *
 * It knows just enough of jq's lexical structure (double-quoted strings
 * with escapes and nested \(...) interpolation, # comments, brackets,
 * keywords, where a term ends) to rewrite Ocean's single-quoted string
 * literals into jq strings, to desugar jq 1.7's syntax for libjq 1.6, to
 * check that an expression is self-contained (so it can be embedded in a
 * bigger program), and to find the simple path an itemsToParse expression
 * starts with. It never evaluates anything and owns nothing.
 */
#ifndef OC_JQLEX_H
#define OC_JQLEX_H

#include <stddef.h>
#include <jv.h>

#include "json/buf.h"

#define OC_JQLEX_MAX_NESTING 256

/* Append src[0..n) to out with every single-quoted literal rewritten as a
 * jq string: 'it''s' rules: a ' in code opens a literal; inside one, a '
 * closes it only when the next byte is not [A-Za-z0-9_] (so 'don't' is
 * "don't"); " becomes \", \' becomes ', other escapes and \( ... )
 * interpolation are kept. Double-quoted strings and comments are copied
 * untouched. jq 1.7 syntax becomes 1.6 syntax with the same meaning:
 *   if c then a end          ->  if c then a else . end
 *   .a.[0]  .a.["k"]  .a.[]  ->  .a[0]  .a["k"]  .a[]
 *   x[a:b]                   ->  x[__oc_slice(a; b)]  (same key; a nan
 *                                bound is jq 1.7.1's 0 / length, where
 *                                libjq 1.6 asserts)
 *   $__loc__                 ->  {"file":"<top-level>","line":L}, L the
 *                                line in src
 * Also checks that brackets balance, that the expression does not use
 * import/include, and that it names no reserved name: the engine's
 * __oc_... definitions and $__oc_... bindings, libjq's underscore
 * internals (_plus, _match_impl, _input, ...; not _nwise) - as a call, a
 * definition, a $variable or a label; .fields, object keys and strings
 * are not names ("reserved name '__oc_ffi' at line 1, column 7"). Returns 0, or -1 with a message in err (out then holds
 * a partial result). Never reads past src + n. */
int oc_jq_rewrite(const char *src, size_t n, oc_buf_t *out, char *err,
                  size_t errlen);

/* The path an itemsToParse expression starts with, as a jv array of keys
 * (e.g. ["a","b"] for `.a.b | ...`), or jv_invalid() when there is none.
 * Accepted: optional leading '(' and whitespace, then .key, ."key",
 * .["key"] / ["key"] segments, then the end, ')', '|' or '//'. src must be
 * an already rewritten expression (no single-quoted literals). */
jv oc_jq_leading_path(const char *src, size_t n);

#endif
