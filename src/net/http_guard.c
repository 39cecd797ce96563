/*
 * http_guard.c - connection deadlines, the per-client limit and eviction
 * at the total limit (see http_guard.h for the rules).
 *
 * Owns: one record per open connection, linked in the list of its wait
 * (head or body; none while its request is handled or once it is shut
 * down), and a table of connection counts per client address. Each list
 * is ordered by the start of the wait because every record of a list has
 * the same timeout and joins at the tail, so a sweep only looks at heads.
 * The table is open-addressed (linear probing, backward-shift deletion),
 * sized at creation to twice the total limit, so it never fills: a client
 * holds at least one connection. Its hash is seeded per guard, so remote
 * peers cannot choose addresses that collide.
 */
#include "http_guard.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum conn_wait { W_HEAD, W_BODY, W_NONE };

typedef struct client_key {
  unsigned char addr[16];        /* IPv4 in the first 4 bytes */
  unsigned char family;          /* 4, 6, or 0: unknown (not counted) */
} client_key_t;

struct oc_guard_conn {
  int fd;
  enum conn_wait wait;
  int shut;                      /* shutdown sent; waiting for the close */
  long long since;               /* start of the current wait */
  client_key_t key;
  struct oc_guard_conn *prev, *next;
};

typedef struct clist {
  oc_guard_conn_t *first, *last;
  unsigned n;
} clist_t;

typedef struct slot {
  client_key_t key;
  unsigned count;                /* 0: empty */
} slot_t;

struct oc_guard {
  oc_guard_opts_t o;
  clist_t lists[2];              /* W_HEAD, W_BODY */
  unsigned open, shut;
  slot_t *slots;
  size_t mask;                   /* capacity - 1 (a power of two) */
  unsigned clients;
  uint64_t seed;
  oc_guard_stats_t st;
};

/* {==================== lists ==================== */

static void clist_push(clist_t *l, oc_guard_conn_t *c)
{
  c->prev = l->last;
  c->next = NULL;
  if (l->last) l->last->next = c; else l->first = c;
  l->last = c;
  l->n++;
}

static void clist_remove(clist_t *l, oc_guard_conn_t *c)
{
  if (c->prev) c->prev->next = c->next; else l->first = c->next;
  if (c->next) c->next->prev = c->prev; else l->last = c->prev;
  c->prev = c->next = NULL;
  l->n--;
}

/* Move c to the tail of the list of wait w (W_NONE: out of both). */
static void set_wait(oc_guard_t *g, oc_guard_conn_t *c, enum conn_wait w,
                     long long now)
{
  if (c->wait != W_NONE) clist_remove(&g->lists[c->wait], c);
  c->wait = w;
  c->since = now;
  if (w != W_NONE) clist_push(&g->lists[w], c);
}

/* }==================== */

/* {==================== clients ==================== */

/* The client of a peer address; family 0 for other address families. */
static client_key_t key_of(const struct sockaddr *sa, socklen_t len)
{
  static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              0xff, 0xff };
  client_key_t k;
  memset(&k, 0, sizeof k);
  if (!sa) return k;
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    memcpy(k.addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    k.family = 4;
  } else if (sa->sa_family == AF_INET6
             && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const unsigned char *a =
      ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
    if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
      memcpy(k.addr, a + 12, 4);
      k.family = 4;
    } else {
      memcpy(k.addr, a, 16);
      k.family = 6;
    }
  }
  return k;
}

