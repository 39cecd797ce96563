/*
 * lport.c - the "ocean.Port" userdata: Lua's face of port.c.
 *
 *   core.port_new(loop, {base_url=, client_id=, client_secret=,
 *     integration_type=, integration_identifier=, integration_version=,
 *     verify_tls=true, timeout_ms=, retry={...}, bulk_max_entities=,
 *     bulk_max_bytes=, delete_batch=, list_limit=, auth_failure_ttl_ms=})
 *   port:call{method=, path=, query=, body=, auth=true, exporter=false,
 *             retryable=false, event={type=, resync_id=}}      -> job
 *   port:search(query, include)                                 -> job
 *   port:upsert(bp, entities, {upsert=, merge=,
 *     create_missing_related_entities=, validation_only=, event=}) -> job
 *   port:delete(bp, ids, {delete_dependents=, event=})          -> job
 *   port:list_owned{before=}                                    -> job
 *   port:token()                                                -> job
 *   Each returns an ocean.Job (ljob.c); job:result() once done:
 *       call/search  {status=, body=}            | {status=, error=}
 *       upsert       {results={{ok=, created=, identifier=, status=,
 *                      error=, message=, unresolved=}...}, requests=,
 *                      failed_requests=, error=}
 *       delete       {results={{ok=, deleted=, status=, message=}...}, ...}
 *       list_owned   {entities={...}, requests=, failed_requests=, error=}
 *       token        {token=} | {error=}
 *     error: {status=, message=, code=, body=, trace_id=, method=, path=}
 *     with __tostring = message (metatable "ocean.PortError").
 *   port:stats()  port:close() (also __gc, __close: cancels every job)
 *
 * Callbacks (C) fill a per-job record that the Job owns.
 */
#include "lbind.h"
#include "port/port.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PORT_MT "ocean.Port"
#define ERROR_MT "ocean.PortError"
#define MAX_INCLUDE 32
#define MAX_QUERY 32

enum { J_CALL = 1, J_UPSERT, J_DELETE, J_LIST, J_TOKEN };

typedef struct eres {              /* one entity's or id's outcome */
  int set, ok, flag, unresolved, status;   /* flag: created / deleted */
  char *identifier, *code, *message;
} eres_t;

typedef struct ljob {             /* a job's record (its Job owns it) */
  int kind, done, status;
  jv body;                         /* call: answer; list: array */
  char *token;
  oc_port_error_t *err;
  eres_t *res;
  size_t nres;
  unsigned requests, failed;
} ljob_t;

typedef struct lport {
  oc_port_t *port;                 /* NULL once closed */
} lport_t;

static lport_t *to_lport(lua_State *L, int idx)
{
  return (lport_t *)luaL_checkudata(L, idx, PORT_MT);
}

oc_port_t *const *oc_port_slot(lua_State *L, int idx)
{
  return &to_lport(L, idx)->port;
}

oc_port_t *oc_check_port(lua_State *L, int idx)
{
  lport_t *u = to_lport(L, idx);
  if (!u->port)
    luaL_error(L, "attempt to use a closed Port client");
  return u->port;
}

static char *dupstr(const char *s)
{
  size_t n;
  char *p;
  if (!s)
    return NULL;
  n = strlen(s) + 1;
  if ((p = malloc(n)))
    memcpy(p, s, n);
  return p;
}

/* {==================== job records ==================== */

static void ljob_free(void *rec)
{
  ljob_t *j = rec;
  size_t i;
  jv_free(j->body);
  if (j->token) {
    memset(j->token, 0, strlen(j->token));
    free(j->token);
  }
  oc_port_error_free(j->err);
  for (i = 0; i < j->nres; i++) {
    free(j->res[i].identifier);
    free(j->res[i].code);
    free(j->res[i].message);
  }
  free(j->res);
  free(j);
}

static const oc_job_class_t port_job;

/* Push a new Job with its record (the Job owns it from here on, so that
 * an error raised while the job is set up loses nothing). */
