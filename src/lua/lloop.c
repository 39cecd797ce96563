/*
 * lloop.c - the "ocean.Loop" userdata: Lua's face of loop.c.
 *
 *   core.loop_new{concurrency=5, max_connections=} -> loop | nil, err
 *   loop:request{method=, url=, headers=, body=, timeout_ms=,
 *                connect_timeout_ms=, max_response_bytes=, verify_tls=true,
 *                follow_redirects=false, urgent=false,
 *                retry=true | {statuses=, max_attempts=, base_delay_ms=,
 *                  max_delay_ms=, max_total_wait_ms=, connection_errors=,
 *                  honour_retry_after=}} -> job (ocean.Job)
 *     job:result() -> {status=, headers=, body=, error=, curl_code=,
 *                attempts=, waited_ms=, elapsed_ms=} (a transfer that got no
 *                answer has status 0 and error set)
 *   loop:wait(timeout_ms [, servers]) -> events | nil, n
 *     events: signals read, and (loop:record) retries and requests
 *   loop:record{retries=bool, requests=bool}
 *   loop:next_timeout() -> ms (-1: nothing pending)
 *   loop:watch_signals([{keep_mask=}]) -> true | nil, err
 *   loop:set_concurrency(n)   loop:stats() -> {...}
 *   loop:close()              (idempotent; also __gc and __close)
 *   core.retry_delay_ms(value [, now]) -> ms | nil   (Retry-After parsing)
 *
 * A request's response is kept in C (a completion callback may not touch
 * Lua) in a record its Job owns (ljob.c).
 */
#include "lbind.h"
#include "net/loop.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOOP_MT "ocean.Loop"
#define MAX_HEADERS 64

typedef struct lresult {         /* a request's record (its Job owns it) */
  int done;
  oc_response_t *res;            /* NULL if pending or out of memory */
} lresult_t;

typedef struct lloop {
  oc_loop_t *loop;               /* NULL once closed */
} lloop_t;

static lloop_t *to_lloop(lua_State *L, int idx)
{
  return (lloop_t *)luaL_checkudata(L, idx, LOOP_MT);
}

oc_loop_t *oc_check_loop(lua_State *L, int idx)
{
  lloop_t *u = to_lloop(L, idx);
  if (!u->loop)
    luaL_error(L, "attempt to use a closed loop");
  return u->loop;
}

static lua_Integer opt_int(lua_State *L, int t, const char *name,
                           lua_Integer def, lua_Integer min, lua_Integer max)
{
  lua_Integer v = def;
  lua_getfield(L, t, name);
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n != (lua_Number)(lua_Integer)n
        || n < (lua_Number)min || n > (lua_Number)max)
      luaL_error(L, "'%s' must be an integer in %f..%f", name,
                 (double)min, (double)max);
    v = (lua_Integer)n;
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *name, int def)
{
  int v = def;
  lua_getfield(L, t, name);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "'%s' must be a boolean", name);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* {==================== new / close ==================== */

static int l_loop_new(lua_State *L)
{
  oc_loop_opts_t o;
  char err[OC_ERR_SIZE];
  lloop_t *u;
  memset(&o, 0, sizeof o);
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    o.concurrency = (unsigned)opt_int(L, 1, "concurrency", 5, 1, 1000);
    o.max_connections = (unsigned)opt_int(L, 1, "max_connections", 0, 0,
                                          10000);
  }
  u = (lloop_t *)lua_newuserdata(L, sizeof *u);
  u->loop = NULL;
  luaL_setmetatable(L, LOOP_MT);
  if (!(u->loop = oc_loop_new(&o, err, sizeof err))) {
    lua_pushnil(L);
    lua_pushfstring(L, "loop_new: %s", err);
    return 2;
  }
  return 1;
}

static int l_loop_close(lua_State *L)
{
  lloop_t *u = to_lloop(L, 1);
  oc_loop_t *loop = u->loop;
  u->loop = NULL;
  oc_loop_free(loop);            /* cancels: no callback touches a record */
  return 0;
}

