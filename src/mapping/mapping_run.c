/*
 * mapping_run.c - one raw item through a compiled mapping: itemsToParse
 * expansion, the selector rule, first-output field values, the entity
 * built from the template, misconfiguration flags and dropped entities.
 *
 * Every value jq produces is computed, measured and (when too deep or too
 * big) freed inside oc_budget_call, on the budget's stack: libjq frees
 * values recursively, and the sink (Lua) must not run there. What comes
 * back to the caller's stack is at most OC_MAPPING_MAX_VALUE_DEPTH deep.
 * An item no jq slot looks at is evaluated where the caller is: native
 * forms only take parts of the input, whose depth the parsers bound.
 *
 * Owns nothing beyond a call; per-item scratch lives in the mapping.
 */
#include "mapping_int.h"

#include "jq/jqlib.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static void item_error(const oc_mapping_sink_t *sink, const char *msg)
{
  if (sink->error)
    sink->error(sink->ud, msg);
}

/* "<what> must produce <expected>, got ..." for a slot that did not (to
 * sink->items_error for itemsToParse's slot, when set). */
static void slot_error(oc_mapping_t *m, size_t i, const char *what,
                       const char *expected, const oc_mapping_sink_t *sink)
{
  char got[OC_MAPPING_MSG_MAX + 96], msg[OC_ERR_SIZE];
  if (m->state[i] == OC_SLOT_NONE)
    snprintf(got, sizeof got, "no output");
  else if (m->state[i] == OC_SLOT_BIG)
    snprintf(got, sizeof got, "a value nested deeper than %d levels or "
             "larger than the memory limit", OC_MAPPING_MAX_VALUE_DEPTH);
  else if (m->state[i] == OC_SLOT_ERROR) {
    char e[OC_MAPPING_MSG_MAX + 8];
    oc_mapping_errmsg(m->val[i], e, sizeof e);
    snprintf(got, sizeof got, "an error: %s", e);
  } else
    oc_mapping_describe(m->val[i], got, sizeof got);
  snprintf(msg, sizeof msg, "%s must produce %s, got %s", what, expected,
           got);
  if (i == m->nslots - 1 && m->has_items && sink->items_error)
    sink->items_error(sink->ud, msg);
  else
    item_error(sink, msg);
}

/* {==================== values ==================== */

/* Turn the slot results of fields into values: anything but a value is
 * null; null is flagged misconfigured (Ocean reports legitimate nulls
 * too); values nested too deeply for Lua and the serialiser, or too big,
 * were refused already (OC_SLOT_BIG). */
static void settle_fields(oc_mapping_t *m, const oc_mapping_sink_t *sink)
{
  size_t i;
  for (i = 1; i <= m->nfields; i++) {
    if (m->state[i] != OC_SLOT_VALUE) {
      if (m->state[i] == OC_SLOT_ERROR)
        jv_free(m->val[i]);
      m->val[i] = jv_null();
      m->state[i] = OC_SLOT_VALUE;
    }
    if (jv_get_kind(m->val[i]) == JV_KIND_NULL && sink->misconfigured)
      sink->misconfigured[i - 1] = 1;
  }
}

/* Falsy in Ocean's (Python's) sense: null, false, 0, "", [], {}. */
static int falsy(jv v)
{
  switch (jv_get_kind(v)) {
  case JV_KIND_NULL: case JV_KIND_FALSE: case JV_KIND_INVALID: return 1;
  case JV_KIND_NUMBER: return jv_number_value(v) == 0;
  case JV_KIND_STRING: return jv_string_length_bytes(jv_copy(v)) == 0;
  case JV_KIND_ARRAY: return jv_array_length(jv_copy(v)) == 0;
  case JV_KIND_OBJECT: return jv_object_length(jv_copy(v)) == 0;
  default: return 0;
  }
}

/* A template node's truthiness (objects/arrays of the template are
 * truthy unless empty). */
static int node_falsy(const oc_tnode_t *t, const jv *value, char *what,
                      size_t len)
{
  if (!t) {
    snprintf(what, len, "null");
    return 1;
  }
  if (t->kind == OC_T_VALUE) {
    if (!falsy(value[t->slot]))
      return 0;
    oc_mapping_describe(value[t->slot], what, len);
    return 1;
  }
  snprintf(what, len, "%s", t->kind == OC_T_OBJECT ? "{}" : "[]");
  return t->n == 0;
}

/* Check identifier and blueprint; on failure report the drop and return
 * non-zero. */
static int dropped(oc_mapping_t *m, const oc_mapping_sink_t *sink)
{
  const oc_tnode_t *node[2];
  static const char *const names[] = {"identifier", "blueprint"};
  char reason[200] = "", what[90];
  size_t k = 0;
  int i;
  node[0] = m->id_node;
  node[1] = m->bp_node;
  for (i = 0; i < 2; i++)
    if (node_falsy(node[i], m->val, what, sizeof what))
      k += (size_t)snprintf(reason + k, sizeof reason - k, "%s%s is %s",
                            k ? ", " : "", names[i], what);
  if (k && sink->dropped)
    sink->dropped(sink->ud, reason);
  return k != 0;
}

