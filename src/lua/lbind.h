/*
 * lbind.h - what the binding files share: the JSON value bridge between
 * Lua values and jq values (jv), and each file's opener.
 *
 * Conventions: Lua's `nil` never appears inside JSON data; JSON null is the
 * sentinel `ocean.null` (a NULL light userdata). Arrays carry the metatable
 * registered as OC_ARRAY_MT so that an empty array stays an array.
 */
#ifndef OC_LBIND_H
#define OC_LBIND_H

#include <stdint.h>
#include <jv.h>

#include "lcompat.h"
#include "json/json.h"

#define OC_ARRAY_MT "ocean.json.array"
#define OC_NUMBER_MT "ocean.json.number"   /* exact numbers (ljson.c) */
#define OC_LUA_MAX_DEPTH 256

/* Push the Lua form of v (borrowed). Raises only on memory errors. */
void oc_push_jv(lua_State *L, jv v);
/* The same; exact: a number a Lua number cannot hold exactly (a literal
 * jq kept, see json_num.c) becomes an exact number (OC_NUMBER_MT). */
void oc_push_jv_ex(lua_State *L, jv v, int exact);
/* Push ocean.null. */
void oc_push_null(lua_State *L);
int oc_is_null(lua_State *L, int idx);

/* Convert the Lua value at idx into a jv. On failure returns jv_invalid()
 * and writes "<what> at $.path" into err. kc may be NULL. */
jv oc_to_jv(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
            char *err, size_t errlen);
/* The same for a value `depth` levels inside the one max_depth bounds
 * (a member of a raw item converted piecewise). */
jv oc_to_jv_at(lua_State *L, int idx, oc_keycache_t *kc, int max_depth,
               int depth, char *err, size_t errlen);

/* The JSON text of the exact number at idx (and its length in *n), or
 * NULL when idx holds something else. */
const char *oc_exact_number(lua_State *L, int idx, size_t *n);

/* Set the array metatable on the table at the top of the stack. */
void oc_set_array_mt(lua_State *L);

/* The open "ocean.Server" userdata at idx (lserver.c); raises otherwise.
 * struct oc_server is oc_server_t of http_server.h. */
struct oc_server *oc_check_server(lua_State *L, int idx);

/* The open "ocean.Loop" / "ocean.Port" userdata at idx (lloop.c,
 * lport.c); raise otherwise. */
struct oc_loop *oc_check_loop(lua_State *L, int idx);
struct oc_port *oc_check_port(lua_State *L, int idx);
/* The open "ocean.Sync" session at idx (lsync.c); raises otherwise. */
struct oc_sync *oc_check_sync(lua_State *L, int idx);
/* Where the "ocean.Port" userdata at idx keeps its client (NULL once
 * closed): valid while that userdata lives. Raises if idx is not one. */
struct oc_port *const *oc_port_slot(lua_State *L, int idx);
/* Overlay the retry options of the Lua table at idx on *r (lloop.c);
 * raises on a bad option. */
struct oc_retry;
void oc_lua_read_retry(lua_State *L, int idx, struct oc_retry *r);

/* The open "ocean.Mapping" userdata at idx (lmapping.c); raises
 * otherwise. */
#define OC_MAPPING_MT "ocean.Mapping"
struct oc_mapping *oc_check_mapping(lua_State *L, int idx);
/* The raw Lua item at idx as a jv for mapping m, converting only what the
 * mapping reads (lmapping.c). jv_invalid() with err on bad data. */
jv oc_mapping_lua_raw(lua_State *L, int idx, struct oc_mapping *m, char *err,
                      size_t errlen);

/* {==================== the mapping loop (lfeed.c) ====================
 * Raw items from Lua through a compiled resource into a session: a list
 * (tables or JSON texts) or one JSON text (an array or NDJSON), stopping
 * at deadline_ms (monotonic; 0: never) and going on from `cur` when
 * called again. offer gets each entity (consumed): passed, or failed the
 * selector (only when want_failed); it returns 0 (counted), 1 (folded
 * into an earlier entity: not counted again) or -1 with err (stops).
 * An input the selector refused counts in `filtered` either way. With
 * split_items, an item whose itemsToParse gave neither an array nor null
 * goes to the report's items_errors list (its children are unknown),
 * else to its errors. */
