/*
 * lsync.c - Lua binding of the sync session (sync.h): core.sync_new.
 *
 *   core.sync_new(port | nil, {slots = {m | signature, ...}, merge=,
 *     create_missing=, delete_dependents=, plan=, event_type=, resync_id=,
 *     batch_max=, batch_max_bytes=, max_pending=}) -> session
 *       slots: one per resource (an ocean.Mapping, or a signature table
 *       for ready-made entities); the owned listing starts at once
 *   session:state()        -> "listing" | "feeding" | "finishing" |
 *                             "retrying" | "confirming" | "deleting" | "done"
 *   session:ready()        -> Job (true): the session takes entities (the
 *                             listing is over, fewer than max_pending in
 *                             flight)
 *   session:feed(i, items) -> report | nil, err   (maps with slot i)
 *   session:offer(i, entity) -> true | nil, err
 *   session:drain()        -> Job (true): every batch sent and answered
 *                             | nil, err
 *   session:finish{threshold=, before=, errors=, blocked={...},
 *                  held={...}} -> Job (the report) | nil, err
 *   session:report(), session:stats(), session:tag_stats(i),
 *   session:failures() ({blueprint=, identifier=, status=, code=,
 *     message=, retryable=, tag= (the resource i it came from)}),
 *   session:planned(), session:close() (also __gc, __close)
 *
 * The order of the phases lives in sync.c/sync_phase.c; the Jobs only
 * step the session when polled (ljob.c), so a caller that stops waiting
 * (an abort) never lets a new phase start. The session userdata keeps
 * its Port client (and so the loop) and its mappings alive through its
 * user value {port = , [i] = mapping}.
 */
#include "lbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/diff.h"
#include "mapping/mapping.h"
#include "sync/sync.h"

#define SYNC_MT "ocean.Sync"

typedef struct lsync {
  oc_sync_t *s;
  int feed_slot;                 /* the slot of the feed running */
  int nslots;
  int *slots;                    /* resource i (0-based) -> session slot */
} lsync_t;

static lsync_t *check_open(lua_State *L)
{
  lsync_t *u = luaL_checkudata(L, 1, SYNC_MT);
  if (!u->s)
    luaL_error(L, "sync session is closed");
  return u;
}

struct oc_sync *oc_check_sync(lua_State *L, int idx)
{
  lsync_t *u = luaL_checkudata(L, idx, SYNC_MT);
  if (!u->s)
    luaL_argerror(L, idx, "sync session is closed");
  return u->s;
}

/* The session slot of resource argument idx (1-based). */
static int check_slot(lua_State *L, lsync_t *u, int idx)
{
  lua_Integer i = luaL_checkinteger(L, idx);
  luaL_argcheck(L, i >= 1 && i <= u->nslots && u->slots[i - 1] >= 0, idx,
                "no such slot");
  return u->slots[i - 1];
}

static void opt_int(lua_State *L, int t, const char *k, int *out)
{
  lua_getfield(L, t, k);
  if (!lua_isnil(L, -1))
    *out = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

static void opt_size(lua_State *L, int t, const char *k, size_t *out)
{
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TNUMBER)
    *out = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
}

/* The signature of slot entry idx: a Mapping's, a table, or nil. */
static jv slot_signature(lua_State *L, int idx, char *err, size_t errlen)
{
  if (luaL_testudata(L, idx, OC_MAPPING_MT))
    return oc_mapping_signature(oc_check_mapping(L, idx));
  if (lua_istable(L, idx))
    return oc_to_jv(L, idx, NULL, 8, err, errlen);
  return jv_null();
}

/* Add the slots of opts.slots (at t); the mappings go to the user value
 * (at uv). An entry false has no slot (a resource that did not compile). */
