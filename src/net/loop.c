/*
 * loop.c - the event loop: a libcurl multi handle, the FIFO of transfers
 * waiting for a slot, timers (retry back-offs and callbacks), the wait
 * itself (curl_multi_poll over curl's sockets plus the servers' and the
 * signalfd's descriptors), signals and close hooks.
 *
 * Owns every transfer (oc_xfer_t, transport.c) from submit to completion;
 * a transfer is on exactly one of: the FIFO (XF_QUEUED), the multi handle
 * (XF_ACTIVE), the timer list (XF_WAITING).
 */
#include "loop_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONCURRENCY 5
#define FDS_ON_STACK 16

int64_t oc_loop_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: jitter only, no need for more. */
uint64_t oc_loop_rand(oc_loop_t *loop)
{
  uint64_t x = loop->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  loop->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int oc_loop_global_init(char *err, size_t errlen)
{
  CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (c != CURLE_OK) {
    snprintf(err, errlen, "curl_global_init: %s", curl_easy_strerror(c));
    return -1;
  }
  return 0;
}

/* {==================== lists ==================== */

static void timer_arm(oc_loop_t *loop, oc_timer_t *t, long delay_ms)
{
  oc_timer_t **pp = &loop->timers, *prev = NULL;
  t->due = oc_loop_now_ms() + (delay_ms > 0 ? delay_ms : 0);
  t->seq = ++loop->timer_seq;
  while (*pp && (*pp)->due <= t->due) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  t->next = *pp;
  t->prev = prev;
  if (*pp)
    (*pp)->prev = t;
  *pp = t;
  t->armed = 1;
}

static void timer_disarm(oc_loop_t *loop, oc_timer_t *t)
{
  if (!t->armed)
    return;
  if (t->prev)
    t->prev->next = t->next;
  else
    loop->timers = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->prev = t->next = NULL;
  t->armed = 0;
}

static void q_push(oc_loop_t *loop, oc_xfer_t *x, int at_head)
{
  x->state = XF_QUEUED;
  loop->queued++;
  if (at_head) {
    x->qprev = NULL;
    x->qnext = loop->qhead;
    if (loop->qhead)
      loop->qhead->qprev = x;
    else
      loop->qtail = x;
    loop->qhead = x;
  } else {
    x->qnext = NULL;
    x->qprev = loop->qtail;
    if (loop->qtail)
      loop->qtail->qnext = x;
    else
      loop->qhead = x;
    loop->qtail = x;
  }
}

static void q_remove(oc_loop_t *loop, oc_xfer_t *x)
{
  if (x->qprev)
    x->qprev->qnext = x->qnext;
  else
    loop->qhead = x->qnext;
  if (x->qnext)
    x->qnext->qprev = x->qprev;
  else
    loop->qtail = x->qprev;
  x->qprev = x->qnext = NULL;
  loop->queued--;
}

static void all_add(oc_loop_t *loop, oc_xfer_t *x)
{
  x->prev = NULL;
  x->next = loop->all;
  if (loop->all)
    loop->all->prev = x;
  loop->all = x;
}

static void all_remove(oc_loop_t *loop, oc_xfer_t *x)
{
  if (x->prev)
    x->prev->next = x->next;
  else
    loop->all = x->next;
  if (x->next)
    x->next->prev = x->prev;
  x->prev = x->next = NULL;
}

static void cb_remove(oc_loop_t *loop, oc_cbtimer_t *c)
{
  if (c->prev)
    c->prev->next = c->next;
  else
    loop->cbtimers = c->next;
  if (c->next)
    c->next->prev = c->prev;
  timer_disarm(loop, &c->t);
  loop->ntimers--;
}

/* Take x off whatever list holds it (it stays on `all`). */
static void detach(oc_loop_t *loop, oc_xfer_t *x)
{
  switch (x->state) {
  case XF_QUEUED:
    q_remove(loop, x);
    break;
  case XF_ACTIVE:
    curl_multi_remove_handle(loop->multi, x->easy);
    loop->active--;
    break;
  case XF_WAITING:
    timer_disarm(loop, &x->timer);
    loop->waiting--;
    break;
  }
  x->state = 0;
}

/* }==================== */

/* {==================== new / free ==================== */

oc_loop_t *oc_loop_new(const oc_loop_opts_t *opts, char *err, size_t errlen)
{
  oc_loop_t *loop = calloc(1, sizeof *loop);
  unsigned maxconn;
  if (!loop) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  loop->sigfd = -1;
  loop->next_id = 1;
  loop->rng = ((uint64_t)oc_loop_now_ms() << 20) ^ (uint64_t)(uintptr_t)loop
              ^ 0x9E3779B97F4A7C15ULL;
  loop->concurrency = opts && opts->concurrency ? opts->concurrency
                                                : DEFAULT_CONCURRENCY;
  maxconn = opts && opts->max_connections ? opts->max_connections
                                          : 2 * loop->concurrency;
  if (!(loop->multi = curl_multi_init())) {
    snprintf(err, errlen, "curl_multi_init failed");
    free(loop);
    return NULL;
  }
  curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, (long)maxconn);
  return loop;
}

