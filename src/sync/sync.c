/*
 * sync.c - the sync session: owned index, change detection, coalesced
 * bulk upserts, failure retry in relation order, confirmed and ordered
 * deletion. See sync.h for the contract.
 *
 * Owns: the index, the pending batches, the jobs it started (cancelled on
 * free), failed entities' JSON texts and the confirmed candidates.
 */
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"

/* {==================== small helpers ==================== */

char *oc_sync_dupn(const char *p, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

char *oc_sync_dups(const char *p)
{
  return oc_sync_dupn(p ? p : "", p ? strlen(p) : 0);
}

void oc_sync_ent_free(ent_t *e)
{
  free(e->text);
  free(e->key);
  e->text = e->key = NULL;
}

static int keylist_add(keylist_t *l, const char *k, size_t n)
{
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    size_t *off = realloc(l->off, sizeof(size_t) * cap), *len;
    if (!off)
      return -1;
    l->off = off;
    len = realloc(l->len, sizeof(size_t) * cap);
    if (!len)
      return -1;
    l->len = len;
    l->cap = cap;
  }
  l->off[l->n] = l->bytes.n;
  l->len[l->n] = n;
  oc_buf_add(&l->bytes, k, n);
  if (l->bytes.oom)
    return -1;
  l->n++;
  return 0;
}

static void keylist_free(keylist_t *l)
{
  oc_buf_free(&l->bytes);
  free(l->off);
  free(l->len);
}

int oc_sync_oom(char *err, size_t errlen)
{
  snprintf(err, errlen, "out of memory");
  return -1;
}

/* The hash a relation target and a candidate's identifier share. */
uint64_t oc_sync_target_hash(const char *id, size_t n)
{
  return oc_hash64(id, n, 0x746772);
}

job_t *oc_sync_job_new(oc_sync_t *s, int kind)
{
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return NULL;
  j->s = s;
  j->kind = kind;
  j->next = s->jobs;
  if (s->jobs)
    s->jobs->prev = j;
  s->jobs = j;
  s->outstanding++;
  return j;
}

void oc_sync_job_free(job_t *j)
{
  size_t i;
  oc_sync_t *s = j->s;
  if (j->prev)
    j->prev->next = j->next;
  else
    s->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  if (j->ents)
    for (i = 0; i < j->n; i++)
      oc_sync_ent_free(&j->ents[i]);
  free(j->ents);
  free(j->doomed);
  free(j->bp);
  free(j);
  s->outstanding--;
}

/* }==================== */

/* {==================== lifecycle ==================== */

oc_sync_t *oc_sync_new(oc_port_t *port, const oc_sync_opts_t *opts,
                       char *err, size_t errlen)
{
  oc_sync_t *s;
  if (!port && !opts->plan) {
    snprintf(err, errlen, "a sync session needs a Port client");
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    oc_sync_oom(err, errlen);
    return NULL;
  }
  s->port = port;
  s->o = *opts;
  if (!s->o.batch_max)
    s->o.batch_max = DEFAULT_BATCH;
  if (!s->o.batch_max_bytes)
    s->o.batch_max_bytes = DEFAULT_BYTES;
  if (!s->o.max_pending)
    s->o.max_pending = DEFAULT_PENDING;
  s->event_type = opts->event_type ? oc_sync_dups(opts->event_type) : NULL;
  s->resync_id = opts->resync_id ? oc_sync_dups(opts->resync_id) : NULL;
  s->o.event_type = s->event_type;
  s->o.resync_id = s->resync_id;
  s->targets = oc_hashset_new();
  s->created_ms = oc_loop_now_ms();
  s->owned_state = 1;            /* nothing to list until asked */
  s->confirm_state = 1;
  if (!s->targets) {
    oc_sync_free(s);
    oc_sync_oom(err, errlen);
    return NULL;
  }
  return s;
}

void oc_sync_free_failure(failure_t *f)
{
  oc_sync_ent_free(&f->e);
  free(f->bp);
  free(f->ident);
  free(f->code);
  free(f->message);
}

