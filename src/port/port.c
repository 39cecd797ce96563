/*
 * port.c - the Port client's core: configuration, jobs, the life of one
 * Port request (preq: token wait, send, 401 refresh, deferred failures)
 * and the access token. The jobs themselves: port_calls.c (generic JSON
 * call, search, token) and port_entities.c (bulk upsert, bulk delete,
 * owned listing); shared helpers (errors, parsing, query strings):
 * port_util.c.
 */
#include "port_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { P_IDLE, P_WAIT_TOKEN, P_XFER, P_DEFER };

#define DEFAULT_TIMEOUT_MS 60000L
#define DEFAULT_AUTH_FAILURE_TTL_MS 10000L

static char *dupbuf(oc_buf_t *b)
{
  return oc_buf_steal(b, NULL);
}

/* {==================== jobs ==================== */

pjob_t *oc_pjob_new(oc_port_t *P, void *ud, char *err, size_t errlen)
{
  pjob_t *j;
  if (!P->loop) {
    snprintf(err, errlen, "the event loop of this Port client is closed");
    return NULL;
  }
  if (!(j = calloc(1, sizeof *j))) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  j->id = P->next_job++;
  j->port = P;
  j->ud = ud;
  j->next = P->jobs;
  if (P->jobs)
    P->jobs->prev = j;
  P->jobs = j;
  return j;
}

static void pjob_free(pjob_t *j)
{
  oc_port_t *P = j->port;
  if (j->prev)
    j->prev->next = j->next;
  else
    P->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  if (j->free_state)
    j->free_state(j->state);
  oc_port_error_free(j->error);
  free(j);
}

void oc_pjob_note_error(pjob_t *j, const oc_port_error_t *e)
{
  j->failed++;
  if (!j->error)
    j->error = oc_port_error_dup(e);
}

static void pjob_maybe_finish(pjob_t *j)
{
  if (j->reqs || j->busy)
    return;
  j->busy++;
  if (j->finish)
    j->finish(j);
  pjob_free(j);
}

static void preq_abort(preq_t *p);

void oc_pjob_abort(pjob_t *j)
{
  while (j->reqs)
    preq_abort(j->reqs);
  pjob_free(j);
}

int oc_port_cancel(oc_port_t *P, uint64_t id)
{
  pjob_t *j;
  for (j = P->jobs; j; j = j->next)
    if (j->id == id) {
      if (j->busy)
        return -1;
      oc_pjob_abort(j);
      return 0;
    }
  return -1;
}

/* }==================== */

/* {==================== requests ==================== */

static void waiter_add(oc_port_t *P, preq_t *p)
{
  p->state = P_WAIT_TOKEN;
  p->wnext = NULL;
  p->wprev = P->wtail;
  if (P->wtail)
    P->wtail->wnext = p;
  else
    P->whead = p;
  P->wtail = p;
}

static void waiter_remove(oc_port_t *P, preq_t *p)
{
  if (p->wprev)
    p->wprev->wnext = p->wnext;
  else
    P->whead = p->wnext;
  if (p->wnext)
    p->wnext->wprev = p->wprev;
  else
    P->wtail = p->wprev;
  p->wprev = p->wnext = NULL;
  p->state = P_IDLE;
}

preq_t *oc_preq_new(pjob_t *j, const char *method, const char *path,
                    const char *query, char *body, size_t body_len,
                    int flags, preq_fn handler)
{
  preq_t *p = calloc(1, sizeof *p);
  oc_buf_t b = OC_BUF_INIT;
  if (!p) {
    free(body);
    return NULL;
  }
  p->port = j->port;
  p->job = j;
  p->flags = flags;
  p->handler = handler;
  p->body = body;
  p->body_len = body_len;
  snprintf(p->method, sizeof p->method, "%s", method);
  oc_buf_printf(&b, "/v1%s", path);
  p->path = strdup(oc_buf_cstr(&b));
  if (query && *query)
    oc_buf_printf(&b, "?%s", query);
  p->tail = dupbuf(&b);
  p->next = j->reqs;
  if (j->reqs)
    j->reqs->prev = p;
  j->reqs = p;
  if (!p->path || !p->tail) {
    preq_abort(p);
    return NULL;
  }
  j->requests++;
  return p;
}

