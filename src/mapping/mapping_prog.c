/*
 * mapping_prog.c - the one jq program of a resource: its text, its
 * compilation (errors traced back to the field that caused them) and its
 * runs, under the budget (jqbudget.h).
 *
 * The program never outputs anything. Each jq slot (mapping_int.h) is a
 * def; a chain of defs evaluates them in order and hands each slot's
 * first output to C through libjq's debug callback as it comes:
 *
 *   def __oc_send: debug;   def __oc_ffi: {f: .} | debug | input;
 *   <prelude: jqprelude.c>  [def env: {}; {} as $ENV |]
 *   def __oc_3: (
 *   <user expression>
 *   );
 *   def __oc_cN: -1 | __oc_send | empty;
 *   def __oc_c1: ([__oc_4] | __oc_send | empty), __oc_c2;    # single
 *   def __oc_c0: (label $__oc_o | (__oc_3 | {"3": .} | __oc_send
 *                 | break $__oc_o), (3 | __oc_send | empty)), __oc_c1;
 *   if type == "object" then . as $__oc_in
 *     | path(.__oc | .[$__oc_in | __oc_c0])             # from the start
 *   else . as [$__oc_f, $__oc_in] | path(.[0] | .[$__oc_in |
 *     if $__oc_f == 1 then __oc_c1 elif ... end]) end   # from position f
 *
 * Every slot reports exactly once per run: its outputs collected (a
 * single slot), {"k": v} (its first output), k (no output), or it
 * raises, which ends the run (C then knows the slot: the one after the
 * last report, and runs the chain again from the next). Nothing a slot
 * does can change another slot's value: the question "first output of
 * each expression" never backtracks across slots, so a field with no
 * output cannot make an earlier generator produce again (the old
 * `as`-binding shape lost entities that way).
 *
 * How a slot stops after its first output:
 *   - it has at most one (jqanalyze.h oc_jq_single: `.a | tostring`,
 *     `{a: .x}`, `[.[] | .y]`, `map(...)`...): its outputs are collected,
 *     the cheapest shape (no label, one message). Most mappings are so.
 *   - `break`. libjq 1.6's `try` (and `?`, `?//`) also catches
 *     errors raised after its body produced a value, our break included;
 *     in 1.6, slots whose code can catch (jqanalyze.h oc_jq_catches) use
 *   - a halt (the same link without the label): C halts the interpreter
 *     in the callback and starts the chain again after the slot. jq
 *     1.7.1's try does not catch a break raised downstream, but `?//`
 *     does in both: such slots halt.
 *     (libjq also leaks a path key when a break unwinds through a resumed
 *     path expression: the prelude's path(f) hands on collected paths.)
 * A report for a slot that already reported (a catch we did not foresee)
 * also halts and restarts.
 *
 * Halting leaves the jq stack as it was, and the next jq_start walks it
 * back; libjq 1.6 asserts there (stack_restore: path_len == 0) when the
 * stack holds fork points saved inside a path(...) expression that has
 * ended, e.g. `first(path(..))` halted downstream. The prelude's path,
 * paths, tostream, _modify and _assign collect their paths, so no path
 * expression of the user's is live past its end; libjq 1.6's own
 * builtins that still run its raw path(...) (map_values, INDEX, ...), and
 * names we do not know, make the program run inside path(.x | .[X]) as an
 * index subexpression (jqanalyze.h oc_jq_path_free): jq->path is then
 * always an array (ours or a user's), the assert's other branch, and no
 * path is tracked for our code. Ours has one key, not none: libjq
 * allocates a new empty array whenever it restores a fork to an empty
 * path, and a program forks at every step. That wrapper costs every fork
 * a little (~3 % of the bench), hence only when needed. libjq 1.7.1 fixed
 * the assert.
 *
 * C builtins (__oc_ffi): a request {f: [4, fn, ...]} goes to the debug
 * callback and `input` returns the answer (jqlib.h). halt/halt_error send
 * {h: [code, msg]}: libjq's own halt is never used (only one caller of
 * jq_halt, the budget, so its assert(!halted) cannot fire).
 *
 * Each user expression sits on lines of its own (a trailing # comment
 * cannot swallow the wrapper), inside parentheses (its own defs parse),
 * and jqlex.c has checked that its brackets balance. A compile error
 * names a line; the slot owning that line is compiled alone to word it.
 *
 * Owns: the jq_state (callbacks point at the mapping; no global state).
 */