void oc_sync_free(oc_sync_t *s)
{
  size_t i, k;
  if (!s)
    return;
  while (s->jobs) {
    if (s->port && s->jobs->id)
      oc_port_cancel(s->port, s->jobs->id);
    oc_sync_job_free(s->jobs);
  }
  for (i = 0; i < s->nslots; i++)
    oc_projection_free(s->slots[i]);
  free(s->slots);
  oc_index_free(s->owned);
  oc_hashset_free(s->targets);
  for (i = 0; i < s->nbatches; i++) {
    for (k = 0; k < s->batches[i].n; k++)
      oc_sync_ent_free(&s->batches[i].ents[k]);
    free(s->batches[i].ents);
    free(s->batches[i].bp);
  }
  free(s->batches);
  for (i = 0; i < s->nfails; i++)
    oc_sync_free_failure(&s->fails[i]);
  free(s->fails);
  for (i = 0; i < s->nretry; i++)
    oc_sync_free_failure(&s->retry[i]);
  free(s->retry);
  keylist_free(&s->planned[0]);
  keylist_free(&s->planned[1]);
  free(s->cands);
  for (i = 0; i < s->ndoomed; i++) {
    jv_free(s->doomed[i].entity);
    free(s->doomed[i].bp);
    free(s->doomed[i].id);
    free(s->doomed[i].message);
  }
  free(s->doomed);
  free(s->event_type);
  free(s->resync_id);
  free((char *)s->fin.before);
  oc_sync_strlist_free(&s->reasons);
  oc_sync_strlist_free(&s->errors);
  oc_sync_strlist_free(&s->held);
  free(s->tags);
  oc_buf_free(&s->scratch);
  oc_buf_free(&s->key);
  free(s);
}

int oc_sync_add_slot(oc_sync_t *s, jv signature)
{
  oc_projection_t *p = oc_projection_new(signature, !s->o.merge), **ns;
  size_t i;
  if (!p)
    return -1;
  for (i = 0; i < s->nslots; i++)
    if (oc_projection_equal(s->slots[i], p)) {
      oc_projection_free(p);
      return (int)i;
    }
  if (s->owned) {                /* too late: the index has fixed width */
    oc_projection_free(p);
    return -1;
  }
  ns = realloc(s->slots, sizeof(*ns) * (s->nslots + 1));
  if (!ns) {
    oc_projection_free(p);
    return -1;
  }
  s->slots = ns;
  s->slots[s->nslots] = p;
  return (int)s->nslots++;
}

void oc_sync_stats(const oc_sync_t *s, oc_sync_stats_t *out)
{
  *out = s->st;
  out->owned = s->owned ? oc_index_count(s->owned) - s->nnew : 0;
}

int64_t oc_sync_created_ms(const oc_sync_t *s)
{
  return s->created_ms;
}

int oc_sync_owned_each(const oc_sync_t *s, oc_sync_key_fn fn, void *ud)
{
  size_t i, n = s->owned ? oc_index_count(s->owned) : 0;
  if (s->owned_state != 1)
    return -1;
  for (i = 0; i < n; i++) {
    unsigned f = oc_index_flags(s->owned, (long)i);
    size_t kl;
    const char *k;
    if ((f & FLAG_DELETED) || ((f & FLAG_NEW) && !(f & FLAG_WRITTEN)))
      continue;
    k = oc_index_key(s->owned, (long)i, &kl);
    fn(ud, k, kl);
  }
  return 0;
}

/* {==================== tags ==================== */

#define MAX_TAG 65535

int oc_sync_set_tag(oc_sync_t *s, int tag)
{
  if (tag < 0 || tag > MAX_TAG)
    return -1;
  if ((size_t)tag >= s->ntags) {
    size_t n = (size_t)tag + 1;
    oc_sync_tag_stats_t *t = realloc(s->tags, sizeof *t * n);
    if (!t)
      return -1;
    memset(t + s->ntags, 0, sizeof *t * (n - s->ntags));
    s->tags = t;
    s->ntags = n;
  }
  s->tag = tag;
  return 0;
}