static void preq_free(preq_t *p)
{
  pjob_t *j = p->job;
  if (p->prev)
    p->prev->next = p->next;
  else
    j->reqs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  if (p->free_data)
    p->free_data(p->data);
  oc_port_error_free(p->deferred);
  free(p->body);
  free(p->path);
  free(p->tail);
  free(p);
}

static void preq_abort(preq_t *p)
{
  oc_port_t *P = p->port;
  if (p->state == P_WAIT_TOKEN)
    waiter_remove(P, p);
  else if ((p->state == P_XFER || p->state == P_DEFER) && P->loop && p->xfer)
    oc_loop_cancel(P->loop, p->xfer);
  preq_free(p);
}

/* The end of a request: its handler, then the job may finish. */
static void preq_complete(preq_t *p, const oc_response_t *res,
                          const oc_port_error_t *err)
{
  pjob_t *j = p->job;
  p->state = P_IDLE;
  p->xfer = 0;
  j->busy++;
  p->handler(p, res, err);
  j->busy--;
  preq_free(p);
  pjob_maybe_finish(j);
}

static void defer_fire(void *ud)
{
  preq_t *p = ud;
  preq_complete(p, NULL, p->deferred);
}

/* Deliver a failure (or, for a no-send preq, success) from a timer, so
 * that no callback ever runs inside the call that started the job. */
static void preq_defer(preq_t *p, const oc_port_error_t *e)
{
  oc_port_t *P = p->port;
  if (e && !p->deferred)
    p->deferred = oc_port_error_dup(e);
  p->state = P_DEFER;
  p->xfer = P->loop ? oc_loop_timer(P->loop, 0, defer_fire, p) : 0;
}

static void nothing(preq_t *p, const oc_response_t *res,
                    const oc_port_error_t *err)
{
  (void)p;
  (void)res;
  (void)err;
}

void oc_pjob_finish_soon(pjob_t *j)
{
  preq_t *p = oc_preq_new(j, "GET", "/", NULL, NULL, 0, 0, nothing);
  if (!p)
    return;
  p->nosend = 1;
  j->requests--;
  preq_defer(p, NULL);
}

static int token_valid(oc_port_t *P)
{
  return P->token && oc_loop_now_ms() < P->token_expires;
}

static void token_drop(oc_port_t *P)
{
  if (P->token)
    memset(P->token, 0, strlen(P->token));
  if (P->auth)
    memset(P->auth, 0, strlen(P->auth));
  free(P->token);
  free(P->auth);
  P->token = P->auth = NULL;
  P->token_expires = 0;
}

static int idempotent(const char *m)
{
  return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT")
         || !strcmp(m, "DELETE") || !strcmp(m, "OPTIONS");
}

static void xfer_done(void *ud, oc_response_t *res);

static void preq_submit(preq_t *p)
{
  oc_port_t *P = p->port;
  const char *h[5];
  int n = 0;
  oc_request_t req;
  oc_buf_t url = OC_BUF_INIT;
  oc_port_error_t e;
  char err[OC_ERR_SIZE];
  h[n++] = (p->flags & OC_PORT_EXPORTER) ? P->ua_exporter : P->ua;
  h[n++] = "Content-Type: application/json";
  h[n++] = "Accept: application/json";
  if ((p->flags & OC_PORT_AUTH) && P->auth)
    h[n++] = P->auth;
  h[n] = NULL;
  oc_buf_printf(&url, "%s%s", P->api, p->tail);
  memset(&req, 0, sizeof req);
  req.method = p->method;
  req.url = oc_buf_cstr(&url);
  req.headers = h;
  req.body = p->body;
  req.body_len = p->body_len;
  req.flags = OC_REQ_BORROW_BODY | (P->insecure ? OC_REQ_INSECURE : 0);
  req.timeout_ms = P->timeout_ms;
  if ((p->flags & OC_PORT_RETRYABLE) || idempotent(p->method))
    req.retry = &P->retry;
  req.done = xfer_done;
  req.ud = p;
  p->token_gen = P->token_gen;
  p->xfer = url.oom ? 0 : oc_loop_submit(P->loop, &req, err, sizeof err);
  oc_buf_free(&url);
  if (!p->xfer) {
    oc_port_error_set(&e, 0, p->method, p->path,
                      url.oom ? "out of memory" : err);
    preq_defer(p, &e);
    return;
  }
  p->state = P_XFER;
  P->requests++;
}

