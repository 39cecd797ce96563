/*
 * jqprelude.c - the definitions every mapping program starts with (see
 * jqprelude.h, docs/jq.md for the table and the reasons).
 *
 * jq binds names lexically, so a definition here replaces a builtin for
 * the user's expressions and for the definitions that follow it, but not
 * inside libjq's own builtins: each replacement that matters inside other
 * builtins (setpath inside `|=`, _match_impl inside sub, ...) replaces
 * those too. The __oc_b_* aliases are libjq's builtins, bound before they
 * are replaced. `[4, fn, ...] | __oc_ffi` is a builtin in C (jqlib.h).
 *
 * Nothing here may catch an error (`try`, `?` on an expression, `?//`)
 * where a later break could meet it: with libjq 1.6 it would also catch
 * the break that ends a slot. The one catch (in path) sits inside a
 * collection, which is over before anything downstream runs.
 *
 * Owns nothing.
 */
#include "jqprelude.h"

#include <jq.h>
#include <stddef.h>
#include <stdio.h>

/* libjq 1.7 added jq_set_stderr_cb and literal numbers; a weak reference
 * is NULL with 1.6. */
void jq_set_stderr_cb(jq_state *, jq_msg_cb, void *) __attribute__((weak));
int jv_number_has_literal(jv) __attribute__((weak));

int oc_jq_is_17(void)
{
  return jq_set_stderr_cb != NULL;
}

/* Whether libjq keeps number literals (jq 1.7 built with decNumber, the
 * default): what jq 1.8's have_decnum / have_literal_numbers report. */
static int has_decnum(void)
{
  jv n;
  int r;
  if (!jv_number_has_literal)
    return 0;
  n = jv_parse("100000000000000000001");
  r = jv_get_kind(n) == JV_KIND_NUMBER && jv_number_has_literal(jv_copy(n));
  jv_free(n);
  return r;
}

/* libjq's builtins under names of our own, and the messages to C. */
static const char *const head[] = {
  "def __oc_send: debug;",
  "def __oc_ffi: {f: .} | debug | input;",
  "def __oc_n: .;",                  /* jqlex.c: not a constant */
  /* x[a:b] (jqlex.c): nan bounds as jq 1.7.1 (0 and the length) */
  "def __oc_slice(a; b): a as $a | b as $b"
  " | {start: (if $a != $a then null else $a end),"
  " end: (if $b != $b then null else $b end)};",
  /* x[e] (jqlex.c), nth, indices: a slice object's nan bound as null */
  "def __oc_idx(k): k as $k | if ($k | type) == \"object\" then"
  " ($k | if (.start | type) == \"number\" and .start != .start"
  " then . + {start: null} else . end"
  " | if (.end | type) == \"number\" and .end != .end"
  " then . + {end: null} else . end) else $k end;",
  "def nth($n): .[__oc_idx($n)];",
  "def __oc_b_multiply(a; b): _multiply(a; b);",
  "def __oc_b_divide(a; b): _divide(a; b);",
  "def __oc_b_setpath(p; v): setpath(p; v);",
  "def __oc_b_path(f): path(f);",
  "def __oc_b_strftime(f): strftime(f);",
  "def __oc_b_ltrimstr(x): ltrimstr(x);",
  "def __oc_b_rtrimstr(x): rtrimstr(x);",
  "def __oc_b_strflocaltime(f): strflocaltime(f);",
  "def __oc_b_tojson: tojson;",
  "def __oc_b_tostring: tostring;",
  "def __oc_b_format(f): format(f);",
  "def __oc_b_split(s): split(s);",
  "def __oc_b_explode: explode;",
  "def __oc_b_getpath(p): getpath(p);",
  "def __oc_b_delpaths(p): delpaths(p);",
  /* path components as jq 1.7.1 takes them: a nan slice bound is 0 / the
   * length (libjq 1.6 asserts in parse_slice); a nan index cannot be set
   * or deleted (1.6 loops in jv_dels, 1.7.1 aborts) */
  "def __oc_path($p; $what): if ($p | type) != \"array\" then $p"
  " else [$p[] | if type == \"object\" then"
  " (if (.start | type) == \"number\" and .start != .start"
  " then . + {start: null} else . end)"
  " | (if (.end | type) == \"number\" and .end != .end"
  " then . + {end: null} else . end)"
  " elif $what != null and type == \"number\" and . != ."
  " then error(\"Cannot \" + $what + \" array element at NaN index\")"
  " else . end] end;",
  "def getpath($p): __oc_b_getpath(__oc_path($p; null));",
  "def delpaths($ps): __oc_b_delpaths(if ($ps | type) != \"array\" then $ps"
  " else [$ps[] | __oc_path(.; \"delete\")] end);",
  NULL
};