static ljob_t *ljob_new(lua_State *L, int kind, size_t nres)
{
  oc_job_t *job = oc_job_new(L, &port_job, 1);
  ljob_t *j = calloc(1, sizeof *j);
  if (j && nres && !(j->res = calloc(nres, sizeof *j->res))) {
    free(j);
    j = NULL;
  }
  if (!j)
    luaL_error(L, "out of memory");
  j->kind = kind;
  j->nres = nres;
  j->body = kind == J_LIST ? jv_array() : jv_null();
  job->rec = j;
  return j;
}

/* Start the Job at the top of the stack, or raise with the submit error
 * (the Job, not started, frees its record when collected). */
static int ljob_started(lua_State *L, uint64_t id, const char *what,
                        const char *err)
{
  if (!id)
    return luaL_error(L, "%s: %s", what, err);
  oc_job_start((oc_job_t *)lua_touserdata(L, -1), id);
  return 1;
}

static void on_call(void *ud, uint64_t job, int status, jv body,
                    const oc_port_error_t *err)
{
  ljob_t *j = ud;
  (void)job;
  j->done = 1;
  j->status = status;
  jv_free(j->body);
  j->body = body;
  if (err)
    j->err = oc_port_error_dup(err);
}

static void on_token(void *ud, uint64_t job, const char *token,
                     const oc_port_error_t *err)
{
  ljob_t *j = ud;
  (void)job;
  j->done = 1;
  j->token = dupstr(token);
  if (err)
    j->err = oc_port_error_dup(err);
}

static void on_done(void *ud, const oc_port_summary_t *s)
{
  ljob_t *j = ud;
  j->done = 1;
  j->requests = s->requests;
  j->failed = s->failed_requests;
  if (s->error)
    j->err = oc_port_error_dup(s->error);
}

static void on_entity(void *ud, const oc_port_entity_result_t *r)
{
  ljob_t *j = ud;
  eres_t *e;
  if (r->index >= j->nres)
    return;
  e = &j->res[r->index];
  e->set = 1;
  e->ok = r->ok;
  e->flag = r->created;
  e->unresolved = r->unresolved;
  e->status = r->status;
  e->identifier = dupstr(r->identifier);
  if (!r->ok) {
    e->code = dupstr(r->code);
    e->message = dupstr(r->message);
  }
}

static void on_id(void *ud, size_t index, int deleted,
                  const oc_port_error_t *err)
{
  ljob_t *j = ud;
  eres_t *e;
  if (index >= j->nres)
    return;
  e = &j->res[index];
  e->set = 1;
  e->ok = err == NULL;
  e->flag = deleted;
  e->status = err ? err->status : 200;
  if (err)
    e->message = dupstr(err->message);
}

static void on_listed(void *ud, jv entity)
{
  ljob_t *j = ud;
  j->body = jv_array_append(j->body, entity);
}

/* }==================== */

/* {==================== arguments ==================== */

static const char *opt_str(lua_State *L, int t, const char *k)
{
  const char *s = NULL;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "'%s' must be a string", k);
    s = lua_tostring(L, -1);     /* anchored by the table */
  }
  lua_pop(L, 1);
  return s;
}

static int opt_flag(lua_State *L, int t, const char *k, int def)
{
  int v = def;
  if (lua_isnoneornil(L, t))
    return def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "'%s' must be a boolean", k);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static long opt_num(lua_State *L, int t, const char *k, long def, long max)
{
  long v = def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n < 0 || n > (lua_Number)max
        || n != (lua_Number)(long)n)
      luaL_error(L, "'%s' must be an integer in 0..%d", k, (int)max);
    v = (long)n;
  }
  lua_pop(L, 1);
  return v;
}

/* event = {type=, resync_id=} in the options table at t (may be nil). */
static void read_event(lua_State *L, int t, oc_port_event_t *ev)
{
  memset(ev, 0, sizeof *ev);
  if (lua_isnoneornil(L, t))
    return;
  lua_getfield(L, t, "event");
  if (lua_istable(L, -1)) {
    ev->type = opt_str(L, lua_gettop(L), "type");
    ev->resync_id = opt_str(L, lua_gettop(L), "resync_id");
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "'event' must be a table");
  }
  lua_pop(L, 1);                 /* strings stay anchored by the options */
}

