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

#include "diff.h"


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

/* core.relation_order(entities) -> order (1-based indexes), levels,
 * cyclic */
static int lrelation_order(lua_State *L)
{
  size_t n, i, *order, *level;
  jv *ents;
  int cyclic = 0, rc;
  char err[OC_ERR_SIZE];
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (size_t)lua_rawlen(L, 1);
  ents = calloc(n + 1, sizeof(jv));
  order = calloc(n + 1, sizeof(size_t));
  level = calloc(n + 1, sizeof(size_t));
  if (!ents || !order || !level) {
    free(ents);
    free(order);
    free(level);
    return luaL_error(L, "out of memory");
  }
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (lua_Integer)i + 1);
    ents[i] = oc_to_jv(L, -1, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
    lua_pop(L, 1);
  }
  rc = oc_relation_order(ents, n, order, level, &cyclic);
  for (i = 0; i < n; i++)
    jv_free(ents[i]);
  free(ents);
  if (rc) {
    free(order);
    free(level);
    return luaL_error(L, "out of memory");
  }
  lua_createtable(L, (int)n, 0);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)order[i] + 1);
    lua_rawseti(L, -3, (lua_Integer)i + 1);
    lua_pushinteger(L, (lua_Integer)level[i] + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(order);
  free(level);
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
