/*
 * ljournal.c - the "ocean.Journal" userdata: Lua's face of journal.c.
 *
 *   core.journal_open(path [, {max_attempts=, lease=, check=, existing=,
 *                              read_only=}])
 *     -> journal | nil, err, code
 *     (max_attempts: claims before the dead letters, default 5; lease:
 *     seconds a claim lasts, default 300; check = false: skip reading
 *     every page at open; existing = true: open only a journal that is
 *     there, creating no file or folder, refusing an empty file or another
 *     database ("not_journal"); read_only = true: existing, and nothing
 *     is written (claims are not released, the writing calls fail);
 *     shared = true: several processes open it at once (nginx's
 *     workers; journal.h), a write waiting for another's up to busy_ms
 *     (default 2000), no claim released at open;
 *     code: "busy", "corrupt", "not_journal", "access" or "other")
 *   j:append{path=, headers=, body=, received_at=} -> id | nil, err
 *     (headers: {name = string or number}; body: a string; received_at:
 *     seconds since the epoch, default now; durable when it returns)
 *   j:append_batch{record, ...} -> {id, ...} | nil, err  (one transaction,
 *     one sync: all are on disk, or none; group commit)
 *   j:claim(n) -> {record, ...} | nil, err      oldest first, attempts
 *                                              counted, leased
 *   j:pending([limit]) -> {record, ...} | nil, err    not done, not dead
 *   j:dead([limit]) -> {record, ...} | nil, err       the dead letters
 *   j:done(id) -> true | false (no such event) | nil, err
 *   j:done{id, ...} -> count | nil, err              one transaction
 *   j:fail(id, message [, dead]) -> "pending" | "dead" | false | nil, err
 *     dead true: a dead letter at once, whatever attempts remain (a
 *     failure retrying cannot fix)
 *   j:requeue(id) -> true | false | nil, err          dead -> pending
 *   j:release(id) -> true | false | nil, err          a claim given back
 *   j:release{id, ...} -> count | nil, err            unapplied (graceful
 *     stop): pending again, its attempt taken back
 *   j:release_all() -> count | nil, err   shared: every claim released
 *     (the claimer before this one is gone), attempts still counted
 *   j:mark{key, seq, ...} -> true | nil, err   the latest writers kept
 *     (journal.h: key blueprint \0 identifier, seq µs; a seq only grows)
 *   j:marks(since) -> {key, seq, ...} | nil, err   those with seq >= since
 *   j:prune_marks(before) -> count | nil, err      forget those older
 *   j:version() -> integer | nil, err   changes when another handle
 *     commits (SQLite's data_version)
 *   j:abandoned() -> n   events this handle's claims dead-lettered as
 *     abandoned (claimed max_attempts times, never done or failed)
 *   j:stats() -> {pending=, claimed=, dead=, oldest_age= (s, 0 if none),
 *                 appended=, done=, failed=, dead_lettered=} | nil, err
 *     (the last four count this handle's calls since it was opened)
 *   j:path()   j:close()   (close is idempotent; also __gc and __close)
 *   core.journal_lock(path) -> fd | false | nil, err   an exclusive
 *     flock(2) on path (created 0600): false when another open file
 *     holds it (another process, or another lock in this one); held
 *     until journal_unlock(fd) or the process ends (SIGKILL included)
 *   core.journal_unlock(fd)
 *   core.journal_files(dir) -> {name, ...} | nil, err   the *.sqlite3
 *     entries of a folder (none when it does not exist), unsorted
 *
 * A record: {id=, path=, headers={name=value}, body=, received_at=,
 * attempts=, claimed=, last_error=}. Misuse (wrong types) raises;
 * journal failures (disk full, I/O, corrupt file) return nil, err.
 */
#include "lbind.h"
#include "live/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_MT "ocean.Journal"

