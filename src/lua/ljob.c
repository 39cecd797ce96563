/*
 * ljob.c - "ocean.Job": the one handle for an asynchronous operation of
 * the binding (a loop request, a Port job, a phase of a sync session).
 *
 *   job:done()    -> bool: finished (answered, failed or cancelled); for a
 *                    session phase this is also where the session advances
 *   job:result()  -> the result once done (the same values every call),
 *                    or nil, "pending" | nil, "cancelled"
 *   job:cancel()  -> true when it stopped a pending operation, else false
 *   job:close()   (idempotent; also __gc and __close: a job collected
 *                    while pending cancels its operation)
 *
 * Ownership: the Job owns the record its C callbacks fill (malloc'ed, so
 * that the record outlives nothing it points into) and frees it once the
 * result is pushed, on cancel, or when collected. It keeps its owner (the
 * Loop, Port or Sync userdata) alive through its user value, so the owner
 * outlives every job it started; an owner closed first has cancelled the
 * operation itself (no callback runs after its close), and the Job then
 * reads as cancelled.
 *
 * The user value is a table {owner, result...} with field n: the result
 * values, kept once pushed. core.job_mt is the metatable (to recognise a
 * Job from Lua).
 */
#include "lbind.h"

#include <stdlib.h>

enum { J_NEW, J_PENDING, J_DONE, J_TAKEN, J_CANCELLED, J_CLOSED };

static const char *const state_names[] = {
  "not started", "pending", "done", "done", "cancelled", "closed"
};

static oc_job_t *to_job(lua_State *L, int idx)
{
  return (oc_job_t *)luaL_checkudata(L, idx, OC_JOB_MT);
}

static void free_rec(oc_job_t *j)
{
  if (j->rec) {
    j->cls->free_rec(j->rec);
    j->rec = NULL;
  }
}

/* Stop the operation if it is still running; the record is freed. */
static void stop(oc_job_t *j, int next_state)
{
  if (j->state == J_PENDING && j->cls->owner_open(j))
    j->cls->cancel(j);
  free_rec(j);
  j->state = next_state;
}

oc_job_t *oc_job_new(lua_State *L, const oc_job_class_t *cls, int owner)
{
  oc_job_t *j;
  owner = lua_absindex(L, owner);
  j = (oc_job_t *)lua_newuserdata(L, sizeof *j);
  j->cls = cls;
  j->owner = lua_touserdata(L, owner);
  j->rec = NULL;
  j->id = 0;
  j->state = J_NEW;
  luaL_setmetatable(L, OC_JOB_MT);
  lua_createtable(L, 3, 1);
  lua_pushvalue(L, owner);
  lua_rawseti(L, -2, 1);
  oc_setuservalue(L, -2);
  return j;
}

void oc_job_start(oc_job_t *j, uint64_t id)
{
  j->id = id;
  j->state = J_PENDING;
}

/* Poll a pending job: 1 when it is finished. */
static int finished(oc_job_t *j)
{
  if (j->state != J_PENDING)
    return j->state != J_NEW;
  if (!j->cls->owner_open(j)) {  /* its close cancelled the operation */
    free_rec(j);
    j->state = J_CANCELLED;
    return 1;
  }
  if (j->cls->poll(j)) {
    j->state = J_DONE;
    return 1;
  }
  return 0;
}

static int l_done(lua_State *L)
{
  lua_pushboolean(L, finished(to_job(L, 1)));
  return 1;
}

/* Push the kept result values (uservalue slots 2..n+1). */
static int push_kept(lua_State *L)
{
  int i, n;
  oc_getuservalue(L, 1);
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  for (i = 0; i < n; i++)
    lua_rawgeti(L, -1 - i, i + 2);
  return n;
}

static int l_result(lua_State *L)
{
  oc_job_t *j = to_job(L, 1);
  int n, i, base;
  lua_settop(L, 1);
  finished(j);
  if (j->state == J_TAKEN)
    return push_kept(L);
  if (j->state != J_DONE) {
    lua_pushnil(L);
    lua_pushstring(L, state_names[j->state]);
    return 2;
  }
  oc_getuservalue(L, 1);         /* 2 */
  base = lua_gettop(L);
  n = j->cls->push(L, j);        /* may raise: the record stays ours */
  for (i = n; i >= 1; i--) {
    lua_pushvalue(L, base + i);
    lua_rawseti(L, 2, i + 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, 2, "n");
  free_rec(j);
  j->state = J_TAKEN;
  return n;
}

static int l_cancel(lua_State *L)
{
  oc_job_t *j = to_job(L, 1);
  int pending = j->state == J_PENDING && !finished(j);
  if (pending)
    stop(j, J_CANCELLED);
  lua_pushboolean(L, pending);
  return 1;
}

static int l_close(lua_State *L)
{
  oc_job_t *j = to_job(L, 1);
  if (j->state != J_CLOSED)
    stop(j, J_TAKEN <= j->state && j->state <= J_CANCELLED ? j->state
                                                            : J_CLOSED);
  return 0;
}

static int l_tostring(lua_State *L)
{
  oc_job_t *j = to_job(L, 1);
  lua_pushfstring(L, "ocean.Job (%s, %s): %p", j->cls->name,
                  state_names[j->state], (void *)j);
  return 1;
}

static const luaL_Reg job_methods[] = {
  {"done", l_done},
  {"result", l_result},
  {"cancel", l_cancel},
  {"close", l_close},
  {NULL, NULL}
};

void oc_open_job(lua_State *L)
{
  if (luaL_newmetatable(L, OC_JOB_MT)) {
    luaL_newlib(L, job_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setfield(L, -2, "job_mt");
}