static int key_eq(const client_key_t *a, const client_key_t *b)
{
  return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

/* FNV-1a over the seeded key. */
static size_t key_hash(const oc_guard_t *g, const client_key_t *k)
{
  uint64_t h = 1469598103934665603ull ^ g->seed;
  size_t i;
  for (i = 0; i < 16; i++) {
    h ^= k->addr[i];
    h *= 1099511628211ull;
  }
  h ^= k->family;
  h *= 1099511628211ull;
  return (size_t)(h ^ (h >> 29));
}

/* The slot holding k, or the empty slot where it would go. */
static size_t find_slot(const oc_guard_t *g, const client_key_t *k)
{
  size_t i = key_hash(g, k) & g->mask;
  while (g->slots[i].count && !key_eq(&g->slots[i].key, k))
    i = (i + 1) & g->mask;
  return i;
}

static unsigned client_count(const oc_guard_t *g, const client_key_t *k)
{
  return g->slots[find_slot(g, k)].count;
}

static void client_add(oc_guard_t *g, const client_key_t *k)
{
  size_t i = find_slot(g, k);
  if (g->slots[i].count == 0) {
    if (g->clients >= (g->mask + 1) / 2) return;  /* cannot happen */
    g->slots[i].key = *k;
    g->clients++;
  }
  g->slots[i].count++;
}

/* Empty slot i and shift the run after it back (linear probing). */
static void slot_delete(oc_guard_t *g, size_t i)
{
  size_t j = i;
  for (;;) {
    size_t home;
    j = (j + 1) & g->mask;
    if (g->slots[j].count == 0) break;
    home = key_hash(g, &g->slots[j].key) & g->mask;
    /* j's entry may move to i when its home is not cyclically in (i, j] */
    if ((i <= j) ? (home <= i || home > j) : (home <= i && home > j)) {
      g->slots[i] = g->slots[j];
      i = j;
    }
  }
  g->slots[i].count = 0;
}

static void client_remove(oc_guard_t *g, const client_key_t *k)
{
  size_t i = find_slot(g, k);
  if (g->slots[i].count == 0) return;
  if (--g->slots[i].count == 0) {
    slot_delete(g, i);
    g->clients--;
  }
}

/* }==================== */

/* {==================== life of a connection ==================== */

static uint64_t make_seed(const void *salt)
{
  uint64_t s = 0;
  struct timespec ts;
  if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
  clock_gettime(CLOCK_REALTIME, &ts);   /* no entropy yet: best effort */
  return (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)(uintptr_t)salt
         ^ (uint64_t)ts.tv_sec;
}

oc_guard_t *oc_guard_new(const oc_guard_opts_t *o)
{
  oc_guard_t *g = calloc(1, sizeof *g);
  size_t cap = 16;
  if (!g) return NULL;
  g->o = *o;
  while (cap < 2 * (size_t)o->max_connections + 2) cap *= 2;
  g->slots = calloc(cap, sizeof *g->slots);
  if (!g->slots) {
    free(g);
    return NULL;
  }
  g->mask = cap - 1;
  g->seed = make_seed(g);
  return g;
}

/* Records still linked are those of connections the server never reported
 * closed; the server closes every connection before freeing the guard. */
void oc_guard_free(oc_guard_t *g)
{
  int w;
  if (!g) return;
  for (w = W_HEAD; w <= W_BODY; w++) {
    oc_guard_conn_t *c;
    while ((c = g->lists[w].first) != NULL) {
      clist_remove(&g->lists[w], c);
      free(c);
    }
  }
  free(g->slots);
  free(g);
}

int oc_guard_admit(oc_guard_t *g, const struct sockaddr *addr,
                   socklen_t len)
{
  client_key_t k = key_of(addr, len);
  if (!g->o.max_per_client || !k.family) return 1;
  if (client_count(g, &k) < g->o.max_per_client) return 1;
  g->st.refused_per_client++;
  return 0;
}

oc_guard_conn_t *oc_guard_opened(oc_guard_t *g, int fd,
                                 const struct sockaddr *addr, socklen_t len,
                                 long long now_ms)
{
  oc_guard_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = fd;
  c->wait = W_NONE;
  c->key = key_of(addr, len);
  if (c->key.family) client_add(g, &c->key);
  g->open++;
  set_wait(g, c, W_HEAD, now_ms);
  return c;
}

void oc_guard_head_done(oc_guard_t *g, oc_guard_conn_t *c, long long now_ms)
{
  if (c && !c->shut) set_wait(g, c, W_BODY, now_ms);
}

void oc_guard_busy(oc_guard_t *g, oc_guard_conn_t *c)
{
  if (c && !c->shut) set_wait(g, c, W_NONE, 0);
}

void oc_guard_idle(oc_guard_t *g, oc_guard_conn_t *c, long long now_ms)
{
  if (c && !c->shut) set_wait(g, c, W_HEAD, now_ms);
}

void oc_guard_closed(oc_guard_t *g, oc_guard_conn_t *c)
{
  if (!c) return;
  set_wait(g, c, W_NONE, 0);
  if (c->key.family) client_remove(g, &c->key);
  if (c->shut) g->shut--;
  g->open--;
  free(c);
}

/* }==================== */

/* {==================== sweeping ==================== */

/* Shut the connection down; libmicrohttpd closes it on its next run. A
 * failed shutdown (the peer already reset it) needs nothing more: the
 * descriptor is in error and libmicrohttpd closes it as well. */
static void shut_down(oc_guard_t *g, oc_guard_conn_t *c)
{
  set_wait(g, c, W_NONE, 0);
  c->shut = 1;
  g->shut++;
  (void)shutdown(c->fd, SHUT_RDWR);
}

static unsigned timeout_of(const oc_guard_t *g, enum conn_wait w)
{
  return w == W_HEAD ? g->o.header_timeout_ms : g->o.body_timeout_ms;
}

/* Eviction spares connections younger than this: one just accepted has
 * not been read yet, and may well be the health probe. */
static long long evict_age(const oc_guard_t *g)
{
  long long half = g->o.header_timeout_ms / 2;
  return half < 1000 ? half : 1000;
}

static unsigned expire(oc_guard_t *g, enum conn_wait w, long long now,
                       unsigned long long *counter)
{
  unsigned n = 0;
  oc_guard_conn_t *c;
  while ((c = g->lists[w].first) != NULL
         && now - c->since >= (long long)timeout_of(g, w)) {
    shut_down(g, c);
    (*counter)++;
    n++;
  }
  return n;
}

/* A body still arriving this long after its head may be evicted at the
 * limit, as a head may: a slow body holds a slot as a slow head does, and
 * a probe waits behind it (the health probe's timeout is often 1 s). */
static long long evict_body_age(const oc_guard_t *g)
{
  return evict_age(g);
}

/* At the total limit, make room for a batch (1/64 of the limit) of new
 * connections, so that a burst does not need one sweep per accept: the
 * connections that waited longest for a head first, then those whose body
 * has been arriving longest (at least evict_body_age). */
static unsigned evict_from(oc_guard_t *g, enum conn_wait w, long long min_age,
                           long long now, unsigned *live, unsigned target)
{
  unsigned n = 0;
  oc_guard_conn_t *c;
  while (*live > target && (c = g->lists[w].first) != NULL
         && now - c->since >= min_age) {
    shut_down(g, c);
    g->st.evicted++;
    (*live)--;
    n++;
  }
  return n;
}

static unsigned evict(oc_guard_t *g, long long now)
{
  unsigned max = g->o.max_connections, batch = max / 64 ? max / 64 : 1;
  unsigned live = g->open - g->shut, target = max > batch ? max - batch : 0;
  unsigned n;
  if (live < max) return 0;
  n = evict_from(g, W_HEAD, evict_age(g), now, &live, target);
  return n + evict_from(g, W_BODY, evict_body_age(g), now, &live, target);
}

unsigned oc_guard_sweep(oc_guard_t *g, long long now_ms)
{
  unsigned n = expire(g, W_HEAD, now_ms, &g->st.header_timeouts);
  n += expire(g, W_BODY, now_ms, &g->st.body_timeouts);
  return n + evict(g, now_ms);
}

static long long earliest(long long a, long long b)
{
  return (a < 0 || (b >= 0 && b < a)) ? b : a;
}

long oc_guard_next_ms(const oc_guard_t *g, long long now_ms)
{
  long long due = -1;
  const oc_guard_conn_t *h = g->lists[W_HEAD].first;
  const oc_guard_conn_t *b = g->lists[W_BODY].first;
  if (h) {
    due = h->since + g->o.header_timeout_ms;
    if (g->open - g->shut >= g->o.max_connections)
      due = earliest(due, h->since + evict_age(g));
  }
  if (b) {
    due = earliest(due, b->since + g->o.body_timeout_ms);
    if (g->open - g->shut >= g->o.max_connections)
      due = earliest(due, b->since + evict_body_age(g));
  }
  if (due < 0) return -1;
  return due <= now_ms ? 0 : (long)(due - now_ms);
}

unsigned oc_guard_open(const oc_guard_t *g)
{
  return g->open;
}

void oc_guard_stats(const oc_guard_t *g, oc_guard_stats_t *out)
{
  *out = g->st;
  out->open = g->open;
  out->waiting_head = g->lists[W_HEAD].n;
  out->reading_body = g->lists[W_BODY].n;
  out->clients = g->clients;
}

/* }==================== */
