/*
 * transport.c - one HTTP transfer on a libcurl easy handle: the copy of
 * the request, the easy handle's setup, response capture (body, headers),
 * and the retry decision after each attempt (statuses, connection errors,
 * Retry-After / x-ratelimit-reset, exponential back-off with jitter, the
 * caps). The loop (loop.c) decides when attempts run.
 */
#include "loop_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 60000L
#define MAX_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_RESPONSE ((size_t)256 << 20)

/* {==================== retry policies ==================== */

static void retry_statuses(oc_retry_t *r)
{
  static const int st[] = { 408, 429, 502, 503, 504 };
  size_t i;
  for (i = 0; i < sizeof st / sizeof st[0]; i++)
    r->statuses[i] = st[i];
  r->nstatuses = (int)(sizeof st / sizeof st[0]);
}

void oc_retry_port_defaults(oc_retry_t *r)
{
  memset(r, 0, sizeof *r);
  retry_statuses(r);
  r->max_attempts = 11;
  r->base_delay_ms = 300;
  r->max_delay_ms = 60000;
  r->max_total_wait_ms = 120000;
  r->connection_errors = 1;
  r->honour_retry_after = 1;
}

void oc_retry_defaults(oc_retry_t *r)
{
  oc_retry_port_defaults(r);
  r->base_delay_ms = 100;
}

long oc_retry_header_delay_ms(const char *v, long long now, int epoch_ok)
{
  char *end;
  double secs;
  time_t t;
  while (*v == ' ' || *v == '\t')
    v++;
  if (isdigit((unsigned char)*v)) {
    secs = strtod(v, &end);
    while (*end == ' ' || *end == '\t')
      end++;
    if (*end == '\0') {
      if (epoch_ok && secs > 10000)   /* x-ratelimit-reset: an epoch */
        secs = secs - (double)now;
      if (secs < 0)
        secs = 0;
      if (secs > 1e9)
        secs = 1e9;
      return (long)(secs * 1000.0 + 0.5);
    }
  }
  t = curl_getdate(v, NULL);     /* the three HTTP-date forms */
  if (t == (time_t)-1)
    return -1;
  return (long long)t > now ? (long)(((long long)t - now) * 1000) : 0;
}

/* }==================== */

/* {==================== the transfer object ==================== */

static char *dupstr(const char *s)
{
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p)
    memcpy(p, s, n);
  return p;
}

static int copy_headers(oc_xfer_t *x, const char *const *h)
{
  struct curl_slist *l;
  for (; h && *h; h++) {
    if (!(l = curl_slist_append(x->headers, *h)))
      return -1;
    x->headers = l;
  }
  /* No "Expect: 100-continue" round trip before large bodies. */
  if (!(l = curl_slist_append(x->headers, "Expect:")))
    return -1;
  x->headers = l;
  return 0;
}

static int copy_body(oc_xfer_t *x, const oc_request_t *req)
{
  x->body_len = req->body ? req->body_len : 0;
  if (!req->body)
    return 0;
  if (req->flags & OC_REQ_BORROW_BODY) {
    x->body = (char *)req->body;
    return 0;
  }
  x->body = malloc(x->body_len + 1);
  if (!x->body)
    return -1;
  memcpy(x->body, req->body, x->body_len);
  x->body[x->body_len] = '\0';
  return 0;
}

oc_xfer_t *oc_xfer_new(oc_loop_t *loop, const oc_request_t *req, char *err,
                       size_t errlen)
{
  oc_xfer_t *x;
  const char *method = req->method ? req->method
                                   : (req->body ? "POST" : "GET");
  if (!req->url || !*req->url) {
    snprintf(err, errlen, "request without a URL");
    return NULL;
  }
  if (!(x = calloc(1, sizeof *x))) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  x->loop = loop;
  x->asked_ms = -1;
  x->flags = req->flags;
  x->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
  x->connect_timeout_ms = req->connect_timeout_ms > 0
    ? req->connect_timeout_ms
    : (x->timeout_ms < MAX_CONNECT_TIMEOUT_MS ? x->timeout_ms
                                              : MAX_CONNECT_TIMEOUT_MS);
  x->max_response = req->max_response_bytes ? req->max_response_bytes
                                            : DEFAULT_MAX_RESPONSE;
  if (req->retry) {
    x->retry = *req->retry;
    x->has_retry = 1;
  }
  x->done = req->done;
  x->ud = req->ud;
  oc_buf_init(&x->rbody);
  x->method = dupstr(method);
  x->url = dupstr(req->url);
  if (!x->method || !x->url || copy_headers(x, req->headers)
      || copy_body(x, req)) {
    snprintf(err, errlen, "out of memory");
    oc_xfer_free(x);
    return NULL;
  }
  return x;
}

