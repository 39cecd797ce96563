/*
 * llive.c - Lua binding of the live session (src/sync/live_session.h):
 * core.live_new. lua/ocean/ops.lua drives it; docs/live-events.md says
 * what callers see.
 *
 *   core.live_new(loop, port, {window_ms=, batch_max=, batch_max_bytes=,
 *     delete_batch=}) -> live
 *   live:begin{plan=, merge=, create_missing=, delete_dependents=,
 *     event_type=, seq=} -> job  an operation being built; its Job
 *                                (ocean.Job) is done once applied, and
 *                                its result is the caller's report
 *       (seq: the event's receive time in microseconds since the epoch:
 *       a write of an entity a later seq already wrote is superseded)
 *   live:map(job, mapping, items, acc, {mode=, child=, parse_all=,
 *     budget_ms=}) -> done | nil, err
 *       maps items (a list of tables or JSON texts, or one JSON text) with
 *       a compiled resource into the operation, for at most budget_ms;
 *       call again with the same items and acc until done; then
 *       acc.report is lfeed's report. mode: "upsert" (passed: upsert;
 *       with parse_all, failed the selector: delete if owned), "delete",
 *       "before", "after" (a diff's two sides); child: the resource has
 *       itemsToParse
 *   live:add(job, entities, mode, acc [, budget_ms]) -> done
 *       ready-made entities (mode "upsert", "delete", "before", "after");
 *       an entity without identifier or blueprint is an error of the
 *       operation
 *   live:error(job, message)     an error of the operation (ok = false)
 *   live:commit(job, {no_delete=} [, budget_ms]) -> done | nil, err
 *   live:logs() -> {{level = "info"|"warning"|"debug", message =}...}
 *   live:adopt(session) -> bool  the ownership index from a finished
 *                                resync session (core.sync_new)
 *   live:stats(), live:close() (also __gc, __close)
 *
 * The Live userdata keeps its loop and Port client alive (user value) and
 * watches the Port userdata: once that is closed, nothing more is sent.
 * A Job keeps the Live userdata alive; a Job collected or cancelled only
 * drops the report (the writes were coalesced with other callers').
 */
#include "lbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapping/mapping.h"
#include "sync/diff.h"
#include "sync/live_session.h"

#define LIVE_MT "ocean.Live"

typedef struct llive {
  oc_live_t *lv;
  oc_port_t *const *port;        /* the Port userdata's slot */
} llive_t;

/* The session, or NULL once closed (also when its Port client was). */
static oc_live_t *live_of(llive_t *u)
{
  if (u->lv && !*u->port) {
    oc_live_port_gone(u->lv);
    oc_live_free(u->lv);
    u->lv = NULL;
  }
  return u->lv;
}

static llive_t *check_open(lua_State *L)
{
  llive_t *u = luaL_checkudata(L, 1, LIVE_MT);
  if (!live_of(u))
    luaL_error(L, "the live session is closed");
  return u;
}

static size_t opt_size(lua_State *L, int t, const char *k)
{
  size_t v = 0;
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0)
    v = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k, int def)
{
  int v = def;
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1))
    v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.live_new(loop, port, opts) */
static int llive_new(lua_State *L)
{
  oc_loop_t *loop = oc_check_loop(L, 1);
  oc_port_t *port = oc_check_port(L, 2);
  oc_live_opts_t o;
  char err[OC_ERR_SIZE];
  llive_t *u;
  if (lua_isnoneornil(L, 3))
    lua_newtable(L);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  memset(&o, 0, sizeof o);
  o.window_ms = (long)opt_size(L, 3, "window_ms");
  o.batch_max = opt_size(L, 3, "batch_max");
  o.batch_max_bytes = opt_size(L, 3, "batch_max_bytes");
  o.delete_batch = opt_size(L, 3, "delete_batch");
  u = lua_newuserdata(L, sizeof *u);            /* 4 */
  u->lv = NULL;
  u->port = oc_port_slot(L, 2);
  luaL_setmetatable(L, LIVE_MT);
  lua_createtable(L, 2, 0);                      /* keeps both alive */
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 2);
  oc_setuservalue(L, 4);
  if (!(u->lv = oc_live_new(port, loop, &o, err, sizeof err)))
    return luaL_error(L, "live session: %s", err);
  return 1;
}

static int llive_close(lua_State *L)
{
  llive_t *u = luaL_checkudata(L, 1, LIVE_MT);
  if (u->lv) {
    if (!*u->port)
      oc_live_port_gone(u->lv);
    oc_live_free(u->lv);
    u->lv = NULL;
  }
  return 0;
}

/* {==================== the operation's Job ==================== */

static int op_poll(oc_job_t *j)
{
  return oc_live_op_done(j->rec);
}