/* The engine's sandbox: nothing reaches the process's stderr, there is no
 * input stream, halt and halt_error fail the item (mapping_prog.c). */
static const char *const sandbox[] = {
  "def debug: .;",
  "def debug(msg): (msg | empty), .;",
  "def stderr: .;",
  "def input: error(\"input is not available in mappings\");",
  "def inputs: empty;",
  "def halt: {h: [0, null]} | __oc_send | empty;",
  "def halt_error($code): if ($code | type) == \"number\""
  " then {h: [$code, .]} | __oc_send | empty"
  " else [4, 11, ., \"halt_error/1: number required\"] | __oc_ffi end;",
  "def halt_error: halt_error(5);",
  "def modulemeta: error(\"modulemeta is not available in mappings\");",
  "def input_line_number: 0;",
  /* libjq asserts on a number input with a non-string format, and on a
   * number gmtime/localtime refuse (nan); todate & co. call strftime */
  "def strftime($f): if type != \"number\" then __oc_b_strftime($f)"
  " elif ($f | type) != \"string\""
  " then error(\"strftime/1 requires a string format\")"
  " else gmtime | __oc_b_strftime($f) end;",
  "def strflocaltime($f): if type != \"number\" then __oc_b_strflocaltime($f)"
  " elif ($f | type) != \"string\""
  " then error(\"strflocaltime/1 requires a string format\")"
  " else localtime | __oc_b_strflocaltime($f) end;",
  "def todateiso8601: strftime(\"%Y-%m-%dT%H:%M:%SZ\");",
  "def todate: todateiso8601;",
  NULL
};

/* Regular expressions on jqlib.c's _match_impl (jq 1.7.1's results; libjq
 * 1.6's own loops forever or crashes on empty matches). */
static const char *const regex[] = {
  "def _match_impl(re; mode; test): test as $t | mode as $m | re as $r"
  " | [4, 7, ., $r, $m, $t] | __oc_ffi;",
  "def __oc_re(v): v | if type == \"string\" then [., null]"
  " elif type == \"array\" and length > 1 then .[0:2]"
  " elif type == \"array\" and length > 0 then [.[0], null]"
  " else error(type + \" not a string or array\") end;",
  "def match(re; mode): _match_impl(re; mode; false) | .[];",
  "def match($v): __oc_re($v) as [$r, $f] | match($r; $f);",
  "def test(re; mode): _match_impl(re; mode; true);",
  "def test($v): __oc_re($v) as [$r, $f] | test($r; $f);",
  "def capture(re; mods): match(re; mods) | [.captures[]"
  " | select(.name != null) | {key: .name, value: .string}] | from_entries;",
  "def capture($v): __oc_re($v) as [$r, $f] | capture($r; $f);",
  "def scan($re; $flags): match($re; \"g\" + $flags)"
  " | if (.captures | length) > 0 then [.captures[].string]"
  " else .string end;",
  "def scan($re): scan($re; null);",
  "def splits($re; flags): . as $s"
  " | [match($re; \"g\" + flags) | (.offset, .offset + .length)] as $m"
  " | [0] + $m + [$s | length] | range(0; length; 2) as $i"
  " | $s[.[$i]:.[$i + 1]];",
  "def splits($re): splits($re; null);",
  "def split($re; flags): [splits($re; flags)];",
  "def sub($re; s; $flags): . as $in"
  " | (reduce match($re; $flags) as $m ({r: [], at: 0};"
  " $in[.at:$m.offset] as $gap"
  " | [$m.captures | map(select(.name != null)"
  " | {key: .name, value: .string}) | from_entries | s] as $ins"
  " | .r = (.r | reduce range(0; $ins | length) as $j (.;"
  " .[$j] += $gap + $ins[$j]))"
  " | .at = $m.offset + $m.length)"
  " | .r[] + $in[.at:]) // $in;",
  "def sub($re; s): sub($re; s; \"\");",
  "def gsub($re; s; flags): sub($re; s; flags + \"g\");",
  "def gsub($re; s): sub($re; s; \"g\");",
  NULL
};

