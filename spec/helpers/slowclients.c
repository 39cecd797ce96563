/*
 * slowclients.c - hold many idle or slow (slowloris) TCP connections open
 * against a server, for the server-under-load specs (spec/07-runner/
 * load_spec.lua). Not part of the module: the spec compiles it with cc.
 *
 *   slowclients PORT COUNT [--sources A.B.C.D:N] [--mode MODE]
 *               [--interval MS] [--status FILE] [--hold SECONDS]
 *
 * Opens COUNT connections to 127.0.0.1:PORT, spread round-robin over N
 * consecutive source addresses from A.B.C.D (default 127.0.0.1:1; all of
 * 127.0.0.0/8 is loopback, so distinct sources look like distinct
 * clients). MODE says what each connection then does:
 *   idle       sends nothing (the default);
 *   head       a slowloris: one byte of a request head every MS
 *              milliseconds (default 1000), never the blank line that
 *              ends it;
 *   body       a whole request head announcing a 1 MB body at once, then
 *              one byte of the body every MS milliseconds;
 *   keepalive  one whole GET request at once, then nothing (the answer
 *              is read; the connection stays open if the server keeps it).
 * Every 100 ms (and at exit) FILE gets one line, replaced atomically:
 *   connected=C failed=F open=O closed=K sent=B answered=A
 * connected: handshakes completed; failed: connects that failed or did not
 * complete within 10 s; open: connected and not closed by the server;
 * closed: connections the server closed (EOF or reset); sent: bytes sent;
 * answered: connections that received some bytes. The soft RLIMIT_NOFILE
 * is raised to what COUNT needs (up to the hard limit). Exits after
 * SECONDS (default 600) or on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum cstate { C_CONNECTING, C_OPEN, C_CLOSED, C_FAILED };

enum mode { M_IDLE, M_HEAD, M_BODY, M_KEEPALIVE };

typedef struct conn {
  int fd;
  enum cstate st;
  size_t sent;
  int answered;
} conn_t;

static const char BODY_HEAD[] =
  "POST /integration/items HTTP/1.1\r\nHost: x\r\n"
  "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
static const char KEEPALIVE_REQ[] =
  "GET /integration/health HTTP/1.1\r\nHost: x\r\n\r\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
  (void)sig;
  stop_flag = 1;
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void raise_nofile(size_t need)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need)
                    ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      fprintf(stderr, "slowclients: setrlimit: %s\n", strerror(errno));
  }
}

/* A non-blocking connect from source address `src`; -1 on failure. */
static int open_conn(struct in_addr src, int port)
{
  struct sockaddr_in a;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr = src;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0
      && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void write_status(const char *path, const conn_t *c, size_t n)
{
  size_t i, k[4] = { 0, 0, 0, 0 }, sent = 0, answered = 0;
  char tmp[4096];
  FILE *f;
  if (!path) return;
  for (i = 0; i < n; i++) {
    k[c[i].st]++;
    sent += c[i].sent;
    answered += c[i].answered != 0;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "connected=%zu failed=%zu open=%zu closed=%zu sent=%zu "
          "answered=%zu\n", k[C_OPEN] + k[C_CLOSED],
          k[C_FAILED] + k[C_CONNECTING], k[C_OPEN], k[C_CLOSED], sent,
          answered);
  fclose(f);
  rename(tmp, path);
}

/* The request head a slow connection trickles out, byte by byte, forever:
 * a request line, then header lines, never the blank line. */
static char head_byte(size_t i)
{
  static const char start[] = "GET /integration/health HTTP/1.1\r\nHost: x\r\n";
  static const char line[] = "X-Slow: aaaaaaaa\r\n";
  if (i < sizeof start - 1) return start[i];
  return line[(i - (sizeof start - 1)) % (sizeof line - 1)];
}

/* Send what the mode sends at once on a connection just opened. */
static void send_start(conn_t *x, enum mode m)
{
  const char *s = m == M_BODY ? BODY_HEAD : m == M_KEEPALIVE ? KEEPALIVE_REQ
                                                              : NULL;
  ssize_t r;
  if (!s) return;
  r = send(x->fd, s, strlen(s), MSG_NOSIGNAL);
  if (r > 0) x->sent += (size_t)r;
}

/* One byte more of a slow head or body. */
static void send_slow(conn_t *x, enum mode m)
{
  char b = m == M_HEAD ? head_byte(x->sent) : '1';
  if (send(x->fd, &b, 1, MSG_NOSIGNAL) == 1) x->sent++;
  else if (errno != EAGAIN) x->st = C_CLOSED;
}

/* One poll round over every connection: completes connects, notices
 * closes, and (slow modes) sends a byte on every connection when
 * send_now. */
static void poll_round(conn_t *c, size_t n, struct pollfd *pf, enum mode m,
                       int send_now, long long connect_deadline)
{
  size_t i;
  for (i = 0; i < n; i++) {
    pf[i].fd = (c[i].st == C_CONNECTING || c[i].st == C_OPEN) ? c[i].fd : -1;
    pf[i].events = c[i].st == C_CONNECTING ? POLLOUT : POLLIN | POLLRDHUP;
    pf[i].revents = 0;
  }
  (void)poll(pf, (nfds_t)n, 20);
  for (i = 0; i < n; i++) {
    conn_t *x = &c[i];
    if (x->st == C_CONNECTING) {
      int err = 0;
      socklen_t len = sizeof err;
      if (pf[i].revents) {
        getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        x->st = err ? C_FAILED : C_OPEN;
        if (!err) send_start(x, m);
      } else if (now_ms() > connect_deadline) {
        x->st = C_FAILED;
      }
    } else if (x->st == C_OPEN && pf[i].revents) {
      char buf[512];
      ssize_t r = recv(x->fd, buf, sizeof buf, 0);
      if (r > 0) x->answered = 1;
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        x->st = C_CLOSED;
    }
    if (x->st == C_OPEN && send_now) send_slow(x, m);
    if ((x->st == C_CLOSED || x->st == C_FAILED) && x->fd >= 0) {
      close(x->fd);
      x->fd = -1;
    }
  }
}

static void usage(void)
{
  fprintf(stderr, "usage: slowclients PORT COUNT [--sources A.B.C.D:N] "
                  "[--mode idle|head|body|keepalive] [--interval MS] "
                  "[--status FILE] [--hold SECONDS]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  int port, i, nsrc = 1, interval_ms = 1000, hold_s = 600;
  enum mode m = M_IDLE;
  size_t n, k;
  struct in_addr src0;
  const char *status = NULL;
  conn_t *c;
  struct pollfd *pf;
  long long start, next_send, next_status, connect_deadline;

  if (argc < 3) usage();
  port = atoi(argv[1]);
  n = (size_t)atol(argv[2]);
  inet_pton(AF_INET, "127.0.0.1", &src0);
  for (i = 3; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (strcmp(argv[i], "--sources") == 0) {
      char ip[64], *colon;
      snprintf(ip, sizeof ip, "%s", argv[++i]);
      colon = strchr(ip, ':');
      if (colon) {
        *colon = '\0';
        nsrc = atoi(colon + 1);
      }
      if (inet_pton(AF_INET, ip, &src0) != 1 || nsrc < 1) usage();
    } else if (strcmp(argv[i], "--mode") == 0) {
      const char *v = argv[++i];
      if (strcmp(v, "idle") == 0) m = M_IDLE;
      else if (strcmp(v, "head") == 0) m = M_HEAD;
      else if (strcmp(v, "body") == 0) m = M_BODY;
      else if (strcmp(v, "keepalive") == 0) m = M_KEEPALIVE;
      else usage();
    } else if (strcmp(argv[i], "--interval") == 0) {
      interval_ms = atoi(argv[++i]);
      if (interval_ms < 1) usage();
    } else if (strcmp(argv[i], "--status") == 0) {
      status = argv[++i];
    } else if (strcmp(argv[i], "--hold") == 0) {
      hold_s = atoi(argv[++i]);
    } else {
      usage();
    }
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  raise_nofile(n + 32);
  c = calloc(n, sizeof *c);
  pf = calloc(n ? n : 1, sizeof *pf);
  if (!c || !pf) return 1;
  for (k = 0; k < n; k++) {
    struct in_addr a;
    a.s_addr = htonl(ntohl(src0.s_addr) + (uint32_t)(k % (size_t)nsrc));
    c[k].fd = open_conn(a, port);
    c[k].st = c[k].fd < 0 ? C_FAILED : C_CONNECTING;
  }
  start = now_ms();
  connect_deadline = start + 10000;
  next_send = start;
  next_status = start;
  while (!stop_flag && now_ms() - start < (long long)hold_s * 1000) {
    int send_now = (m == M_HEAD || m == M_BODY) && now_ms() >= next_send;
    if (send_now) next_send = now_ms() + interval_ms;
    poll_round(c, n, pf, m, send_now, connect_deadline);
    if (now_ms() >= next_status) {
      write_status(status, c, n);
      next_status = now_ms() + 100;
    }
  }
  write_status(status, c, n);
  for (k = 0; k < n; k++)
    if (c[k].fd >= 0) close(c[k].fd);
  free(c);
  free(pf);
  return 0;
}