void oc_sync_tag_stats(const oc_sync_t *s, int tag, oc_sync_tag_stats_t *out)
{
  if (tag >= 0 && (size_t)tag < s->ntags)
    *out = s->tags[tag];
  else
    memset(out, 0, sizeof *out);
}

/* Count one more (or, d = -1, one less) `field` for tag; nothing when
 * the tag was never set (tag 0 of a caller that does not tag). */
#define TAG_ADD(s, tag, field, d) \
  do { \
    if ((tag) >= 0 && (size_t)(tag) < (s)->ntags) \
      (s)->tags[tag].field += (size_t)(d); \
  } while (0)

/* }==================== */

int oc_sync_busy(const oc_sync_t *s)
{
  return s->st.in_flight > s->o.max_pending;
}

size_t oc_sync_outstanding(const oc_sync_t *s)
{
  return s->outstanding;
}

/* }==================== */

/* {==================== owned entities ==================== */

static int ensure_index(oc_sync_t *s)
{
  if (!s->nslots && oc_sync_add_slot(s, jv_null()) < 0)
    return -1;
  if (!s->owned && !(s->owned = oc_index_new(s->nslots)))
    return -1;
  return 0;
}

int oc_sync_add_owned(oc_sync_t *s, jv entity)
{
  uint64_t hs[16], *h = hs;
  size_t i;
  int rc = 0;
  if (ensure_index(s))
    return -1;
  oc_buf_reset(&s->key);
  if (oc_entity_key(entity, &s->key))
    return 0;                    /* no stable key: never compared */
  if (s->nslots > 16 && !(h = malloc(sizeof(uint64_t) * s->nslots)))
    return -1;
  for (i = 0; i < s->nslots; i++)
    h[i] = oc_projection_hash(s->slots[i], entity, &s->scratch);
  rc = oc_index_put(s->owned, s->key.p, s->key.n, h);
  if (h != hs)
    free(h);
  return rc;
}

static void on_owned(void *ud, jv entity)
{
  job_t *j = ud;
  if (j->s->owned_state == 0 && oc_sync_add_owned(j->s, entity)) {
    j->s->owned_state = -1;
    snprintf(j->s->owned_err, sizeof j->s->owned_err,
             "out of memory while indexing the owned entities");
  }
  jv_free(entity);
}

static void on_owned_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  if (sum->error) {
    s->owned_state = -1;
    snprintf(s->owned_err, sizeof s->owned_err, "could not read the "
             "entities this integration owns: %.400s", sum->error->message);
  } else if (s->owned_state == 0) {
    s->owned_state = 1;
  }
  oc_sync_job_free(j);
}

int oc_sync_list_owned(oc_sync_t *s, char *err, size_t errlen)
{
  job_t *j;
  if (s->phase != OC_SYNC_SETUP) {
    snprintf(err, errlen, "BUG: the owned entities are listed once, first");
    return -1;
  }
  s->phase = OC_SYNC_FEEDING;
  if (ensure_index(s) || !(j = oc_sync_job_new(s, JOB_LIST))) {
    s->owned_state = -1;
    snprintf(s->owned_err, sizeof s->owned_err, "out of memory");
    return oc_sync_oom(err, errlen);
  }
  if (!s->port) {                /* plan tests: nothing owned */
    oc_sync_job_free(j);
    return 0;
  }
  s->owned_state = 0;
  s->phase = OC_SYNC_LISTING;
  j->id = oc_port_list_owned(s->port, NULL, on_owned, on_owned_done, j,
                             err, errlen);
  if (!j->id) {
    oc_sync_job_free(j);
    s->owned_state = -1;
    s->phase = OC_SYNC_FEEDING;
    snprintf(s->owned_err, sizeof s->owned_err, "%s", err);
    return -1;
  }
  return 0;
}

void oc_sync_stop_listing(oc_sync_t *s, const char *why)
{
  job_t *j, *next;
  if (s->owned_state != 0)
    return;
  for (j = s->jobs; j; j = next) {
    next = j->next;
    if (j->kind == JOB_LIST) {
      oc_port_cancel(s->port, j->id);
      oc_sync_job_free(j);
    }
  }
  s->owned_state = -1;
  snprintf(s->owned_err, sizeof s->owned_err, "%s", why);
}

