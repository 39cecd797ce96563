/*
 * journal.c - the live-event journal of journal.h on SQLite (WAL mode,
 * EXCLUSIVE locking, or NORMAL when shared; synchronous FULL for appends).
 *
 * Owns: the sqlite3 connection and its prepared statements (prepared once
 * at open, finalized at close; those of the latest writers prepared per
 * call). Two tables:
 *   event(id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL,
 *         path TEXT, headers BLOB, body BLOB, dead INTEGER, attempts
 *         INTEGER, last_error TEXT, claimed_until REAL)
 * with an index on (dead, id), the order in which the queue is read, and
 *   written(key BLOB PRIMARY KEY, seq INTEGER) WITHOUT ROWID
 * the latest writers (journal.h, oc_journal_mark).
 * AUTOINCREMENT keeps ids increasing even after the newest event is done,
 * so an id names one event forever. The file carries application_id
 * JOURNAL_APP_ID and user_version JOURNAL_SCHEMA, so that another SQLite
 * database is never mistaken for a journal (and written into).
 *
 * Every entry point starts with recover(): a caller's callback may leave
 * by a longjmp (a Lua memory error) in the middle of a walk or a claim;
 * the statements it left running are reset and the open transaction is
 * rolled back, so the claims it was making are void.
 */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define JOURNAL_APP_ID 0x6f636a31    /* "ocj1" */
#define JOURNAL_SCHEMA 1
#define DEFAULT_MAX_ATTEMPTS 5u
#define DEFAULT_LEASE_S 300.0
#define DEFAULT_BUSY_MS 2000u

enum stmt_id {
  S_INSERT, S_CANDIDATES, S_CLAIM, S_ABANDON, S_GET, S_LIST, S_DONE,
  S_FAIL, S_STATE, S_REQUEUE, S_STATS, S_RELEASE, S_BEGIN, S_COMMIT,
  S_ROLLBACK, S_RELEASE_ALL, S_COUNT
};

static const char *const SQL[S_COUNT] = {
  "INSERT INTO event(received_at, path, headers, body) VALUES (?1, ?2, ?3, ?4)",
  "SELECT id, attempts FROM event WHERE dead = 0 AND"
  " (claimed_until IS NULL OR claimed_until <= ?1) ORDER BY id LIMIT ?2",
  "UPDATE event SET attempts = attempts + 1, claimed_until = ?2 WHERE id = ?1",
  "UPDATE event SET dead = 1, claimed_until = NULL, last_error = ?2 WHERE id = ?1",
  "SELECT id, received_at, path, headers, body, attempts, last_error,"
  " claimed_until FROM event WHERE id = ?1",
  "SELECT id, received_at, path, headers, body, attempts, last_error,"
  " claimed_until FROM event WHERE dead = ?1 ORDER BY id LIMIT ?2",
  "DELETE FROM event WHERE id = ?1",
  /* an attempt is counted here only when the event was not claimed */
  "UPDATE event SET last_error = ?2, claimed_until = NULL,"
  " dead = (attempts + (claimed_until IS NULL) >= ?3),"
  " attempts = attempts + (claimed_until IS NULL)"
  " WHERE id = ?1 AND dead = 0",
  "SELECT dead FROM event WHERE id = ?1",
  "UPDATE event SET dead = 0, attempts = 0, last_error = NULL,"
  " claimed_until = NULL WHERE id = ?1 AND dead = 1",
  "SELECT coalesce(sum(dead = 0), 0),"
  " coalesce(sum(dead = 0 AND claimed_until > ?1), 0),"
  " coalesce(sum(dead = 1), 0),"
  " min(CASE WHEN dead = 0 THEN received_at END) FROM event",
  /* a claim given back unapplied: its attempt is taken back too */
  "UPDATE event SET claimed_until = NULL, attempts = max(attempts - 1, 0)"
  " WHERE id = ?1 AND dead = 0 AND claimed_until IS NOT NULL",
  "BEGIN IMMEDIATE",
  "COMMIT",
  "ROLLBACK",
  "UPDATE event SET claimed_until = NULL WHERE claimed_until IS NOT NULL",
};

static const char SCHEMA[] =
  "CREATE TABLE IF NOT EXISTS event ("
  " id INTEGER PRIMARY KEY AUTOINCREMENT,"
  " received_at REAL NOT NULL,"
  " path TEXT NOT NULL,"
  " headers BLOB NOT NULL,"
  " body BLOB NOT NULL,"
  " dead INTEGER NOT NULL DEFAULT 0,"
  " attempts INTEGER NOT NULL DEFAULT 0,"
  " last_error TEXT,"
  " claimed_until REAL);"
  "CREATE INDEX IF NOT EXISTS event_queue ON event(dead, id);"
  /* the latest event (its receive time, µs) that wrote each entity:
     journal.h, oc_journal_mark */
  "CREATE TABLE IF NOT EXISTS written ("
  " key BLOB PRIMARY KEY,"
  " seq INTEGER NOT NULL) WITHOUT ROWID;";