/* JSON text of the value at idx: a string as is, anything else encoded.
 * The text is left on the stack. */
static const char *json_arg(lua_State *L, int idx, size_t *n,
                            const char *what)
{
  char err[OC_ERR_SIZE];
  oc_buf_t b = OC_BUF_INIT;
  jv v;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return lua_tolstring(L, -1, n);
  }
  v = oc_to_jv(L, idx, NULL, OC_LUA_MAX_DEPTH, err, sizeof err);
  if (!jv_is_valid(v)) {
    jv_free(v);
    luaL_error(L, "%s: %s", what, err);
  }
  oc_json_dump(v, &b, 0);
  jv_free(v);
  lua_pushlstring(L, b.p ? b.p : "", b.n);
  oc_buf_free(&b);
  return lua_tolstring(L, -1, n);
}

/* }==================== */

/* {==================== new / close ==================== */

static void read_cfg(lua_State *L, int t, oc_port_cfg_t *c, oc_retry_t *r)
{
  c->base_url = opt_str(L, t, "base_url");
  c->client_id = opt_str(L, t, "client_id");
  c->client_secret = opt_str(L, t, "client_secret");
  c->integration_type = opt_str(L, t, "integration_type");
  c->integration_identifier = opt_str(L, t, "integration_identifier");
  c->integration_version = opt_str(L, t, "integration_version");
  c->insecure = !opt_flag(L, t, "verify_tls", 1);
  c->timeout_ms = opt_num(L, t, "timeout_ms", 0, 86400000);
  c->bulk_max_entities = (unsigned)opt_num(L, t, "bulk_max_entities", 0, 1000);
  c->bulk_max_bytes = (size_t)opt_num(L, t, "bulk_max_bytes", 0, 1L << 30);
  c->delete_batch = (unsigned)opt_num(L, t, "delete_batch", 0, 10000);
  c->list_limit = (unsigned)opt_num(L, t, "list_limit", 0, 100000);
  c->auth_failure_ttl_ms = opt_num(L, t, "auth_failure_ttl_ms", 0, 86400000);
  lua_getfield(L, t, "retry");
  if (lua_istable(L, -1)) {
    oc_retry_port_defaults(r);
    oc_lua_read_retry(L, -1, r);
    c->retry = r;
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "'retry' must be a table");
  }
  lua_pop(L, 1);
}

static int l_port_new(lua_State *L)
{
  oc_loop_t *loop = oc_check_loop(L, 1);
  oc_port_cfg_t c;
  oc_retry_t r;
  char err[OC_ERR_SIZE];
  lport_t *u;
  luaL_checktype(L, 2, LUA_TTABLE);
  memset(&c, 0, sizeof c);
  read_cfg(L, 2, &c, &r);
  u = (lport_t *)lua_newuserdata(L, sizeof *u);
  u->port = NULL;
  luaL_setmetatable(L, PORT_MT);
  lua_createtable(L, 1, 0);      /* keeps the loop alive */
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  oc_setuservalue(L, -2);
  if (!(u->port = oc_port_new(loop, &c, err, sizeof err)))
    return luaL_error(L, "%s", err);
  return 1;
}

static int l_port_close(lua_State *L)
{
  lport_t *u = to_lport(L, 1);
  oc_port_t *p = u->port;
  u->port = NULL;
  oc_port_free(p);               /* no callback runs after this */
  return 0;
}

/* }==================== */

/* {==================== jobs ==================== */

/* query = {name = value}; values become text (kept in an anchor table
 * left on the stack). */
