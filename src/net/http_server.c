/*
 * http_server.c - the HTTP server of http_server.h on libmicrohttpd
 * (external polling, epoll, suspend/resume).
 *
 * Owns: the libmicrohttpd daemon (which owns the listening socket once
 * started) and one `pending_t` per request in flight. A pending is born in
 * the URI callback (so the raw query string is known), collects the body,
 * and at the "final" access-handler call is queued and its connection
 * suspended. The owner answers it; the response is stored on the pending,
 * the connection resumed, and the next access-handler call queues it with
 * libmicrohttpd. The pending dies in the completion callback.
 *
 * Each connection also has a record in the guard (http_guard.c), kept as
 * libmicrohttpd's socket context: the callbacks report its life to the
 * guard, and every run starts with a guard sweep.
 *
 * A queued pending is linked in exactly one of two lists: `ready` (not yet
 * handed out by oc_server_next) or `taken`. If libmicrohttpd ever reports
 * a queued request's connection as finished, the pending is marked dead
 * and freed by whoever answers or drops it (or by oc_server_stop).
 */
#include "http_server.h"
#include "http_guard.h"
#include "json/buf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define DEFAULT_MAX_BODY (1024u * 1024u)
#define DEFAULT_TIMEOUT_S 30u
/* The kernel caps it at net.core.somaxconn (4096 since Linux 5.4): a
 * burst of connections waits there rather than being retried by its
 * clients a second later. */
#define LISTEN_BACKLOG 4096
/* Descriptors left for the rest of the process (Port and third-party
 * connections, the journal, logs) when fitting max_connections into
 * RLIMIT_NOFILE. */
#define FD_RESERVE 128u

enum pending_state {
  PS_RECEIVING,    /* headers seen, body arriving */
  PS_TOO_LARGE,    /* body over max_body: discarding it, 413 at the end */
  PS_AMBIGUOUS,    /* two body lengths: discarding it, 400 and close at
                      the end (closing before it is read could reset the
                      connection under the answer) */
  PS_QUEUED,       /* in ready/taken, connection suspended */
  PS_ANSWERED,     /* response stored, connection resumed */
  PS_DROPPED,      /* connection resumed to be closed without answer */
  PS_DONE          /* response handed to libmicrohttpd */
};

typedef struct pending {
  oc_server_request_t req;       /* filled when queued */
  oc_server_t *srv;
  struct MHD_Connection *conn;   /* NULL once dead */
  oc_guard_conn_t *gc;           /* the connection's guard record or NULL */
  char *raw_uri;                 /* as received, for the raw query */
  oc_buf_t body;
  enum pending_state state;
  int started;                   /* the first access-handler call is done */
  int taken;                     /* in `taken` (else in `ready`) */
  int dead;                      /* connection finished while queued */
  struct MHD_Response *resp;     /* PS_ANSWERED only */
  unsigned status;
  int unsent;                    /* answered, counted in srv->unsent */
  struct pending *prev, *next;
} pending_t;

typedef struct plist {
  pending_t *head, *tail;
  size_t n;
} plist_t;