static void token_ensure(oc_port_t *P);

/* Port is unreachable once a retried request used up its retry budget
 * without an answer (refused, reset, timed out, empty reply): later
 * requests then fail at once with that error (no second round of retries
 * against a Port known to be down) for as long as the retry budget
 * (max_total_wait_ms), after which the next request tries again. Any
 * answer clears it. A 5xx is an answer: Port is up, that request failed
 * (its entities are rejections, explained as such). */
static void note_health(oc_port_t *P, const char *method, const char *path,
                        const oc_response_t *res)
{
  oc_port_error_t e;
  char what[200];
  long budget = P->retry.max_total_wait_ms > 0 ? P->retry.max_total_wait_ms
                                               : 120000;
  if (!res)
    return;
  if (res->curl_code == 0 && res->status > 0) {
    oc_port_error_free(P->down_error);
    P->down_error = NULL;
    return;
  }
  if (res->attempts < 2 || res->curl_code == 0)
    return;
  snprintf(what, sizeof what, "%.150s", res->error);
  memset(&e, 0, sizeof e);
  e.status = 0;
  snprintf(e.method, sizeof e.method, "%s", method);
  snprintf(e.path, sizeof e.path, "%s", path);
  snprintf(e.code, sizeof e.code, "port_unreachable");
  snprintf(e.message, sizeof e.message,
           "Port is unreachable: %.7s %.200s gave up after %d attempts "
           "(%.1f s of waiting): %.200s", method, path, res->attempts,
           (double)res->waited_ms / 1000.0, what);
  oc_port_error_free(P->down_error);
  P->down_error = oc_port_error_dup(&e);
  P->down_until = oc_loop_now_ms() + budget;
}

const char *oc_port_unreachable(const oc_port_t *P)
{
  if (P->down_error && oc_loop_now_ms() < P->down_until)
    return P->down_error->message;
  return NULL;
}

void oc_preq_send(preq_t *p)
{
  oc_port_t *P = p->port;
  if (!P->loop)
    return;                      /* the loop is gone: nothing will run */
  if (P->down_error && oc_loop_now_ms() < P->down_until) {
    preq_defer(p, P->down_error);
    return;
  }
  if ((p->flags & OC_PORT_AUTH) || p->nosend) {
    if (P->creds_error && oc_loop_now_ms() < P->creds_failed_until) {
      preq_defer(p, P->creds_error);
      return;
    }
    if (!token_valid(P)) {
      waiter_add(P, p);
      token_ensure(P);
      p->token_gen = (unsigned)P->token_fetches;  /* the fetch it waits on */
      return;
    }
    if (p->nosend) {
      preq_defer(p, NULL);
      return;
    }
  }
  preq_submit(p);
}

static void xfer_done(void *ud, oc_response_t *res)
{
  preq_t *p = ud;
  oc_port_t *P = p->port;
  oc_port_error_t e;
  p->xfer = 0;
  p->state = P_IDLE;
  if (!res) {
    oc_port_error_set(&e, 0, p->method, p->path, "out of memory");
    preq_complete(p, NULL, &e);
    return;
  }
  if (res->status == 401 && (p->flags & OC_PORT_AUTH) && !p->resent) {
    p->resent = 1;               /* refresh once, resend once */
    if (p->token_gen == P->token_gen)
      token_drop(P);
    oc_response_free(res);
    oc_preq_send(p);
    return;
  }
  note_health(P, p->method, p->path, res);
  preq_complete(p, res, NULL);
  oc_response_free(res);
}

