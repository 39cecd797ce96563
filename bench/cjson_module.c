/*
 * bench/cjson_module.c - the cJSON-based paths of issue 12's item 9, as a
 * Lua module for bench/cjson.lua (`make bench-cjson`): never part of the
 * engine. Built with the engine's own sources (src/, src/lua/), so the
 * ocean.Mapping userdata of ocean.core can be run here, and with Debian's
 * libcjson.
 *
 *   cj.map(m, ndjson, path)   -> entities (Lua tables), one per item passed
 *       path "scanner": the engine's scanner (oc_mapping_each_json);
 *       path "cjson": cJSON_ParseWithLengthOpts per item, then convert only
 *       what the mapping reads (its key tree) into jq values.
 *       Both run the same oc_mapping_run and push entities the same way.
 *   cj.to_jv(text, path, reps) -> seconds: parse to a whole jq value and
 *       free it, reps times (Port responses, config).
 *   cj.decode(text)           -> Lua value through cJSON (ocean.json.decode)
 *   cj.encode(value)          -> text through a cJSON tree (ocean.json.encode)
 *   cj.check(text)            -> ok, what: what cJSON keeps of text
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/lbind.h"
#include "mapping/mapping_int.h"

/* {==================== cJSON -> jv ==================== */

static jv cj_to_jv(const cJSON *c, const oc_keytree_t *tree,
                   oc_keycache_t *kc);

static jv cj_object(const cJSON *c, const oc_keytree_t *tree,
                    oc_keycache_t *kc)
{
  jv o = jv_object();
  const cJSON *e;
  for (e = c->child; e; e = e->next) {
    size_t n = strlen(e->string);
    const oc_keytree_t *sub = NULL;
    jv key;
    if (tree) {                  /* only what the mapping reads */
      const oc_keytree_entry_t *k = oc_keytree_find(tree, e->string, n);
      if (!k)
        continue;
      key = jv_copy(k->jkey);
      sub = k->sub;
    } else {
      key = oc_keycache_get(kc, e->string, n);
    }
    o = jv_object_set(o, key, cj_to_jv(e, sub, kc));
  }
  return o;
}

static jv cj_to_jv(const cJSON *c, const oc_keytree_t *tree,
                   oc_keycache_t *kc)
{
  const cJSON *e;
  jv a;
  switch (c->type & 0xff) {
  case cJSON_False: return jv_false();
  case cJSON_True: return jv_true();
  case cJSON_NULL: return jv_null();
  case cJSON_Number: return jv_number(c->valuedouble);
  case cJSON_String: return jv_string(c->valuestring);
  case cJSON_Array:
    a = jv_array();
    for (e = c->child; e; e = e->next)
      a = jv_array_append(a, cj_to_jv(e, NULL, kc));
    return a;
  case cJSON_Object:
    return cj_object(c, tree, kc);
  default:
    return jv_invalid();
  }
}

/* }==================== */

/* {==================== mapping ==================== */

typedef struct map_ctx {
  lua_State *L;
  oc_mapping_t *m;
  lua_Integer n;
  oc_mapping_sink_t sink;
} map_ctx_t;

/* As lmapping.c's push_node: the entity as Lua tables from the view. */
static void push_node(lua_State *L, const oc_tnode_t *t, const jv *value)
{
  size_t i;
  switch (t->kind) {
  case OC_T_VALUE:
    oc_push_jv(L, value[t->slot]);
    return;
  case OC_T_ARRAY:
    lua_createtable(L, (int)t->n, 0);
    for (i = 0; i < t->n; i++) {
      push_node(L, &t->child[i], value);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    oc_set_array_mt(L);
    return;
  default:
    lua_createtable(L, 0, (int)t->n);
    for (i = 0; i < t->n; i++) {
      lua_pushlstring(L, t->child[i].key, t->child[i].keylen);
      push_node(L, &t->child[i], value);
      lua_rawset(L, -3);
    }
  }
}

static int on_entity(void *ud, const oc_mapping_view_t *view, int passed)
{
  map_ctx_t *c = ud;
  if (passed) {
    push_node(c->L, view->entity, view->value);
    lua_rawseti(c->L, -2, ++c->n);
  }
  return 0;
}

static int each_item(jv v, size_t index, void *ud)
{
  map_ctx_t *c = ud;
  (void)index;
  oc_mapping_run(c->m, v, 0, &c->sink);
  return 0;
}

static int cj_map(lua_State *L)
{
  oc_mapping_t *m = oc_check_mapping(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n), *end = s + n, *p = s;
  const char *path = luaL_checkstring(L, 3);
  char err[OC_ERR_SIZE];
  map_ctx_t c;
  memset(&c, 0, sizeof c);
  c.L = L;
  c.m = m;
  c.sink.entity_view = on_entity;
  c.sink.ud = &c;
  lua_newtable(L);
  if (strcmp(path, "scanner") == 0) {
    if (oc_mapping_each_json(m, s, n, each_item, &c, err, sizeof err))
      return luaL_error(L, "%s", err);
    return 1;
  }
  while (p < end) {
    const char *next = NULL;
    cJSON *item;
    while (p < end && (*p == '\n' || *p == ' ' || *p == '\r' || *p == '\t'))
      p++;
    if (p >= end)
      break;
    item = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &next, 0);
    if (!item)
      return luaL_error(L, "cJSON: invalid JSON at byte %d",
                        (int)(cJSON_GetErrorPtr() - s));
    oc_mapping_run(m, cj_to_jv(item, oc_mapping_keytree(m),
                               oc_mapping_keycache(m)), 0, &c.sink);
    cJSON_Delete(item);
    p = next;
  }
  return 1;
}

/* }==================== */