int oc_sync_owned_state(const oc_sync_t *s, const char **err)
{
  if (err)
    *err = s->owned_err;
  return s->owned_state;
}

/* }==================== */

/* {==================== upserts ==================== */

/* Worth another try after the first pass: no answer, 408, 429, 5xx, and
 * a 404 that can be a related entity the pass creates later (Port's
 * "not_found", or a code we don't know: retrying costs a request, not
 * retrying loses the entity). A 404 "blueprint_not_found" (the blueprint
 * itself is missing) stays missing however often it is sent. */
static int retryable_result(int status, const char *code)
{
  if (status == 404)
    return code == NULL || strcmp(code, "blueprint_not_found") != 0;
  return status == 0 || status == 408 || status == 429 || status >= 500;
}

/* Move e into the failure list with Port's verdict. */
static void add_failure(oc_sync_t *s, ent_t *e, const char *bp,
                        const oc_port_entity_result_t *r)
{
  failure_t *f;
  if (s->nfails == s->capfails) {
    size_t cap = s->capfails ? s->capfails * 2 : 16;
    failure_t *nf = realloc(s->fails, sizeof(failure_t) * cap);
    if (!nf) {
      oc_sync_ent_free(e);               /* the count stays; the detail is lost */
      return;
    }
    s->fails = nf;
    s->capfails = cap;
  }
  f = &s->fails[s->nfails++];
  memset(f, 0, sizeof *f);
  f->e = *e;
  e->text = e->key = NULL;
  f->bp = oc_sync_dups(bp);
  if (f->e.key)
    f->ident = oc_sync_dupn(f->e.key + strlen(f->e.key) + 1,
                    f->e.klen - strlen(f->e.key) - 1);
  else
    f->ident = oc_sync_dups(r->identifier ? r->identifier : "(search identifier)");
  f->status = r->status;
  f->code = oc_sync_dups(r->code);
  f->message = oc_sync_dups(r->message);
  f->retryable = !r->unresolved && retryable_result(r->status, r->code);
}

/* Keyed entities are counted by what the owned index knew (so that a plan
 * predicts the same numbers); entities without a stable key (search
 * identifiers) by Port's answer. */
static void count_success(oc_sync_t *s, const ent_t *e, int port_created)
{
  if (e->dup)
    return;
  if (e->owned >= 0 || (!e->key && !port_created)) {
    s->st.updated++;
    TAG_ADD(s, e->tag, updated, 1);
  } else if (e->key && s->owned_state != 1) {
    s->st.unknown++;             /* the index is partial: not known */
    TAG_ADD(s, e->tag, unknown, 1);
  } else {
    s->st.created++;
    TAG_ADD(s, e->tag, created, 1);
  }
}

static void on_upserted(void *ud, const oc_port_entity_result_t *r)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  ent_t *e;
  if (r->index >= j->n)
    return;
  e = &j->ents[r->index];
  if (r->ok) {
    count_success(s, e, r->created);
    if (e->entry >= 0)
      oc_index_set_flags(s->owned, e->entry,
                         oc_index_flags(s->owned, e->entry) | FLAG_WRITTEN);
    if (j->retry && !e->dup) {
      s->st.retry_ok++;
      s->st.failed--;
      TAG_ADD(s, e->tag, failed, -1);
    }
    oc_sync_ent_free(e);
    return;
  }
  if (!j->retry && !e->dup) {
    s->st.failed++;
    TAG_ADD(s, e->tag, failed, 1);
    if (r->unresolved)
      s->st.unresolved++;
  }
  if (e->entry >= 0)
    oc_index_set_flags(s->owned, e->entry,
                       oc_index_flags(s->owned, e->entry) | OC_INDEX_FAILED);
  add_failure(s, e, j->bp, r);
}

static void on_upsert_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  j->s->st.upsert_requests += sum->requests;
  j->s->st.in_flight -= j->n;
  oc_sync_job_free(j);
}

/* Hand n entities of blueprint bp to the Port client (ownership of ents
 * moves to the job). */
