/*
 * live_batch.c - applying one batch of the live session: upserts level by
 * level in relation order, one retry of what is worth it, the ownership
 * search (meanwhile), the deletion decision (ownership, itemsToParse
 * children still related), deletes sources first. See live_session.h.
 *
 * A batch advances only in the Port client's callbacks and in
 * oc_live_batch_start: each step submits the next one's jobs when the
 * current one's are all answered (advance()).
 */
#include "live_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"

#define LOGGED_FAILURES 10       /* failures logged per batch */

static void advance(oc_live_t *lv, lbatch_t *b);

/* {==================== jobs ==================== */

static ljob_t *job_new(oc_live_t *lv, lbatch_t *b, int kind, size_t n)
{
  ljob_t *j = calloc(1, sizeof *j);
  if (!j || !(j->idx = malloc(sizeof(size_t) * (n ? n : 1)))) {
    free(j);
    return NULL;
  }
  j->lv = lv;
  j->b = b;
  j->kind = kind;
  j->next = lv->jobs;
  if (lv->jobs)
    lv->jobs->prev = j;
  lv->jobs = j;
  return j;
}

void oc_live_job_free(ljob_t *j)
{
  oc_live_t *lv = j->lv;
  if (j->prev)
    j->prev->next = j->next;
  else
    lv->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  free(j->idx);
  free(j);
}

static int retryable_status(int status)
{
  return status == 0 || status == 404 || status == 408 || status == 429
         || status >= 500;
}

static void set_failure(lent_t *e, int outcome, int status, const char *code,
                        const char *message)
{
  e->outcome = outcome;
  e->status = status;
  free(e->code);
  free(e->message);
  e->code = code ? oc_live_dupn(code, strlen(code)) : NULL;
  e->message = message ? oc_live_dupn(message, strlen(message)) : NULL;
}

/* }==================== */

/* {==================== names and order ==================== */

/* e->bp and e->id from its key, or from the entity (search identifiers). */
static int name_ent(oc_live_t *lv, lent_t *e)
{
  if (e->w.key) {
    size_t bl = strlen(e->w.key);
    e->bp = oc_live_dupn(e->w.key, bl);
    e->id = oc_live_dupn(e->w.key + bl + 1, e->w.klen - bl - 1);
  } else {
    jv bp = jv_object_get(jv_copy(e->w.entity), jv_string("blueprint"));
    oc_buf_reset(&lv->key);
    oc_identifier_text(bp, &lv->key);
    jv_free(bp);
    e->bp = oc_live_dupn(lv->key.p ? lv->key.p : "", lv->key.n);
    e->id = oc_live_dupn("(search identifier)", 19);
  }
  return e->bp && e->id ? 0 : -1;
}

/* Give the entities idx[0..n) their relation levels (targets first, or
 * sources first when reverse); b->order = idx. Returns the number of
 * levels (one on OOM: the order is then lost, never the writes). */
static int order_levels(lbatch_t *b, size_t *idx, size_t n, int reverse)
{
  jv *ents = malloc(sizeof(jv) * (n ? n : 1));
  size_t *order = malloc(sizeof(size_t) * (n ? n : 1));
  size_t *level = malloc(sizeof(size_t) * (n ? n : 1)), i, max = 0;
  int cyclic;
  free(b->order);
  b->order = idx;
  b->norder = n;
  if (!ents || !order || !level) {
    for (i = 0; i < n; i++)
      b->ents[idx[i]].level = 0;
    free(ents);
    free(order);
    free(level);
    return n ? 1 : 0;
  }
  for (i = 0; i < n; i++)
    ents[i] = b->ents[idx[i]].w.entity;
  if (oc_relation_order(ents, n, order, level, &cyclic))
    for (i = 0; i < n; i++) {
      order[i] = i;
      level[i] = 0;
    }
  for (i = 0; i < n; i++)
    if (level[i] > max)
      max = level[i];
  for (i = 0; i < n; i++)
    b->ents[idx[order[i]]].level = (int)(reverse ? max - level[i] : level[i]);
  free(ents);
  free(order);
  free(level);
  return n ? (int)max + 1 : 0;
}

