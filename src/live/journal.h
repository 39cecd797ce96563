/*
 * journal.h - the durable journal of live events, on SQLite.
 *
 * A live event (a webhook: path, headers, body, time of receipt) is
 * appended before its sender gets a 2xx, and leaves the journal when it
 * has been applied (done), so that an event acknowledged before a crash
 * (SIGKILL, power loss) is applied after the restart: at least once in
 * delivery, exactly once in effect since applying an event is idempotent
 * (upserts and deletes of named entities).
 *
 * Durability: SQLite in WAL mode. An append commits with synchronous=FULL:
 * the WAL is fsynced before oc_journal_append returns, so the record
 * survives SIGKILL and power loss (with NORMAL, a WAL commit is synced
 * only at the next checkpoint: it survives a crashed process but may be
 * lost with the power). Claims, done, fail and requeue commit with
 * synchronous=NORMAL: written but not waited for; power loss may undo the
 * last of them (an event comes back and is applied again; never lost), and
 * the next append's sync makes them durable too (the WAL is synced in
 * order). The database file's directory is fsynced at open (SQLite syncs
 * the directory of the WAL itself).
 *
 * One consumer per journal: the database is opened in EXCLUSIVE locking
 * mode, so a second opener (another process, another handle) fails with
 * OC_JOURNAL_EBUSY until the first closes or dies (the kernel releases a
 * dead process's locks), and WAL runs without a shared-memory file. As
 * the opener is then the only one, claims left by a previous owner are
 * released at open: a crash never strands an event.
 *
 * Shared (opts.shared, nginx's workers): every process appends to the
 * one journal (NORMAL locking, WAL with its shared-memory file; a writer
 * waits for another's transaction, a few ms, up to busy_ms) and one of
 * them, chosen outside (ocean.event_queue: a lock file), claims. Claims
 * are then left alone at open: the claimer releases its predecessor's
 * with oc_journal_release_all once it holds that role. The ids (commit
 * order across all processes) are the order of the events' answers.
 *
 * Records: a claim hands out pending events oldest first and counts an
 * attempt; a claimed event is not handed out again until it is done,
 * failed, or its lease ends (a consumer that lost it). An event whose
 * attempts reach max_attempts moves to the dead letters when it fails, or
 * when it would be claimed again (the process died while applying it,
 * each time): a poison event cannot loop forever. Dead letters stay until
 * requeued (attempts start over) or done.
 *
 * Errors: functions returning int give 0 (or a count) on success and -1
 * with a message naming the journal's path in err; the message of an
 * open error is also classified (oc_journal_open's code). Nothing here
 * aborts or exits.
 */
#ifndef OC_JOURNAL_H
#define OC_JOURNAL_H

#include <stddef.h>

typedef struct oc_journal oc_journal_t;

typedef struct oc_journal_opts {
  unsigned max_attempts;         /* claims before the dead letters; 0: 5 */
  double lease_s;                /* a claim's lease, seconds; 0: 300 */
  int skip_check;                /* 1: no PRAGMA quick_check at open */
  int existing;                  /* 1: only a journal that exists: no file
                                    or folder is created, and a file that
                                    is not a journal (an empty one too)
                                    is refused (OC_JOURNAL_ENOTJOURNAL) */
  int read_only;                 /* 1: existing, and nothing is written:
                                    no claim released, every writing call
                                    fails (PRAGMA query_only); still
                                    locked, so busy when in use */
  int shared;                    /* 1: several processes open it at once
                                    (nginx's workers): NORMAL locking, a
                                    writer waits for another's
                                    transaction up to busy_ms; claims
                                    are not released at open (see
                                    oc_journal_release_all). With
                                    read_only: reads beside them */
  unsigned busy_ms;              /* shared: the longest wait for another
                                    handle's transaction, ms; 0: 2000 */
} oc_journal_opts_t;

/* Why an open failed. */
enum {
  OC_JOURNAL_EOTHER = 1,         /* I/O error, out of memory... */
  OC_JOURNAL_EBUSY,              /* in use by another handle or process */
  OC_JOURNAL_ECORRUPT,           /* not a SQLite file, or a damaged one */
  OC_JOURNAL_ENOTJOURNAL,        /* a SQLite database, not a journal */
  OC_JOURNAL_EACCESS             /* cannot be created, opened or written */
};

/* An event. headers: name\0value\0 pairs, back to back (headers_len
 * bytes; names and values hold no NUL). In records handed to a callback,
 * every pointer is valid during the call only. */
typedef struct oc_journal_record {
  long long id;                  /* > 0, increasing, never reused */
  double received_at;            /* seconds since the epoch */
  const char *path;
  size_t path_len;
  const char *headers;
  size_t headers_len;
  const char *body;
  size_t body_len;
  unsigned attempts;             /* claims so far */
  int claimed;                   /* listing only: claimed and leased now */
  const char *last_error;        /* the last fail's message, or NULL */
} oc_journal_record_t;

/* Called once per record; a non-zero return stops the walk (and is
 * returned). */
typedef int (*oc_journal_fn)(void *ud, const oc_journal_record_t *r);

typedef struct oc_journal_stats {
  long long pending;             /* not done, not dead (claimed included) */
  long long claimed;             /* of which claimed, lease running */
  long long dead;
  double oldest;                 /* received_at of the oldest pending; 0 */
} oc_journal_stats_t;