static void read_query(lua_State *L, int t, const char **kv)
{
  int k = 0, q, anchor;
  lua_newtable(L);
  anchor = lua_gettop(L);
  lua_getfield(L, t, "query");
  q = lua_gettop(L);
  if (lua_istable(L, q)) {
    lua_pushnil(L);
    while (lua_next(L, q)) {
      if (k >= 2 * MAX_QUERY)
        luaL_error(L, "too many query parameters");
      if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "query parameter names must be strings");
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER
          && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_error(L, "query parameter '%s' must be a string, number or "
                   "boolean", lua_tostring(L, -2));
      kv[k++] = lua_tostring(L, -2);           /* anchored by the table */
      if (lua_type(L, -1) == LUA_TBOOLEAN)
        lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
      else
        lua_pushvalue(L, -1);
      kv[k++] = lua_tostring(L, -1);
      lua_rawseti(L, anchor, k);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, q)) {
    luaL_error(L, "'query' must be a table");
  }
  kv[k] = NULL;
  lua_pop(L, 1);                 /* the anchor stays */
}

static int l_call(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  oc_port_call_t c;
  oc_port_event_t ev;
  const char *kv[2 * MAX_QUERY + 1];
  char err[OC_ERR_SIZE];
  ljob_t *j;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&c, 0, sizeof c);
  c.method = opt_str(L, 2, "method");
  c.path = opt_str(L, 2, "path");
  if (!c.method || !c.path)
    return luaL_error(L, "port:call: 'method' and 'path' are required");
  read_query(L, 2, kv);
  c.query = kv;
  lua_getfield(L, 2, "body");
  if (!lua_isnil(L, -1))
    c.body = json_arg(L, -1, &c.body_len, "port:call body");
  c.flags = (opt_flag(L, 2, "auth", 1) ? OC_PORT_AUTH : 0)
            | (opt_flag(L, 2, "exporter", 0) ? OC_PORT_EXPORTER : 0)
            | (opt_flag(L, 2, "retryable", 0) ? OC_PORT_RETRYABLE : 0);
  read_event(L, 2, &ev);
  if (ev.type || ev.resync_id)
    c.event = &ev;
  j = ljob_new(L, J_CALL, 0);
  return ljob_started(L, oc_port_call(P, &c, on_call, j, err,
                                            sizeof err), "port:call", err);
}

static int l_search(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  const char *inc[MAX_INCLUDE + 1], *q;
  size_t n, i, k = 0;
  char err[OC_ERR_SIZE];
  ljob_t *j;
  luaL_checkany(L, 2);
  lua_settop(L, 3);
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 3);
    if (n > MAX_INCLUDE)
      return luaL_error(L, "port:search: at most %d include fields",
                        MAX_INCLUDE);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, 3, (int)i);
      inc[k++] = luaL_checkstring(L, -1);      /* anchored by the table */
      lua_pop(L, 1);
    }
  }
  inc[k] = NULL;
  q = json_arg(L, 2, &n, "port:search query");
  j = ljob_new(L, J_CALL, 0);
  return ljob_started(L, oc_port_search(P, q, n, k ? inc : NULL,
                                              on_call, j, err, sizeof err),
                      "port:search", err);
}

/* The entities at idx as JSON texts: one buffer, offsets into it. */
static void entity_texts(lua_State *L, int idx, size_t n, oc_buf_t *all,
                         size_t *off, size_t *len)
{
  char err[OC_ERR_SIZE];
  size_t i;
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    off[i] = all->n;
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t sl;
      const char *s = lua_tolstring(L, -1, &sl);
      oc_buf_add(all, s, sl);
    } else {
      jv v = oc_to_jv(L, -1, NULL, OC_LUA_MAX_DEPTH, err, sizeof err);
      if (!jv_is_valid(v) || jv_get_kind(v) != JV_KIND_OBJECT) {
        jv_free(v);
        oc_buf_free(all);
        luaL_error(L, "port:upsert: entity %d: %s", (int)i + 1,
                   jv_is_valid(v) ? "not an object" : err);
      }
      oc_json_dump(v, all, 0);
      jv_free(v);
    }
    len[i] = all->n - off[i];
    lua_pop(L, 1);
  }
}

static void read_upsert_opts(lua_State *L, int t, oc_port_upsert_opts_t *o)
{
  o->upsert = opt_flag(L, t, "upsert", 1);
  o->merge = opt_flag(L, t, "merge", 1);
  o->create_missing_related_entities =
    opt_flag(L, t, "create_missing_related_entities", 1);
  o->validation_only = opt_flag(L, t, "validation_only", 0);
  read_event(L, t, &o->event);
}