/* The indexes of the entities for which keep(e) is true. */
static size_t *select_ents(lbatch_t *b, int (*keep)(const lent_t *),
                           size_t *n)
{
  size_t i, *idx = malloc(sizeof(size_t) * (b->n ? b->n : 1));
  *n = 0;
  if (!idx)
    return NULL;
  for (i = 0; i < b->n; i++)
    if (keep(&b->ents[i]))
      idx[(*n)++] = i;
  return idx;
}

static int is_upsert(const lent_t *e)
{
  return e->w.what == OC_LIVE_UPSERT;
}

static int is_retry(const lent_t *e)
{
  return e->outcome == O_FAILED && e->retryable && !e->retried && e->w.text;
}

static int is_doomed(const lent_t *e)
{
  return e->outcome == O_PENDING && e->w.what != OC_LIVE_UPSERT;
}

/* Start the levels of the entities idx[0..n) in `state`. */
static void start_levels(lbatch_t *b, int state, size_t *idx, size_t n,
                         int reverse)
{
  b->state = state;
  b->nlevels = idx ? order_levels(b, idx, n, reverse) : 0;
  b->level = -1;
}

/* }==================== */

/* {==================== upserts ==================== */

static void on_upserted(void *ud, const oc_port_entity_result_t *r)
{
  ljob_t *j = ud;
  lent_t *e;
  if (r->index >= j->n)
    return;
  e = &j->b->ents[j->idx[r->index]];
  if (r->ok) {
    e->outcome = r->created ? O_CREATED : O_UPDATED;
    return;
  }
  set_failure(e, O_FAILED, r->status, r->code, r->message);
  e->retryable = !r->unresolved && retryable_status(r->status);
}

/* The end of a job: entities it never answered for failed with its
 * error; then the step may advance. */
static void job_done(ljob_t *j, int outcome, const oc_port_summary_t *sum)
{
  oc_live_t *lv = j->lv;
  lbatch_t *b = j->b;
  size_t i;
  for (i = 0; i < j->n; i++) {
    lent_t *e = &b->ents[j->idx[i]];
    if (e->outcome == O_PENDING)
      set_failure(e, outcome, sum->error ? sum->error->status : 0,
                  sum->error ? sum->error->code : NULL, sum->error
                  ? sum->error->message : "Port did not answer for it");
  }
  oc_live_job_free(j);
  if (--b->outstanding == 0)
    advance(lv, b);
}

static void on_upsert_done(void *ud, const oc_port_summary_t *sum)
{
  ljob_t *j = ud;
  j->b->upsert_requests += sum->requests;
  j->lv->st.upsert_requests += sum->requests;
  job_done(j, O_FAILED, sum);
}

static void on_deleted(void *ud, size_t index, int deleted,
                       const oc_port_error_t *err)
{
  ljob_t *j = ud;
  lent_t *e;
  if (index >= j->n)
    return;
  e = &j->b->ents[j->idx[index]];
  if (deleted)
    e->outcome = O_DELETED;
  else
    set_failure(e, O_DELETE_FAILED, err ? err->status : 0,
                err ? err->code : NULL,
                err ? err->message : "Port did not delete it");
}

static void on_delete_done(void *ud, const oc_port_summary_t *sum)
{
  ljob_t *j = ud;
  j->b->delete_requests += sum->requests;
  j->lv->st.delete_requests += sum->requests;
  job_done(j, O_DELETE_FAILED, sum);
}