static void clear_headers(oc_xfer_t *x)
{
  size_t i;
  for (i = 0; i < x->nrh; i++) {
    free(x->rh[i].name);
    free(x->rh[i].value);
  }
  x->nrh = 0;
}

void oc_xfer_free(oc_xfer_t *x)
{
  if (!x)
    return;
  if (x->easy)
    curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->headers);
  clear_headers(x);
  free(x->rh);
  oc_buf_free(&x->rbody);
  if (!(x->flags & OC_REQ_BORROW_BODY))
    free(x->body);
  free(x->method);
  free(x->url);
  free(x);
}

/* }==================== */

/* {==================== response capture ==================== */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
  oc_xfer_t *x = ud;
  size_t len = size * n;
  if (x->rbody.n + len > x->max_response) {
    x->too_large = 1;
    return 0;                    /* aborts: CURLE_WRITE_ERROR */
  }
  oc_buf_add(&x->rbody, p, len);
  return x->rbody.oom ? 0 : len;
}

static char *trimmed(const char *s, size_t n, int lower)
{
  char *p;
  size_t i;
  while (n && (*s == ' ' || *s == '\t')) {
    s++;
    n--;
  }
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'
               || s[n - 1] == '\n'))
    n--;
  if (!(p = malloc(n + 1)))
    return NULL;
  for (i = 0; i < n; i++)
    p[i] = lower ? (char)tolower((unsigned char)s[i]) : s[i];
  p[n] = '\0';
  return p;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
  oc_xfer_t *x = ud;
  size_t len = size * n;
  const char *colon = memchr(p, ':', len);
  oc_header_t h;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    clear_headers(x);            /* a new response (100, redirect...) */
    return len;
  }
  if (!colon)
    return len;                  /* the blank line, folded lines */
  if (x->nrh == x->caprh) {
    size_t cap = x->caprh ? x->caprh * 2 : 16;
    oc_header_t *nh = realloc(x->rh, cap * sizeof *nh);
    if (!nh)
      return 0;
    x->rh = nh;
    x->caprh = cap;
  }
  h.name = trimmed(p, (size_t)(colon - p), 1);
  h.value = trimmed(colon + 1, len - (size_t)(colon - p) - 1, 0);
  if (!h.name || !h.value) {
    free(h.name);
    free(h.value);
    return 0;
  }
  x->rh[x->nrh++] = h;
  return len;
}

/* }==================== */

/* {==================== easy handle setup ==================== */

static void set_method(oc_xfer_t *x)
{
  CURL *e = x->easy;
  if (strcmp(x->method, "GET") == 0 && !x->body) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    return;
  }
  if (strcmp(x->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    return;
  }
  if (strcmp(x->method, "POST") == 0 || x->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)x->body_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body ? x->body : "");
  }
  if (strcmp(x->method, "POST") != 0)
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
}

static int setup_easy(oc_xfer_t *x)
{
  CURL *e = curl_easy_init();
  int verify = (x->flags & OC_REQ_INSECURE) ? 0 : 1;
  if (!e)
    return -1;
  x->easy = e;
  curl_easy_setopt(e, CURLOPT_URL, x->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, x);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, (long)verify);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  if (x->flags & OC_REQ_FOLLOW) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  }
  set_method(x);
  return 0;
}

int oc_xfer_prepare(oc_xfer_t *x)
{
  oc_buf_reset(&x->rbody);
  clear_headers(x);
  x->too_large = 0;
  x->errbuf[0] = '\0';
  if (!x->easy && setup_easy(x)) {
    snprintf(x->errbuf, sizeof x->errbuf, "cannot create a curl handle");
    return -1;
  }
  return 0;
}

/* }==================== */

/* {==================== retry decision ==================== */

static int retryable_code(CURLcode c)
{
  switch (c) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_GOT_NOTHING:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return 1;
  default:
    return 0;
  }
}

static int retryable_status(const oc_retry_t *r, int status)
{
  int i;
  for (i = 0; i < r->nstatuses && i < OC_RETRY_MAX_STATUSES; i++)
    if (r->statuses[i] == status)
      return 1;
  return 0;
}