struct oc_server {
  struct MHD_Daemon *d;
  oc_guard_t *guard;
  oc_server_stats_t limits;      /* the effective limits */
  int port;
  int listen_fd;                 /* owned by libmicrohttpd; polled only */
  size_t max_body;
  unsigned long next_id;
  plist_t ready;                 /* queued, not handed out; oldest first */
  plist_t taken;                 /* handed out, not answered */
  int wake;                      /* a connection was resumed since the last run */
  unsigned unsent;               /* answered, not yet sent (or failed) */
};

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* {==================== pending lists ==================== */

static void plist_push(plist_t *l, pending_t *p)
{
  p->prev = l->tail;
  p->next = NULL;
  if (l->tail)
    l->tail->next = p;
  else
    l->head = p;
  l->tail = p;
  l->n++;
}

static void plist_remove(plist_t *l, pending_t *p)
{
  if (p->prev) p->prev->next = p->next; else l->head = p->next;
  if (p->next) p->next->prev = p->prev; else l->tail = p->prev;
  p->prev = p->next = NULL;
  l->n--;
}

/* Unlink a queued pending from whichever list holds it. */
static void unqueue(oc_server_t *s, pending_t *p)
{
  plist_remove(p->taken ? &s->taken : &s->ready, p);
}

static pending_t *find_queued(oc_server_t *s, unsigned long id)
{
  pending_t *p;
  for (p = s->taken.head; p; p = p->next)
    if (p->req.id == id) return p;
  for (p = s->ready.head; p; p = p->next)
    if (p->req.id == id) return p;
  return NULL;
}

static void request_free_fields(oc_server_request_t *r)
{
  size_t i;
  free(r->method);
  free(r->path);
  free(r->query);
  for (i = 0; i < r->nheaders; i++) {
    free(r->headers[i].name);
    free(r->headers[i].value);
  }
  free(r->headers);
  free(r->body);
  memset(r, 0, sizeof *r);
}

static void pending_free(pending_t *p)
{
  request_free_fields(&p->req);
  oc_buf_free(&p->body);
  free(p->raw_uri);
  if (p->resp)
    MHD_destroy_response(p->resp);
  free(p);
}

/* }==================== */

/* {==================== building the queued request ==================== */

static char *dupstr(const char *s)
{
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

typedef struct header_acc {
  oc_server_request_t *r;
  size_t cap;
  int oom;
} header_acc_t;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind,
                                      const char *key, const char *value)
{
  header_acc_t *acc = cls;
  oc_server_request_t *r = acc->r;
  oc_server_header_t *h;
  char *c;
  (void)kind;
  if (r->nheaders == acc->cap) {
    size_t cap = acc->cap ? acc->cap * 2 : 16;
    h = realloc(r->headers, cap * sizeof *h);
    if (!h) { acc->oom = 1; return MHD_NO; }
    r->headers = h;
    acc->cap = cap;
  }
  h = &r->headers[r->nheaders];
  h->name = dupstr(key);
  h->value = dupstr(value ? value : "");
  if (!h->name || !h->value) {
    free(h->name);
    free(h->value);
    acc->oom = 1;
    return MHD_NO;
  }
  for (c = h->name; *c; c++)
    if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
  r->nheaders++;
  return MHD_YES;
}

static void format_remote(struct MHD_Connection *conn, char *out, size_t n)
{
  const union MHD_ConnectionInfo *ci =
    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char ip[INET6_ADDRSTRLEN];
  out[0] = '\0';
  if (!ci || !ci->client_addr) return;
  if (ci->client_addr->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)ci->client_addr;
    if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip))
      snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
  } else if (ci->client_addr->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const void *)ci->client_addr;
    if (inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip))
      snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
  }
}

/* Fill p->req from the connection. 0, or -1 when out of memory (the
 * caller closes the connection; pending_free releases what was set). */
static int request_build(pending_t *p, const char *url, const char *method)
{
  oc_server_request_t *r = &p->req;
  header_acc_t acc = { r, 0, 0 };
  const char *q = p->raw_uri ? strchr(p->raw_uri, '?') : NULL;

  r->method = dupstr(method);
  r->path = dupstr(url);
  r->query = dupstr(q ? q + 1 : "");
  if (!r->method || !r->path || !r->query) return -1;
  MHD_get_connection_values(p->conn, MHD_HEADER_KIND, collect_header, &acc);
  if (acc.oom) return -1;
  r->body = oc_buf_steal(&p->body, &r->body_len);
  if (!r->body) {
    r->body = calloc(1, 1);      /* an empty body is "", never NULL */
    r->body_len = 0;
    if (!r->body) return -1;
  }
  format_remote(p->conn, r->remote, sizeof r->remote);
  return 0;
}

/* }==================== */

/* {==================== libmicrohttpd callbacks ==================== */

