/*
 * lmapping.c - the binding of src/mapping/mapping.c: compiled resources as
 * `ocean.Mapping` userdata, and parse turning raw items (Lua tables, JSON
 * texts, or one JSON array / NDJSON text) into the parse_items result.
 *
 *   core.mapping_compile(resource, allow_env [, opts]) -> m | nil, err, code
 *       opts: {time_limit = seconds (0: none), memory_limit = MiB (0:
 *             none), projection = false, native = false}
 *       code: "invalid" (malformed resource: the caller raises),
 *             "jq" (an expression does not compile), "nomem"
 *   core.mapping_stats() -> {compiles = n}   (jq_compile calls, this state)
 *   core.mapping_analyze(expr) -> {code=, form=, paths=}   (for tests)
 *   m:parse(items, parse_all, exact) -> {passed, failed, errors, dropped,
 *                                 misconfigured}
 *   m:signature(), m:fields(), m:kind(), m:close() (= __gc = __close)
 */
#include "lbind.h"
#include "jq/jqanalyze.h"
#include "jq/jqform.h"
#include "jq/jqlex.h"
#include "mapping/mapping.h"

#include <stdio.h>
#include <string.h>

#define STATS_KEY "ocean.mapping.stats"
#define BUDGET_MT "ocean.MappingBudget"
#define BUDGET_KEY "ocean.mapping.budget"

typedef struct lmapping {
  oc_mapping_t *m;
} lmapping_t;

/* The per-state compile counter (a userdata in the registry). */
static unsigned long *compile_counter(lua_State *L)
{
  unsigned long *n;
  lua_getfield(L, LUA_REGISTRYINDEX, STATS_KEY);
  n = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!n) {
    n = lua_newuserdata(L, sizeof *n);
    *n = 0;
    lua_setfield(L, LUA_REGISTRYINDEX, STATS_KEY);
  }
  return n;
}

/* The budget (watchdog thread, evaluation stack) of this Lua state: one
 * per state, created on first use, released when the state closes (each
 * mapping holds its own reference, so order does not matter). */
static int budget_gc(lua_State *L)
{
  oc_budget_t **b = luaL_checkudata(L, 1, BUDGET_MT);
  oc_budget_unref(*b);
  *b = NULL;
  return 0;
}

