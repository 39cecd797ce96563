/*
 * http_guard.h - what keeps the HTTP server (http_server.c) answering
 * under idle, slow (slowloris) and many connections: per-connection
 * deadlines, a per-client connection limit and eviction at the total
 * limit. libmicrohttpd has an idle timeout (reset by every byte, so a
 * slowloris that sends one byte every few seconds never trips it) and a
 * total limit (at which it stops accepting, so idle connections lock
 * everybody out); the guard adds what it lacks.
 *
 * The guard never calls libmicrohttpd: the server reports each
 * connection's life (opened, request head complete, request complete,
 * answered, closed) and calls oc_guard_sweep() before each run. A
 * connection the guard gives up on is shut down (shutdown(2), both
 * directions): libmicrohttpd then sees the end of the stream and closes
 * it itself, so the descriptor is never closed behind its back.
 *
 * Rules (times in milliseconds, from a monotonic clock):
 *  - head: a connection waiting for a request head (just accepted, or
 *    kept alive after an answer) must deliver the whole head within
 *    header_timeout of the start of that wait, however many bytes it
 *    trickles in;
 *  - body: the body must then arrive within body_timeout;
 *  - per client: at most max_per_client connections per client address
 *    (IPv4, or IPv6 with IPv4-mapped addresses read as IPv4); more are
 *    refused at accept (0: no limit);
 *  - total: at max_connections open connections, the connections that
 *    have waited longest for a request head (at least evict_age) are shut
 *    down to make room, oldest first; then, if that is not room enough,
 *    the connections whose body has been arriving longest (at least
 *    evict_age too: a slow body holds a slot as a slow head does). A
 *    connection whose request is being handled is never evicted.
 * Every connection closed or refused by a rule is counted (oc_guard_stats).
 */
#ifndef OC_HTTP_GUARD_H
#define OC_HTTP_GUARD_H

#include <sys/socket.h>

typedef struct oc_guard oc_guard_t;
typedef struct oc_guard_conn oc_guard_conn_t;

typedef struct oc_guard_opts {
  unsigned max_connections;      /* total; > 0 */
  unsigned max_per_client;       /* 0: no per-client limit */
  unsigned header_timeout_ms;    /* > 0 */
  unsigned body_timeout_ms;      /* > 0 */
} oc_guard_opts_t;

typedef struct oc_guard_stats {
  unsigned open;                 /* connections open now */
  unsigned waiting_head;         /* of which waiting for a request head */
  unsigned reading_body;         /* of which receiving a body */
  unsigned clients;              /* distinct client addresses now */
  unsigned long long header_timeouts;  /* shut down: head too slow */
  unsigned long long body_timeouts;    /* shut down: body too slow */
  unsigned long long refused_per_client;  /* refused at accept */
  unsigned long long evicted;    /* shut down at the total limit */
} oc_guard_stats_t;

/* A guard for at most o->max_connections connections; NULL when out of
 * memory. Free with oc_guard_free (NULL is fine). */
oc_guard_t *oc_guard_new(const oc_guard_opts_t *o);
void oc_guard_free(oc_guard_t *g);

/* The accept policy: 1 to accept a connection from addr, 0 to refuse it
 * (its client is at the per-client limit; counted). */
int oc_guard_admit(oc_guard_t *g, const struct sockaddr *addr,
                   socklen_t len);

/* A connection was accepted (descriptor fd, peer addr); it now waits for
 * its first request head. Returns its record, owned by the guard until
 * oc_guard_closed; NULL when out of memory (the connection is then not
 * guarded, and the other calls accept NULL). */
oc_guard_conn_t *oc_guard_opened(oc_guard_t *g, int fd,
                                 const struct sockaddr *addr, socklen_t len,
                                 long long now_ms);
/* The request head is complete: the body deadline starts. */
void oc_guard_head_done(oc_guard_t *g, oc_guard_conn_t *c, long long now_ms);
/* The request is complete and being handled: no deadline, no eviction. */
void oc_guard_busy(oc_guard_t *g, oc_guard_conn_t *c);
/* The answer was sent and the connection kept alive: it waits for the
 * next request head, under the header timeout again. */
void oc_guard_idle(oc_guard_t *g, oc_guard_conn_t *c, long long now_ms);
/* The connection is closed: its record is freed. */
void oc_guard_closed(oc_guard_t *g, oc_guard_conn_t *c);

/* Shut down the connections past their deadline, and evict at the total
 * limit. Returns the number shut down. */
unsigned oc_guard_sweep(oc_guard_t *g, long long now_ms);
/* Milliseconds until the next sweep has something to do (0: now), or -1
 * when no deadline is pending. */
long oc_guard_next_ms(const oc_guard_t *g, long long now_ms);

void oc_guard_stats(const oc_guard_t *g, oc_guard_stats_t *out);
/* Connections open now. */
unsigned oc_guard_open(const oc_guard_t *g);

#endif