/* }==================== */

/* {==================== request ==================== */

typedef struct reqargs {
  oc_request_t req;
  oc_retry_t retry;
  const char *hdr[MAX_HEADERS + 1];
} reqargs_t;

static int bad_header_text(const char *s)
{
  return strpbrk(s, "\r\n") != NULL;
}

/* headers = {["Name"] = "value", ...} or {"Name: value", ...}. The lines
 * built here are anchored in a table left on the stack. */
static void read_headers(lua_State *L, int t, reqargs_t *a)
{
  int n = 0, lines;
  lua_getfield(L, t, "headers");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    return;
  }
  luaL_argcheck(L, lua_istable(L, -1), 1, "'headers' must be a table");
  lines = lua_gettop(L);
  lua_newtable(L);               /* anchor */
  lua_pushnil(L);
  while (lua_next(L, lines)) {
    if (n == MAX_HEADERS)
      luaL_error(L, "too many headers (max %d)", MAX_HEADERS);
    if (lua_type(L, -2) == LUA_TSTRING)
      lua_pushfstring(L, "%s: %s", lua_tostring(L, -2),
                      luaL_checkstring(L, -1));
    else
      lua_pushstring(L, luaL_checkstring(L, -1));
    if (bad_header_text(lua_tostring(L, -1)))
      luaL_error(L, "header contains CR or LF");
    a->hdr[n] = lua_tostring(L, -1);
    lua_rawseti(L, lines + 1, ++n);
    lua_pop(L, 1);
  }
  a->hdr[n] = NULL;
  a->req.headers = a->hdr;
  lua_remove(L, lines);
}

static void read_statuses(lua_State *L, int t, oc_retry_t *r)
{
  int i, n;
  lua_getfield(L, t, "statuses");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  luaL_argcheck(L, lua_istable(L, -1), 1, "'retry.statuses' must be a list");
  n = (int)lua_rawlen(L, -1);
  if (n > OC_RETRY_MAX_STATUSES)
    luaL_error(L, "at most %d retry statuses", OC_RETRY_MAX_STATUSES);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    r->statuses[i] = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  r->nstatuses = n;
  lua_pop(L, 1);
}

/* Fill r from the table at t (defaults first). Shared with lport.c. */
void oc_lua_read_retry(lua_State *L, int t, oc_retry_t *r)
{
  t = lua_absindex(L, t);
  read_statuses(L, t, r);
  r->max_attempts = (int)opt_int(L, t, "max_attempts", r->max_attempts, 1,
                                 100);
  r->base_delay_ms = (long)opt_int(L, t, "base_delay_ms", r->base_delay_ms,
                                   0, 3600000);
  r->max_delay_ms = (long)opt_int(L, t, "max_delay_ms", r->max_delay_ms, 0,
                                  3600000);
  r->max_total_wait_ms = (long)opt_int(L, t, "max_total_wait_ms",
                                       r->max_total_wait_ms, 0, 86400000);
  r->connection_errors = opt_bool(L, t, "connection_errors",
                                  r->connection_errors);
  r->honour_retry_after = opt_bool(L, t, "honour_retry_after",
                                   r->honour_retry_after);
}