int oc_sync_submit(oc_sync_t *s, const char *bp, ent_t *ents, size_t n,
                  int retry, char *err, size_t errlen)
{
  oc_port_upsert_opts_t po = OC_PORT_UPSERT_DEFAULTS;
  const char **texts;
  size_t *lens, i;
  job_t *j = oc_sync_job_new(s, JOB_UPSERT);
  if (!j) {
    for (i = 0; i < n; i++)
      oc_sync_ent_free(&ents[i]);
    free(ents);
    return oc_sync_oom(err, errlen);
  }
  j->ents = ents;
  j->n = n;
  j->retry = retry;
  j->bp = oc_sync_dups(bp);
  texts = malloc(sizeof(char *) * (n + 1));
  lens = malloc(sizeof(size_t) * (n + 1));
  if (!texts || !lens || !j->bp) {
    free(texts);
    free(lens);
    oc_sync_job_free(j);
    return oc_sync_oom(err, errlen);
  }
  for (i = 0; i < n; i++) {
    texts[i] = ents[i].text;
    lens[i] = ents[i].len;
  }
  po.merge = s->o.merge;
  po.create_missing_related_entities = s->o.create_missing;
  po.event.type = s->event_type;
  po.event.resync_id = s->resync_id;
  s->st.entities_sent += n;
  s->st.in_flight += n;
  j->id = oc_port_upsert(s->port, bp, texts, lens, n, &po, on_upserted,
                         on_upsert_done, j, err, errlen);
  free(texts);
  free(lens);
  if (!j->id) {
    s->st.in_flight -= n;
    oc_sync_job_free(j);
    return -1;
  }
  return 0;
}

static int submit_batch(oc_sync_t *s, batch_t *b, char *err, size_t errlen)
{
  ent_t *ents = b->ents;
  size_t n = b->n;
  if (!n)
    return 0;
  b->ents = NULL;
  b->n = b->cap = b->bytes = 0;
  return oc_sync_submit(s, b->bp, ents, n, 0, err, errlen);
}

static batch_t *batch_for(oc_sync_t *s, const char *bp)
{
  size_t i;
  batch_t *nb;
  for (i = 0; i < s->nbatches; i++)
    if (!strcmp(s->batches[i].bp, bp))
      return &s->batches[i];
  nb = realloc(s->batches, sizeof(batch_t) * (s->nbatches + 1));
  if (!nb)
    return NULL;
  s->batches = nb;
  nb = &s->batches[s->nbatches];
  memset(nb, 0, sizeof *nb);
  if (!(nb->bp = oc_sync_dups(bp)))
    return NULL;
  s->nbatches++;
  return nb;
}

static int batch_add(batch_t *b, ent_t *e)
{
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    ent_t *ne = realloc(b->ents, sizeof(ent_t) * cap);
    if (!ne)
      return -1;
    b->ents = ne;
    b->cap = cap;
  }
  b->ents[b->n++] = *e;
  b->bytes += e->len + 1;
  return 0;
}

static void add_target(void *ud, const char *id, size_t n)
{
  oc_sync_t *s = ud;
  oc_hashset_add(s->targets, oc_sync_target_hash(id, n));
}

/* The blueprint of an entity as a string (numbers and others as text). */
static void blueprint_text(jv entity, oc_buf_t *out)
{
  jv bp = jv_object_get(jv_copy(entity), jv_string("blueprint"));
  oc_buf_reset(out);
  oc_identifier_text(bp, out);
  jv_free(bp);
  oc_buf_cstr(out);
}

/* Replace the queued entity of key s->key in batch b by text (last
 * write wins within a bulk). 1 when it was there (text consumed), 0 not. */
static int replace_queued(oc_sync_t *s, batch_t *b, char *text, size_t len)
{
  size_t i;
  for (i = 0; i < b->n; i++) {
    ent_t *q = &b->ents[i];
    if (q->key && q->klen == s->key.n && !memcmp(q->key, s->key.p, q->klen)) {
      b->bytes = b->bytes - q->len + len;
      free(q->text);
      q->text = text;
      q->len = len;
      return 1;
    }
  }
  return 0;
}