#include "mapping_int.h"
#include "jq/jqanalyze.h"
#include "jq/jqlib.h"
#include "jq/jqprelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages the program sends, told apart by their type (cheap to build:
 * the interpreter spends ~50 ns an opcode, and a chain runs per item):
 *   [v...]           a single slot's outputs (the slot expected next)
 *   {"k": v}         slot k's first output (k: the slot number)
 *   k                slot k has no output (a number >= 0)
 *   -1               the chain is done
 *   {"h": [code, msg]}    halt / halt_error
 *   {"f": [4, fn, ...]}   a C builtin (jqlib.h); `input` takes the answer */
#define MSG_END (-1)

/* {==================== messages ==================== */

void oc_mapping_errmsg(jv msg, char *out, size_t outlen)
{
  oc_buf_t b = OC_BUF_INIT;
  const char *s;
  size_t n, max = outlen > 4 ? outlen - 4 : 0;
  if (max > OC_MAPPING_MSG_MAX)
    max = OC_MAPPING_MSG_MAX;
  if (jv_get_kind(msg) == JV_KIND_STRING) {
    s = jv_string_value(msg);
    n = (size_t)jv_string_length_bytes(jv_copy(msg));
  } else {
    oc_jqlib_dump_bounded(msg, &b, OC_MAPPING_MSG_MAX + 1);
    s = oc_buf_cstr(&b);
    n = b.n;
  }
  if (n > max) {
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--;                       /* don't cut a UTF-8 sequence */
    snprintf(out, outlen, "%.*s...", (int)n, s);
  } else {
    snprintf(out, outlen, "%.*s", (int)n, s);
  }
  oc_buf_free(&b);
}

void oc_mapping_describe(jv v, char *out, size_t outlen)
{
  jv_kind k = jv_get_kind(v);
  if (k == JV_KIND_OBJECT && jv_object_length(jv_copy(v)) == 0)
    snprintf(out, outlen, "{}");
  else if (k == JV_KIND_ARRAY && jv_array_length(jv_copy(v)) == 0)
    snprintf(out, outlen, "[]");
  else if (k == JV_KIND_OBJECT || k == JV_KIND_ARRAY)
    snprintf(out, outlen, "%s", k == JV_KIND_OBJECT ? "an object"
             : "an array");
  else
    oc_jv_describe(v, out, outlen > 80 ? 80 : outlen);
}

/* }==================== */

/* {==================== program text ==================== */

static int count_lines(const oc_buf_t *b)
{
  int n = 1;
  size_t i;
  for (i = 0; i < b->n; i++)
    n += b->p[i] == '\n';
  return n;
}

static void add_prelude(oc_buf_t *p, const oc_mapping_t *m)
{
  int allow_env = m->allow_env;
  oc_jq_prelude(p, m->jq17, m->guard_divide);
  if (!allow_env)
    oc_buf_adds(p, "def env: {}; {} as $ENV |\n");
  else   /* the process environment, but not Port's client secret nor
          * secret-looking integration settings (docs/jq.md) */
    oc_buf_adds(p, "def __oc_env: $ENV | with_entries(select(.key"
                " | . == \"OCEAN__PORT__CLIENT_SECRET\" or (startswith("
                "\"OCEAN__INTEGRATION__CONFIG__\") and test(\"SECRET|TOKEN|"
                "PASSWORD|PASSWD|KEY|CREDENTIAL|PRIVATE|AUTH\"; \"i\"))"
                " | not)); def env: __oc_env; __oc_env as $ENV |\n");
}

static void add_defs(oc_mapping_t *m, oc_buf_t *p)
{
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    if (m->slot[i].form.kind != OC_JQ_COMPLEX)
      continue;                  /* evaluated natively: not in the text */
    m->slot[i].line0 = count_lines(p);
    oc_buf_printf(p, "def __oc_%zu: (\n", i);
    oc_buf_adds(p, m->slot[i].code);
    oc_buf_adds(p, "\n);");
    m->slot[i].line1 = count_lines(p);
    oc_buf_addc(p, '\n');
  }
}