static oc_guard_conn_t *guard_conn(struct MHD_Connection *conn)
{
  const union MHD_ConnectionInfo *ci =
    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* Answer status with a JSON text of static storage; close_conn: with
 * "Connection: close" (nothing after this request is read as another). */
static enum MHD_Result queue_status(struct MHD_Connection *conn,
                                    unsigned status, const char *json,
                                    int close_conn)
{
  struct MHD_Response *resp = MHD_create_response_from_buffer(
    strlen(json), (void *)(uintptr_t)json, MHD_RESPMEM_PERSISTENT);
  enum MHD_Result ret;
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", "application/json");
  if (close_conn) MHD_add_response_header(resp, "Connection", "close");
  ret = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return ret;
}

/* A request refused before the integration sees it: done, counted busy
 * by the guard, answered status. */
static enum MHD_Result refuse(pending_t *p, unsigned status,
                              const char *json, int close_conn)
{
  p->state = PS_DONE;
  oc_guard_busy(p->srv->guard, p->gc);
  return queue_status(p->conn, status, json, close_conn);
}

static const char TOO_LARGE_JSON[] =
  "{\"ok\":false,\"error\":\"payload_too_large\","
  "\"message\":\"request body too large\"}";

/* Content-Length announced above the limit: answer 413 before reading
 * the body (libmicrohttpd then closes the connection). */
static int announced_too_large(struct MHD_Connection *conn, size_t max)
{
  const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                               "Content-Length");
  unsigned long long n;
  char *end;
  if (!cl) return 0;
  errno = 0;
  n = strtoull(cl, &end, 10);
  return end != cl && (errno == ERANGE || n > max);
}

static const char AMBIGUOUS_JSON[] =
  "{\"ok\":false,\"error\":\"bad_request\","
  "\"message\":\"ambiguous body length: Content-Length with "
  "Transfer-Encoding, Content-Length values that differ, a blank in a "
  "header name, or a transfer coding other than chunked\"}";

typedef struct framing {
  const char *cl;                /* the first Content-Length value */
  int cls, cl_differ, te, te_chunked, bad_name;
} framing_t;

/* value, blanks trimmed, is "chunked" (any case) */
static int just_chunked(const char *v)
{
  size_t n;
  while (*v == ' ' || *v == '\t') v++;
  n = strlen(v);
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  return n == 7 && !strncasecmp(v, "chunked", 7);
}

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
  framing_t *f = cls;
  (void)kind;
  if (strpbrk(key, " \t")) {
    f->bad_name = 1;             /* "Content-Length : 5" */
  } else if (!strcasecmp(key, "Content-Length")) {
    if (f->cls++ == 0)
      f->cl = value;
    else if (strcmp(f->cl, value ? value : ""))
      f->cl_differ = 1;
  } else if (!strcasecmp(key, "Transfer-Encoding")) {
    f->te++;
    f->te_chunked = just_chunked(value ? value : "");
  }
  return MHD_YES;
}

/* How a head's body length reads (RFC 9112): 0 one way; 1 two ways (a
 * Transfer-Encoding with a Content-Length, or Content-Length values that
 * differ: a proxy in front may have read another length than ours, and
 * the rest would be taken for a second request: request smuggling); 2 no
 * way we read (a blank inside a field name, 5.1: "Content-Length : 5" is
 * no Content-Length to us but may be one to a proxy; a transfer coding
 * other than chunked alone, 6.1). */
static int ambiguous_framing(struct MHD_Connection *conn)
{
  framing_t f = { NULL, 0, 0, 0, 0, 0 };
  MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
  if (f.bad_name || (f.te && !(f.te == 1 && f.te_chunked))) return 2;
  return f.cl_differ || (f.cls > 0 && f.te);
}

/* The request head is complete (libmicrohttpd calls the access handler
 * only then). */
static enum MHD_Result on_first_call(pending_t *p)
{
  p->started = 1;
  oc_guard_head_done(p->srv->guard, p->gc, now_ms());
  switch (ambiguous_framing(p->conn)) {
  case 1:                        /* the body is read, then 400 and close */
    p->state = PS_AMBIGUOUS;
    return MHD_YES;
  case 2:                        /* no end of body to wait for: at once */
    return refuse(p, 400, AMBIGUOUS_JSON, 1);
  }
  if (announced_too_large(p->conn, p->srv->max_body))
    return refuse(p, 413, TOO_LARGE_JSON, 0);
  return MHD_YES;
}

