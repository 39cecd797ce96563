/*
 * mapping.c - the resource model: walks one resource of a port app config,
 * numbers its expressions (slots), builds the entity template and the
 * signature, then has mapping_prog.c compile the single jq program.
 *
 * Owns (through oc_mapping_t): the slot table, the template, the key
 * cache, the jq_state. Misuse (a malformed resource) is OC_MAPPING_EINVAL;
 * an expression that does not lex or compile is OC_MAPPING_EJQ.
 */
#include "mapping_int.h"
#include "jq/jqanalyze.h"
#include "jq/jqform.h"
#include "jq/jqlex.h"
#include "jq/jqprelude.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIND_SHOWN 100           /* bytes of a kind quoted in messages */
#define EXPR_SHOWN 200           /* bytes of an expression quoted */

typedef struct builder {
  oc_mapping_t *m;
  size_t cap;
  oc_buf_t path;
  char *err;
  size_t errlen;
  int no_native, no_projection;
} builder_t;

/* {==================== helpers ==================== */

static char *dup_bytes(const char *s, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* obj[key] as a new reference; jv_invalid() when absent or obj is not an
 * object. obj is borrowed. */
static jv get(jv obj, const char *key)
{
  if (jv_get_kind(obj) != JV_KIND_OBJECT)
    return jv_invalid();
  return jv_object_get(jv_copy(obj), jv_string(key));
}

/* The first present key among two spellings (camelCase, snake_case). */
static jv get2(jv obj, const char *key, const char *alias)
{
  jv v = get(obj, key);
  if (jv_is_valid(v))
    return v;
  return get(obj, alias);
}

static int fail(builder_t *b, int code, const char *fmt, const char *what)
{
  snprintf(b->err, b->errlen, "kind '%.*s': ", KIND_SHOWN, b->m->kind);
  snprintf(b->err + strlen(b->err), b->errlen - strlen(b->err), fmt, what);
  return code;
}

static const char *kind_article(jv v)
{
  switch (jv_get_kind(v)) {
  case JV_KIND_OBJECT: return "an object";
  case JV_KIND_ARRAY: return "an array";
  default: return "a scalar";
  }
}

/* }==================== */

/* {==================== slots and template ==================== */

/* Add an expression slot for leaf (borrowed) at the builder's path.
 * Returns the slot number or a negative code. */
static int add_slot(builder_t *b, jv leaf)
{
  oc_mapping_t *m = b->m;
  oc_slot_t *s;
  if (m->nslots == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    oc_slot_t *ns = realloc(m->slot, cap * sizeof *ns);
    if (!ns)
      return fail(b, OC_MAPPING_ENOMEM, "%s", "out of memory");
    m->slot = ns;
    b->cap = cap;
  }
  s = &m->slot[m->nslots];
  memset(s, 0, sizeof *s);
  s->form.value = jv_invalid();
  s->form.path = jv_invalid();
  s->form.terms = jv_invalid();
  if (jv_get_kind(leaf) == JV_KIND_STRING) {
    s->expr = dup_bytes(jv_string_value(leaf),
                        (size_t)jv_string_length_bytes(jv_copy(leaf)));
  } else {                       /* a YAML scalar: its JSON text */
    oc_buf_t t = OC_BUF_INIT;
    oc_json_dump(leaf, &t, 0);
    s->expr = dup_bytes(oc_buf_cstr(&t), t.n);
    oc_buf_free(&t);
  }
  s->path = dup_bytes(oc_buf_cstr(&b->path), b->path.n);
  m->nslots++;
  if (!s->expr || !s->path)
    return fail(b, OC_MAPPING_ENOMEM, "%s", "out of memory");
  return (int)(m->nslots - 1);
}

/* A leaf that must be one expression (not an object or a list). */
static int scalar_leaf(builder_t *b, jv leaf, jv *tmpl)
{
  int slot;
  jv_kind k = jv_get_kind(leaf);
  if (k == JV_KIND_OBJECT || k == JV_KIND_ARRAY) {
    char what[OC_ERR_SIZE];
    snprintf(what, sizeof what, "%.200s must be a jq expression (a "
             "string), got %s", oc_buf_cstr(&b->path), kind_article(leaf));
    return fail(b, OC_MAPPING_EINVAL, "port.entity.mappings.%s", what);
  }
  if ((slot = add_slot(b, leaf)) < 0)
    return slot;
  *tmpl = jv_number(slot);
  return 0;
}

static size_t path_push(builder_t *b, const char *key, size_t n)
{
  size_t mark = b->path.n;
  if (mark)
    oc_buf_addc(&b->path, '.');
  oc_buf_add(&b->path, key, n);
  return mark;
}

/* A leaf that may be a search query: objects and lists are walked, every
 * scalar inside is an expression; list indexes are not part of paths. */
static int query_leaf(builder_t *b, jv node, jv *tmpl, int depth)
{
  int rc = 0, i, n;
  if (depth > 32)
    return fail(b, OC_MAPPING_EINVAL, "port.entity.mappings.%.200s is "
                "nested too deeply", oc_buf_cstr(&b->path));
  if (jv_get_kind(node) == JV_KIND_ARRAY) {
    *tmpl = jv_array();
    n = jv_array_length(jv_copy(node));
    for (i = 0; i < n && !rc; i++) {
      jv t = jv_invalid(), e = jv_array_get(jv_copy(node), i);
      rc = query_leaf(b, e, &t, depth + 1);
      jv_free(e);
      if (rc)
        jv_free(t);
      else
        *tmpl = jv_array_append(*tmpl, t);
    }
    return rc;
  }
  if (jv_get_kind(node) != JV_KIND_OBJECT)
    return scalar_leaf(b, node, tmpl);
  {
    jv keys = jv_keys(jv_copy(node));
    *tmpl = jv_object();
    n = jv_array_length(jv_copy(keys));
    for (i = 0; i < n && !rc; i++) {
      jv k = jv_array_get(jv_copy(keys), i), t = jv_invalid();
      size_t mark = path_push(b, jv_string_value(k),
                              (size_t)jv_string_length_bytes(jv_copy(k)));
      jv e = jv_object_get(jv_copy(node), jv_copy(k));
      rc = query_leaf(b, e, &t, depth + 1);
      jv_free(e);
      b->path.n = mark;
      if (!rc) {
        *tmpl = jv_object_set(*tmpl, k, t);
      } else {
        jv_free(k);
        jv_free(t);
      }
    }
    jv_free(keys);
  }
  return rc;
}

/* mappings.<key>: absent is fine unless required; a query or a scalar. */
static int top_field(builder_t *b, jv mappings, const char *key,
                     int required, int query, jv *tmpl, int *present)
{
  jv v = get(mappings, key);
  int rc;
  size_t mark;
  *present = 0;
  if (!jv_is_valid(v) || (required && jv_get_kind(v) == JV_KIND_NULL)) {
    jv_free(v);
    if (required)
      return fail(b, OC_MAPPING_EINVAL, "port.entity.mappings.%s is "
                  "required", key);
    return 0;
  }
  mark = path_push(b, key, strlen(key));
  rc = query ? query_leaf(b, v, tmpl, 0) : scalar_leaf(b, v, tmpl);
  b->path.n = mark;
  jv_free(v);
  *present = rc == 0;
  return rc;
}

/* mappings.properties / mappings.relations: {name: leaf}. Adds the sorted
 * names to sig[key]. */
static int named_fields(builder_t *b, jv mappings, const char *key,
                        int query, jv *tmpl)
{
  jv v = get(mappings, key), keys, names = jv_array();
  int rc = 0, i, n;
  if (!jv_is_valid(v)) {
    b->m->sig = jv_object_set(b->m->sig, jv_string(key), names);
    return 0;
  }
  if (jv_get_kind(v) != JV_KIND_OBJECT) {
    jv_free(v);
    jv_free(names);
    return fail(b, OC_MAPPING_EINVAL, "port.entity.mappings.%s must be an "
                "object", key);
  }
  keys = jv_keys(jv_copy(v));
  *tmpl = jv_object();
  n = jv_array_length(jv_copy(keys));
  for (i = 0; i < n && !rc; i++) {
    jv k = jv_array_get(jv_copy(keys), i), t = jv_invalid();
    jv e = jv_object_get(jv_copy(v), jv_copy(k));
    size_t mark = path_push(b, key, strlen(key));
    path_push(b, jv_string_value(k),
              (size_t)jv_string_length_bytes(jv_copy(k)));
    rc = query ? query_leaf(b, e, &t, 0) : scalar_leaf(b, e, &t);
    b->path.n = mark;
    jv_free(e);
    if (!rc) {
      names = jv_array_append(names, jv_copy(k));
      *tmpl = jv_object_set(*tmpl, k, t);
    } else {
      jv_free(k);
      jv_free(t);
    }
  }
  jv_free(keys);
  jv_free(v);
  b->m->sig = jv_object_set(b->m->sig, jv_string(key), names);
  return rc;
}

/* The entity template and the signature from port.entity.mappings. */
static int walk_mappings(builder_t *b, jv mappings)
{
  static const struct { const char *key; int required, query; } top[] = {
    {"identifier", 1, 1}, {"title", 0, 0}, {"blueprint", 1, 0},
    {"icon", 0, 0}, {"team", 0, 1}
  };
  oc_mapping_t *m = b->m;
  size_t i;
  int rc, present;
  if (jv_get_kind(mappings) != JV_KIND_OBJECT)
    return fail(b, OC_MAPPING_EINVAL, "%s", "port.entity.mappings must be "
                "an object with identifier and blueprint");
  m->tmpl = jv_object();
  m->sig = jv_object();
  for (i = 0; i < sizeof top / sizeof top[0]; i++) {
    jv t = jv_invalid();
    rc = top_field(b, mappings, top[i].key, top[i].required, top[i].query,
                   &t, &present);
    if (rc) {
      jv_free(t);
      return rc;
    }
    if (present)
      m->tmpl = jv_object_set(m->tmpl, jv_string(top[i].key), t);
    if (!top[i].required)
      m->sig = jv_object_set(m->sig, jv_string(top[i].key),
                             jv_bool(present));
  }
  for (i = 0; i < 2; i++) {
    const char *key = i ? "relations" : "properties";
    jv t = jv_invalid();
    if ((rc = named_fields(b, mappings, key, (int)i, &t))) {
      jv_free(t);
      return rc;
    }
    if (jv_is_valid(t))
      m->tmpl = jv_object_set(m->tmpl, jv_string(key), t);
  }
  return 0;
}

/* }==================== */

/* {==================== resource ==================== */

static int read_selector(builder_t *b, jv resource)
{
  jv sel = get(resource, "selector"), q = get(sel, "query");
  int rc;
  jv_free(sel);
  if (!jv_is_valid(q) || jv_get_kind(q) == JV_KIND_NULL) {
    jv_free(q);
    return fail(b, OC_MAPPING_EINVAL, "%s", "selector.query is required");
  }
  if (jv_get_kind(q) == JV_KIND_OBJECT || jv_get_kind(q) == JV_KIND_ARRAY) {
    rc = fail(b, OC_MAPPING_EINVAL, "selector.query must be a jq "
              "expression (a string), got %s", kind_article(q));
    jv_free(q);
    return rc;
  }
  oc_buf_adds(&b->path, "selector.query");
  rc = add_slot(b, q);
  b->path.n = 0;
  jv_free(q);
  return rc < 0 ? rc : 0;
}

/* port.itemsToParse and friends; the slot is added after the fields. */
static int read_items(builder_t *b, jv port)
{
  oc_mapping_t *m = b->m;
  jv expr = get2(port, "itemsToParse", "items_to_parse");
  jv name = get2(port, "itemsToParseName", "items_to_parse_name");
  jv top = get2(port, "itemsToParseTopLevelTransform",
                "items_to_parse_top_level_transform");
  int rc = 0;
  jv_kind tk = jv_get_kind(top);
  m->items_name = jv_string("item");
  if (jv_get_kind(name) == JV_KIND_STRING) {
    jv_free(m->items_name);
    m->items_name = jv_copy(name);
  } else if (jv_is_valid(name) && jv_get_kind(name) != JV_KIND_NULL) {
    rc = fail(b, OC_MAPPING_EINVAL, "%s", "port.itemsToParseName must be "
              "a string");
  }
  if (!rc && jv_is_valid(top) && tk != JV_KIND_NULL && tk != JV_KIND_TRUE
      && tk != JV_KIND_FALSE)
    rc = fail(b, OC_MAPPING_EINVAL, "%s", "port.itemsToParseTopLevelTransform"
              " must be a boolean");
  if (!rc && jv_is_valid(expr) && jv_get_kind(expr) != JV_KIND_NULL) {
    if (jv_get_kind(expr) == JV_KIND_OBJECT
        || jv_get_kind(expr) == JV_KIND_ARRAY) {
      rc = fail(b, OC_MAPPING_EINVAL, "port.itemsToParse must be a jq "
                "expression (a string), got %s", kind_article(expr));
    } else {
      oc_buf_adds(&b->path, "port.itemsToParse");
      rc = add_slot(b, expr);
      b->path.n = 0;
      rc = rc < 0 ? rc : 0;
      m->has_items = rc == 0;
      /* remember the transform choice until the code is rewritten */
      m->items_path = tk == JV_KIND_FALSE ? jv_invalid() : jv_true();
    }
  }
  jv_free(expr);
  jv_free(name);
  jv_free(top);
  return rc;
}

/* Rewrite every slot's expression for libjq; a lexical error fails the
 * resource with the slot's path. */
static int rewrite_slots(builder_t *b)
{
  oc_mapping_t *m = b->m;
  oc_buf_t code = OC_BUF_INIT;
  char msg[OC_ERR_SIZE];
  size_t i, k;
  for (i = 0; i < m->nslots; i++) {
    oc_slot_t *s = &m->slot[i];
    oc_buf_reset(&code);
    if (oc_jq_rewrite(s->expr, strlen(s->expr), &code, msg, sizeof msg)
        == 0) {
      for (k = 0; k < code.n && strchr(" \t\r\n", code.p[k]); k++)
        ;
      if (k == code.n)
        snprintf(msg, sizeof msg, "empty expression");
      else if ((s->code = dup_bytes(oc_buf_cstr(&code), code.n)))
        continue;
      else
        snprintf(msg, sizeof msg, "out of memory");
    }
    oc_buf_free(&code);
    snprintf(b->err, b->errlen, "kind '%.*s': %s: invalid jq expression "
             "'%.*s%s': %s", KIND_SHOWN, m->kind, s->path, EXPR_SHOWN,
             s->expr, strlen(s->expr) > EXPR_SHOWN ? "..." : "", msg);
    return OC_MAPPING_EJQ;
  }
  oc_buf_free(&code);
  if (m->has_items && jv_is_valid(m->items_path)) {
    oc_slot_t *s = &m->slot[m->nslots - 1];
    jv_free(m->items_path);
    m->items_path = oc_jq_leading_path(s->code, strlen(s->code));
  }
  return 0;
}

/* Which slots run natively, which in jq (and in what order in the
 * output), which part of raw items is read, the template as nodes. */
static int analyze_slots(builder_t *b)
{
  oc_mapping_t *m = b->m;
  jv paths = jv_array();
  int whole = b->no_projection;
  size_t i;
  if (!(m->chain = calloc(m->nslots, sizeof *m->chain)))
    whole = -1;
  for (i = 0; i < m->nslots && whole >= 0; i++) {
    oc_slot_t *s = &m->slot[i];
    size_t len = strlen(s->code);
    if (!b->no_native)
      oc_jq_simple_form(s->code, len, &s->form);
    if (s->form.kind == OC_JQ_COMPLEX && i <= m->nfields) {
      m->chain[m->nchain++] = i;
      m->njq_fields += i > 0;
    }
    if (!whole)
      whole = oc_jq_input_paths(s->code, len, &paths);
  }
  if (whole >= 0 && !whole && !(m->keys = oc_keytree_from_paths(paths)))
    whole = -1;
  jv_free(paths);
  m->entity = whole >= 0 ? oc_tnode_from_jv(m->tmpl) : NULL;
  m->id_node = oc_tnode_member(m->entity, "identifier");
  m->bp_node = oc_tnode_member(m->entity, "blueprint");
  if (!m->entity) {
    snprintf(b->err, b->errlen, "out of memory");
    return OC_MAPPING_ENOMEM;
  }
  return 0;
}

static int read_resource(builder_t *b, jv resource)
{
  jv port = get(resource, "port"), entity = get(port, "entity");
  jv mappings = get(entity, "mappings");
  int rc = read_selector(b, resource);
  if (!rc)
    rc = walk_mappings(b, mappings);
  b->m->nfields = b->m->nslots - 1;
  if (!rc)
    rc = read_items(b, port);
  jv_free(mappings);
  jv_free(entity);
  jv_free(port);
  return rc;
}

static oc_mapping_t *mapping_new(jv resource, const oc_mapping_opts_t *opts)
{
  oc_mapping_t *m = calloc(1, sizeof *m);
  jv kind = get(resource, "kind");
  if (!m) {
    jv_free(kind);
    return NULL;
  }
  m->kind = dup_bytes(jv_string_value(kind),
                      (size_t)jv_string_length_bytes(jv_copy(kind)));
  jv_free(kind);
  m->items_name = jv_invalid();
  m->items_path = jv_invalid();
  m->tmpl = jv_invalid();
  m->sig = jv_invalid();
  m->jq17 = oc_jq_is_17();
  if (opts) {
    m->allow_env = opts->allow_env;
    m->max_depth = opts->max_depth;
    m->compile_count = opts->compile_count;
    m->budget = oc_budget_ref(opts->budget);
    m->time_limit = opts->time_limit > 0 ? opts->time_limit : 0;
    m->mem_limit = opts->mem_limit;
  }
  if (m->max_depth <= 0)
    m->max_depth = OC_JSON_MAX_DEPTH;
  m->kc = oc_keycache_new();
  if (!m->kind || !m->kc) {
    oc_mapping_free(m);
    return NULL;
  }
  return m;
}

int oc_mapping_compile(jv resource, const oc_mapping_opts_t *opts,
                       oc_mapping_t **out, char *err, size_t errlen)
{
  builder_t b;
  int rc;
  jv kind = get(resource, "kind");
  *out = NULL;
  if (jv_get_kind(kind) != JV_KIND_STRING) {
    jv_free(kind);
    snprintf(err, errlen, "resource.kind must be a string");
    return OC_MAPPING_EINVAL;
  }
  jv_free(kind);
  memset(&b, 0, sizeof b);
  b.err = err;
  b.errlen = errlen;
  b.no_native = opts && opts->no_native;
  b.no_projection = opts && opts->no_projection;
  if (!(b.m = mapping_new(resource, opts))) {
    snprintf(err, errlen, "out of memory");
    return OC_MAPPING_ENOMEM;
  }
  rc = read_resource(&b, resource);
  oc_buf_free(&b.path);
  if (!rc)
    rc = rewrite_slots(&b);
  if (!rc)
    rc = analyze_slots(&b);
  if (!rc && (!(b.m->val = calloc(b.m->nslots, sizeof(jv)))
              || !(b.m->state = calloc(b.m->nslots, 1)))) {
    snprintf(err, errlen, "out of memory");
    rc = OC_MAPPING_ENOMEM;
  }
  if (!rc)
    rc = oc_mapping_prog_compile(b.m, err, errlen);
  if (rc) {
    oc_mapping_free(b.m);
    return rc;
  }
  b.m->compile_count = NULL;      /* only counted while compiling */
  *out = b.m;
  return OC_MAPPING_OK;
}

void oc_mapping_free(oc_mapping_t *m)
{
  size_t i;
  if (!m)
    return;
  oc_mapping_prog_free(m);
  if (m->val) {
    oc_mapping_slots_reset(m);
    free(m->val);
  }
  free(m->state);
  for (i = 0; i < m->nslots; i++) {
    free(m->slot[i].path);
    free(m->slot[i].expr);
    free(m->slot[i].code);
    oc_jq_form_free(&m->slot[i].form);
  }
  free(m->slot);
  free(m->chain);
  oc_tnode_free(m->entity);
  oc_keytree_free(m->keys);
  jv_free(m->items_name);
  jv_free(m->items_path);
  jv_free(m->tmpl);
  jv_free(m->sig);
  oc_keycache_free(m->kc);
  oc_budget_unref(m->budget);
  free(m->kind);
  free(m);
}

/* }==================== */

/* {==================== accessors ==================== */

const char *oc_mapping_kind(const oc_mapping_t *m)
{
  return m->kind;
}

size_t oc_mapping_field_count(const oc_mapping_t *m)
{
  return m->nfields;
}

const char *oc_mapping_field_path(const oc_mapping_t *m, size_t i)
{
  return i < m->nfields ? m->slot[i + 1].path : NULL;
}

const char *oc_mapping_field_expr(const oc_mapping_t *m, size_t i)
{
  return i < m->nfields ? m->slot[i + 1].expr : NULL;
}

oc_keycache_t *oc_mapping_keycache(oc_mapping_t *m)
{
  return m->kc;
}

int oc_mapping_max_depth(const oc_mapping_t *m)
{
  return m->max_depth;
}

const oc_keytree_t *oc_mapping_keytree(const oc_mapping_t *m)
{
  return m->keys;
}

jv oc_mapping_signature(const oc_mapping_t *m)
{
  return jv_copy(m->sig);
}

/* }==================== */