typedef struct ljournal {
  oc_journal_t *j;               /* NULL once closed */
  lua_Integer appended, done, failed, dead_lettered;
} ljournal_t;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ljournal_t *to_ljournal(lua_State *L)
{
  return (ljournal_t *)luaL_checkudata(L, 1, JOURNAL_MT);
}

static oc_journal_t *check_open(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  if (!u->j) luaL_error(L, "attempt to use a closed journal");
  return u->j;
}

static int fail_with(lua_State *L, const char *err)
{
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* {==================== open / close ==================== */

static const char *code_name(int code)
{
  switch (code) {
  case OC_JOURNAL_EBUSY: return "busy";
  case OC_JOURNAL_ECORRUPT: return "corrupt";
  case OC_JOURNAL_ENOTJOURNAL: return "not_journal";
  case OC_JOURNAL_EACCESS: return "access";
  default: return "other";
  }
}

static void read_open_opts(lua_State *L, int idx, oc_journal_opts_t *o)
{
  memset(o, 0, sizeof *o);
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "max_attempts");
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n < 1 || n > 1000000 || n != (lua_Integer)n)
      luaL_error(L, "journal_open: 'max_attempts' must be an integer in 1..1000000");
    o->max_attempts = (unsigned)n;
  }
  lua_getfield(L, idx, "lease");
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || !(n > 0) || n > 1e9)
      luaL_error(L, "journal_open: 'lease' must be a number of seconds above 0");
    o->lease_s = n;
  }
  lua_getfield(L, idx, "check");
  o->skip_check = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_getfield(L, idx, "existing");
  o->existing = lua_toboolean(L, -1);
  lua_getfield(L, idx, "read_only");
  o->read_only = lua_toboolean(L, -1);
  lua_getfield(L, idx, "shared");
  o->shared = lua_toboolean(L, -1);
  lua_getfield(L, idx, "busy_ms");
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n < 1 || n > 600000 || n != (lua_Integer)n)
      luaL_error(L, "journal_open: 'busy_ms' must be an integer in 1..600000");
    o->busy_ms = (unsigned)n;
  }
  lua_pop(L, 7);
}

static int l_journal_open(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  oc_journal_opts_t o;
  ljournal_t *u;
  char err[1024];
  int code = 0;
  if (path[0] == '\0') return luaL_error(L, "journal_open: the path is empty");
  read_open_opts(L, 2, &o);
  u = (ljournal_t *)lua_newuserdata(L, sizeof *u);
  memset(u, 0, sizeof *u);       /* closed until the journal exists */
  luaL_setmetatable(L, JOURNAL_MT);
  u->j = oc_journal_open(path, &o, &code, err, sizeof err);
  if (!u->j) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, code_name(code));
    return 3;
  }
  return 1;
}

static int l_close(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  oc_journal_close(u->j);
  u->j = NULL;
  return 0;
}

static int l_path(lua_State *L)
{
  lua_pushstring(L, oc_journal_path(check_open(L)));
  return 1;
}

static int l_tostring(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  if (u->j)
    lua_pushfstring(L, "ocean.Journal (%s)", oc_journal_path(u->j));
  else
    lua_pushliteral(L, "ocean.Journal (closed)");
  return 1;
}

/* }==================== */

/* {==================== records ==================== */

/* A header name (a string) or value (a string or a number, converted:
 * pass a copy) at idx, without NUL. */
static const char *header_part(lua_State *L, int idx, int is_name,
                               size_t *len)
{
  const char *s;
  int t = lua_type(L, idx);
  if (t != LUA_TSTRING && (is_name || t != LUA_TNUMBER))
    luaL_error(L, is_name ? "append: header names must be strings"
                          : "append: header values must be strings or numbers");
  s = lua_tolstring(L, idx, len);
  if (memchr(s, '\0', *len))
    luaL_error(L, "append: a header %s contains a NUL byte",
               is_name ? "name" : "value");
  return s;
}

/* The headers table at idx as name\0value\0 pairs, in a userdata left on
 * the stack (collected with it). */
