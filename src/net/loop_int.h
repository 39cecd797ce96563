/*
 * loop_int.h - what loop.c (the loop: queue, timers, waiting, signals)
 * and transport.c (one transfer on a libcurl easy handle: setup, response
 * capture, retry decisions) share. Not part of the engine's API.
 */
#ifndef OC_LOOP_INT_H
#define OC_LOOP_INT_H

#include <curl/curl.h>
#include <signal.h>

#include "json/buf.h"
#include "loop.h"

/* A timer in the loop's list, sorted by due time. Embedded first in its
 * owner (a transfer waiting to retry, or a callback timer). */
typedef struct oc_timer {
  struct oc_timer *prev, *next;
  int64_t due;
  uint64_t seq;                   /* arming order (see fire_timers) */
  int armed;
  void (*fire)(oc_loop_t *loop, struct oc_timer *t);
} oc_timer_t;

enum { XF_QUEUED = 1, XF_ACTIVE, XF_WAITING };

typedef struct oc_xfer {
  oc_timer_t timer;               /* the retry timer (must be first) */
  struct oc_xfer *prev, *next;    /* every live transfer of the loop */
  struct oc_xfer *qprev, *qnext;  /* the FIFO, while XF_QUEUED */
  oc_loop_t *loop;
  uint64_t id;
  int state;
  CURL *easy;                     /* created when first started */
  struct curl_slist *headers;
  char *method, *url;
  char *body;                     /* owned unless OC_REQ_BORROW_BODY */
  size_t body_len;
  int flags;
  long timeout_ms, connect_timeout_ms;
  size_t max_response;
  oc_retry_t retry;
  int has_retry;
  oc_done_fn done;
  void *ud;
  /* the attempt in progress */
  oc_buf_t rbody;
  oc_header_t *rh;
  size_t nrh, caprh;
  int too_large;
  char errbuf[CURL_ERROR_SIZE];
  /* across attempts */
  int attempts;
  long waited_ms;
  long asked_ms;                  /* a Retry-After beyond the budget, or -1 */
  int64_t submitted_at;
} oc_xfer_t;

typedef struct oc_cbtimer {
  oc_timer_t t;                   /* must be first */
  struct oc_cbtimer *prev, *next; /* the loop's callback timers */
  uint64_t id;
  oc_timer_fn fn;
  void *ud;
} oc_cbtimer_t;

typedef struct oc_hook {
  struct oc_hook *next;
  oc_timer_fn fn;
  void *ud;
} oc_hook_t;

#define OC_SIGQ 16

struct oc_loop {
  CURLM *multi;
  unsigned concurrency, active, queued, waiting, ntimers, peak;
  oc_xfer_t *all;
  oc_xfer_t *qhead, *qtail;
  oc_timer_t *timers;
  oc_cbtimer_t *cbtimers;
  oc_hook_t *hooks;
  uint64_t next_id;
  uint64_t timer_seq;
  uint64_t rng;
  uint64_t submitted, completed, attempts, retries;
  int events;                     /* counted inside oc_loop_wait */
  int sigfd;
  sigset_t watched, oldmask;
  int sigq[OC_SIGQ], sighead, sigcount;
  int signalled;                /* a watched signal has arrived */
  int keep_mask;                /* ... then keep them blocked on free */
  int rec_retries, rec_requests; /* what oc_loop_record asked for */
  oc_loop_event_t *ev;            /* a ring of ev_cap: ev_head, ev_count;
                                     grows up to OC_LOOP_EVENTS */
  size_t ev_cap, ev_head, ev_count, ev_dropped;
};

/* transport.c */
oc_xfer_t *oc_xfer_new(oc_loop_t *loop, const oc_request_t *req,
                       char *err, size_t errlen);
void oc_xfer_free(oc_xfer_t *x);
/* Prepare the easy handle for the next attempt. 0, or -1 (err in x). */
int oc_xfer_prepare(oc_xfer_t *x);
/* After an attempt: the delay before the next one, or -1 for "done". */
long oc_xfer_retry_delay(oc_xfer_t *x, CURLcode code, int status);
/* 1 when the policy would retry this outcome (attempts and caps aside). */
int oc_xfer_retryable(const oc_xfer_t *x, CURLcode code, int status);
/* Move the outcome into a fresh response (NULL on OOM). */
oc_response_t *oc_xfer_response(oc_xfer_t *x, CURLcode code, int status);

/* loop.c */
uint64_t oc_loop_rand(oc_loop_t *loop);

#endif