struct oc_journal {
  sqlite3 *db;
  sqlite3_stmt *st[S_COUNT];
  char *path;
  unsigned max_attempts;
  double lease_s;
  int check;                     /* quick_check at open */
  int existing;                  /* opened only if it is a journal already */
  int read_only;                 /* opened read-only: nothing written */
  int had_wal;                   /* its -wal file had frames at open */
  int full_sync;                 /* synchronous is FULL now */
  int shared;                    /* NORMAL locking, several processes */
  unsigned busy_ms;              /* shared: longest wait for a lock */
  struct timespec busy_since;    /* shared: the current wait's start */
  unsigned long abandoned;       /* dead-lettered by claims since open */
};

/* {==================== errors ==================== */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Why SQLite failed, in words that say what to do. */
static int classify(int rc)
{
  switch (rc & 0xff) {
  case SQLITE_BUSY: case SQLITE_LOCKED: return OC_JOURNAL_EBUSY;
  case SQLITE_CORRUPT: case SQLITE_NOTADB: return OC_JOURNAL_ECORRUPT;
  case SQLITE_CANTOPEN: case SQLITE_READONLY: case SQLITE_PERM:
  case SQLITE_AUTH: return OC_JOURNAL_EACCESS;
  default: return OC_JOURNAL_EOTHER;
  }
}

static const char *what_of(int rc)
{
  switch (rc & 0xff) {
  case SQLITE_BUSY: case SQLITE_LOCKED:
    return "is in use by another process or handle";
  case SQLITE_CORRUPT: return "is corrupt";
  case SQLITE_NOTADB: return "is not a SQLite database (or is corrupt)";
  case SQLITE_CANTOPEN: return "cannot be opened";
  case SQLITE_READONLY: return "is read-only";
  case SQLITE_FULL: return "cannot grow: the disk is full";
  case SQLITE_IOERR: return "had an I/O error";
  case SQLITE_TOOBIG: return "refused a record too large";
  default: return "failed";
  }
}

/* Whether the OS error SQLite kept (sqlite3_system_errno) belongs to the
 * failure of extended code xrc: SQLite records errno only for CANTOPEN and
 * IOERR, and keeps it until the next of those, so after any other failure
 * it is stale. Of those, the ones SQLite raises without a failed system
 * call (a short read, out of memory, a corrupt file system, the special
 * CANTOPEN cases that say their own cause) have none either. */
static int errno_belongs(int xrc)
{
  switch (xrc) {
  case SQLITE_CANTOPEN: return 1;
  case SQLITE_IOERR_SHORT_READ: case SQLITE_IOERR_NOMEM:
  case SQLITE_IOERR_CORRUPTFS: return 0;
  default: return (xrc & 0xff) == SQLITE_IOERR;
  }
}

/* "journal PATH <what> (<doing>: <sqlite message>[: <errno text>])", the
 * OS error only when it belongs to this failure (errno_belongs). */
static int db_err(const oc_journal_t *j, int rc, const char *doing,
                  char *err, size_t errlen)
{
  int xrc = j->db ? sqlite3_extended_errcode(j->db) : rc;
  int sys = j->db && errno_belongs(xrc) ? sqlite3_system_errno(j->db) : 0;
  const char *msg = j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc);
  if ((xrc & 0xff) != (rc & 0xff)) sys = 0;   /* not the error SQLite kept */
  if (sys)
    set_err(err, errlen, "journal %s %s (%s: %s: %s)", j->path, what_of(rc),
            doing, msg, strerror(sys));
  else
    set_err(err, errlen, "journal %s %s (%s: %s)", j->path, what_of(rc),
            doing, msg);
  return -1;
}

/* }==================== */

/* {==================== statements ==================== */

/* Reset what a longjmp may have left running; roll back its transaction. */
static void recover(oc_journal_t *j)
{
  int i;
  for (i = 0; i < S_COUNT; i++)
    if (j->st[i] && sqlite3_stmt_busy(j->st[i])) sqlite3_reset(j->st[i]);
  if (!sqlite3_get_autocommit(j->db)) {
    sqlite3_step(j->st[S_ROLLBACK]);
    sqlite3_reset(j->st[S_ROLLBACK]);
  }
}

