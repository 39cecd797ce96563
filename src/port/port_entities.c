/*
 * port_entities.c - the Port client's entity jobs: bulk upsert (requests
 * of <= 20 entities and <= 1 MiB, 207 per-index results, 413 -> halves),
 * bulk delete (<= 100 ids per request) and the paginated listing of the
 * entities this integration owns. Requests of one job go to the loop all
 * at once; the loop's concurrency bound paces them.
 */
#include "port_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BULK_OVERHEAD 15         /* {"entities":[ ... ]} */

static void summary_finish(pjob_t *j, oc_port_done_fn done)
{
  oc_port_summary_t s;
  s.job = j->id;
  s.requests = j->requests;
  s.failed_requests = j->failed;
  s.error = j->error;
  if (done)
    done(j->ud, &s);
}

static char *steal(oc_buf_t *b, size_t *n)
{
  return b->oom ? (oc_buf_free(b), NULL) : oc_buf_steal(b, n);
}

/* {==================== bulk upsert ==================== */

typedef struct upstate {
  oc_port_entity_fn entity_fn;
  oc_port_done_fn done_fn;
  char *path, *query;
} upstate_t;

/* One request's entities: caller indexes, and where each entity's text
 * sits in the request body (for 413 splits). */
typedef struct chunk {
  size_t n;
  size_t *idx, *off, *len;
} chunk_t;

static void upstate_free(void *s)
{
  upstate_t *u = s;
  free(u->path);
  free(u->query);
  free(u);
}

static chunk_t *chunk_alloc(size_t n)
{
  chunk_t *c = malloc(sizeof *c + 3 * n * sizeof(size_t));
  if (!c)
    return NULL;
  c->n = n;
  c->idx = (size_t *)(c + 1);
  c->off = c->idx + n;
  c->len = c->off + n;
  return c;
}

static void upsert_handler(preq_t *p, const oc_response_t *res,
                           const oc_port_error_t *err);

/* Send texts[0..n) (caller indexes idx[0..n)) as one bulk request. */
static int send_chunk(pjob_t *j, const char *const *texts, const size_t *lens,
                      const size_t *idx, size_t n)
{
  upstate_t *u = j->state;
  chunk_t *c = chunk_alloc(n);
  oc_buf_t b = OC_BUF_INIT;
  size_t k, blen;
  char *body;
  preq_t *p;
  if (!c)
    return -1;
  oc_buf_adds(&b, "{\"entities\":[");
  for (k = 0; k < n; k++) {
    if (k)
      oc_buf_addc(&b, ',');
    c->idx[k] = idx[k];
    c->off[k] = b.n;
    c->len[k] = lens[k];
    oc_buf_add(&b, texts[k], lens[k]);
  }
  oc_buf_adds(&b, "]}");
  if (!(body = steal(&b, &blen))
      || !(p = oc_preq_new(j, "POST", u->path, u->query, body, blen,
                           OC_PORT_AUTH | OC_PORT_EXPORTER
                           | OC_PORT_RETRYABLE, upsert_handler))) {
    free(c);
    return -1;
  }
  p->data = c;
  p->free_data = free;
  oc_preq_send(p);
  return 0;
}

static void entity_failed(pjob_t *j, size_t index, int status,
                          const char *code, const char *msg,
                          const char *ident, int unresolved)
{
  upstate_t *u = j->state;
  oc_port_entity_result_t r;
  memset(&r, 0, sizeof r);
  r.index = index;
  r.status = status;
  r.code = code ? code : "";
  r.message = msg ? msg : (code ? code : "failed");
  r.identifier = ident;
  r.unresolved = unresolved;
  u->entity_fn(j->ud, &r);
}

static void fail_all(pjob_t *j, const chunk_t *c, const oc_port_error_t *e)
{
  size_t k;
  for (k = 0; k < c->n; k++)
    entity_failed(j, c->idx[k], e->status, e->code, e->message, NULL, 0);
}

static int jv_index(jv o, size_t n)
{
  jv v = jv_object_get(jv_copy(o), jv_string("index"));
  double d = jv_get_kind(v) == JV_KIND_NUMBER ? jv_number_value(v) : -1;
  jv_free(v);
  return d >= 0 && d < (double)n && d == (double)(int)d ? (int)d : -1;
}

static int jv_int(jv o, const char *key, int def)
{
  jv v = jv_object_get(jv_copy(o), jv_string(key));
  int r = jv_get_kind(v) == JV_KIND_NUMBER ? (int)jv_number_value(v) : def;
  jv_free(v);
  return r;
}

