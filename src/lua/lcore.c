/*
 * lcore.c - luaopen_ocean_core: the one entry point of the C engine.
 * Each binding file contributes its functions through an oc_open_* opener.
 */
#include "lbind.h"

#ifndef OC_VERSION
#define OC_VERSION "0.1.0"
#endif

int luaopen_ocean_core(lua_State *L);

/* Openers not linked in yet are weak (NULL) while the engine grows. */
#pragma weak oc_open_mapping
#pragma weak oc_open_loop
#pragma weak oc_open_server
#pragma weak oc_open_port
#pragma weak oc_open_sync
#pragma weak oc_open_journal

int luaopen_ocean_core(lua_State *L)
{
  lua_newtable(L);
  lua_pushliteral(L, OC_VERSION);
  lua_setfield(L, -2, "version");
  oc_open_json(L);
  if (oc_open_mapping) oc_open_mapping(L);
  if (oc_open_loop) oc_open_loop(L);
  if (oc_open_server) oc_open_server(L);
  if (oc_open_port) oc_open_port(L);
  if (oc_open_sync) oc_open_sync(L);
  if (oc_open_journal) oc_open_journal(L);
  return 1;
}