/* def __oc_c<name>: <slot's first output or none>, __oc_c<next>; */
static void add_link(oc_buf_t *p, const char *name, const oc_slot_t *s,
                     size_t slot, const char *next)
{
  if (s->single)
    oc_buf_printf(p, "def __oc_c%s: ([__oc_%zu] | __oc_send | empty), "
                  "__oc_c%s;\n", name, slot, next);
  else if (s->halt_style)
    oc_buf_printf(p, "def __oc_c%s: (__oc_%zu | {\"%zu\": .} | __oc_send"
                  " | empty), (%zu | __oc_send | empty), __oc_c%s;\n", name,
                  slot, slot, slot, next);
  else
    oc_buf_printf(p, "def __oc_c%s: (label $__oc_o | (__oc_%zu | {\"%zu\":"
                  " .} | __oc_send | break $__oc_o), (%zu | __oc_send |"
                  " empty)), __oc_c%s;\n", name, slot, slot, slot, next);
}

/* The chain defs (last first: jq binds names lexically) and the entry
 * point: an object is an item to map from the start; [f, item] starts
 * at chain position f (a restart, or the itemsToParse run). */
static void add_main(oc_mapping_t *m, oc_buf_t *p)
{
  size_t i, items = m->nslots - 1;
  char name[32], next[32];
  int wrap;
  oc_buf_printf(p, "def __oc_c%zu: %d | __oc_send | empty;\n", m->nchain,
                MSG_END);
  for (i = m->nchain; i-- > 0;) {
    snprintf(name, sizeof name, "%zu", i);
    snprintf(next, sizeof next, "%zu", i + 1);
    add_link(p, name, &m->slot[m->chain[i]], m->chain[i], next);
  }
  if (m->has_items && m->slot[items].form.kind == OC_JQ_COMPLEX) {
    snprintf(next, sizeof next, "%zu", m->nchain);
    add_link(p, "i", &m->slot[items], items, next);
  } else {
    oc_buf_printf(p, "def __oc_ci: __oc_c%zu;\n", m->nchain);
  }
  /* libjq 1.6: inside path(...) (the file's header) */
  wrap = m->path_wrap;
  oc_buf_printf(p, "if type == \"object\" then . as $__oc_in | %s\n"
                "else . as [$__oc_f, $__oc_in] | %s", wrap
                ? "__oc_b_path(.__oc | .[$__oc_in | __oc_c0])"
                : "__oc_c0", wrap ? "__oc_b_path(.[0] | .[$__oc_in | "
                : "$__oc_in | ");
  for (i = 1; i < m->nchain; i++)
    oc_buf_printf(p, "if $__oc_f == %zu then __oc_c%zu el", i, i);
  oc_buf_printf(p, "if $__oc_f == -1 then __oc_ci else __oc_c0 end%s end\n",
                wrap ? "])" : "");
}

/* }==================== */

/* {==================== callbacks ==================== */

/* Replace every `from` in s (NUL-terminated, size bytes) by `to`. */
static void replace_all(char *s, size_t size, const char *from,
                        const char *to)
{
  char tmp[OC_ERR_SIZE];
  char *at;
  size_t fl = strlen(from);
  while ((at = strstr(s, from))) {
    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(at - s), s, to, at + fl);
    snprintf(s, size, "%s", tmp);
  }
}

/* Syntax errors in jq 1.7.1's words on both versions (the bison token
 * names libjq 1.6 prints): "unexpected end of file" is what jq users see
 * from the jq 1.7.1 that Ocean runs, and reads better than "$end". */
static void same_words(char *msg, size_t size)
{
  replace_all(msg, size, "$end", "end of file");
  replace_all(msg, size, "expecting '$' or", "expecting BINDING or");
}

/* libjq reports "jq: error: <msg> at <top-level>, line N:\n<program>" and
 * then "jq: 1 compile error". Keep the first message without the program
 * and remember N. */