/* Run a statement that returns no row: SQLITE_DONE or the error code. */
static int run(oc_journal_t *j, enum stmt_id s)
{
  int rc = sqlite3_step(j->st[s]);
  sqlite3_reset(j->st[s]);
  return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

/* Make the next commits wait for the disk (FULL) or not (NORMAL). Not a
 * cached statement: SQLite applies `PRAGMA synchronous = X` when it
 * prepares it, and running a prepared one again changes nothing. */
static int set_sync(oc_journal_t *j, int full)
{
  int rc;
  if (j->full_sync == full) return SQLITE_DONE;
  rc = sqlite3_exec(j->db, full ? "PRAGMA synchronous = FULL"
                                : "PRAGMA synchronous = NORMAL", NULL, NULL,
                    NULL);
  if (rc != SQLITE_OK) return rc;
  j->full_sync = full;
  return SQLITE_DONE;
}

/* BEGIN IMMEDIATE, with the given sync for its commit. */
static int begin(oc_journal_t *j, int full)
{
  int rc = set_sync(j, full);
  return rc == SQLITE_DONE ? run(j, S_BEGIN) : rc;
}

/* An error inside a transaction: the message is made first (a rollback
 * would replace SQLite's), then the transaction rolled back. */
static int tx_err(oc_journal_t *j, int rc, const char *doing, char *err,
                  size_t errlen)
{
  db_err(j, rc, doing, err, errlen);
  recover(j);
  return -1;
}

static int bind_text(sqlite3_stmt *s, int i, const char *p, size_t n)
{
  if (n > INT_MAX) return SQLITE_TOOBIG;
  return sqlite3_bind_text(s, i, p ? p : "", (int)n, SQLITE_STATIC);
}

static int bind_blob(sqlite3_stmt *s, int i, const char *p, size_t n)
{
  if (n > INT_MAX) return SQLITE_TOOBIG;
  return sqlite3_bind_blob(s, i, p ? p : "", (int)n, SQLITE_STATIC);
}

/* The record of the row the statement is on (columns in S_GET's order). */
static void read_row(sqlite3_stmt *s, double now, oc_journal_record_t *r)
{
  r->id = sqlite3_column_int64(s, 0);
  r->received_at = sqlite3_column_double(s, 1);
  r->path = (const char *)sqlite3_column_text(s, 2);
  r->path_len = (size_t)sqlite3_column_bytes(s, 2);
  r->headers = (const char *)sqlite3_column_blob(s, 3);
  r->headers_len = (size_t)sqlite3_column_bytes(s, 3);
  r->body = (const char *)sqlite3_column_blob(s, 4);
  r->body_len = (size_t)sqlite3_column_bytes(s, 4);
  r->attempts = (unsigned)sqlite3_column_int(s, 5);
  r->last_error = (const char *)sqlite3_column_text(s, 6);
  r->claimed = sqlite3_column_type(s, 7) != SQLITE_NULL
               && sqlite3_column_double(s, 7) > now;
  if (!r->path) r->path = "";
  if (!r->headers) r->headers = "";
  if (!r->body) r->body = "";
}

/* }==================== */

/* {==================== open / close ==================== */

/* Create the missing folders of path's directory (mode 0700). */
static int make_parents(const char *path, char *err, size_t errlen)
{
  char *p = strdup(path), *s;
  int rc = 0;
  if (!p) {
    set_err(err, errlen, "journal %s: out of memory", path);
    return -1;
  }
  for (s = strchr(p + 1, '/'); s && rc == 0; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      set_err(err, errlen, "journal %s cannot be created: cannot create its "
              "folder %s: %s", path, p, strerror(errno));
      rc = -1;
    }
    *s = '/';
  }
  free(p);
  return rc;
}

/* fsync path's directory, so that a file just created there survives a
 * power loss. Best effort, as SQLite's own directory syncs: some file
 * systems refuse to sync a directory. */
