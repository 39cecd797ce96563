/*
 * sync_int.h - the sync session's internals, shared by sync.c (session,
 * owned index, upserts) and sync_end.c (retry, reconciliation).
 */
#ifndef OC_SYNC_INT_H
#define OC_SYNC_INT_H

#include "sync.h"

#define DEFAULT_BATCH 20
#define DEFAULT_BYTES (1024 * 1024)
#define DEFAULT_PENDING 200

#define FLAG_CANDIDATE 4u
#define FLAG_CONFIRMED 8u

/* An entity on its way to Port. */
typedef struct ent {
  char *text;                    /* JSON of the entity */
  size_t len;
  char *key;                     /* blueprint \0 identifier; NULL: none */
  size_t klen;
  long owned;                    /* owned index entry, or -1 */
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

struct oc_sync {
  oc_port_t *port;
  oc_sync_opts_t o;
  char *event_type, *resync_id;
  oc_projection_t **slots;
  size_t nslots;
  oc_index_t *owned;
  int owned_state, confirm_state;
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

#endif