static void push_failures(lua_State *L, const oc_live_op_t *op)
{
  size_t i, n = oc_live_op_failure_count(op);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    oc_live_failure_t f;
    oc_live_op_failure(op, i, &f);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, f.blueprint);
    lua_setfield(L, -2, "blueprint");
    lua_pushstring(L, f.identifier);
    lua_setfield(L, -2, "identifier");
    lua_pushinteger(L, f.status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, f.code);
    lua_setfield(L, -2, "error");
    lua_pushstring(L, f.message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, f.retryable);
    lua_setfield(L, -2, "retryable");
    lua_pushstring(L, f.is_delete ? "delete" : "upsert");
    lua_setfield(L, -2, "operation");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void push_planned(lua_State *L, const oc_live_op_t *op, int deletes)
{
  size_t i, n = oc_live_op_planned_count(op, deletes);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    jv e = oc_live_op_planned(op, deletes, i);
    oc_push_jv_ex(L, e, 1);
    jv_free(e);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

#define SET_COUNT(name) \
  (lua_pushinteger(L, (lua_Integer)r.name), lua_setfield(L, -2, #name))

static int op_push(lua_State *L, oc_job_t *j)
{
  const oc_live_op_t *op = j->rec;
  oc_live_report_t r;
  size_t i, nerr = oc_live_op_error_count(op);
  oc_live_op_report(op, &r);
  lua_createtable(L, 0, 16);
  SET_COUNT(created); SET_COUNT(updated); SET_COUNT(unchanged);
  SET_COUNT(deleted); SET_COUNT(not_owned); SET_COUNT(kept);
  SET_COUNT(superseded); SET_COUNT(failed); SET_COUNT(delete_failed);
  lua_pushboolean(L, nerr == 0 && r.failed == 0 && r.delete_failed == 0);
  lua_setfield(L, -2, "ok");
  lua_createtable(L, (int)nerr, 0);
  for (i = 0; i < nerr; i++) {
    lua_pushstring(L, oc_live_op_error_at(op, i));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "errors");
  push_failures(L, op);
  lua_setfield(L, -2, "failures");
  if (r.batch) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)r.batch);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, (lua_Integer)r.batch_ops);
    lua_setfield(L, -2, "operations");
    SET_COUNT(upsert_requests); SET_COUNT(delete_requests);
    SET_COUNT(searches);
    lua_setfield(L, -2, "batch");
  }
  if (oc_live_op_planned_count(op, 0) || oc_live_op_planned_count(op, 1)) {
    push_planned(L, op, 0);
    lua_setfield(L, -2, "planned");
    push_planned(L, op, 1);
    lua_setfield(L, -2, "planned_delete");
  }
  return 1;
}

static void op_cancel(oc_job_t *j)
{
  (void)j;                       /* the writes are shared: they go on */
}

static int op_owner_open(const oc_job_t *j)
{
  return live_of((llive_t *)j->owner) != NULL;
}

static void op_free_rec(void *rec)
{
  oc_live_op_release(rec);
}

static const oc_job_class_t op_job = {
  "live operation", op_poll, op_push, op_cancel, op_owner_open, op_free_rec
};

/* The operation of the Job at idx (built on the session at 1). */
static oc_live_op_t *check_op(lua_State *L, int idx, llive_t *u)
{
  oc_job_t *j = luaL_checkudata(L, idx, OC_JOB_MT);
  if (j->cls != &op_job || j->owner != (void *)u || !j->rec)
    luaL_argerror(L, idx, "not an operation of this live session");
  return j->rec;
}

/* live:begin{...} -> job */
static int llive_begin(lua_State *L)
{
  llive_t *u = check_open(L);
  oc_live_op_opts_t o;
  oc_job_t *j;
  if (lua_isnoneornil(L, 2))
    lua_newtable(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&o, 0, sizeof o);
  o.plan = opt_bool(L, 2, "plan", 0);
  o.merge = opt_bool(L, 2, "merge", 1);
  o.create_missing = opt_bool(L, 2, "create_missing", 1);
  o.delete_dependents = opt_bool(L, 2, "delete_dependents", 1);
  lua_getfield(L, 2, "seq");
  if (!lua_isnil(L, -1)) {
    lua_Number seq = luaL_checknumber(L, -1);
    if (!(seq >= 0 && seq < 18446744073709551616.0))
      return luaL_error(L, "live:begin: seq must be a number >= 0");
    o.seq = (uint64_t)seq;
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "event_type");
  o.event_type = lua_tostring(L, -1);            /* copied */
  j = oc_job_new(L, &op_job, 1);
  if (!(j->rec = oc_live_op_new(u->lv, &o)))
    return luaL_error(L, "out of memory");
  oc_job_start(j, 0);
  return 1;
}