static void sync_parent(const char *path)
{
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : strdup(".");
  int fd;
  if (!dir) return;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

/* The integer a one-row, one-column query gives; rc in *rc. */
static long long query_int(sqlite3 *db, const char *sql, int *rc)
{
  sqlite3_stmt *s = NULL;
  long long v = 0;
  *rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
  if (*rc != SQLITE_OK) return 0;
  *rc = sqlite3_step(s);
  if (*rc == SQLITE_ROW) {
    v = sqlite3_column_int64(s, 0);
    *rc = SQLITE_OK;
  }
  sqlite3_finalize(s);
  return v;
}

/* Refuse a SQLite database that is not a journal, or a newer one. */
static int check_identity(oc_journal_t *j, int *code, char *err,
                          size_t errlen)
{
  int rc;
  long long tables = query_int(j->db, "SELECT count(*) FROM sqlite_master", &rc);
  long long app = rc == SQLITE_OK
    ? query_int(j->db, "PRAGMA application_id", &rc) : 0;
  long long version = rc == SQLITE_OK
    ? query_int(j->db, "PRAGMA user_version", &rc) : 0;
  if (rc != SQLITE_OK) {
    *code = classify(rc);
    return db_err(j, rc, "reading it", err, errlen);
  }
  if (j->existing && app == 0 && tables == 0) {
    /* what SQLite reads as an empty database: a 0-byte file, or one that
       was never written; made a journal only by an open that may create */
    *code = OC_JOURNAL_ENOTJOURNAL;
    set_err(err, errlen, "journal %s is not a lua-ocean journal (an empty "
            "file or database): left as it is", j->path);
    return -1;
  }
  if ((app == 0 && tables > 0) || (app != 0 && app != JOURNAL_APP_ID)) {
    *code = OC_JOURNAL_ENOTJOURNAL;
    set_err(err, errlen, "journal %s is a SQLite database but not a "
            "lua-ocean journal (application_id %lld): refusing to write "
            "into it", j->path, app);
    return -1;
  }
  if (version > JOURNAL_SCHEMA) {
    *code = OC_JOURNAL_ENOTJOURNAL;
    set_err(err, errlen, "journal %s was written by a newer lua-ocean "
            "(schema %lld; this one reads %d)", j->path, version,
            JOURNAL_SCHEMA);
    return -1;
  }
  return 0;
}

static int exec(oc_journal_t *j, const char *sql, const char *doing,
                int *code, char *err, size_t errlen)
{
  int rc = sqlite3_exec(j->db, sql, NULL, NULL, NULL);
  if (rc == SQLITE_OK) return 0;
  *code = classify(rc);
  return db_err(j, rc, doing, err, errlen);
}

/* A damaged file fails here rather than on the event whose page is hurt:
 * quick_check reads every page and answers "ok" or what is wrong. */
static int check_pages(oc_journal_t *j, int *code, char *err, size_t errlen)
{
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(j->db, "PRAGMA quick_check(1)", -1, &s, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    const char *answer = (const char *)sqlite3_column_text(s, 0);
    if (!answer || strcmp(answer, "ok") != 0) {
      *code = OC_JOURNAL_ECORRUPT;
      set_err(err, errlen, "journal %s is corrupt (quick_check: %s); move "
              "it aside to start a new one", j->path,
              answer ? answer : "no answer");
      sqlite3_finalize(s);
      return -1;
    }
    rc = SQLITE_OK;
  }
  sqlite3_finalize(s);
  if (rc == SQLITE_OK) return 0;
  *code = classify(rc);
  return db_err(j, rc, "checking it", err, errlen);
}

/* Shared: SQLite's busy handler. Waits in short sleeps (0.1 ms growing to
 * 1 ms: another handle's transaction lasts a few ms, its fsync included)
 * until busy_ms have passed since this wait began; 0 gives up (the call
 * fails "in use"). SQLite's own handler sleeps 1 s steps where usleep is
 * not known at its build, too long for an nginx worker. */
static int on_busy(void *ud, int count)
{
  oc_journal_t *j = ud;
  struct timespec now, nap;
  long long waited_ms;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (count == 0) j->busy_since = now;
  waited_ms = (long long)(now.tv_sec - j->busy_since.tv_sec) * 1000
              + (now.tv_nsec - j->busy_since.tv_nsec) / 1000000;
  if (waited_ms >= (long long)j->busy_ms) return 0;
  nap.tv_sec = 0;
  nap.tv_nsec = (count < 10 ? (long)(count + 1) * 100000L : 1000000L);
  nanosleep(&nap, NULL);
  return 1;
}

/* WAL, which needs the journal_mode query's answer to be checked: a file
 * system without the locking WAL needs answers with another mode. */
static int use_wal(oc_journal_t *j, int *code, char *err, size_t errlen)
{
  sqlite3_stmt *s = NULL;
  int rc, wal = 0, tries = 0;
  for (;;) {
    rc = sqlite3_prepare_v2(j->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(s, 0);
      wal = mode && strcmp(mode, "wal") == 0;
      rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    s = NULL;
    /* shared: another process opening the new file at the same moment
       holds it; the switch fails busy without asking the busy handler */
    if (!(j->shared && (rc & 0xff) == SQLITE_BUSY && on_busy(j, tries++)))
      break;
  }
  if (rc != SQLITE_OK) {
    *code = classify(rc);
    return db_err(j, rc, "switching to write-ahead logging", err, errlen);
  }
  if (!wal) {
    *code = OC_JOURNAL_EOTHER;
    set_err(err, errlen, "journal %s cannot use write-ahead logging on this "
            "file system", j->path);
    return -1;
  }
  return 0;
}

/* Create the schema (if new) and release every claim (not when shared),
 * in one transaction: its commit takes the write lock that EXCLUSIVE mode
 * keeps. */
static int init_schema(oc_journal_t *j, int *code, char *err, size_t errlen)
{
  char sql[sizeof SCHEMA + 256];
  snprintf(sql, sizeof sql,
           "BEGIN IMMEDIATE; %s PRAGMA application_id = %d;"
           " PRAGMA user_version = %d;%s COMMIT;",
           SCHEMA, JOURNAL_APP_ID, JOURNAL_SCHEMA,
           j->shared ? ""     /* the claimer's, alive or not: not ours */
           : " UPDATE event SET claimed_until = NULL"
             " WHERE claimed_until IS NOT NULL;");
  if (exec(j, sql, "creating its table", code, err, errlen) == 0) return 0;
  sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
  return -1;
}

static int prepare_all(oc_journal_t *j, int *code, char *err, size_t errlen)
{
  int i;
  for (i = 0; i < S_COUNT; i++) {
    int rc = sqlite3_prepare_v3(j->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT,
                            &j->st[i], NULL);
    if (rc != SQLITE_OK) {
      *code = classify(rc);
      return db_err(j, rc, "preparing its statements", err, errlen);
    }
  }
  return 0;
}

/* The steps of an open after the connection exists. */
static int setup(oc_journal_t *j, int *code, char *err, size_t errlen)
{
  sqlite3_extended_result_codes(j->db, 1);
  if (j->shared)
    sqlite3_busy_handler(j->db, on_busy, j);
  if ((!j->shared
       && exec(j, "PRAGMA locking_mode = EXCLUSIVE", "locking it", code, err,
               errlen) != 0)
      || check_identity(j, code, err, errlen) != 0
      || (j->check && check_pages(j, code, err, errlen) != 0))
    return -1;
  /* read-only: SQLITE_OPEN_READONLY cannot take EXCLUSIVE locking on a
     WAL file, which is how a journal in use is told (busy) unless shared
     (it then reads beside the processes that share it); so a
     read-write connection that refuses every write (query_only), with
     nothing set up (no WAL switch, no claim released) */
  if (j->read_only) {
    /* nor is the WAL a crashed process left checkpointed at close: the
       files stay byte for byte as they were (the next writer recovers
       it). Without such a WAL, the close removes the one the reads made
       (empty: nothing is checkpointed) */
    int rc = j->had_wal
      ? sqlite3_db_config(j->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1,
                          (int *)NULL)
      : SQLITE_OK;
    if (rc != SQLITE_OK) {
      *code = classify(rc);
      return db_err(j, rc, "making it read-only", err, errlen);
    }
    return exec(j, "PRAGMA query_only = 1", "making it read-only", code,
                err, errlen) != 0
           || prepare_all(j, code, err, errlen) != 0 ? -1 : 0;
  }
  if (use_wal(j, code, err, errlen) != 0
      || exec(j, "PRAGMA synchronous = FULL", "setting its sync", code, err,
              errlen) != 0
      || init_schema(j, code, err, errlen) != 0
      || prepare_all(j, code, err, errlen) != 0)
    return -1;
  j->full_sync = 1;
  sync_parent(j->path);
  return 0;
}

/* A journal keeps webhook headers and bodies (a sender's token among
 * them): a new file is made readable by its owner only (0600), before
 * SQLite opens it, which creates the -wal and -shm files with the same
 * mode. An existing file keeps its mode; a failure here is SQLite's to
 * report. */
static void create_private(const char *path)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0)
    close(fd);
}