/* Submit one Port job for the entities idx[0..n) of blueprint bp. */
static void submit_group(oc_live_t *lv, lbatch_t *b, const char *bp,
                         ljob_t *j)
{
  char err[OC_ERR_SIZE];
  const char **texts = malloc(sizeof(char *) * (j->n + 1));
  size_t *lens = malloc(sizeof(size_t) * (j->n + 1)), i;
  int del = j->kind == LJ_DELETE;
  err[0] = '\0';
  if (texts && lens && lv->port) {
    for (i = 0; i < j->n; i++) {
      lent_t *e = &b->ents[j->idx[i]];
      texts[i] = del ? e->id : e->w.text;
      lens[i] = del ? strlen(e->id) : e->w.len;
    }
    if (del) {
      oc_port_delete_opts_t po;
      memset(&po, 0, sizeof po);
      po.delete_dependents = b->delete_dependents;
      po.event.type = b->event_type;
      j->id = oc_port_delete(lv->port, bp, texts, j->n, &po, on_deleted,
                             on_delete_done, j, err, sizeof err);
    } else {
      oc_port_upsert_opts_t po = OC_PORT_UPSERT_DEFAULTS;
      po.merge = b->merge;
      po.create_missing_related_entities = b->create_missing;
      po.event.type = b->event_type;
      j->id = oc_port_upsert(lv->port, bp, texts, lens, j->n, &po,
                             on_upserted, on_upsert_done, j, err, sizeof err);
    }
  } else if (!lv->port) {
    snprintf(err, sizeof err, "the Port client is closed");
  }
  free(texts);
  free(lens);
  if (j->id) {
    b->outstanding++;
    return;
  }
  for (i = 0; i < j->n; i++)
    set_failure(&b->ents[j->idx[i]], del ? O_DELETE_FAILED : O_FAILED, 0,
                NULL, err[0] ? err : "out of memory");
  oc_live_job_free(j);
}

/* Submit level b->level of b->order: one job per blueprint. */
static void submit_level(oc_live_t *lv, lbatch_t *b, int kind)
{
  size_t i, k;
  int mark = b->level + 1 + (b->state << 8);
  for (i = 0; i < b->norder; i++) {
    lent_t *e = &b->ents[b->order[i]];
    ljob_t *j;
    size_t n = 0;
    if (e->level != b->level || e->mark == mark)
      continue;
    for (k = i; k < b->norder; k++) {
      const lent_t *f = &b->ents[b->order[k]];
      n += f->level == b->level && f->mark != mark && !strcmp(f->bp, e->bp);
    }
    if (!(j = job_new(lv, b, kind, n)))
      return;                    /* OOM: these stay pending, then failed */
    for (k = i; k < b->norder; k++) {
      lent_t *f = &b->ents[b->order[k]];
      if (f->level == b->level && f->mark != mark && !strcmp(f->bp, e->bp)) {
        f->mark = mark;
        if (kind == LJ_UPSERT)
          f->outcome = O_PENDING;
        j->idx[j->n++] = b->order[k];
      }
    }
    submit_group(lv, b, e->bp, j);
  }
}

/* }==================== */

/* {==================== the ownership search ==================== */

/* Append the query group of blueprint bp among the candidates idx: ids
 * (children only, as relatedTo, when related). */
static void add_group(oc_buf_t *q, lbatch_t *b, const size_t *idx, size_t n,
                      const char *bp, int related, int *first)
{
  size_t i;
  int any = 0;
  for (i = 0; i < n; i++) {
    const lent_t *e = &b->ents[idx[i]];
    if (strcmp(e->bp, bp) || (related && !(e->w.flags & OC_LIVE_CHILD)))
      continue;
    if (!any) {
      oc_buf_adds(q, *first ? "" : ",");
      if (related)
        oc_buf_adds(q, "{\"operator\":\"relatedTo\",\"blueprint\":");
      else
        oc_buf_adds(q, "{\"combinator\":\"and\",\"rules\":[{\"property\":"
                    "\"$blueprint\",\"operator\":\"=\",\"value\":");
      oc_buf_add_json_string(q, bp, strlen(bp));
      oc_buf_adds(q, related ? ",\"value\":[" : "},{\"property\":"
                  "\"$identifier\",\"operator\":\"in\",\"value\":[");
      *first = 0;
    } else {
      oc_buf_addc(q, ',');
    }
    any = 1;
    oc_buf_add_json_string(q, e->id, strlen(e->id));
  }
  if (any)
    oc_buf_adds(q, related ? "]}" : "]}]}");
}