/* Open (creating it and its missing folders, mode 0700, unless
 * opts->existing or opts->read_only) the journal at path, after checking
 * that every page of an existing one reads back (PRAGMA quick_check: one
 * read of the file; opts->skip_check skips it).
 * NULL on failure, with a message in err and the reason in *code (code
 * may be NULL). */
oc_journal_t *oc_journal_open(const char *path, const oc_journal_opts_t *o,
                              int *code, char *err, size_t errlen);
/* Shared: release every claim (the previous claimer is gone): pending
 * again, their attempts still counted (as a crash's claims at an
 * EXCLUSIVE open). Returns how many, or -1. */
int oc_journal_release_all(oc_journal_t *j, char *err, size_t errlen);

/* SQLite's data_version: changes when another handle commits (this
 * handle's own commits leave it alone). 0 with err on failure. */
long long oc_journal_data_version(oc_journal_t *j, char *err, size_t errlen);

/* The latest writers: for each entity (key: blueprint \0 identifier) the
 * receive time (µs) of the newest event whose write of it took effect,
 * kept with the events so that the next process to apply them (after a
 * crash, a takeover in nginx) leaves an older event's write of it out, as
 * the process that applied the newer one would have (live_session.h). */
typedef struct oc_journal_mark {
  const char *key;
  size_t klen;
  long long seq;
} oc_journal_mark_t;

/* Keep m[0..n) in one transaction; a key's seq only grows. 0 or -1. */
int oc_journal_mark(oc_journal_t *j, const oc_journal_mark_t *m, size_t n,
                    char *err, size_t errlen);
/* fn for every kept writer whose seq >= since; their count, or -1. */
int oc_journal_marks(oc_journal_t *j, long long since,
                     void (*fn)(void *ud, const char *key, size_t klen,
                                long long seq),
                     void *ud, char *err, size_t errlen);
/* Forget the writers older than before (µs); their count, or -1. */
int oc_journal_prune_marks(oc_journal_t *j, long long before, char *err,
                           size_t errlen);

/* Close and free; NULL is fine. */
void oc_journal_close(oc_journal_t *j);
const char *oc_journal_path(const oc_journal_t *j);

/* Append r (its id, attempts, claimed and last_error are ignored): on
 * return 0 it is on disk, with its id in *id. */
int oc_journal_append(oc_journal_t *j, const oc_journal_record_t *r,
                      long long *id, char *err, size_t errlen);

/* Append r[0..n) in one transaction, with one sync: all are on disk when
 * it returns 0 (ids in ids[0..n)), or none is. */
int oc_journal_append_n(oc_journal_t *j, const oc_journal_record_t *r,
                        size_t n, long long *ids, char *err, size_t errlen);

/* Claim up to n pending events, oldest first, at time now (seconds since
 * the epoch): fn gets each, attempts already counted. The claims are
 * committed after the last call; if fn stops the walk, or the commit
 * fails, none is (and -1 or fn's value is returned). Returns the number
 * handed out. */
int oc_journal_claim(oc_journal_t *j, unsigned n, double now,
                     oc_journal_fn fn, void *ud, char *err, size_t errlen);

/* Events this handle's claims moved to the dead letters as abandoned
 * (claimed max_attempts times, never done or failed), since it opened. */
unsigned long oc_journal_abandoned(const oc_journal_t *j);

/* Walk the pending events (dead = 0) or the dead letters (dead = 1),
 * oldest first, at most limit (0: all). Returns the number walked. */
int oc_journal_list(oc_journal_t *j, int dead, unsigned limit, double now,
                    oc_journal_fn fn, void *ud, char *err, size_t errlen);

/* The events ids[0..n) are applied: removed. Returns how many existed. */
int oc_journal_done(oc_journal_t *j, const long long *ids, size_t n,
                    char *err, size_t errlen);

/* The claims on events ids[0..n) are given back unapplied (the consumer
 * stops: a graceful shutdown): each is pending again at once, and the
 * attempt its claim counted is taken back, so that stopping while an
 * event is being applied never moves it towards the dead letters (a
 * crash, which cannot give its claims back, still counts them). Events
 * not claimed, done or dead are left alone. Returns how many were
 * released. */
int oc_journal_release(oc_journal_t *j, const long long *ids, size_t n,
                       char *err, size_t errlen);

/* Event id failed with msg: its claim ends, and it stays pending (1) or
 * moves to the dead letters (2) when its attempts reached max_attempts,
 * or at once when dead_now (a failure retrying cannot fix). 0: no such
 * pending event. An event failed without a claim counts an attempt here. */
int oc_journal_fail(oc_journal_t *j, long long id, const char *msg,
                    int dead_now, char *err, size_t errlen);

/* Dead letter id goes back to pending, attempts 0. 1, or 0 when there is
 * no such dead letter. */
int oc_journal_requeue(oc_journal_t *j, long long id, char *err,
                       size_t errlen);

int oc_journal_stats(oc_journal_t *j, double now, oc_journal_stats_t *st,
                     char *err, size_t errlen);

/* The journal files of folder dir (for adopting the journals of dead
 * processes): the names, without the folder, of its entries that end in
 * ".sqlite3", as NUL-terminated strings back to back in a malloc'ed
 * buffer (*out, *len bytes; *out is NULL when there are none; the caller
 * frees it). A folder that does not exist has none. 0, or -1 with err. */
int oc_journal_files(const char *dir, char **out, size_t *len, char *err,
                     size_t errlen);

#endif