/* }==================== */

/* {==================== the token ==================== */

static void token_done(void *ud, oc_response_t *res);

/* Fail the requests waiting on fetch number `gen` (later ones wait on a
 * later fetch). */
static void waiters_fail(oc_port_t *P, unsigned gen,
                         const oc_port_error_t *e)
{
  preq_t *p;
  while ((p = P->whead) && p->token_gen <= gen) {
    waiter_remove(P, p);
    preq_complete(p, NULL, e);
  }
}

static void waiters_go(oc_port_t *P)
{
  preq_t *p;
  while ((p = P->whead) && token_valid(P)) {
    waiter_remove(P, p);
    if (p->nosend)
      preq_complete(p, NULL, NULL);
    else
      preq_submit(p);
  }
}

static void token_ensure(oc_port_t *P)
{
  oc_buf_t body = OC_BUF_INIT, url = OC_BUF_INIT;
  const char *h[4];
  oc_request_t req;
  char err[OC_ERR_SIZE];
  preq_t *p;
  if (P->token_xfer)
    return;
  oc_buf_adds(&body, "{\"clientId\":");
  oc_buf_add_json_string(&body, P->client_id, strlen(P->client_id));
  oc_buf_adds(&body, ",\"clientSecret\":");
  oc_buf_add_json_string(&body, P->client_secret, strlen(P->client_secret));
  oc_buf_addc(&body, '}');
  oc_buf_printf(&url, "%s/v1/auth/access_token", P->api);
  h[0] = P->ua;
  h[1] = "Content-Type: application/json";
  h[2] = "Accept: application/json";
  h[3] = NULL;
  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.url = oc_buf_cstr(&url);
  req.headers = h;
  req.body = oc_buf_cstr(&body);
  req.body_len = body.n;
  req.flags = OC_REQ_URGENT | (P->insecure ? OC_REQ_INSECURE : 0);
  req.timeout_ms = P->timeout_ms;
  req.retry = &P->token_retry;
  req.done = token_done;
  req.ud = P;
  P->token_fetches++;
  P->token_xfer = (body.oom || url.oom) ? 0 : oc_loop_submit(P->loop, &req,
                                                             err, sizeof err);
  if (body.p)
    memset(body.p, 0, body.cap);
  oc_buf_free(&body);
  oc_buf_free(&url);
  if (!P->token_xfer) {
    oc_port_error_t e;
    oc_port_error_set(&e, 0, "POST", "/v1/auth/access_token",
                      "cannot start the token request");
    for (p = P->whead; p; p = P->whead) {
      waiter_remove(P, p);
      preq_defer(p, &e);
    }
  }
}

static int token_set(oc_port_t *P, jv v)
{
  const char *tok = oc_jv_str(v, "accessToken");
  const char *type = oc_jv_str(v, "tokenType");
  jv exp = jv_object_get(jv_copy(v), jv_string("expiresIn"));
  double secs = jv_get_kind(exp) == JV_KIND_NUMBER ? jv_number_value(exp)
                                                   : 3600;
  double margin = secs * 100 > 60000 ? 60000 : secs * 100;
  oc_buf_t b = OC_BUF_INIT;
  jv_free(exp);
  if (!tok || !*tok || strpbrk(tok, "\r\n") || (type && strpbrk(type, "\r\n")))
    return -1;
  token_drop(P);
  oc_buf_printf(&b, "Authorization: %s %s", type && *type ? type : "Bearer",
                tok);
  P->token = strdup(tok);
  P->auth = dupbuf(&b);
  if (!P->token || !P->auth) {
    token_drop(P);
    return -1;
  }
  P->token_expires = oc_loop_now_ms() + (int64_t)(secs * 1000 - margin);
  P->token_gen++;
  return 0;
}