static void unwatch_signals(oc_loop_t *loop)
{
  struct signalfd_siginfo si;
  sigset_t ours;
  int s;
  if (loop->sigfd < 0)
    return;
  /* Signals already queued to the signalfd are dropped: nobody will
   * take them any more. */
  while (read(loop->sigfd, &si, sizeof si) == (ssize_t)sizeof si)
    ;
  close(loop->sigfd);
  loop->sigfd = -1;
  /* A process told to stop may keep the signals blocked: unblocking them
   * now would let a second SIGTERM (e.g. forwarded once more by a
   * supervisor) kill it in the middle of its orderly exit. */
  if (loop->signalled && loop->keep_mask)
    return;
  sigemptyset(&ours);
  for (s = 1; s < NSIG; s++)
    if (sigismember(&loop->watched, s) == 1
        && sigismember(&loop->oldmask, s) == 0)
      sigaddset(&ours, s);
  sigprocmask(SIG_UNBLOCK, &ours, NULL);
}

static void events_free(oc_loop_t *loop);

void oc_loop_free(oc_loop_t *loop)
{
  oc_hook_t *h;
  if (!loop)
    return;
  while (loop->all) {
    oc_xfer_t *x = loop->all;
    detach(loop, x);
    all_remove(loop, x);
    oc_xfer_free(x);
  }
  while (loop->cbtimers) {
    oc_cbtimer_t *c = loop->cbtimers;
    cb_remove(loop, c);
    free(c);
  }
  while ((h = loop->hooks)) {
    loop->hooks = h->next;
    h->fn(h->ud);
    free(h);
  }
  unwatch_signals(loop);
  events_free(loop);
  curl_multi_cleanup(loop->multi);
  free(loop);
}

void oc_loop_set_concurrency(oc_loop_t *loop, unsigned n)
{
  loop->concurrency = n ? n : DEFAULT_CONCURRENCY;
}

/* }==================== */

/* {==================== submit / cancel / timers ==================== */

uint64_t oc_loop_submit(oc_loop_t *loop, const oc_request_t *req, char *err,
                        size_t errlen)
{
  oc_xfer_t *x = oc_xfer_new(loop, req, err, errlen);
  if (!x)
    return 0;
  x->id = loop->next_id++;
  x->timer.fire = NULL;          /* set when it first waits */
  x->submitted_at = oc_loop_now_ms();
  all_add(loop, x);
  q_push(loop, x, (req->flags & OC_REQ_URGENT) != 0);
  loop->submitted++;
  return x->id;
}

int oc_loop_cancel(oc_loop_t *loop, uint64_t id)
{
  oc_xfer_t *x;
  oc_cbtimer_t *c;
  for (x = loop->all; x; x = x->next)
    if (x->id == id) {
      detach(loop, x);
      all_remove(loop, x);
      oc_xfer_free(x);
      return 0;
    }
  for (c = loop->cbtimers; c; c = c->next)
    if (c->id == id) {
      cb_remove(loop, c);
      free(c);
      return 0;
    }
  return -1;
}

static void cb_fire(oc_loop_t *loop, oc_timer_t *t)
{
  oc_cbtimer_t *c = (oc_cbtimer_t *)t;
  oc_timer_fn fn = c->fn;
  void *ud = c->ud;
  cb_remove(loop, c);
  free(c);
  loop->events++;
  fn(ud);
}

uint64_t oc_loop_timer(oc_loop_t *loop, long delay_ms, oc_timer_fn fn,
                       void *ud)
{
  oc_cbtimer_t *c = calloc(1, sizeof *c);
  if (!c)
    return 0;
  c->id = loop->next_id++;
  c->fn = fn;
  c->ud = ud;
  c->t.fire = cb_fire;
  c->next = loop->cbtimers;
  if (loop->cbtimers)
    loop->cbtimers->prev = c;
  loop->cbtimers = c;
  loop->ntimers++;
  timer_arm(loop, &c->t, delay_ms);
  return c->id;
}

/* }==================== */

/* {==================== request events ==================== */

