/*
 * sync.c - the sync session: owned index, change detection, coalesced
 * bulk upserts, failure retry in relation order, confirmed and ordered
 * deletion. See sync.h for the contract.
 *
 * Owns: the index, the pending batches, the jobs it started (cancelled on
 * free), failed entities' JSON texts and the confirmed candidates.
 */
#include "sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define DEFAULT_BATCH 20
#define DEFAULT_BYTES (1024 * 1024)
#define DEFAULT_PENDING 200

#define FLAG_CANDIDATE 4u
#define FLAG_CONFIRMED 8u

/* An entity on its way to Port. */
typedef struct ent {
  char *text;                    /* JSON of the entity */
  size_t len;
  char *key;                     /* blueprint \0 identifier; NULL: none */
  size_t klen;
  long owned;                    /* owned index entry, or -1 */
} ent_t;

typedef struct batch {           /* entities waiting, per blueprint */
  char *bp;
  ent_t *ents;
  size_t n, cap, bytes;
} batch_t;

typedef struct failure {
  ent_t e;
  char *bp, *ident, *code, *message;
  int status, retryable, level;
} failure_t;

typedef struct doomed {          /* a confirmed deletion candidate */
  jv entity;
  char *bp, *id;
  int level, outcome;
  char *message;
} doomed_t;

typedef struct keylist {         /* keys, back to back */
  oc_buf_t bytes;
  size_t *off, *len, n, cap;
} keylist_t;

enum { JOB_UPSERT, JOB_LIST, JOB_CONFIRM, JOB_DELETE };

typedef struct job {
  oc_sync_t *s;
  int kind, retry;
  char *bp;                      /* JOB_UPSERT */
  uint64_t id;
  ent_t *ents;                   /* JOB_UPSERT */
  size_t n;
  size_t *doomed;                /* JOB_DELETE: indexes into s->doomed */
  struct job *prev, *next;
} job_t;

struct oc_sync {
  oc_port_t *port;
  oc_sync_opts_t o;
  char *event_type, *resync_id;
  oc_projection_t **slots;
  size_t nslots;
  oc_index_t *owned;
  int owned_state, confirm_state;
  char owned_err[OC_ERR_SIZE], confirm_err[OC_ERR_SIZE];
  oc_hashset_t *targets;         /* relation targets of produced entities */
  batch_t *batches;
  size_t nbatches;
  failure_t *fails, *retry;
  size_t nfails, capfails, nretry;
  keylist_t planned[2];          /* plan mode: create, update */
  long *cands;
  size_t ncands;
  doomed_t *doomed;
  size_t ndoomed, capdoomed;
  job_t *jobs;
  size_t outstanding;
  oc_sync_stats_t st;
  oc_buf_t scratch, key;
};

/* {==================== small helpers ==================== */

static char *dupn(const char *p, size_t n)
{
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

static char *dups(const char *p)
{
  return dupn(p ? p : "", p ? strlen(p) : 0);
}

static void ent_free(ent_t *e)
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

static int fail_oom(char *err, size_t errlen)
{
  snprintf(err, errlen, "out of memory");
  return -1;
}

/* The hash a relation target and a candidate's identifier share. */
static uint64_t target_hash(const char *id, size_t n)
{
  return oc_hash64(id, n, 0x746772);
}

static job_t *job_new(oc_sync_t *s, int kind)
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

static void job_free(job_t *j)
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
      ent_free(&j->ents[i]);
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
    fail_oom(err, errlen);
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
  s->event_type = opts->event_type ? dups(opts->event_type) : NULL;
  s->resync_id = opts->resync_id ? dups(opts->resync_id) : NULL;
  s->o.event_type = s->event_type;
  s->o.resync_id = s->resync_id;
  s->targets = oc_hashset_new();
  s->owned_state = 1;            /* nothing to list until asked */
  s->confirm_state = 1;
  if (!s->targets) {
    oc_sync_free(s);
    fail_oom(err, errlen);
    return NULL;
  }
  return s;
}

