/*
 * live_session.h - the live session: one per engine (per nginx worker),
 * long-lived, through which every live operation (register_raw,
 * unregister_raw, update_raw_diff, register, unregister, update_diff)
 * writes to Port. docs/live-events.md describes the rules; this is the
 * contract.
 *
 * An operation (oc_live_op_t) is built by its caller (writes added one by
 * one, already mapped), then committed: its writes join the open batch.
 * A batch collects the operations of a window (window_ms after its first
 * write, or until every bulk it would send is full: each blueprint's
 * upserts a positive multiple of batch_max or batch_max_bytes, all its deletes
 * a multiple of delete_batch) and is then applied as a whole; batches are
 * applied one after another, so two operations on one entity keep their
 * order. In a batch:
 *   - one write per entity key (blueprint \0 identifier): the last wins;
 *     an earlier write of another operation is "superseded", or shares
 *     the outcome when it asked for the same thing (a delete, or an upsert
 *     of the same JSON text);
 *   - upserts first, level by level in relation order (targets first),
 *     in bulk per blueprint; the failures worth it (404, 408, 429, 5xx,
 *     no answer) are retried once, in relation order;
 *   - meanwhile, one ownership search per delete_batch candidates (the
 *     candidates' identifiers per blueprint, plus `relatedTo` their
 *     itemsToParse children; Ocean's ownership rules appended);
 *   - then the confirmed deletes, sources before targets, in bulk per
 *     blueprint. A child (from a resource with itemsToParse) is deleted
 *     only when no other owned entity, and no entity upserted in the
 *     batch, relates to it (other than the batch's named deletes);
 *   - every operation's report counts its own entities.
 * Across batches, operations that carry an event seq (opts.seq) keep the
 * events' order per entity: the session remembers, per key, the latest
 * seq that wrote it, and a write with an earlier seq is superseded (an
 * event retried after its backoff, while newer events of the same entity
 * were applied). Memory: one key per entity an event wrote.
 *
 * Ownership index: the keys this integration owns as far as this engine
 * knows: adopted from a resync session (oc_live_adopt), then updated by
 * every write and search answer. With an index, register_raw's implicit
 * deletes (selector-failed entities) not in it are dropped unasked;
 * everything else deleted is confirmed by the batch's search first.
 *
 * Everything advances inside oc_loop_wait() (the window timer and the Port
 * client's callbacks); nothing blocks. Memory: the writes of the open and
 * running batches (each entity's JSON text and jv), the index (keys).
 */
#ifndef OC_LIVE_SESSION_H
#define OC_LIVE_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "net/loop.h"
#include "port/port.h"
#include "sync.h"

typedef struct oc_live oc_live_t;
typedef struct oc_live_op oc_live_op_t;

typedef struct oc_live_opts {
  long window_ms;                /* batch window; 0: 50; at most 1000 */
  size_t batch_max;              /* upserts per bulk; 0: 20 */
  size_t batch_max_bytes;        /* bytes per bulk body; 0: 1 MiB */
  size_t delete_batch;           /* deletes per bulk and candidates per
                                    ownership search; 0: 100 */
} oc_live_opts_t;

/* NULL with err on OOM. loop: the port client's loop (window timers). */
oc_live_t *oc_live_new(oc_port_t *port, oc_loop_t *loop,
                       const oc_live_opts_t *opts, char *err, size_t errlen);
/* Cancels the session's Port jobs and timer (no callbacks), releases its
 * operations (a held operation reads as done with an error). Free it
 * before its Port client and loop. NULL: no-op. */
void oc_live_free(oc_live_t *lv);
/* The Port client was freed under the session (its jobs went with it):
 * nothing is sent any more; batches in flight never finish. */
void oc_live_port_gone(oc_live_t *lv);

/* {==================== operations ==================== */

/* What an operation's writes go out with (a batch holds operations of
 * one kind only: another kind starts a new batch). */
typedef struct oc_live_op_opts {
  int plan;                      /* compute, never write: a batch alone */
  int merge, create_missing, delete_dependents;
  const char *event_type;        /* copied; NULL: "http_request" */
  uint64_t seq;                  /* the event's place in time (its receive
                                    time, microseconds since the epoch);
                                    0: none. A write of an entity that an
                                    operation with a later seq already
                                    wrote is dropped and counted
                                    "superseded": a retried older event
                                    never undoes a newer one */
} oc_live_op_opts_t;

/* A new operation, held by the caller (oc_live_op_release). NULL on OOM. */
oc_live_op_t *oc_live_op_new(oc_live_t *lv, const oc_live_op_opts_t *o);
/* The caller lets go; the op is freed once its batches are done with it. */
void oc_live_op_release(oc_live_op_t *op);

