/*
 * jqbudget.c - the watchdog, the big stack and the out-of-memory escape
 * of jq evaluation (see jqbudget.h for why each exists).
 *
 * Threads: the caller's thread runs jq (on the big stack when there is
 * one); the watchdog thread polls every OC_BUDGET_POLL_MS while items
 * come (armed, or armed since its last poll but one of LINGER_POLLS) and
 * sleeps on a condition variable when they stop: arming then wakes it,
 * while items flow it costs the caller no system call. Everything
 * they share is under b->mu; jq_halt is only ever called with it held and
 * only on a state that jq_halted() says is running, which is what keeps
 * libjq's assert(!halted) quiet. A halt can be lost when the watchdog
 * halts while the caller is inside jq_start (which clears it): the
 * watchdog halts again at its next poll, and the caller checks the breach
 * before every jq_start.
 *
 * Owns: the watchdog thread, the stack mapping, a descriptor on
 * /proc/self/statm.
 */
#include "jqbudget.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__) && !defined(OC_NO_BIG_STACK)
#define OC_BIG_STACK
#include <ucontext.h>
#endif

/* AddressSanitizer is told about the stack switches. */
#if defined(OC_BIG_STACK) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(save, bottom, size) \
  __sanitizer_start_switch_fiber(save, bottom, size)
#define ASAN_FINISH(save, bottom, size) \
  __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define ASAN_START(save, bottom, size) ((void)0)
#define ASAN_FINISH(save, bottom, size) ((void)0)
#endif

#ifdef __has_include
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define OC_HAVE_VALGRIND
#endif
#endif

#if UINTPTR_MAX > 0xffffffffu
#define STACK_BYTES ((size_t)1 << 30)   /* reserved, not committed */
#else
#define STACK_BYTES ((size_t)64 << 20)
#endif
#define STACK_MIN ((size_t)16 << 20)
#define STACK_KEEP ((size_t)1 << 20)    /* kept resident after deep use */
#define DEEP_CALL_NS 2000000L           /* a call this long may have gone deep */
#define LINGER_POLLS 10                 /* polls without an item, then sleep */

struct oc_budget {
  int refs;
  pthread_mutex_t mu;
  pthread_cond_t cv;                    /* wakes the watchdog */
  unsigned long forks;                  /* fork_count when last armed */
  int thread_on, thread_failed, stop, idle;
  int stopping;                         /* a stop signal was seen pending */
  pthread_t thread;
  /* the armed item */
  int armed, breach;
  unsigned long gen;
  struct timespec start;
  double seconds;
  size_t bytes;
  jq_state *target;
  int statm;                            /* /proc/self/statm or -1 */
  long page;
  /* the call in progress */
  void (*fn)(void *);
  void *ud;
  volatile int status;
  int in_call;
  sigjmp_buf nomem;
#ifdef OC_BIG_STACK
  ucontext_t caller, co;
  char *stack;
  size_t stack_size;
  int co_ok, co_failed;
  void *asan_caller, *asan_co;          /* fake stacks (AddressSanitizer) */
  const void *caller_bottom;
  size_t caller_size;
#ifdef OC_HAVE_VALGRIND
  unsigned vg_stack;
#endif
#endif
};

/* {==================== time and memory ==================== */

static long elapsed_ns(const struct timespec *from)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long)(now.tv_sec - from->tv_sec) * 1000000000L
         + (now.tv_nsec - from->tv_nsec);
}