static void free_failure(failure_t *f)
{
  ent_free(&f->e);
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
    job_free(s->jobs);
  }
  for (i = 0; i < s->nslots; i++)
    oc_projection_free(s->slots[i]);
  free(s->slots);
  oc_index_free(s->owned);
  oc_hashset_free(s->targets);
  for (i = 0; i < s->nbatches; i++) {
    for (k = 0; k < s->batches[i].n; k++)
      ent_free(&s->batches[i].ents[k]);
    free(s->batches[i].ents);
    free(s->batches[i].bp);
  }
  free(s->batches);
  for (i = 0; i < s->nfails; i++)
    free_failure(&s->fails[i]);
  free(s->fails);
  for (i = 0; i < s->nretry; i++)
    free_failure(&s->retry[i]);
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
  out->owned = s->owned ? oc_index_count(s->owned) : 0;
}

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
  job_free(j);
}

int oc_sync_list_owned(oc_sync_t *s, char *err, size_t errlen)
{
  job_t *j;
  if (ensure_index(s))
    return fail_oom(err, errlen);
  if (!(j = job_new(s, JOB_LIST)))
    return fail_oom(err, errlen);
  s->owned_state = 0;
  j->id = oc_port_list_owned(s->port, NULL, on_owned, on_owned_done, j,
                             err, errlen);
  if (!j->id) {
    job_free(j);
    s->owned_state = -1;
    snprintf(s->owned_err, sizeof s->owned_err, "%s", err);
    return -1;
  }
  return 0;
}

int oc_sync_owned_state(const oc_sync_t *s, const char **err)
{
  if (err)
    *err = s->owned_err;
  return s->owned_state;
}

/* }==================== */

/* {==================== upserts ==================== */

static int retryable_status(int status)
{
  return status == 0 || status == 404 || status == 408 || status == 429
         || status >= 500;
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
      ent_free(e);               /* the count stays; the detail is lost */
      return;
    }
    s->fails = nf;
    s->capfails = cap;
  }
  f = &s->fails[s->nfails++];
  memset(f, 0, sizeof *f);
  f->e = *e;
  e->text = e->key = NULL;
  f->bp = dups(bp);
  if (f->e.key)
    f->ident = dupn(f->e.key + strlen(f->e.key) + 1,
                    f->e.klen - strlen(f->e.key) - 1);
  else
    f->ident = dups(r->identifier ? r->identifier : "(search identifier)");
  f->status = r->status;
  f->code = dups(r->code);
  f->message = dups(r->message);
  f->retryable = !r->unresolved && retryable_status(r->status);
}

static void count_success(oc_sync_t *s, const ent_t *e)
{
  if (e->owned >= 0)
    s->st.updated++;
  else
    s->st.created++;
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
    count_success(s, e);
    if (j->retry) {
      s->st.retry_ok++;
      s->st.failed--;
    }
    ent_free(e);
    return;
  }
  if (!j->retry) {
    s->st.failed++;
    if (r->unresolved)
      s->st.unresolved++;
  }
  if (e->owned >= 0)
    oc_index_set_flags(s->owned, e->owned,
                       oc_index_flags(s->owned, e->owned) | OC_INDEX_FAILED);
  add_failure(s, e, j->bp, r);
}

static void on_upsert_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  j->s->st.upsert_requests += sum->requests;
  j->s->st.in_flight -= j->n;
  job_free(j);
}

/* Hand n entities of blueprint bp to the Port client (ownership of ents
 * moves to the job). */