/* }==================== */

/* {==================== one input ==================== */

/* The selector's verdict: 1 true, 0 false, -1 item error (reported). */
static int selector_verdict(oc_mapping_t *m, const oc_mapping_sink_t *sink)
{
  if (m->state[0] == OC_SLOT_VALUE) {
    if (jv_get_kind(m->val[0]) == JV_KIND_TRUE)
      return 1;
    if (jv_get_kind(m->val[0]) == JV_KIND_FALSE)
      return 0;
  }
  slot_error(m, 0, "selector", "a boolean", sink);
  return -1;
}

/* Whether the fields are evaluated after the selector (no report). */
static int fields_wanted(const oc_mapping_t *m, int parse_all)
{
  jv_kind k = m->state[0] == OC_SLOT_VALUE ? jv_get_kind(m->val[0])
              : JV_KIND_INVALID;
  return k == JV_KIND_TRUE || (k == JV_KIND_FALSE && parse_all);
}

/* A native slot on input (borrowed). */
static void eval_native(oc_mapping_t *m, size_t i, jv input)
{
  jv v = oc_jq_form_eval(&m->slot[i].form, input);
  if (jv_is_valid(v)) {
    m->val[i] = v;
    m->state[i] = OC_SLOT_VALUE;
  } else {
    m->val[i] = jv_invalid_get_msg(v);
    m->state[i] = OC_SLOT_ERROR;
  }
}

/* Refuse (free, here) what jq produced that is nested deeper than
 * OC_MAPPING_MAX_VALUE_DEPTH or bigger than the memory limit as JSON;
 * error values deeper than that are replaced by a note. */
static void check_values(oc_mapping_t *m)
{
  size_t i, limit = m->mem_limit ? m->mem_limit : SIZE_MAX - 1;
  for (i = 0; i < m->nslots; i++) {
    int deep = 0;
    size_t size;
    if ((m->state[i] != OC_SLOT_VALUE && m->state[i] != OC_SLOT_ERROR)
        || m->slot[i].form.kind != OC_JQ_COMPLEX)
      continue;                  /* native values are parts of the input */
    size = oc_jqlib_weigh(m->val[i], limit, OC_MAPPING_MAX_VALUE_DEPTH,
                          &deep);
    if (!deep && size <= limit)
      continue;
    jv_free(m->val[i]);
    if (m->state[i] == OC_SLOT_ERROR) {
      m->val[i] = jv_string("(an error value too deep or too large to "
                            "show)");
    } else {
      m->val[i] = jv_null();
      m->state[i] = OC_SLOT_BIG;
    }
  }
}

/* What runs on the budget's stack for one input. */
typedef struct eval_call {
  oc_mapping_t *m;
  jv input;                      /* consumed by the call */
  int parse_all;
  int items;                     /* evaluate itemsToParse instead */
} eval_call_t;

static void evaluate(void *ud)
{
  eval_call_t *c = ud;
  oc_mapping_t *m = c->m;
  size_t i;
  if (c->items) {
    if (m->slot[m->nslots - 1].form.kind != OC_JQ_COMPLEX)
      eval_native(m, m->nslots - 1, c->input);
    else
      oc_mapping_prog_eval(m, m->nchain, c->input, c->parse_all);
  } else {
    int jq_sel = m->slot[0].form.kind == OC_JQ_COMPLEX;
    if (!jq_sel)
      eval_native(m, 0, c->input);
    if (m->nchain && (jq_sel || fields_wanted(m, c->parse_all)))
      oc_mapping_prog_eval(m, 0, c->input, c->parse_all);
    if (!m->halted && fields_wanted(m, c->parse_all))
      for (i = 1; i <= m->nfields; i++)
        if (m->slot[i].form.kind != OC_JQ_COMPLEX)
          eval_native(m, i, c->input);
  }
  check_values(m);
  jv_free(c->input);
  c->input = jv_invalid();
}

/* Evaluate input (consumed) on the budget's stack; an out-of-memory
 * escape fails the item (the jq_state is dropped: mapping_prog.c makes a
 * new one for the next item). */
static void evaluate_call(oc_mapping_t *m, jv input, int parse_all,
                          int items)
{
  eval_call_t c;
  c.m = m;
  c.input = input;
  c.parse_all = parse_all;
  c.items = items;
  m->halted = 0;
  if (!m->budget || !(items ? m->slot[m->nslots - 1].form.kind
                      == OC_JQ_COMPLEX : m->nchain > 0)) {
    evaluate(&c);                /* no jq: nothing to budget */
    return;
  }
  if (oc_budget_call(m->budget, evaluate, &c) == OC_BUDGET_OK)
    return;
  oc_budget_disarm(m->budget);
  m->jq = NULL;                  /* unsafe to use or free: abandoned */
  oc_mapping_slots_reset(m);
  m->halted = 1;
  snprintf(m->halt_msg, sizeof m->halt_msg, "%s: the mapping expression "
           "ran out of memory", m->slot[oc_mapping_prog_slot(m)].path);
}