static void add_slots(lua_State *L, lsync_t *u, int t, int uv)
{
  int i, n;
  char err[OC_ERR_SIZE];
  lua_getfield(L, t, "slots");
  n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
  if (n > 0 && !(u->slots = malloc(sizeof(int) * (size_t)n)))
    luaL_error(L, "out of memory");
  for (i = 1; i <= n; i++) {
    jv sig;
    lua_rawgeti(L, -1, i);
    u->nslots = i;
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      u->slots[i - 1] = -1;
      lua_pop(L, 1);
      continue;
    }
    sig = slot_signature(L, lua_gettop(L), err, sizeof err);
    if (!jv_is_valid(sig)) {
      jv_free(sig);
      luaL_error(L, "sync_new: slot %d: %s", i, err);
    }
    u->slots[i - 1] = oc_sync_add_slot(u->s, sig);
    jv_free(sig);
    if (u->slots[i - 1] < 0)
      luaL_error(L, "out of memory");
    lua_rawseti(L, uv, i);       /* keeps the mapping alive */
  }
  lua_pop(L, 1);
}

static void read_opts(lua_State *L, oc_sync_opts_t *o)
{
  memset(o, 0, sizeof *o);
  o->merge = o->create_missing = o->delete_dependents = 1;
  opt_int(L, 2, "merge", &o->merge);
  opt_int(L, 2, "create_missing", &o->create_missing);
  opt_int(L, 2, "delete_dependents", &o->delete_dependents);
  opt_int(L, 2, "plan", &o->plan);
  opt_size(L, 2, "batch_max", &o->batch_max);
  opt_size(L, 2, "batch_max_bytes", &o->batch_max_bytes);
  opt_size(L, 2, "max_pending", &o->max_pending);
  lua_getfield(L, 2, "event_type");
  o->event_type = lua_tostring(L, -1);   /* copied by oc_sync_new */
  lua_getfield(L, 2, "resync_id");
  o->resync_id = lua_tostring(L, -1);
}

static int lsync_new(lua_State *L)
{
  oc_sync_opts_t o;
  oc_port_t *port = lua_isnil(L, 1) ? NULL : oc_check_port(L, 1);
  char err[OC_ERR_SIZE];
  lsync_t *u;
  int uv;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  read_opts(L, &o);
  u = lua_newuserdata(L, sizeof *u);   /* 5 */
  u->s = NULL;
  u->nslots = 0;
  u->slots = NULL;
  luaL_setmetatable(L, SYNC_MT);
  lua_newtable(L);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "port");          /* keeps the client alive */
  lua_pushvalue(L, -1);
  oc_setuservalue(L, 5);
  uv = lua_gettop(L);
  u->s = oc_sync_new(port, &o, err, sizeof err);   /* copies the strings */
  if (!u->s)
    return luaL_error(L, "sync session: %s", err);
  add_slots(L, u, 2, uv);
  /* a listing that cannot start leaves the session feeding, with the
   * failure as the owned state: deletion is then skipped with it */
  oc_sync_list_owned(u->s, err, sizeof err);
  lua_pushvalue(L, 5);
  return 1;
}

static int lsync_close(lua_State *L)
{
  lsync_t *u = luaL_checkudata(L, 1, SYNC_MT);
  oc_sync_free(u->s);
  u->s = NULL;
  free(u->slots);
  u->slots = NULL;
  u->nslots = 0;
  return 0;
}