oc_journal_t *oc_journal_open(const char *path, const oc_journal_opts_t *o,
                              int *code, char *err, size_t errlen)
{
  oc_journal_t *j = calloc(1, sizeof *j);
  int rc, dummy;
  if (!code) code = &dummy;
  *code = OC_JOURNAL_EOTHER;
  if (!j || !(j->path = strdup(path))) {
    free(j);
    set_err(err, errlen, "journal %s: out of memory", path);
    return NULL;
  }
  j->max_attempts = o && o->max_attempts ? o->max_attempts
                                         : DEFAULT_MAX_ATTEMPTS;
  j->lease_s = o && o->lease_s > 0 ? o->lease_s : DEFAULT_LEASE_S;
  j->check = !(o && o->skip_check);
  j->read_only = o && o->read_only;
  j->existing = j->read_only || (o && o->existing);
  j->shared = o && o->shared;
  j->busy_ms = o && o->busy_ms ? o->busy_ms : DEFAULT_BUSY_MS;
  if (!j->existing && make_parents(path, err, errlen) != 0) {
    *code = OC_JOURNAL_EACCESS;
    oc_journal_close(j);
    return NULL;
  }
  if (j->read_only) {
    struct stat st;
    size_t n = strlen(path);
    char *wal = malloc(n + 5);
    if (wal) {
      memcpy(wal, path, n);
      memcpy(wal + n, "-wal", 5);
      j->had_wal = stat(wal, &st) == 0 && st.st_size > 0;
      free(wal);
    } else {
      j->had_wal = 1;            /* unknown: keep whatever is there */
    }
  }
  if (!j->existing)
    create_private(path);
  errno = 0;                     /* what SQLite keeps as its OS error */
  rc = sqlite3_open_v2(path, &j->db,
                       j->existing ? SQLITE_OPEN_READWRITE
                       : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    const sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);
    *code = classify(rc);
    if ((rc & 0xff) == SQLITE_CANTOPEN && vfs
        && strlen(path) >= (size_t)vfs->mxPathname)
      /* SQLite says only "unable to open database file" */
      set_err(err, errlen, "journal %s cannot be opened (opening it: its "
              "path is %zu bytes, longer than the %d SQLite takes)", path,
              strlen(path), vfs->mxPathname);
    else
      db_err(j, rc, "opening it", err, errlen);
    oc_journal_close(j);
    return NULL;
  }
  if (sqlite3_db_readonly(j->db, "main") == 1) {
    /* SQLite falls back to read-only when the file cannot be opened for
       writing; its EXCLUSIVE lock would then fail with a stray EBADF.
       Even read_only needs the lock (a journal in use is busy). */
    *code = OC_JOURNAL_EACCESS;
    set_err(err, errlen, "journal %s cannot be opened for writing (opening "
            "it: SQLite could open the file only read-only)", path);
    oc_journal_close(j);
    return NULL;
  }
  if (setup(j, code, err, errlen) != 0) {
    oc_journal_close(j);
    return NULL;
  }
  return j;
}

void oc_journal_close(oc_journal_t *j)
{
  int i;
  if (!j) return;
  for (i = 0; i < S_COUNT; i++) sqlite3_finalize(j->st[i]);
  sqlite3_close_v2(j->db);       /* NULL is fine; rolls back if needed */
  free(j->path);
  free(j);
}

const char *oc_journal_path(const oc_journal_t *j)
{
  return j->path;
}

/* }==================== */

/* {==================== append ==================== */