static void read_retry(lua_State *L, int t, reqargs_t *a)
{
  lua_getfield(L, t, "retry");
  if (lua_isnil(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  oc_retry_defaults(&a->retry);
  if (lua_istable(L, -1))
    oc_lua_read_retry(L, -1, &a->retry);
  else
    luaL_argcheck(L, lua_isboolean(L, -1), 1,
                  "'retry' must be a table or a boolean");
  a->req.retry = &a->retry;
  lua_pop(L, 1);
}

static void request_done(void *ud, oc_response_t *res)
{
  lresult_t *r = ud;
  r->done = 1;
  r->res = res;
}

static const oc_job_class_t request_job;

static int l_request(lua_State *L)
{
  oc_loop_t *loop = oc_check_loop(L, 1);
  reqargs_t a;
  size_t blen = 0;
  char err[OC_ERR_SIZE];
  oc_job_t *j;
  uint64_t id;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&a, 0, sizeof a);
  lua_getfield(L, 2, "url");
  a.req.url = luaL_checkstring(L, -1);   /* anchored by the table */
  lua_pop(L, 1);
  lua_getfield(L, 2, "method");
  a.req.method = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "body");
  a.req.body = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &blen);
  a.req.body_len = blen;
  lua_pop(L, 1);
  if (bad_header_text(a.req.url) || (a.req.method
                                     && strpbrk(a.req.method, " \r\n")))
    return luaL_error(L, "request: bad url or method");
  a.req.timeout_ms = (long)opt_int(L, 2, "timeout_ms", 0, 0, 86400000);
  a.req.connect_timeout_ms = (long)opt_int(L, 2, "connect_timeout_ms", 0, 0,
                                           86400000);
  a.req.max_response_bytes = (size_t)opt_int(L, 2, "max_response_bytes", 0,
                                             0, (lua_Integer)1 << 40);
  if (!opt_bool(L, 2, "verify_tls", 1))
    a.req.flags |= OC_REQ_INSECURE;
  if (opt_bool(L, 2, "follow_redirects", 0))
    a.req.flags |= OC_REQ_FOLLOW;
  if (opt_bool(L, 2, "urgent", 0))
    a.req.flags |= OC_REQ_URGENT;
  read_retry(L, 2, &a);
  read_headers(L, 2, &a);
  j = oc_job_new(L, &request_job, 1);
  if (!(j->rec = calloc(1, sizeof(lresult_t))))
    return luaL_error(L, "out of memory");
  a.req.done = request_done;
  a.req.ud = j->rec;
  if (!(id = oc_loop_submit(loop, &a.req, err, sizeof err)))
    return luaL_error(L, "request: %s", err);
  oc_job_start(j, id);
  return 1;
}

/* }==================== */

/* {==================== the request's Job ==================== */

static void push_headers(lua_State *L, const oc_response_t *res)
{
  size_t i;
  lua_createtable(L, 0, (int)res->nheaders);
  for (i = 0; i < res->nheaders; i++) {
    lua_getfield(L, -1, res->headers[i].name);
    if (lua_isnil(L, -1))
      lua_pushstring(L, res->headers[i].value);
    else
      lua_pushfstring(L, "%s, %s", lua_tostring(L, -1),
                      res->headers[i].value);
    lua_setfield(L, -3, res->headers[i].name);
    lua_pop(L, 1);
  }
}

static void push_response(lua_State *L, const oc_response_t *res)
{
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, res->status);
  lua_setfield(L, -2, "status");
  push_headers(L, res);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, res->body ? res->body : "", res->body_len);
  lua_setfield(L, -2, "body");
  if (res->curl_code) {
    lua_pushstring(L, res->error);
    lua_setfield(L, -2, "error");
    lua_pushinteger(L, res->curl_code);
    lua_setfield(L, -2, "curl_code");
  }
  lua_pushinteger(L, res->attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushinteger(L, res->waited_ms);
  lua_setfield(L, -2, "waited_ms");
  lua_pushinteger(L, res->elapsed_ms);
  lua_setfield(L, -2, "elapsed_ms");
}

static int request_poll(oc_job_t *j)
{
  return ((lresult_t *)j->rec)->done;
}

static int request_push(lua_State *L, oc_job_t *j)
{
  lresult_t *r = j->rec;
  if (r->res) {
    push_response(L, r->res);
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "status");
  lua_pushliteral(L, "out of memory");
  lua_setfield(L, -2, "error");
  return 1;
}

static void request_cancel(oc_job_t *j)
{
  oc_loop_cancel(((lloop_t *)j->owner)->loop, j->id);
}

static int request_owner_open(const oc_job_t *j)
{
  return ((const lloop_t *)j->owner)->loop != NULL;
}

static void request_free(void *rec)
{
  lresult_t *r = rec;
  oc_response_free(r->res);
  free(r);
}