/* The query for the candidates idx[0..n): their identifiers per
 * blueprint, and the entities related to the children among them. */
static void search_query(oc_buf_t *q, lbatch_t *b, const size_t *idx,
                         size_t n)
{
  size_t i, k;
  int first = 1, rel;
  oc_buf_reset(q);
  oc_buf_adds(q, "{\"combinator\":\"and\",\"rules\":[{\"combinator\":\"or\","
              "\"rules\":[");
  for (rel = 0; rel < 2; rel++)
    for (i = 0; i < n; i++) {
      const char *bp = b->ents[idx[i]].bp;
      for (k = 0; k < i && strcmp(b->ents[idx[k]].bp, bp); k++)
        ;
      if (k == i)                /* the first of its blueprint */
        add_group(q, b, idx, n, bp, rel, &first);
    }
  oc_buf_adds(q, "]}]}");
}

typedef struct relctx {
  lbatch_t *b;
  const char *src;               /* the related entity's key */
  size_t srclen;
  const size_t *idx;             /* the job's candidates */
  size_t n;
} relctx_t;

/* A relation target of a searched entity: the children it names are
 * still related (unless it is the child itself). */
static void on_target(void *ud, const char *id, size_t len)
{
  relctx_t *c = ud;
  size_t i;
  for (i = 0; i < c->n; i++) {
    lent_t *e = &c->b->ents[c->idx[i]];
    if (!(e->w.flags & OC_LIVE_CHILD) || strlen(e->id) != len
        || memcmp(e->id, id, len)
        || (e->w.klen == c->srclen && !memcmp(e->w.key, c->src, c->srclen)))
      continue;
    if (!e->related) {
      size_t bl = strlen(c->src);
      e->related = 1;
      free(e->by);
      if ((e->by = malloc(c->srclen + 1))) {
        memcpy(e->by, c->src, c->srclen);
        e->by[bl] = '/';
        e->by[c->srclen] = '\0';
      }
    }
  }
}

/* One entity of the search's answer: owned by this integration. */
static void searched_entity(oc_live_t *lv, ljob_t *j, jv ent)
{
  lbatch_t *b = j->b;
  relctx_t c;
  long k;
  int named = 0;
  oc_buf_reset(&lv->key);
  if (oc_entity_key(ent, &lv->key))
    return;
  if ((k = oc_index_find(b->keys, lv->key.p, lv->key.n)) >= 0) {
    lent_t *e = &b->ents[oc_index_hashes(b->keys, k)[0]];
    if (e->searched)
      e->owned = 1;
    named = e->w.what != OC_LIVE_UPSERT && !(e->w.flags & OC_LIVE_CHILD);
  }
  if (named)                     /* deleted with this batch: not a reason */
    return;
  c.b = b;
  c.idx = j->idx;
  c.n = j->n;
  c.srclen = lv->key.n;
  if (!(c.src = oc_live_dupn(lv->key.p, lv->key.n)))
    return;
  oc_entity_targets(ent, on_target, &c);
  free((char *)c.src);
}

static void on_searched(void *ud, uint64_t id, int status, jv body,
                        const oc_port_error_t *err)
{
  ljob_t *j = ud;
  oc_live_t *lv = j->lv;
  lbatch_t *b = j->b;
  size_t i;
  (void)id;
  (void)status;
  b->searches++;
  lv->st.searches++;
  if (err) {
    for (i = 0; i < j->n; i++)
      b->ents[j->idx[i]].search_failed = 1;
    if (!b->search_err) {
      char msg[OC_ERR_SIZE];
      snprintf(msg, sizeof msg, "could not confirm ownership before "
               "deleting, so nothing of this batch was deleted: %.400s",
               err->message);
      b->search_err = oc_live_dupn(msg, strlen(msg));
      oc_live_log(lv, 'W', "live batch %llu: %s", (unsigned long long)b->id,
                  msg);
    }
  } else {
    jv list = jv_object_get(jv_copy(body), jv_string("entities"));
    int n = jv_get_kind(list) == JV_KIND_ARRAY ? jv_array_length(
      jv_copy(list)) : 0, k;
    for (k = 0; k < n; k++) {
      jv ent = jv_array_get(jv_copy(list), k);
      searched_entity(lv, j, ent);
      jv_free(ent);
    }
    jv_free(list);
  }
  jv_free(body);
  oc_live_job_free(j);
  if (--b->searching == 0 && b->state == B_DECIDE && !b->outstanding)
    advance(lv, b);
}

