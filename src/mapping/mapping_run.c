/*
 * mapping_run.c - one raw item through a compiled mapping: itemsToParse
 * expansion, the selector rule, first-output field values, the entity
 * built from the template, misconfiguration flags and dropped entities.
 *
 * Owns nothing beyond a call; per-item scratch lives in the mapping.
 */
#include "mapping_int.h"

#include <stdio.h>
#include <string.h>

#define MAX_VALUE_DEPTH 256      /* deeper field values are refused */

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
  if (m->halted)
    snprintf(got, sizeof got, "%s", m->halt_msg);
  else if (m->state[i] == OC_SLOT_NONE)
    snprintf(got, sizeof got, "no output");
  else if (m->state[i] == OC_SLOT_ERROR) {
    char e[OC_MAPPING_MSG_MAX + 8];
    oc_mapping_errmsg(m->val[i], e, sizeof e);
    snprintf(got, sizeof got, "an error: %s", e);
  } else
    oc_mapping_describe(m->val[i], got, sizeof got);
  if (m->halted)
    snprintf(msg, sizeof msg, "%s", got);
  else
    snprintf(msg, sizeof msg, "%s must produce %s, got %s", what, expected,
             got);
  if (i == m->nslots - 1 && m->has_items && sink->items_error)
    sink->items_error(sink->ud, msg);
  else
    item_error(sink, msg);
}

/* {==================== values ==================== */

/* Depth of v, stopping as soon as it exceeds limit. v borrowed. */
static int deeper_than(jv v, int limit)
{
  jv_kind k = jv_get_kind(v);
  int i, n, deep = 0;
  if (k != JV_KIND_ARRAY && k != JV_KIND_OBJECT)
    return 0;
  if (limit <= 0)
    return 1;
  if (k == JV_KIND_ARRAY) {
    n = jv_array_length(jv_copy(v));
    for (i = 0; i < n && !deep; i++) {
      jv e = jv_array_get(jv_copy(v), i);
      deep = deeper_than(e, limit - 1);
      jv_free(e);
    }
    return deep;
  }
  jv_object_foreach(v, key, val) {
    if (!deep)
      deep = deeper_than(val, limit - 1);
    jv_free(key);
    jv_free(val);
  }
  return deep;
}

/* Turn the slot results of fields into values: anything but a value is
 * null; null is flagged misconfigured (Ocean reports legitimate nulls
 * too); values nested too deeply for Lua and the serialiser are refused. */
static void settle_fields(oc_mapping_t *m, const oc_mapping_sink_t *sink)
{
  size_t i;
  for (i = 1; i <= m->nfields; i++) {
    if (m->state[i] == OC_SLOT_VALUE
        && deeper_than(m->val[i], MAX_VALUE_DEPTH)) {
      jv_free(m->val[i]);
      m->state[i] = OC_SLOT_NONE;
    }
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

/* Take the fast output r (consumed): one value per m->fast entry, or just
 * the selector when it gated the rest. */
static void take_fast(oc_mapping_t *m, jv r)
{
  size_t i, n = (size_t)jv_array_length(jv_copy(r));
  for (i = 0; i < n && i < m->nfast; i++) {
    m->val[m->fast[i]] = jv_array_get(jv_copy(r), (int)i);
    m->state[m->fast[i]] = OC_SLOT_VALUE;
  }
  jv_free(r);
}

/* Fill the selector and field slots for input (consumed). Returns the
 * selector verdict; the fields are filled when the verdict is 1, or 0
 * with parse_all. jq slots run in the fast mode first and in isolated
 * slot streams only when it fails. */
static int evaluate(oc_mapping_t *m, jv input, int parse_all,
                    const oc_mapping_sink_t *sink)
{
  int jq_sel = m->slot[0].form.kind == OC_JQ_COMPLEX, verdict, fast_ok = 0;
  size_t i;
  if (jq_sel) {
    jv r = oc_mapping_prog_fast(m, parse_all ? OC_MODE_FAST_ALL
                                : OC_MODE_FAST, jv_copy(input));
    if ((fast_ok = jv_is_valid(r)))
      take_fast(m, r);
    else if (!m->halted)
      oc_mapping_prog_slots(m, OC_MODE_SELECTOR, jv_copy(input));
  } else {
    eval_native(m, 0, input);
  }
  verdict = selector_verdict(m, sink);
  if (verdict < 0 || (verdict == 0 && !parse_all)) {
    jv_free(input);
    return verdict;
  }
  for (i = 1; i <= m->nfields; i++)
    if (m->slot[i].form.kind != OC_JQ_COMPLEX)
      eval_native(m, i, input);
  if (m->njq_fields && !fast_ok && !jq_sel) {
    jv r = oc_mapping_prog_fast(m, OC_MODE_FAST, jv_copy(input));
    if ((fast_ok = jv_is_valid(r)))
      take_fast(m, r);
  }
  if (m->njq_fields && !fast_ok && !m->halted)
    oc_mapping_prog_slots(m, OC_MODE_FIELDS, jv_copy(input));
  jv_free(input);
  if (m->halted) {
    item_error(sink, m->halt_msg);
    return -1;
  }
  return verdict;
}

/* Map one entity input (consumed). Returns -1 when the sink stops. */
static int map_input(oc_mapping_t *m, jv input, int parse_all,
                     const oc_mapping_sink_t *sink)
{
  int verdict, rc = 0;
  m->halted = 0;
  oc_mapping_slots_reset(m);     /* in case a sink callback longjmp'ed */
  verdict = evaluate(m, input, parse_all, sink);
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
  m->halted = 0;
  oc_mapping_slots_reset(m);
  if (m->slot[slot].form.kind != OC_JQ_COMPLEX)
    eval_native(m, slot, raw);
  else
    oc_mapping_prog_slots(m, OC_MODE_ITEMS, jv_copy(raw));
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
