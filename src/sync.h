/*
 * sync.h - a sync session: the state of one full resync (or one
 * `sync(entities)`) between the mapping engine and the Port client.
 *
 * A session reads the entities this integration owns once, as identity
 * keys and content hashes (diff.h), then takes produced entities one by
 * one: an entity whose content hash equals Port's is unchanged and costs
 * no request; the others are serialised and coalesced per blueprint into
 * full bulk upserts (20 entities / 1 MiB, across generator pages) that go
 * out through the Port client while the caller produces more. Each
 * entity's result comes back from Port's per-index answer; failures are
 * kept (JSON text only) for one retry in relation order at the end.
 * Reconciliation: the owned entities this run did not produce are the
 * deletion candidates; the caller decides (safety rules), the session
 * confirms candidates against a listing bounded by `before` (entities
 * updated during the run are never deleted), orders and deletes them.
 *
 * Memory: the owned index (key + one hash per mapping signature), the
 * relation targets of produced entities (one 64-bit hash each), entities
 * in flight (bounded by max_pending), failed entities and confirmed
 * deletion candidates. Raw items and mapped entities are never kept.
 *
 * Plan mode: everything but the writes; the would-be upserts are counted
 * and their keys recorded.
 */
#ifndef OC_SYNC_H
#define OC_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "diff.h"
#include "port.h"

typedef struct oc_sync oc_sync_t;

typedef struct oc_sync_opts {
  int merge;                     /* Port keeps what an upsert doesn't send */
  int create_missing;            /* create_missing_related_entities */
  int delete_dependents;
  int plan;                      /* compute, never write */
  const char *event_type;        /* Ocean's event params (copied) */
  const char *resync_id;
  size_t batch_max;              /* entities per bulk upsert; 0: 20 */
  size_t batch_max_bytes;        /* bytes per bulk body; 0: 1 MiB */
  size_t max_pending;            /* entities in flight before the session
                                    reports busy; 0: 200 */
} oc_sync_opts_t;

typedef struct oc_sync_stats {
  size_t owned;                  /* entities owned at the start */
  size_t produced;               /* entities offered */
  size_t created, updated, unchanged, failed;
  size_t unresolved;             /* search identifier matched nothing */
  size_t always;                 /* no stable key: upserted unconditionally */
  size_t retried, retry_ok;
  size_t upsert_requests, entities_sent;
  size_t candidates, confirmed, protected_targets;
  size_t deleted, delete_failed, delete_requests;
  size_t in_flight;              /* entities submitted, not answered */
} oc_sync_stats_t;

/* port may be NULL only in plan mode without listing (tests). NULL with
 * err on bad options or OOM. */
oc_sync_t *oc_sync_new(oc_port_t *port, const oc_sync_opts_t *opts,
                       char *err, size_t errlen);
/* Cancels the session's jobs (no callbacks) and frees. NULL: no-op. */
void oc_sync_free(oc_sync_t *s);

/* A comparison slot for a mapping signature (oc_mapping_signature; or a
 * non-object for "compare everything"). Equal projections share a slot.
 * All slots must be added before the owned listing. -1 on OOM. */
int oc_sync_add_slot(oc_sync_t *s, jv signature);

/* {==================== owned entities ==================== */

/* Start listing the owned entities (asynchronous; progress happens in
 * oc_loop_wait). 0, or -1 with err. */
int oc_sync_list_owned(oc_sync_t *s, char *err, size_t errlen);
/* Index one owned entity (borrowed) directly (tests, plan input). */
int oc_sync_add_owned(oc_sync_t *s, jv entity);
/* 0: listing, 1: complete, -1: failed (message in *err). */
int oc_sync_owned_state(const oc_sync_t *s, const char **err);

/* }==================== */

/* {==================== produced entities ==================== */

/* Offer one mapped entity (consumed) compared through `slot`. Unchanged
 * entities cost nothing; others are queued and sent when a blueprint's
 * batch is full. Returns 0, or -1 with err (OOM, submit failure). The
 * owned listing must be complete (or failed: then everything is sent). */
int oc_sync_offer(oc_sync_t *s, int slot, jv entity, char *err,
                  size_t errlen);
/* Send every partial batch now. 0 or -1 with err. */
int oc_sync_flush(oc_sync_t *s, char *err, size_t errlen);
/* 1 while more entities are in flight than max_pending allows. */
int oc_sync_busy(const oc_sync_t *s);
/* Jobs (upserts, deletes, listings) not finished. */
size_t oc_sync_outstanding(const oc_sync_t *s);
void oc_sync_stats(const oc_sync_t *s, oc_sync_stats_t *out);

/* A failed upsert, kept for the retry and for the report. */
typedef struct oc_sync_failure {
  const char *blueprint;
  const char *identifier;        /* identifier text (JSON for queries) */
  int status;
  const char *code;
  const char *message;
  int retryable;                 /* 404 (missing related entity), 429, 5xx,
                                    no answer: a retry may succeed */
} oc_sync_failure_t;
size_t oc_sync_failure_count(const oc_sync_t *s);
int oc_sync_failure(const oc_sync_t *s, size_t i, oc_sync_failure_t *out);

/* Plan mode: the keys that would be written. which: 'c'reate, 'u'pdate.
 * Returns the count; key i via oc_sync_planned_key. */
size_t oc_sync_planned_count(const oc_sync_t *s, int which);
const char *oc_sync_planned_key(const oc_sync_t *s, int which, size_t i,
                                size_t *klen);

/* Retry the retryable failures once, relation targets first: computes
 * the levels and returns their number (0: nothing to retry). Then call
 * oc_sync_retry_level(s, 0..n-1), letting each finish (outstanding == 0)
 * before the next. Entities that succeed leave the failure list. */
int oc_sync_retry_prepare(oc_sync_t *s, char *err, size_t errlen);
int oc_sync_retry_level(oc_sync_t *s, int level, char *err, size_t errlen);

/* }==================== */

/* {==================== reconciliation ==================== */

/* Owned entities not produced by this run (and not failed): counted into
 * stats.candidates; key i via oc_sync_candidate_key. */
size_t oc_sync_candidates(oc_sync_t *s);
const char *oc_sync_candidate_key(const oc_sync_t *s, size_t i,
                                  size_t *klen);
/* List the owned entities again, bounded by `before` (ISO-8601, the run's
 * start), keeping the candidates still there: an entity updated since the
 * start (by a webhook, another writer) is not confirmed. Asynchronous.
 * With before == NULL every candidate found is confirmed. */
int oc_sync_confirm(oc_sync_t *s, const char *before, char *err,
                    size_t errlen);
/* 0: listing, 1: complete, -1: failed (message in *err). */
int oc_sync_confirm_state(const oc_sync_t *s, const char **err);
/* Order the confirmed candidates for deletion: relation targets of
 * produced entities are protected when create_missing (as Ocean); then
 * sources before their targets, level by level (bulk per blueprint in a
 * level). Also with delete_dependents: if a target went first, Port would
 * delete its dependents itself and our own delete of them would come back
 * "not deleted". Returns the number of levels. */
int oc_sync_delete_prepare(oc_sync_t *s, char *err, size_t errlen);
int oc_sync_delete_level(oc_sync_t *s, int level, char *err, size_t errlen);
/* Confirmed, unprotected candidate i and its delete outcome: 1 deleted,
 * 0 not (yet), -1 failed (message set). -1 when i is out of range. */
size_t oc_sync_doomed_count(const oc_sync_t *s);
int oc_sync_doomed(const oc_sync_t *s, size_t i, const char **bp,
                   const char **id, int *outcome, const char **message);

/* }==================== */

#endif