static int submit(oc_sync_t *s, const char *bp, ent_t *ents, size_t n,
                  int retry, char *err, size_t errlen)
{
  oc_port_upsert_opts_t po = OC_PORT_UPSERT_DEFAULTS;
  const char **texts;
  size_t *lens, i;
  job_t *j = job_new(s, JOB_UPSERT);
  if (!j) {
    for (i = 0; i < n; i++)
      ent_free(&ents[i]);
    free(ents);
    return fail_oom(err, errlen);
  }
  j->ents = ents;
  j->n = n;
  j->retry = retry;
  j->bp = dups(bp);
  texts = malloc(sizeof(char *) * (n + 1));
  lens = malloc(sizeof(size_t) * (n + 1));
  if (!texts || !lens || !j->bp) {
    free(texts);
    free(lens);
    job_free(j);
    return fail_oom(err, errlen);
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
    job_free(j);
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
  return submit(s, b->bp, ents, n, 0, err, errlen);
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
  if (!(nb->bp = dups(bp)))
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
  oc_hashset_add(s->targets, target_hash(id, n));
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

/* Queue a changed entity (consumed) for its blueprint's next request. */
static int enqueue(oc_sync_t *s, jv entity, long owned, int keyed,
                   char *err, size_t errlen)
{
  ent_t e;
  batch_t *b;
  memset(&e, 0, sizeof e);
  e.owned = owned;
  if (keyed && !(e.key = dupn(s->key.p, s->key.n))) {
    jv_free(entity);
    return fail_oom(err, errlen);
  }
  e.klen = keyed ? s->key.n : 0;
  oc_buf_reset(&s->scratch);
  oc_json_dump(entity, &s->scratch, OC_DUMP_SORT_KEYS);
  blueprint_text(entity, &s->key);
  jv_free(entity);
  e.text = dupn(s->scratch.p ? s->scratch.p : "", s->scratch.n);
  e.len = s->scratch.n;
  b = batch_for(s, s->key.p);
  if (!e.text || !b || s->scratch.oom) {
    ent_free(&e);
    return fail_oom(err, errlen);
  }
  if (b->n > 0 && b->bytes + e.len + 16 > s->o.batch_max_bytes
      && submit_batch(s, b, err, errlen)) {
    ent_free(&e);
    return -1;
  }
  if (batch_add(b, &e)) {
    ent_free(&e);
    return fail_oom(err, errlen);
  }
  if (b->n >= s->o.batch_max || b->bytes >= s->o.batch_max_bytes)
    return submit_batch(s, b, err, errlen);
  return 0;
}

int oc_sync_offer(oc_sync_t *s, int slot, jv entity, char *err,
                  size_t errlen)
{
  long e = -1;
  int keyed;
  if (ensure_index(s) || slot < 0 || (size_t)slot >= s->nslots) {
    jv_free(entity);
    snprintf(err, errlen, "BUG: sync offer to unknown slot %d", slot);
    return -1;
  }
  s->st.produced++;
  oc_buf_reset(&s->key);
  keyed = oc_entity_key(entity, &s->key) == 0;
  if (s->o.create_missing)
    oc_entity_targets(entity, add_target, s);
  if (keyed) {
    e = oc_index_find(s->owned, s->key.p, s->key.n);
    if (e >= 0) {
      uint64_t h = oc_projection_hash(s->slots[slot], entity, &s->scratch);
      oc_index_set_flags(s->owned, e,
                         oc_index_flags(s->owned, e) | OC_INDEX_SEEN);
      /* a listing that failed leaves the index partial: send anyway */
      if (s->owned_state == 1 && oc_index_hashes(s->owned, e)[slot] == h) {
        s->st.unchanged++;
        jv_free(entity);
        return 0;
      }
    }
  } else {
    s->st.always++;
  }
  if (s->o.plan) {
    if (keyed && keylist_add(&s->planned[e >= 0], s->key.p, s->key.n)) {
      jv_free(entity);
      return fail_oom(err, errlen);
    }
    if (e >= 0)
      s->st.updated++;
    else
      s->st.created++;
    jv_free(entity);
    return 0;
  }
  return enqueue(s, entity, e, keyed, err, errlen);
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
  return 0;
}

/* }==================== */

/* {==================== retry of failed upserts ==================== */

int oc_sync_retry_prepare(oc_sync_t *s, char *err, size_t errlen)
{
  size_t i, k = 0, n, *order = NULL, *level = NULL;
  jv *ents = NULL;
  failure_t *keep = NULL;
  int cyclic, levels = 0;
  for (i = 0, n = 0; i < s->nfails; i++)
    n += s->fails[i].retryable && s->fails[i].e.text;
  if (!n)
    return 0;
  s->retry = calloc(n, sizeof(failure_t));
  ents = calloc(n, sizeof(jv));
  order = calloc(n, sizeof(size_t));
  level = calloc(n, sizeof(size_t));
  keep = calloc(s->nfails + 1, sizeof(failure_t));
  if (!s->retry || !ents || !order || !level || !keep)
    goto oom;
  /* move the retryable failures out of the failure list */
  for (i = 0, n = 0; i < s->nfails; i++) {
    if (s->fails[i].retryable && s->fails[i].e.text)
      s->retry[n++] = s->fails[i];
    else
      keep[k++] = s->fails[i];
  }
  memcpy(s->fails, keep, sizeof(failure_t) * k);
  s->nfails = k;
  s->nretry = n;
  for (i = 0; i < n; i++)
    ents[i] = jv_parse_sized(s->retry[i].e.text, (int)s->retry[i].e.len);
  if (oc_relation_order(ents, n, order, level, &cyclic))
    goto oom;
  for (i = 0; i < n; i++) {
    s->retry[order[i]].level = (int)level[i];
    if ((int)level[i] + 1 > levels)
      levels = (int)level[i] + 1;
  }
  for (i = 0; i < n; i++)
    jv_free(ents[i]);
  s->st.retried = n;
  free(ents);
  free(order);
  free(level);
  free(keep);
  return levels;
oom:
  if (ents)
    for (i = 0; i < s->nretry; i++)
      jv_free(ents[i]);
  free(ents);
  free(order);
  free(level);
  free(keep);
  return fail_oom(err, errlen);
}

int oc_sync_retry_level(oc_sync_t *s, int level, char *err, size_t errlen)
{
  size_t i, k, n;
  for (i = 0; i < s->nretry; i++) {
    const char *bp;
    ent_t *ents;
    if (s->retry[i].level != level || !s->retry[i].e.text)
      continue;
    bp = s->retry[i].bp;
    for (k = i, n = 0; k < s->nretry; k++)
      n += s->retry[k].level == level && s->retry[k].e.text
           && !strcmp(s->retry[k].bp, bp);
    if (!(ents = calloc(n, sizeof(ent_t))))
      return fail_oom(err, errlen);
    for (k = i, n = 0; k < s->nretry; k++)
      if (s->retry[k].level == level && s->retry[k].e.text
          && !strcmp(s->retry[k].bp, bp)) {
        ents[n++] = s->retry[k].e;
        s->retry[k].e.text = s->retry[k].e.key = NULL;
      }
    if (submit(s, bp, ents, n, 1, err, errlen))
      return -1;
  }
  return 0;
}

/* }==================== */

/* {==================== reconciliation ==================== */

size_t oc_sync_candidates(oc_sync_t *s)
{
  size_t i, n = s->owned ? oc_index_count(s->owned) : 0;
  free(s->cands);
  s->cands = NULL;
  s->ncands = 0;
  if (!n || !(s->cands = malloc(sizeof(long) * n)))
    return 0;
  for (i = 0; i < n; i++) {
    unsigned f = oc_index_flags(s->owned, (long)i);
    if (!(f & (OC_INDEX_SEEN | OC_INDEX_FAILED))) {
      oc_index_set_flags(s->owned, (long)i, f | FLAG_CANDIDATE);
      s->cands[s->ncands++] = (long)i;
    }
  }
  s->st.candidates = s->ncands;
  return s->ncands;
}

const char *oc_sync_candidate_key(const oc_sync_t *s, size_t i,
                                  size_t *klen)
{
  if (i >= s->ncands)
    return NULL;
  return oc_index_key(s->owned, s->cands[i], klen);
}

static int add_doomed(oc_sync_t *s, jv entity, const char *key, size_t klen)
{
  doomed_t *d;
  size_t bl = strlen(key);
  if (s->ndoomed == s->capdoomed) {
    size_t cap = s->capdoomed ? s->capdoomed * 2 : 16;
    doomed_t *nd = realloc(s->doomed, sizeof(doomed_t) * cap);
    if (!nd)
      return -1;
    s->doomed = nd;
    s->capdoomed = cap;
  }
  d = &s->doomed[s->ndoomed];
  memset(d, 0, sizeof *d);
  d->bp = dupn(key, bl);
  d->id = dupn(key + bl + 1, klen - bl - 1);
  if (!d->bp || !d->id) {
    free(d->bp);
    free(d->id);
    return -1;
  }
  d->entity = entity;
  s->ndoomed++;
  return 0;
}

static void on_confirm(void *ud, jv entity)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  long e;
  unsigned f;
  oc_buf_reset(&s->key);
  if (oc_entity_key(entity, &s->key)
      || (e = oc_index_find(s->owned, s->key.p, s->key.n)) < 0) {
    jv_free(entity);
    return;
  }
  f = oc_index_flags(s->owned, e);
  if (!(f & FLAG_CANDIDATE) || (f & FLAG_CONFIRMED)) {
    jv_free(entity);
    return;
  }
  oc_index_set_flags(s->owned, e, f | FLAG_CONFIRMED);
  if (add_doomed(s, entity, s->key.p, s->key.n)) {
    jv_free(entity);
    s->confirm_state = -1;
    snprintf(s->confirm_err, sizeof s->confirm_err, "out of memory");
  }
}

static void on_confirm_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  if (sum->error) {
    s->confirm_state = -1;
    snprintf(s->confirm_err, sizeof s->confirm_err, "could not re-read "
             "the owned entities before deleting: %.400s", sum->error->message);
  } else if (s->confirm_state == 0) {
    s->confirm_state = 1;
    s->st.confirmed = s->ndoomed;
  }
  job_free(j);
}