static void on_jq_error(void *ud, jv msg)
{
  oc_mapping_t *m = ud;
  const char *s, *at, *nl;
  size_t n;
  if (m->jq_err[0] || jv_get_kind(msg) != JV_KIND_STRING) {
    jv_free(msg);
    return;
  }
  s = jv_string_value(msg);
  if (!strncmp(s, "jq: error: ", 11))
    s += 11;
  at = strstr(s, " at <top-level>, line ");
  nl = strchr(s, '\n');
  if (at) {
    m->jq_err_line = atoi(at + 22);
    n = (size_t)(at - s);
  } else {
    n = nl ? (size_t)(nl - s) : strlen(s);
  }
  {
    jv cut = jv_string_sized(s, (int)n);
    oc_mapping_errmsg(cut, m->jq_err, sizeof m->jq_err);
    jv_free(cut);
  }
  jv_free(msg);
  same_words(m->jq_err, sizeof m->jq_err);
}

static void halt_run(oc_mapping_t *m, int breach)
{
  if (m->budget)
    oc_budget_halt(m->budget, breach);
  else if (!jq_halted(m->jq))
    jq_halt(m->jq, jv_invalid(), jv_invalid());
}

static void item_fails(oc_mapping_t *m, const char *msg)
{
  m->halted = 1;
  m->run.stop = 1;
  snprintf(m->halt_msg, sizeof m->halt_msg, "%s", msg);
}

/* The selector reported (chain position 0 of a jq selector): stop the run
 * unless its verdict lets the fields run. */
static void gate(oc_mapping_t *m)
{
  int k = m->state[0] == OC_SLOT_VALUE ? (int)jv_get_kind(m->val[0])
          : JV_KIND_INVALID;
  if (k == JV_KIND_TRUE || (k == JV_KIND_FALSE && m->run.parse_all))
    return;
  m->run.stop = 1;
  halt_run(m, OC_BREACH_NONE);
}

/* Slot k reported: its first output (value valid) or none. */
static void take_report(oc_mapping_t *m, size_t k, jv value)
{
  size_t want = m->run.next < m->nchain ? m->chain[m->run.next]
                : m->nslots - 1;
  if (m->run.next > m->run.last || k != want) {
    /* a slot reporting twice: a catch in it took our break (libjq 1.6) */
    jv_free(value);
    m->run.restart = 1;
    halt_run(m, OC_BREACH_NONE);
    return;
  }
  if (jv_is_valid(value)) {
    m->val[k] = value;
    m->state[k] = OC_SLOT_VALUE;
    if (m->slot[k].halt_style) {
      m->run.restart = 1;
      halt_run(m, OC_BREACH_NONE);
    }
  }
  m->run.next++;
  if (k == 0 && m->slot[0].form.kind == OC_JQ_COMPLEX && !m->run.stop
      && m->run.last < m->nchain)
    gate(m);
}

/* A single slot's outputs, collected: the one expected next. */
static void take_collected(oc_mapping_t *m, jv outs)
{
  size_t k = m->run.next < m->nchain ? m->chain[m->run.next]
             : m->nslots - 1;
  if (m->run.next > m->run.last || !m->slot[k].single) {
    jv_free(outs);
    m->run.restart = 1;
    halt_run(m, OC_BREACH_NONE);
    return;
  }
  take_report(m, k, jv_array_length(jv_copy(outs)) > 0
              ? jv_array_get(jv_copy(outs), 0) : jv_invalid());
  jv_free(outs);
}

/* halt / halt_error: the item fails with the message. */
static void take_halt(oc_mapping_t *m, jv msg)
{
  jv code = jv_array_get(jv_copy(msg), 0), text = jv_array_get(jv_copy(msg),
                                                                1);
  char t[OC_MAPPING_MSG_MAX + 8] = "", full[OC_MAPPING_MSG_MAX + 96];
  int c = jv_get_kind(code) == JV_KIND_NUMBER ? (int)jv_number_value(code)
          : 0;
  if (jv_get_kind(text) != JV_KIND_NULL)
    oc_mapping_errmsg(text, t, sizeof t);
  snprintf(full, sizeof full, "halt/halt_error in a mapping expression "
           "(exit code %d)%s%s", c, t[0] ? ": " : "", t);
  item_fails(m, full);
  halt_run(m, OC_BREACH_NONE);
  jv_free(code);
  jv_free(text);
}

