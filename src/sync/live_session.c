/*
 * live_session.c - the live session: operations, their writes folded per
 * entity, batches and their window, the ownership index, and what each
 * caller is told. live_batch.c applies a batch. See live_session.h.
 *
 * Owns: the operations until they are done (each also held by its caller:
 * two references), the batches (their writes: jv, JSON texts, keys), the
 * index, the window timer, the log lines not yet taken.
 */
#include "live_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"

#define MAX_LOGS 1000            /* log lines kept until taken */
#define CHECK_EVERY 64           /* writes between two clock reads */

/* {==================== small helpers ==================== */

char *oc_live_dupn(const char *p, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    if (n)
      memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

static char *dups(const char *p)
{
  return p ? oc_live_dupn(p, strlen(p)) : NULL;
}

void oc_live_strvec_add(strvec_t *v, const char *s)
{
  char **nv = realloc(v->v, sizeof(char *) * (v->n + 1));
  if (!nv)
    return;                      /* the count stays honest elsewhere */
  v->v = nv;
  if ((v->v[v->n] = dups(s)))
    v->n++;
}

static void strvec_free(strvec_t *v)
{
  size_t i;
  for (i = 0; i < v->n; i++)
    free(v->v[i]);
  free(v->v);
  v->v = NULL;
  v->n = 0;
}

void oc_live_log(oc_live_t *lv, int level, const char *fmt, ...)
{
  char msg[OC_ERR_SIZE];
  va_list ap;
  if (lv->nlogs >= MAX_LOGS)
    return;
  if (lv->nlogs == lv->caplogs) {
    size_t cap = lv->caplogs ? lv->caplogs * 2 : 16;
    llog_t *nl;
    if (lv->logs_first) {        /* compact before growing */
      memmove(lv->logs, lv->logs + lv->logs_first,
              sizeof(llog_t) * (lv->nlogs - lv->logs_first));
      lv->nlogs -= lv->logs_first;
      lv->logs_first = 0;
    }
    if (lv->nlogs == lv->caplogs) {
      if (!(nl = realloc(lv->logs, sizeof(llog_t) * cap)))
        return;
      lv->logs = nl;
      lv->caplogs = cap;
    }
  }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lv->logs[lv->nlogs].level = level;
  if ((lv->logs[lv->nlogs].msg = dups(msg)))
    lv->nlogs++;
}

const char *oc_live_next_log(oc_live_t *lv, int *level)
{
  free(lv->last_log);
  lv->last_log = NULL;
  if (lv->logs_first >= lv->nlogs) {
    lv->logs_first = lv->nlogs = 0;
    return NULL;
  }
  *level = lv->logs[lv->logs_first].level;
  lv->last_log = lv->logs[lv->logs_first++].msg;
  return lv->last_log;
}

static void write_free(lwrite_t *w)
{
  jv_free(w->entity);
  w->entity = jv_invalid();
  free(w->text);
  free(w->key);
  w->text = w->key = NULL;
}

/* }==================== */

/* {==================== the ownership index ==================== */

void oc_live_own(oc_live_t *lv, const char *key, size_t klen, int yes)
{
  uint64_t now = (uint64_t)oc_loop_now_ms();
  long e;
  if (oc_index_put(lv->owned, key, klen, &now))
    return;                      /* OOM: the index forgets; a search asks */
  e = oc_index_find(lv->owned, key, klen);
  oc_index_set_flags(lv->owned, e, yes ? OWN_YES : OWN_GONE);
}

int oc_live_owned(const oc_live_t *lv, const char *key, size_t klen)
{
  long e = oc_index_find(lv->owned, key, klen);
  return e >= 0 && (oc_index_flags(lv->owned, e) & OWN_YES);
}

static void adopt_key(void *ud, const char *key, size_t klen)
{
  oc_index_t *ix = ud;
  uint64_t zero = 0;
  long e;
  if (oc_index_put(ix, key, klen, &zero) == 0
      && (e = oc_index_find(ix, key, klen)) >= 0)
    oc_index_set_flags(ix, e, OWN_YES);
}

int oc_live_adopt(oc_live_t *lv, const oc_sync_t *s)
{
  oc_index_t *ix = oc_index_new(1);
  uint64_t since = (uint64_t)oc_sync_created_ms(s);
  size_t i, n = oc_index_count(lv->owned);
  if (!ix)
    return -1;
  if (oc_sync_owned_each(s, adopt_key, ix)) {
    oc_index_free(ix);
    return 0;
  }
  /* what this session wrote while the resync ran wins */
  for (i = 0; i < n; i++) {
    size_t kl;
    const char *k = oc_index_key(lv->owned, (long)i, &kl);
    uint64_t t = oc_index_hashes(lv->owned, (long)i)[0];
    long e;
    if (t < since)
      continue;
    if (oc_index_put(ix, k, kl, &t) || (e = oc_index_find(ix, k, kl)) < 0) {
      oc_index_free(ix);
      return -1;
    }
    oc_index_set_flags(ix, e, oc_index_flags(lv->owned, (long)i));
  }
  oc_index_free(lv->owned);
  lv->owned = ix;
  lv->indexed = 1;
  return 1;
}

/* }==================== */

/* {==================== lifecycle ==================== */

static void loop_gone(void *ud)
{
  oc_live_t *lv = ud;
  lv->loop = NULL;
  lv->timer = 0;
}

oc_live_t *oc_live_new(oc_port_t *port, oc_loop_t *loop,
                       const oc_live_opts_t *opts, char *err, size_t errlen)
{
  oc_live_t *lv = calloc(1, sizeof *lv);
  if (!lv || !(lv->owned = oc_index_new(1)) || !(lv->seqs = oc_index_new(1))
      || oc_loop_add_close_hook(loop, loop_gone, lv)) {
    if (lv) {
      oc_index_free(lv->owned);
      oc_index_free(lv->seqs);
    }
    free(lv);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  lv->port = port;
  lv->loop = loop;
  lv->o = *opts;
  if (lv->o.window_ms <= 0)
    lv->o.window_ms = LIVE_WINDOW_MS;
  if (lv->o.window_ms > LIVE_WINDOW_MAX_MS)
    lv->o.window_ms = LIVE_WINDOW_MAX_MS;
  if (!lv->o.batch_max)
    lv->o.batch_max = LIVE_BATCH;
  if (!lv->o.batch_max_bytes)
    lv->o.batch_max_bytes = LIVE_BYTES;
  if (!lv->o.delete_batch)
    lv->o.delete_batch = LIVE_DELETES;
  lv->next_id = 1;
  return lv;
}

static void op_free(oc_live_op_t *op);
static void batch_free(lbatch_t *b);

/* The session's reference to op is gone. */
static void op_unref(oc_live_op_t *op)
{
  if (--op->refs == 0)
    op_free(op);
}

/* Everything the session let go of: the op reads as done. */
static void op_finish(oc_live_op_t *op)
{
  if (op->done)
    return;
  op->done = 1;
  if (op->lv) {
    oc_live_op_t **p = &op->lv->ops_all;
    while (*p && *p != op)
      p = &(*p)->next_all;
    if (*p)
      *p = op->next_all;
    op->lv->st.open -= op->lv->st.open > 0;
  }
  op_unref(op);
}

void oc_live_free(oc_live_t *lv)
{
  if (!lv)
    return;
  while (lv->jobs) {
    if (lv->port && lv->jobs->id)
      oc_port_cancel(lv->port, lv->jobs->id);
    oc_live_job_free(lv->jobs);
  }
  if (lv->loop) {
    if (lv->timer)
      oc_loop_cancel(lv->loop, lv->timer);
    oc_loop_remove_close_hook(lv->loop, loop_gone, lv);
  }
  while (lv->head) {
    lbatch_t *b = lv->head;
    lv->head = b->next;
    batch_free(b);
  }
  while (lv->ops_all) {
    oc_live_op_t *op = lv->ops_all;
    lv->ops_all = op->next_all;
    op->lv = NULL;
    if (!op->done) {
      oc_live_strvec_add(&op->errors, "the live session was closed before "
                         "this operation was applied");
      op->done = 1;
      op_unref(op);
    }
  }
  oc_index_free(lv->owned);
  oc_index_free(lv->seqs);
  free(lv->wrote);
  while (lv->logs_first < lv->nlogs)
    free(lv->logs[lv->logs_first++].msg);
  free(lv->logs);
  free(lv->last_log);
  oc_buf_free(&lv->scratch);
  oc_buf_free(&lv->key);
  free(lv);
}

void oc_live_port_gone(oc_live_t *lv)
{
  ljob_t *j;
  for (j = lv->jobs; j; j = j->next)
    j->id = 0;                   /* aborted with the client */
  lv->port = NULL;
}

void oc_live_stats(const oc_live_t *lv, oc_live_stats_t *out)
{
  size_t i, n = oc_index_count(lv->owned), own = 0;
  const lbatch_t *b;
  *out = lv->st;
  for (i = 0; i < n; i++)
    own += (oc_index_flags(lv->owned, (long)i) & OWN_YES) != 0;
  out->owned = own;
  out->indexed = lv->indexed;
  out->queued = 0;
  for (b = lv->head; b; b = b->next)
    out->queued++;
}

/* }==================== */

/* {==================== operations ==================== */

oc_live_op_t *oc_live_op_new(oc_live_t *lv, const oc_live_op_opts_t *o)
{
  oc_live_op_t *op = calloc(1, sizeof *op);
  if (!op)
    return NULL;
  op->lv = lv;
  op->refs = 2;
  op->o = *o;
  op->event_type = dups(o->event_type ? o->event_type : "http_request");
  op->o.event_type = op->event_type;
  op->befores = jv_array();
  op->planned[0] = jv_array();
  op->planned[1] = jv_array();
  if (!op->event_type || !(op->keys = oc_index_new(1))) {
    free(op->event_type);
    free(op);
    return NULL;
  }
  op->next_all = lv->ops_all;
  lv->ops_all = op;
  lv->st.operations++;
  lv->st.open++;
  return op;
}

static void op_free(oc_live_op_t *op)
{
  size_t i;
  for (i = 0; i < op->nw; i++)
    write_free(&op->w[i]);
  free(op->w);
  oc_index_free(op->keys);
  oc_index_free(op->before);
  jv_free(op->befores);
  jv_free(op->planned[0]);
  jv_free(op->planned[1]);
  for (i = 0; i < op->nfails; i++) {
    free(op->fails[i].bp);
    free(op->fails[i].id);
    free(op->fails[i].code);
    free(op->fails[i].message);
  }
  free(op->fails);
  strvec_free(&op->errors);
  free(op->event_type);
  free(op);
}

void oc_live_op_release(oc_live_op_t *op)
{
  if (op)
    op_unref(op);
}

void oc_live_op_error(oc_live_op_t *op, const char *msg)
{
  oc_live_strvec_add(&op->errors, msg);
}

void oc_live_op_no_delete(oc_live_op_t *op)
{
  op->no_delete = 1;
}

static int is_delete(int what)
{
  return what == OC_LIVE_DELETE || what == OC_LIVE_IMPLICIT;
}

/* A diff's before: remember its content hash; nothing is written yet. */
static int add_before(oc_live_op_t *op, oc_buf_t *key, jv entity)
{
  uint64_t h;
  if (!op->before && !(op->before = oc_index_new(1))) {
    jv_free(entity);
    return -1;
  }
  h = oc_json_hash(entity, &op->lv->scratch);
  if (oc_index_put(op->before, key->p, key->n, &h)) {
    jv_free(entity);
    return -1;
  }
  op->befores = jv_array_append(op->befores, entity);
  return 0;
}

/* A diff's after equal to its before: unchanged, not written. Marks the
 * before as still there. 1 when unchanged. */
static int after_unchanged(oc_live_op_t *op, oc_buf_t *key, jv entity)
{
  long e;
  if (!op->before || (e = oc_index_find(op->before, key->p, key->n)) < 0)
    return 0;
  oc_index_set_flags(op->before, e, 1);          /* still there */
  if (oc_index_hashes(op->before, e)[0]
      != oc_json_hash(entity, &op->lv->scratch))
    return 0;
  op->rep.unchanged++;
  return 1;
}

static int push_write(oc_live_op_t *op, const lwrite_t *w)
{
  if (op->nw == op->capw) {
    size_t cap = op->capw ? op->capw * 2 : 16;
    lwrite_t *nw = realloc(op->w, sizeof(lwrite_t) * cap);
    if (!nw)
      return -1;
    op->w = nw;
    op->capw = cap;
  }
  op->w[op->nw++] = *w;
  return 0;
}

/* Fill w for entity (consumed) under key (may be empty: no stable key). */
static int make_write(oc_live_op_t *op, lwrite_t *w, int what, unsigned flags,
                      jv entity, int keyed)
{
  oc_buf_t *kb = &op->lv->key, *sb = &op->lv->scratch;
  memset(w, 0, sizeof *w);
  w->what = what;
  w->flags = flags;
  w->entity = entity;
  if (keyed) {
    if (!(w->key = oc_live_dupn(kb->p, kb->n)))
      return -1;
    w->klen = kb->n;
  }
  if (what == OC_LIVE_UPSERT) {
    oc_buf_reset(sb);
    oc_json_dump(entity, sb, OC_DUMP_SORT_KEYS);
    if (sb->oom || !(w->text = oc_live_dupn(sb->p ? sb->p : "", sb->n)))
      return -1;
    w->len = sb->n;
    w->hash = oc_hash64(w->text, w->len, 0x6c76);
  }
  return 0;
}

/* Fold w into the operation's earlier write of the same key: an upsert
 * beats an implicit delete whatever the order, otherwise the last wins.
 * 1 when folded (w consumed), 0 when there was none. */
static int fold_in_op(oc_live_op_t *op, lwrite_t *w)
{
  long e = oc_index_find(op->keys, w->key, w->klen);
  lwrite_t *old;
  if (e < 0)
    return 0;
  old = &op->w[oc_index_hashes(op->keys, e)[0]];
  if (w->what == OC_LIVE_IMPLICIT && old->what == OC_LIVE_UPSERT) {
    write_free(w);
    return 1;
  }
  write_free(old);
  old->dead = 1;
  return 0;                      /* appended as the new last write */
}

/* The seq of the latest event that wrote key (into *seq, 0 when none
 * has), and its entry in lv->seqs (-1 when none). */
static long latest_seq(const oc_live_t *lv, const char *key, size_t klen,
                       uint64_t *seq)
{
  long e = oc_index_find(lv->seqs, key, klen);
  *seq = e >= 0 ? oc_index_hashes(lv->seqs, e)[0] : 0;
  return e;
}

/* The most writes kept for oc_live_seqs_changed between two calls (a
 * caller that never asks: the rest are dropped). */
#define WROTE_MAX 1000000u

/* Remember that the write of entity e, of the event seq, took effect (for
 * oc_live_seqs_changed). Best effort: on OOM it is not kept elsewhere. */
static void note_wrote(oc_live_t *lv, long e, uint64_t seq)
{
  if (e < 0 || !seq || lv->nwrote >= WROTE_MAX)
    return;
  if (lv->nwrote == lv->capwrote) {
    size_t cap = lv->capwrote ? lv->capwrote * 2 : 64;
    lwrote_t *nw = realloc(lv->wrote, sizeof(lwrote_t) * cap);
    if (!nw)
      return;
    lv->wrote = nw;
    lv->capwrote = cap;
  }
  lv->wrote[lv->nwrote].e = e;
  lv->wrote[lv->nwrote++].seq = seq;
}

void oc_live_seqs_changed(oc_live_t *lv,
                          void (*fn)(void *ud, const char *key, size_t klen,
                                     uint64_t seq),
                          void *ud)
{
  size_t i, n = lv->nwrote;
  lv->nwrote = 0;
  for (i = 0; i < n; i++) {
    size_t klen;
    const char *key = oc_index_key(lv->seqs, lv->wrote[i].e, &klen);
    fn(ud, key, klen, lv->wrote[i].seq);
  }
}

int oc_live_seq_note(oc_live_t *lv, const char *key, size_t klen,
                     uint64_t seq)
{
  long e = oc_index_find(lv->seqs, key, klen);
  if (e >= 0) {
    if (oc_index_hashes(lv->seqs, e)[0] < seq)
      oc_index_set_hash(lv->seqs, e, 0, seq);
    return 0;
  }
  return oc_index_put(lv->seqs, key, klen, &seq) ? -1 : 0;
}

/* The events' order per entity (live_session.h): 1 when an operation
 * of a later event seq already wrote key, else records op's seq as the
 * key's latest and returns 0; -1 on OOM. */
static int newer_event_wrote(oc_live_op_t *op, const oc_buf_t *key)
{
  uint64_t latest;
  long e = latest_seq(op->lv, key->p, key->n, &latest);
  if (e >= 0) {
    if (latest > op->o.seq)
      return 1;
    oc_index_set_hash(op->lv->seqs, e, 0, op->o.seq);
    return 0;
  }
  return oc_index_put(op->lv->seqs, key->p, key->n, &op->o.seq) ? -1 : 0;
}

/* A new failure record of op (zeroed), NULL on OOM (the count stays in
 * the report; the detail is lost). */
static lfail_t *new_fail(oc_live_op_t *op)
{
  if (op->nfails == op->capfails) {
    size_t cap = op->capfails ? op->capfails * 2 : 8;
    lfail_t *nf = realloc(op->fails, sizeof(lfail_t) * cap);
    if (!nf)
      return NULL;
    op->fails = nf;
    op->capfails = cap;
  }
  memset(&op->fails[op->nfails], 0, sizeof(lfail_t));
  return &op->fails[op->nfails++];
}

/* A delete whose identifier is a number: refused here, as Port refuses
 * the upsert of such an entity (422 invalid_identifier). Coerced to a
 * string it would name another entity ("9", not 9), written by someone
 * else. A delete_failed of the op, not retryable; logged at WARNING.
 * Consumes entity. */
static void refuse_numeric_delete(oc_live_op_t *op, jv entity)
{
  jv bp = jv_object_get(jv_copy(entity), jv_string("blueprint"));
  jv id = jv_object_get(jv_copy(entity), jv_string("identifier"));
  oc_buf_t *kb = &op->lv->scratch;
  const char *bps = jv_get_kind(bp) == JV_KIND_STRING ? jv_string_value(bp) : "?";
  char msg[OC_ERR_SIZE];
  lfail_t *f;
  oc_buf_reset(kb);
  oc_identifier_text(id, kb);
  oc_buf_addc(kb, '\0');
  snprintf(msg, sizeof msg, "not deleted: the identifier is the number %s, "
           "not a string (Port refuses such an identifier on an upsert, "
           "422; entity \"%s\" is another one)", kb->oom ? "?" : kb->p,
           kb->oom ? "?" : kb->p);
  oc_live_log(op->lv, 'W', "not deleting %s/%s: %s", bps, kb->oom ? "?" : kb->p,
              msg + strlen("not deleted: "));
  op->rep.delete_failed++;
  if ((f = new_fail(op))) {
    f->bp = dups(bps);
    f->id = dups(kb->oom ? "?" : kb->p);
    f->code = dups("invalid_identifier");
    f->message = dups(msg);
    f->status = 422;
    f->is_delete = 1;
  }
  jv_free(bp);
  jv_free(id);
  jv_free(entity);
}

/* 1 when entity's identifier is a JSON number. */
static int numeric_identifier(jv entity)
{
  jv id;
  int num;
  if (jv_get_kind(entity) != JV_KIND_OBJECT)
    return 0;
  id = jv_object_get(jv_copy(entity), jv_string("identifier"));
  num = jv_get_kind(id) == JV_KIND_NUMBER;
  jv_free(id);
  return num;
}

int oc_live_op_add(oc_live_op_t *op, int what, unsigned flags, jv entity,
                   char *err, size_t errlen)
{
  lwrite_t w;
  uint64_t at;
  int keyed, folded;
  if (!op->lv || op->committed) {
    jv_free(entity);
    snprintf(err, errlen, op->lv ? "BUG: a write added to a committed "
             "live operation" : "the live session is closed");
    return -1;
  }
  if ((what == OC_LIVE_DELETE || what == OC_LIVE_IMPLICIT)
      && numeric_identifier(entity)) {
    refuse_numeric_delete(op, entity);
    return 0;
  }
  oc_buf_reset(&op->lv->key);
  keyed = oc_entity_key(entity, &op->lv->key) == 0;
  if (what == OC_LIVE_BEFORE) {
    if (!keyed) {                /* a search identifier: never deleted */
      jv_free(entity);
      return 0;
    }
    return add_before(op, &op->lv->key, entity) ? -1 : 0;
  }
  if (what == OC_LIVE_AFTER) {
    if (keyed && after_unchanged(op, &op->lv->key, entity)) {
      jv_free(entity);
      return 0;
    }
    what = OC_LIVE_UPSERT;
  }
  if (keyed && op->o.seq && !op->o.plan) {
    int later = newer_event_wrote(op, &op->lv->key);
    if (later < 0) {
      jv_free(entity);
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    if (later) {                 /* a newer event wrote it: leave it be */
      jv_free(entity);
      op->rep.superseded++;
      return 1;
    }
  }
  if (make_write(op, &w, what, flags, entity, keyed)) {
    write_free(&w);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  folded = keyed && oc_index_find(op->keys, w.key, w.klen) >= 0;
  if (keyed && fold_in_op(op, &w))
    return 1;
  at = op->nw;
  if (push_write(op, &w) || (keyed && oc_index_put(op->keys, w.key, w.klen,
                                                   &at))) {
    if (op->nw == at)
      write_free(&w);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return folded;
}

/* A diff's before entities that no after kept: named deletes. */
static int before_gone(oc_live_op_t *op)
{
  int i, n = jv_array_length(jv_copy(op->befores));
  char err[OC_ERR_SIZE];
  for (i = 0; i < n; i++) {
    jv e = jv_array_get(jv_copy(op->befores), i);
    long k;
    oc_buf_reset(&op->lv->key);
    if (oc_entity_key(e, &op->lv->key)
        || (k = oc_index_find(op->before, op->lv->key.p,
                              op->lv->key.n)) < 0
        || oc_index_flags(op->before, k)) {
      jv_free(e);
      continue;
    }
    oc_index_set_flags(op->before, k, 1);        /* once per key */
    if (oc_live_op_add(op, OC_LIVE_DELETE, 0, e, err, sizeof err) < 0)
      return -1;
  }
  return 0;
}

/* }==================== */

/* {==================== batches ==================== */

static void batch_free(lbatch_t *b)
{
  size_t i, k;
  for (i = 0; i < b->n; i++) {
    lent_t *e = &b->ents[i];
    write_free(&e->w);
    free(e->also);
    free(e->code);
    free(e->message);
    free(e->by);
    free(e->bp);
    free(e->id);
    (void)k;
  }
  free(b->ents);
  oc_index_free(b->keys);
  for (i = 0; i < b->nbps; i++)
    free(b->bps[i].bp);
  free(b->bps);
  free(b->ops);
  free(b->order);
  oc_hashset_free(b->targets);
  free(b->search_err);
  free(b->event_type);
  free(b);
}

static void on_window(void *ud);

static void cancel_window(oc_live_t *lv)
{
  if (lv->timer && lv->loop)
    oc_loop_cancel(lv->loop, lv->timer);
  lv->timer = 0;
}

static int batch_full(const oc_live_t *lv, const lbatch_t *b);

/* Start the head batch when it may go: a closed one (a plan, or a batch
 * of other options behind it), or an open one that is full or whose
 * window is over. An open one that must wait gets a timer for the rest of
 * its window. Open batches behind a running one keep collecting. */
static void kick(oc_live_t *lv)
{
  lbatch_t *b = lv->head;
  int64_t left;
  if (!b || b->state > B_CLOSED)
    return;
  if (b->state == B_OPEN) {
    if (b->plan)
      return;                    /* its operation closes it */
    left = lv->o.window_ms - (oc_loop_now_ms() - b->opened_ms);
    if (left > 0 && !batch_full(lv, b)) {
      if (!lv->timer && lv->loop)
        lv->timer = oc_loop_timer(lv->loop, (long)left, on_window, lv);
      return;
    }
  }
  cancel_window(lv);
  b->state = B_CLOSED;
  oc_live_batch_start(lv, b);
}

/* No more writes for b (a plan's end, or writes of other options). */
static void close_batch(oc_live_t *lv, lbatch_t *b)
{
  if (b->state == B_OPEN)
    b->state = B_CLOSED;
  kick(lv);
}

static void on_window(void *ud)
{
  oc_live_t *lv = ud;
  lv->timer = 0;
  kick(lv);
}

/* The open batch op's writes go to (a new one when the open batch is of
 * another kind, or op plans). NULL on OOM. */
static lbatch_t *batch_for(oc_live_t *lv, oc_live_op_t *op)
{
  lbatch_t *b = lv->tail;
  if (b && b->state == B_OPEN && (op->o.plan
      ? b->id == op->last_batch
      : !b->plan && b->merge == op->o.merge
        && b->create_missing == op->o.create_missing
        && b->delete_dependents == op->o.delete_dependents
        && !strcmp(b->event_type, op->event_type)))
    return b;
  if (b && b->state == B_OPEN)
    close_batch(lv, b);
  if (!(b = calloc(1, sizeof *b)))
    return NULL;
  b->id = lv->next_id++;
  b->plan = op->o.plan;
  b->merge = op->o.merge;
  b->create_missing = op->o.create_missing;
  b->delete_dependents = op->o.delete_dependents;
  b->event_type = dups(op->event_type);
  b->opened_ms = oc_loop_now_ms();
  if (!b->event_type || !(b->keys = oc_index_new(1))) {
    batch_free(b);
    return NULL;
  }
  if (lv->tail)
    lv->tail->next = b;
  else
    lv->head = b;
  lv->tail = b;
  lv->st.batches++;
  return b;
}

static int batch_add_op(lbatch_t *b, oc_live_op_t *op)
{
  if (op->last_batch == b->id && op->pending)
    return 0;
  if (b->nops == b->capops) {
    size_t cap = b->capops ? b->capops * 2 : 8;
    oc_live_op_t **no = realloc(b->ops, sizeof(*no) * cap);
    if (!no)
      return -1;
    b->ops = no;
    b->capops = cap;
  }
  b->ops[b->nops++] = op;
  op->last_batch = b->id;
  op->pending++;
  return 0;
}

static lbp_t *bp_counter(lbatch_t *b, const char *key)
{
  size_t i;
  lbp_t *nb;
  for (i = 0; i < b->nbps; i++)
    if (!strcmp(b->bps[i].bp, key))
      return &b->bps[i];
  if (!(nb = realloc(b->bps, sizeof(lbp_t) * (b->nbps + 1))))
    return NULL;
  b->bps = nb;
  nb = &b->bps[b->nbps];
  memset(nb, 0, sizeof *nb);
  if (!(nb->bp = dups(key)))
    return NULL;
  b->nbps++;
  return nb;
}

/* Whether b may go before its window ends: each bulk it would send is
 * full. Every blueprint's upserts fill their bulks (a positive multiple of
 * batch_max, or batch_max_bytes reached) and its deletes, all blueprints
 * counted together, are a positive multiple of delete_batch; one of the
 * two at least. A batch that would also send a part-filled bulk waits for
 * its window: writes that arrive meanwhile fill that bulk instead of
 * needing a new one (a burst's batches of 53 upserts went out as
 * 20 + 20 + 13). */
static int batch_full(const oc_live_t *lv, const lbatch_t *b)
{
  size_t i;
  int any = 0;
  if (b->ndeletes) {
    if (b->ndeletes % lv->o.delete_batch)
      return 0;
    any = 1;
  }
  for (i = 0; i < b->nbps; i++) {
    const lbp_t *c = &b->bps[i];
    if (!c->n)
      continue;
    if (c->n % lv->o.batch_max && c->bytes < lv->o.batch_max_bytes)
      return 0;
    any = 1;
  }
  return any;
}

/* Count a write (sign 1) or take it back (-1): the counts batch_full
 * reads. */
static void count_write(lbatch_t *b, const lwrite_t *w, int sign)
{
  lbp_t *c;
  if (is_delete(w->what)) {
    b->ndeletes += (size_t)sign;
  } else if (w->key && (c = bp_counter(b, w->key))) {
    c->n += (size_t)sign;
    c->bytes += (size_t)sign * (w->len + 1);
  }                              /* else: the key starts with the blueprint */
}

/* who shares e's outcome (unless it is the op whose write e now holds). */
static int add_also(lent_t *e, oc_live_op_t *who, oc_live_op_t *owner)
{
  oc_live_op_t **na;
  size_t i;
  if (who == owner)
    return 0;
  for (i = 0; i < e->nalso; i++)
    if (e->also[i] == who)
      return 0;
  if (!(na = realloc(e->also, sizeof(*na) * (e->nalso + 1))))
    return -1;
  e->also = na;
  e->also[e->nalso++] = who;
  return 0;
}

/* The earlier write of e gives way to w (of op). */
static int replace(oc_live_t *lv, lbatch_t *b, lent_t *e, oc_live_op_t *op,
                   lwrite_t *w)
{
  int same = (is_delete(e->w.what) && is_delete(w->what))
             || (e->w.what == OC_LIVE_UPSERT && w->what == OC_LIVE_UPSERT
                 && e->w.hash == w->hash);
  size_t i;
  lv->st.folded++;
  if (same) {
    if (add_also(e, e->op, op))
      return -1;
    if (is_delete(w->what)) {    /* the stronger ask: named, not a child */
      if (e->w.what == OC_LIVE_DELETE)
        w->what = OC_LIVE_DELETE;
      w->flags &= e->w.flags;
    }
  } else {
    if (e->op != op)
      e->op->rep.superseded++;
    for (i = 0; i < e->nalso; i++)
      if (e->also[i] != op)
        e->also[i]->rep.superseded++;
    e->nalso = 0;
  }
  count_write(b, &e->w, -1);
  write_free(&e->w);
  e->w = *w;
  e->op = op;
  return 0;
}

static lent_t *new_ent(lbatch_t *b)
{
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    lent_t *ne = realloc(b->ents, sizeof(lent_t) * cap);
    if (!ne)
      return NULL;
    b->ents = ne;
    b->cap = cap;
  }
  memset(&b->ents[b->n], 0, sizeof(lent_t));
  return &b->ents[b->n++];
}

/* Move write w of op into batch b. */
static int merge(oc_live_t *lv, lbatch_t *b, oc_live_op_t *op, lwrite_t *w)
{
  lent_t *e;
  long k = -1;
  if (batch_add_op(b, op))
    return -1;
  if (w->key && (k = oc_index_find(b->keys, w->key, w->klen)) >= 0) {
    if (replace(lv, b, &b->ents[oc_index_hashes(b->keys, k)[0]], op, w))
      return -1;
  } else {
    uint64_t at = b->n;
    if (!(e = new_ent(b)))
      return -1;
    if (w->key && oc_index_put(b->keys, w->key, w->klen, &at)) {
      b->n--;
      return -1;
    }
    e->w = *w;
    e->op = op;
  }
  count_write(b, w, 1);
  memset(w, 0, sizeof *w);       /* moved */
  w->entity = jv_invalid();
  w->dead = 1;
  return 0;
}

/* 1 when an event later than op's wrote w's entity since op added w: a
 * newer, smaller event can be mapped and committed while an older, bigger
 * one is still committing (in slices); its write must stay the last. */
static int later_event_wrote(const oc_live_op_t *op, const lwrite_t *w)
{
  uint64_t latest;
  if (!op->o.seq || op->o.plan)
    return 0;
  latest_seq(op->lv, w->key, w->klen, &latest);
  return latest > op->o.seq;
}

int oc_live_op_commit(oc_live_op_t *op, long budget_ms, char *err,
                      size_t errlen)
{
  oc_live_t *lv = op->lv;
  int64_t deadline = budget_ms > 0 ? oc_loop_now_ms() + budget_ms : 0;
  size_t done = 0;
  if (!lv) {
    snprintf(err, errlen, "the live session is closed");
    return -1;
  }
  if (!op->committed && op->before && before_gone(op)) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  op->committed = 1;
  for (; op->next < op->nw; op->next++) {
    lwrite_t *w = &op->w[op->next];
    lbatch_t *b;
    if (w->dead || (op->no_delete && is_delete(w->what)))
      continue;
    if (deadline && ++done % CHECK_EVERY == 0
        && oc_loop_now_ms() >= deadline)
      return 0;
    if (w->key && later_event_wrote(op, w)) {
      write_free(w);             /* a newer event's write went first */
      w->dead = 1;
      op->rep.superseded++;
      continue;
    }
    if (!(b = batch_for(lv, op)) || merge(lv, b, op, w)) {
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    /* no start before the operation's last write is in: its writes go
     * in one batch, in relation order (a full bulk of sources went
     * before their targets) */
  }
  if (op->o.plan && lv->tail && lv->tail->id == op->last_batch)
    close_batch(lv, lv->tail);
  else
    kick(lv);                    /* the window's timer */
  if (!op->pending)
    op_finish(op);
  return 1;
}

int oc_live_op_done(const oc_live_op_t *op)
{
  return op->done;
}

/* }==================== */

/* {==================== what each caller is told ==================== */

static void add_fail(oc_live_op_t *op, const lent_t *e, int is_del)
{
  lfail_t *f = new_fail(op);
  if (!f)
    return;
  f->bp = dups(e->bp);
  f->id = dups(e->id);
  f->code = dups(e->code ? e->code : "");
  f->message = dups(e->message ? e->message : "");
  f->status = e->status;
  f->retryable = e->retryable;
  f->is_delete = is_del;
}

/* Tell op what became of entity e. */
static void tell(oc_live_op_t *op, const lbatch_t *b, const lent_t *e)
{
  oc_live_report_t *r = &op->rep;
  switch (e->outcome) {
  case O_CREATED: r->created++; break;
  case O_UPDATED: r->updated++; break;
  case O_FAILED: r->failed++; add_fail(op, e, 0); break;
  case O_DELETED: r->deleted++; break;
  case O_DELETE_FAILED: r->delete_failed++; add_fail(op, e, 1); break;
  case O_NOT_OWNED: r->not_owned++; break;
  case O_KEPT: r->kept++; break;
  case O_NOT_DELETED: break;     /* the batch's error says why */
  default:                       /* plan */
    if (b->plan)
      op->planned[is_delete(e->w.what)] = jv_array_append(
        op->planned[is_delete(e->w.what)], jv_copy(e->w.entity));
    break;
  }
}

static void remember(oc_live_t *lv, const lent_t *e)
{
  if (!e->w.key)
    return;
  switch (e->outcome) {
  case O_CREATED:
  case O_UPDATED:
    oc_live_own(lv, e->w.key, e->w.klen, 1);
    break;
  case O_DELETED:
    oc_live_own(lv, e->w.key, e->w.klen, 0);
    break;
  default:
    if (e->searched && !e->search_failed)
      oc_live_own(lv, e->w.key, e->w.klen, e->owned);
  }
}

/* A write that did not take effect (Port refused it, or the batch failed
 * before it): its event is no longer the entity's latest writer, so an
 * older event that comes after is applied, not left out as superseded
 * (Port holds what it held before; the failed event, retried, is newer
 * again). A newer event's record stays. */
static void forget_failed(oc_live_t *lv, const lent_t *e)
{
  uint64_t latest;
  long at;
  if (!e->w.key || !e->op || !e->op->o.seq
      || (e->outcome != O_FAILED && e->outcome != O_DELETE_FAILED
          && e->outcome != O_NOT_DELETED))
    return;
  at = latest_seq(lv, e->w.key, e->w.klen, &latest);
  if (at >= 0 && latest == e->op->o.seq)
    oc_index_set_hash(lv->seqs, at, 0, 0);
}

void oc_live_batch_done(oc_live_t *lv, lbatch_t *b)
{
  size_t i, k;
  for (i = 0; i < b->n; i++) {
    lent_t *e = &b->ents[i];
    if (!b->plan) {
      remember(lv, e);
      forget_failed(lv, e);
      /* what the memory keeps (forget_failed dropped the rest): a
         delete of an entity Port does not hold (not owned, never
         created: an upsert and a delete of one batch) included */
      if (e->w.key && e->op && e->outcome != O_PENDING
          && e->outcome != O_FAILED && e->outcome != O_DELETE_FAILED
          && e->outcome != O_NOT_DELETED)
        note_wrote(lv, oc_index_find(lv->seqs, e->w.key, e->w.klen),
                   e->op->o.seq);
    }
    tell(e->op, b, e);
    for (k = 0; k < e->nalso; k++)
      tell(e->also[k], b, e);
  }
  for (i = 0; i < b->nops; i++) {
    oc_live_op_t *op = b->ops[i];
    op->rep.batch = b->id;
    op->rep.batch_ops = b->nops;
    op->rep.upsert_requests = b->upsert_requests;
    op->rep.delete_requests = b->delete_requests;
    op->rep.searches = b->searches;
    if (b->search_err)
      oc_live_strvec_add(&op->errors, b->search_err);
    if (--op->pending == 0 && op->committed && op->next >= op->nw)
      op_finish(op);
  }
  lv->head = b->next;
  if (lv->tail == b)
    lv->tail = NULL;
  batch_free(b);
  kick(lv);
}

void oc_live_op_report(const oc_live_op_t *op, oc_live_report_t *out)
{
  *out = op->rep;
}

size_t oc_live_op_failure_count(const oc_live_op_t *op)
{
  return op->nfails;
}

int oc_live_op_failure(const oc_live_op_t *op, size_t i,
                       oc_live_failure_t *out)
{
  const lfail_t *f;
  if (i >= op->nfails)
    return -1;
  f = &op->fails[i];
  out->blueprint = f->bp ? f->bp : "";
  out->identifier = f->id ? f->id : "";
  out->code = f->code ? f->code : "";
  out->message = f->message ? f->message : "";
  out->status = f->status;
  out->retryable = f->retryable;
  out->is_delete = f->is_delete;
  return 0;
}

size_t oc_live_op_error_count(const oc_live_op_t *op)
{
  return op->errors.n;
}

const char *oc_live_op_error_at(const oc_live_op_t *op, size_t i)
{
  return i < op->errors.n ? op->errors.v[i] : NULL;
}

size_t oc_live_op_planned_count(const oc_live_op_t *op, int deletes)
{
  return (size_t)jv_array_length(jv_copy(op->planned[deletes != 0]));
}

jv oc_live_op_planned(const oc_live_op_t *op, int deletes, size_t i)
{
  return jv_array_get(jv_copy(op->planned[deletes != 0]), (int)i);
}

/* }==================== */
