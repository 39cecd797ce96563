/*
 * lfeed.c - the one C loop that maps raw items from Lua (a list of tables
 * or JSON texts, or one JSON text: an array or NDJSON) with a compiled
 * resource and hands each entity to a session: the resync session's feed
 * (lsync.c) and the live session's map (llive.c). It can stop when a time
 * budget is spent and go on later from its cursor (a JSON text is read
 * element by element), so that a caller inside nginx can yield between
 * two slices. It keeps the report (items, entities, filtered, errors,
 * dropped, items errors, misconfigured fields) in the Lua tables the
 * caller gives.
 */
#include "lbind.h"

#include <stdio.h>
#include <string.h>

#include "mapping/mapping.h"

#define MAX_REPORTED 100         /* item errors kept per report */
#define CHECK_EVERY 8            /* items between two clock reads */

static void add_report(oc_feed_t *f, int t, size_t *count, const char *key,
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

static int on_entity(void *ud, jv entity, int passed)
{
  oc_feed_t *f = ud;
  int rc;
  if (!passed) {
    f->filtered++;
    if (!f->want_failed) {
      jv_free(entity);
      return 0;
    }
  }
  rc = f->offer(f->offer_ud, entity, passed, f->err, sizeof f->err);
  if (rc < 0) {
    f->failed = 1;
    return -1;
  }
  if (passed && rc == 0)         /* 1: folded into an earlier one */
    f->entities++;
  return 0;
}

static void on_error(void *ud, const char *msg)
{
  oc_feed_t *f = ud;
  add_report(f, f->errors_t, &f->nerrors, "message", msg);
}

static void on_dropped(void *ud, const char *reason)
{
  oc_feed_t *f = ud;
  add_report(f, f->dropped_t, &f->ndropped, "reason", reason);
}

static void on_filtered(void *ud)
{
  ((oc_feed_t *)ud)->filtered++;
}

static void on_items_error(void *ud, const char *msg)
{
  oc_feed_t *f = ud;
  if (f->split_items)
    add_report(f, f->items_t, &f->nitems, "message", msg);
  else
    on_error(f, msg);
}

static void map_raw(oc_feed_t *f, jv raw)
{
  oc_mapping_sink_t sink;
  memset(&sink, 0, sizeof sink);
  sink.entity = on_entity;
  sink.error = on_error;
  sink.dropped = on_dropped;
  sink.filtered = on_filtered;
  sink.items_error = on_items_error;
  sink.misconfigured = f->mis;
  sink.ud = f;
  oc_mapping_run(f->m, raw, f->parse_all, &sink);
}

/* Map the raw item at stack index idx (a table or one JSON text). */
static void map_lua_item(oc_feed_t *f, int idx)
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
    on_error(f, err);
    return;
  }
  map_raw(f, raw);
}

static int spent(oc_feed_t *f, size_t *count)
{
  return f->deadline_ms > 0 && ++*count % CHECK_EVERY == 0
         && oc_monotonic_ms() >= f->deadline_ms;
}

/* A list: items pos+1.. */
static int feed_list(lua_State *L, oc_feed_t *f, int idx)
{
  size_t n = (size_t)lua_rawlen(L, idx), count = 0;
  while (f->cur.off < n && !f->failed) {
    if (spent(f, &count))
      return 0;
    f->index = ++f->cur.off;
    lua_rawgeti(L, idx, (lua_Integer)f->index);
    map_lua_item(f, lua_gettop(L));
    lua_pop(L, 1);
  }
  f->index = n;
  return 1;
}

/* One JSON text: an array's elements or NDJSON values, one at a time.
 * An element that does not parse ends the stream (where the next one
 * starts cannot be known): its error is the stream's, at index 0, as
 * oc_json_parse_stream's. */