static const char *encode_headers(lua_State *L, int idx, size_t *len)
{
  size_t total = 0, kl, vl;
  char *buf, *p;
  *len = 0;
  if (lua_isnil(L, idx)) return "";
  if (!lua_istable(L, idx)) luaL_error(L, "append: 'headers' must be a table");
  idx = lua_absindex(L, idx);
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    header_part(L, -2, 1, &kl);
    lua_pushvalue(L, -1);          /* tolstring may convert: use a copy */
    header_part(L, -1, 0, &vl);
    lua_pop(L, 1);
    total += kl + vl + 2;
  }
  buf = p = (char *)lua_newuserdata(L, total ? total : 1);
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    const char *k, *v;
    lua_pushvalue(L, -1);
    v = header_part(L, -1, 0, &vl);
    k = header_part(L, -3, 1, &kl);
    memcpy(p, k, kl + 1);
    memcpy(p + kl + 1, v, vl + 1);
    p += kl + vl + 2;
    lua_pop(L, 1);
  }
  *len = total;
  return buf;
}

static void push_headers(lua_State *L, const char *h, size_t n)
{
  const char *end = h + n;
  lua_newtable(L);
  while (h < end) {
    const char *v = memchr(h, '\0', (size_t)(end - h));
    const char *e = v ? memchr(v + 1, '\0', (size_t)(end - v - 1)) : NULL;
    if (!e) break;                 /* a torn pair: ignore the tail */
    lua_pushlstring(L, h, (size_t)(v - h));
    lua_pushlstring(L, v + 1, (size_t)(e - v - 1));
    lua_settable(L, -3);
    h = e + 1;
  }
}

static void set_str(lua_State *L, const char *name, const char *s, size_t n)
{
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, name);
}

/* Append the record to the list at the top of the stack. */
static int push_record(void *ud, const oc_journal_record_t *r)
{
  lua_State *L = (lua_State *)ud;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, (lua_Integer)r->id);
  lua_setfield(L, -2, "id");
  set_str(L, "path", r->path, r->path_len);
  push_headers(L, r->headers, r->headers_len);
  lua_setfield(L, -2, "headers");
  set_str(L, "body", r->body, r->body_len);
  lua_pushnumber(L, r->received_at);
  lua_setfield(L, -2, "received_at");
  lua_pushinteger(L, (lua_Integer)r->attempts);
  lua_setfield(L, -2, "attempts");
  lua_pushboolean(L, r->claimed);
  lua_setfield(L, -2, "claimed");
  if (r->last_error) {
    lua_pushstring(L, r->last_error);
    lua_setfield(L, -2, "last_error");
  }
  lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
  return 0;
}

/* }==================== */

/* {==================== methods ==================== */

static const char *opt_field_string(lua_State *L, int idx, const char *name,
                                    size_t *len, int required)
{
  lua_getfield(L, idx, name);
  if (lua_isnil(L, -1) && !required) {
    *len = 0;
    return "";
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "append: '%s' must be a string", name);
  return lua_tolstring(L, -1, len);
}

/* The record table at idx into *r; its strings and encoded headers stay
 * on the stack (4 slots) until the append is done. */
static void read_record(lua_State *L, int idx, oc_journal_record_t *r)
{
  luaL_checkstack(L, 8, "too many records");
  memset(r, 0, sizeof *r);
  r->path = opt_field_string(L, idx, "path", &r->path_len, 1);
  r->body = opt_field_string(L, idx, "body", &r->body_len, 0);
  lua_getfield(L, idx, "received_at");
  if (lua_isnil(L, -1))
    r->received_at = now_s();
  else if (lua_type(L, -1) == LUA_TNUMBER)
    r->received_at = lua_tonumber(L, -1);
  else
    luaL_error(L, "append: 'received_at' must be a number (seconds)");
  lua_pop(L, 1);
  lua_getfield(L, idx, "headers");
  r->headers = encode_headers(L, -1, &r->headers_len);
}

