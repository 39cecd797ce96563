/*
 * lcore.c - luaopen_ocean_core: the one entry point of the C engine.
 * Each binding file contributes its functions through an oc_open_*
 * opener; the clocks, which every layer above uses, live here:
 *
 *   core.version
 *   core.now()          -> wall-clock seconds (fractional), for time stamps
 *   core.realtime_ms()  -> milliseconds since the epoch (integer)
 *   core.monotonic_ms() -> milliseconds of a clock that never jumps, for
 *                          deadlines and durations
 */
#include "lbind.h"

#include <time.h>

#ifndef OC_VERSION
#define OC_VERSION "0.1.0"
#endif

int luaopen_ocean_core(lua_State *L);

static int l_now(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int l_realtime_ms(lua_State *L)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000
                     + (lua_Integer)(ts.tv_nsec / 1000000));
  return 1;
}

double oc_monotonic_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int l_monotonic_ms(lua_State *L)
{
  lua_pushnumber(L, (lua_Number)oc_monotonic_ms());
  return 1;
}

static const luaL_Reg core_funcs[] = {
  {"now", l_now},
  {"realtime_ms", l_realtime_ms},
  {"monotonic_ms", l_monotonic_ms},
  {NULL, NULL}
};

int luaopen_ocean_core(lua_State *L)
{
  luaL_newlib(L, core_funcs);
  lua_pushliteral(L, OC_VERSION);
  lua_setfield(L, -2, "version");
  oc_open_json(L);
  oc_open_job(L);
  oc_open_mapping(L);
  oc_open_loop(L);
  oc_open_server(L);
  oc_open_port(L);
  oc_open_sync(L);
  oc_open_live(L);
  oc_open_diff(L);
  oc_open_journal(L);
  oc_open_crypto(L);
  return 1;
}