void oc_loop_record(oc_loop_t *loop, int retries, int requests)
{
  loop->rec_retries = retries || requests;
  loop->rec_requests = requests;
}

void oc_loop_event_clear(oc_loop_event_t *e)
{
  free(e->url);
  e->url = NULL;
}

int oc_loop_take_event(oc_loop_t *loop, oc_loop_event_t *out)
{
  if (!loop->ev_count)
    return 0;
  *out = loop->ev[loop->ev_head];
  loop->ev[loop->ev_head].url = NULL;
  loop->ev_head = (loop->ev_head + 1) % loop->ev_cap;
  loop->ev_count--;
  return 1;
}

size_t oc_loop_events_dropped(oc_loop_t *loop)
{
  size_t n = loop->ev_dropped;
  loop->ev_dropped = 0;
  return n;
}

/* Room for one more event: the ring doubles (unrolled) when full, up to
 * OC_LOOP_EVENTS. 0, or -1 when it cannot grow. */
static int events_room(oc_loop_t *loop)
{
  size_t cap, i;
  oc_loop_event_t *ev;
  if (loop->ev_count < loop->ev_cap)
    return 0;
  if (loop->ev_cap >= OC_LOOP_EVENTS)
    return -1;
  cap = loop->ev_cap ? loop->ev_cap * 2 : 64;
  if (cap > OC_LOOP_EVENTS)
    cap = OC_LOOP_EVENTS;
  if (!(ev = malloc(cap * sizeof *ev)))
    return -1;
  for (i = 0; i < loop->ev_count; i++)
    ev[i] = loop->ev[(loop->ev_head + i) % loop->ev_cap];
  free(loop->ev);
  loop->ev = ev;
  loop->ev_cap = cap;
  loop->ev_head = 0;
  return 0;
}

/* Record what happened to x's last attempt (see oc_loop_event_t). */
static void record(oc_loop_t *loop, const oc_xfer_t *x, int type,
                   CURLcode code, int status, long delay, int gave_up)
{
  oc_loop_event_t *e;
  if (!loop->rec_retries
      || (type == OC_LOOP_EV_DONE && !loop->rec_requests && x->attempts < 2
          && !(code == CURLE_OK && status == 401) && x->asked_ms < 0))
    return;
  if (events_room(loop)) {
    loop->ev_dropped++;
    return;
  }
  e = &loop->ev[(loop->ev_head + loop->ev_count++) % loop->ev_cap];
  memset(e, 0, sizeof *e);
  e->type = type;
  e->id = x->id;
  snprintf(e->method, sizeof e->method, "%s", x->method);
  if ((e->url = malloc(strlen(x->url) + 1)))
    strcpy(e->url, x->url);
  e->status = code == CURLE_OK ? status : 0;
  if (code != CURLE_OK)
    snprintf(e->error, sizeof e->error, "%.150s", x->too_large
             ? "response too large" : x->errbuf[0] ? x->errbuf
             : curl_easy_strerror(code));
  e->attempt = x->attempts;
  e->max_attempts = x->has_retry && x->retry.max_attempts > 0
                    ? x->retry.max_attempts : 1;
  e->max_wait_ms = x->has_retry ? x->retry.max_total_wait_ms : 0;
  e->delay_ms = delay;
  e->waited_ms = x->waited_ms;
  e->elapsed_ms = (long)(oc_loop_now_ms() - x->submitted_at);
  e->gave_up = gave_up;
  e->asked_ms = type == OC_LOOP_EV_DONE ? x->asked_ms : -1;
}

static void events_free(oc_loop_t *loop)
{
  oc_loop_event_t e;
  while (oc_loop_take_event(loop, &e))
    oc_loop_event_clear(&e);
  free(loop->ev);
  loop->ev = NULL;
  loop->ev_cap = 0;
}

/* }==================== */

/* {==================== running transfers ==================== */

static void complete(oc_loop_t *loop, oc_xfer_t *x, CURLcode code,
                     int status)
{
  oc_response_t *r;
  oc_done_fn done = x->done;
  void *ud = x->ud;
  record(loop, x, OC_LOOP_EV_DONE, code, status, 0,
         code != CURLE_FAILED_INIT && oc_xfer_retryable(x, code, status));
  r = oc_xfer_response(x, code, status);
  all_remove(loop, x);
  oc_xfer_free(x);
  loop->completed++;
  loop->events++;
  if (done)
    done(ud, r);                 /* r is NULL only when out of memory */
  else
    oc_response_free(r);
}

static void retry_fire(oc_loop_t *loop, oc_timer_t *t)
{
  oc_xfer_t *x = (oc_xfer_t *)t;
  loop->waiting--;
  q_push(loop, x, 1);            /* it had its turn already */
}