/* Queue a changed entity (consumed) for its blueprint's next request.
 * entry: its index entry (or -1); owned: listed (count as updated); dup:
 * produced before (replaces the queued one, else sent uncounted). */
static int enqueue(oc_sync_t *s, jv entity, long entry, int owned, int dup,
                   int keyed, char *err, size_t errlen)
{
  ent_t e;
  batch_t *b;
  memset(&e, 0, sizeof e);
  e.owned = owned ? entry : -1;
  e.entry = entry;
  e.dup = dup;
  e.tag = s->tag;
  if (keyed && !(e.key = oc_sync_dupn(s->key.p, s->key.n))) {
    jv_free(entity);
    return oc_sync_oom(err, errlen);
  }
  e.klen = keyed ? s->key.n : 0;
  oc_buf_reset(&s->scratch);
  oc_json_dump(entity, &s->scratch, OC_DUMP_SORT_KEYS);
  blueprint_text(entity, &s->key);
  jv_free(entity);
  e.text = oc_sync_dupn(s->scratch.p ? s->scratch.p : "", s->scratch.n);
  e.len = s->scratch.n;
  b = batch_for(s, s->key.p);
  if (!e.text || !b || s->scratch.oom) {
    oc_sync_ent_free(&e);
    return oc_sync_oom(err, errlen);
  }
  if (dup && e.key) {
    oc_buf_reset(&s->key);
    oc_buf_add(&s->key, e.key, e.klen);
    if (replace_queued(s, b, e.text, e.len)) {
      e.text = NULL;
      oc_sync_ent_free(&e);
      return 0;
    }
  }
  if (b->n > 0 && b->bytes + e.len + 16 > s->o.batch_max_bytes
      && submit_batch(s, b, err, errlen)) {
    oc_sync_ent_free(&e);
    return -1;
  }
  if (batch_add(b, &e)) {
    oc_sync_ent_free(&e);
    return oc_sync_oom(err, errlen);
  }
  if (b->n >= s->o.batch_max || b->bytes >= s->o.batch_max_bytes)
    return submit_batch(s, b, err, errlen);
  return 0;
}

/* A key not in the index: add it as produced (FLAG_NEW), with the hash of
 * `slot` and OC_HASH_UNKNOWN for the others. Its entry, or -1 on OOM. */
static long add_produced(oc_sync_t *s, int slot, uint64_t h)
{
  uint64_t hs[16], *v = hs;
  size_t i;
  long e;
  if (s->nslots > 16 && !(v = malloc(sizeof(uint64_t) * s->nslots)))
    return -1;
  for (i = 0; i < s->nslots; i++)
    v[i] = OC_HASH_UNKNOWN;
  v[slot] = h;
  e = oc_index_put(s->owned, s->key.p, s->key.n, v) ? -1
      : oc_index_find(s->owned, s->key.p, s->key.n);
  if (v != hs)
    free(v);
  if (e >= 0) {
    oc_index_set_flags(s->owned, e, OC_INDEX_SEEN | FLAG_NEW);
    s->nnew++;
  }
  return e;
}

/* Plan mode: record and count what would be written. */
static int plan_offer(oc_sync_t *s, jv entity, long e, int keyed,
                      char *err, size_t errlen)
{
  if (keyed && keylist_add(&s->planned[e >= 0], s->key.p, s->key.n)) {
    jv_free(entity);
    return oc_sync_oom(err, errlen);
  }
  if (e >= 0 || !keyed) {        /* a search identifier finds an */
    s->st.updated++;             /* existing entity */
    TAG_ADD(s, s->tag, updated, 1);
  } else if (s->owned_state != 1) {
    s->st.unknown++;
    TAG_ADD(s, s->tag, unknown, 1);
  } else {
    s->st.created++;
    TAG_ADD(s, s->tag, created, 1);
  }
  jv_free(entity);
  return 0;
}

/* An entity whose key was produced before in this run (entry e): dropped
 * when equal to the last one produced, else the last write wins. 1, or
 * -1 with err. */