/* report_ok / report_errors consume `list`. */
static void report_ok(pjob_t *j, const chunk_t *c, jv list, char *seen,
                      int status)
{
  upstate_t *u = j->state;
  int i, n = jv_get_kind(list) == JV_KIND_ARRAY ? jv_array_length(jv_copy(list))
                                                : 0;
  for (i = 0; i < n; i++) {
    jv e = jv_array_get(jv_copy(list), i);
    int k = jv_index(e, c->n);
    if (k >= 0 && !seen[k]) {
      oc_port_entity_result_t r;
      jv created = jv_object_get(jv_copy(e), jv_string("created"));
      seen[k] = 1;
      memset(&r, 0, sizeof r);
      r.index = c->idx[k];
      r.ok = 1;
      r.created = jv_get_kind(created) == JV_KIND_TRUE;
      r.status = status;
      r.identifier = oc_jv_str(e, "identifier");
      r.code = r.message = "";
      u->entity_fn(j->ud, &r);
      jv_free(created);
    }
    jv_free(e);
  }
  jv_free(list);
}

static void report_errors(pjob_t *j, const chunk_t *c, jv list, char *seen,
                          int status)
{
  int i, n = jv_get_kind(list) == JV_KIND_ARRAY ? jv_array_length(jv_copy(list))
                                                : 0;
  for (i = 0; i < n; i++) {
    jv e = jv_array_get(jv_copy(list), i);
    int k = jv_index(e, c->n);
    if (k >= 0 && !seen[k]) {
      const char *ident = oc_jv_str(e, "identifier");
      seen[k] = 1;
      entity_failed(j, c->idx[k], jv_int(e, "statusCode", status),
                    oc_jv_str(e, "error"), oc_jv_str(e, "message"), ident,
                    ident && strcmp(ident, "unknown") == 0);
    }
    jv_free(e);
  }
  jv_free(list);
}

/* Per-index results of a 200/207 answer. -1 (e set) if it is not JSON. */
static int bulk_results(preq_t *p, const chunk_t *c, const oc_response_t *res,
                        oc_port_error_t *e)
{
  pjob_t *j = p->job;
  jv v = oc_port_parse(p->port, p->method, p->path, res, e);
  char *seen;
  size_t k;
  if (!jv_is_valid(v) || !(seen = calloc(c->n ? c->n : 1, 1))) {
    jv_free(v);
    if (!e->message[0])
      oc_port_error_set(e, res->status, p->method, p->path, "out of memory");
    return -1;
  }
  if (jv_get_kind(v) == JV_KIND_OBJECT) {
    report_ok(j, c, jv_object_get(jv_copy(v), jv_string("entities")), seen,
              res->status);
    report_errors(j, c, jv_object_get(jv_copy(v), jv_string("errors")), seen,
                  res->status);
  }
  for (k = 0; k < c->n; k++)
    if (!seen[k])
      entity_failed(j, c->idx[k], res->status, "missing",
                    "Port's bulk answer has no result for this entity", NULL,
                    0);
  free(seen);
  jv_free(v);
  return 0;
}

/* 413: send each half of the request again. */
static int split(preq_t *p, const chunk_t *c)
{
  size_t half = c->n / 2, k;
  const char **texts = malloc(c->n * sizeof *texts);
  int rc;
  if (!texts)
    return -1;
  for (k = 0; k < c->n; k++)
    texts[k] = p->body + c->off[k];
  rc = send_chunk(p->job, texts, c->len, c->idx, half);
  if (!rc)
    rc = send_chunk(p->job, texts + half, c->len + half, c->idx + half,
                    c->n - half);
  free(texts);
  return rc;
}

static void upsert_handler(preq_t *p, const oc_response_t *res,
                           const oc_port_error_t *err)
{
  const chunk_t *c = p->data;
  pjob_t *j = p->job;
  oc_port_error_t e;
  memset(&e, 0, sizeof e);
  if (err) {
    oc_pjob_note_error(j, err);
    fail_all(j, c, err);
    return;
  }
  if (res->status == 200 || res->status == 207) {
    if (bulk_results(p, c, res, &e) == 0)
      return;
  } else if ((res->status == 413 || res->status == 400 || res->status == 422)
             && c->n > 1 && split(p, c) == 0) {
    /* too large, or refused as a whole (400/422: a request-level answer
     * says nothing of which entity, and the others may be another live
     * event's): halves, down to single entities, so that only the
     * entity at fault fails */
    return;
  } else {
    oc_port_error_from_response(p->port, p->method, p->path, res, &e);
  }
  oc_pjob_note_error(j, &e);
  fail_all(j, c, &e);
  free(e.body);
}