static enum MHD_Result on_upload(pending_t *p, const char *data, size_t n)
{
  if (p->state == PS_RECEIVING) {
    if (n > p->srv->max_body - p->body.n) {
      p->state = PS_TOO_LARGE;   /* keep reading, stop storing */
      oc_buf_free(&p->body);
    } else {
      oc_buf_add(&p->body, data, n);
      if (p->body.oom) return MHD_NO;
    }
  }
  return MHD_YES;
}

/* The request is complete: queue it and suspend its connection. */
static enum MHD_Result on_complete(pending_t *p, const char *url,
                                   const char *method)
{
  oc_server_t *s = p->srv;
  if (request_build(p, url, method) != 0) return MHD_NO;
  p->req.id = ++s->next_id;
  p->state = PS_QUEUED;
  oc_guard_busy(s->guard, p->gc);
  p->taken = 0;
  plist_push(&s->ready, p);
  MHD_suspend_connection(p->conn);
  return MHD_YES;
}

/* Queue the stored answer; the connection was just resumed. */
static enum MHD_Result on_answered(pending_t *p)
{
  enum MHD_Result ret = MHD_queue_response(p->conn, p->status, p->resp);
  MHD_destroy_response(p->resp);
  p->resp = NULL;
  p->state = PS_DONE;
  return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *data,
                                 size_t *data_size, void **con_cls)
{
  pending_t *p = *con_cls;
  (void)cls;
  (void)conn;                      /* p->conn */
  (void)version;
  if (!p) return MHD_NO;           /* the URI callback ran out of memory */
  if (!p->started) return on_first_call(p);
  if (*data_size) {
    size_t n = *data_size;
    *data_size = 0;
    return on_upload(p, data, n);
  }
  switch (p->state) {
  case PS_RECEIVING: return on_complete(p, url, method);
  case PS_TOO_LARGE: return refuse(p, 413, TOO_LARGE_JSON, 0);
  case PS_AMBIGUOUS: return refuse(p, 400, AMBIGUOUS_JSON, 1);
  case PS_ANSWERED: return on_answered(p);
  case PS_DROPPED: return MHD_NO;  /* close without an answer */
  case PS_QUEUED:
  case PS_DONE: break;
  }
  return MHD_YES;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
  pending_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->srv = cls;
  p->conn = conn;
  p->gc = guard_conn(conn);
  p->raw_uri = dupstr(uri);
  oc_buf_init(&p->body);
  if (!p->raw_uri) {
    free(p);
    return NULL;
  }
  return p;
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
  pending_t *p = *con_cls;
  oc_server_t *s = cls;
  /* answered and kept alive: it waits for its next request head */
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
    oc_guard_idle(s->guard, guard_conn(conn), now_ms());
  if (!p) return;
  *con_cls = NULL;
  if (p->unsent) {                 /* its answer went out, or never will */
    p->unsent = 0;
    s->unsent--;
  }
  if (p->state == PS_QUEUED) {     /* still owned by a list */
    p->dead = 1;
    p->conn = NULL;
    return;
  }
  pending_free(p);
}

/* A connection opens or closes: its guard record is born or dies. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
  oc_server_t *s = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *fd =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ad =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = fd ? oc_guard_opened(s->guard, fd->connect_fd,
      ad ? ad->client_addr : NULL,
      ad ? (socklen_t)sizeof(struct sockaddr_storage) : 0, now_ms()) : NULL;
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
    oc_guard_closed(s->guard, *socket_context);
    *socket_context = NULL;
  }
}

/* The accept policy: the per-client limit. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr,
                                 socklen_t addrlen)
{
  oc_server_t *s = cls;
  return oc_guard_admit(s->guard, addr, addrlen) ? MHD_YES : MHD_NO;
}

/* }==================== */

/* {==================== start / stop ==================== */

/* A non-blocking, close-on-exec listening socket on host:port; -1 with a
 * message in err. */
