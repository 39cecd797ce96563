/*
 * loop.h - the engine's event loop: libcurl transfers, retry timers,
 * HTTP servers and (opt-in) signals, all driven by oc_loop_wait().
 *
 * One oc_loop_t per engine; nothing is global. The loop owns a libcurl
 * multi handle (connections are reused across transfers), a FIFO of
 * transfers waiting for a slot (at most `concurrency` transfers are on the
 * wire at once), and a list of timers (retry back-offs and plain
 * callbacks). Everything happens inside oc_loop_wait(): I/O, timers and
 * completion callbacks. Nothing ever blocks outside it, and a transfer
 * that waits to retry holds no slot, so it never delays other transfers.
 *
 * Callbacks (completion, timers, close hooks) run inside oc_loop_wait()
 * (close hooks: inside oc_loop_free()). They may submit, cancel and arm
 * timers; they must not free the loop nor call oc_loop_wait(). Submitting
 * never calls back synchronously.
 *
 * Process-wide: oc_loop_global_init() calls curl_global_init(), which is
 * reference counted and thread-safe in libcurl >= 7.84 built with atomics
 * (curl_version_info reports CURL_VERSION_THREADSAFE; Debian 12's 7.88
 * does). With an older libcurl the host must call it before starting
 * threads. It is never undone: libcurl's global state lives as long as
 * the process (valgrind shows it as "still reachable").
 */
#ifndef OC_LOOP_H
#define OC_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "http_server.h"

typedef struct oc_loop oc_loop_t;

/* {==================== retry policy ==================== */

#define OC_RETRY_MAX_STATUSES 16

/* When and how a transfer is sent again. A zeroed policy sends once. */
typedef struct oc_retry {
  int statuses[OC_RETRY_MAX_STATUSES]; /* HTTP statuses worth a retry */
  int nstatuses;
  int max_attempts;        /* sends in all (1 = never retry); 0 = 1 */
  long base_delay_ms;      /* back-off before retry n: base * 2^(n-1) +-10% */
  long max_delay_ms;       /* cap on one wait; 0: no cap. A Retry-After
                              is waited as asked when it fits this and
                              what is left of max_total_wait_ms, else the
                              retries end at once (the event's asked_ms).
                              Retry-After 0 or a past date: the back-off */
  long max_total_wait_ms;  /* give up (answer with the last response)
                              when the next wait would pass it; 0: no cap */
  int connection_errors;   /* retry refused/reset/timeout/empty reply */
  int honour_retry_after;  /* Retry-After, then x-ratelimit-reset */
} oc_retry_t;

/* Port's policy as Ocean applies it (408, 429, 502, 503, 504; 11 sends;
 * 300 ms base) but with a cap on the total wait of 120 s (one wait at most
 * 60 s), where Ocean could spend about 5 minutes. */
void oc_retry_port_defaults(oc_retry_t *r);
/* The default for third-party calls: the same statuses, 100 ms base. */
void oc_retry_defaults(oc_retry_t *r);

/* Delay in ms that a Retry-After / x-ratelimit-reset value asks for:
 * delay-seconds (fractions allowed) or an HTTP-date (RFC 9110 10.2.3: a
 * Retry-After number is always seconds); epoch_ok (x-ratelimit-reset):
 * a number > 10000 is epoch seconds, as Ocean reads that header. -1 when
 * unparseable. now: wall-clock epoch seconds. */
long oc_retry_header_delay_ms(const char *value, long long now, int epoch_ok);

/* }==================== */

/* {==================== transfers ==================== */

typedef struct oc_header {
  char *name;              /* lower-cased */
  char *value;             /* surrounding blanks trimmed */
} oc_header_t;

/* The outcome of a transfer, handed to its completion callback, which
 * owns it from then on (oc_response_free). */
typedef struct oc_response {
  uint64_t id;             /* the transfer's id */
  int status;              /* HTTP status of the last attempt; 0: none */
  char *body;              /* NUL-terminated; NULL when empty */
  size_t body_len;
  oc_header_t *headers;    /* all headers of the last response, in order */
  size_t nheaders;
  int curl_code;           /* CURLE_OK (0) or the last transport error */
  char error[256];         /* transport error message; "" when none */
  int attempts;            /* sends made */
  long waited_ms;          /* time spent waiting between attempts */
  long elapsed_ms;         /* submit to completion, queueing included */
} oc_response_t;