/* Paths, collected before they are handed on: libjq (1.6 and 1.7.1) leaks
 * a path key when a break (first, limit, label) unwinds through a path
 * expression that has been resumed after a `select`, as in `first(paths)`.
 * Collected, no path expression is live when the break comes. An error
 * raised by f comes after the paths before it, as when they stream. The
 * catch is inside the collection: no later break can meet it. */
static const char *const paths[] = {
  "def path(f): [try (__oc_b_path(f) | [.]) catch [null, .]] | .[]"
  " | if length == 1 then .[0] else error(.[1]) end;",
  "def paths: path(..) | select(length > 0);",
  "def paths(node_filter): path(.. | select(node_filter))"
  " | select(length > 0);",
  "def tostream: path(def r: (.[]?|r), .; r) as $p | getpath($p)"
  " | reduce path(.[]?) as $q ([$p, .]; [$p + $q]);",
  NULL
};

/* string / string is split: checked like split/1 (only in programs that
 * may divide by something else than a number literal) */
static const char *const divide[] = {
  "def _divide(a; b): b as $b | a as $a"
  " | if ($a | type) == \"string\" and ($b | type) == \"string\""
  " then [4, 5, $a, $b] | __oc_ffi | __oc_b_divide(.; $b)"
  " else __oc_b_divide($a; $b) end;",
  NULL
};

/* Builtins that would allocate past the memory limit, or loop, inside
 * one C call: checked (or done) in C first. setpath's replacement also
 * serves `=`, `|=` (jq 1.7.1's semantics, changed in place), pick and
 * fromstream. */
static const char *const guards[] = {
  "def _multiply(a; b): b as $b | a as $a"
  " | if ($a | type) == \"number\" and ($b | type) == \"number\""
  " then __oc_b_multiply($a; $b)"
  " elif ($a | type) == \"string\" and ($b | type) == \"number\""
  " then [4, 1, $a, $b] | __oc_ffi"
  " elif ($a | type) == \"number\" and ($b | type) == \"string\""
  " then [4, 1, $b, $a] | __oc_ffi"
  " else __oc_b_multiply($a; $b) end;",
  "def tojson: [4, 2, .] | __oc_ffi | __oc_b_tojson;",
  "def tostring: if type == \"string\" then ."
  " else [4, 2, .] | __oc_ffi | __oc_b_tostring end;",
  "def format($f): if $f == \"text\""
  " and (type | . != \"array\" and . != \"object\")"
  " then __oc_b_format(\"text\")"
  " elif $f == \"base32d\" then [4, 4, .] | __oc_ffi"
  " else [4, 3, ., $f] | __oc_ffi | __oc_b_format($f) end;",
  "def split($sep): [4, 5, ., $sep] | __oc_ffi | __oc_b_split($sep);",
  "def explode: [4, 9, .] | __oc_ffi | __oc_b_explode;",
  /* libjq 1.7.1's _strindices asserts on a non-string input */
  /* 1.6 leaks an error on non-string inputs (fixed in 1.7.1,
   * the same answers there) */
  "def ltrimstr($x): if type == \"string\" and ($x | type) == \"string\""
  " then __oc_b_ltrimstr($x) else . end;",
  "def rtrimstr($x): if type == \"string\" and ($x | type) == \"string\""
  " then __oc_b_rtrimstr($x) else . end;",
  "def _strindices($i): if type == \"string\" and ($i | type) == \"string\""
  " then [4, 8, ., $i] | __oc_ffi"
  " else [4, 11, ., \"cannot be searched, as it is not a string\"]"
  " | __oc_ffi end;",
  "def indices($i): if type == \"array\" and ($i | type) == \"array\""
  " then .[$i] elif type == \"array\" then .[[$i]]"
  " elif type == \"string\" and ($i | type) == \"string\""
  " then _strindices($i) else .[__oc_idx($i)] end;",
  "def index($i): indices($i) | .[0];",
  "def rindex($i): indices($i) | .[-1:][0];",
  "def del(f): delpaths([path(f)]);",
  "def setpath(p; v): v as $v | __oc_path(p; \"set\") as $p"
  " | [4, 6, ., $p] | __oc_ffi"
  " | __oc_b_setpath($p; $v);",
  "def _assign(paths; $value): reduce path(paths) as $p (.;"
  " setpath($p; $value));",
  "def _modify(paths; update): reduce path(paths) as $p ([., []];"
  " ([.[0] | getpath($p) | first(update)]) as $u"
  " | [4, 12, ., $p, $u] | __oc_ffi) | . as [$d, $l] | $d | delpaths($l);",
  /* libjq's own map_values runs its own _modify: the update then runs
   * while `.[]` over the object is still live inside path(...), and an
   * error in it makes libjq (1.6 and 1.7.1, ON_BACKTRACK(EACH)) drop a
   * reference to the next key, never freed. Here `|=` is the _modify
   * above: the paths are collected before the update runs. */
  "def map_values(f): .[] |= f;",
  "def pick(pathexps): . as $__oc_t | reduce path(pathexps) as $p (null;"
  " setpath($p; $__oc_t | getpath($p)));",
  "def fromstream(f): {x: null, e: false} as $__oc_i"
  " | foreach f as $i ($__oc_i; if .e then $__oc_i else . end"
  " | if $i | length == 2"
  " then setpath([\"e\"]; $i[0] | length == 0)"
  " | setpath([\"x\"] + $i[0]; $i[1])"
  " else setpath([\"e\"]; $i[0] | length == 1) end;"
  " if .e then .x else empty end);",
  NULL
};