static size_t slot_number(jv n)
{
  double d = jv_number_value(n);
  return d >= 0 && d < 1e9 ? (size_t)d : (size_t)-1;
}

/* Everything the program sends comes here (the user's `debug` is a
 * prelude def that does not reach libjq's). */
static void on_jq_debug(void *ud, jv msg)
{
  oc_mapping_t *m = ud;
  jv_kind k = jv_get_kind(msg);
  if (k == JV_KIND_NUMBER) {
    if (jv_number_value(msg) == MSG_END)
      m->run.end = 1;
    else
      take_report(m, slot_number(msg), jv_invalid());
  } else if (k == JV_KIND_ARRAY) {
    take_collected(m, msg);
    return;
  } else if (k == JV_KIND_OBJECT) {
    int it = jv_object_iter(msg);
    if (jv_object_iter_valid(msg, it)) {
      jv key = jv_object_iter_key(msg, it), v = jv_object_iter_value(msg, it);
      const char *s = jv_string_value(key);
      if (s[0] == 'f') {
        jv_free(m->run.ffi);
        m->run.ffi = v;
      } else if (s[0] == 'h') {
        take_halt(m, v);
        jv_free(v);
      } else {
        take_report(m, (size_t)strtoul(s, NULL, 10), v);
      }
      jv_free(key);
    }
  }
  jv_free(msg);
}

/* `input` in the program: the answer to the pending C builtin request. */
static jv on_jq_input(jq_state *jq, void *ud)
{
  oc_mapping_t *m = ud;
  oc_jqlib_t lib;
  jv req = m->run.ffi, r;
  (void)jq;
  m->run.ffi = jv_invalid();
  if (!jv_is_valid(req))
    return jv_invalid_with_msg(jv_string("input is not available in "
                                         "mappings"));
  lib.budget = m->budget;
  lib.mem_limit = m->mem_limit;
  lib.breach = OC_BREACH_NONE;
  r = oc_jqlib_call(&lib, req);
  if (lib.breach) {
    jv_free(r);
    halt_run(m, lib.breach);
    return jv_null();
  }
  return r;
}

/* }==================== */

/* {==================== compiling ==================== */

static jq_state *new_state(oc_mapping_t *m)
{
  jq_state *jq = jq_init();
  if (!jq)
    return NULL;
  /* without a library path, `import` aborts the process in libjq 1.6 */
  jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
  jq_set_error_cb(jq, on_jq_error, m);
  jq_set_debug_cb(jq, on_jq_debug, m);
  jq_set_input_cb(jq, on_jq_input, m);
  if (m->budget)
    oc_budget_watch_nomem(m->budget, jq);
  return jq;
}

typedef struct compile_call {
  oc_mapping_t *m;
  jq_state *jq;
  const char *text;
  int ok;
} compile_call_t;

static void do_compile(void *ud)
{
  compile_call_t *c = ud;
  c->ok = jq_compile(c->jq, c->text);
}

/* jq_compile on the budget's stack (a deeply nested expression recurses
 * in libjq's compiler). Returns 0, -1 (jq error), -2 (out of memory: the
 * state is unusable and has been abandoned). */
static int compile_text(oc_mapping_t *m, jq_state **jq, const char *text)
{
  compile_call_t c;
  m->jq_err[0] = '\0';
  m->jq_err_line = 0;
  if (m->compile_count)
    (*m->compile_count)++;
  c.m = m;
  c.jq = *jq;
  c.text = text;
  c.ok = 0;
  if (m->budget) {
    if (oc_budget_call(m->budget, do_compile, &c) != OC_BUDGET_OK) {
      *jq = NULL;                /* leaked: unsafe to tear down */
      return -2;
    }
  } else {
    do_compile(&c);
  }
  return c.ok ? 0 : -1;
}

static void teardown(void *ud)
{
  jq_state **jq = ud;
  jq_teardown(jq);
}

/* Free a jq_state on the budget's stack (its stack may hold deep values). */
static void free_state(oc_mapping_t *m, jq_state **jq)
{
  if (!*jq)
    return;
  if (!m->budget)
    jq_teardown(jq);
  else if (oc_budget_call(m->budget, teardown, jq) != OC_BUDGET_OK)
    *jq = NULL;                  /* out of memory while freeing: leak */
}