/* {==================== whole values ==================== */

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int cj_to_jv_bench(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int cjson = strcmp(luaL_checkstring(L, 2), "cjson") == 0;
  lua_Integer i, reps = luaL_checkinteger(L, 3);
  char err[OC_ERR_SIZE];
  oc_keycache_t *kc = oc_keycache_new();
  double t0 = now();
  for (i = 0; i < reps; i++) {
    jv v;
    if (cjson) {
      cJSON *c = cJSON_ParseWithLength(s, n);
      v = c ? cj_to_jv(c, NULL, kc) : jv_invalid();
      cJSON_Delete(c);
    } else {
      v = oc_json_to_jv(s, n, OC_JSON_MAX_DEPTH, kc, err, sizeof err);
    }
    if (!jv_is_valid(v)) {
      jv_free(v);
      oc_keycache_free(kc);
      return luaL_error(L, "invalid JSON");
    }
    jv_free(v);
  }
  lua_pushnumber(L, now() - t0);
  oc_keycache_free(kc);
  return 1;
}

static void push_cjson(lua_State *L, const cJSON *c)
{
  const cJSON *e;
  lua_Integer i = 0;
  luaL_checkstack(L, 4, "nested too deeply");
  switch (c->type & 0xff) {
  case cJSON_False: lua_pushboolean(L, 0); break;
  case cJSON_True: lua_pushboolean(L, 1); break;
  case cJSON_NULL: oc_push_null(L); break;
  case cJSON_Number:
#if OC_LUA_HAS_INTEGERS
    if (c->valuedouble == floor(c->valuedouble)
        && fabs(c->valuedouble) < 9.2e18) {
      lua_pushinteger(L, (lua_Integer)c->valuedouble);
      break;
    }
#endif
    lua_pushnumber(L, c->valuedouble);
    break;
  case cJSON_String: lua_pushstring(L, c->valuestring); break;
  case cJSON_Array:
    lua_newtable(L);
    for (e = c->child; e; e = e->next) {
      push_cjson(L, e);
      lua_rawseti(L, -2, ++i);
    }
    oc_set_array_mt(L);
    break;
  default:
    lua_newtable(L);
    for (e = c->child; e; e = e->next) {
      lua_pushstring(L, e->string);
      push_cjson(L, e);
      lua_rawset(L, -3);
    }
  }
}

static int cj_decode(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  cJSON *c = cJSON_ParseWithLength(s, n);
  if (!c) {
    lua_pushnil(L);
    lua_pushfstring(L, "cJSON: invalid JSON at byte %d",
                    (int)(cJSON_GetErrorPtr() - s) + 1);
    return 2;
  }
  push_cjson(L, c);
  cJSON_Delete(c);
  return 1;
}

static int key_cmp(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The Lua value at idx as a cJSON tree (keys sorted, as ocean.json). */
static cJSON *to_cjson(lua_State *L, int idx)
{
  cJSON *c;
  const char **keys;
  size_t nk = 0, cap = 16, i;
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
  case LUA_TNUMBER: return cJSON_CreateNumber(lua_tonumber(L, idx));
  case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
  case LUA_TTABLE: break;
  default: return cJSON_CreateNull();
  }
  if (lua_rawlen(L, idx) > 0 || lua_getmetatable(L, idx)) {
    if (lua_rawlen(L, idx) == 0)
      lua_pop(L, 1);
    c = cJSON_CreateArray();
    for (i = 1; i <= (size_t)lua_rawlen(L, idx); i++) {
      lua_rawgeti(L, idx, (lua_Integer)i);
      cJSON_AddItemToArray(c, to_cjson(L, -1));
      lua_pop(L, 1);
    }
    return c;
  }
  c = cJSON_CreateObject();
  keys = malloc(sizeof *keys * cap);
  lua_pushnil(L);
  while (keys && lua_next(L, idx)) {
    lua_pop(L, 1);
    if (nk == cap)
      keys = realloc(keys, sizeof *keys * (cap *= 2));
    if (keys)
      keys[nk++] = lua_tostring(L, -1);
  }
  if (keys) {
    qsort(keys, nk, sizeof *keys, key_cmp);
    for (i = 0; i < nk; i++) {
      lua_getfield(L, idx, keys[i]);
      cJSON_AddItemToObject(c, keys[i], to_cjson(L, -1));
      lua_pop(L, 1);
    }
  }
  free(keys);
  return c;
}

static int cj_encode(lua_State *L)
{
  cJSON *c = to_cjson(L, 1);
  char *s = cJSON_PrintUnformatted(c);
  lua_pushstring(L, s);
  cJSON_free(s);
  cJSON_Delete(c);
  return 1;
}

/* What cJSON keeps of text: the text it prints back (or nil, and where
 * it failed). */
static int cj_check(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  cJSON *c = cJSON_ParseWithLength(s, n);
  char *out;
  if (!c) {
    lua_pushnil(L);
    lua_pushfstring(L, "parse failed at byte %d (no reason given)",
                    (int)(cJSON_GetErrorPtr() - s) + 1);
    return 2;
  }
  out = cJSON_PrintUnformatted(c);
  lua_pushstring(L, out);
  cJSON_free(out);
  cJSON_Delete(c);
  return 1;
}

/* }==================== */

int luaopen_cjson_bench(lua_State *L);
int luaopen_cjson_bench(lua_State *L)
{
  static const luaL_Reg funcs[] = {
    {"map", cj_map}, {"to_jv", cj_to_jv_bench}, {"decode", cj_decode},
    {"encode", cj_encode}, {"check", cj_check}, {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  lua_pushstring(L, cJSON_Version());
  lua_setfield(L, -2, "version");
  return 1;
}
