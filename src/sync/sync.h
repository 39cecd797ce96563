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
 *
 * Phases (the session enforces their order; oc_sync_phase() names the
 * current one):
 *
 *   SETUP      oc_sync_new, oc_sync_add_slot (every slot before listing)
 *   LISTING    oc_sync_list_owned: the owned entities are read
 *   FEEDING    the listing is over (read, or failed: then every entity is
 *              sent); oc_sync_offer / oc_sync_flush, with oc_sync_busy as
 *              backpressure
 *   FINISHING  oc_sync_finish: the last batches go out and are answered
 *   RETRYING   the retryable failures, once, relation targets first
 *   CONFIRMING the deletion decision (the safety rules, see
 *              oc_sync_finish) and the re-listing of the candidates
 *   DELETING   confirmed candidates, sources before targets
 *   DONE       oc_sync_report and the accessors say what happened
 *
 * Nothing advances by itself: oc_sync_step() moves to the next phase when
 * the current one's requests are answered. The caller steps between two
 * waits of the loop, after checking whether it must stop, so a caller
 * that aborts (oc_sync_free) never lets a new phase's writes out.
 */
#ifndef OC_SYNC_H
#define OC_SYNC_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "diff.h"
#include "port/port.h"

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
  size_t produced;               /* distinct entities offered */
  size_t duplicates;             /* offers of an entity produced before in
                                    this run: counted and sent once (a
                                    different content replaces the queued
                                    one: the last write wins in a bulk) */
  size_t created, updated, unchanged, failed;
  size_t unresolved;             /* search identifier matched nothing */
  size_t always;                 /* no stable key: upserted unconditionally */
  size_t retried, retry_ok;
  size_t upsert_requests, entities_sent;
  size_t candidates, confirmed, protected_targets;
  size_t deleted, delete_failed, delete_requests;
  size_t in_flight;              /* entities submitted, not answered */
  size_t held;                   /* owned entities kept because their
                                    blueprint is held (oc_sync_finish) */
  size_t unknown;                /* upserted, but whether created or
                                    updated is unknown: the owned entities
                                    could not be read */
} oc_sync_stats_t;

/* The counts of what was offered under one tag (oc_sync_set_tag), the
 * retry included: created + updated + unknown + unchanged + failed is
 * what was offered and answered. */
typedef struct oc_sync_tag_stats {
  size_t produced, created, updated, unknown, unchanged, failed;
} oc_sync_tag_stats_t;

typedef enum oc_sync_phase {
  OC_SYNC_SETUP, OC_SYNC_LISTING, OC_SYNC_FEEDING, OC_SYNC_FINISHING,
  OC_SYNC_RETRYING, OC_SYNC_CONFIRMING, OC_SYNC_DELETING, OC_SYNC_DONE
} oc_sync_phase_t;

/* port may be NULL only in plan mode (tests). NULL with err on bad
 * options or OOM. */
oc_sync_t *oc_sync_new(oc_port_t *port, const oc_sync_opts_t *opts,
                       char *err, size_t errlen);
/* Cancels the session's jobs (no callbacks) and frees. NULL: no-op. */
void oc_sync_free(oc_sync_t *s);

oc_sync_phase_t oc_sync_phase(const oc_sync_t *s);
int oc_sync_plan(const oc_sync_t *s);
/* "setup", "listing", ... "done". */
const char *oc_sync_phase_name(oc_sync_phase_t p);

/* Advance to the next phase when the current one's requests are all
 * answered (submitting the next phase's requests). Never blocks; call it
 * between loop waits. Returns the phase reached. */
oc_sync_phase_t oc_sync_step(oc_sync_t *s);

/* A comparison slot for a mapping signature (oc_mapping_signature; or a
 * non-object for "compare everything"). Equal projections share a slot.
 * SETUP only. -1 on OOM or after SETUP. */
int oc_sync_add_slot(oc_sync_t *s, jv signature);

/* {==================== owned entities ==================== */

/* SETUP -> LISTING: start reading the owned entities (asynchronous;
 * progress happens in oc_loop_wait). Without a Port client (plan tests)
 * the index starts empty and complete. 0, or -1 with err (the session is
 * then FEEDING with a failed listing). */
int oc_sync_list_owned(oc_sync_t *s, char *err, size_t errlen);
/* Index one owned entity (borrowed) directly (tests, plan input). */
int oc_sync_add_owned(oc_sync_t *s, jv entity);
/* 0: listing, 1: complete, -1: failed (message in *err). */
int oc_sync_owned_state(const oc_sync_t *s, const char **err);

/* }==================== */

/* {==================== produced entities ==================== */

/* Offer one mapped entity (consumed) compared through `slot`. Unchanged
 * entities cost nothing; others are queued and sent when a blueprint's
 * batch is full. An entity (same key) offered before in this session is a
 * duplicate (itemsToParse children shared by many parents): it is counted
 * and sent once; with a different content it replaces the queued one (the
 * last write wins within a bulk) or, when that one was sent already, is
 * sent again (still counted once). Returns 0, 1 for a duplicate, or -1
 * with err (OOM, submit failure, or a session already finishing). Meant
 * for FEEDING: while LISTING every entity counts as changed. */