/* The whole program failed: find the slot, compile it alone for a message
 * about it alone, and write "kind 'k': path: invalid jq expression ...". */
static int explain(oc_mapping_t *m, char *err, size_t errlen)
{
  char whole[OC_ERR_SIZE];
  oc_slot_t *s = NULL;
  size_t i;
  snprintf(whole, sizeof whole, "%s", m->jq_err[0] ? m->jq_err
           : "compile error");
  for (i = 0; i < m->nslots && !s; i++)
    if (m->slot[i].form.kind == OC_JQ_COMPLEX
        && m->jq_err_line >= m->slot[i].line0
        && m->jq_err_line <= m->slot[i].line1)
      s = &m->slot[i];
  if (!s) {
    snprintf(err, errlen, "kind '%.100s': invalid mapping program: %s",
             m->kind, whole);
    return OC_MAPPING_EJQ;
  }
  {
    oc_buf_t p = OC_BUF_INIT;
    jq_state *jq = new_state(m);
    add_prelude(&p, m);
    oc_buf_adds(&p, s->code);
    oc_buf_addc(&p, '\n');
    if (jq && !p.oom && compile_text(m, &jq, oc_buf_cstr(&p)) == -1
        && m->jq_err[0])
      snprintf(whole, sizeof whole, "%s", m->jq_err);
    free_state(m, &jq);
    oc_buf_free(&p);
  }
  snprintf(err, errlen, "kind '%.100s': %s: invalid jq expression "
           "'%.200s%s': %s", m->kind, s->path, s->expr,
           strlen(s->expr) > 200 ? "..." : "", whole);
  return OC_MAPPING_EJQ;
}

/* A fresh jq_state with the program (after an out-of-memory escape). */
static int recompile(oc_mapping_t *m)
{
  jq_state *jq = new_state(m);
  int rc;
  if (!jq)
    return -1;
  rc = compile_text(m, &jq, m->text);
  if (rc != 0) {
    free_state(m, &jq);
    return -1;
  }
  m->jq = jq;
  return 0;
}

int oc_mapping_prog_compile(oc_mapping_t *m, char *err, size_t errlen)
{
  oc_buf_t p = OC_BUF_INIT;
  int rc = OC_MAPPING_OK;
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    const char *c = m->slot[i].code;
    int jq = m->slot[i].form.kind == OC_JQ_COMPLEX;
    if (jq && !m->guard_divide)
      m->guard_divide = oc_jq_may_split(c, strlen(c));
    if (jq && !m->jq17 && !m->path_wrap)
      m->path_wrap = !oc_jq_path_free(c, strlen(c));
    m->slot[i].single = jq && oc_jq_single(c, strlen(c));
    m->slot[i].halt_style = jq && !m->slot[i].single
      && oc_jq_catches(c, strlen(c), m->jq17);
  }
  add_prelude(&p, m);
  add_defs(m, &p);
  add_main(m, &p);
  if (p.oom || !(m->text = oc_buf_steal(&p, NULL))
      || !(m->jq = new_state(m))) {
    snprintf(err, errlen, "out of memory");
    rc = OC_MAPPING_ENOMEM;
  } else {
    int c = compile_text(m, &m->jq, m->text);
    if (c == -2) {
      snprintf(err, errlen, "kind '%.100s': out of memory compiling the "
               "mapping", m->kind);
      rc = OC_MAPPING_ENOMEM;
    } else if (c == -1) {
      rc = explain(m, err, errlen);
    }
  }
  oc_buf_free(&p);
  return rc;
}

void oc_mapping_prog_free(oc_mapping_t *m)
{
  free_state(m, &m->jq);
  free(m->text);
  m->text = NULL;
}

/* }==================== */

/* {==================== running ==================== */

void oc_mapping_slots_reset(oc_mapping_t *m)
{
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    if (m->state[i] == OC_SLOT_VALUE || m->state[i] == OC_SLOT_ERROR)
      jv_free(m->val[i]);
    m->state[i] = OC_SLOT_NONE;
  }
}

static size_t chain_slot(const oc_mapping_t *m, size_t pos)
{
  return pos < m->nchain ? m->chain[pos] : m->nslots - 1;
}