/* What a write asks for. */
enum {
  OC_LIVE_UPSERT = 1,
  OC_LIVE_DELETE = 2,            /* named by the operation */
  OC_LIVE_IMPLICIT = 3,          /* delete if owned, unless the operation
                                    upserts the same key (register_raw's
                                    selector-failed entities) */
  OC_LIVE_BEFORE = 4,            /* a diff's before: deleted at commit when
                                    no AFTER has its key; an AFTER equal to
                                    it is "unchanged" */
  OC_LIVE_AFTER = 5              /* a diff's after: upserted unless equal */
};
#define OC_LIVE_CHILD 1u         /* from a resource with itemsToParse */

/* Add one mapped entity (consumed). Returns 0, 1 when it was folded into
 * an earlier write of this operation (same key), or -1 with err (OOM, an
 * operation already committed). */
int oc_live_op_add(oc_live_op_t *op, int what, unsigned flags, jv entity,
                   char *err, size_t errlen);
/* Record an error of the operation (a mapping error...): it makes the
 * report's ok false. */
void oc_live_op_error(oc_live_op_t *op, const char *msg);
/* Drop every delete of this operation (reason: why, logged by the caller
 * and counted in the report). */
void oc_live_op_no_delete(oc_live_op_t *op);

/* Hand the operation's writes to the session, at most budget_ms of work
 * (0: no bound). Returns 1 once every write is queued, 0 when called
 * again is needed, -1 with err (OOM). An operation with nothing to write
 * is done at once. */
int oc_live_op_commit(oc_live_op_t *op, long budget_ms, char *err,
                      size_t errlen);
/* 1 when the operation's report is final. */
int oc_live_op_done(const oc_live_op_t *op);

typedef struct oc_live_report {
  size_t created, updated, unchanged, deleted, not_owned, kept,
    superseded, failed, delete_failed;
  uint64_t batch;                /* the last batch it rode in (0: none) */
  size_t batch_ops, upsert_requests, delete_requests, searches;
} oc_live_report_t;
void oc_live_op_report(const oc_live_op_t *op, oc_live_report_t *out);

/* The operation's failures (upserts and deletes Port refused) and
 * errors. Strings are owned by the op. */
typedef struct oc_live_failure {
  const char *blueprint, *identifier, *code, *message;
  int status, retryable, is_delete;
} oc_live_failure_t;
size_t oc_live_op_failure_count(const oc_live_op_t *op);
int oc_live_op_failure(const oc_live_op_t *op, size_t i,
                       oc_live_failure_t *out);
size_t oc_live_op_error_count(const oc_live_op_t *op);
const char *oc_live_op_error_at(const oc_live_op_t *op, size_t i);

/* Plan operations: what would be upserted / deleted (borrowed jv). */
size_t oc_live_op_planned_count(const oc_live_op_t *op, int deletes);
jv oc_live_op_planned(const oc_live_op_t *op, int deletes, size_t i);

/* Log lines the session wants said (kept children, dropped implicit
 * deletes, failed searches...), for the caller to log: level 'I'nfo,
 * 'W'arning, 'D'ebug. Each call returns the next one and forgets it, or
 * NULL. */
const char *oc_live_next_log(oc_live_t *lv, int *level);

/* }==================== */

/* {==================== the ownership index ==================== */

/* Take the owned keys of a finished resync session (its listing, plus
 * what it created, minus what it deleted) as the index; what this session
 * wrote since that session started wins. A session whose listing did not
 * complete is ignored (returns 0, keeps the current index). 1: adopted;
 * -1 on OOM (the current index stays). */
int oc_live_adopt(oc_live_t *lv, const oc_sync_t *s);

/* The events' order kept across processes (docs/live-events.md): the
 * writes of events (an operation's seq) that took effect since the last
 * call (a delete of an entity Port did not hold included: its event is
 * the latest writer all the same), fn(ud, key, klen, seq) for each (a
 * key may come more than once),
 * then forgotten here; a caller keeps them (ocean.event_queue: in the
 * journal, before the event is marked done). */
void oc_live_seqs_changed(oc_live_t *lv,
                          void (*fn)(void *ud, const char *key, size_t klen,
                                     uint64_t seq),
                          void *ud);

/* Raise key's latest writer to seq (kept by an earlier process): an
 * older event's write of it is then left out, superseded. 0, or -1 on
 * OOM. */
int oc_live_seq_note(oc_live_t *lv, const char *key, size_t klen,
                     uint64_t seq);

/* }==================== */

typedef struct oc_live_stats {
  uint64_t batches, operations, upserts, upsert_requests, deletes,
    delete_requests, searches, folded, retried;
  size_t owned;                  /* keys the index holds as owned */
  int indexed;                   /* an index was adopted from a resync */
  size_t open;                   /* operations waiting for their batch */
  size_t queued;                 /* batches not yet done */
} oc_live_stats_t;
void oc_live_stats(const oc_live_t *lv, oc_live_stats_t *out);

#endif
