/*
 * mapping_prog.c - the one jq program of a resource: its text, its
 * compilation (with errors traced back to the field that caused them) and
 * the ways of running it.
 *
 * Every slot (mapping_int.h) is a def of its own, so the program checks
 * them all; the main part runs only the slots that are not evaluated
 * natively (jqform.h), the "jq slots":
 *
 *   <1.7 polyfills>  [def env: {}; {} as $ENV |]
 *   def __oc_s($i; f): try (label $__oc_o | f | [$i, .], break $__oc_o)
 *                      catch [$i, null, .];
 *   def __oc_0: (
 *   <selector>
 *   );
 *   def __oc_1: ( ... one def per slot, each on its own lines ... );
 *   if type == "object" then . as $__oc_in |            # fast mode
 *     [($__oc_in | __oc_0) as $__oc_v0 | if $__oc_v0 == true then]
 *       ($__oc_in | __oc_3) as $__oc_v3 | ... | [$__oc_v0, $__oc_v3, ...]
 *     [else [$__oc_v0] end]
 *   else .[1] as $__oc_in | .[0] as $__oc_m |            # [mode, item]
 *     if $__oc_m == 1 then <fast, not gated by the selector>
 *     elif $__oc_m == 2 then $__oc_in | __oc_s(0; __oc_0)   # slot streams
 *     elif $__oc_m == 3 then $__oc_in | (__oc_s(3; __oc_3), ...)
 *     else $__oc_in | __oc_s(K; __oc_K) end                 # itemsToParse
 *   end
 *
 * Why two ways: the fast mode binds the first output of every jq slot
 * with `as` and returns them in one array; the engine reads only that
 * first output. It fails as a whole (no output or an error) as soon as one
 * expression errors or produces nothing; only then does the engine run the
 * slot stream, where each expression is isolated in __oc_s and reports
 * [i, value] or [i, null, error]. The C side keeps the first report of
 * each slot: libjq 1.6's `try` also catches errors raised *after* its body
 * produced a value (including `break`), so a user's `.a?` can report a
 * second, spurious value for its slot after the genuine first one. The same
 * bug makes Ocean-style `first((try [f] catch ...), ...)` emit twice,
 * which is why the first output is never taken inside jq.
 *
 * Each user expression sits on lines of its own (a trailing # comment
 * cannot swallow the wrapper), inside parentheses (its own `def`s parse),
 * and jqlex.c has checked that its brackets balance (it cannot close the
 * wrapper early). A compile error names a line; the slot owning that line
 * is compiled alone to word the message.
 *
 * Owns: the jq_state's callbacks point at the mapping (no global state).
 */
#include "mapping_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jq 1.7 builtins libjq 1.6 lacks, and 1.6 behaviour we replace. */
static const char *const polyfills[] = {
  "def pick(pathexps): . as $__oc_top | reduce path(pathexps) as $__oc_p"
  " (null; setpath($__oc_p; $__oc_top | getpath($__oc_p)));",
  "def abs: if type == \"number\" and . < 0 then - . else . end;",
  "def toarray: if type == \"array\" then . else [.] end;",
  "def ltrim: if type == \"string\" then sub(\"^\\\\s+\"; \"\")"
  " else error(\"trim input must be a string\") end;",
  "def rtrim: if type == \"string\" then sub(\"\\\\s+$\"; \"\")"
  " else error(\"trim input must be a string\") end;",
  "def trim: ltrim | rtrim;",
  "def have_decnum: false; def have_literal_numbers: false;",
  /* 1.6's limit(0; f) emits one value */
  "def limit($n; f): if $n > 0 then label $__oc_l | foreach f as $__oc_x"
  " (0; . + 1; $__oc_x, if . >= $n then break $__oc_l else empty end)"
  " elif $n == 0 then empty else f end;",
  "def debug(msg): (msg | debug | empty), .;",
  /* no input stream and no writes to the process's stderr */
  "def input: error(\"input is not available in mappings\");",
  "def inputs: empty; def stderr: .;",
  NULL
};

#define SANDBOX "def env: {}; {} as $ENV |\n"
#define SLOT_FN "def __oc_s($i; f): try (label $__oc_o | f | [$i, .]," \
                " break $__oc_o) catch [$i, null, .];\n"

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
    oc_json_dump(msg, &b, 0);
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

static void add_prelude(oc_buf_t *p, int allow_env)
{
  int i;
  for (i = 0; polyfills[i]; i++) {
    oc_buf_adds(p, polyfills[i]);
    oc_buf_addc(p, '\n');
  }
  if (!allow_env)
    oc_buf_adds(p, SANDBOX);
}