static void credentials_failed(oc_port_t *P, const oc_response_t *res,
                               oc_port_error_t *e)
{
  char detail[OC_ERR_SIZE];
  oc_port_describe_answer(res, e, detail, sizeof detail);
  e->status = res->status;
  snprintf(e->method, sizeof e->method, "POST");
  snprintf(e->path, sizeof e->path, "/v1/auth/access_token");
  snprintf(e->message, sizeof e->message,
           "invalid Port credentials (client id '%.100s'): "
           "Port answered %.300s",
           P->client_id, detail);
  oc_port_keep_body(res, e);
  oc_port_scrub(P, e);
  oc_port_error_free(P->creds_error);
  P->creds_error = oc_port_error_dup(e);
  P->creds_failed_until = oc_loop_now_ms() + P->auth_failure_ttl_ms;
}

static void token_done(void *ud, oc_response_t *res)
{
  oc_port_t *P = ud;
  unsigned gen = (unsigned)P->token_fetches;
  oc_port_error_t e;
  jv v;
  memset(&e, 0, sizeof e);
  P->token_xfer = 0;
  note_health(P, "POST", "/v1/auth/access_token", res);
  if (!res) {
    oc_port_error_set(&e, 0, "POST", "/v1/auth/access_token",
                      "out of memory");
  } else if (res->status == 200) {
    v = oc_port_parse(P, "POST", "/v1/auth/access_token", res, &e);
    if (jv_is_valid(v) && token_set(P, v) != 0)
      oc_port_error_set(&e, 200, "POST", "/v1/auth/access_token",
                        "200 answer without a usable accessToken");
    jv_free(v);
  } else if (res->status == 401 || res->status == 403) {
    credentials_failed(P, res, &e);
  } else {
    oc_port_error_from_response(P, "POST", "/v1/auth/access_token", res, &e);
  }
  if (res && res->body)
    memset(res->body, 0, res->body_len);   /* it held the token */
  oc_response_free(res);
  if (token_valid(P))
    waiters_go(P);
  else
    waiters_fail(P, gen, &e);
  free(e.body);
}

/* }==================== */

/* {==================== new / free ==================== */

static void loop_gone(void *ud)
{
  oc_port_t *P = ud;
  pjob_t *j;
  preq_t *p;
  P->loop = NULL;                /* it freed our transfers and timers */
  P->token_xfer = 0;
  for (j = P->jobs; j; j = j->next)
    for (p = j->reqs; p; p = p->next)
      if (p->state == P_XFER || p->state == P_DEFER) {
        p->state = P_IDLE;
        p->xfer = 0;
      }
}

static int bad_name(const char *s)
{
  return !s || !*s || strpbrk(s, "/\r\n ") != NULL;
}

static const char *check_cfg(const oc_port_cfg_t *c)
{
  if (!c->base_url || (strncmp(c->base_url, "http://", 7) != 0
                       && strncmp(c->base_url, "https://", 8) != 0)
      || strpbrk(c->base_url, "\r\n "))
    return "base_url must be an http:// or https:// URL";
  if (!c->client_id || !*c->client_id || strpbrk(c->client_id, "\r\n"))
    return "client_id is required";
  if (!c->client_secret || !*c->client_secret)
    return "client_secret is required";
  if (bad_name(c->integration_type))
    return "integration_type is required (no '/', spaces or newlines)";
  if (bad_name(c->integration_identifier))
    return "integration_identifier is required (no '/', spaces or newlines)";
  if (c->integration_version && bad_name(c->integration_version))
    return "integration_version may not contain '/', spaces or newlines";
  return NULL;
}