static oc_budget_t *state_budget(lua_State *L)
{
  oc_budget_t **b;
  lua_getfield(L, LUA_REGISTRYINDEX, BUDGET_KEY);
  b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (b && *b)
    return *b;
  b = lua_newuserdata(L, sizeof *b);
  *b = NULL;
  if (luaL_newmetatable(L, BUDGET_MT)) {
    lua_pushcfunction(L, budget_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (!(*b = oc_budget_new()))
    luaL_error(L, "out of memory");
  lua_setfield(L, LUA_REGISTRYINDEX, BUDGET_KEY);
  return *b;
}

static double opt_number(lua_State *L, int idx, const char *name, double dflt)
{
  double r = dflt;
  if (lua_type(L, idx) != LUA_TTABLE)
    return r;
  lua_getfield(L, idx, name);
  if (lua_type(L, -1) == LUA_TNUMBER)
    r = lua_tonumber(L, -1);
  else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
    r = 0;
  lua_pop(L, 1);
  return r;
}

static lmapping_t *check_mapping(lua_State *L, int idx)
{
  lmapping_t *u = luaL_checkudata(L, idx, OC_MAPPING_MT);
  if (!u->m)
    luaL_argerror(L, idx, "mapping is closed");
  return u;
}

oc_mapping_t *oc_check_mapping(lua_State *L, int idx)
{
  return check_mapping(L, idx)->m;
}

static int opt_false(lua_State *L, int idx, const char *name)
{
  int r;
  if (lua_type(L, idx) != LUA_TTABLE)
    return 0;
  lua_getfield(L, idx, name);
  r = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* core.mapping_compile(resource, allow_env [, {projection=, native=}]) */
static int lmapping_compile(lua_State *L)
{
  char err[OC_ERR_SIZE];
  oc_mapping_opts_t opts;
  lmapping_t *u;
  jv res;
  int rc;
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&opts, 0, sizeof opts);
  opts.allow_env = lua_toboolean(L, 2);
  opts.no_projection = opt_false(L, 3, "projection");
  opts.no_native = opt_false(L, 3, "native");
  opts.compile_count = compile_counter(L);
  opts.budget = state_budget(L);
  opts.time_limit = opt_number(L, 3, "time_limit",
                               OC_BUDGET_DEFAULT_SECONDS);
  {
    double mib = opt_number(L, 3, "memory_limit",
                            (double)(OC_BUDGET_DEFAULT_BYTES >> 20));
    opts.mem_limit = mib > 0 ? (size_t)(mib * 1048576.0) : 0;
  }
  u = lua_newuserdata(L, sizeof *u);           /* closed until compiled */
  u->m = NULL;
  luaL_setmetatable(L, OC_MAPPING_MT);
  res = oc_to_jv(L, 1, NULL, 64, err, sizeof err);
  if (!jv_is_valid(res)) {
    jv_free(res);
    lua_pushnil(L);
    lua_pushfstring(L, "resource: %s", err);
    lua_pushliteral(L, "invalid");
    return 3;
  }
  rc = oc_mapping_compile(res, &opts, &u->m, err, sizeof err);
  jv_free(res);
  if (rc == OC_MAPPING_OK)
    return 1;
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushstring(L, rc == OC_MAPPING_EINVAL ? "invalid"
                 : rc == OC_MAPPING_EJQ ? "jq" : "nomem");
  return 3;
}

/* {==================== parse ==================== */

/* Stack slots of the lists being filled, and where we are. */
typedef struct run_ctx {
  lua_State *L;
  oc_mapping_t *m;
  int list[4];                   /* passed, failed, errors, dropped */
  lua_Integer n[4];
  lua_Integer index;             /* 1-based position of the raw item */
  int parse_all;
  int exact;                     /* exact numbers (ljson.c) in entities */
  oc_mapping_sink_t sink;
} run_ctx_t;

enum { L_PASSED, L_FAILED, L_ERRORS, L_DROPPED };

/* The entity as Lua tables, straight from the template and the values
 * (no jv objects are built for it). */
static void push_node(lua_State *L, const oc_tnode_t *t, const jv *value,
                      int exact)
{
  size_t i;
  luaL_checkstack(L, 4, "entity nested too deeply");
  switch (t->kind) {
  case OC_T_VALUE:
    oc_push_jv_ex(L, value[t->slot], exact);
    return;
  case OC_T_ARRAY:
    lua_createtable(L, (int)t->n, 0);
    for (i = 0; i < t->n; i++) {
      push_node(L, &t->child[i], value, exact);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    oc_set_array_mt(L);
    return;
  default:
    lua_createtable(L, 0, (int)t->n);
    for (i = 0; i < t->n; i++) {
      lua_pushlstring(L, t->child[i].key, t->child[i].keylen);
      push_node(L, &t->child[i], value, exact);
      lua_rawset(L, -3);
    }
  }
}

static int on_entity(void *ud, const oc_mapping_view_t *view, int passed)
{
  run_ctx_t *c = ud;
  int which = passed ? L_PASSED : L_FAILED;
  push_node(c->L, view->entity, view->value, c->exact);
  lua_rawseti(c->L, c->list[which], ++c->n[which]);
  return 0;
}

/* errors / dropped entries: {index = i, <field> = text} */
static void push_report(run_ctx_t *c, int which, const char *field,
                        const char *text)
{
  lua_State *L = c->L;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, c->index);
  lua_setfield(L, -2, "index");
  lua_pushstring(L, text);
  lua_setfield(L, -2, field);
  lua_rawseti(L, c->list[which], ++c->n[which]);
}

static void on_error(void *ud, const char *msg)
{
  push_report(ud, L_ERRORS, "message", msg);
}

static void on_dropped(void *ud, const char *reason)
{
  push_report(ud, L_DROPPED, "reason", reason);
}

static int run_one(run_ctx_t *c, jv raw)
{
  return oc_mapping_run(c->m, raw, c->parse_all, &c->sink);
}

static int each_json(jv value, size_t index, void *ud)
{
  run_ctx_t *c = ud;
  c->index = (lua_Integer)index + 1;
  return run_one(c, value);
}

static int is_lua_array(lua_State *L, int idx)
{
  if (lua_getmetatable(L, idx)) {
    int r;
    luaL_getmetatable(L, OC_ARRAY_MT);
    r = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (r)
      return 1;
  }
  return lua_rawlen(L, idx) > 0;
}

/* Put ".key" into an "... at $<path>" message from a nested conversion. */
static void prefix_path(char *err, size_t errlen, const char *key,
                        size_t keylen)
{
  char tmp[OC_ERR_SIZE];
  char *at = strstr(err, " at $");
  if (!at)
    return;
  at += 5;
  snprintf(tmp, sizeof tmp, "%.*s.%.*s%s", (int)(at - err), err,
           (int)(keylen > 60 ? 60 : keylen), key, at);
  snprintf(err, errlen, "%s", tmp);
}

/* The raw Lua value at idx, `depth` levels inside the raw item, as a jv,
 * converting only the part of it the mapping reads (tree; NULL: all of
 * it). The item nests at most the mapping's max_depth levels, as in text. */
static jv project_lua(lua_State *L, int idx, const oc_keytree_t *tree,
                      oc_mapping_t *m, int depth, char *err, size_t errlen)
{
  jv out;
  size_t i;
  idx = lua_absindex(L, idx);
  if (!tree || lua_type(L, idx) != LUA_TTABLE || is_lua_array(L, idx))
    return oc_to_jv_at(L, idx, oc_mapping_keycache(m),
                       oc_mapping_max_depth(m), depth, err, errlen);
  if (depth >= oc_mapping_max_depth(m))
    return oc_to_jv_at(L, idx, NULL, oc_mapping_max_depth(m), depth, err,
                       errlen);      /* fails with the bound's message */
  luaL_checkstack(L, 4, "raw item nested too deeply");
  out = jv_object();
  for (i = 0; i < tree->n; i++) {
    const oc_keytree_entry_t *e = &tree->entry[i];
    jv v;
    lua_pushlstring(L, e->key, e->len);
    lua_rawget(L, idx);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    v = project_lua(L, -1, e->sub, m, depth + 1, err, errlen);
    lua_pop(L, 1);
    if (!jv_is_valid(v)) {
      jv_free(out);
      prefix_path(err, errlen, e->key, e->len);
      return v;
    }
    out = jv_object_set(out, jv_copy(e->jkey), v);
  }
  return out;
}

/* The items at idx: a list of tables / JSON texts. */
static void parse_list(run_ctx_t *c, int idx)
{
  lua_State *L = c->L;
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, idx);
  char err[OC_ERR_SIZE];
  if (n == 0) {
    lua_pushnil(L);
    if (lua_next(L, idx)) {
      lua_pop(L, 2);
      luaL_argerror(L, 1, "items must be a list of raw items or a JSON "
                    "text (got an object: wrap one item in a list)");
    }
  }
  for (i = 1; i <= n; i++) {
    jv raw;
    c->index = i;
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      raw = oc_mapping_parse_item(c->m, s, len, err, sizeof err);
    } else {
      raw = project_lua(L, -1, oc_mapping_keytree(c->m), c->m, 0, err,
                        sizeof err);
    }
    lua_pop(L, 1);
    if (!jv_is_valid(raw)) {
      jv_free(raw);
      on_error(c, err);
      continue;
    }
    run_one(c, raw);
  }
}