static int push_fail(lua_State *L, const char *err)
{
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static int lsync_state(lua_State *L)
{
  lua_pushstring(L, oc_sync_phase_name(oc_sync_phase(check_open(L)->s)));
  return 1;
}

/* {==================== feed ==================== */

static int offer_entity(void *ud, jv entity, int passed, char *err,
                        size_t errlen)
{
  lsync_t *u = ud;
  (void)passed;                  /* only passed entities come here */
  return oc_sync_offer(u->s, u->feed_slot, entity, err, errlen);
}

/* The slot's mapping (arg 2) at the top of the stack. */
static oc_mapping_t *slot_mapping(lua_State *L, lsync_t *u)
{
  u->feed_slot = check_slot(L, u, 2);
  oc_getuservalue(L, 1);
  lua_rawgeti(L, -1, lua_tointeger(L, 2));
  if (!luaL_testudata(L, -1, OC_MAPPING_MT))
    luaL_argerror(L, 2, "the slot has no mapping (offer entities)");
  return oc_check_mapping(L, -1);
}

/* session:feed(i, items [, acc]) -> report | false | nil, err
 * Maps items with the mapping of slot i and offers the entities (tagged
 * i: session:tag_stats(i), failures' `tag`). items: a list of raw objects
 * (tables or JSON texts), or one JSON text (an array or NDJSON). report =
 * {items=, entities=, filtered= (inputs the selector refused),
 * errors={{index=, message=}}, error_count=, dropped={{index=, reason=}},
 * dropped_count=, items_errors={{index=, message=}} (itemsToParse gave
 * neither an array nor null: that raw item's children are unknown),
 * items_error_count=, misconfigured={[path]=expr}} (lfeed.c; at most 100
 * entries per list, the counts are complete); an entity produced before
 * in this session is not counted again. acc (a table the caller keeps for
 * these items, with budget_ms): at most that long per call; false until
 * the items are all mapped (call again with the same items and acc).
 * nil, err when an upsert could not be submitted (out of memory, closed
 * client). */
static int lsync_feed(lua_State *L)
{
  lsync_t *u = check_open(L);
  oc_feed_t one, *f = &one;
  int done;
  lua_settop(L, 4);
  if (lua_istable(L, 4)) {
    double budget;
    lua_getfield(L, 4, "budget_ms");
    budget = lua_tonumber(L, -1);
    f = oc_feed_resume(L, 4, slot_mapping(L, u), sizeof *f);
    f->deadline_ms = budget > 0 ? oc_monotonic_ms() + budget : 0;
  } else {
    memset(f, 0, sizeof *f);
    f->L = L;
    f->m = slot_mapping(L, u);
    f->mis = memset(lua_newuserdata(L, oc_mapping_field_count(f->m) + 1), 0,
                    oc_mapping_field_count(f->m) + 1);
    lua_newtable(L);
    f->errors_t = lua_gettop(L);
    lua_newtable(L);
    f->dropped_t = lua_gettop(L);
    lua_newtable(L);
    f->items_t = lua_gettop(L);
  }
  if (oc_sync_set_tag(u->s, (int)lua_tointeger(L, 2)))
    return luaL_error(L, "out of memory");
  f->split_items = 1;
  f->offer = offer_entity;
  f->offer_ud = u;
  done = oc_feed_run(L, f, 3);
  if (f->failed)
    return push_fail(L, f->err);
  if (!done) {
    lua_pushboolean(L, 0);
    return 1;
  }
  oc_feed_push_report(L, f);
  return 1;
}

/* session:offer(i, entity) -> true | nil, err (ready-made entities) */
static int lsync_offer(lua_State *L)
{
  lsync_t *u = check_open(L);
  int slot = check_slot(L, u, 2);
  char err[OC_ERR_SIZE];
  jv e = oc_to_jv(L, 3, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
  if (!jv_is_valid(e)) {
    jv_free(e);
    return luaL_argerror(L, 3, err);
  }
  if (oc_sync_set_tag(u->s, (int)lua_tointeger(L, 2))) {
    jv_free(e);
    return luaL_error(L, "out of memory");
  }
  if (oc_sync_offer(u->s, slot, e, err, sizeof err) < 0)
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* }==================== */

/* {==================== the session's Jobs ==================== */

enum { WAIT_READY, WAIT_DRAINED, WAIT_DONE };

typedef struct swait {           /* a session Job's record */
  int what;
} swait_t;

static oc_sync_t *job_session(const oc_job_t *j)
{
  return ((const lsync_t *)j->owner)->s;
}

static int swait_poll(oc_job_t *j)
{
  oc_sync_t *s = job_session(j);
  oc_sync_phase_t p = oc_sync_step(s);
  switch (((swait_t *)j->rec)->what) {
  case WAIT_READY:
    return p >= OC_SYNC_FEEDING && !oc_sync_busy(s);
  case WAIT_DRAINED:
    return oc_sync_outstanding(s) == 0;
  default:
    return p == OC_SYNC_DONE;
  }
}

static void push_report(lua_State *L, oc_sync_t *s);

static int swait_push(lua_State *L, oc_job_t *j)
{
  if (((swait_t *)j->rec)->what == WAIT_DONE)
    push_report(L, job_session(j));
  else
    lua_pushboolean(L, 1);
  return 1;
}

/* Nothing runs for the Job itself: the session's requests stop with
 * session:close(). */
static void swait_cancel(oc_job_t *j)
{
  (void)j;
}

static int swait_owner_open(const oc_job_t *j)
{
  return job_session(j) != NULL;
}

static const oc_job_class_t session_job = {
  "sync session", swait_poll, swait_push, swait_cancel, swait_owner_open,
  free
};

/* Push a started Job waiting for `what` of the session at 1. */
static int push_wait(lua_State *L, int what)
{
  oc_job_t *j = oc_job_new(L, &session_job, 1);
  swait_t *w = malloc(sizeof *w);
  if (!w)
    return luaL_error(L, "out of memory");
  w->what = what;
  j->rec = w;
  oc_job_start(j, 0);
  return 1;
}

static int lsync_ready(lua_State *L)
{
  check_open(L);
  return push_wait(L, WAIT_READY);
}

/* session:drain() -> Job | nil, err: sends every partial batch; the Job
 * is done once every request is answered. */
static int lsync_drain(lua_State *L)
{
  char err[OC_ERR_SIZE];
  if (oc_sync_flush(check_open(L)->s, err, sizeof err))
    return push_fail(L, err);
  return push_wait(L, WAIT_DRAINED);
}

/* The strings of the list at t.k, anchored by that list (left on the
 * stack), in an array anchored there too. */
static const char *const *opt_strings(lua_State *L, int t, const char *k,
                                      size_t *n)
{
  const char **v;
  size_t i;
  lua_getfield(L, t, k);
  *n = lua_istable(L, -1) ? (size_t)lua_rawlen(L, -1) : 0;
  v = lua_newuserdata(L, sizeof(char *) * (*n + 1));
  for (i = 0; i < *n; i++) {
    lua_rawgeti(L, -2, (lua_Integer)i + 1);
    v[i] = luaL_checkstring(L, -1);            /* anchored by the list */
    lua_pop(L, 1);
  }
  return v;
}

/* session:finish{threshold=, before=, errors=, blocked={...},
 *   held={blueprint...}} -> Job (its result: the report) | nil, err
 * held: blueprints whose owned entities must not be deleted (sync.h). */
static int lsync_finish(lua_State *L)
{
  lsync_t *u = check_open(L);
  oc_sync_finish_t f;
  char err[OC_ERR_SIZE];
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&f, 0, sizeof f);
  lua_getfield(L, 2, "threshold");
  f.threshold = luaL_optnumber(L, -1, 0.9);
  lua_getfield(L, 2, "before");
  f.before = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 2, "errors");
  f.errors = (size_t)luaL_optinteger(L, -1, 0);
  f.blocked = opt_strings(L, 2, "blocked", &f.nblocked);
  f.held = opt_strings(L, 2, "held", &f.nheld);
  if (oc_sync_finish(u->s, &f, err, sizeof err))
    return push_fail(L, err);
  lua_settop(L, 1);
  return push_wait(L, WAIT_DONE);
}