static int listen_socket(const char *host, int port, char *err, size_t errlen)
{
  struct addrinfo hints, *res = NULL;
  char portstr[16];
  int fd, rc, one = 1;

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(portstr, sizeof portstr, "%d", port);
  rc = getaddrinfo(host, portstr, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve listen address '%s': %s", host,
             gai_strerror(rc));
    return -1;
  }
  fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    freeaddrinfo(res);
    return -1;
  }
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0
      || listen(fd, LISTEN_BACKLOG) != 0) {
    snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
             strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static int socket_port(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

/* The total connection limit the descriptor limit allows: the soft
 * RLIMIT_NOFILE is raised (never above the hard one) to fit `want`
 * connections plus FD_RESERVE; when it cannot be, the total shrinks to
 * what fits (at least 1). */
static unsigned fit_nofile(unsigned want)
{
  struct rlimit rl;
  rlim_t need = (rlim_t)want + FD_RESERVE;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return want;
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need) return want;
  if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need) {
    rl.rlim_cur = need;
  } else {
    rl.rlim_cur = rl.rlim_max;
  }
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return want;
  if (rl.rlim_cur >= need) return want;
  return rl.rlim_cur > FD_RESERVE + 1 ? (unsigned)(rl.rlim_cur - FD_RESERVE)
                                      : 1u;
}

/* The effective limits of opts, and the guard that enforces them. */
static int make_guard(oc_server_t *s, const oc_server_opts_t *opts)
{
  oc_server_stats_t *l = &s->limits;
  oc_guard_opts_t go;
  l->max_connections_requested = opts->max_connections
    ? opts->max_connections : OC_SERVER_DEFAULT_MAX_CONNECTIONS;
  l->max_connections = fit_nofile(l->max_connections_requested);
  l->max_per_client = opts->max_per_client;
  l->header_timeout_s = opts->header_timeout_s
    ? opts->header_timeout_s : OC_SERVER_DEFAULT_HEADER_TIMEOUT_S;
  l->body_timeout_s = opts->body_timeout_s
    ? opts->body_timeout_s : OC_SERVER_DEFAULT_BODY_TIMEOUT_S;
  go.max_connections = l->max_connections;
  go.max_per_client = l->max_per_client;
  go.header_timeout_ms = l->header_timeout_s * 1000u;
  go.body_timeout_ms = l->body_timeout_s * 1000u;
  s->guard = oc_guard_new(&go);
  return s->guard ? 0 : -1;
}

static void server_free(oc_server_t *s)
{
  oc_guard_free(s->guard);
  free(s);
}

