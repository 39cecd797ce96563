/*
 * http_server.h - an HTTP/1.1 server on libmicrohttpd, in external-poll
 * mode, for the Port emulator and the integration's webhook routes.
 *
 * The server never calls Lua. A request whose headers and body are complete
 * is queued and its connection suspended; the owner takes it with
 * oc_server_next(), answers it with oc_server_respond() (or drops the
 * connection with oc_server_drop()), which resumes the connection. Bodies
 * above max_body get 413 without being queued; malformed requests get a
 * 4xx from libmicrohttpd. A body announced larger (Content-Length) is
 * refused before it is read and the connection closed; a chunked one is
 * read to its end, discarded, and refused.
 *
 * Under load (http_guard.h): a connection must send its whole request
 * head within header_timeout_s of connecting (or of its previous answer,
 * kept alive) and its body within body_timeout_s after that, however
 * slowly it trickles bytes; one client address holds at most
 * max_per_client connections (more are refused at accept); at
 * max_connections, the connections that have waited longest for a
 * request head are closed to make room. The soft RLIMIT_NOFILE is raised
 * (never above the hard one) to fit max_connections plus a reserve of
 * descriptors for the rest of the process; when the hard limit is too low,
 * max_connections is lowered to fit (oc_server_stats tells the effective
 * value).
 *
 * Waiting: oc_server_fd() is a file descriptor that becomes readable when
 * the server has work (libmicrohttpd's epoll fd), oc_server_timeout_ms()
 * the longest the caller may sleep (-1: no limit), and oc_server_run()
 * does the ready work without blocking. oc_server_wait() does all three
 * for an owner that has nothing else to wait on (the emulator).
 */
#ifndef OC_HTTP_SERVER_H
#define OC_HTTP_SERVER_H

#include <stddef.h>

typedef struct oc_server oc_server_t;

#define OC_SERVER_DEFAULT_MAX_CONNECTIONS 4096u
#define OC_SERVER_DEFAULT_PER_CLIENT 256u
#define OC_SERVER_DEFAULT_HEADER_TIMEOUT_S 10u
#define OC_SERVER_DEFAULT_BODY_TIMEOUT_S 60u

typedef struct oc_server_opts {
  const char *host;              /* listen address; NULL: "127.0.0.1" */
  int port;                      /* 0: an ephemeral port */
  size_t max_body;               /* bytes; larger bodies get 413; 0: 1 MiB */
  unsigned max_connections;      /* total; 0: the default (4096) */
  unsigned max_per_client;       /* per client address; 0: no limit */
  unsigned connection_timeout_s; /* idle timeout (no byte in either
                                    direction); 0: 30 s */
  unsigned header_timeout_s;     /* the whole request head; 0: 10 s */
  unsigned body_timeout_s;       /* the whole body, after the head; 0: 60 s */
} oc_server_opts_t;

/* The effective limits and the guard's counters (http_guard.h). */
typedef struct oc_server_stats {
  unsigned max_connections;      /* after fitting the descriptor limit */
  unsigned max_connections_requested;  /* before */
  unsigned max_per_client;
  unsigned header_timeout_s, body_timeout_s;
  unsigned open, waiting_head, reading_body, clients;
  unsigned long long header_timeouts, body_timeouts;
  unsigned long long refused_per_client, evicted;
  unsigned unsent;               /* answers given, not yet sent */
} oc_server_stats_t;

typedef struct oc_server_header {
  char *name;                    /* lower-cased */
  char *value;
} oc_server_header_t;

/* A queued request. Owned by the server until answered or dropped. */
typedef struct oc_server_request {
  unsigned long id;              /* unique per server */
  char *method;
  char *path;                    /* URL path, percent-decoded */
  char *query;                   /* raw query string after '?', or "" */
  oc_server_header_t *headers;
  size_t nheaders;
  char *body;
  size_t body_len;
  char remote[64];               /* peer address, "ip:port" */
} oc_server_request_t;

/* Start listening. NULL on failure with a message in err. */
oc_server_t *oc_server_start(const oc_server_opts_t *opts, char *err,
                             size_t errlen);
/* Stop listening, close every connection, free everything. Idempotent on
 * NULL. Queued requests are dropped. */
void oc_server_stop(oc_server_t *s);
int oc_server_port(const oc_server_t *s);
void oc_server_stats(const oc_server_t *s, oc_server_stats_t *out);

int oc_server_fd(const oc_server_t *s);
long oc_server_timeout_ms(const oc_server_t *s);
/* Do ready work without blocking; 0 or -1 on a libmicrohttpd failure. */
int oc_server_run(oc_server_t *s);
/* poll(fd) up to timeout_ms (-1: forever), then run, until a request is
 * queued or the time is up. Returns the number of queued requests not yet
 * handed out (oc_server_queued). */
int oc_server_wait(oc_server_t *s, long timeout_ms);
/* Requests queued and not yet handed out by oc_server_next(). While this
 * is non-zero, oc_server_timeout_ms() is 0: the owner has work. */
size_t oc_server_queued(const oc_server_t *s);

/* The oldest queued request not yet handed out, or NULL. The request
 * stays valid until it is answered or dropped (or the server stopped). */
oc_server_request_t *oc_server_next(oc_server_t *s);
/* Answer request `id`. headers: NULL-terminated array of "name", "value"
 * pairs (may be NULL); Content-Length is computed (a given one is ignored,
 * as are empty values). The body is copied. Returns 0; -1 if id is
 * unknown; -2 if the status is not 100..999 or a header is invalid (CR,
 * LF, space in the name...), and -3 when out of memory; on -2/-3 the
 * request stays queued. A request whose client is already gone is
 * answered with 0 and forgotten. */
int oc_server_respond(oc_server_t *s, unsigned long id, int status,
                      const char *const *headers, const char *body,
                      size_t body_len);
/* Close request `id`'s connection without an answer (fault injection).
 * 0, or -1 if id is unknown. */
int oc_server_drop(oc_server_t *s, unsigned long id);

#endif