/* base * 2^(n-1), then +-10 % uniformly. */
static long backoff_ms(oc_xfer_t *x, int n)
{
  double d = (double)x->retry.base_delay_ms;
  double j;
  int i;
  for (i = 1; i < n && d < 1e9; i++)
    d *= 2;
  j = ((double)(oc_loop_rand(x->loop) % 2001) / 1000.0 - 1.0) * 0.1;
  d += d * j;
  return d < 0 ? 0 : (long)(d + 0.5);
}

static long header_delay(oc_xfer_t *x)
{
  static const char *const names[] = { "retry-after", "x-ratelimit-reset" };
  long long now = (long long)time(NULL);
  size_t i, k;
  for (k = 0; k < sizeof names / sizeof names[0]; k++)
    for (i = 0; i < x->nrh; i++)
      if (strcmp(x->rh[i].name, names[k]) == 0) {
        long d = oc_retry_header_delay_ms(x->rh[i].value, now, k == 1);
        if (d >= 0)
          return d;
      }
  return -1;
}

int oc_xfer_retryable(const oc_xfer_t *x, CURLcode code, int status)
{
  const oc_retry_t *r = &x->retry;
  if (!x->has_retry)
    return 0;
  if (code != CURLE_OK)
    return !x->too_large && r->connection_errors && retryable_code(code);
  return retryable_status(r, status);
}

long oc_xfer_retry_delay(oc_xfer_t *x, CURLcode code, int status)
{
  const oc_retry_t *r = &x->retry;
  long d, h = -1;
  int max = r->max_attempts > 0 ? r->max_attempts : 1;
  x->asked_ms = -1;
  if (x->attempts >= max || !oc_xfer_retryable(x, code, status))
    return -1;
  d = backoff_ms(x, x->attempts);
  if (r->max_delay_ms > 0 && d > r->max_delay_ms)
    d = r->max_delay_ms;
  if (code == CURLE_OK && r->honour_retry_after)
    h = header_delay(x);
  /* The server's wait is honoured as asked when it fits one wait
   * (max_delay_ms) and what is left of the retry budget; one beyond ends
   * the retries now (asked_ms says why) rather than retrying before the
   * server allows. 0 (or an HTTP-date in the past) keeps the back-off:
   * retries must not hammer. */
  if (h > 0) {
    if ((r->max_total_wait_ms > 0 && x->waited_ms + h > r->max_total_wait_ms)
        || (r->max_delay_ms > 0 && h > r->max_delay_ms)) {
      x->asked_ms = h;
      return -1;
    }
    d = h;
  }
  if (r->max_total_wait_ms > 0 && x->waited_ms + d > r->max_total_wait_ms)
    return -1;
  return d;
}

/* }==================== */

/* {==================== the outcome ==================== */

static void set_error(oc_xfer_t *x, oc_response_t *r, CURLcode code)
{
  if (code == CURLE_OK)
    return;
  if (x->too_large)
    snprintf(r->error, sizeof r->error,
             "response larger than %zu bytes", x->max_response);
  else if (x->errbuf[0])
    snprintf(r->error, sizeof r->error, "%s", x->errbuf);
  else
    snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(code));
}

oc_response_t *oc_xfer_response(oc_xfer_t *x, CURLcode code, int status)
{
  oc_response_t *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->id = x->id;
  r->status = status;
  r->curl_code = (int)code;
  set_error(x, r, code);
  r->attempts = x->attempts;
  r->waited_ms = x->waited_ms;
  r->elapsed_ms = (long)(oc_loop_now_ms() - x->submitted_at);
  if (x->rbody.n && !x->rbody.oom) {
    r->body = oc_buf_steal(&x->rbody, &r->body_len);
  }
  r->headers = x->rh;
  r->nheaders = x->nrh;
  x->rh = NULL;
  x->nrh = x->caprh = 0;
  return r;
}

const char *oc_response_header(const oc_response_t *r, const char *lname)
{
  size_t i;
  for (i = 0; r && i < r->nheaders; i++)
    if (strcmp(r->headers[i].name, lname) == 0)
      return r->headers[i].value;
  return NULL;
}

void oc_response_free(oc_response_t *r)
{
  size_t i;
  if (!r)
    return;
  for (i = 0; i < r->nheaders; i++) {
    free(r->headers[i].name);
    free(r->headers[i].value);
  }
  free(r->headers);
  free(r->body);
  free(r);
}

/* }==================== */
