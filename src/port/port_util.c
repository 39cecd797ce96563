/*
 * port_util.c - what every part of the Port client uses: structured
 * errors (formatted from Port's answers, bodies kept up to 2 KB, the
 * client secret and tokens masked), parsing Port's JSON answers, and
 * query strings.
 */
#include "port_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SECRET_TO_MASK 4     /* shorter ones would mask ordinary text */

/* {==================== errors ==================== */

static void mask(char *s, size_t n, const char *secret)
{
  size_t k = secret ? strlen(secret) : 0;
  char *p = s, *end = s + n;
  if (k < MIN_SECRET_TO_MASK)
    return;
  while ((size_t)(end - p) >= k && (p = memmem(p, (size_t)(end - p), secret,
                                               k))) {
    memset(p, '*', k);
    p += k;
  }
}

void oc_port_scrub(oc_port_t *P, oc_port_error_t *e)
{
  mask(e->message, strlen(e->message), P->client_secret);
  mask(e->message, strlen(e->message), P->token);
  if (e->body) {
    mask(e->body, e->body_len, P->client_secret);
    mask(e->body, e->body_len, P->token);
  }
}

oc_port_error_t *oc_port_error_dup(const oc_port_error_t *e)
{
  oc_port_error_t *d = malloc(sizeof *d);
  if (!d)
    return NULL;
  *d = *e;
  d->body = NULL;
  if (e->body && (d->body = malloc(e->body_len + 1))) {
    memcpy(d->body, e->body, e->body_len);
    d->body[e->body_len] = '\0';
  } else {
    d->body_len = 0;
  }
  return d;
}

void oc_port_error_free(oc_port_error_t *e)
{
  if (!e)
    return;
  free(e->body);
  free(e);
}

void oc_port_error_set(oc_port_error_t *e, int status, const char *method,
                       const char *path, const char *what)
{
  memset(e, 0, sizeof *e);
  e->status = status;
  snprintf(e->method, sizeof e->method, "%s", method);
  snprintf(e->path, sizeof e->path, "%s", path);
  snprintf(e->message, sizeof e->message, "Port %s %s failed: %s", method,
           path, what);
}

const char *oc_jv_str(jv o, const char *key)
{
  jv v;
  const char *s = NULL;
  if (jv_get_kind(o) != JV_KIND_OBJECT)
    return NULL;
  v = jv_object_get(jv_copy(o), jv_string(key));
  if (jv_get_kind(v) == JV_KIND_STRING)
    s = jv_string_value(v);      /* the object keeps the string alive */
  jv_free(v);
  return s;
}

/* A printable excerpt of a non-JSON body. */
static void excerpt(const char *s, size_t n, char *out, size_t outlen)
{
  size_t i, k = 0;
  for (i = 0; i < n && k + 4 < outlen && i < 100; i++)
    out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
  if (i < n && k + 4 < outlen) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = '\0';
}

/* "<status> <code>: <message> (trace id ...)" into detail, and the
 * structured fields of e. */
void oc_port_describe_answer(const oc_response_t *res, oc_port_error_t *e,
                             char *detail, size_t dlen)
{
  char what[320] = "", tail[200] = "";
  const char *tid = oc_response_header(res, "x-trace-id");
  size_t k;
  if (res->status == 0) {
    snprintf(what, sizeof what, "%s", res->error);
  } else if (res->body) {
    jv v = oc_json_to_jv(res->body, res->body_len, 32, NULL, what,
                         sizeof what);
    const char *code = oc_jv_str(v, "error"), *msg = oc_jv_str(v, "message");
    if (code)
      snprintf(e->code, sizeof e->code, "%s", code);
    if (code || msg)
      snprintf(what, sizeof what, "%d %.60s%s%.250s", res->status,
               code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    else {
      char ex[120];
      excerpt(res->body, res->body_len, ex, sizeof ex);
      snprintf(what, sizeof what, "%d %s", res->status, ex);
    }
    jv_free(v);
  } else {
    snprintf(what, sizeof what, "%d (empty answer)", res->status);
  }
  if (tid)
    snprintf(e->trace_id, sizeof e->trace_id, "%s", tid);
  k = 0;
  if (res->attempts > 1)
    k += (size_t)snprintf(tail, sizeof tail, "after %d attempts",
                          res->attempts);
  if (tid && k < sizeof tail)
    snprintf(tail + k, sizeof tail - k, "%strace id %.100s", k ? "; " : "",
             tid);
  snprintf(detail, dlen, "%s%s%s%s", what, tail[0] ? " (" : "", tail,
           tail[0] ? ")" : "");
}

void oc_port_keep_body(const oc_response_t *res, oc_port_error_t *e)
{
  size_t n = res->body_len;
  if (!res->body || !n)
    return;
  if (n > OC_PORT_ERR_BODY_MAX)
    n = OC_PORT_ERR_BODY_MAX;
  if ((e->body = malloc(n + 1))) {
    memcpy(e->body, res->body, n);
    e->body[n] = '\0';
    e->body_len = n;
  }
}

void oc_port_error_from_response(oc_port_t *P, const char *method,
                                 const char *path, const oc_response_t *res,
                                 oc_port_error_t *e)
{
  char detail[OC_ERR_SIZE];
  oc_port_error_t tmp;
  memset(&tmp, 0, sizeof tmp);
  oc_port_describe_answer(res, &tmp, detail, sizeof detail);
  oc_port_error_set(e, res->status, method, path, detail);
  memcpy(e->code, tmp.code, sizeof e->code);
  memcpy(e->trace_id, tmp.trace_id, sizeof e->trace_id);
  oc_port_keep_body(res, e);
  oc_port_scrub(P, e);
}

jv oc_port_parse(oc_port_t *P, const char *method, const char *path,
                 const oc_response_t *res, oc_port_error_t *e)
{
  char msg[OC_ERR_SIZE], what[OC_ERR_SIZE + 64];
  jv v;
  if (!res->body)
    return jv_null();
  v = oc_json_to_jv(res->body, res->body_len, OC_JSON_MAX_DEPTH, P->kc, msg,
                    sizeof msg);
  if (jv_is_valid(v))
    return v;
  snprintf(what, sizeof what, "%d answer is not JSON: %s", res->status, msg);
  oc_port_error_set(e, res->status, method, path, what);
  oc_port_keep_body(res, e);
  oc_port_scrub(P, e);
  return v;
}

/* }==================== */

/* {==================== query strings ==================== */

void oc_port_escape(oc_buf_t *b, const char *s, size_t n)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
        || c == '~') {
      oc_buf_addc(b, (char)c);
    } else {
      oc_buf_addc(b, '%');
      oc_buf_addc(b, hex[c >> 4]);
      oc_buf_addc(b, hex[c & 15]);
    }
  }
}

void oc_port_add_param(oc_buf_t *q, const char *k, const char *v)
{
  if (q->n)
    oc_buf_addc(q, '&');
  oc_port_escape(q, k, strlen(k));
  oc_buf_addc(q, '=');
  oc_port_escape(q, v, strlen(v));
}

void oc_port_add_event(oc_buf_t *q, const oc_port_event_t *ev)
{
  if (!ev)
    return;
  if (ev->type)
    oc_port_add_param(q, "ocean_info_event_type", ev->type);
  if (ev->resync_id)
    oc_port_add_param(q, "ocean_info_resync_id", ev->resync_id);
}

/* }==================== */