int oc_sync_confirm(oc_sync_t *s, const char *before, char *err,
                    size_t errlen)
{
  job_t *j;
  if (!s->ncands) {
    s->confirm_state = 1;
    return 0;
  }
  if (!(j = job_new(s, JOB_CONFIRM)))
    return fail_oom(err, errlen);
  s->confirm_state = 0;
  j->id = oc_port_list_owned(s->port, before, on_confirm, on_confirm_done,
                             j, err, errlen);
  if (!j->id) {
    job_free(j);
    s->confirm_state = -1;
    snprintf(s->confirm_err, sizeof s->confirm_err, "%s", err);
    return -1;
  }
  return 0;
}

int oc_sync_confirm_state(const oc_sync_t *s, const char **err)
{
  if (err)
    *err = s->confirm_err;
  return s->confirm_state;
}

/* Drop the doomed entities that produced entities point at (Ocean keeps
 * relation targets when missing ones would be created again anyway). */
static void protect_targets(oc_sync_t *s)
{
  size_t i, k = 0;
  if (!s->o.create_missing)
    return;
  for (i = 0; i < s->ndoomed; i++) {
    doomed_t *d = &s->doomed[i];
    if (oc_hashset_has(s->targets, target_hash(d->id, strlen(d->id)))) {
      s->st.protected_targets++;
      jv_free(d->entity);
      free(d->bp);
      free(d->id);
      free(d->message);
      continue;
    }
    s->doomed[k++] = *d;
  }
  s->ndoomed = k;
}