/* Insert one record (in the caller's transaction or its own). */
static int insert(oc_journal_t *j, const oc_journal_record_t *r,
                  long long *id)
{
  sqlite3_stmt *s = j->st[S_INSERT];
  int rc;
  sqlite3_bind_double(s, 1, r->received_at);
  if ((rc = bind_text(s, 2, r->path, r->path_len)) == SQLITE_OK
      && (rc = bind_blob(s, 3, r->headers, r->headers_len)) == SQLITE_OK
      && (rc = bind_blob(s, 4, r->body, r->body_len)) == SQLITE_OK) {
    rc = sqlite3_step(s);
    sqlite3_reset(s);
  }
  sqlite3_clear_bindings(s);
  if (rc != SQLITE_DONE) return rc;
  *id = sqlite3_last_insert_rowid(j->db);
  return SQLITE_DONE;
}

int oc_journal_append(oc_journal_t *j, const oc_journal_record_t *r,
                      long long *id, char *err, size_t errlen)
{
  return oc_journal_append_n(j, r, 1, id, err, errlen);
}

/* One record commits on its own; several in one transaction: one sync
 * for all (group commit). */
int oc_journal_append_n(oc_journal_t *j, const oc_journal_record_t *r,
                        size_t n, long long *ids, char *err, size_t errlen)
{
  size_t i;
  int rc;
  recover(j);
  if (n == 0) return 0;
  if (n == 1) {
    if ((rc = set_sync(j, 1)) != SQLITE_DONE
        || (rc = insert(j, r, ids)) != SQLITE_DONE)
      return db_err(j, rc, "appending", err, errlen);
    return 0;
  }
  if ((rc = begin(j, 1)) != SQLITE_DONE)
    return db_err(j, rc, "appending", err, errlen);
  for (i = 0; i < n; i++)
    if ((rc = insert(j, &r[i], &ids[i])) != SQLITE_DONE)
      return tx_err(j, rc, "appending", err, errlen);
  if ((rc = run(j, S_COMMIT)) != SQLITE_DONE)
    return tx_err(j, rc, "appending", err, errlen);
  return 0;
}

/* }==================== */

/* {==================== claim, list ==================== */

/* Up to max candidate ids (pending, unclaimed or lease over), oldest
 * first, with their attempts. Returns the count, or -rc. */
static int candidates(oc_journal_t *j, double now, long long *ids,
                      unsigned *attempts, unsigned max)
{
  sqlite3_stmt *s = j->st[S_CANDIDATES];
  int n = 0, rc;
  sqlite3_bind_double(s, 1, now);
  sqlite3_bind_int64(s, 2, max);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    ids[n] = sqlite3_column_int64(s, 0);
    attempts[n++] = (unsigned)sqlite3_column_int(s, 1);
  }
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? n : -rc;
}

static int step_id(oc_journal_t *j, enum stmt_id st, long long id)
{
  sqlite3_bind_int64(j->st[st], 1, id);
  return run(j, st);
}

/* An event that died being applied max_attempts times: dead letter. */
static int abandon(oc_journal_t *j, long long id, unsigned attempts)
{
  char msg[160];
  snprintf(msg, sizeof msg, "abandoned: claimed %u times and never done or "
           "failed (did the process die applying it?)", attempts);
  sqlite3_bind_int64(j->st[S_ABANDON], 1, id);
  sqlite3_bind_text(j->st[S_ABANDON], 2, msg, -1, SQLITE_TRANSIENT);
  return run(j, S_ABANDON);
}

/* Claim event id and hand it to fn. SQLITE_DONE, an error code, or
 * SQLITE_ABORT when fn stopped. */
static int claim_one(oc_journal_t *j, long long id, double now,
                     oc_journal_fn fn, void *ud)
{
  sqlite3_stmt *g = j->st[S_GET];
  oc_journal_record_t r;
  int rc, stop;
  sqlite3_bind_int64(j->st[S_CLAIM], 1, id);
  sqlite3_bind_double(j->st[S_CLAIM], 2, now + j->lease_s);
  if ((rc = run(j, S_CLAIM)) != SQLITE_DONE) return rc;
  sqlite3_bind_int64(g, 1, id);
  if ((rc = sqlite3_step(g)) != SQLITE_ROW) {
    sqlite3_reset(g);
    return rc == SQLITE_DONE ? SQLITE_INTERNAL : rc;
  }
  read_row(g, now, &r);
  r.claimed = 1;
  stop = fn(ud, &r);
  sqlite3_reset(g);
  return stop ? SQLITE_ABORT : SQLITE_DONE;
}

/* One round of claim: returns the number handed out, or -rc. *seen: the
 * candidates looked at. */
static int claim_round(oc_journal_t *j, unsigned want, double now,
                       oc_journal_fn fn, void *ud, int *seen,
                       unsigned *abandoned)
{
  long long ids[64];
  unsigned att[64];
  int n = candidates(j, now, ids, att, want < 64 ? want : 64), i, got = 0;
  *seen = n;
  for (i = 0; i < n; i++) {
    int rc = att[i] >= j->max_attempts ? abandon(j, ids[i], att[i])
                                       : claim_one(j, ids[i], now, fn, ud);
    if (rc != SQLITE_DONE) return -rc;
    if (att[i] < j->max_attempts)
      got++;
    else
      (*abandoned)++;
  }
  return n < 0 ? n : got;
}