static int l_append(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  oc_journal_record_t r;
  long long id;
  char err[1024];
  check_open(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  read_record(L, 2, &r);
  if (oc_journal_append(u->j, &r, &id, err, sizeof err) != 0)
    return fail_with(L, err);
  u->appended++;
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int l_append_batch(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  oc_journal_record_t *r;
  long long *ids;
  size_t n, i;
  char err[1024];
  check_open(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  n = (size_t)lua_rawlen(L, 2);
  r = (oc_journal_record_t *)lua_newuserdata(L, (n ? n : 1) * sizeof *r);
  ids = (long long *)lua_newuserdata(L, (n ? n : 1) * sizeof *ids);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (int)i + 1);
    if (!lua_istable(L, -1))
      return luaL_error(L, "append_batch: record %d is not a table", (int)i + 1);
    read_record(L, lua_gettop(L), &r[i]);
  }
  if (oc_journal_append_n(u->j, r, n, ids, err, sizeof err) != 0)
    return fail_with(L, err);
  u->appended += (lua_Integer)n;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)ids[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

static unsigned check_count(lua_State *L, int idx, unsigned def)
{
  lua_Number n;
  if (lua_isnoneornil(L, idx)) return def;
  n = luaL_checknumber(L, idx);
  luaL_argcheck(L, n >= 0 && n <= 1e6 && n == (lua_Integer)n, idx,
                "a count in 0..1000000 expected");
  return (unsigned)n;
}

static int l_claim(lua_State *L)
{
  oc_journal_t *j = check_open(L);
  unsigned n = check_count(L, 2, 1);
  char err[1024];
  lua_settop(L, 2);
  lua_newtable(L);
  if (oc_journal_claim(j, n, now_s(), push_record, L, err, sizeof err) < 0)
    return fail_with(L, err);
  return 1;
}

static int list(lua_State *L, int dead)
{
  oc_journal_t *j = check_open(L);
  unsigned limit = check_count(L, 2, 0);
  char err[1024];
  lua_settop(L, 2);
  lua_newtable(L);
  if (oc_journal_list(j, dead, limit, now_s(), push_record, L, err,
                      sizeof err) < 0)
    return fail_with(L, err);
  return 1;
}

static int l_pending(lua_State *L) { return list(L, 0); }
static int l_dead(lua_State *L) { return list(L, 1); }

static long long check_id(lua_State *L, int idx)
{
  lua_Number n = luaL_checknumber(L, idx);
  luaL_argcheck(L, n >= 1 && n <= 9007199254740992.0
                   && n == (lua_Number)(long long)n, idx,
                "event id expected");
  return (long long)n;
}

typedef int (*ids_fn)(oc_journal_t *, const long long *, size_t, char *,
                      size_t);

/* j:<op>(id) -> bool, or j:<op>{id, ...} -> count (one transaction);
 * nil, err. *found: how many the call changed. */
static int ids_call(lua_State *L, ids_fn fn, int *found)
{
  ljournal_t *u = to_ljournal(L);
  char err[1024];
  long long one, *ids = &one;
  size_t n = 1;
  check_open(L);
  if (lua_istable(L, 2)) {
    size_t i;
    n = (size_t)lua_rawlen(L, 2);
    ids = (long long *)lua_newuserdata(L, (n ? n : 1) * sizeof *ids);
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, 2, (int)i + 1);
      ids[i] = check_id(L, -1);
      lua_pop(L, 1);
    }
  } else {
    one = check_id(L, 2);
  }
  *found = fn(u->j, ids, n, err, sizeof err);
  if (*found < 0) return fail_with(L, err);
  if (lua_istable(L, 2))
    lua_pushinteger(L, *found);
  else
    lua_pushboolean(L, *found);
  return 1;
}

static int l_done(lua_State *L)
{
  int found = 0, r = ids_call(L, oc_journal_done, &found);
  if (found > 0) to_ljournal(L)->done += found;
  return r;
}

