/*
 * journal.c - the live-event journal's benchmark (`make bench-journal`;
 * never part of `make test`). Results go to bench/results/journal.txt.
 *
 *   build/bench-journal [N [BODY_BYTES [DIR]]]     (defaults 2000, 1024, /tmp)
 *
 * Measures, on this machine's disk, how long the caller waits:
 *  0. the disk's floor: write(2) of one body at the end of a file, then
 *     fdatasync(2) (what any durable journal pays per event);
 *  1. one durable append (src/live/journal.c: WAL, synchronous=FULL, EXCLUSIVE
 *     locking), against two baselines in the same run: the same append
 *     with synchronous=NORMAL (survives a killed process, not a power
 *     loss) and OFF (not even that guarantee of ordering);
 *     and the same appends 20 to a transaction (append_batch: group
 *     commit), per event;
 *  2. claim + done, one event at a time and 20 at a time;
 *  3. two processes appending at once: each with its own journal (the
 *     layout chosen for nginx workers) against both sharing one file
 *     under SQLite's locking (normal locking mode, busy_timeout 5 s);
 *  4. opening a journal of N*50 events (the quick_check at open).
 * Latencies are per operation (p50, p99, max, in microseconds), measured
 * inside the process; the ratio to a baseline is printed beside.
 */
#include "live/journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct lat {
  double *v;
  size_t n;
} lat_t;

static double now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double pct(lat_t *l, double p)
{
  size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
  return l->v[i];
}

static void report(const char *what, lat_t *l, double base_p50)
{
  double sum = 0;
  size_t i;
  if (l->n == 0) {
    printf("%-44s none completed\n", what);
    return;
  }
  qsort(l->v, l->n, sizeof *l->v, cmp_double);
  for (i = 0; i < l->n; i++) sum += l->v[i];
  printf("%-44s p50 %8.1f  p99 %8.1f  max %8.1f us  %8.0f ops/s",
         what, pct(l, 0.5), pct(l, 0.99), l->v[l->n - 1],
         1e6 * (double)l->n / sum);
  if (base_p50 > 0) printf("  p50 x%.2f", pct(l, 0.5) / base_p50);
  printf("\n");
}

static void die(const char *what, const char *err)
{
  fprintf(stderr, "bench-journal: %s: %s\n", what, err);
  exit(1);
}

static oc_journal_record_t make_record(const char *body, size_t len)
{
  static const char headers[] = "content-type\0application/json\0"
                                "x-github-event\0issues\0";
  oc_journal_record_t r;
  memset(&r, 0, sizeof r);
  r.path = "/integration/webhook";
  r.path_len = strlen(r.path);
  r.headers = headers;
  r.headers_len = sizeof headers - 1;
  r.body = body;
  r.body_len = len;
  r.received_at = 1.7e9;
  return r;
}

static void fresh(const char *path)
{
  char p[8200];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
}

/* {==================== 0. the disk ==================== */

static void floor_sync(const char *path, size_t n, const char *body,
                       size_t blen, lat_t *l)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                0600);
  size_t i;
  if (fd < 0) die("open", path);
  for (i = 0; i < n; i++) {
    double t = now_us();
    if (write(fd, body, blen) != (ssize_t)blen || fdatasync(fd) != 0)
      die("write+fdatasync", path);
    l->v[i] = now_us() - t;
  }
  l->n = n;
  close(fd);
  unlink(path);
}

/* }==================== */

/* {==================== 1. appends ==================== */

static void ours(const char *path, size_t n, const char *body, size_t blen,
                 lat_t *l)
{
  char err[512];
  oc_journal_record_t r = make_record(body, blen);
  oc_journal_t *j;
  size_t i;
  fresh(path);
  if (!(j = oc_journal_open(path, NULL, NULL, err, sizeof err)))
    die("open", err);
  for (i = 0; i < n; i++) {
    long long id;
    double t = now_us();
    if (oc_journal_append(j, &r, &id, err, sizeof err) != 0)
      die("append", err);
    l->v[i] = now_us() - t;
  }
  l->n = n;
  oc_journal_close(j);
}

/* Appends in batches of `batch` (one transaction, one sync each): the
 * latency of a batch, divided by its size. */
static void ours_batch(const char *path, size_t n, size_t batch,
                       const char *body, size_t blen, lat_t *l)
{
  char err[512];
  oc_journal_record_t r[64];
  long long ids[64];
  oc_journal_t *j;
  size_t i, k = 0;
  for (i = 0; i < batch; i++) r[i] = make_record(body, blen);
  fresh(path);
  if (!(j = oc_journal_open(path, NULL, NULL, err, sizeof err)))
    die("open", err);
  for (i = 0; i + batch <= n; i += batch) {
    double t = now_us();
    if (oc_journal_append_n(j, r, batch, ids, err, sizeof err) != 0)
      die("append_n", err);
    l->v[k++] = (now_us() - t) / (double)batch;
  }
  l->n = k;
  oc_journal_close(j);
}