int oc_sync_delete_prepare(oc_sync_t *s, char *err, size_t errlen)
{
  size_t i, *order, *level, max = 0;
  jv *ents;
  int cyclic;
  protect_targets(s);
  if (!s->ndoomed)
    return 0;
  if (s->o.delete_dependents) {
    for (i = 0; i < s->ndoomed; i++)
      s->doomed[i].level = 0;
    return 1;
  }
  ents = malloc(sizeof(jv) * s->ndoomed);
  order = malloc(sizeof(size_t) * s->ndoomed);
  level = malloc(sizeof(size_t) * s->ndoomed);
  if (!ents || !order || !level) {
    free(ents);
    free(order);
    free(level);
    return fail_oom(err, errlen);
  }
  for (i = 0; i < s->ndoomed; i++)
    ents[i] = s->doomed[i].entity;
  if (oc_relation_order(ents, s->ndoomed, order, level, &cyclic)) {
    free(ents);
    free(order);
    free(level);
    return fail_oom(err, errlen);
  }
  for (i = 0; i < s->ndoomed; i++)
    if (level[i] > max)
      max = level[i];
  /* targets come first in relation order: delete in reverse */
  for (i = 0; i < s->ndoomed; i++)
    s->doomed[order[i]].level = (int)(max - level[i]);
  free(ents);
  free(order);
  free(level);
  return (int)max + 1;
}