static int l_abandoned(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  check_open(L);
  lua_pushinteger(L, (lua_Integer)oc_journal_abandoned(u->j));
  return 1;
}

static int l_release(lua_State *L)
{
  int found = 0;
  return ids_call(L, oc_journal_release, &found);
}

static int l_fail(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  long long id;
  const char *msg;
  char err[1024];
  int rc;
  check_open(L);
  id = check_id(L, 2);
  msg = luaL_checkstring(L, 3);
  rc = oc_journal_fail(u->j, id, msg, lua_toboolean(L, 4), err, sizeof err);
  if (rc < 0) return fail_with(L, err);
  if (rc == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  u->failed++;
  if (rc == 2) u->dead_lettered++;
  lua_pushstring(L, rc == 2 ? "dead" : "pending");
  return 1;
}

static int l_requeue(lua_State *L)
{
  oc_journal_t *j = check_open(L);
  char err[1024];
  int rc = oc_journal_requeue(j, check_id(L, 2), err, sizeof err);
  if (rc < 0) return fail_with(L, err);
  lua_pushboolean(L, rc);
  return 1;
}

static int l_release_all(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  char err[1024];
  int n;
  check_open(L);
  if ((n = oc_journal_release_all(u->j, err, sizeof err)) < 0)
    return fail_with(L, err);
  lua_pushinteger(L, n);
  return 1;
}

static int l_version(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  char err[1024];
  long long v;
  check_open(L);
  err[0] = '\0';
  v = oc_journal_data_version(u->j, err, sizeof err);
  if (v == 0 && err[0]) return fail_with(L, err);
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

/* j:mark{key, seq, ...} -> true | nil, err: the latest writers kept
 * (journal.h, oc_journal_mark). */
static int l_mark(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  oc_journal_mark_t *m;
  size_t i, n;
  char err[1024];
  int rc;
  check_open(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (size_t)lua_rawlen(L, 2) / 2;
  if (n == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* a userdata: freed by the collector even if a check below raises */
  m = (oc_journal_mark_t *)lua_newuserdata(L, sizeof *m * n);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (int)(2 * i + 1));
    lua_rawgeti(L, 2, (int)(2 * i + 2));
    m[i].key = lua_tolstring(L, -2, &m[i].klen);
    if (!m[i].key || !lua_isnumber(L, -1))
      return luaL_error(L, "mark: expected {key, seq, ...}, item %d is not",
                        (int)(2 * i + 1));
    m[i].seq = (long long)lua_tonumber(L, -1);
    lua_pop(L, 2);                /* the key stays in the table: still valid */
  }
  rc = oc_journal_mark(u->j, m, n, err, sizeof err);
  if (rc != 0) return fail_with(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct marks_acc {
  lua_State *L;
  int n;
} marks_acc_t;

static void push_mark(void *ud, const char *key, size_t klen, long long seq)
{
  marks_acc_t *a = ud;
  lua_pushlstring(a->L, key, klen);
  lua_rawseti(a->L, -2, ++a->n);
  lua_pushnumber(a->L, (lua_Number)seq);
  lua_rawseti(a->L, -2, ++a->n);
}

/* j:marks(since) -> {key, seq, ...} | nil, err: the kept writers whose
 * seq >= since (µs). */
static int l_marks(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  long long since = (long long)luaL_checknumber(L, 2);
  marks_acc_t a;
  char err[1024];
  check_open(L);
  a.L = L;
  a.n = 0;
  lua_newtable(L);
  if (oc_journal_marks(u->j, since, push_mark, &a, err, sizeof err) < 0)
    return fail_with(L, err);
  return 1;
}

/* j:prune_marks(before) -> count | nil, err */
static int l_prune_marks(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  long long before = (long long)luaL_checknumber(L, 2);
  char err[1024];
  int n;
  check_open(L);
  if ((n = oc_journal_prune_marks(u->j, before, err, sizeof err)) < 0)
    return fail_with(L, err);
  lua_pushinteger(L, n);
  return 1;
}

static void set_int(lua_State *L, const char *name, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, name);
}

static int l_stats(lua_State *L)
{
  ljournal_t *u = to_ljournal(L);
  oc_journal_stats_t st;
  char err[1024];
  double now = now_s();
  check_open(L);
  if (oc_journal_stats(u->j, now, &st, err, sizeof err) != 0)
    return fail_with(L, err);
  lua_createtable(L, 0, 8);
  set_int(L, "pending", (lua_Integer)st.pending);
  set_int(L, "claimed", (lua_Integer)st.claimed);
  set_int(L, "dead", (lua_Integer)st.dead);
  lua_pushnumber(L, st.pending > 0 && now > st.oldest ? now - st.oldest : 0);
  lua_setfield(L, -2, "oldest_age");
  set_int(L, "appended", u->appended);
  set_int(L, "done", u->done);
  set_int(L, "failed", u->failed);
  set_int(L, "dead_lettered", u->dead_lettered);
  return 1;
}

/* }==================== */

static int l_journal_lock(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "lock file %s cannot be opened: %s", path,
                    strerror(errno));
    return 2;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
      lua_pushboolean(L, 0);
      return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "lock file %s cannot be locked: %s", path,
                    strerror(e));
    return 2;
  }
  lua_pushinteger(L, fd);
  return 1;
}