/* }==================== */

/* {==================== mapping into an operation ==================== */

static const char *const mode_names[] = {
  "upsert", "delete", "before", "after", NULL
};
static const int mode_what[] = {
  OC_LIVE_UPSERT, OC_LIVE_DELETE, OC_LIVE_BEFORE, OC_LIVE_AFTER
};

/* What a map keeps between two slices (acc.state). */
typedef struct feedstate {
  oc_feed_t f;
  oc_live_op_t *op;
  int what;
  unsigned flags;
} feedstate_t;

static int offer_write(void *ud, jv entity, int passed, char *err,
                       size_t errlen)
{
  feedstate_t *st = ud;
  int what = st->what;
  if (!passed)                   /* parse_all upserts: failed the selector */
    what = OC_LIVE_IMPLICIT;
  return oc_live_op_add(st->op, what, st->flags, entity, err, errlen);
}

static double deadline_of(lua_State *L, int idx)
{
  double budget = luaL_optnumber(L, idx, 0);
  return budget > 0 ? oc_monotonic_ms() + budget : 0;
}

/* live:map(job, mapping, items, acc, opts) -> done | nil, err */
static int llive_map(lua_State *L)
{
  llive_t *u = check_open(L);
  oc_live_op_t *op = check_op(L, 2, u);
  oc_mapping_t *m = oc_check_mapping(L, 3);
  feedstate_t *st;
  int done, mode;
  luaL_checktype(L, 5, LUA_TTABLE);
  luaL_checktype(L, 6, LUA_TTABLE);
  lua_settop(L, 6);
  lua_getfield(L, 6, "mode");
  mode = luaL_checkoption(L, -1, "upsert", mode_names);
  lua_getfield(L, 6, "budget_ms");               /* 8 */
  st = oc_feed_resume(L, 5, m, sizeof *st);
  st->op = op;
  st->what = mode_what[mode];
  st->flags = opt_bool(L, 6, "child", 0) ? OC_LIVE_CHILD : 0;
  st->f.parse_all = opt_bool(L, 6, "parse_all", 0);
  st->f.want_failed = st->f.parse_all && st->what == OC_LIVE_UPSERT;
  st->f.offer = offer_write;
  st->f.offer_ud = st;
  st->f.deadline_ms = deadline_of(L, 8);
  done = oc_feed_run(L, &st->f, 4);
  if (st->f.failed) {
    lua_pushnil(L);
    lua_pushstring(L, st->f.err);
    return 2;
  }
  if (done) {
    oc_feed_push_report(L, &st->f);
    lua_setfield(L, 5, "report");
  }
  lua_pushboolean(L, done);
  return 1;
}

static int has_key(lua_State *L, int t, const char *k)
{
  int v;
  lua_getfield(L, t, k);
  v = !lua_isnil(L, -1) && !oc_is_null(L, -1);
  lua_pop(L, 1);
  return v;
}

/* live:add(job, entities, mode, acc [, budget_ms]) -> done */
static int llive_add(lua_State *L)
{
  llive_t *u = check_open(L);
  oc_live_op_t *op = check_op(L, 2, u);
  int mode = luaL_checkoption(L, 4, NULL, mode_names);
  double deadline = deadline_of(L, 6);
  char err[OC_ERR_SIZE];
  size_t i, n, count = 0;
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 5, LUA_TTABLE);
  n = (size_t)lua_rawlen(L, 3);
  lua_getfield(L, 5, "pos");
  i = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  for (; i < n; i++) {
    jv e;
    if (deadline > 0 && ++count % 16 == 0 && oc_monotonic_ms() >= deadline)
      break;
    lua_rawgeti(L, 3, (lua_Integer)i + 1);
    if (!lua_istable(L, -1) || !has_key(L, -1, "identifier")
        || !has_key(L, -1, "blueprint")) {
      snprintf(err, sizeof err, "entity %zu has no identifier or "
               "blueprint", i + 1);
      oc_live_op_error(op, err);
      lua_pop(L, 1);
      continue;
    }
    e = oc_to_jv(L, -1, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
    lua_pop(L, 1);
    if (!jv_is_valid(e)) {
      jv_free(e);
      return luaL_error(L, "entity %d: %s", (int)i + 1, err);
    }
    if (oc_live_op_add(op, mode_what[mode], 0, e, err, sizeof err) < 0)
      return luaL_error(L, "%s", err);
  }
  lua_pushinteger(L, (lua_Integer)i);
  lua_setfield(L, 5, "pos");
  lua_pushboolean(L, i >= n);
  return 1;
}

