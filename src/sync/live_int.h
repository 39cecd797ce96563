/*
 * live_int.h - the live session's internals, shared by live_session.c
 * (operations, batches, the window, the ownership index) and live_batch.c
 * (applying one batch: upserts in levels, retry, the ownership search,
 * deletes in levels).
 */
#ifndef OC_LIVE_INT_H
#define OC_LIVE_INT_H

#include "live_session.h"
#include "diff.h"

#define LIVE_WINDOW_MS 50
#define LIVE_WINDOW_MAX_MS 1000
#define LIVE_BATCH 20
#define LIVE_BYTES (1024 * 1024)
#define LIVE_DELETES 100

/* Index flags (oc_index_t of the session: one hash, the time of the last
 * change in ms). */
#define OWN_YES 1u
#define OWN_GONE 2u

/* A write that took effect: its entity's seqs entry, its event's seq. */
typedef struct lwrote {
  long e;
  uint64_t seq;
} lwrote_t;

/* One write: what an operation asked for one entity. */
typedef struct lwrite {
  int what;                      /* OC_LIVE_UPSERT / DELETE / IMPLICIT */
  unsigned flags;                /* OC_LIVE_CHILD */
  jv entity;
  char *text;                    /* upserts: the JSON sent */
  size_t len;
  char *key;                     /* blueprint \0 identifier; NULL: none */
  size_t klen;
  uint64_t hash;                 /* of text (upserts) */
  int dead;                      /* folded into a later write of the op */
} lwrite_t;

/* What became of an entity of a batch. */
enum {
  O_PENDING, O_CREATED, O_UPDATED, O_FAILED, O_DELETED, O_DELETE_FAILED,
  O_NOT_OWNED, O_KEPT, O_NOT_DELETED
};

typedef struct lfail {
  char *bp, *id, *code, *message;
  int status, retryable, is_delete;
} lfail_t;

typedef struct strvec {
  char **v;
  size_t n;
} strvec_t;

struct oc_live_op {
  oc_live_t *lv;                 /* NULL once the session is gone */
  int refs;                      /* the caller's and the session's */
  int committed, done;
  oc_live_op_opts_t o;
  char *event_type;
  lwrite_t *w;
  size_t nw, capw, next;         /* next: the first write not queued */
  oc_index_t *keys;              /* key -> write index (hash 0) */
  oc_index_t *before;            /* diffs: key -> content hash */
  jv befores;                    /* diffs: the before entities, in order */
  int no_delete;
  size_t pending;                /* batches not done that hold its writes */
  uint64_t last_batch;
  oc_live_report_t rep;
  lfail_t *fails;
  size_t nfails, capfails;
  strvec_t errors;
  jv planned[2];                 /* plan: upserts, deletes */
  struct oc_live_op *next_all;   /* the session's list of live ops */
};

/* The final write of one key in a batch. */
typedef struct lent {
  lwrite_t w;
  oc_live_op_t *op;
  oc_live_op_t **also;           /* earlier ops that asked the same */
  size_t nalso;
  int level, mark, outcome, owned, searched, search_failed, related,
    retried;
  int status, retryable;
  char *code, *message, *by;     /* by: who still relates (kept) */
  char *bp, *id;
} lent_t;

typedef struct lbp {             /* upserts per blueprint in the open batch */
  char *bp;
  size_t n, bytes;
} lbp_t;

enum {
  B_OPEN, B_CLOSED, B_UPSERT, B_RETRY, B_DECIDE, B_DELETE, B_DONE
};

typedef struct lbatch {
  uint64_t id;
  int state, plan;
  int merge, create_missing, delete_dependents;
  char *event_type;
  int64_t opened_ms;
  lent_t *ents;
  size_t n, cap;
  oc_index_t *keys;              /* key -> entity index */
  lbp_t *bps;
  size_t nbps, ndeletes;
  oc_live_op_t **ops;
  size_t nops, capops;
  /* applying */
  size_t *order;                 /* entity indexes of the current levels */
  size_t norder;
  int level, nlevels;
  size_t outstanding;            /* Port jobs of the current step */
  size_t searching;              /* ownership searches not answered */
  int search_failed;
  char *search_err;
  oc_hashset_t *targets;         /* relation targets of its upserts */
  size_t upsert_requests, delete_requests, searches;
  struct lbatch *next;
} lbatch_t;

/* A Port job of the session (cancelled on free). */
typedef struct ljob {
  oc_live_t *lv;
  lbatch_t *b;
  uint64_t id;
  int kind;                      /* LJ_UPSERT, LJ_DELETE, LJ_SEARCH */
  size_t *idx;                   /* entity indexes, in request order */
  size_t n;
  struct ljob *prev, *next;
} ljob_t;
enum { LJ_UPSERT, LJ_DELETE, LJ_SEARCH };

typedef struct llog {
  int level;
  char *msg;
} llog_t;

struct oc_live {
  oc_port_t *port;
  oc_loop_t *loop;
  oc_live_opts_t o;
  lbatch_t *head, *tail;         /* FIFO; the head is applied first */
  uint64_t timer;                /* the open batch's window */
  uint64_t next_id;
  oc_index_t *owned;             /* ownership index; never NULL */
  oc_index_t *seqs;              /* key -> the latest event seq that wrote
                                    it (hash 0); never NULL */
  struct lwrote *wrote;          /* writes that took effect, with their
                                    event's seq, since the last
                                    oc_live_seqs_changed */
  size_t nwrote, capwrote;
  oc_live_op_t *ops_all;         /* operations not done */
  int indexed;                   /* adopted from a resync */
  ljob_t *jobs;
  llog_t *logs;
  size_t nlogs, caplogs, logs_first;
  char *last_log;
  oc_live_stats_t st;
  oc_buf_t scratch, key;
};

/* live_session.c */
void oc_live_log(oc_live_t *lv, int level, const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 3, 4)))
#endif
  ;
void oc_live_own(oc_live_t *lv, const char *key, size_t klen, int yes);
int oc_live_owned(const oc_live_t *lv, const char *key, size_t klen);
void oc_live_batch_done(oc_live_t *lv, lbatch_t *b);
char *oc_live_dupn(const char *p, size_t n);
void oc_live_strvec_add(strvec_t *v, const char *s);

/* live_batch.c */
/* Start applying batch b (the head, closed). */
void oc_live_batch_start(oc_live_t *lv, lbatch_t *b);
void oc_live_job_free(ljob_t *j);

#endif