static void upsert_finish(pjob_t *j)
{
  summary_finish(j, ((upstate_t *)j->state)->done_fn);
}

static int upsert_setup(pjob_t *j, const char *bp,
                        const oc_port_upsert_opts_t *o)
{
  upstate_t *u = j->state;
  oc_buf_t b = OC_BUF_INIT;
  oc_buf_adds(&b, "/blueprints/");
  oc_port_escape(&b, bp, strlen(bp));
  oc_buf_adds(&b, "/entities/bulk");
  u->path = steal(&b, NULL);
  oc_buf_printf(&b, "upsert=%s&merge=%s&create_missing_related_entities=%s"
                "&validation_only=%s", o->upsert ? "true" : "false",
                o->merge ? "true" : "false",
                o->create_missing_related_entities ? "true" : "false",
                o->validation_only ? "true" : "false");
  oc_port_add_event(&b, &o->event);
  u->query = steal(&b, NULL);
  return u->path && u->query ? 0 : -1;
}

/* Cut the caller's list into requests and send them. */
static int upsert_chunks(pjob_t *j, const char *const *texts,
                         const size_t *lens, size_t n, size_t *idx)
{
  oc_port_t *P = j->port;
  size_t i = 0, start, bytes;
  while (i < n) {
    start = i;
    bytes = BULK_OVERHEAD + lens[i];
    idx[i] = i;
    i++;
    while (i < n && i - start < P->bulk_max_entities
           && bytes + lens[i] + 1 <= P->bulk_max_bytes) {
      bytes += lens[i] + 1;
      idx[i] = i;
      i++;
    }
    if (send_chunk(j, texts + start, lens + start, idx + start, i - start))
      return -1;
  }
  return 0;
}

static pjob_t *entity_job(oc_port_t *P, void *ud, size_t state_size,
                          void (*finish)(pjob_t *), void (*free_state)(void *),
                          char *err, size_t errlen)
{
  pjob_t *j = oc_pjob_new(P, ud, err, errlen);
  if (!j)
    return NULL;
  if (!(j->state = calloc(1, state_size))) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  j->free_state = free_state;
  j->finish = finish;
  return j;
}