/* Map one entity input (consumed). Returns -1 when the sink stops. */
static int map_input(oc_mapping_t *m, jv input, int parse_all,
                     const oc_mapping_sink_t *sink)
{
  int verdict, rc = 0;
  oc_mapping_slots_reset(m);     /* in case a sink callback longjmp'ed */
  evaluate_call(m, input, parse_all, 0);
  if (m->halted) {
    item_error(sink, m->halt_msg);
    oc_mapping_slots_reset(m);
    return 0;
  }
  verdict = selector_verdict(m, sink);
  if (verdict < 0 || (verdict == 0 && !parse_all)) {
    if (verdict == 0 && sink->filtered)
      sink->filtered(sink->ud);
    oc_mapping_slots_reset(m);
    return 0;
  }
  settle_fields(m, sink);
  if (!dropped(m, sink)) {
    if (sink->entity_view) {
      oc_mapping_view_t view;
      view.entity = m->entity;
      view.value = m->val;
      rc = sink->entity_view(sink->ud, &view, verdict == 1) ? -1 : 0;
    } else if (sink->entity) {
      jv entity = oc_tnode_build(m->entity, m->val);
      rc = sink->entity(sink->ud, entity, verdict == 1) ? -1 : 0;
    }
  }
  oc_mapping_slots_reset(m);
  return rc;
}

/* }==================== */

/* {==================== itemsToParse ==================== */

/* The parent copy merged with each element: with the top-level transform,
 * the path the expression starts with is deleted first (when that fails,
 * e.g. the path crosses a string, the parent is kept whole). */
static jv items_parent(oc_mapping_t *m, jv raw)
{
  jv paths, out;
  if (!jv_is_valid(m->items_path))
    return raw;
  paths = jv_array_append(jv_array(), jv_copy(m->items_path));
  out = jv_delpaths(jv_copy(raw), paths);
  if (!jv_is_valid(out)) {
    jv_free(out);
    return raw;
  }
  jv_free(raw);
  return out;
}

static int run_items(oc_mapping_t *m, jv raw, int parse_all,
                     const oc_mapping_sink_t *sink)
{
  size_t slot = m->nslots - 1;
  jv list, parent;
  int i, n, rc = 0;
  oc_mapping_slots_reset(m);
  evaluate_call(m, jv_copy(raw), parse_all, 1);
  if (m->halted) {
    item_error(sink, m->halt_msg);
    oc_mapping_slots_reset(m);
    jv_free(raw);
    return 0;
  }
  if (m->state[slot] == OC_SLOT_VALUE
      && jv_get_kind(m->val[slot]) == JV_KIND_NULL) {
    oc_mapping_slots_reset(m);   /* null: no children (Ocean skips it) */
    jv_free(raw);
    return 0;
  }
  if (m->state[slot] != OC_SLOT_VALUE
      || jv_get_kind(m->val[slot]) != JV_KIND_ARRAY) {
    slot_error(m, slot, "itemsToParse", "an array", sink);
    oc_mapping_slots_reset(m);
    jv_free(raw);
    return 0;
  }
  list = m->val[slot];
  m->state[slot] = OC_SLOT_NONE;
  parent = items_parent(m, raw);
  n = jv_array_length(jv_copy(list));
  for (i = 0; i < n && rc == 0; i++) {
    jv input = jv_object_set(jv_copy(parent), jv_copy(m->items_name),
                             jv_array_get(jv_copy(list), i));
    rc = map_input(m, input, parse_all, sink);
  }
  jv_free(list);
  jv_free(parent);
  return rc;
}

/* }==================== */

int oc_mapping_run(oc_mapping_t *m, jv raw, int parse_all,
                   const oc_mapping_sink_t *sink)
{
  static const oc_mapping_sink_t none = {NULL, NULL, NULL, NULL, NULL,
                                         NULL, NULL, NULL};
  if (!sink)
    sink = &none;
  if (jv_get_kind(raw) != JV_KIND_OBJECT) {
    char msg[80];
    jv_kind k = jv_get_kind(raw);
    snprintf(msg, sizeof msg, "raw item is %s, expected an object",
             k == JV_KIND_ARRAY ? "an array" : k == JV_KIND_NULL ? "null"
             : k == JV_KIND_STRING ? "a string" : k == JV_KIND_NUMBER
             ? "a number" : "a boolean");
    item_error(sink, msg);
    jv_free(raw);
    return 0;
  }
  if (m->has_items)
    return run_items(m, raw, parse_all, sink);
  return map_input(m, raw, parse_all, sink);
}
