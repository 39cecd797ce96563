/*
 * sync_int.h - the sync session's internals, shared by sync.c (session,
 * owned index, upserts), sync_end.c (the steps of the end: retry,
 * reconciliation) and sync_phase.c (their order).
 */
#ifndef OC_SYNC_INT_H
#define OC_SYNC_INT_H

#include "sync.h"

#define DEFAULT_BATCH 20
#define DEFAULT_BYTES (1024 * 1024)
#define DEFAULT_PENDING 200

#define FLAG_CANDIDATE 4u
#define FLAG_CONFIRMED 8u
#define FLAG_NEW 16u                   /* produced, not listed */
#define FLAG_WRITTEN 32u               /* an upsert of it succeeded */
#define FLAG_DELETED 64u               /* this run deleted it */

/* An entity on its way to Port. */
typedef struct ent {
  char *text;                    /* JSON of the entity */
  size_t len;
  char *key;                     /* blueprint \0 identifier; NULL: none */
  size_t klen;
  long owned;                    /* owned index entry when listed, or -1 */
  long entry;                    /* index entry (listed or new), or -1 */
  int dup;                       /* produced before in this run: not
                                    counted again */
  int tag;                       /* oc_sync_set_tag's when offered */
} ent_t;

typedef struct batch {           /* entities waiting, per blueprint */
  char *bp;
  ent_t *ents;
  size_t n, cap, bytes;
} batch_t;

typedef struct failure {
  ent_t e;
  char *bp, *ident, *code, *message;
  int status, retryable, level;
} failure_t;

typedef struct doomed {          /* a confirmed deletion candidate */
  jv entity;
  long entry;                    /* its owned index entry */
  char *bp, *id;
  int level, outcome;
  char *message;
} doomed_t;

typedef struct keylist {         /* keys, back to back */
  oc_buf_t bytes;
  size_t *off, *len, n, cap;
} keylist_t;

enum { JOB_UPSERT, JOB_LIST, JOB_CONFIRM, JOB_DELETE };

typedef struct job {
  oc_sync_t *s;
  int kind, retry;
  char *bp;                      /* JOB_UPSERT */
  uint64_t id;
  ent_t *ents;                   /* JOB_UPSERT */
  size_t n;
  size_t *doomed;                /* JOB_DELETE: indexes into s->doomed */
  struct job *prev, *next;
} job_t;

typedef struct strlist {         /* owned strings */
  char **v;
  size_t n;
} strlist_t;

struct oc_sync {
  oc_port_t *port;
  oc_sync_opts_t o;
  oc_sync_phase_t phase;
  int level, nlevels;            /* RETRYING, DELETING: the level in flight */
  oc_sync_finish_t fin;          /* fin.before: owned copy */
  size_t own_errors;
  strlist_t reasons, errors;     /* why deletion was skipped; the session's
                                    own errors */
  strlist_t held;                /* fin.held, copied */
  int decided, skipped, retry_levels;
  double ratio;
  char *event_type, *resync_id;
  oc_projection_t **slots;
  size_t nslots;
  oc_index_t *owned;             /* listed entries, then the produced
                                    ones (FLAG_NEW) */
  size_t nnew;                   /* entries FLAG_NEW */
  int64_t created_ms;            /* oc_loop_now_ms() at oc_sync_new */
  int owned_state, confirm_state;
  int listing_cut;               /* finish stopped a listing still running */
  char owned_err[OC_ERR_SIZE], confirm_err[OC_ERR_SIZE];
  oc_hashset_t *targets;         /* relation targets of produced entities */
  batch_t *batches;
  size_t nbatches;
  failure_t *fails, *retry;
  size_t nfails, capfails, nretry;
  keylist_t planned[2];          /* plan mode: create, update */
  long *cands;
  size_t ncands;
  doomed_t *doomed;
  size_t ndoomed, capdoomed;
  job_t *jobs;
  size_t outstanding;
  oc_sync_stats_t st;
  int tag;                       /* the current tag (oc_sync_set_tag) */
  oc_sync_tag_stats_t *tags;     /* counts per tag, ntags of them */
  size_t ntags;
  oc_buf_t scratch, key;
};


char *oc_sync_dupn(const char *p, size_t n);
char *oc_sync_dups(const char *p);
void oc_sync_ent_free(ent_t *e);
int oc_sync_oom(char *err, size_t errlen);
uint64_t oc_sync_target_hash(const char *id, size_t n);
job_t *oc_sync_job_new(oc_sync_t *s, int kind);
void oc_sync_job_free(job_t *j);
void oc_sync_free_failure(failure_t *f);
int oc_sync_submit(oc_sync_t *s, const char *bp, ent_t *ents, size_t n,
                   int retry, char *err, size_t errlen);

/* The steps of the end (sync_end.c), in the order sync_phase.c runs them.
 * Each submitting step returns 0 or -1 with err. */

/* Move the retryable failures to the retry list in relation order:
 * returns the number of levels (0: nothing to retry), -1 on OOM. */
int oc_sync_retry_prepare(oc_sync_t *s, char *err, size_t errlen);
int oc_sync_retry_level(oc_sync_t *s, int level, char *err, size_t errlen);
/* Owned entities not produced by this run (and not failed): counted into
 * stats.candidates. */
size_t oc_sync_candidates(oc_sync_t *s);
/* Re-list the owned entities bounded by `before`, confirming the
 * candidates still there (asynchronous; oc_sync_confirm_state). */
int oc_sync_confirm(oc_sync_t *s, const char *before, char *err,
                    size_t errlen);
/* 0: listing, 1: complete, -1: failed (message in *err). */
int oc_sync_confirm_state(const oc_sync_t *s, const char **err);
/* Protect relation targets, order the rest for deletion (sources before
 * targets, also with delete_dependents: a target deleted first would take
 * its dependents along and their own deletes would come back "not
 * deleted"). Returns the number of levels, -1 on OOM. */
int oc_sync_delete_prepare(oc_sync_t *s, char *err, size_t errlen);
int oc_sync_delete_level(oc_sync_t *s, int level, char *err, size_t errlen);
/* Cancel the owned listing if it still runs (-> failed, `why`). */
void oc_sync_stop_listing(oc_sync_t *s, const char *why);
void oc_sync_strlist_free(strlist_t *l);

#endif
