/*
 * lcompat.h - the few Lua 5.4 API calls that LuaJIT (Lua 5.1 ABI) lacks.
 *
 * The binding is written against the Lua 5.4 API; this header maps the
 * missing pieces onto LuaJIT 2.1 (which already has luaL_setfuncs,
 * luaL_newlib, luaL_testudata, luaL_setmetatable and lua_tointegerx).
 */
#ifndef OC_LCOMPAT_H
#define OC_LCOMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#  ifndef luaL_newlib
#    define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))
#  endif
#  define lua_rawlen(L, i) lua_objlen(L, (i))
#  define OC_LUA_HAS_INTEGERS 0
static inline int oc_absindex(lua_State *L, int i)
{
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + i + 1;
}
#  define lua_absindex(L, i) oc_absindex(L, (i))
#else
#  define OC_LUA_HAS_INTEGERS 1
#endif

/* lua_setuservalue/getuservalue: one user value per userdata. */
#if LUA_VERSION_NUM < 502
#  define oc_setuservalue(L, i) lua_setfenv(L, (i))
#  define oc_getuservalue(L, i) lua_getfenv(L, (i))
#elif LUA_VERSION_NUM < 504
#  define oc_setuservalue(L, i) lua_setuservalue(L, (i))
#  define oc_getuservalue(L, i) lua_getuservalue(L, (i))
#else
#  define oc_setuservalue(L, i) lua_setiuservalue(L, (i), 1)
#  define oc_getuservalue(L, i) lua_getiuservalue(L, (i), 1)
#endif

#endif