static int feed_text(lua_State *L, oc_feed_t *f, int idx)
{
  size_t n, used, count = 0;
  const char *text = lua_tolstring(L, idx, &n);
  char err[OC_ERR_SIZE];
  oc_json_parser_t p;
  int rc, done = 1;
  oc_json_parser_init(&p, NULL, NULL, 0);
  while (!f->failed) {
    jv raw;
    if (spent(f, &count)) {
      done = 0;
      break;
    }
    if ((rc = oc_json_cursor_next(&f->cur, &p, text, n)) == 0)
      break;
    if (rc < 0) {
      f->index = 0;
      on_error(f, p.err);
      break;
    }
    raw = oc_mapping_parse_at(f->m, text, n, f->cur.off, &used, err,
                              sizeof err);
    if (!jv_is_valid(raw)) {
      jv_free(raw);
      f->index = 0;
      f->cur.state = OC_CURSOR_DONE;
      on_error(f, err);
      break;
    }
    f->index++;
    f->cur.off += used;
    map_raw(f, raw);
  }
  oc_json_parser_free(&p);
  return done;
}

void *oc_feed_resume(lua_State *L, int acc, struct oc_mapping *m,
                     size_t size)
{
  oc_feed_t *f;
  size_t nf = oc_mapping_field_count(m);
  acc = lua_absindex(L, acc);
  lua_getfield(L, acc, "state");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    memset(lua_newuserdata(L, size), 0, size);
    lua_pushvalue(L, -1);
    lua_setfield(L, acc, "state");
    memset(lua_newuserdata(L, nf + 1), 0, nf + 1);
    lua_setfield(L, acc, "mis");
    lua_newtable(L);
    lua_setfield(L, acc, "errors");
    lua_newtable(L);
    lua_setfield(L, acc, "dropped");
    lua_newtable(L);
    lua_setfield(L, acc, "items_errors");
  }
  f = lua_touserdata(L, -1);
  if (!f || lua_rawlen(L, -1) != size)
    luaL_error(L, "BUG: acc.state is not a feed's");
  lua_getfield(L, acc, "mis");
  f->mis = lua_touserdata(L, -1);
  lua_getfield(L, acc, "errors");
  f->errors_t = lua_gettop(L);
  lua_getfield(L, acc, "dropped");
  f->dropped_t = lua_gettop(L);
  lua_getfield(L, acc, "items_errors");
  f->items_t = lua_gettop(L);
  f->L = L;
  f->m = m;
  return f;
}

int oc_feed_run(lua_State *L, oc_feed_t *f, int idx)
{
  if (lua_type(L, idx) == LUA_TSTRING)
    return feed_text(L, f, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  return feed_list(L, f, idx);
}

/* Push the report: {items=, entities=, filtered=, errors=, error_count=,
 * dropped=, dropped_count=, items_errors=, items_error_count=,
 * misconfigured={[path]=expr}}. */
void oc_feed_push_report(lua_State *L, const oc_feed_t *f)
{
  size_t i, nf = oc_mapping_field_count(f->m);
  lua_createtable(L, 0, 11);
  lua_pushinteger(L, (lua_Integer)f->index);
  lua_setfield(L, -2, "items");
  lua_pushinteger(L, (lua_Integer)f->entities);
  lua_setfield(L, -2, "entities");
  lua_pushinteger(L, (lua_Integer)f->filtered);
  lua_setfield(L, -2, "filtered");
  lua_pushvalue(L, f->errors_t);
  lua_setfield(L, -2, "errors");
  lua_pushinteger(L, (lua_Integer)f->nerrors);
  lua_setfield(L, -2, "error_count");
  lua_pushvalue(L, f->dropped_t);
  lua_setfield(L, -2, "dropped");
  lua_pushinteger(L, (lua_Integer)f->ndropped);
  lua_setfield(L, -2, "dropped_count");
  lua_pushvalue(L, f->items_t);
  lua_setfield(L, -2, "items_errors");
  lua_pushinteger(L, (lua_Integer)f->nitems);
  lua_setfield(L, -2, "items_error_count");
  lua_newtable(L);
  for (i = 0; i < nf; i++)
    if (f->mis[i]) {
      lua_pushstring(L, oc_mapping_field_expr(f->m, i));
      lua_setfield(L, -2, oc_mapping_field_path(f->m, i));
    }
  lua_setfield(L, -2, "misconfigured");
}