/* Resolve the candidates that need no search; search the others, one
 * request per delete_batch of them. */
static void start_searches(oc_live_t *lv, lbatch_t *b)
{
  static const char *const include[] = {
    "identifier", "blueprint", "relations", NULL
  };
  size_t i, n = 0, *idx = malloc(sizeof(size_t) * (b->n ? b->n : 1));
  char err[OC_ERR_SIZE];
  for (i = 0; i < b->n && idx; i++) {
    lent_t *e = &b->ents[i];
    if (e->w.what == OC_LIVE_UPSERT)
      continue;
    lv->st.deletes++;
    if (!e->w.key) {
      e->outcome = O_NOT_OWNED;
      oc_live_log(lv, 'I', "not deleting %s entity with a search "
                  "identifier: it is never deleted", e->bp);
    } else if (e->w.what == OC_LIVE_IMPLICIT && lv->indexed
               && !oc_live_owned(lv, e->w.key, e->w.klen)) {
      e->outcome = O_NOT_OWNED;
      oc_live_log(lv, 'D', "not deleting %s/%s (it fails the selector): "
                  "not among the entities this integration owns", e->bp,
                  e->id);
    } else {
      e->searched = 1;
      idx[n++] = i;
    }
  }
  for (i = 0; i < n; i += lv->o.delete_batch) {
    size_t m = n - i < lv->o.delete_batch ? n - i : lv->o.delete_batch, k;
    ljob_t *j = job_new(lv, b, LJ_SEARCH, m);
    if (!j) {
      for (k = 0; k < m; k++)
        b->ents[idx[i + k]].search_failed = 1;
      continue;
    }
    for (k = 0; k < m; k++)
      j->idx[j->n++] = idx[i + k];
    search_query(&lv->scratch, b, j->idx, j->n);
    j->id = lv->port && !lv->scratch.oom
      ? oc_port_search(lv->port, lv->scratch.p, lv->scratch.n, include,
                       on_searched, j, err, sizeof err) : 0;
    if (!j->id) {
      for (k = 0; k < m; k++)
        b->ents[idx[i + k]].search_failed = 1;
      if (!b->search_err)
        b->search_err = oc_live_dupn("could not confirm ownership before "
                                     "deleting: the search could not be "
                                     "sent", 68);
      oc_live_job_free(j);
      continue;
    }
    b->searching++;
  }
  free(idx);
}

/* }==================== */

/* {==================== the decision ==================== */

static void add_target(void *ud, const char *id, size_t n)
{
  oc_hashset_add(ud, oc_hash64(id, n, 0x746772));
}

/* Whether candidate e may be deleted; sets its outcome when not. */
static int may_delete(oc_live_t *lv, lbatch_t *b, lent_t *e)
{
  if (e->outcome != O_PENDING || e->w.what == OC_LIVE_UPSERT)
    return 0;
  if (e->search_failed) {
    e->outcome = O_NOT_DELETED;
    return 0;
  }
  if (!e->owned) {
    e->outcome = O_NOT_OWNED;
    oc_live_log(lv, 'I', "not deleting %s/%s: this integration does not own "
                "it at Port", e->bp, e->id);
    return 0;
  }
  if ((e->w.flags & OC_LIVE_CHILD) && (e->related || (b->targets
      && oc_hashset_has(b->targets, oc_hash64(e->id, strlen(e->id),
                                              0x746772))))) {
    e->outcome = O_KEPT;
    oc_live_log(lv, 'I', "not deleting %s/%s (itemsToParse child of a "
                "deleted entity): %s still relates to it; left for the next "
                "resync's reconciliation", e->bp, e->id,
                e->related && e->by ? e->by : "an entity upserted in the "
                "same batch");
    return 0;
  }
  return 1;
}