int oc_journal_claim(oc_journal_t *j, unsigned n, double now,
                     oc_journal_fn fn, void *ud, char *err, size_t errlen)
{
  unsigned got = 0, abandoned = 0;
  int rc, seen = 1;
  recover(j);
  if (n == 0) return 0;
  if ((rc = begin(j, 0)) != SQLITE_DONE)
    return db_err(j, rc, "claiming", err, errlen);
  while (got < n && seen > 0) {
    int r = claim_round(j, n - got, now, fn, ud, &seen, &abandoned);
    if (r == -SQLITE_ABORT) {
      recover(j);
      set_err(err, errlen, "journal %s: claim stopped by the caller",
              j->path);
      return -1;
    }
    if (r < 0) return tx_err(j, -r, "claiming", err, errlen);
    got += (unsigned)r;
  }
  if ((rc = run(j, S_COMMIT)) != SQLITE_DONE)
    return tx_err(j, rc, "claiming", err, errlen);
  j->abandoned += abandoned;
  return (int)got;
}

unsigned long oc_journal_abandoned(const oc_journal_t *j)
{
  return j->abandoned;
}

int oc_journal_list(oc_journal_t *j, int dead, unsigned limit, double now,
                    oc_journal_fn fn, void *ud, char *err, size_t errlen)
{
  sqlite3_stmt *s = j->st[S_LIST];
  oc_journal_record_t r;
  int rc, n = 0;
  recover(j);
  sqlite3_bind_int(s, 1, dead ? 1 : 0);
  sqlite3_bind_int64(s, 2, limit ? (long long)limit : -1);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    read_row(s, now, &r);
    n++;
    if (fn(ud, &r)) {
      rc = SQLITE_DONE;
      break;
    }
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return db_err(j, rc, "listing", err, errlen);
  return n;
}

/* }==================== */

/* {==================== done, fail, requeue, stats ==================== */

/* Statement s for each of ids[0..n), in one transaction: how many rows
 * it changed, or -1 with err ("<path>: <what>: ..."). */
static int each_id(oc_journal_t *j, enum stmt_id s, const long long *ids,
                   size_t n, const char *what, char *err, size_t errlen)
{
  size_t i;
  int rc, found = 0;
  recover(j);
  if ((rc = begin(j, 0)) != SQLITE_DONE)
    return db_err(j, rc, what, err, errlen);
  for (i = 0; i < n; i++) {
    if ((rc = step_id(j, s, ids[i])) != SQLITE_DONE)
      return tx_err(j, rc, what, err, errlen);
    found += sqlite3_changes(j->db) > 0;
  }
  if ((rc = run(j, S_COMMIT)) != SQLITE_DONE)
    return tx_err(j, rc, what, err, errlen);
  return found;
}

int oc_journal_done(oc_journal_t *j, const long long *ids, size_t n,
                    char *err, size_t errlen)
{
  return each_id(j, S_DONE, ids, n, "marking done", err, errlen);
}

int oc_journal_release(oc_journal_t *j, const long long *ids, size_t n,
                       char *err, size_t errlen)
{
  return each_id(j, S_RELEASE, ids, n, "releasing claims", err, errlen);
}

int oc_journal_fail(oc_journal_t *j, long long id, const char *msg,
                    int dead_now, char *err, size_t errlen)
{
  sqlite3_stmt *f = j->st[S_FAIL], *s = j->st[S_STATE];
  int rc, changed, dead = 0;
  recover(j);
  if ((rc = begin(j, 0)) != SQLITE_DONE)
    return db_err(j, rc, "recording a failure", err, errlen);
  sqlite3_bind_int64(f, 1, id);
  sqlite3_bind_text(f, 2, msg ? msg : "", -1, SQLITE_TRANSIENT);
  /* dead_now: as if its attempts were used up (0 >= 0 always) */
  sqlite3_bind_int64(f, 3, dead_now ? 0 : j->max_attempts);
  rc = run(j, S_FAIL);
  changed = sqlite3_changes(j->db) > 0;
  if (rc == SQLITE_DONE && changed) {
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      dead = sqlite3_column_int(s, 0);
      rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
  }
  if (rc == SQLITE_DONE) rc = run(j, S_COMMIT);
  if (rc != SQLITE_DONE)
    return tx_err(j, rc, "recording a failure", err, errlen);
  return changed ? (dead ? 2 : 1) : 0;
}

int oc_journal_requeue(oc_journal_t *j, long long id, char *err,
                       size_t errlen)
{
  int rc;
  recover(j);
  if ((rc = set_sync(j, 0)) != SQLITE_DONE
      || (rc = step_id(j, S_REQUEUE, id)) != SQLITE_DONE)
    return db_err(j, rc, "requeueing", err, errlen);
  return sqlite3_changes(j->db) > 0;
}

int oc_journal_release_all(oc_journal_t *j, char *err, size_t errlen)
{
  int rc;
  recover(j);
  if ((rc = set_sync(j, 0)) != SQLITE_DONE
      || (rc = run(j, S_RELEASE_ALL)) != SQLITE_DONE)
    return db_err(j, rc, "releasing every claim", err, errlen);
  return sqlite3_changes(j->db);
}