int oc_sync_offer(oc_sync_t *s, int slot, jv entity, char *err,
                  size_t errlen);
/* Tag what is offered from now on (e.g. the caller's resource index,
 * 0 .. 65535; default 0): counted apart (oc_sync_tag_stats) and named in
 * the failures. -1 on OOM or a tag out of range. */
int oc_sync_set_tag(oc_sync_t *s, int tag);
/* The counts of a tag (zeros for a tag never used). */
void oc_sync_tag_stats(const oc_sync_t *s, int tag, oc_sync_tag_stats_t *out);
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
  int tag;                       /* the tag it was offered under */
} oc_sync_failure_t;
size_t oc_sync_failure_count(const oc_sync_t *s);
int oc_sync_failure(const oc_sync_t *s, size_t i, oc_sync_failure_t *out);

/* Plan mode: the keys that would be written. which: 'c'reate, 'u'pdate.
 * Returns the count; key i via oc_sync_planned_key. */
size_t oc_sync_planned_count(const oc_sync_t *s, int which);
const char *oc_sync_planned_key(const oc_sync_t *s, int which, size_t i,
                                size_t *klen);

/* What this integration owns once the session is over, as far as the
 * session knows: the listed entities it did not delete, and those it
 * created. fn gets each key (blueprint \0 identifier; borrowed). Returns
 * 0, or -1 (nothing called) when the listing did not complete. */
typedef void (*oc_sync_key_fn)(void *ud, const char *key, size_t klen);
int oc_sync_owned_each(const oc_sync_t *s, oc_sync_key_fn fn, void *ud);
/* oc_loop_now_ms() when the session was made. */
int64_t oc_sync_created_ms(const oc_sync_t *s);

/* }==================== */

/* {==================== the end: retry and reconciliation ==================== */

typedef struct oc_sync_finish {
  double threshold;              /* entityDeletionThreshold: at most this
                                    share of the owned entities is deleted;
                                    0: never delete */
  const char *before;            /* the run's start (ISO-8601, copied):
                                    a candidate updated since stays; NULL:
                                    no bound */
  size_t errors;                 /* the caller's errors (failed resync
                                    functions, item errors): any blocks
                                    deletion */
  const char *const *blocked;    /* the caller's own reasons not to delete
                                    (copied) */
  size_t nblocked;
  const char *const *held;       /* blueprints whose owned entities are
                                    never deletion candidates (the caller
                                    could not produce all of them; copied).
                                    With delete_dependents, the relation
                                    targets of their owned entities stay
                                    too, so that no delete cascades into
                                    them */
  size_t nheld;
} oc_sync_finish_t;

/* FEEDING (or LISTING: an unfinished listing is cancelled and counts as
 * failed) -> FINISHING. Then, stepped: the last batches are answered; the
 * retryable failures are retried once, level by level; deletion is
 * decided: it is skipped (with a reason each) when there are errors
 * (f->errors and the session's own), when the caller blocks it, when the
 * owned entities could not be read, when the threshold is 0 or the share
 * of candidates exceeds it; otherwise the candidates are re-listed
 * bounded by `before` (only those still there are confirmed), relation
 * targets of produced entities are protected, and the rest is deleted
 * (plan: only listed). 0, or -1 with err (OOM, wrong phase). */
int oc_sync_finish(oc_sync_t *s, const oc_sync_finish_t *f, char *err,
                   size_t errlen);

typedef struct oc_sync_report {
  oc_sync_phase_t phase;
  int retry_levels;              /* levels the retry went through */
  int decided;                   /* the candidates were counted */
  int skipped;                   /* deletion did not run (reasons say why) */
  double ratio;                  /* candidates / owned; -1: not computed */
  double threshold;
  size_t nreasons;               /* why deletion was skipped */
  size_t nerrors;                /* the session's own errors (submits that
                                    failed during the end) */
} oc_sync_report_t;
void oc_sync_report(const oc_sync_t *s, oc_sync_report_t *out);
const char *oc_sync_reason(const oc_sync_t *s, size_t i);
const char *oc_sync_error(const oc_sync_t *s, size_t i);

/* Deletion candidates (after the decision): count and key i. */
size_t oc_sync_candidate_count(const oc_sync_t *s);
const char *oc_sync_candidate_key(const oc_sync_t *s, size_t i,
                                  size_t *klen);
/* Confirmed, unprotected candidate i and its delete outcome: 1 deleted,
 * 0 not (yet, or plan), -1 failed (message set). -1 when i is out of
 * range. */
size_t oc_sync_doomed_count(const oc_sync_t *s);
int oc_sync_doomed(const oc_sync_t *s, size_t i, const char **bp,
                   const char **id, int *outcome, const char **message);

/* }==================== */

#endif