jv oc_mapping_lua_raw(lua_State *L, int idx, oc_mapping_t *m, char *err,
                      size_t errlen)
{
  return project_lua(L, idx, oc_mapping_keytree(m), m, 0, err, errlen);
}

static void parse_text(run_ctx_t *c, int idx)
{
  size_t len;
  const char *s = lua_tolstring(c->L, idx, &len);
  char err[OC_ERR_SIZE];
  c->index = 0;
  if (oc_mapping_each_json(c->m, s, len, each_json, c, err, sizeof err)) {
    c->index++;                  /* the item that did not parse */
    on_error(c, err);
  }
}

/* result.misconfigured = {path = expression} for the flagged fields. */
static void push_misconfigured(lua_State *L, oc_mapping_t *m,
                               const unsigned char *flags)
{
  size_t i, n = oc_mapping_field_count(m);
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    if (!flags[i])
      continue;
    lua_pushstring(L, oc_mapping_field_expr(m, i));
    lua_setfield(L, -2, oc_mapping_field_path(m, i));
  }
}

/* m:parse(items, parse_all, exact) -> result */
static int lmapping_parse(lua_State *L)
{
  static const char *const names[] = {"passed", "failed", "errors",
                                      "dropped"};
  lmapping_t *u = check_mapping(L, 1);
  run_ctx_t c;
  unsigned char *flags;
  int i, t = lua_type(L, 2);
  if (t != LUA_TTABLE && t != LUA_TSTRING)
    return luaL_argerror(L, 2, "items must be a list or a JSON text");
  memset(&c, 0, sizeof c);
  c.L = L;
  c.m = u->m;
  c.parse_all = lua_toboolean(L, 3);
  c.exact = lua_toboolean(L, 4);
  c.sink.entity_view = on_entity;
  c.sink.error = on_error;
  c.sink.dropped = on_dropped;
  c.sink.ud = &c;
  lua_settop(L, 4);
  /* flags live in a userdata: freed by the GC even if Lua raises */
  flags = lua_newuserdata(L, oc_mapping_field_count(u->m) + 1);
  memset(flags, 0, oc_mapping_field_count(u->m) + 1);
  c.sink.misconfigured = flags;
  for (i = 0; i < 4; i++) {
    lua_newtable(L);
    oc_set_array_mt(L);
    c.list[i] = lua_gettop(L);
  }
  if (t == LUA_TSTRING)
    parse_text(&c, 2);
  else
    parse_list(&c, 2);
  lua_createtable(L, 0, 5);
  for (i = 0; i < 4; i++) {
    lua_pushvalue(L, c.list[i]);
    lua_setfield(L, -2, names[i]);
  }
  push_misconfigured(L, u->m, flags);
  lua_setfield(L, -2, "misconfigured");
  return 1;
}