size_t oc_mapping_prog_slot(const oc_mapping_t *m)
{
  return chain_slot(m, m->run.next > m->run.last ? m->run.last
                    : m->run.next);
}

/* The slot at chain position pos raised msg (consumed; an error without a
 * message is jq 1.7's error(null)). */
static void take_error(oc_mapping_t *m, size_t pos, jv msg)
{
  size_t k = chain_slot(m, pos);
  m->val[k] = jv_invalid_has_msg(jv_copy(msg)) ? jv_invalid_get_msg(msg)
              : (jv_free(msg), jv_null());
  m->state[k] = OC_SLOT_ERROR;
}

/* A breach stopped the slot at chain position pos. */
static void take_breach(oc_mapping_t *m, size_t pos, int breach)
{
  char what[160], msg[OC_MAPPING_MSG_MAX + 160];
  size_t k = chain_slot(m, pos > m->run.last ? m->run.last : pos);
  if (m->budget)
    oc_budget_describe(m->budget, breach, what, sizeof what);
  else
    snprintf(what, sizeof what, "ran out of memory");
  snprintf(msg, sizeof msg, "%s: the mapping expression %s", m->slot[k].path,
           what);
  item_fails(m, msg);
}

/* One run from chain position pos; returns the position to run from next,
 * or (size_t)-1 when the item is decided. */
static size_t run_once(oc_mapping_t *m, size_t pos, jv input)
{
  jv start, r;
  int breach;
  if (pos == 0 && m->nchain && jv_get_kind(input) == JV_KIND_OBJECT)
    start = jv_copy(input);                     /* the common case */
  else
    start = jv_array_append(jv_array_append(jv_array_sized(2),
                            jv_number(pos == m->nchain ? -1
                                      : (double)pos)), jv_copy(input));
  m->run.next = pos;
  m->run.end = m->run.restart = 0;
  jv_free(m->run.ffi);
  m->run.ffi = jv_invalid();
  jq_start(m->jq, start, 0);
  r = jq_next(m->jq);
  breach = m->budget ? oc_budget_breach(m->budget) : 0;
  if (breach) {
    jv_free(r);
    take_breach(m, m->run.next, breach);
    return (size_t)-1;
  }
  if (m->run.stop || m->run.end || m->run.next > m->run.last) {
    jv_free(r);
    return (size_t)-1;
  }
  if (m->run.restart) {
    jv_free(r);
    return m->run.next;
  }
  /* the slot at run.next raised (or, impossibly, the program output) */
  if (jv_is_valid(r))
    jv_free(r);
  else
    take_error(m, m->run.next, r);
  if (m->run.next == 0 && m->slot[0].form.kind == OC_JQ_COMPLEX
      && m->run.last < m->nchain)
    return (size_t)-1;           /* the selector failed: no fields */
  return m->run.next + 1;
}

void oc_mapping_prog_eval(oc_mapping_t *m, size_t from, jv input,
                          int parse_all)
{
  size_t pos = from;
  memset(&m->run, 0, sizeof m->run);
  m->run.ffi = jv_invalid();
  m->run.parse_all = parse_all;
  m->run.last = from < m->nchain ? m->nchain - 1 : m->nchain;
  if (from >= m->nchain && from != m->nchain)
    return;
  if (from > m->run.last)
    return;                      /* no jq slot to run */
  if (!m->jq && recompile(m) != 0) {
    take_breach(m, from, OC_BREACH_NOMEM);
    return;
  }
  if (m->budget)
    oc_budget_arm(m->budget, m->jq, m->time_limit, m->mem_limit);
  while (pos != (size_t)-1 && pos <= m->run.last) {
    if (m->budget) {
      int breach = oc_budget_breach(m->budget);
      if (breach) {
        take_breach(m, pos, breach);
        break;
      }
    }
    pos = run_once(m, pos, input);
  }
  if (m->budget) {
    int breach = oc_budget_disarm(m->budget);
    if (breach && !m->halted)
      take_breach(m, m->run.next, breach);
  }
  jv_free(m->run.ffi);
  m->run.ffi = jv_invalid();
}

/* }==================== */
