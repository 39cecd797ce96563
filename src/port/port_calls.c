/*
 * port_calls.c - the Port client's small jobs: a generic JSON call (one
 * request, Port's answer parsed), the entity search with Ocean's
 * ownership rules, and the token job (for tests and the Lua facade).
 */
#include "port_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* {==================== generic call ==================== */

typedef struct callstate {
  oc_port_call_fn fn;
  oc_port_token_fn token_fn;
  int status;
  jv body;
  char *token;
  oc_port_error_t *err;
} callstate_t;

static void callstate_free(void *s)
{
  callstate_t *c = s;
  jv_free(c->body);
  if (c->token) {
    memset(c->token, 0, strlen(c->token));
    free(c->token);
  }
  oc_port_error_free(c->err);
  free(c);
}

static void call_handler(preq_t *p, const oc_response_t *res,
                         const oc_port_error_t *err)
{
  callstate_t *c = p->job->state;
  oc_port_error_t e;
  memset(&e, 0, sizeof e);
  if (err) {
    c->status = err->status;
    c->err = oc_port_error_dup(err);
    return;
  }
  c->status = res->status;
  if (res->status >= 200 && res->status < 300) {
    jv v = oc_port_parse(p->port, p->method, p->path, res, &e);
    if (jv_is_valid(v)) {
      c->body = v;
      return;
    }
    jv_free(v);
  } else {
    oc_port_error_from_response(p->port, p->method, p->path, res, &e);
  }
  c->err = oc_port_error_dup(&e);
  free(e.body);
}

static void call_finish(pjob_t *j)
{
  callstate_t *c = j->state;
  jv body = c->body;
  c->body = jv_null();
  c->fn(j->ud, j->id, c->status, body, c->err);
}

static pjob_t *call_job(oc_port_t *P, void *ud, char *err, size_t errlen)
{
  pjob_t *j = oc_pjob_new(P, ud, err, errlen);
  callstate_t *c;
  if (!j)
    return NULL;
  if (!(c = calloc(1, sizeof *c))) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->body = jv_null();
  j->state = c;
  j->free_state = callstate_free;
  j->finish = call_finish;
  return j;
}

static char *copy_body(const char *s, size_t n)
{
  char *p;
  if (!s)
    return NULL;
  if ((p = malloc(n + 1))) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

uint64_t oc_port_call(oc_port_t *P, const oc_port_call_t *call,
                      oc_port_call_fn fn, void *ud, char *err, size_t errlen)
{
  oc_buf_t q = OC_BUF_INIT;
  const char *const *kv;
  pjob_t *j;
  preq_t *p;
  char *body;
  if (!call->method || !call->path || call->path[0] != '/'
      || strpbrk(call->path, "?# \r\n") || strlen(call->method) >= 8) {
    snprintf(err, errlen, "Port call: bad method or path");
    return 0;
  }
  if (!(j = call_job(P, ud, err, errlen)))
    return 0;
  ((callstate_t *)j->state)->fn = fn;
  for (kv = call->query; kv && kv[0] && kv[1]; kv += 2)
    oc_port_add_param(&q, kv[0], kv[1]);
  oc_port_add_event(&q, call->event);
  body = copy_body(call->body, call->body_len);
  p = oc_preq_new(j, call->method, call->path, oc_buf_cstr(&q), body,
                  call->body_len, call->flags, call_handler);
  oc_buf_free(&q);
  if (!p || (call->body && !body)) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  oc_preq_send(p);
  return j->id;
}

/* Ocean's ownership rules, appended to a query with non-empty rules. */
static int add_ownership(oc_port_t *P, const char *query, size_t len,
                         oc_buf_t *out, char *err, size_t errlen)
{
  char msg[OC_ERR_SIZE];
  jv q = oc_json_to_jv(query, len, OC_JSON_MAX_DEPTH, NULL, msg, sizeof msg);
  jv rules;
  oc_buf_t v = OC_BUF_INIT;
  if (!jv_is_valid(q) || jv_get_kind(q) != JV_KIND_OBJECT) {
    snprintf(err, errlen, "search: the query is not a JSON object%s%s",
             jv_is_valid(q) ? "" : ": ", jv_is_valid(q) ? "" : msg);
    jv_free(q);
    return -1;
  }
  rules = jv_object_get(jv_copy(q), jv_string("rules"));
  if (jv_get_kind(rules) == JV_KIND_ARRAY && jv_array_length(jv_copy(rules))) {
    oc_buf_printf(&v, "port-ocean/%s/", P->type);
    rules = jv_array_append(rules, JV_OBJECT(
      jv_string("property"), jv_string("$datasource"),
      jv_string("operator"), jv_string("contains"),
      jv_string("value"), jv_string(oc_buf_cstr(&v))));
    oc_buf_reset(&v);
    oc_buf_printf(&v, "/%s/exporter", P->identifier);
    rules = jv_array_append(rules, JV_OBJECT(
      jv_string("property"), jv_string("$datasource"),
      jv_string("operator"), jv_string("contains"),
      jv_string("value"), jv_string(oc_buf_cstr(&v))));
    q = jv_object_set(q, jv_string("rules"), rules);
  } else {
    jv_free(rules);
  }
  oc_buf_free(&v);
  oc_json_dump(q, out, 0);
  jv_free(q);
  return out->oom ? -1 : 0;
}

uint64_t oc_port_search(oc_port_t *P, const char *query, size_t len,
                        const char *const *include, oc_port_call_fn fn,
                        void *ud, char *err, size_t errlen)
{
  oc_buf_t body = OC_BUF_INIT;
  const char *kv[2 * 32 + 3];
  size_t k = 0;
  oc_port_call_t c;
  uint64_t id;
  if (add_ownership(P, query, len, &body, err, errlen)) {
    oc_buf_free(&body);
    return 0;
  }
  kv[k++] = "exclude_calculated_properties";
  kv[k++] = "true";
  for (; include && *include && k < 2 * 32; include++) {
    kv[k++] = "include";
    kv[k++] = *include;
  }
  kv[k] = NULL;
  memset(&c, 0, sizeof c);
  c.method = "POST";
  c.path = "/entities/search";
  c.query = kv;
  c.body = oc_buf_cstr(&body);
  c.body_len = body.n;
  c.flags = OC_PORT_AUTH | OC_PORT_EXPORTER | OC_PORT_RETRYABLE;
  id = oc_port_call(P, &c, fn, ud, err, errlen);
  oc_buf_free(&body);
  return id;
}

/* }==================== */

/* {==================== token job ==================== */

static void token_handler(preq_t *p, const oc_response_t *res,
                          const oc_port_error_t *err)
{
  callstate_t *c = p->job->state;
  (void)res;
  if (err)
    c->err = oc_port_error_dup(err);
  else if (p->port->token)
    c->token = strdup(p->port->token);
}

static void token_finish(pjob_t *j)
{
  callstate_t *c = j->state;
  c->token_fn(j->ud, j->id, c->token, c->err);
}

uint64_t oc_port_token(oc_port_t *P, oc_port_token_fn fn, void *ud,
                       char *err, size_t errlen)
{
  pjob_t *j = call_job(P, ud, err, errlen);
  preq_t *p;
  if (!j)
    return 0;
  ((callstate_t *)j->state)->token_fn = fn;
  j->finish = token_finish;
  if (!(p = oc_preq_new(j, "POST", "/auth/access_token", NULL, NULL, 0,
                        OC_PORT_AUTH, token_handler))) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  p->nosend = 1;
  j->requests--;                 /* it sends nothing itself */
  oc_preq_send(p);
  return j->id;
}

/* }==================== */