/* }==================== */

static int lmapping_signature(lua_State *L)
{
  lmapping_t *u = check_mapping(L, 1);
  jv sig = oc_mapping_signature(u->m);
  oc_push_jv(L, sig);
  jv_free(sig);
  return 1;
}

static int lmapping_fields(lua_State *L)
{
  lmapping_t *u = check_mapping(L, 1);
  size_t i, n = oc_mapping_field_count(u->m);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, oc_mapping_field_path(u->m, i));
    lua_setfield(L, -2, "path");
    lua_pushstring(L, oc_mapping_field_expr(u->m, i));
    lua_setfield(L, -2, "expr");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int lmapping_kind(lua_State *L)
{
  lua_pushstring(L, oc_mapping_kind(check_mapping(L, 1)->m));
  return 1;
}

static int lmapping_close(lua_State *L)
{
  lmapping_t *u = luaL_checkudata(L, 1, OC_MAPPING_MT);
  oc_mapping_free(u->m);
  u->m = NULL;
  return 0;
}

static int lmapping_tostring(lua_State *L)
{
  lmapping_t *u = luaL_checkudata(L, 1, OC_MAPPING_MT);
  if (u->m)
    lua_pushfstring(L, "ocean.Mapping (%s, %d fields)", oc_mapping_kind(u->m),
                    (int)oc_mapping_field_count(u->m));
  else
    lua_pushliteral(L, "ocean.Mapping (closed)");
  return 1;
}

/* core.mapping_stats() -> {compiles = n} */
static int lmapping_stats(lua_State *L)
{
  unsigned long *n = compile_counter(L);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, (lua_Integer)*n);
  lua_setfield(L, -2, "compiles");
  return 1;
}

/* core.mapping_analyze(expr) -> {code=, form=, paths=} | nil, err
 * What the compiler sees in one expression (for tests): the rewritten
 * code, its simple form ("const", "path", "eq", "ne", "plus" or
 * "complex") and the input paths it reads (nil: the whole input). */
static int lmapping_analyze(lua_State *L)
{
  static const char *const forms[] = {"complex", "const", "path", "eq",
                                      "ne", "plus"};
  size_t n;
  const char *expr = luaL_checklstring(L, 1, &n);
  char err[OC_ERR_SIZE];
  oc_buf_t code = OC_BUF_INIT;
  oc_jq_form_t form;
  jv paths = jv_array();
  if (oc_jq_rewrite(expr, n, &code, err, sizeof err)) {
    oc_buf_free(&code);
    jv_free(paths);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_createtable(L, 0, 3);
  lua_pushlstring(L, oc_buf_cstr(&code), code.n);
  lua_setfield(L, -2, "code");
  oc_jq_simple_form(oc_buf_cstr(&code), code.n, &form);
  lua_pushstring(L, forms[form.kind]);
  lua_setfield(L, -2, "form");
  oc_jq_form_free(&form);
  if (oc_jq_input_paths(oc_buf_cstr(&code), code.n, &paths) == 0) {
    oc_push_jv(L, paths);
    lua_setfield(L, -2, "paths");
  }
  jv_free(paths);
  oc_buf_free(&code);
  return 1;
}

static const luaL_Reg mapping_methods[] = {
  {"parse", lmapping_parse},
  {"signature", lmapping_signature},
  {"fields", lmapping_fields},
  {"kind", lmapping_kind},
  {"close", lmapping_close},
  {NULL, NULL}
};

static const luaL_Reg mapping_funcs[] = {
  {"mapping_compile", lmapping_compile},
  {"mapping_stats", lmapping_stats},
  {"mapping_analyze", lmapping_analyze},
  {NULL, NULL}
};

void oc_open_mapping(lua_State *L)
{
  if (luaL_newmetatable(L, OC_MAPPING_MT)) {
    luaL_newlib(L, mapping_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lmapping_close);     /* __gc is __close */
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__gc");
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, lmapping_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, mapping_funcs, 0);
}