uint64_t oc_port_upsert(oc_port_t *P, const char *bp,
                        const char *const *texts, const size_t *lens,
                        size_t n, const oc_port_upsert_opts_t *opts,
                        oc_port_entity_fn entity_fn, oc_port_done_fn done_fn,
                        void *ud, char *err, size_t errlen)
{
  static const oc_port_upsert_opts_t defaults = OC_PORT_UPSERT_DEFAULTS;
  pjob_t *j;
  upstate_t *u;
  size_t *idx;
  if (!bp || !*bp || !entity_fn || (n && (!texts || !lens))) {
    snprintf(err, errlen, "upsert: a blueprint, entities and a result "
             "callback are required");
    return 0;
  }
  if (!(j = entity_job(P, ud, sizeof *u, upsert_finish, upstate_free, err,
                       errlen)))
    return 0;
  u = j->state;
  u->entity_fn = entity_fn;
  u->done_fn = done_fn;
  idx = malloc((n ? n : 1) * sizeof *idx);
  if (!idx || upsert_setup(j, bp, opts ? opts : &defaults)
      || upsert_chunks(j, texts, lens, n, idx)) {
    free(idx);
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  free(idx);
  if (!n)
    oc_pjob_finish_soon(j);
  return j->id;
}

/* }==================== */

/* {==================== bulk delete ==================== */

typedef struct delstate {
  oc_port_id_fn id_fn;
  oc_port_done_fn done_fn;
  char *path, *query;
} delstate_t;

typedef struct dchunk {
  size_t n;
  size_t first;                  /* caller indexes first .. first+n-1 */
  char **ids;
} dchunk_t;

static void delstate_free(void *s)
{
  delstate_t *d = s;
  free(d->path);
  free(d->query);
  free(d);
}

static void dchunk_free(void *p)
{
  dchunk_t *c = p;
  size_t k;
  for (k = 0; k < c->n; k++)
    free(c->ids[k]);
  free(c->ids);
  free(c);
}

static int in_list(jv list, const char *id)
{
  int i, n = jv_array_length(jv_copy(list)), found = 0;
  for (i = 0; i < n && !found; i++) {
    jv s = jv_array_get(jv_copy(list), i);
    found = jv_get_kind(s) == JV_KIND_STRING
            && strcmp(jv_string_value(s), id) == 0;
    jv_free(s);
  }
  return found;
}

/* The entry of Port's "errors" list for id (an object), or jv_null(). */
static jv error_for(jv errors, const char *id)
{
  int i, n = jv_get_kind(errors) == JV_KIND_ARRAY
             ? jv_array_length(jv_copy(errors)) : 0;
  for (i = 0; i < n; i++) {
    jv o = jv_array_get(jv_copy(errors), i);
    const char *eid = oc_jv_str(o, "identifier");
    if (eid && strcmp(eid, id) == 0)
      return o;
    jv_free(o);
  }
  return jv_null();
}

/* One id of a 2xx answer: deleted (in deletedEntities, or in errors with
 * 404: it is already gone - e.g. a retried request whose first answer
 * was lost after Port had deleted it), or failed with Port's error for
 * it, or "Port did not delete it" when Port says nothing of it. */
static void delete_one(preq_t *p, const oc_response_t *res, jv deleted,
                       jv errors, size_t k)
{
  const dchunk_t *c = p->data;
  pjob_t *j = p->job;
  delstate_t *d = j->state;
  oc_port_error_t e;
  jv o, st;
  int status;
  if (in_list(deleted, c->ids[k])) {
    d->id_fn(j->ud, c->first + k, 1, NULL);
    return;
  }
  o = error_for(errors, c->ids[k]);
  if (jv_get_kind(o) != JV_KIND_OBJECT) {
    jv_free(o);
    d->id_fn(j->ud, c->first + k, 0, NULL);
    return;
  }
  st = jv_object_get(jv_copy(o), jv_string("statusCode"));
  status = jv_get_kind(st) == JV_KIND_NUMBER ? (int)jv_number_value(st) : 0;
  jv_free(st);
  if (status == 404) {
    d->id_fn(j->ud, c->first + k, 1, NULL);
  } else {
    const char *code = oc_jv_str(o, "error"), *msg = oc_jv_str(o, "message");
    char what[OC_ERR_SIZE];
    snprintf(what, sizeof what, "%d%s%.60s%s%.400s", status ? status
             : res->status, code ? " " : "", code ? code : "",
             msg ? ": " : "", msg ? msg : "");
    oc_port_error_set(&e, status ? status : res->status, p->method, p->path,
                      what);
    if (code)
      snprintf(e.code, sizeof e.code, "%s", code);
    oc_port_scrub(p->port, &e);
    d->id_fn(j->ud, c->first + k, 0, &e);
  }
  jv_free(o);
}

static void delete_handler(preq_t *p, const oc_response_t *res,
                           const oc_port_error_t *err)
{
  const dchunk_t *c = p->data;
  pjob_t *j = p->job;
  delstate_t *d = j->state;
  oc_port_error_t e;
  jv v, list, errors;
  size_t k;
  memset(&e, 0, sizeof e);
  if (!err && res->status >= 200 && res->status < 300) {
    v = oc_port_parse(p->port, p->method, p->path, res, &e);
    if (jv_is_valid(v)) {
      list = jv_get_kind(v) == JV_KIND_OBJECT
        ? jv_object_get(jv_copy(v), jv_string("deletedEntities")) : jv_null();
      errors = jv_get_kind(v) == JV_KIND_OBJECT
        ? jv_object_get(jv_copy(v), jv_string("errors")) : jv_null();
      if (jv_get_kind(list) != JV_KIND_ARRAY) {
        jv_free(list);
        list = jv_array();
      }
      for (k = 0; k < c->n; k++)
        delete_one(p, res, list, errors, k);
      jv_free(errors);
      jv_free(list);
      jv_free(v);
      return;
    }
    jv_free(v);
  } else if (!err) {
    oc_port_error_from_response(p->port, p->method, p->path, res, &e);
  }
  oc_pjob_note_error(j, err ? err : &e);
  for (k = 0; k < c->n; k++)
    d->id_fn(j->ud, c->first + k, 0, err ? err : &e);
  free(e.body);
}

static int send_delete(pjob_t *j, const char *const *ids, size_t first,
                       size_t n)
{
  delstate_t *d = j->state;
  dchunk_t *c = calloc(1, sizeof *c);
  oc_buf_t b = OC_BUF_INIT;
  size_t k, blen;
  char *body;
  preq_t *p;
  if (!c || !(c->ids = calloc(n, sizeof *c->ids))) {
    free(c);
    return -1;
  }
  c->first = first;
  oc_buf_adds(&b, "{\"entities\":[");
  for (k = 0; k < n; k++) {
    size_t len = strlen(ids[first + k]);
    if (k)
      oc_buf_addc(&b, ',');
    oc_buf_add_json_string(&b, ids[first + k], len);
    if ((c->ids[k] = malloc(len + 1)))
      memcpy(c->ids[k], ids[first + k], len + 1);
    c->n = k + 1;
    if (!c->ids[k])
      break;
  }
  oc_buf_adds(&b, "]}");
  if (c->n < n || !(body = steal(&b, &blen))
      || !(p = oc_preq_new(j, "POST", d->path, d->query, body, blen,
                           OC_PORT_AUTH | OC_PORT_EXPORTER | OC_PORT_RETRYABLE,
                           delete_handler))) {
    oc_buf_free(&b);
    dchunk_free(c);
    return -1;
  }
  p->data = c;
  p->free_data = dchunk_free;
  oc_preq_send(p);
  return 0;
}

static void delete_finish(pjob_t *j)
{
  summary_finish(j, ((delstate_t *)j->state)->done_fn);
}

uint64_t oc_port_delete(oc_port_t *P, const char *bp,
                        const char *const *ids, size_t n,
                        const oc_port_delete_opts_t *opts, oc_port_id_fn id_fn,
                        oc_port_done_fn done_fn, void *ud, char *err,
                        size_t errlen)
{
  pjob_t *j;
  delstate_t *d;
  oc_buf_t b = OC_BUF_INIT;
  size_t i;
  if (!bp || !*bp || !id_fn || (n && !ids)) {
    snprintf(err, errlen, "delete: a blueprint, ids and a result callback "
             "are required");
    return 0;
  }
  for (i = 0; i < n; i++)
    if (!ids[i]) {
      snprintf(err, errlen, "delete: id %zu is NULL", i);
      return 0;
    }
  if (!(j = entity_job(P, ud, sizeof *d, delete_finish, delstate_free, err,
                       errlen)))
    return 0;
  d = j->state;
  d->id_fn = id_fn;
  d->done_fn = done_fn;
  oc_buf_adds(&b, "/blueprints/");
  oc_port_escape(&b, bp, strlen(bp));
  oc_buf_adds(&b, "/bulk/entities/delete");
  d->path = steal(&b, NULL);
  oc_buf_printf(&b, "delete_dependents=%s",
                opts && opts->delete_dependents ? "true" : "false");
  if (opts)
    oc_port_add_event(&b, &opts->event);
  d->query = steal(&b, NULL);
  for (i = 0; d->path && d->query && i < n; i += P->delete_batch)
    if (send_delete(j, ids, i, n - i < P->delete_batch ? n - i
                                                       : P->delete_batch))
      break;
  if (!d->path || !d->query || i < n) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  if (!n)
    oc_pjob_finish_soon(j);
  return j->id;
}

/* }==================== */

/* {==================== owned-entity listing ==================== */

typedef struct liststate {
  oc_port_jv_fn entity_fn;
  oc_port_done_fn done_fn;
  char *before;
  char **seen;                   /* the cursors followed so far */
  size_t nseen, capseen;
} liststate_t;

static void liststate_free(void *s)
{
  liststate_t *l = s;
  size_t i;
  for (i = 0; i < l->nseen; i++)
    free(l->seen[i]);
  free(l->seen);
  free(l->before);
  free(l);
}

/* A cursor Port gave before makes the listing loop: 1 (seen), 0 (kept
 * as seen now), -1 (out of memory). */
static int cursor_seen(liststate_t *l, const char *cursor)
{
  size_t i;
  char **p;
  for (i = 0; i < l->nseen; i++)
    if (strcmp(l->seen[i], cursor) == 0)
      return 1;
  if (l->nseen == l->capseen) {
    size_t cap = l->capseen ? l->capseen * 2 : 16;
    if (!(p = realloc(l->seen, cap * sizeof *p)))
      return -1;
    l->seen = p;
    l->capseen = cap;
  }
  if (!(l->seen[l->nseen] = strdup(cursor)))
    return -1;
  l->nseen++;
  return 0;
}

static int send_page(pjob_t *j, const char *cursor);

static void list_handler(preq_t *p, const oc_response_t *res,
                         const oc_port_error_t *err)
{
  pjob_t *j = p->job;
  liststate_t *l = j->state;
  oc_port_error_t e;
  jv v, list;
  const char *next;
  int i, n;
  memset(&e, 0, sizeof e);
  if (err) {
    oc_pjob_note_error(j, err);
    return;
  }
  if (res->status < 200 || res->status >= 300) {
    oc_port_error_from_response(p->port, p->method, p->path, res, &e);
    oc_pjob_note_error(j, &e);
    free(e.body);
    return;
  }
  v = oc_port_parse(p->port, p->method, p->path, res, &e);
  if (!jv_is_valid(v) || jv_get_kind(v) != JV_KIND_OBJECT) {
    if (jv_is_valid(v))
      oc_port_error_set(&e, res->status, p->method, p->path,
                        "the answer is not a JSON object");
    oc_pjob_note_error(j, &e);
    free(e.body);
    jv_free(v);
    return;
  }
  list = jv_object_get(jv_copy(v), jv_string("entities"));
  n = jv_get_kind(list) == JV_KIND_ARRAY ? jv_array_length(jv_copy(list)) : 0;
  for (i = 0; i < n; i++)
    l->entity_fn(j->ud, jv_array_get(jv_copy(list), i));
  jv_free(list);
  next = oc_jv_str(v, "next");
  if (next && *next) {
    int seen = cursor_seen(l, next);
    if (seen > 0) {
      char what[300];
      snprintf(what, sizeof what, "Port returned the same next cursor "
               "twice ('%.60s', after %zu pages): the listing would "
               "never end", next, l->nseen + 1);
      oc_port_error_set(&e, res->status, p->method, p->path, what);
      snprintf(e.code, sizeof e.code, "repeated_cursor");
      oc_pjob_note_error(j, &e);
    } else if (seen < 0 || send_page(j, next)) {
      oc_port_error_set(&e, 0, p->method, p->path, "out of memory");
      oc_pjob_note_error(j, &e);
    }
  }
  jv_free(v);
}

static int send_page(pjob_t *j, const char *cursor)
{
  oc_port_t *P = j->port;
  liststate_t *l = j->state;
  oc_buf_t b = OC_BUF_INIT, s = OC_BUF_INIT;
  size_t blen;
  char *body;
  preq_t *p;
  oc_buf_adds(&b, "{\"datasource_prefix\":");
  oc_buf_printf(&s, "port-ocean/%s/", P->type);
  oc_buf_add_json_string(&b, s.p, s.n);
  oc_buf_reset(&s);
  oc_buf_adds(&b, ",\"datasource_suffix\":");
  oc_buf_printf(&s, "/%s/exporter", P->identifier);
  oc_buf_add_json_string(&b, s.p, s.n);
  oc_buf_free(&s);
  oc_buf_printf(&b, ",\"limit\":%u", P->list_limit);
  if (cursor) {
    oc_buf_adds(&b, ",\"from\":");
    oc_buf_add_json_string(&b, cursor, strlen(cursor));
  }
  if (l->before) {
    oc_buf_adds(&b, ",\"before\":");
    oc_buf_add_json_string(&b, l->before, strlen(l->before));
  }
  oc_buf_addc(&b, '}');
  if (!(body = steal(&b, &blen))
      || !(p = oc_preq_new(j, "POST",
                           "/blueprints/entities/datasource-entities", NULL,
                           body, blen,
                           OC_PORT_AUTH | OC_PORT_EXPORTER | OC_PORT_RETRYABLE,
                           list_handler)))
    return -1;
  oc_preq_send(p);
  return 0;
}

static void list_finish(pjob_t *j)
{
  summary_finish(j, ((liststate_t *)j->state)->done_fn);
}

uint64_t oc_port_list_owned(oc_port_t *P, const char *before,
                            oc_port_jv_fn entity_fn, oc_port_done_fn done_fn,
                            void *ud, char *err, size_t errlen)
{
  pjob_t *j;
  liststate_t *l;
  if (!entity_fn) {
    snprintf(err, errlen, "list_owned: an entity callback is required");
    return 0;
  }
  if (!(j = entity_job(P, ud, sizeof *l, list_finish, liststate_free, err,
                       errlen)))
    return 0;
  l = j->state;
  l->entity_fn = entity_fn;
  l->done_fn = done_fn;
  if ((before && !(l->before = strdup(before))) || send_page(j, NULL)) {
    oc_pjob_abort(j);
    snprintf(err, errlen, "out of memory");
    return 0;
  }
  return j->id;
}

/* }==================== */