/* The same insert on a raw connection, with the given synchronous. */
static void raw(const char *path, const char *sync, int exclusive, size_t n,
                const char *body, size_t blen, lat_t *l)
{
  sqlite3 *db;
  sqlite3_stmt *s;
  char sql[256];
  size_t i;
  if (exclusive) fresh(path);
  if (sqlite3_open(path, &db) != SQLITE_OK) die("open", sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 5000);
  snprintf(sql, sizeof sql, "%sPRAGMA journal_mode=WAL; PRAGMA synchronous=%s;"
           " CREATE TABLE IF NOT EXISTS event(id INTEGER PRIMARY KEY"
           " AUTOINCREMENT, received_at REAL, path TEXT, headers BLOB,"
           " body BLOB);", exclusive ? "PRAGMA locking_mode=EXCLUSIVE; " : "",
           sync);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
    die("setup", sqlite3_errmsg(db));
  sqlite3_prepare_v2(db, "INSERT INTO event(received_at, path, headers, body)"
                     " VALUES (1.7e9, '/integration/webhook', x'00', ?1)",
                     -1, &s, NULL);
  for (i = 0; i < n; i++) {
    double t = now_us();
    int rc;
    sqlite3_bind_blob(s, 1, body, (int)blen, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_BUSY && !exclusive) {  /* shared: gave up waiting */
      l->v[i] = -1;
      continue;
    }
    if (rc != SQLITE_DONE) die("insert", sqlite3_errmsg(db));
    l->v[i] = now_us() - t;
  }
  l->n = n;
  sqlite3_finalize(s);
  sqlite3_close(db);
}

/* }==================== */

/* {==================== 2. claim + done ==================== */

typedef struct ids {
  long long v[64];
  size_t n;
} ids_t;

static int collect(void *ud, const oc_journal_record_t *r)
{
  ids_t *ids = ud;
  ids->v[ids->n++] = r->id;
  return 0;
}

static void claim_done(const char *path, size_t n, unsigned batch,
                       const char *body, size_t blen, lat_t *l)
{
  char err[512];
  oc_journal_record_t r = make_record(body, blen);
  oc_journal_t *j;
  size_t i, k = 0;
  fresh(path);
  if (!(j = oc_journal_open(path, NULL, NULL, err, sizeof err)))
    die("open", err);
  for (i = 0; i < n; i++) {
    long long id;
    if (oc_journal_append(j, &r, &id, err, sizeof err) != 0) die("append", err);
  }
  for (i = 0; i < n; i += batch) {
    ids_t ids;
    double t = now_us();
    ids.n = 0;
    if (oc_journal_claim(j, batch, 1.7e9, collect, &ids, err, sizeof err) < 0
        || oc_journal_done(j, ids.v, ids.n, err, sizeof err) < 0)
      die("claim/done", err);
    l->v[k++] = (now_us() - t) / (double)(ids.n ? ids.n : 1);
  }
  l->n = k;
  oc_journal_close(j);
}

/* }==================== */

/* {==================== 3. two processes ==================== */

/* Two children append n each at once; the latencies of both come back
 * through a pipe. shared: one file, SQLite's locking; else one each. */
static double two_processes(const char *dir, int shared, size_t n,
                            const char *body, size_t blen, lat_t *l)
{
  int fd[2], c;
  double t0;
  char path[2][4096];
  for (c = 0; c < 2; c++) {
    snprintf(path[c], sizeof path[c], "%s/bench-journal-%s-%d.sqlite3", dir,
             shared ? "shared" : "own", shared ? 0 : c);
    fresh(path[c]);
  }
  if (pipe(fd) != 0) die("pipe", "failed");
  fflush(stdout);                /* the children must not print it again */
  t0 = now_us();
  for (c = 0; c < 2; c++) {
    if (fork() == 0) {
      lat_t mine;
      mine.v = malloc(n * sizeof *mine.v);
      close(fd[0]);
      if (shared)
        raw(path[0], "FULL", 0, n, body, blen, &mine);
      else
        ours(path[c], n, body, blen, &mine);
      if (write(fd[1], mine.v, n * sizeof *mine.v) < 0) _exit(1);
      _exit(0);
    }
  }
  close(fd[1]);
  l->n = 0;
  for (;;) {
    ssize_t r = read(fd[0], (char *)l->v + l->n, 2 * n * sizeof *l->v - l->n);
    if (r <= 0) break;
    l->n += (size_t)r;
  }
  l->n /= sizeof *l->v;
  close(fd[0]);
  while (wait(NULL) > 0) {}
  return now_us() - t0;
}

