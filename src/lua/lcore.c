/*
 * lcore.c - luaopen_ocean_core: the one entry point of the C engine.
 * Each binding file contributes its functions through an oc_open_* opener.
 */
#include "lbind.h"

#ifndef OC_VERSION
#define OC_VERSION "0.1.0"
#endif

int luaopen_ocean_core(lua_State *L);

int luaopen_ocean_core(lua_State *L)
{
  lua_newtable(L);
  lua_pushliteral(L, OC_VERSION);
  lua_setfield(L, -2, "version");
  oc_open_json(L);
  oc_open_job(L);
  oc_open_mapping(L);
  oc_open_loop(L);
  oc_open_server(L);
  oc_open_port(L);
  oc_open_sync(L);
  return 1;
}