static void add_defs(oc_mapping_t *m, oc_buf_t *p)
{
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    m->slot[i].line0 = count_lines(p);
    oc_buf_printf(p, "def __oc_%zu: (\n", i);
    oc_buf_adds(p, m->slot[i].code);
    oc_buf_adds(p, "\n);");
    m->slot[i].line1 = count_lines(p);
    oc_buf_addc(p, '\n');
  }
}

/* Bind the fast slots' first outputs and return them as one array. */
static void add_fast_body(oc_mapping_t *m, oc_buf_t *p, size_t from)
{
  size_t i;
  for (i = from; i < m->nfast; i++)
    oc_buf_printf(p, "($__oc_in | __oc_%zu) as $__oc_v%zu |\n", m->fast[i],
                  m->fast[i]);
  oc_buf_adds(p, "[");
  for (i = 0; i < m->nfast; i++)
    oc_buf_printf(p, "%s$__oc_v%zu", i ? ", " : "", m->fast[i]);
  oc_buf_adds(p, "]\n");
}

static void add_main(oc_mapping_t *m, oc_buf_t *p)
{
  int jq_sel = m->slot[0].form.kind == OC_JQ_COMPLEX;
  size_t i, items = m->nslots - 1, k = 0;
  oc_buf_adds(p, "if type == \"object\" then . as $__oc_in |\n");
  if (jq_sel) {
    oc_buf_adds(p, "($__oc_in | __oc_0) as $__oc_v0 |\n"
                "if $__oc_v0 == true then\n");
    add_fast_body(m, p, 1);
    oc_buf_adds(p, "else [$__oc_v0] end\n");
  } else {
    add_fast_body(m, p, 0);
  }
  oc_buf_adds(p, "else .[1] as $__oc_in | .[0] as $__oc_m |\n"
              "if $__oc_m == 1 then\n");
  add_fast_body(m, p, 0);
  oc_buf_adds(p, "elif $__oc_m == 2 then $__oc_in | ");
  if (jq_sel)
    oc_buf_adds(p, "__oc_s(0; __oc_0)\n");
  else
    oc_buf_adds(p, "empty\n");
  oc_buf_adds(p, "elif $__oc_m == 3 then $__oc_in | (");
  for (i = 1; i <= m->nfields; i++)
    if (m->slot[i].form.kind == OC_JQ_COMPLEX)
      oc_buf_printf(p, "%s__oc_s(%zu; __oc_%zu)", k++ ? ", " : "", i, i);
  oc_buf_adds(p, k ? ")\n" : "empty)\n");
  if (m->has_items && m->slot[items].form.kind == OC_JQ_COMPLEX)
    oc_buf_printf(p, "else $__oc_in | __oc_s(%zu; __oc_%zu) end\n", items,
                  items);
  else
    oc_buf_adds(p, "else empty end\n");
  oc_buf_adds(p, "end\n");
}

/* }==================== */

/* {==================== compiling ==================== */

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
}

/* `debug` output is dropped (libjq 1.6's jq_init leaves the debug
 * callback unset: `debug` would call a garbage pointer). */
static void on_jq_debug(void *ud, jv msg)
{
  (void)ud;
  jv_free(msg);
}

/* No input stream: `input` and `inputs` see none. */
static jv on_jq_input(jq_state *jq, void *ud)
{
  (void)jq;
  (void)ud;
  return jv_invalid();
}

static jq_state *new_state(oc_mapping_t *m)
{
  jq_state *jq = jq_init();
  if (!jq)
    return NULL;
  /* without a library path, `import` aborts the process in libjq 1.6 */
  jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
  jq_set_error_cb(jq, on_jq_error, m);
  jq_set_debug_cb(jq, on_jq_debug, NULL);
  jq_set_input_cb(jq, on_jq_input, NULL);
  return jq;
}

static int compile_text(oc_mapping_t *m, jq_state *jq, const char *text)
{
  m->jq_err[0] = '\0';
  m->jq_err_line = 0;
  if (m->compile_count)
    (*m->compile_count)++;
  return jq_compile(jq, text) ? 0 : -1;
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
    if (m->jq_err_line >= m->slot[i].line0
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
    add_prelude(&p, m->allow_env);
    oc_buf_adds(&p, s->code);
    oc_buf_addc(&p, '\n');
    if (jq && !p.oom && compile_text(m, jq, oc_buf_cstr(&p)) != 0
        && m->jq_err[0])
      snprintf(whole, sizeof whole, "%s", m->jq_err);
    if (jq)
      jq_teardown(&jq);
    oc_buf_free(&p);
  }
  snprintf(err, errlen, "kind '%.100s': %s: invalid jq expression "
           "'%.200s%s': %s", m->kind, s->path, s->expr,
           strlen(s->expr) > 200 ? "..." : "", whole);
  return OC_MAPPING_EJQ;
}