static void retry_without_auth_statuses(oc_retry_t *r)
{
  int i, k = 0;
  for (i = 0; i < r->nstatuses; i++)
    if (r->statuses[i] != 401 && r->statuses[i] != 403)
      r->statuses[k++] = r->statuses[i];
  r->nstatuses = k;
}

static int set_strings(oc_port_t *P, const oc_port_cfg_t *c)
{
  oc_buf_t b = OC_BUF_INIT;
  const char *ver = c->integration_version ? c->integration_version : "0.0.0";
  size_t n = strlen(c->base_url);
  while (n && c->base_url[n - 1] == '/')
    n--;
  oc_buf_printf(&b, "%.*s", (int)n, c->base_url);
  P->api = dupbuf(&b);
  oc_buf_printf(&b, "User-Agent: port-ocean/%s/%s/%s", c->integration_type,
                ver, c->integration_identifier);
  P->ua = dupbuf(&b);
  oc_buf_printf(&b, "User-Agent: port-ocean/%s/%s/%s/exporter",
                c->integration_type, ver, c->integration_identifier);
  P->ua_exporter = dupbuf(&b);
  P->client_id = strdup(c->client_id);
  P->client_secret = strdup(c->client_secret);
  P->type = strdup(c->integration_type);
  P->identifier = strdup(c->integration_identifier);
  return P->api && P->ua && P->ua_exporter && P->client_id
         && P->client_secret && P->type && P->identifier ? 0 : -1;
}

oc_port_t *oc_port_new(oc_loop_t *loop, const oc_port_cfg_t *c, char *err,
                       size_t errlen)
{
  const char *bad = check_cfg(c);
  oc_port_t *P;
  if (bad) {
    snprintf(err, errlen, "Port client: %s", bad);
    return NULL;
  }
  if (!(P = calloc(1, sizeof *P))) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  P->loop = loop;
  P->next_job = 1;
  P->insecure = c->insecure;
  P->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : DEFAULT_TIMEOUT_MS;
  P->auth_failure_ttl_ms = c->auth_failure_ttl_ms > 0
    ? c->auth_failure_ttl_ms : DEFAULT_AUTH_FAILURE_TTL_MS;
  if (c->retry)
    P->retry = *c->retry;
  else
    oc_retry_port_defaults(&P->retry);
  P->token_retry = P->retry;
  retry_without_auth_statuses(&P->token_retry);
  P->bulk_max_entities = c->bulk_max_entities ? c->bulk_max_entities : 20;
  P->bulk_max_bytes = c->bulk_max_bytes ? c->bulk_max_bytes : 1048576;
  P->delete_batch = c->delete_batch ? c->delete_batch : 100;
  P->list_limit = c->list_limit ? c->list_limit : 5000;
  P->kc = oc_keycache_new();
  if (set_strings(P, c) || !P->kc
      || oc_loop_add_close_hook(loop, loop_gone, P)) {
    P->loop = NULL;
    oc_port_free(P);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return P;
}

void oc_port_free(oc_port_t *P)
{
  if (!P)
    return;
  while (P->jobs)
    oc_pjob_abort(P->jobs);
  if (P->loop) {
    if (P->token_xfer)
      oc_loop_cancel(P->loop, P->token_xfer);
    oc_loop_remove_close_hook(P->loop, loop_gone, P);
  }
  token_drop(P);
  if (P->client_secret)
    memset(P->client_secret, 0, strlen(P->client_secret));
  oc_port_error_free(P->creds_error);
  oc_port_error_free(P->down_error);
  oc_keycache_free(P->kc);
  free(P->api);
  free(P->ua);
  free(P->ua_exporter);
  free(P->client_id);
  free(P->client_secret);
  free(P->type);
  free(P->identifier);
  free(P);
}

void oc_port_stats(const oc_port_t *P, oc_port_stats_t *out)
{
  const pjob_t *j;
  out->jobs = 0;
  for (j = P->jobs; j; j = j->next)
    out->jobs++;
  out->requests = P->requests;
  out->token_fetches = P->token_fetches;
}

/* }==================== */