/* Decide every candidate; the doomed go to the delete levels. */
static void decide(oc_live_t *lv, lbatch_t *b)
{
  size_t i, n;
  size_t *idx;
  for (i = 0; i < b->n; i++)
    if (may_delete(lv, b, &b->ents[i]))
      b->ents[i].level = 0;
  if (b->plan) {
    b->state = B_DONE;
    return;
  }
  idx = select_ents(b, is_doomed, &n);
  start_levels(b, B_DELETE, n ? idx : NULL, n, 1);
  if (!n)
    free(idx);
}

/* }==================== */

/* {==================== stepping ==================== */

/* What went wrong in the batch, in the log (capped). */
static void log_failures(oc_live_t *lv, lbatch_t *b)
{
  size_t i, logged = 0, more = 0;
  for (i = 0; i < b->n; i++) {
    const lent_t *e = &b->ents[i];
    if (e->outcome != O_FAILED && e->outcome != O_DELETE_FAILED)
      continue;
    if (logged++ >= LOGGED_FAILURES) {
      more++;
      continue;
    }
    oc_live_log(lv, 'W', "%s of %s/%s failed: %d %s%s%s",
                e->outcome == O_FAILED ? "upsert" : "delete", e->bp, e->id,
                e->status, e->code && *e->code ? e->code : "",
                e->code && *e->code ? ": " : "",
                e->message ? e->message : "");
  }
  if (more)
    oc_live_log(lv, 'W', "live batch %llu: ... and %zu more failures",
                (unsigned long long)b->id, more);
}

static void finish(oc_live_t *lv, lbatch_t *b)
{
  b->state = B_DONE;
  log_failures(lv, b);
  oc_live_batch_done(lv, b);
}

static void after_upserts(oc_live_t *lv, lbatch_t *b)
{
  size_t n, *idx = NULL;
  if (b->state == B_UPSERT)
    idx = select_ents(b, is_retry, &n);
  if (idx && n) {
    size_t i;
    for (i = 0; i < n; i++)
      b->ents[idx[i]].retried = 1;
    lv->st.retried += n;
    start_levels(b, B_RETRY, idx, n, 0);
    return;
  }
  free(idx);
  b->state = B_DECIDE;
}

static void advance(oc_live_t *lv, lbatch_t *b)
{
  while (!b->outstanding) {
    switch (b->state) {
    case B_UPSERT:
    case B_RETRY:
    case B_DELETE:
      if (++b->level < b->nlevels) {
        submit_level(lv, b, b->state == B_DELETE ? LJ_DELETE : LJ_UPSERT);
        continue;
      }
      if (b->state == B_DELETE) {
        finish(lv, b);
        return;
      }
      after_upserts(lv, b);
      continue;
    case B_DECIDE:
      if (b->searching)
        return;                  /* on_searched comes back */
      decide(lv, b);
      if (b->state == B_DONE) {
        finish(lv, b);
        return;
      }
      continue;
    default:
      return;
    }
  }
}

void oc_live_batch_start(oc_live_t *lv, lbatch_t *b)
{
  size_t i, n, *idx;
  for (i = 0; i < b->n; i++) {
    lent_t *e = &b->ents[i];
    if (name_ent(lv, e))
      set_failure(e, e->w.what == OC_LIVE_UPSERT ? O_FAILED : O_NOT_DELETED,
                  0, NULL, "out of memory");
    if (e->w.what == OC_LIVE_UPSERT) {
      lv->st.upserts++;
      if (b->ndeletes && (b->targets || (b->targets = oc_hashset_new())))
        oc_entity_targets(e->w.entity, add_target, b->targets);
    }
  }
  start_searches(lv, b);
  idx = b->plan ? NULL : select_ents(b, is_upsert, &n);
  start_levels(b, B_UPSERT, idx && n ? idx : NULL, idx ? n : 0, 0);
  if (idx && !n)
    free(idx);
  advance(lv, b);
}

/* }==================== */
