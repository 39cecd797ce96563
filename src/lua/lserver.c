/*
 * lserver.c - the "ocean.Server" userdata: Lua's face of http_server.c.
 *
 *   core.server_start{host=, port=, max_body=, max_connections=,
 *                     max_connections_per_client=, connection_timeout=,
 *                     header_timeout=, body_timeout=} -> server | nil, err
 *     (timeouts in seconds; limits and defaults in http_server.h:
 *     4096 connections, 256 per client (0: no limit), 10 s for the
 *     request head, 60 s for the body, 30 s idle)
 *   server:port()  server:fd()  server:wait(timeout_ms) -> queued
 *   server:stats() -> {max_connections=, max_connections_requested=,
 *     max_connections_per_client=,
 *     header_timeout=, body_timeout=, connections=, waiting_head=,
 *     reading_body=, clients=, header_timeouts=, body_timeouts=,
 *     refused_per_client=, evicted=}   (effective limits: max_connections
 *     is lowered from the requested one when RLIMIT_NOFILE is too low;
 *     counters since the start)
 *   server:next() -> {id=, method=, path=, query=, headers=, body=, remote=}
 *   server:respond(id, status, headers, body) -> true | nil, err
 *   server:drop(id) -> true | nil, err
 *   server:close()                 (idempotent; also __gc and __close)
 */
#include "lbind.h"
#include "net/http_server.h"

#include <stdio.h>
#include <string.h>

#define SERVER_MT "ocean.Server"

typedef struct lserver {
  oc_server_t *s;                /* NULL once closed */
} lserver_t;

static lserver_t *to_lserver(lua_State *L, int idx)
{
  return (lserver_t *)luaL_checkudata(L, idx, SERVER_MT);
}

/* The open server at idx; raises on anything else. For other bindings
 * (the event loop waits on servers). */
struct oc_server *oc_check_server(lua_State *L, int idx)
{
  lserver_t *u = to_lserver(L, idx);
  if (!u->s) luaL_error(L, "attempt to use a closed server");
  return u->s;
}

/* {==================== start ==================== */

static lua_Integer opt_int_field(lua_State *L, int idx, const char *name,
                                 lua_Integer def, lua_Integer min,
                                 lua_Integer max)
{
  lua_Integer v = def;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    int ok = lua_isnumber(L, -1);
    lua_Number n = lua_tonumber(L, -1);
    if (!ok || n != (lua_Number)(lua_Integer)n || n < (lua_Number)min
        || n > (lua_Number)max)
      luaL_error(L, "server_start: '%s' must be an integer in %d..%d", name,
                 (int)min, (int)max);
    v = (lua_Integer)n;
  }
  lua_pop(L, 1);
  return v;
}

static int l_server_start(lua_State *L)
{
  oc_server_opts_t o;
  char err[256];
  lserver_t *u;
  memset(&o, 0, sizeof o);
  if (lua_isnoneornil(L, 1))
    lua_newtable(L);
  else
    luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "host");
  if (!lua_isnil(L, -1) && !lua_isstring(L, -1))
    return luaL_error(L, "server_start: 'host' must be a string");
  o.host = lua_isnil(L, -1) ? "127.0.0.1" : lua_tostring(L, -1);
  o.port = (int)opt_int_field(L, 1, "port", 0, 0, 65535);
  o.max_body = (size_t)opt_int_field(L, 1, "max_body", 1024 * 1024, 1,
                                     0x7fffffff);
  o.max_connections = (unsigned)opt_int_field(
    L, 1, "max_connections", OC_SERVER_DEFAULT_MAX_CONNECTIONS, 1, 1000000);
  o.max_per_client = (unsigned)opt_int_field(
    L, 1, "max_connections_per_client", OC_SERVER_DEFAULT_PER_CLIENT, 0,
    1000000);
  o.connection_timeout_s = (unsigned)opt_int_field(
    L, 1, "connection_timeout", 0, 0, 86400);
  o.header_timeout_s = (unsigned)opt_int_field(
    L, 1, "header_timeout", OC_SERVER_DEFAULT_HEADER_TIMEOUT_S, 1, 86400);
  o.body_timeout_s = (unsigned)opt_int_field(
    L, 1, "body_timeout", OC_SERVER_DEFAULT_BODY_TIMEOUT_S, 1, 86400);
  u = (lserver_t *)lua_newuserdata(L, sizeof *u);
  u->s = NULL;                   /* closed until the server exists */
  luaL_setmetatable(L, SERVER_MT);
  u->s = oc_server_start(&o, err, sizeof err);
  if (!u->s) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* }==================== */

/* {==================== methods ==================== */

static int l_port(lua_State *L)
{
  lua_pushinteger(L, oc_server_port(oc_check_server(L, 1)));
  return 1;
}

static int l_fd(lua_State *L)
{
  lua_pushinteger(L, oc_server_fd(oc_check_server(L, 1)));
  return 1;
}

static void set_count(lua_State *L, const char *name, unsigned long long v)
{
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

static int l_stats(lua_State *L)
{
  oc_server_stats_t st;
  oc_server_stats(oc_check_server(L, 1), &st);
  lua_createtable(L, 0, 14);
  set_count(L, "max_connections", st.max_connections);
  set_count(L, "max_connections_requested", st.max_connections_requested);
  set_count(L, "max_connections_per_client", st.max_per_client);
  set_count(L, "header_timeout", st.header_timeout_s);
  set_count(L, "body_timeout", st.body_timeout_s);
  set_count(L, "connections", st.open);
  set_count(L, "waiting_head", st.waiting_head);
  set_count(L, "reading_body", st.reading_body);
  set_count(L, "clients", st.clients);
  set_count(L, "header_timeouts", st.header_timeouts);
  set_count(L, "body_timeouts", st.body_timeouts);
  set_count(L, "refused_per_client", st.refused_per_client);
  set_count(L, "evicted", st.evicted);
  set_count(L, "unsent", st.unsent);
  return 1;
}

static int l_wait(lua_State *L)
{
  oc_server_t *s = oc_check_server(L, 1);
  long t = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number n = luaL_checknumber(L, 2);
    t = n < 0 ? -1 : (n > 2147483647.0 ? 2147483647L : (long)n);
  }
  lua_pushinteger(L, oc_server_wait(s, t));
  return 1;
}