/* The value of the first header `lname` (lower case), or NULL. */
const char *oc_response_header(const oc_response_t *r, const char *lname);
void oc_response_free(oc_response_t *r);

/* Completion: called once per transfer unless it is cancelled. */
typedef void (*oc_done_fn)(void *ud, oc_response_t *res);

#define OC_REQ_URGENT      1  /* jumps the queue (token requests) */
#define OC_REQ_INSECURE    2  /* do not verify TLS peers (on by default) */
#define OC_REQ_BORROW_BODY 4  /* body stays valid until completion/cancel;
                                 not copied */
#define OC_REQ_FOLLOW      8  /* follow redirects (up to 5) */

typedef struct oc_request {
  const char *method;           /* NULL: GET, or POST when there is a body */
  const char *url;
  const char *const *headers;   /* NULL-terminated "Name: value" lines;
                                   copied; may be NULL */
  const char *body;             /* copied unless OC_REQ_BORROW_BODY */
  size_t body_len;
  int flags;                    /* OC_REQ_* */
  long timeout_ms;              /* per attempt; 0: 60 s */
  long connect_timeout_ms;      /* 0: min(timeout, 10 s) */
  size_t max_response_bytes;    /* 0: 256 MiB; larger answers fail */
  const oc_retry_t *retry;      /* copied; NULL: one attempt */
  oc_done_fn done;              /* may be NULL (fire and forget) */
  void *ud;
} oc_request_t;

/* Queue a transfer. Returns its id (> 0), or 0 with a message in err
 * (bad arguments, out of memory). The completion callback runs later,
 * inside oc_loop_wait(), never from here. */
uint64_t oc_loop_submit(oc_loop_t *loop, const oc_request_t *req,
                        char *err, size_t errlen);

/* Forget a transfer or timer: its callback will not run. 0, or -1 when
 * the id is unknown (never issued, completed or already cancelled). */
int oc_loop_cancel(oc_loop_t *loop, uint64_t id);

/* Run fn(ud) inside a later oc_loop_wait(), after delay_ms (0: at the
 * next wait). Returns the timer's id (cancellable), 0 on OOM. */
typedef void (*oc_timer_fn)(void *ud);
uint64_t oc_loop_timer(oc_loop_t *loop, long delay_ms, oc_timer_fn fn,
                       void *ud);

/* }==================== */

/* {==================== request events ==================== */

/* What the loop did that its user should be able to say: a retry it
 * scheduled (what failed, the wait, attempt n of N), and a transfer that
 * completed. C never calls Lua, so these are kept in a queue that
 * the caller drains between waits (oc_loop_take_event); recording is off
 * until oc_loop_record() turns it on. Retries and the completion of a
 * transfer that was retried (or answered 401: a token to renew) are
 * recorded once `retries` is on; every
 * completion once `requests` is on too (a DEBUG log). The queue grows as
 * needed up to OC_LOOP_EVENTS (so no retry goes unsaid); past that, new
 * events are counted as dropped, never blocking anything. */
#define OC_LOOP_EVENTS 65536

enum { OC_LOOP_EV_RETRY = 1, OC_LOOP_EV_DONE = 2 };

typedef struct oc_loop_event {
  int type;                      /* OC_LOOP_EV_* */
  uint64_t id;                   /* the transfer's id */
  char method[16];
  char *url;                     /* owned (oc_loop_event_clear); NULL on
                                    OOM */
  int status;                    /* the attempt's HTTP status; 0: none */
  char error[160];               /* the attempt's transport error, or "" */
  int attempt;                   /* RETRY: the attempt that failed; DONE:
                                    sends made */
  int max_attempts;              /* sends allowed in all (1: no retry) */
  long max_wait_ms;              /* the policy's cap on the total wait
                                    (0: none): whichever of it and
                                    max_attempts comes first ends retries */
  long delay_ms;                 /* RETRY: the wait before the next send */
  long waited_ms;                /* time waited between attempts so far */
  long elapsed_ms;               /* since the submit, queueing included */
  long asked_ms;                 /* DONE: the wait Retry-After asked for
                                    when it ended the retries (beyond the
                                    budget); -1 otherwise */
  int gave_up;                   /* DONE: the last answer was worth a
                                    retry, but the attempts or the wait
                                    cap were used up */
} oc_loop_event_t;