static int llive_error(lua_State *L)
{
  llive_t *u = check_open(L);
  oc_live_op_error(check_op(L, 2, u), luaL_checkstring(L, 3));
  return 0;
}

/* live:commit(job, {no_delete=} [, budget_ms]) -> done | nil, err */
static int llive_commit(lua_State *L)
{
  llive_t *u = check_open(L);
  oc_live_op_t *op = check_op(L, 2, u);
  long budget = (long)luaL_optinteger(L, 4, 0);
  char err[OC_ERR_SIZE];
  int rc;
  if (lua_istable(L, 3) && opt_bool(L, 3, "no_delete", 0))
    oc_live_op_no_delete(op);
  if ((rc = oc_live_op_commit(op, budget, err, sizeof err)) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, rc);
  return 1;
}

/* }==================== */

static int llive_logs(lua_State *L)
{
  llive_t *u = check_open(L);
  const char *msg;
  int level = 0, n = 0;
  lua_newtable(L);
  while ((msg = oc_live_next_log(u->lv, &level))) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, level == 'W' ? "warning" : level == 'D' ? "debug"
                                                             : "info");
    lua_setfield(L, -2, "level");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int llive_adopt(lua_State *L)
{
  llive_t *u = check_open(L);
  int rc = oc_live_adopt(u->lv, oc_check_sync(L, 2));
  if (rc < 0)
    return luaL_error(L, "out of memory");
  lua_pushboolean(L, rc > 0);
  return 1;
}

/* live:seqs_changed() -> {key, seq, key, seq, ...}: the entities whose
 * latest writer changed since the last call (live_session.h); key:
 * blueprint \0 identifier, seq: the event's receive time in µs. */
typedef struct seqs_acc {
  lua_State *L;
  lua_Integer n;
} seqs_acc_t;

static void push_seq(void *ud, const char *key, size_t klen, uint64_t seq)
{
  seqs_acc_t *a = ud;
  lua_pushlstring(a->L, key, klen);
  lua_rawseti(a->L, -2, ++a->n);
  lua_pushinteger(a->L, (lua_Integer)seq);
  lua_rawseti(a->L, -2, ++a->n);
}

static int llive_seqs_changed(lua_State *L)
{
  llive_t *u = check_open(L);
  seqs_acc_t a;
  a.L = L;
  a.n = 0;
  lua_newtable(L);
  oc_live_seqs_changed(u->lv, push_seq, &a);
  return 1;
}

/* live:note_seqs{key, seq, ...}: the latest writers an earlier process
 * kept; raises each (an older event's write is then superseded). */
static int llive_note_seqs(lua_State *L)
{
  llive_t *u = check_open(L);
  lua_Integer i, n;
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i + 1 <= n; i += 2) {
    size_t klen;
    const char *key;
    lua_Integer seq;
    lua_rawgeti(L, 2, i);
    lua_rawgeti(L, 2, i + 1);
    key = lua_tolstring(L, -2, &klen);
    if (!key || !lua_isnumber(L, -1))
      return luaL_error(L, "note_seqs: expected {key, seq, ...}, item %d is not",
                        (int)i);
    seq = lua_tointeger(L, -1);
    if (seq > 0 && oc_live_seq_note(u->lv, key, klen, (uint64_t)seq) != 0)
      return luaL_error(L, "out of memory");
    lua_pop(L, 2);
  }
  return 0;
}

#define STAT(name) (lua_pushinteger(L, (lua_Integer)st.name), \
                    lua_setfield(L, -2, #name))

static int llive_stats(lua_State *L)
{
  oc_live_stats_t st;
  oc_live_stats(check_open(L)->lv, &st);
  lua_createtable(L, 0, 14);
  STAT(batches); STAT(operations); STAT(upserts); STAT(upsert_requests);
  STAT(deletes); STAT(delete_requests); STAT(searches); STAT(folded);
  STAT(retried); STAT(owned); STAT(open); STAT(queued);
  lua_pushstring(L, st.indexed ? "resync" : "none");
  lua_setfield(L, -2, "index");
  return 1;
}

static const luaL_Reg live_methods[] = {
  {"begin", llive_begin},
  {"map", llive_map},
  {"add", llive_add},
  {"error", llive_error},
  {"commit", llive_commit},
  {"logs", llive_logs},
  {"adopt", llive_adopt},
  {"seqs_changed", llive_seqs_changed},
  {"note_seqs", llive_note_seqs},
  {"stats", llive_stats},
  {"close", llive_close},
  {NULL, NULL}
};

static const luaL_Reg live_funcs[] = {
  {"live_new", llive_new},
  {NULL, NULL}
};

void oc_open_live(lua_State *L)
{
  if (luaL_newmetatable(L, LIVE_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, live_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, llive_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, llive_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, live_funcs, 0);
}