/* headers: duplicates are joined with ", " as HTTP allows. */
static void push_headers(lua_State *L, const oc_server_request_t *r)
{
  size_t i;
  lua_createtable(L, 0, (int)r->nheaders);
  for (i = 0; i < r->nheaders; i++) {
    const oc_server_header_t *h = &r->headers[i];
    lua_getfield(L, -1, h->name);
    if (lua_isstring(L, -1)) {
      lua_pushliteral(L, ", ");
      lua_pushstring(L, h->value);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushstring(L, h->value);
    }
    lua_setfield(L, -2, h->name);
  }
}

static int l_next(lua_State *L)
{
  oc_server_request_t *r = oc_server_next(oc_check_server(L, 1));
  if (!r) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)r->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, r->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, r->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, r->query);
  lua_setfield(L, -2, "query");
  push_headers(L, r);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r->body, r->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, r->remote);
  lua_setfield(L, -2, "remote");
  return 1;
}

static unsigned long check_id(lua_State *L, int idx)
{
  lua_Number n = luaL_checknumber(L, idx);
  luaL_argcheck(L, n >= 1 && n == (lua_Number)(unsigned long)n, idx,
                "request id expected");
  return (unsigned long)n;
}

static int valid_header_name(const char *s, size_t n)
{
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++)
    if (s[i] <= ' ' || s[i] == ':' || s[i] == 0x7f) return 0;
  return 1;
}

/* Collect the headers table at idx into a NULL-terminated name/value
 * array (a userdata on the stack). The strings are kept alive by an
 * anchor table, also left on the stack. */
static const char **check_headers(lua_State *L, int idx)
{
  size_t n = 0, k = 0;
  const char **arr;
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    n++;
    lua_pop(L, 1);
  }
  arr = (const char **)lua_newuserdata(L, (2 * n + 1) * sizeof *arr);
  lua_createtable(L, (int)(2 * n), 0);          /* anchor */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kl, vl;
    const char *key, *val;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "respond: header names must be strings");
    key = lua_tolstring(L, -2, &kl);
    if (!valid_header_name(key, kl))
      luaL_error(L, "respond: invalid header name '%s'", key);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "respond: header '%s' must be a string or a number",
                 key);
    val = lua_tolstring(L, -1, &vl);  /* converts the value copy only */
    if (strlen(val) != vl || strpbrk(val, "\r\n"))
      luaL_error(L, "respond: invalid value for header '%s'", key);
    arr[k++] = key;
    arr[k++] = val;
    lua_rawseti(L, -3, (int)k);        /* anchor the value string */
  }
  arr[k] = NULL;
  return arr;
}

static int l_respond(lua_State *L)
{
  oc_server_t *s = oc_check_server(L, 1);
  unsigned long id = check_id(L, 2);
  lua_Integer status = luaL_checkinteger(L, 3);
  size_t blen = 0;
  const char *body = luaL_optlstring(L, 5, "", &blen);
  const char **headers;
  int rc;
  luaL_argcheck(L, status >= 100 && status <= 999, 3,
                "status must be in 100..999");
  lua_settop(L, 5);
  headers = check_headers(L, 4);
  rc = oc_server_respond(s, id, (int)status, headers, body, blen);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == -2) return luaL_error(L, "BUG: respond rejected a header");
  lua_pushnil(L);
  lua_pushstring(L, rc == -1 ? "unknown request id" : "out of memory");
  return 2;
}

static int l_drop(lua_State *L)
{
  oc_server_t *s = oc_check_server(L, 1);
  if (oc_server_drop(s, check_id(L, 2)) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushliteral(L, "unknown request id");
  return 2;
}

static int l_close(lua_State *L)
{
  lserver_t *u = to_lserver(L, 1);
  oc_server_stop(u->s);
  u->s = NULL;
  return 0;
}

static int l_tostring(lua_State *L)
{
  lserver_t *u = to_lserver(L, 1);
  if (u->s)
    lua_pushfstring(L, "ocean.Server (port %d)", oc_server_port(u->s));
  else
    lua_pushliteral(L, "ocean.Server (closed)");
  return 1;
}

/* }==================== */

static const luaL_Reg server_methods[] = {
  { "port", l_port },
  { "fd", l_fd },
  { "wait", l_wait },
  { "stats", l_stats },
  { "next", l_next },
  { "respond", l_respond },
  { "drop", l_drop },
  { "close", l_close },
  { NULL, NULL }
};

static const luaL_Reg server_meta[] = {
  { "__gc", l_close },
  { "__close", l_close },
  { "__tostring", l_tostring },
  { NULL, NULL }
};

static const luaL_Reg server_funcs[] = {
  { "server_start", l_server_start },
  { NULL, NULL }
};

void oc_open_server(lua_State *L)
{
  if (luaL_newmetatable(L, SERVER_MT)) {
    luaL_setfuncs(L, server_meta, 0);
    luaL_newlib(L, server_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, server_funcs, 0);
}