/* Resident bytes of the process, or 0 when unknown. */
static size_t resident(const oc_budget_t *b)
{
  char buf[96];
  ssize_t n;
  unsigned long size, rss;
  if (b->statm < 0)
    return 0;
  n = pread(b->statm, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  if (sscanf(buf, "%lu %lu", &size, &rss) != 2)
    return 0;
  return (size_t)rss * (size_t)b->page;
}

/* }==================== */

/* {==================== watchdog ==================== */

/* With b->mu held: halt the armed state unless it is already halted. */
static void halt_target(oc_budget_t *b)
{
  if (b->target && !jq_halted(b->target))
    jq_halt(b->target, jv_invalid(), jv_invalid());
}

static void fire(oc_budget_t *b, int breach)
{
  if (!b->breach)
    b->breach = breach;
  halt_target(b);
}

static int stop_signal_pending(void)
{
  sigset_t p;
  if (sigpending(&p) != 0)
    return 0;
  return sigismember(&p, SIGTERM) == 1 || sigismember(&p, SIGINT) == 1
         || sigismember(&p, SIGQUIT) == 1 || sigismember(&p, SIGHUP) == 1;
}

/* One look at the armed item (b->mu held). */
static void inspect(oc_budget_t *b, unsigned long *seen, size_t *base)
{
  size_t rss;
  if (b->breach) {
    halt_target(b);                     /* a halt jq_start may have undone */
    return;
  }
  if (b->seconds > 0 && elapsed_ns(&b->start) > (long)(b->seconds * 1e9)) {
    fire(b, OC_BREACH_TIME);
    return;
  }
  if (stop_signal_pending()) {
    b->stopping = 1;
    fire(b, OC_BREACH_SIGNAL);
    return;
  }
  if (!b->bytes || b->statm < 0)
    return;
  rss = resident(b);
  if (*seen != b->gen) {
    *seen = b->gen;
    *base = rss;
  } else if (rss > *base && rss - *base > b->bytes) {
    fire(b, OC_BREACH_MEMORY);
  }
}

static void deadline_in(struct timespec *t, long ms)
{
  clock_gettime(CLOCK_MONOTONIC, t);
  t->tv_nsec += ms * 1000000L;
  if (t->tv_nsec >= 1000000000L) {
    t->tv_sec += t->tv_nsec / 1000000000L;
    t->tv_nsec %= 1000000000L;
  }
}

static void *watchdog(void *arg)
{
  oc_budget_t *b = arg;
  unsigned long seen = 0, last = 0;
  size_t base = 0;
  int quiet = 0;
  struct timespec t;
  pthread_mutex_lock(&b->mu);
  while (!b->stop) {
    if (b->armed) {
      inspect(b, &seen, &base);
    } else if (b->gen != last) {
      last = b->gen;             /* items are coming: stay awake */
      quiet = 0;
    } else if (++quiet > LINGER_POLLS) {
      b->idle = 1;
      pthread_cond_wait(&b->cv, &b->mu);
      b->idle = 0;
      quiet = 0;
      continue;
    }
    deadline_in(&t, OC_BUDGET_POLL_MS);
    pthread_cond_timedwait(&b->cv, &b->mu, &t);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

static void init_sync(oc_budget_t *b)
{
  pthread_condattr_t ca;
  pthread_mutex_init(&b->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&b->cv, &ca);
  pthread_condattr_destroy(&ca);
}

/* The watchdog blocks every signal: they stay for the threads that
 * handle them (and pending, where the watchdog looks for them). */
static void start_thread(oc_budget_t *b)
{
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  b->stop = 0;
  b->thread_on = pthread_create(&b->thread, NULL, watchdog, b) == 0;
  b->thread_failed = !b->thread_on;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Forks of the process, counted in the child (pthread_atfork; glibc
 * unregisters the handler when the module is unloaded). */
static unsigned long fork_count;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
  fork_count++;
}

static void count_forks(void)
{
  pthread_atfork(NULL, NULL, on_fork_child);
}

/* In a child forked while a watchdog ran: no thread, and the mutex may
 * have been held by it at the fork. */
static void after_fork(oc_budget_t *b)
{
  b->forks = fork_count;
  b->thread_on = b->thread_failed = 0;
  b->idle = b->armed = 0;
  b->target = NULL;
  init_sync(b);
}

/* }==================== */

/* {==================== life cycle ==================== */

oc_budget_t *oc_budget_new(void)
{
  oc_budget_t *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->refs = 1;
  pthread_once(&fork_once, count_forks);
  b->forks = fork_count;
  b->seconds = OC_BUDGET_DEFAULT_SECONDS;
  b->bytes = OC_BUDGET_DEFAULT_BYTES;
  b->page = sysconf(_SC_PAGESIZE);
  if (b->page <= 0)
    b->page = 4096;
  b->statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  init_sync(b);
  return b;
}

oc_budget_t *oc_budget_ref(oc_budget_t *b)
{
  if (b)
    b->refs++;
  return b;
}

void oc_budget_unref(oc_budget_t *b)
{
  if (!b || --b->refs > 0)
    return;
  if (b->thread_on && b->forks == fork_count) {
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
  }
  pthread_cond_destroy(&b->cv);
  pthread_mutex_destroy(&b->mu);
  if (b->statm >= 0)
    close(b->statm);
#ifdef OC_BIG_STACK
  if (b->stack) {
#ifdef OC_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(b->vg_stack);
#endif
    munmap(b->stack, b->stack_size);
  }
#endif
  free(b);
}

/* }==================== */

/* {==================== the item ==================== */

void oc_budget_arm(oc_budget_t *b, jq_state *jq, double seconds,
                   size_t bytes)
{
  if (b->forks != fork_count)
    after_fork(b);
  pthread_mutex_lock(&b->mu);
  /* with no limits too: the watchdog still stops an item on a pending
   * SIGTERM/SIGINT/SIGQUIT/SIGHUP */
  if (!b->thread_on && !b->thread_failed)
    start_thread(b);
  b->armed = 1;
  b->gen++;
  b->breach = OC_BREACH_NONE;
  /* while the process is stopping, fail items at once, not one poll each */
  if (b->stopping && !(b->breach = stop_signal_pending()
                       ? OC_BREACH_SIGNAL : OC_BREACH_NONE))
    b->stopping = 0;
  b->target = jq;
  b->seconds = seconds;
  b->bytes = bytes;
  clock_gettime(CLOCK_MONOTONIC, &b->start);
  if (b->idle)
    pthread_cond_signal(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

int oc_budget_disarm(oc_budget_t *b)
{
  int r;
  pthread_mutex_lock(&b->mu);
  b->armed = 0;
  b->target = NULL;
  r = b->breach;
  pthread_mutex_unlock(&b->mu);
  return r;
}

int oc_budget_breach(oc_budget_t *b)
{
  int r;
  pthread_mutex_lock(&b->mu);
  r = b->breach;
  pthread_mutex_unlock(&b->mu);
  return r;
}

void oc_budget_halt(oc_budget_t *b, int breach)
{
  pthread_mutex_lock(&b->mu);
  if (breach)
    fire(b, breach);
  else
    halt_target(b);
  pthread_mutex_unlock(&b->mu);
}

void oc_budget_describe(const oc_budget_t *b, int breach, char *out,
                        size_t outlen)
{
  switch (breach) {
  case OC_BREACH_TIME:
    snprintf(out, outlen, "exceeded the time limit (%g s)", b->seconds);
    break;
  case OC_BREACH_MEMORY:
    snprintf(out, outlen, "exceeded the memory limit (%zu MiB)",
             b->bytes >> 20);
    break;
  case OC_BREACH_SIZE:
    snprintf(out, outlen, "would exceed the memory limit (%zu MiB)",
             b->bytes >> 20);
    break;
  case OC_BREACH_SIGNAL:
    snprintf(out, outlen, "was interrupted: the process is stopping "
             "(SIGTERM, SIGINT, SIGQUIT or SIGHUP)");
    break;
  case OC_BREACH_NOMEM:
    snprintf(out, outlen, "ran out of memory");
    break;
  default:
    snprintf(out, outlen, "was stopped");
  }
}

/* }==================== */

/* {==================== calls on the big stack ==================== */

/* The budget whose call runs on this thread. libjq 1.6 as Debian builds it
 * (the __thread variant of jv_alloc.c) calls the out-of-memory handler
 * without its data pointer, so the handler cannot be told which budget to
 * return to: this thread-local slot is the one piece of state outside an
 * object, per thread, set only for the length of a call. */
static __thread oc_budget_t *calling;

static void on_nomem(void *data)
{
  oc_budget_t *b = data ? data : calling;
  if (b && b->in_call) {
    b->status = OC_BUDGET_NOMEM;
    siglongjmp(b->nomem, 1);
  }
  /* outside a call there is nowhere to go: libjq aborts, as before */
}

void oc_budget_watch_nomem(oc_budget_t *b, jq_state *jq)
{
  jq_set_nomem_handler(jq, on_nomem, b);
}

static void run_fn(oc_budget_t *b)
{
  oc_budget_t *outer = calling;
  calling = b;
  b->in_call = 1;
  if (sigsetjmp(b->nomem, 0) == 0)
    b->fn(b->ud);
  b->in_call = 0;
  calling = outer;
}

#ifdef OC_BIG_STACK
static void co_entry(unsigned lo, unsigned hi)
{
  uintptr_t p = (uintptr_t)lo;
#if UINTPTR_MAX > 0xffffffffu
  p |= (uintptr_t)hi << 32;
#else
  (void)hi;
#endif
  for (;;) {
    oc_budget_t *b = (oc_budget_t *)p;
    ASAN_FINISH(b->asan_co, &b->caller_bottom, &b->caller_size);
    run_fn(b);
    ASAN_START(&b->asan_co, b->caller_bottom, b->caller_size);
    swapcontext(&b->co, &b->caller);
  }
}

/* Reserve the stack and make the context, once. */
static int ensure_stack(oc_budget_t *b)
{
  size_t size;
  void *p = MAP_FAILED;
  uintptr_t self = (uintptr_t)b;
  if (b->co_ok || b->co_failed)
    return b->co_ok ? 0 : -1;
  for (size = STACK_BYTES; size >= STACK_MIN && p == MAP_FAILED; size /= 2)
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE
             | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED || getcontext(&b->co) != 0) {
    if (p != MAP_FAILED)
      munmap(p, size * 2);
    b->co_failed = 1;
    return -1;
  }
  size *= 2;                            /* the loop halved once too many */
  b->stack = p;
  b->stack_size = size;
  mprotect(p, (size_t)b->page, PROT_NONE);    /* overflow faults here */
  b->co.uc_stack.ss_sp = b->stack + b->page;
  b->co.uc_stack.ss_size = size - (size_t)b->page;
  b->co.uc_link = NULL;
  sigfillset(&b->co.uc_sigmask);
  makecontext(&b->co, (void (*)(void))co_entry, 2,
              (unsigned)(self & 0xffffffffu),
#if UINTPTR_MAX > 0xffffffffu
              (unsigned)(self >> 32)
#else
              0u
#endif
              );
#ifdef OC_HAVE_VALGRIND
  b->vg_stack = VALGRIND_STACK_REGISTER(b->stack + b->page,
                                        b->stack + size);
#endif
  b->co_ok = 1;
  return 0;
}
#endif

int oc_budget_call(oc_budget_t *b, void (*fn)(void *), void *ud)
{
  if (b->in_call) {
    fn(ud);                     /* already there; an escape ends the outer */
    return OC_BUDGET_OK;
  }
  b->fn = fn;
  b->ud = ud;
  b->status = OC_BUDGET_OK;
#ifdef OC_BIG_STACK
  if (ensure_stack(b) == 0) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASAN_START(&b->asan_caller, b->stack + b->page,
               b->stack_size - (size_t)b->page);
    swapcontext(&b->caller, &b->co);
    ASAN_FINISH(b->asan_caller, NULL, NULL);
    /* a long call may have recursed deep: give those pages back */
    if (elapsed_ns(&t0) > DEEP_CALL_NS)
      madvise(b->stack + b->page, b->stack_size - (size_t)b->page
              - STACK_KEEP, MADV_DONTNEED);
    return b->status;
  }
#endif
  run_fn(b);
  return b->status;
}

/* }==================== */