oc_server_t *oc_server_start(const oc_server_opts_t *opts, char *err,
                             size_t errlen)
{
  struct MHD_OptionItem mo[8];
  oc_server_t *s;
  int fd, n = 0;
  const char *host = opts->host ? opts->host : "127.0.0.1";

  if (opts->port < 0 || opts->port > 65535) {
    snprintf(err, errlen, "invalid port %d", opts->port);
    return NULL;
  }
  if (opts->header_timeout_s > 86400 || opts->body_timeout_s > 86400) {
    snprintf(err, errlen, "header and body timeouts must be at most 86400 s");
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (!s || make_guard(s, opts) != 0) {
    if (s) server_free(s);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
  fd = listen_socket(host, opts->port, err, errlen);
  if (fd < 0) {
    server_free(s);
    return NULL;
  }
  s->port = socket_port(fd);
  s->listen_fd = fd;
  mo[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, fd, NULL };
  mo[n++] = (struct MHD_OptionItem){ MHD_OPTION_URI_LOG_CALLBACK,
                                     (intptr_t)on_uri, s };
  mo[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_COMPLETED,
                                     (intptr_t)on_completed, s };
  mo[n++] = (struct MHD_OptionItem){ MHD_OPTION_NOTIFY_CONNECTION,
                                     (intptr_t)on_connection, s };
  mo[n++] = (struct MHD_OptionItem){
    MHD_OPTION_CONNECTION_TIMEOUT,
    opts->connection_timeout_s ? opts->connection_timeout_s
                               : DEFAULT_TIMEOUT_S, NULL };
  mo[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT,
                                     s->limits.max_connections, NULL };
  mo[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
  /* From here libmicrohttpd owns fd. When it fails to start it closes fd
   * on some paths only; closing it here could close it twice (another
   * thread's descriptor), so a failed start may leak it instead. */
  s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0,
                          on_accept, s, on_access, s,
                          MHD_OPTION_ARRAY, mo, MHD_OPTION_END);
  if (!s->d) {
    snprintf(err, errlen, "libmicrohttpd failed to start on %s:%d", host,
             opts->port);
    server_free(s);
    return NULL;
  }
  return s;
}

/* Close every queued connection: libmicrohttpd refuses to stop with
 * suspended connections, so each is resumed to be closed unanswered. */
static void drop_all(plist_t *l)
{
  pending_t *p;
  while ((p = l->head) != NULL) {
    plist_remove(l, p);
    if (p->dead) {
      pending_free(p);
    } else {
      p->state = PS_DROPPED;
      MHD_resume_connection(p->conn);
    }
  }
}

void oc_server_stop(oc_server_t *s)
{
  if (!s) return;
  drop_all(&s->ready);
  drop_all(&s->taken);
  /* Closing the connections runs on_completed, which frees the rest. */
  MHD_stop_daemon(s->d);
  server_free(s);
}

int oc_server_port(const oc_server_t *s)
{
  return s->port;
}

void oc_server_stats(const oc_server_t *s, oc_server_stats_t *out)
{
  oc_guard_stats_t g;
  oc_guard_stats(s->guard, &g);
  *out = s->limits;
  out->unsent = s->unsent;
  out->open = g.open;
  out->waiting_head = g.waiting_head;
  out->reading_body = g.reading_body;
  out->clients = g.clients;
  out->header_timeouts = g.header_timeouts;
  out->body_timeouts = g.body_timeouts;
  out->refused_per_client = g.refused_per_client;
  out->evicted = g.evicted;
}

/* }==================== */

/* {==================== waiting ==================== */

int oc_server_fd(const oc_server_t *s)
{
  const union MHD_DaemonInfo *di =
    MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
  return di ? di->epoll_fd : -1;
}

/* The sooner of libmicrohttpd's timeout and the guard's next deadline. */
long oc_server_timeout_ms(const oc_server_t *s)
{
  MHD_UNSIGNED_LONG_LONG t;
  long g, m = -1;
  if (s->ready.n > 0 || s->wake) return 0;
  if (MHD_get_timeout(s->d, &t) == MHD_YES)
    m = t > (MHD_UNSIGNED_LONG_LONG)LONG_MAX ? LONG_MAX : (long)t;
  g = oc_guard_next_ms(s->guard, now_ms());
  return (m < 0 || (g >= 0 && g < m)) ? g : m;
}

/* Connections still waiting in the listen backlog? */
static int backlog_waiting(const oc_server_t *s)
{
  struct pollfd pfd;
  pfd.fd = s->listen_fd;
  pfd.events = POLLIN;
  pfd.revents = 0;
  return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/* The sweep comes first: libmicrohttpd's run then sees the connections it
 * shut down end, and closes them. A run that takes the server below its
 * limit asks for another at once: libmicrohttpd listens again only at the
 * start of a run, so until then nothing would wake a waiting owner for
 * the connections queued in the backlog.
 * libmicrohttpd accepts at most 10 connections per run (daemon.c, "do not
 * accept more then 10 connections at once"): under a burst of a thousand
 * connections, a health probe waited ~100 runs in the backlog (~0.5 s).
 * So the run is repeated while connections wait there and the server is
 * below its limit, up to RUNS_PER_CALL times and for at most RUN_BUDGET_MS
 * (one run that reads or answers a thousand connections takes ~5-10 ms:
 * the owner must get its turn between runs, to answer a health probe).
 * Stopped early with connections still waiting, the call asks for another
 * at once (wake). */
#define RUNS_PER_CALL 16
#define RUN_BUDGET_MS 4

int oc_server_run(oc_server_t *s)
{
  unsigned max = s->limits.max_connections;
  int full = oc_guard_open(s->guard) >= max, i;
  enum MHD_Result r = MHD_YES;
  long long t0 = now_ms();
  s->wake = 0;
  oc_guard_sweep(s->guard, t0);
  for (i = 0; i < RUNS_PER_CALL && r == MHD_YES; i++) {
    r = MHD_run(s->d);
    if (oc_guard_open(s->guard) >= max || !backlog_waiting(s)) break;
    if (now_ms() - t0 >= RUN_BUDGET_MS) {
      s->wake = 1;
      break;
    }
  }
  if (full && oc_guard_open(s->guard) < max) s->wake = 1;
  return r == MHD_YES ? 0 : -1;
}

size_t oc_server_queued(const oc_server_t *s)
{
  return s->ready.n;
}

int oc_server_wait(oc_server_t *s, long timeout_ms)
{
  long long deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  for (;;) {
    struct pollfd pfd;
    long t = oc_server_timeout_ms(s);
    if (deadline >= 0) {
      long long left = deadline - now_ms();
      if (left < 0) left = 0;
      if (t < 0 || t > left) t = (long)left;
    }
    pfd.fd = oc_server_fd(s);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (t != 0)
      (void)poll(&pfd, 1, t > INT_MAX ? INT_MAX : (int)t);  /* EINTR: run */
    oc_server_run(s);
    if (s->ready.n > 0 || (deadline >= 0 && now_ms() >= deadline))
      return (int)s->ready.n;
  }
}

/* }==================== */

/* {==================== answering ==================== */

oc_server_request_t *oc_server_next(oc_server_t *s)
{
  pending_t *p = s->ready.head;
  if (!p) return NULL;
  plist_remove(&s->ready, p);
  p->taken = 1;
  plist_push(&s->taken, p);
  return &p->req;
}

/* libmicrohttpd computes Content-Length itself and refuses empty values;
 * both are skipped rather than failing the answer. */
static int skip_header(const char *name, const char *value)
{
  return value[0] == '\0' || strcasecmp(name, "Content-Length") == 0;
}

static struct MHD_Response *make_response(const char *const *headers,
                                          const char *body, size_t len,
                                          int *bad_header)
{
  struct MHD_Response *resp = MHD_create_response_from_buffer(
    len, (void *)(uintptr_t)(body ? body : ""), MHD_RESPMEM_MUST_COPY);
  size_t i;
  *bad_header = 0;
  if (!resp || !headers) return resp;
  for (i = 0; headers[i] && headers[i + 1]; i += 2) {
    if (skip_header(headers[i], headers[i + 1])) continue;
    if (MHD_add_response_header(resp, headers[i], headers[i + 1]) != MHD_YES) {
      MHD_destroy_response(resp);
      *bad_header = 1;
      return NULL;
    }
  }
  return resp;
}

int oc_server_respond(oc_server_t *s, unsigned long id, int status,
                      const char *const *headers, const char *body,
                      size_t body_len)
{
  pending_t *p = find_queued(s, id);
  struct MHD_Response *resp;
  int bad_header;
  if (!p) return -1;
  if (status < 100 || status > 999) return -2;
  if (p->dead) {                   /* the client is gone: just forget it */
    unqueue(s, p);
    pending_free(p);
    return 0;
  }
  resp = make_response(headers, body, body_len, &bad_header);
  if (!resp) return bad_header ? -2 : -3;
  unqueue(s, p);
  request_free_fields(&p->req);    /* nobody reads the request any more */
  p->resp = resp;
  p->status = (unsigned)status;
  p->state = PS_ANSWERED;
  p->unsent = 1;
  s->unsent++;
  MHD_resume_connection(p->conn);
  s->wake = 1;
  return 0;
}

int oc_server_drop(oc_server_t *s, unsigned long id)
{
  pending_t *p = find_queued(s, id);
  if (!p) return -1;
  unqueue(s, p);
  if (p->dead) {
    pending_free(p);
    return 0;
  }
  request_free_fields(&p->req);
  p->state = PS_DROPPED;
  MHD_resume_connection(p->conn);
  s->wake = 1;
  return 0;
}

/* }==================== */