static int l_journal_unlock(lua_State *L)
{
  lua_Integer fd = luaL_checkinteger(L, 1);
  if (fd >= 0 && fd <= INT_MAX) close((int)fd);   /* the lock goes with it */
  return 0;
}

/* The names are copied out of the C buffer, which is freed, before Lua
 * allocates anything (a memory error then leaks nothing). */
static int l_journal_files(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  char err[512], *buf = NULL, *copy;
  size_t len = 0, at = 0;
  int n = 0;
  if (oc_journal_files(dir, &buf, &len, err, sizeof err) != 0)
    return fail_with(L, err);
  copy = (char *)lua_newuserdata(L, len ? len : 1);
  if (len) memcpy(copy, buf, len);
  free(buf);
  lua_newtable(L);
  while (at < len) {
    size_t k = strlen(copy + at);
    lua_pushlstring(L, copy + at, k);
    lua_rawseti(L, -2, ++n);
    at += k + 1;
  }
  return 1;
}

static const luaL_Reg journal_methods[] = {
  { "append", l_append },
  { "append_batch", l_append_batch },
  { "claim", l_claim },
  { "pending", l_pending },
  { "dead", l_dead },
  { "done", l_done },
  { "fail", l_fail },
  { "requeue", l_requeue },
  { "release", l_release },
  { "abandoned", l_abandoned },
  { "release_all", l_release_all },
  { "mark", l_mark },
  { "marks", l_marks },
  { "prune_marks", l_prune_marks },
  { "version", l_version },
  { "stats", l_stats },
  { "path", l_path },
  { "close", l_close },
  { NULL, NULL }
};

static const luaL_Reg journal_meta[] = {
  { "__gc", l_close },
  { "__close", l_close },
  { "__tostring", l_tostring },
  { NULL, NULL }
};

void oc_open_journal(lua_State *L)
{
  if (luaL_newmetatable(L, JOURNAL_MT)) {
    luaL_setfuncs(L, journal_meta, 0);
    luaL_newlib(L, journal_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_journal_open);
  lua_setfield(L, -2, "journal_open");
  lua_pushcfunction(L, l_journal_files);
  lua_setfield(L, -2, "journal_files");
  lua_pushcfunction(L, l_journal_lock);
  lua_setfield(L, -2, "journal_lock");
  lua_pushcfunction(L, l_journal_unlock);
  lua_setfield(L, -2, "journal_unlock");
}