static int l_upsert(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  const char *bp = luaL_checkstring(L, 2);
  oc_port_upsert_opts_t o;
  oc_buf_t all = OC_BUF_INIT;
  char err[OC_ERR_SIZE];
  size_t n, i, *off, *len;
  const char **texts;
  uint64_t id;
  ljob_t *j;
  luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4))
    luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  read_upsert_opts(L, 4, &o);
  n = (size_t)lua_rawlen(L, 3);
  j = ljob_new(L, J_UPSERT, n);  /* 5 */
  /* scratch arrays in one userdata, collected with the call's frame */
  off = (size_t *)lua_newuserdata(L, (n ? n : 1) * (2 * sizeof(size_t)
                                                    + sizeof(char *)));
  len = off + n;
  texts = (const char **)(len + n);
  entity_texts(L, 3, n, &all, off, len);
  if (all.oom) {
    oc_buf_free(&all);
    return luaL_error(L, "out of memory");
  }
  for (i = 0; i < n; i++)
    texts[i] = all.p + off[i];
  id = oc_port_upsert(P, bp, texts, len, n, &o, on_entity, on_done, j, err,
                      sizeof err);
  oc_buf_free(&all);
  lua_pushvalue(L, 5);
  return ljob_started(L, id, "port:upsert", err);
}

static int l_delete(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  const char *bp = luaL_checkstring(L, 2);
  oc_port_delete_opts_t o;
  char err[OC_ERR_SIZE];
  const char **ids;
  size_t n, i;
  ljob_t *j;
  luaL_checktype(L, 3, LUA_TTABLE);
  if (!lua_isnoneornil(L, 4))
    luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  o.delete_dependents = opt_flag(L, 4, "delete_dependents", 1);
  read_event(L, 4, &o.event);
  n = (size_t)lua_rawlen(L, 3);
  ids = (const char **)lua_newuserdata(L, (n ? n : 1) * sizeof *ids);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 3, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "port:delete: id %d is not a string", (int)i + 1);
    ids[i] = lua_tostring(L, -1);              /* anchored by the table */
    lua_pop(L, 1);
  }
  j = ljob_new(L, J_DELETE, n);
  return ljob_started(L, oc_port_delete(P, bp, ids, n, &o, on_id,
                                              on_done, j, err, sizeof err),
                      "port:delete", err);
}

static int l_list_owned(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  const char *before = NULL;
  char err[OC_ERR_SIZE];
  ljob_t *j;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    before = opt_str(L, 2, "before");
  }
  j = ljob_new(L, J_LIST, 0);
  return ljob_started(L, oc_port_list_owned(P, before, on_listed,
                                                  on_done, j, err,
                                                  sizeof err),
                      "port:list_owned", err);
}

static int l_token(lua_State *L)
{
  oc_port_t *P = oc_check_port(L, 1);
  char err[OC_ERR_SIZE];
  ljob_t *j = ljob_new(L, J_TOKEN, 0);
  return ljob_started(L, oc_port_token(P, on_token, j, err,
                                             sizeof err),
                      "port:token", err);
}

/* }==================== */

/* {==================== results ==================== */