long long oc_journal_data_version(oc_journal_t *j, char *err, size_t errlen)
{
  int rc;
  long long v;
  recover(j);
  v = query_int(j->db, "PRAGMA data_version", &rc);
  if (rc != SQLITE_OK) {
    db_err(j, rc, "reading its version", err, errlen);
    return 0;
  }
  return v;
}

int oc_journal_stats(oc_journal_t *j, double now, oc_journal_stats_t *st,
                     char *err, size_t errlen)
{
  sqlite3_stmt *s = j->st[S_STATS];
  int rc;
  recover(j);
  sqlite3_bind_double(s, 1, now);
  rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    st->pending = sqlite3_column_int64(s, 0);
    st->claimed = sqlite3_column_int64(s, 1);
    st->dead = sqlite3_column_int64(s, 2);
    st->oldest = sqlite3_column_double(s, 3);   /* NULL reads 0 */
    rc = SQLITE_DONE;
  }
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return db_err(j, rc, "reading its counts", err, errlen);
  return 0;
}

/* }==================== */

/* {==================== the latest writers ==================== */

int oc_journal_mark(oc_journal_t *j, const oc_journal_mark_t *m, size_t n,
                    char *err, size_t errlen)
{
  sqlite3_stmt *s = NULL;
  size_t i;
  int rc;
  recover(j);
  if (n == 0) return 0;
  if ((rc = begin(j, 0)) != SQLITE_DONE)
    return db_err(j, rc, "keeping the latest writers", err, errlen);
  rc = sqlite3_prepare_v2(j->db, "INSERT INTO written(key, seq) VALUES (?1, ?2)"
                          " ON CONFLICT(key) DO UPDATE SET seq = excluded.seq"
                          " WHERE excluded.seq > written.seq", -1, &s, NULL);
  if (rc != SQLITE_OK)
    return tx_err(j, rc, "keeping the latest writers", err, errlen);
  for (i = 0; i < n && rc == SQLITE_OK; i++) {
    if ((rc = bind_blob(s, 1, m[i].key, m[i].klen)) != SQLITE_OK) break;
    sqlite3_bind_int64(s, 2, m[i].seq);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_OK || (rc = run(j, S_COMMIT)) != SQLITE_DONE)
    return tx_err(j, rc, "keeping the latest writers", err, errlen);
  return 0;
}

int oc_journal_marks(oc_journal_t *j, long long since,
                     void (*fn)(void *ud, const char *key, size_t klen,
                                long long seq),
                     void *ud, char *err, size_t errlen)
{
  sqlite3_stmt *s = NULL;
  int rc, n = 0;
  recover(j);
  rc = sqlite3_prepare_v2(j->db, "SELECT key, seq FROM written WHERE seq >= ?1",
                          -1, &s, NULL);
  if (rc != SQLITE_OK)
    return db_err(j, rc, "reading the latest writers", err, errlen);
  sqlite3_bind_int64(s, 1, since);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    fn(ud, (const char *)sqlite3_column_blob(s, 0),
       (size_t)sqlite3_column_bytes(s, 0), sqlite3_column_int64(s, 1));
    n++;
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE)
    return db_err(j, rc, "reading the latest writers", err, errlen);
  return n;
}

int oc_journal_prune_marks(oc_journal_t *j, long long before, char *err,
                           size_t errlen)
{
  sqlite3_stmt *s = NULL;
  int rc;
  recover(j);
  if ((rc = set_sync(j, 0)) != SQLITE_DONE)
    return db_err(j, rc, "pruning the latest writers", err, errlen);
  rc = sqlite3_prepare_v2(j->db, "DELETE FROM written WHERE seq < ?1", -1, &s,
                          NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, before);
    rc = sqlite3_step(s);
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE)
    return db_err(j, rc, "pruning the latest writers", err, errlen);
  return sqlite3_changes(j->db);
}

/* }==================== */

/* {==================== the folder ==================== */

static int is_journal_name(const char *name)
{
  static const char ext[] = ".sqlite3";
  size_t n = strlen(name), e = sizeof ext - 1;
  return n > e && strcmp(name + n - e, ext) == 0;
}

int oc_journal_files(const char *dir, char **out, size_t *len, char *err,
                     size_t errlen)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  char *buf = NULL;
  size_t used = 0, cap = 0;
  *out = NULL;
  *len = 0;
  if (!d) {
    if (errno == ENOENT) return 0;
    set_err(err, errlen, "journal folder %s cannot be read: %s", dir,
            strerror(errno));
    return -1;
  }
  while ((de = readdir(d)) != NULL) {
    size_t n = strlen(de->d_name) + 1;
    if (!is_journal_name(de->d_name)) continue;
    if (used + n > cap) {
      char *nb = realloc(buf, cap = (used + n) * 2);
      if (!nb) {
        free(buf);
        closedir(d);
        set_err(err, errlen, "journal folder %s: out of memory", dir);
        return -1;
      }
      buf = nb;
    }
    memcpy(buf + used, de->d_name, n);
    used += n;
  }
  closedir(d);
  *out = buf;
  *len = used;
  return 0;
}

/* }==================== */