int oc_mapping_prog_compile(oc_mapping_t *m, char *err, size_t errlen)
{
  oc_buf_t p = OC_BUF_INIT;
  int rc = OC_MAPPING_OK;
  add_prelude(&p, m->allow_env);
  oc_buf_adds(&p, SLOT_FN);
  add_defs(m, &p);
  add_main(m, &p);
  if (p.oom || !(m->jq = new_state(m))) {
    snprintf(err, errlen, "out of memory");
    rc = OC_MAPPING_ENOMEM;
  } else if (compile_text(m, m->jq, oc_buf_cstr(&p)) != 0) {
    rc = explain(m, err, errlen);
  }
  oc_buf_free(&p);
  return rc;
}

/* }==================== */

/* {==================== running ==================== */

static void start(oc_mapping_t *m, int mode, jv input)
{
  jv pair;
  if (mode == OC_MODE_FAST) {
    jq_start(m->jq, input, 0);
    return;
  }
  pair = jv_array_sized(2);
  pair = jv_array_append(pair, jv_copy(m->mode[mode]));
  pair = jv_array_append(pair, input);
  jq_start(m->jq, pair, 0);
}

/* libjq 1.6's jq_reset frees the halt exit code and message without
 * clearing them, so the second reset after a halt (the next jq_start, or
 * jq_teardown) frees them again. Reset once now, then store values that
 * are safe to free any number of times. */
static void defuse_halt(oc_mapping_t *m)
{
  jq_start(m->jq, jv_null(), 0);
  jq_halt(m->jq, jv_invalid(), jv_invalid());
}

/* halt / halt_error stop the program: remember why for the item error. */
static void note_halt(oc_mapping_t *m)
{
  jv code = jq_get_exit_code(m->jq), msg = jq_get_error_message(m->jq);
  char text[OC_MAPPING_MSG_MAX + 8] = "";
  int c = jv_get_kind(code) == JV_KIND_NUMBER ? (int)jv_number_value(code)
          : 0;
  if (jv_is_valid(msg) && jv_get_kind(msg) != JV_KIND_NULL)
    oc_mapping_errmsg(msg, text, sizeof text);
  m->halted = 1;
  snprintf(m->halt_msg, sizeof m->halt_msg, "halt/halt_error in a mapping "
           "expression (exit code %d)%s%s", c, text[0] ? ": " : "", text);
  jv_free(code);
  jv_free(msg);
  defuse_halt(m);
}

void oc_mapping_slots_reset(oc_mapping_t *m)
{
  size_t i;
  for (i = 0; i < m->nslots; i++) {
    if (m->state[i] != OC_SLOT_NONE)
      jv_free(m->val[i]);
    m->state[i] = OC_SLOT_NONE;
  }
}

jv oc_mapping_prog_fast(oc_mapping_t *m, int mode, jv input)
{
  jv r;
  start(m, mode, input);
  r = jq_next(m->jq);
  if (jv_get_kind(r) == JV_KIND_ARRAY)
    return r;
  if (jq_halted(m->jq))
    note_halt(m);
  jv_free(r);
  return jv_invalid();
}

/* Record one slot report [i, v] / [i, null, err] (consumed). */
static void take_report(oc_mapping_t *m, jv r)
{
  jv idx = jv_array_get(jv_copy(r), 0);
  size_t i = jv_get_kind(idx) == JV_KIND_NUMBER
             ? (size_t)jv_number_value(idx) : m->nslots;
  jv_free(idx);
  if (i < m->nslots && m->state[i] == OC_SLOT_NONE) {
    int is_err = jv_array_length(jv_copy(r)) == 3;
    m->val[i] = jv_array_get(jv_copy(r), is_err ? 2 : 1);
    m->state[i] = is_err ? OC_SLOT_ERROR : OC_SLOT_VALUE;
  }
  jv_free(r);
}

void oc_mapping_prog_slots(oc_mapping_t *m, int mode, jv input)
{
  start(m, mode, input);
  for (;;) {
    jv r = jq_next(m->jq);
    if (jv_get_kind(r) == JV_KIND_ARRAY) {
      take_report(m, r);
      continue;
    }
    if (jq_halted(m->jq))
      note_halt(m);
    jv_free(r);
    break;
  }
}

/* }==================== */