/* }==================== */

#define STAT(name) set_count(L, #name, st.name)

static void set_count(lua_State *L, const char *k, size_t v)
{
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int lsync_stats(lua_State *L)
{
  oc_sync_stats_t st;
  oc_sync_stats(check_open(L)->s, &st);
  lua_createtable(L, 0, 24);
  STAT(owned); STAT(produced); STAT(duplicates); STAT(created); STAT(updated);
  STAT(unchanged); STAT(failed); STAT(unresolved); STAT(always);
  STAT(retried); STAT(retry_ok); STAT(upsert_requests); STAT(entities_sent);
  STAT(candidates); STAT(confirmed); STAT(protected_targets); STAT(deleted);
  STAT(delete_failed); STAT(delete_requests); STAT(in_flight);
  STAT(unknown); STAT(held);
  return 1;
}

/* session:tag_stats(i) -> {produced=, created=, updated=, unknown=,
 * unchanged=, failed=}: what was fed or offered as resource i. */
static int lsync_tag_stats(lua_State *L)
{
  oc_sync_tag_stats_t st;
  lua_Integer i = luaL_checkinteger(L, 2);
  oc_sync_tag_stats(check_open(L)->s, i < 0 || i > 65535 ? -1 : (int)i,
                    &st);
  lua_createtable(L, 0, 6);
  STAT(produced); STAT(created); STAT(updated); STAT(unknown);
  STAT(unchanged); STAT(failed);
  return 1;
}

static int lsync_failures(lua_State *L)
{
  lsync_t *u = check_open(L);
  size_t i, n = oc_sync_failure_count(u->s);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    oc_sync_failure_t f;
    oc_sync_failure(u->s, i, &f);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, f.blueprint);
    lua_setfield(L, -2, "blueprint");
    lua_pushstring(L, f.identifier);
    lua_setfield(L, -2, "identifier");
    lua_pushinteger(L, f.status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, f.code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, f.message);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, f.retryable);
    lua_setfield(L, -2, "retryable");
    lua_pushinteger(L, f.tag);
    lua_setfield(L, -2, "tag");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* Push {blueprint=, identifier=} for a "bp\0id" key. */