static int offer_duplicate(oc_sync_t *s, int slot, jv entity, long e,
                           uint64_t h, char *err, size_t errlen)
{
  unsigned f = oc_index_flags(s->owned, e);
  s->st.duplicates++;
  if (oc_index_hashes(s->owned, e)[slot] == h || s->o.plan) {
    jv_free(entity);
    return 1;
  }
  oc_index_set_hash(s->owned, e, (size_t)slot, h);
  if (s->o.create_missing)
    oc_entity_targets(entity, add_target, s);
  if (enqueue(s, entity, e, !(f & FLAG_NEW), 1, 1, err, errlen))
    return -1;
  return 1;
}

int oc_sync_offer(oc_sync_t *s, int slot, jv entity, char *err,
                  size_t errlen)
{
  long e = -1;
  int keyed, listed = 0;
  uint64_t h = 0;
  if (s->phase >= OC_SYNC_FINISHING) {
    jv_free(entity);
    snprintf(err, errlen, "BUG: sync offer after the session finished");
    return -1;
  }
  if (ensure_index(s) || slot < 0 || (size_t)slot >= s->nslots) {
    jv_free(entity);
    snprintf(err, errlen, "BUG: sync offer to unknown slot %d", slot);
    return -1;
  }
  oc_buf_reset(&s->key);
  keyed = oc_entity_key(entity, &s->key) == 0;
  if (keyed) {
    h = oc_projection_hash(s->slots[slot], entity, &s->scratch);
    e = oc_index_find(s->owned, s->key.p, s->key.n);
    if (e >= 0 && (oc_index_flags(s->owned, e) & OC_INDEX_SEEN))
      return offer_duplicate(s, slot, entity, e, h, err, errlen);
  }
  s->st.produced++;
  TAG_ADD(s, s->tag, produced, 1);
  if (s->o.create_missing)
    oc_entity_targets(entity, add_target, s);
  if (!keyed) {
    s->st.always++;
  } else if (e >= 0) {
    const uint64_t listed_h = oc_index_hashes(s->owned, e)[slot];
    listed = 1;
    oc_index_set_flags(s->owned, e,
                       oc_index_flags(s->owned, e) | OC_INDEX_SEEN);
    oc_index_set_hash(s->owned, e, (size_t)slot, h);
    /* a listing that failed leaves the index partial: send anyway */
    if (s->owned_state == 1 && listed_h == h) {
      s->st.unchanged++;
      TAG_ADD(s, s->tag, unchanged, 1);
      jv_free(entity);
      return 0;
    }
  } else if ((e = add_produced(s, slot, h)) < 0) {
    jv_free(entity);
    return oc_sync_oom(err, errlen);
  }
  if (s->o.plan)
    return plan_offer(s, entity, listed ? e : -1, keyed, err, errlen);
  return enqueue(s, entity, e, listed, 0, keyed, err, errlen);
}

int oc_sync_flush(oc_sync_t *s, char *err, size_t errlen)
{
  size_t i;
  for (i = 0; i < s->nbatches; i++)
    if (submit_batch(s, &s->batches[i], err, errlen))
      return -1;
  return 0;
}

size_t oc_sync_planned_count(const oc_sync_t *s, int which)
{
  return s->planned[which == 'u'].n;
}

const char *oc_sync_planned_key(const oc_sync_t *s, int which, size_t i,
                                size_t *klen)
{
  const keylist_t *l = &s->planned[which == 'u'];
  if (i >= l->n)
    return NULL;
  *klen = l->len[i];
  return l->bytes.p + l->off[i];
}

size_t oc_sync_failure_count(const oc_sync_t *s)
{
  return s->nfails;
}

int oc_sync_failure(const oc_sync_t *s, size_t i, oc_sync_failure_t *out)
{
  const failure_t *f;
  if (i >= s->nfails)
    return -1;
  f = &s->fails[i];
  out->blueprint = f->bp ? f->bp : "";
  out->identifier = f->ident ? f->ident : "";
  out->status = f->status;
  out->code = f->code ? f->code : "";
  out->message = f->message ? f->message : "";
  out->retryable = f->retryable;
  out->tag = f->e.tag;
  return 0;
}

/* }==================== */

