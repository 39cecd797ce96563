/*
 * ldiff.c - Lua binding of the diff helpers (diff.h), for the live-event
 * operations and tests:
 *
 *   core.entity_key(entity) -> "bp\0id" | nil (no stable key)
 *   core.relation_order(entities) -> order, levels, cyclic
 *   core.content_hash(entity [, signature]) -> hex string
 */
#include "lbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/diff.h"


/* core.entity_key(entity) -> "bp\0id" | nil (no stable key) */
static int lentity_key(lua_State *L)
{
  char err[OC_ERR_SIZE];
  jv e = oc_to_jv(L, 1, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
  oc_buf_t b = OC_BUF_INIT;
  if (jv_is_valid(e) && oc_entity_key(e, &b) == 0)
    lua_pushlstring(L, b.p, b.n);
  else
    lua_pushnil(L);
  jv_free(e);
  oc_buf_free(&b);
  return 1;
}

/* A box of n jv values, freed by its __gc: the entities stay owned while
 * Lua calls that may raise run. */
typedef struct jvbox {
  size_t n;
  jv v[1];
} jvbox_t;

static int jvbox_gc(lua_State *L)
{
  jvbox_t *b = lua_touserdata(L, 1);
  size_t i;
  for (i = 0; i < b->n; i++)
    jv_free(b->v[i]);
  b->n = 0;
  return 0;
}

static jvbox_t *jvbox_new(lua_State *L, size_t n)
{
  jvbox_t *b = lua_newuserdata(L, sizeof(jvbox_t) + sizeof(jv) * n);
  b->n = 0;
  if (luaL_newmetatable(L, "ocean.diff.jvbox")) {
    lua_pushcfunction(L, jvbox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* Push a list of n 1-based integers (v[i] + 1). */
static void push_indexes(lua_State *L, const size_t *v, size_t n)
{
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)v[i] + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* core.relation_order(entities) -> order (1-based indexes), levels,
 * cyclic. Every buffer is a userdata: nothing leaks when a Lua call
 * raises (memory). */
static int lrelation_order(lua_State *L)
{
  size_t n, i, *order, *level;
  jvbox_t *ents;
  int cyclic = 0, rc;
  char err[OC_ERR_SIZE];
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (size_t)lua_rawlen(L, 1);
  ents = jvbox_new(L, n);
  order = lua_newuserdata(L, sizeof(size_t) * (2 * n + 1));
  level = order + n;
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    ents->v[i] = oc_to_jv(L, -1, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
    ents->n = i + 1;
    lua_pop(L, 1);
  }
  rc = oc_relation_order(ents->v, n, order, level, &cyclic);
  lua_pushcfunction(L, jvbox_gc);                /* free the entities now */
  lua_pushvalue(L, 2);
  lua_call(L, 1, 0);
  if (rc)
    return luaL_error(L, "out of memory");
  push_indexes(L, order, n);
  push_indexes(L, level, n);
  lua_pushboolean(L, cyclic);
  return 3;
}

/* core.content_hash(entity [, signature]) -> hex string (tests, tools) */
static int lcontent_hash(lua_State *L)
{
  char err[OC_ERR_SIZE], hex[17];
  jv e = oc_to_jv(L, 1, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
  jv sig = lua_istable(L, 2) ? oc_to_jv(L, 2, NULL, 8, err, sizeof err)
                             : jv_null();
  oc_projection_t *p = oc_projection_new(sig, !lua_istable(L, 2));
  oc_buf_t b = OC_BUF_INIT;
  uint64_t h = 0;
  if (p && jv_is_valid(e))
    h = oc_projection_hash(p, e, &b);
  oc_projection_free(p);
  oc_buf_free(&b);
  jv_free(e);
  jv_free(sig);
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
  lua_pushstring(L, hex);
  return 1;
}

static const luaL_Reg diff_funcs[] = {
  {"entity_key", lentity_key},
  {"relation_order", lrelation_order},
  {"content_hash", lcontent_hash},
  {NULL, NULL}
};

void oc_open_diff(lua_State *L)
{
  luaL_setfuncs(L, diff_funcs, 0);
}