static const oc_job_class_t request_job = {
  "request", request_poll, request_push, request_cancel, request_owner_open,
  request_free
};

/* }==================== */

/* {==================== wait ==================== */

static const char *signal_name(int s)
{
  switch (s) {
  case SIGTERM: return "SIGTERM";
  case SIGINT: return "SIGINT";
  case SIGHUP: return "SIGHUP";
  default: return "signal";
  }
}

/* Servers from the list at idx into an array anchored on the stack. */
static oc_server_t **read_servers(lua_State *L, int idx, size_t *n)
{
  oc_server_t **v;
  size_t i;
  *n = 0;
  if (lua_isnoneornil(L, idx))
    return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (size_t)lua_rawlen(L, idx);
  if (!*n)
    return NULL;
  v = (oc_server_t **)lua_newuserdata(L, *n * sizeof *v);
  for (i = 0; i < *n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    v[i] = oc_check_server(L, -1);
    lua_pop(L, 1);
  }
  return v;
}

static void set_int(lua_State *L, const char *k, lua_Integer v);

/* One request event (see oc_loop_event_t) as a table; e->url is freed. */
static void push_net_event(lua_State *L, oc_loop_event_t *e)
{
  lua_createtable(L, 0, 11);
  lua_pushstring(L, e->type == OC_LOOP_EV_RETRY ? "retry" : "request");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, e->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, e->url ? e->url : "?");
  lua_setfield(L, -2, "url");
  oc_loop_event_clear(e);
  set_int(L, "status", e->status);
  if (e->error[0]) {
    lua_pushstring(L, e->error);
    lua_setfield(L, -2, "error");
  }
  set_int(L, "attempt", e->attempt);
  set_int(L, "max_attempts", e->max_attempts);
  set_int(L, "delay_ms", e->delay_ms);
  set_int(L, "waited_ms", e->waited_ms);
  set_int(L, "elapsed_ms", e->elapsed_ms);
  set_int(L, "max_wait_ms", e->max_wait_ms);
  if (e->asked_ms >= 0)
    set_int(L, "asked_ms", e->asked_ms);
  lua_pushboolean(L, e->gave_up);
  lua_setfield(L, -2, "gave_up");
}

/* The events list (created on first use) gets ev at the end. */
static void add_event(lua_State *L, int *k)
{
  if (!*k) {
    lua_newtable(L);
    lua_insert(L, -2);
  }
  lua_rawseti(L, -2, ++*k);
}

/* loop:wait(ms [, servers]) -> events | nil, n: events are the signals
 * read ({type="signal", signal=, name=}), then, when oc_loop_record is on
 * (loop:record), the retries and requests ({type="retry"|"request",
 * method=, url=, status=, error=, attempt=, max_attempts=, max_wait_ms=,
 * delay_ms=, waited_ms=, elapsed_ms=, asked_ms= (a Retry-After beyond the
 * retry budget, which ended the retries), gave_up=}) and {type="dropped", count=}. */
static int l_wait(lua_State *L)
{
  oc_loop_t *loop = oc_check_loop(L, 1);
  lua_Number t = luaL_optnumber(L, 2, -1);
  size_t n, lost;
  oc_server_t **servers = read_servers(L, 3, &n);
  int events = oc_loop_wait(loop, t < 0 ? -1 : (long)t, servers, n);
  int s, k = 0;
  oc_loop_event_t e;
  if (events < 0)
    return luaL_error(L, "loop:wait: out of memory");
  while ((s = oc_loop_take_signal(loop))) {
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "signal");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, s);
    lua_setfield(L, -2, "signal");
    lua_pushstring(L, signal_name(s));
    lua_setfield(L, -2, "name");
    add_event(L, &k);
  }
  while (oc_loop_take_event(loop, &e)) {
    push_net_event(L, &e);
    add_event(L, &k);
  }
  if ((lost = oc_loop_events_dropped(loop))) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "dropped");
    lua_setfield(L, -2, "type");
    set_int(L, "count", (lua_Integer)lost);
    add_event(L, &k);
  }
  if (!k)
    lua_pushnil(L);
  lua_pushinteger(L, events);
  return 2;
}