static void start(oc_loop_t *loop, oc_xfer_t *x)
{
  x->attempts++;
  loop->attempts++;
  if (oc_xfer_prepare(x) != 0
      || curl_multi_add_handle(loop->multi, x->easy) != CURLM_OK) {
    complete(loop, x, CURLE_FAILED_INIT, 0);
    return;
  }
  x->state = XF_ACTIVE;
  if (++loop->active > loop->peak)
    loop->peak = loop->active;
}

static void pump(oc_loop_t *loop)
{
  while (loop->active < loop->concurrency && loop->qhead) {
    oc_xfer_t *x = loop->qhead;
    q_remove(loop, x);
    x->state = 0;
    start(loop, x);
  }
}

static void attempt_done(oc_loop_t *loop, oc_xfer_t *x, CURLcode code)
{
  long status = 0, delay;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(loop->multi, x->easy);
  loop->active--;
  x->state = 0;
  if (code != CURLE_OK)
    status = 0;
  delay = oc_xfer_retry_delay(x, code, (int)status);
  if (delay < 0) {
    complete(loop, x, code, (int)status);
    return;
  }
  record(loop, x, OC_LOOP_EV_RETRY, code, (int)status, delay, 0);
  x->waited_ms += delay;
  x->state = XF_WAITING;
  x->timer.fire = retry_fire;
  loop->waiting++;
  loop->retries++;
  timer_arm(loop, &x->timer, delay);
}

static void drain(oc_loop_t *loop)
{
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(loop->multi, &left))) {
    CURL *e = m->easy_handle;
    CURLcode code = m->data.result;
    oc_xfer_t *x = NULL;
    if (m->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    if (x)
      attempt_done(loop, x, code);
  }
}

/* Fire the due timers, but not those armed by the callbacks run here
 * (a callback that re-arms a 0 ms timer would otherwise never let go). */
static void fire_timers(oc_loop_t *loop)
{
  int64_t now = oc_loop_now_ms();
  uint64_t last = loop->timer_seq;
  oc_timer_t *t = loop->timers;
  while (t && t->due <= now) {
    if (t->seq > last) {
      t = t->next;
      continue;
    }
    timer_disarm(loop, t);
    t->fire(loop, t);
    t = loop->timers;            /* callbacks may have changed the list */
  }
}

/* }==================== */

/* {==================== waiting ==================== */