static void push_key(lua_State *L, const char *k, size_t n)
{
  size_t bl = strlen(k);
  lua_createtable(L, 0, 2);
  lua_pushlstring(L, k, bl);
  lua_setfield(L, -2, "blueprint");
  lua_pushlstring(L, k + bl + 1, n - bl - 1);
  lua_setfield(L, -2, "identifier");
}

static int lsync_planned(lua_State *L)
{
  lsync_t *u = check_open(L);
  static const char *const names[] = { "create", "update" };
  int w;
  lua_createtable(L, 0, 2);
  for (w = 0; w < 2; w++) {
    int which = w ? 'u' : 'c';
    size_t i, n = oc_sync_planned_count(u->s, which);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
      size_t kl;
      const char *k = oc_sync_planned_key(u->s, which, i, &kl);
      push_key(L, k, kl);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, names[w]);
  }
  return 1;
}

/* {==================== the report ==================== */

static void push_strings(lua_State *L, const oc_sync_t *s, size_t n,
                         const char *(*get)(const oc_sync_t *, size_t))
{
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, get(s, i));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* The candidates as {{blueprint=, identifier=}...}. */
static void push_candidates(lua_State *L, const oc_sync_t *s)
{
  size_t i, n = oc_sync_candidate_count(s);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    size_t kl;
    const char *k = oc_sync_candidate_key(s, i, &kl);
    push_key(L, k, kl);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* The doomed entities ({blueprint=, identifier=, outcome=, message=});
 * only_failed: just those whose delete failed. */
static void push_doomed(lua_State *L, const oc_sync_t *s, int only_failed)
{
  size_t i, k = 0, n = oc_sync_doomed_count(s);
  lua_createtable(L, only_failed ? 0 : (int)n, 0);
  for (i = 0; i < n; i++) {
    const char *bp, *id, *msg;
    int outcome;
    oc_sync_doomed(s, i, &bp, &id, &outcome, &msg);
    if (only_failed && outcome >= 0)
      continue;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, bp);
    lua_setfield(L, -2, "blueprint");
    lua_pushstring(L, id);
    lua_setfield(L, -2, "identifier");
    lua_pushstring(L, outcome > 0 ? "deleted" : outcome < 0 ? "failed"
                                                            : "pending");
    lua_setfield(L, -2, "outcome");
    if (msg) {
      lua_pushstring(L, msg);
      lua_setfield(L, -2, "message");
    }
    lua_rawseti(L, -2, (lua_Integer)++k);
  }
}