static int l_next_timeout(lua_State *L)
{
  lua_pushinteger(L, oc_loop_next_timeout_ms(oc_check_loop(L, 1)));
  return 1;
}

/* loop:watch_signals([{keep_mask = bool}]) -> true | nil, err */
static int l_watch_signals(lua_State *L)
{
  char err[OC_ERR_SIZE];
  oc_loop_t *loop = oc_check_loop(L, 1);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "keep_mask");
    oc_loop_keep_signal_mask(loop, lua_toboolean(L, -1));
    lua_pop(L, 1);
  }
  if (oc_loop_watch_signals(loop, err, sizeof err)) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_set_concurrency(lua_State *L)
{
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 1000, 2, "must be in 1..1000");
  oc_loop_set_concurrency(oc_check_loop(L, 1), (unsigned)n);
  return 0;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int l_stats(lua_State *L)
{
  oc_loop_stats_t s;
  oc_loop_stats(oc_check_loop(L, 1), &s);
  lua_createtable(L, 0, 10);
  set_int(L, "active", s.active);
  set_int(L, "queued", s.queued);
  set_int(L, "waiting", s.waiting);
  set_int(L, "timers", s.timers);
  set_int(L, "concurrency", s.concurrency);
  set_int(L, "peak_active", s.peak_active);
  set_int(L, "submitted", (lua_Integer)s.submitted);
  set_int(L, "completed", (lua_Integer)s.completed);
  set_int(L, "attempts", (lua_Integer)s.attempts);
  set_int(L, "retries", (lua_Integer)s.retries);
  return 1;
}

static int l_tostring(lua_State *L)
{
  lloop_t *u = to_lloop(L, 1);
  lua_pushfstring(L, "ocean.Loop (%s): %p", u->loop ? "open" : "closed",
                  (void *)u);
  return 1;
}

/* retry_delay_ms(header_value [, now_epoch_s [, header_name]]) -> ms | nil:
 * how long a Retry-After (the default) or x-ratelimit-reset value asks to
 * wait (for specs). */
static int l_retry_delay(lua_State *L)
{
  const char *v = luaL_checkstring(L, 1);
  long long now = (long long)luaL_optnumber(L, 2, (lua_Number)time(NULL));
  const char *name = luaL_optstring(L, 3, "retry-after");
  long d = oc_retry_header_delay_ms(v, now,
                                    strcmp(name, "x-ratelimit-reset") == 0);
  if (d < 0)
    return 0;
  lua_pushinteger(L, d);
  return 1;
}

/* }==================== */

/* loop:record{retries = bool, requests = bool}: what loop:wait reports
 * (see l_wait); both false by default. */
static int l_record(lua_State *L)
{
  oc_loop_t *loop = oc_check_loop(L, 1);
  int retries, requests;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "retries");
  retries = lua_toboolean(L, -1);
  lua_getfield(L, 2, "requests");
  requests = lua_toboolean(L, -1);
  oc_loop_record(loop, retries, requests);
  return 0;
}

static const luaL_Reg loop_methods[] = {
  {"request", l_request},
  {"record", l_record},
  {"wait", l_wait},
  {"next_timeout", l_next_timeout},
  {"watch_signals", l_watch_signals},
  {"set_concurrency", l_set_concurrency},
  {"stats", l_stats},
  {"close", l_loop_close},
  {NULL, NULL}
};

void oc_open_loop(lua_State *L)
{
  char err[OC_ERR_SIZE];
  if (oc_loop_global_init(err, sizeof err))
    luaL_error(L, "ocean.core: %s", err);
  if (luaL_newmetatable(L, LOOP_MT)) {
    luaL_newlib(L, loop_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_loop_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_loop_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_loop_new);
  lua_setfield(L, -2, "loop_new");
  lua_pushcfunction(L, l_retry_delay);
  lua_setfield(L, -2, "retry_delay_ms");
}