static void read_signals(oc_loop_t *loop)
{
  struct signalfd_siginfo si;
  while (read(loop->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    loop->events++;
    loop->signalled = 1;
    if (loop->sigcount < OC_SIGQ) {
      loop->sigq[(loop->sighead + loop->sigcount) % OC_SIGQ]
        = (int)si.ssi_signo;
      loop->sigcount++;
    }
  }
}

static long clamp_ms(int64_t ms)
{
  return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (long)ms;
}

/* How long the next poll may sleep. */
static long poll_ms(oc_loop_t *loop, int64_t deadline,
                    oc_server_t *const *servers, size_t n)
{
  int64_t now = oc_loop_now_ms();
  long ms = clamp_ms(deadline - now);
  size_t i;
  if (loop->events || (loop->qhead && loop->active < loop->concurrency))
    return 0;
  if (loop->timers && clamp_ms(loop->timers->due - now) < ms)
    ms = clamp_ms(loop->timers->due - now);
  for (i = 0; i < n; i++) {
    long st = oc_server_timeout_ms(servers[i]);
    if (st >= 0 && st < ms)
      ms = st;
  }
  return ms;
}

static int nothing_to_wait_for(oc_loop_t *loop, size_t nservers)
{
  return !loop->all && !loop->timers && !nservers && loop->sigfd < 0;
}

static void poll_once(oc_loop_t *loop, long ms, oc_server_t *const *servers,
                      size_t n, struct curl_waitfd *fds)
{
  size_t i, nfds = 0;
  int running;
  for (i = 0; i < n; i++) {
    fds[nfds].fd = oc_server_fd(servers[i]);
    fds[nfds].events = CURL_WAIT_POLLIN;
    fds[nfds++].revents = 0;
  }
  if (loop->sigfd >= 0) {
    fds[nfds].fd = loop->sigfd;
    fds[nfds].events = CURL_WAIT_POLLIN;
    fds[nfds++].revents = 0;
  }
  curl_multi_poll(loop->multi, fds, (unsigned)nfds, (int)ms, NULL);
  curl_multi_perform(loop->multi, &running);
  drain(loop);
  for (i = 0; i < n; i++) {
    oc_server_run(servers[i]);
    /* requests to hand over, with or without I/O this time: a pipelined
     * request is parsed from what an earlier read buffered, in the run
     * after its predecessor's answer went out */
    if (fds[i].revents || oc_server_queued(servers[i]) > 0)
      loop->events++;
  }
  if (loop->sigfd >= 0 && fds[n].revents)
    read_signals(loop);
}

int oc_loop_wait(oc_loop_t *loop, long timeout_ms,
                 oc_server_t *const *servers, size_t nservers)
{
  struct curl_waitfd stackfds[FDS_ON_STACK], *fds = stackfds;
  int64_t deadline = timeout_ms < 0 ? INT64_MAX
                                    : oc_loop_now_ms() + timeout_ms;
  int events;
  if (!servers)
    nservers = 0;
  if (timeout_ms < 0 && nothing_to_wait_for(loop, nservers))
    return 0;
  if (nservers + 1 > FDS_ON_STACK
      && !(fds = malloc((nservers + 1) * sizeof *fds)))
    return -1;
  loop->events = 0;
  for (;;) {
    fire_timers(loop);
    pump(loop);
    poll_once(loop, poll_ms(loop, deadline, servers, nservers), servers,
              nservers, fds);
    fire_timers(loop);
    pump(loop);                  /* freed slots start now, not next time */
    if (loop->events || oc_loop_now_ms() >= deadline)
      break;
  }
  if (fds != stackfds)
    free(fds);
  events = loop->events;
  loop->events = 0;
  return events;
}

long oc_loop_next_timeout_ms(oc_loop_t *loop)
{
  long t = -1, ct = -1;
  if (loop->qhead && loop->active < loop->concurrency)
    return 0;
  if (loop->timers)
    t = clamp_ms(loop->timers->due - oc_loop_now_ms());
  if (loop->active) {
    curl_multi_timeout(loop->multi, &ct);
    if (ct < 0)
      ct = 1000;
    if (t < 0 || ct < t)
      t = ct;
  }
  return t;
}

/* }==================== */

/* {==================== signals, stats, hooks ==================== */

int oc_loop_watch_signals(oc_loop_t *loop, char *err, size_t errlen)
{
  if (loop->sigfd >= 0)
    return 0;
  sigemptyset(&loop->watched);
  sigaddset(&loop->watched, SIGTERM);
  sigaddset(&loop->watched, SIGINT);
  sigaddset(&loop->watched, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &loop->watched, &loop->oldmask) != 0) {
    snprintf(err, errlen, "sigprocmask: %s", strerror(errno));
    return -1;
  }
  loop->sigfd = signalfd(-1, &loop->watched, SFD_NONBLOCK | SFD_CLOEXEC);
  if (loop->sigfd < 0) {
    snprintf(err, errlen, "signalfd: %s", strerror(errno));
    sigprocmask(SIG_SETMASK, &loop->oldmask, NULL);
    return -1;
  }
  return 0;
}

void oc_loop_keep_signal_mask(oc_loop_t *loop, int keep)
{
  loop->keep_mask = keep;
}

int oc_loop_take_signal(oc_loop_t *loop)
{
  int s;
  if (!loop->sigcount)
    return 0;
  s = loop->sigq[loop->sighead];
  loop->sighead = (loop->sighead + 1) % OC_SIGQ;
  loop->sigcount--;
  return s;
}

void oc_loop_stats(const oc_loop_t *loop, oc_loop_stats_t *out)
{
  out->active = loop->active;
  out->queued = loop->queued;
  out->waiting = loop->waiting;
  out->timers = loop->ntimers;
  out->concurrency = loop->concurrency;
  out->peak_active = loop->peak;
  out->submitted = loop->submitted;
  out->completed = loop->completed;
  out->attempts = loop->attempts;
  out->retries = loop->retries;
}

int oc_loop_add_close_hook(oc_loop_t *loop, oc_timer_fn fn, void *ud)
{
  oc_hook_t *h = malloc(sizeof *h);
  if (!h)
    return -1;
  h->fn = fn;
  h->ud = ud;
  h->next = loop->hooks;
  loop->hooks = h;
  return 0;
}

void oc_loop_remove_close_hook(oc_loop_t *loop, oc_timer_fn fn, void *ud)
{
  oc_hook_t **pp;
  for (pp = &loop->hooks; *pp; pp = &(*pp)->next)
    if ((*pp)->fn == fn && (*pp)->ud == ud) {
      oc_hook_t *h = *pp;
      *pp = h->next;
      free(h);
      return;
    }
}

/* }==================== */
