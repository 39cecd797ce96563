/*
 * lsync.c - Lua binding of the sync session (sync.h) and of the diff
 * helpers (diff.h): core.sync_new, core.entity_key, core.relation_order.
 *
 * The session userdata keeps its Port client (and so the loop) alive
 * through its user value.
 */
#include "lbind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "diff.h"
#include "mapping.h"
#include "sync.h"

#define SYNC_MT "ocean.Sync"
#define MAX_REPORTED 100         /* item errors kept per feed */

typedef struct lsync {
  oc_sync_t *s;
} lsync_t;

static lsync_t *check_open(lua_State *L)
{
  lsync_t *u = luaL_checkudata(L, 1, SYNC_MT);
  if (!u->s)
    luaL_error(L, "sync session is closed");
  return u;
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

/* core.sync_new(port | nil, opts) -> session */
static int lsync_new(lua_State *L)
{
  oc_sync_opts_t o;
  oc_port_t *port = lua_isnil(L, 1) ? NULL : oc_check_port(L, 1);
  char err[OC_ERR_SIZE];
  lsync_t *u;
  memset(&o, 0, sizeof o);
  o.merge = o.create_missing = o.delete_dependents = 1;
  luaL_checktype(L, 2, LUA_TTABLE);
  opt_int(L, 2, "merge", &o.merge);
  opt_int(L, 2, "create_missing", &o.create_missing);
  opt_int(L, 2, "delete_dependents", &o.delete_dependents);
  opt_int(L, 2, "plan", &o.plan);
  opt_size(L, 2, "batch_max", &o.batch_max);
  opt_size(L, 2, "batch_max_bytes", &o.batch_max_bytes);
  opt_size(L, 2, "max_pending", &o.max_pending);
  lua_getfield(L, 2, "event_type");
  o.event_type = lua_tostring(L, -1);
  lua_getfield(L, 2, "resync_id");
  o.resync_id = lua_tostring(L, -1);
  u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_setmetatable(L, SYNC_MT);
  u->s = oc_sync_new(port, &o, err, sizeof err);   /* copies the strings */
  if (!u->s)
    return luaL_error(L, "sync session: %s", err);
  lua_pushvalue(L, 1);                             /* keep the client */
  oc_setuservalue(L, -2);
  return 1;
}

static int lsync_close(lua_State *L)
{
  lsync_t *u = luaL_checkudata(L, 1, SYNC_MT);
  oc_sync_free(u->s);
  u->s = NULL;
  return 0;
}

/* session:add_slot(mapping | signature | nil) -> slot (1-based) */
static int lsync_add_slot(lua_State *L)
{
  lsync_t *u = check_open(L);
  jv sig;
  int slot;
  char err[OC_ERR_SIZE];
  if (luaL_testudata(L, 2, OC_MAPPING_MT))
    sig = oc_mapping_signature(oc_check_mapping(L, 2));
  else if (lua_istable(L, 2))
    sig = oc_to_jv(L, 2, NULL, 8, err, sizeof err);
  else
    sig = jv_null();
  if (!jv_is_valid(sig)) {
    jv_free(sig);
    return luaL_argerror(L, 2, err);
  }
  slot = oc_sync_add_slot(u->s, sig);
  jv_free(sig);
  if (slot < 0)
    return luaL_error(L, "sync session: cannot add a comparison slot after "
                      "the owned entities were indexed (or out of memory)");
  lua_pushinteger(L, slot + 1);
  return 1;
}

static int push_fail(lua_State *L, const char *err)
{
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static int lsync_list_owned(lua_State *L)
{
  char err[OC_ERR_SIZE];
  if (oc_sync_list_owned(check_open(L)->s, err, sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int lsync_add_owned(lua_State *L)
{
  lsync_t *u = check_open(L);
  char err[OC_ERR_SIZE];
  jv e = oc_to_jv(L, 2, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
  int rc;
  if (!jv_is_valid(e)) {
    jv_free(e);
    return luaL_argerror(L, 2, err);
  }
  rc = oc_sync_add_owned(u->s, e);
  jv_free(e);
  if (rc)
    return luaL_error(L, "out of memory");
  return 0;
}

static int push_state(lua_State *L, int st, const char *err)
{
  lua_pushstring(L, st == 0 ? "pending" : st > 0 ? "ready" : "failed");
  if (st < 0) {
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int lsync_owned_state(lua_State *L)
{
  const char *err;
  int st = oc_sync_owned_state(check_open(L)->s, &err);
  return push_state(L, st, err);
}

/* {==================== feed ==================== */

typedef struct feed {
  lua_State *L;
  oc_sync_t *s;
  oc_mapping_t *m;
  int slot, errors_t, dropped_t;
  size_t index, nerrors, ndropped, entities, filtered;
  int failed;                    /* an offer failed: err */
  char err[OC_ERR_SIZE];
} feed_t;

static void add_report(feed_t *f, int t, size_t *count, const char *key,
                       const char *msg)
{
  lua_State *L = f->L;
  (*count)++;
  if (*count > MAX_REPORTED)
    return;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)f->index);
  lua_setfield(L, -2, "index");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, key);
  lua_rawseti(L, t, (lua_Integer)*count);
}

static int feed_entity(void *ud, jv entity, int passed)
{
  feed_t *f = ud;
  if (!passed) {
    f->filtered++;
    jv_free(entity);
    return 0;
  }
  f->entities++;
  if (oc_sync_offer(f->s, f->slot, entity, f->err, sizeof f->err)) {
    f->failed = 1;
    return -1;
  }
  return 0;
}

static void feed_error(void *ud, const char *msg)
{
  feed_t *f = ud;
  add_report(f, f->errors_t, &f->nerrors, "message", msg);
}

static void feed_dropped(void *ud, const char *reason)
{
  feed_t *f = ud;
  add_report(f, f->dropped_t, &f->ndropped, "reason", reason);
}

/* Map and offer one raw item at stack index idx (table or JSON text). */
static void feed_one(feed_t *f, const oc_mapping_sink_t *sink, int idx)
{
  lua_State *L = f->L;
  char err[OC_ERR_SIZE];
  jv raw;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    raw = oc_mapping_parse_item(f->m, s, n, err, sizeof err);
  } else {
    raw = oc_mapping_lua_raw(L, idx, f->m, err, sizeof err);
  }
  if (!jv_is_valid(raw)) {
    jv_free(raw);
    feed_error(f, err);
    return;
  }
  oc_mapping_run(f->m, raw, 0, sink);
}

typedef struct each_ctx {
  feed_t *f;
  const oc_mapping_sink_t *sink;
} each_ctx_t;

static int feed_each_json(jv value, size_t index, void *ud)
{
  each_ctx_t *c = ud;
  c->f->index = index + 1;
  oc_mapping_run(c->f->m, value, 0, c->sink);
  return c->f->failed ? -1 : 0;
}

/* session:feed(mapping, slot, items) -> report
 * items: a list of raw objects (tables or JSON texts), or one JSON text
 * (an array or NDJSON). report = {items=, entities=, filtered=,
 * errors={{index=, message=}}, error_count=, dropped={{index=, reason=}},
 * dropped_count=, misconfigured={[path]=expr}}. Raises when an upsert
 * could not be submitted (out of memory, closed client). */
static int lsync_feed(lua_State *L)
{
  lsync_t *u = check_open(L);
  feed_t f;
  oc_mapping_sink_t sink;
  size_t nf, i;
  unsigned char *mis;
  memset(&f, 0, sizeof f);
  f.L = L;
  f.s = u->s;
  f.m = oc_check_mapping(L, 2);
  f.slot = (int)luaL_checkinteger(L, 3) - 1;
  lua_settop(L, 4);
  nf = oc_mapping_field_count(f.m);
  mis = lua_newuserdata(L, nf + 1);          /* 5: freed by the GC */
  memset(mis, 0, nf + 1);
  lua_newtable(L);                           /* 6: errors */
  f.errors_t = 6;
  lua_newtable(L);                           /* 7: dropped */
  f.dropped_t = 7;
  memset(&sink, 0, sizeof sink);
  sink.entity = feed_entity;
  sink.error = feed_error;
  sink.dropped = feed_dropped;
  sink.misconfigured = mis;
  sink.ud = &f;
  if (lua_type(L, 4) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, 4, &n);
    char err[OC_ERR_SIZE];
    each_ctx_t c = { &f, &sink };
    if (oc_mapping_each_json(f.m, s, n, feed_each_json, &c, err, sizeof err)
        && !f.failed) {
      f.index = 0;
      feed_error(&f, err);
    }
  } else {
    size_t n;
    luaL_checktype(L, 4, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 4);
    for (i = 1; i <= n && !f.failed; i++) {
      f.index = i;
      lua_rawgeti(L, 4, (lua_Integer)i);
      feed_one(&f, &sink, lua_gettop(L));
      lua_pop(L, 1);
    }
    f.index = n;
  }
  if (f.failed)
    return luaL_error(L, "sync: %s", f.err);
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, (lua_Integer)f.index);
  lua_setfield(L, -2, "items");
  lua_pushinteger(L, (lua_Integer)f.entities);
  lua_setfield(L, -2, "entities");
  lua_pushinteger(L, (lua_Integer)f.filtered);
  lua_setfield(L, -2, "filtered");
  lua_pushvalue(L, 6);
  lua_setfield(L, -2, "errors");
  lua_pushinteger(L, (lua_Integer)f.nerrors);
  lua_setfield(L, -2, "error_count");
  lua_pushvalue(L, 7);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, (lua_Integer)f.ndropped);
  lua_setfield(L, -2, "dropped_count");
  lua_newtable(L);
  for (i = 0; i < nf; i++)
    if (mis[i]) {
      lua_pushstring(L, oc_mapping_field_expr(f.m, i));
      lua_setfield(L, -2, oc_mapping_field_path(f.m, i));
    }
  lua_setfield(L, -2, "misconfigured");
  return 1;
}

/* session:offer(slot, entity) -> true | nil, err (ready-made entities) */
static int lsync_offer(lua_State *L)
{
  lsync_t *u = check_open(L);
  int slot = (int)luaL_checkinteger(L, 2) - 1;
  char err[OC_ERR_SIZE];
  jv e = oc_to_jv(L, 3, NULL, OC_JSON_MAX_DEPTH, err, sizeof err);
  if (!jv_is_valid(e)) {
    jv_free(e);
    return luaL_argerror(L, 3, err);
  }
  if (oc_sync_offer(u->s, slot, e, err, sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* }==================== */

static int lsync_flush(lua_State *L)
{
  char err[OC_ERR_SIZE];
  if (oc_sync_flush(check_open(L)->s, err, sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int lsync_busy(lua_State *L)
{
  lua_pushboolean(L, oc_sync_busy(check_open(L)->s));
  return 1;
}

static int lsync_outstanding(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)oc_sync_outstanding(check_open(L)->s));
  return 1;
}

#define STAT(name) \
  (lua_pushinteger(L, (lua_Integer)st.name), lua_setfield(L, -2, #name))

static int lsync_stats(lua_State *L)
{
  oc_sync_stats_t st;
  oc_sync_stats(check_open(L)->s, &st);
  lua_createtable(L, 0, 24);
  STAT(owned); STAT(produced); STAT(created); STAT(updated);
  STAT(unchanged); STAT(failed); STAT(unresolved); STAT(always);
  STAT(retried); STAT(retry_ok); STAT(upsert_requests); STAT(entities_sent);
  STAT(candidates); STAT(confirmed); STAT(protected_targets); STAT(deleted);
  STAT(delete_failed); STAT(delete_requests); STAT(in_flight);
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

static int lsync_retry_prepare(lua_State *L)
{
  char err[OC_ERR_SIZE];
  int n = oc_sync_retry_prepare(check_open(L)->s, err, sizeof err);
  if (n < 0)
    return push_fail(L, err);
  lua_pushinteger(L, n);
  return 1;
}

static int lsync_retry_level(lua_State *L)
{
  lsync_t *u = check_open(L);
  char err[OC_ERR_SIZE];
  if (oc_sync_retry_level(u->s, (int)luaL_checkinteger(L, 2) - 1, err,
                          sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* session:candidates([limit]) -> count, {{blueprint=, identifier=}...} */
static int lsync_candidates(lua_State *L)
{
  lsync_t *u = check_open(L);
  size_t n = oc_sync_candidates(u->s), i;
  size_t limit = (size_t)luaL_optinteger(L, 2, (lua_Integer)n);
  lua_pushinteger(L, (lua_Integer)n);
  lua_createtable(L, (int)(n < limit ? n : limit), 0);
  for (i = 0; i < n && i < limit; i++) {
    size_t kl;
    const char *k = oc_sync_candidate_key(u->s, i, &kl);
    push_key(L, k, kl);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

static int lsync_confirm(lua_State *L)
{
  lsync_t *u = check_open(L);
  char err[OC_ERR_SIZE];
  if (oc_sync_confirm(u->s, luaL_optstring(L, 2, NULL), err, sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int lsync_confirm_state(lua_State *L)
{
  const char *err;
  int st = oc_sync_confirm_state(check_open(L)->s, &err);
  return push_state(L, st, err);
}

static int lsync_delete_prepare(lua_State *L)
{
  char err[OC_ERR_SIZE];
  int n = oc_sync_delete_prepare(check_open(L)->s, err, sizeof err);
  if (n < 0)
    return push_fail(L, err);
  lua_pushinteger(L, n);
  return 1;
}

static int lsync_delete_level(lua_State *L)
{
  lsync_t *u = check_open(L);
  char err[OC_ERR_SIZE];
  if (oc_sync_delete_level(u->s, (int)luaL_checkinteger(L, 2) - 1, err,
                           sizeof err))
    return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* session:doomed() -> {{blueprint=, identifier=, outcome=, message=}...} */
static int lsync_doomed(lua_State *L)
{
  lsync_t *u = check_open(L);
  size_t i, n = oc_sync_doomed_count(u->s);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    const char *bp, *id, *msg;
    int outcome;
    oc_sync_doomed(u->s, i, &bp, &id, &outcome, &msg);
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
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* {==================== diff helpers ==================== */

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

/* core.now() -> wall-clock seconds (fractional), for timestamps */
static int lnow(lua_State *L)
{
  struct timeval tv;
  gettimeofday(&tv, NULL);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}

/* }==================== */

static const luaL_Reg sync_methods[] = {
  {"add_slot", lsync_add_slot},
  {"list_owned", lsync_list_owned},
  {"add_owned", lsync_add_owned},
  {"owned_state", lsync_owned_state},
  {"feed", lsync_feed},
  {"offer", lsync_offer},
  {"flush", lsync_flush},
  {"busy", lsync_busy},
  {"outstanding", lsync_outstanding},
  {"stats", lsync_stats},
  {"failures", lsync_failures},
  {"planned", lsync_planned},
  {"retry_prepare", lsync_retry_prepare},
  {"retry_level", lsync_retry_level},
  {"candidates", lsync_candidates},
  {"confirm", lsync_confirm},
  {"confirm_state", lsync_confirm_state},
  {"delete_prepare", lsync_delete_prepare},
  {"delete_level", lsync_delete_level},
  {"doomed", lsync_doomed},
  {"close", lsync_close},
  {NULL, NULL}
};

static const luaL_Reg sync_funcs[] = {
  {"sync_new", lsync_new},
  {"entity_key", lentity_key},
  {"relation_order", lrelation_order},
  {"content_hash", lcontent_hash},
  {"now", lnow},
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