static void set_str(lua_State *L, const char *k, const char *v)
{
  if (!v)
    return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, int v)
{
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

static void push_error(lua_State *L, const oc_port_error_t *e)
{
  lua_createtable(L, 0, 8);
  set_int(L, "status", e->status);
  set_str(L, "message", e->message);
  set_str(L, "method", e->method);
  set_str(L, "path", e->path);
  if (e->code[0])
    set_str(L, "code", e->code);
  if (e->trace_id[0])
    set_str(L, "trace_id", e->trace_id);
  if (e->body) {
    lua_pushlstring(L, e->body, e->body_len);
    lua_setfield(L, -2, "body");
  }
  luaL_setmetatable(L, ERROR_MT);
}

static void push_eres(lua_State *L, const eres_t *e, int kind)
{
  lua_createtable(L, 0, 6);
  set_bool(L, "ok", e->set && e->ok);
  set_bool(L, kind == J_UPSERT ? "created" : "deleted", e->flag);
  set_int(L, "status", e->status);
  set_str(L, "identifier", e->identifier);
  set_str(L, "error", e->code);
  set_str(L, "message", e->set ? e->message : "no result");
  if (e->unresolved)
    set_bool(L, "unresolved", 1);
}

static void push_result(lua_State *L, const ljob_t *j)
{
  size_t i;
  lua_createtable(L, 0, 5);
  if (j->kind == J_CALL || j->kind == J_TOKEN) {
    set_int(L, "status", j->status);
    if (!j->err && j->kind == J_CALL) {
      oc_push_jv(L, j->body);
      lua_setfield(L, -2, "body");
    }
    set_str(L, "token", j->err ? NULL : j->token);
  } else {
    set_int(L, "requests", j->requests);
    set_int(L, "failed_requests", j->failed);
    if (j->kind == J_LIST) {
      oc_push_jv(L, j->body);
      lua_setfield(L, -2, "entities");
    } else {
      lua_createtable(L, (int)j->nres, 0);
      for (i = 0; i < j->nres; i++) {
        push_eres(L, &j->res[i], j->kind);
        lua_rawseti(L, -2, (int)i + 1);
      }
      oc_set_array_mt(L);
      lua_setfield(L, -2, "results");
    }
  }
  if (j->err) {
    push_error(L, j->err);
    lua_setfield(L, -2, "error");
  }
}

static int port_job_poll(oc_job_t *job)
{
  return ((ljob_t *)job->rec)->done;
}

static int port_job_push(lua_State *L, oc_job_t *job)
{
  push_result(L, job->rec);
  return 1;
}

static void port_job_cancel(oc_job_t *job)
{
  oc_port_cancel(((lport_t *)job->owner)->port, job->id);
}

static int port_job_owner_open(const oc_job_t *job)
{
  return ((const lport_t *)job->owner)->port != NULL;
}

static const oc_job_class_t port_job = {
  "port", port_job_poll, port_job_push, port_job_cancel, port_job_owner_open,
  ljob_free
};

static int l_stats(lua_State *L)
{
  oc_port_stats_t s;
  oc_port_stats(oc_check_port(L, 1), &s);
  lua_createtable(L, 0, 3);
  set_int(L, "jobs", s.jobs);
  set_int(L, "requests", (lua_Integer)s.requests);
  set_int(L, "token_fetches", (lua_Integer)s.token_fetches);
  return 1;
}

/* port:unreachable() -> message | nil: while Port is known to be down
 * (a retried request got no answer until its retry budget ran out), every
 * request fails at once with this message. */
static int l_unreachable(lua_State *L)
{
  const char *m = oc_port_unreachable(oc_check_port(L, 1));
  if (m)
    lua_pushstring(L, m);
  else
    lua_pushnil(L);
  return 1;
}

static int l_tostring(lua_State *L)
{
  lport_t *u = to_lport(L, 1);
  lua_pushfstring(L, "ocean.Port (%s): %p", u->port ? "open" : "closed",
                  (void *)u);
  return 1;
}

static int l_error_tostring(lua_State *L)
{
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1))
    lua_pushliteral(L, "Port error");
  return 1;
}

/* }==================== */

static const luaL_Reg port_methods[] = {
  {"call", l_call},
  {"search", l_search},
  {"upsert", l_upsert},
  {"delete", l_delete},
  {"list_owned", l_list_owned},
  {"token", l_token},
  {"stats", l_stats},
  {"unreachable", l_unreachable},
  {"close", l_port_close},
  {NULL, NULL}
};

void oc_open_port(lua_State *L)
{
  if (luaL_newmetatable(L, PORT_MT)) {
    luaL_newlib(L, port_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_port_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_port_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, l_error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setfield(L, -2, "port_error_mt");
  lua_pushcfunction(L, l_port_new);
  lua_setfield(L, -2, "port_new");
}