/* {candidates=, owned=, held= (when some were), threshold=, deleted=, skipped=, reasons=, ratio=,
 *  would_delete= (plan, skipped), planned= (plan, decided)} */
static void push_deletion(lua_State *L, const oc_sync_t *s,
                          const oc_sync_report_t *r,
                          const oc_sync_stats_t *st, int plan)
{
  int planned = plan && r->phase == OC_SYNC_DONE && r->decided
                && !r->skipped && st->candidates > 0;
  lua_createtable(L, 0, 9);
  set_count(L, "candidates", st->candidates);
  set_count(L, "owned", st->owned);
  if (st->held)
    set_count(L, "held", st->held);
  lua_pushnumber(L, r->threshold);
  lua_setfield(L, -2, "threshold");
  set_count(L, "deleted", planned ? oc_sync_doomed_count(s) : st->deleted);
  lua_pushboolean(L, r->skipped);
  lua_setfield(L, -2, "skipped");
  push_strings(L, s, r->nreasons, oc_sync_reason);
  lua_setfield(L, -2, "reasons");
  if (r->ratio >= 0) {
    lua_pushnumber(L, r->ratio);
    lua_setfield(L, -2, "ratio");
  }
  if (plan && r->skipped && st->candidates > 0) {
    push_candidates(L, s);
    lua_setfield(L, -2, "would_delete");
  }
  if (planned) {
    push_doomed(L, s, 0);
    lua_setfield(L, -2, "planned");
  }
}

/* {state=, retried=, retry_ok=, retry_levels=, confirmed=,
 *  protected_targets=, errors={...}, failed_deletes={...}, deletion={...}} */
static void push_report(lua_State *L, oc_sync_t *s)
{
  oc_sync_report_t r;
  oc_sync_stats_t st;
  oc_sync_report(s, &r);
  oc_sync_stats(s, &st);
  lua_createtable(L, 0, 9);
  lua_pushstring(L, oc_sync_phase_name(r.phase));
  lua_setfield(L, -2, "state");
  set_count(L, "retried", st.retried);
  set_count(L, "retry_ok", st.retry_ok);
  set_count(L, "retry_levels", (size_t)r.retry_levels);
  set_count(L, "confirmed", st.confirmed);
  set_count(L, "protected_targets", st.protected_targets);
  push_strings(L, s, r.nerrors, oc_sync_error);
  lua_setfield(L, -2, "errors");
  push_doomed(L, s, 1);
  lua_setfield(L, -2, "failed_deletes");
  push_deletion(L, s, &r, &st, oc_sync_plan(s));
  lua_setfield(L, -2, "deletion");
}

static int lsync_report(lua_State *L)
{
  push_report(L, check_open(L)->s);
  return 1;
}

/* }==================== */


static const luaL_Reg sync_methods[] = {
  {"state", lsync_state},
  {"ready", lsync_ready},
  {"feed", lsync_feed},
  {"offer", lsync_offer},
  {"drain", lsync_drain},
  {"finish", lsync_finish},
  {"report", lsync_report},
  {"stats", lsync_stats},
  {"tag_stats", lsync_tag_stats},
  {"failures", lsync_failures},
  {"planned", lsync_planned},
  {"close", lsync_close},
  {NULL, NULL}
};

static const luaL_Reg sync_funcs[] = {
  {"sync_new", lsync_new},
  {NULL, NULL}
};

void oc_open_sync(lua_State *L)
{
  if (luaL_newmetatable(L, SYNC_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, sync_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lsync_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, lsync_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, sync_funcs, 0);
}