/* Drop the appends that failed (-1: SQLITE_BUSY after 5 s); how many. */
static size_t drop_failed(lat_t *l)
{
  size_t i, k = 0;
  for (i = 0; i < l->n; i++)
    if (l->v[i] >= 0) l->v[k++] = l->v[i];
  i = l->n - k;
  l->n = k;
  return i;
}

/* }==================== */

/* {==================== 4. open ==================== */

static double open_big(const char *path, int check)
{
  char err[512];
  oc_journal_opts_t o;
  oc_journal_t *j;
  double t;
  memset(&o, 0, sizeof o);
  o.skip_check = !check;
  t = now_us();
  if (!(j = oc_journal_open(path, &o, NULL, err, sizeof err))) die("open", err);
  t = now_us() - t;
  oc_journal_close(j);
  return t;
}

static void fill(const char *path, size_t events, const char *body, size_t blen)
{
  sqlite3 *db;
  sqlite3_stmt *s;
  char err[512];
  oc_journal_t *j;
  size_t i;
  fresh(path);
  if (!(j = oc_journal_open(path, NULL, NULL, err, sizeof err))) die("open", err);
  oc_journal_close(j);
  sqlite3_open(path, &db);
  sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", NULL, NULL, NULL);
  sqlite3_prepare_v2(db, "INSERT INTO event(received_at, path, headers, body)"
                     " VALUES (1.7e9, '/x', x'', ?1)", -1, &s, NULL);
  for (i = 0; i < events; i++) {
    sqlite3_bind_blob(s, 1, body, (int)blen, SQLITE_STATIC);
    sqlite3_step(s);
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_close(db);
}

/* }==================== */

int main(int argc, char **argv)
{
  size_t n = argc > 1 ? (size_t)atol(argv[1]) : 2000;
  size_t blen = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  const char *dir = argc > 3 ? argv[3] : "/tmp";
  char path[4096], *body = malloc(blen ? blen : 1);
  lat_t l;
  double wall, base;
  size_t failed;
  memset(body, 'x', blen);
  l.v = malloc(2 * n * sizeof *l.v);
  snprintf(path, sizeof path, "%s/bench-journal.sqlite3", dir);
  printf("# %zu operations each, %zu-byte bodies, in %s; SQLite %s\n", n, blen,
         dir, sqlite3_libversion());

  floor_sync(path, n, body, blen, &l);
  report("write + fdatasync (the disk's floor)", &l, 0);
  raw(path, "OFF", 1, n, body, blen, &l);
  report("append, synchronous=OFF (baseline)", &l, 0);
  raw(path, "NORMAL", 1, n, body, blen, &l);
  report("append, synchronous=NORMAL (baseline)", &l, 0);
  base = pct(&l, 0.5);
  ours(path, n, body, blen, &l);
  report("append, durable (ours: FULL)", &l, base);
  ours_batch(path, n, 20, body, blen, &l);
  report("append_batch of 20, durable, per event", &l, base);

  claim_done(path, n, 1, body, blen, &l);
  report("claim(1) + done, per event", &l, 0);
  claim_done(path, n, 20, body, blen, &l);
  report("claim(20) + done{20}, per event", &l, 0);

  wall = two_processes(dir, 0, n, body, blen, &l);
  report("2 processes, a journal each: append", &l, 0);
  printf("%-44s %.0f appends/s in all\n", "", 2e6 * (double)n / wall);
  base = pct(&l, 0.99);
  wall = two_processes(dir, 1, n, body, blen, &l);
  failed = drop_failed(&l);
  report("2 processes, one shared journal: append", &l, 0);
  printf("%-44s %.0f appends/s in all; p99 x%.2f the own-journal p99;"
         " %zu failed (database is locked after 5 s)\n", "",
         2e6 * (double)(l.n) / wall, pct(&l, 0.99) / base, failed);

  fill(path, n * 50, body, blen);
  printf("%-44s %.1f ms (%zu events), %.1f ms without the check\n",
         "open with quick_check", open_big(path, 1) / 1e3, n * 50,
         open_big(path, 0) / 1e3);
  fresh(path);
  snprintf(path, sizeof path, "%s/bench-journal-shared-0.sqlite3", dir);
  fresh(path);
  snprintf(path, sizeof path, "%s/bench-journal-own-0.sqlite3", dir);
  fresh(path);
  snprintf(path, sizeof path, "%s/bench-journal-own-1.sqlite3", dir);
  fresh(path);
  free(body);
  free(l.v);
  return 0;
}