static void on_deleted(void *ud, size_t index, int deleted,
                       const oc_port_error_t *e)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  doomed_t *d;
  if (index >= j->n)
    return;
  d = &s->doomed[j->doomed[index]];
  if (deleted) {
    d->outcome = 1;
    s->st.deleted++;
  } else {
    d->outcome = -1;
    s->st.delete_failed++;
    free(d->message);
    d->message = dups(e ? e->message : "Port did not delete it");
  }
}

static void on_delete_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  j->s->st.delete_requests += sum->requests;
  job_free(j);
}

int oc_sync_delete_level(oc_sync_t *s, int level, char *err, size_t errlen)
{
  oc_port_delete_opts_t po;
  size_t i, k, n;
  memset(&po, 0, sizeof po);
  po.delete_dependents = s->o.delete_dependents;
  po.event.type = s->event_type;
  po.event.resync_id = s->resync_id;
  for (i = 0; i < s->ndoomed; i++) {
    const char *bp = s->doomed[i].bp, **ids;
    job_t *j;
    if (s->doomed[i].level != level || s->doomed[i].outcome)
      continue;
    if (!(j = job_new(s, JOB_DELETE)))
      return fail_oom(err, errlen);
    for (k = i, n = 0; k < s->ndoomed; k++)
      n += s->doomed[k].level == level && !s->doomed[k].outcome
           && !strcmp(s->doomed[k].bp, bp);
    j->doomed = malloc(sizeof(size_t) * n);
    ids = malloc(sizeof(char *) * n);
    if (!j->doomed || !ids) {
      free(ids);
      job_free(j);
      return fail_oom(err, errlen);
    }
    for (k = i, n = 0; k < s->ndoomed; k++)
      if (s->doomed[k].level == level && !s->doomed[k].outcome
          && !strcmp(s->doomed[k].bp, bp)) {
        j->doomed[n] = k;
        ids[n++] = s->doomed[k].id;
        s->doomed[k].outcome = 2;        /* submitted (not reused) */
      }
    j->n = n;
    j->id = oc_port_delete(s->port, bp, ids, n, &po, on_deleted,
                           on_delete_done, j, err, errlen);
    free(ids);
    if (!j->id) {
      job_free(j);
      return -1;
    }
  }
  return 0;
}

size_t oc_sync_doomed_count(const oc_sync_t *s)
{
  return s->ndoomed;
}

int oc_sync_doomed(const oc_sync_t *s, size_t i, const char **bp,
                   const char **id, int *outcome, const char **message)
{
  const doomed_t *d;
  if (i >= s->ndoomed)
    return -1;
  d = &s->doomed[i];
  *bp = d->bp;
  *id = d->id;
  *outcome = d->outcome == 2 ? 0 : d->outcome;
  *message = d->message;
  return 0;
}

/* }==================== */