/* retries: record retries (and completions of retried transfers);
 * requests: record every completion too. Both 0: record nothing (the
 * default). */
void oc_loop_record(oc_loop_t *loop, int retries, int requests);
/* Take the oldest event: 1 (out filled; free out->url with
 * oc_loop_event_clear), 0 when there is none. */
int oc_loop_take_event(oc_loop_t *loop, oc_loop_event_t *out);
void oc_loop_event_clear(oc_loop_event_t *e);
/* Events lost to a full queue since the last call (and reset). */
size_t oc_loop_events_dropped(oc_loop_t *loop);

/* }==================== */

/* {==================== the loop ==================== */

typedef struct oc_loop_opts {
  unsigned concurrency;         /* transfers on the wire at once; 0: 5 */
  unsigned max_connections;     /* idle connections kept; 0: 2*concurrency */
} oc_loop_opts_t;

/* NULL on failure (message in err). opts may be NULL. */
oc_loop_t *oc_loop_new(const oc_loop_opts_t *opts, char *err, size_t errlen);
/* Cancel every transfer and timer (their callbacks do not run), run the
 * close hooks, restore the signal mask if signals were watched, free.
 * NULL is a no-op. Never call it from a loop callback. */
void oc_loop_free(oc_loop_t *loop);

/* curl_global_init (see the file comment). 0, or -1 with err set. */
int oc_loop_global_init(char *err, size_t errlen);

void oc_loop_set_concurrency(oc_loop_t *loop, unsigned n);

/* Block up to timeout_ms (0: never block; < 0: until something happens)
 * waiting on the transfers, the timers, the servers' descriptors and the
 * signalfd. Performs ready I/O, fires due timers, completes transfers
 * (running their callbacks), runs ready servers, reads signals. Returns
 * as soon as something happened (a completion, a timer, server activity,
 * a signal) or the time is up: the number of such events, 0 on timeout.
 * servers may be NULL. */
int oc_loop_wait(oc_loop_t *loop, long timeout_ms,
                 oc_server_t *const *servers, size_t nservers);

/* How long a caller that does not watch curl's sockets may sleep before
 * calling oc_loop_wait() again: ms until the next timer or libcurl
 * timeout, 0 when work is ready now, -1 when nothing is pending at all.
 * A caller with transfers on the wire should still poll at a short
 * interval: socket readiness is not reflected here. */
long oc_loop_next_timeout_ms(oc_loop_t *loop);

/* Watch SIGTERM, SIGINT and SIGHUP: BLOCKS them in the calling thread
 * (sigprocmask; the process signal mask in a single-threaded program) and
 * reads them from a signalfd inside oc_loop_wait(). The previous mask is
 * restored by oc_loop_free() (see oc_loop_keep_signal_mask). Not for
 * nginx workers (nginx owns signals). 0, or -1 with err set. */
int oc_loop_watch_signals(oc_loop_t *loop, char *err, size_t errlen);
/* keep = 1: once a watched signal has arrived, oc_loop_free() leaves the
 * signals blocked, so that a second SIGTERM can't kill a process in the
 * middle of the orderly exit the first one started (the runner). */
void oc_loop_keep_signal_mask(oc_loop_t *loop, int keep);
/* The oldest signal received and not yet taken, or 0. */
int oc_loop_take_signal(oc_loop_t *loop);

typedef struct oc_loop_stats {
  unsigned active;              /* transfers on the wire */
  unsigned queued;              /* waiting for a slot */
  unsigned waiting;             /* waiting to retry */
  unsigned timers;              /* plain timers armed */
  unsigned concurrency;
  unsigned peak_active;         /* highest `active` seen */
  uint64_t submitted, completed, attempts, retries;
} oc_loop_stats_t;
void oc_loop_stats(const oc_loop_t *loop, oc_loop_stats_t *out);

/* Close hooks: fn(ud) runs when the loop is freed, so that an object that
 * keeps a pointer to the loop (a Port client) can let go of it. */
int oc_loop_add_close_hook(oc_loop_t *loop, oc_timer_fn fn, void *ud);
void oc_loop_remove_close_hook(oc_loop_t *loop, oc_timer_fn fn, void *ud);

/* Milliseconds on the monotonic clock (for deadlines and caches). */
int64_t oc_loop_now_ms(void);

/* }==================== */

#endif