/* jq 1.7.1 builtins and behaviour that libjq 1.6 lacks. */
static const char *const from17[] = {
  "def abs: if . < 0 then - . else . end;",
  "def leaf_paths: paths(scalars);",
  /* slices in 1.6's own definitions assert on a nan bound */
  "def _nwise($n): def chunk: if length <= $n then ."
  " else .[__oc_slice(0; $n)], (.[__oc_slice($n; null)] | chunk) end; chunk;",
  "def _nwise(a; $n): a | _nwise($n);",
  "def truncate_stream(stream): . as $depth | null | stream"
  " | select((.[0] | length) > $depth)"
  " | setpath([0]; .[0][__oc_slice($depth; null)]);",
  /* 1.6's nth(n; f) gives null when f has fewer than n + 1 outputs */
  "def nth($n; f): if $n < 0 then error(\"nth doesn't support negative"
  " indices\") else first(skip($n; f)) end;",
  /* 1.6's limit(0; f) emits one value */
  "def limit($n; f): if $n > 0 then label $__oc_l | foreach f as $__oc_x"
  " (0; . + 1; $__oc_x, if . >= $n then break $__oc_l else empty end)"
  " elif $n == 0 then empty else f end;",
  NULL
};

/* Later additions Ocean mappings meet (jq 1.8), and toarray. */
static const char *const later[] = {
  "def toarray: if type == \"array\" then . else [.] end;",
  "def ltrim: [4, 10, ., 1] | __oc_ffi;",
  "def rtrim: [4, 10, ., 2] | __oc_ffi;",
  "def trim: [4, 10, ., 3] | __oc_ffi;",
  "def trimstr($v): ltrimstr($v) | rtrimstr($v);",
  "def add(f): reduce f as $__oc_x (null; . + $__oc_x);",
  "def skip($n; f): if $n > 0 then foreach f as $__oc_x ($n; . - 1;"
  " if . < 0 then $__oc_x else empty end) elif $n == 0 then f"
  " else error(\"skip doesn't support negative count\") end;",
  "def toboolean: if type == \"boolean\" then . elif . == \"true\" then true"
  " elif . == \"false\" then false"
  " else [4, 11, ., \"cannot be parsed as a boolean\"] | __oc_ffi end;",
  NULL
};

static void add_lines(oc_buf_t *p, const char *const *lines)
{
  size_t i;
  for (i = 0; lines[i]; i++) {
    oc_buf_adds(p, lines[i]);
    oc_buf_addc(p, '\n');
  }
}

void oc_jq_prelude(oc_buf_t *p, int jq17, int guard_divide)
{
  add_lines(p, head);
  add_lines(p, sandbox);
  add_lines(p, regex);
  add_lines(p, paths);
  if (guard_divide)
    add_lines(p, divide);
  add_lines(p, guards);
  add_lines(p, later);
  if (!jq17)
    add_lines(p, from17);
  oc_buf_printf(p, "def have_decnum: %s; def have_literal_numbers: "
                "have_decnum;\n", has_decnum() ? "true" : "false");
}