struct oc_mapping;
typedef struct oc_feed {
  lua_State *L;
  struct oc_mapping *m;
  int parse_all, want_failed, split_items;
  int (*offer)(void *ud, jv entity, int passed, char *err, size_t errlen);
  void *offer_ud;
  int errors_t, dropped_t, items_t; /* stack indexes of the report's
                                       lists */
  unsigned char *mis;            /* field_count flags */
  size_t index, nerrors, ndropped, nitems, entities, filtered;
  oc_json_cursor_t cur;          /* list: items done; text: the cursor */
  double deadline_ms;
  int failed;
  char err[OC_ERR_SIZE];
} oc_feed_t;
/* Map the items at idx: 1 when all are done (or an offer failed:
 * f->failed), 0 when the deadline came first. */
int oc_feed_run(lua_State *L, oc_feed_t *f, int idx);
/* Push the report table of f. */
void oc_feed_push_report(lua_State *L, const oc_feed_t *f);
/* A feed kept between calls in the Lua table at acc (acc.state, a
 * zeroed userdata of `size` bytes that starts with the oc_feed_t, made on
 * the first call; acc.mis, acc.errors, acc.dropped, acc.items_errors):
 * pushes 5 values and
 * returns it, its L, m and report tables set for this call. */
void *oc_feed_resume(lua_State *L, int acc, struct oc_mapping *m,
                     size_t size);

/* }==================== */

/* {==================== ocean.Job (ljob.c) ====================
 * The handle of every asynchronous operation: the owner (a Loop, Port or
 * Sync userdata) creates the Job empty, hangs the record its C callbacks
 * fill on j->rec (the Job frees it), starts the operation and marks the
 * Job started with the operation's id. A class says how to poll, push,
 * cancel and free. */
#define OC_JOB_MT "ocean.Job"

typedef struct oc_job oc_job_t;

typedef struct oc_job_class {
  const char *name;              /* "request", "port call", ... */
  /* 1 when the operation is finished; called only while the owner is
   * open, and may advance the owner's state (a session's phases). */
  int (*poll)(oc_job_t *j);
  /* Push the result: 1 value, or nil and a message (returns 2). May
   * raise (memory); the record then stays with the Job. */
  int (*push)(lua_State *L, oc_job_t *j);
  /* Stop the pending operation: no callback touches j->rec after. */
  void (*cancel)(oc_job_t *j);
  int (*owner_open)(const oc_job_t *j);
  void (*free_rec)(void *rec);
} oc_job_class_t;

struct oc_job {
  const oc_job_class_t *cls;
  void *owner;                   /* the owner userdata's payload */
  void *rec;                     /* filled by the callbacks; Job-owned */
  uint64_t id;                   /* the operation's id once started */
  int state;
};

/* Push a new, not yet started Job of class cls whose owner is the
 * userdata at owner_idx (kept alive by the Job). Raises on memory. */
oc_job_t *oc_job_new(lua_State *L, const oc_job_class_t *cls, int owner_idx);
/* The operation was submitted: the Job is pending. */
void oc_job_start(oc_job_t *j, uint64_t id);

/* }==================== */

/* Milliseconds of the monotonic clock (lcore.c; core.monotonic_ms). */
double oc_monotonic_ms(void);

/* Openers: each adds its functions to the module table at the top. */
void oc_open_json(lua_State *L);
void oc_open_job(lua_State *L);
void oc_open_mapping(lua_State *L);
void oc_open_loop(lua_State *L);
void oc_open_server(lua_State *L);
void oc_open_port(lua_State *L);
void oc_open_sync(lua_State *L);
void oc_open_live(lua_State *L);
void oc_open_journal(lua_State *L);
void oc_open_diff(lua_State *L);
void oc_open_crypto(lua_State *L);

#endif
