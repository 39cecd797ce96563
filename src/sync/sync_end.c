/*
 * sync_end.c - the end of a sync session: one retry of the failed upserts
 * in relation order, and reconciliation (deletion candidates, their
 * confirmation against a bounded listing, protection of relation targets,
 * ordered deletion). See sync.h for the contract.
 */
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  return oc_sync_oom(err, errlen);
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
      return oc_sync_oom(err, errlen);
    for (k = i, n = 0; k < s->nretry; k++)
      if (s->retry[k].level == level && s->retry[k].e.text
          && !strcmp(s->retry[k].bp, bp)) {
        ents[n++] = s->retry[k].e;
        s->retry[k].e.text = s->retry[k].e.key = NULL;
      }
    if (oc_sync_submit(s, bp, ents, n, 1, err, errlen))
      return -1;
  }
  return 0;
}

/* }==================== */

/* {==================== reconciliation ==================== */

/* 1 when the blueprint of key ("bp\0id") is held back. */
static int held(const oc_sync_t *s, const char *key)
{
  size_t i;
  for (i = 0; i < s->held.n; i++)
    if (!strcmp(s->held.v[i], key))
      return 1;
  return 0;
}

size_t oc_sync_candidates(oc_sync_t *s)
{
  size_t i, n = s->owned ? oc_index_count(s->owned) : 0;
  free(s->cands);
  s->cands = NULL;
  s->ncands = 0;
  s->st.held = 0;
  if (!n || !(s->cands = malloc(sizeof(long) * n)))
    return 0;
  for (i = 0; i < n; i++) {
    unsigned f = oc_index_flags(s->owned, (long)i);
    size_t kl;
    if (s->held.n && held(s, oc_index_key(s->owned, (long)i, &kl))) {
      s->st.held += !(f & (OC_INDEX_SEEN | OC_INDEX_FAILED));
      continue;
    }
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

static int add_doomed(oc_sync_t *s, jv entity, long entry, const char *key,
                      size_t klen)
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
  d->bp = oc_sync_dupn(key, bl);
  d->id = oc_sync_dupn(key + bl + 1, klen - bl - 1);
  if (!d->bp || !d->id) {
    free(d->bp);
    free(d->id);
    return -1;
  }
  d->entity = entity;
  d->entry = entry;
  s->ndoomed++;
  return 0;
}

static void add_target(void *ud, const char *id, size_t n)
{
  oc_sync_t *s = ud;
  oc_hashset_add(s->targets, oc_sync_target_hash(id, n));
}

static void on_confirm(void *ud, jv entity)
{
  job_t *j = ud;
  oc_sync_t *s = j->s;
  long e;
  unsigned f;
  oc_buf_reset(&s->key);
  if (oc_entity_key(entity, &s->key)) {
    jv_free(entity);
    return;
  }
  /* an entity of a held blueprint may point at a candidate: deleting the
   * candidate with its dependents would take it along */
  if (s->held.n && s->o.delete_dependents && held(s, s->key.p))
    oc_entity_targets(entity, add_target, s);
  if ((e = oc_index_find(s->owned, s->key.p, s->key.n)) < 0) {
    jv_free(entity);
    return;
  }
  f = oc_index_flags(s->owned, e);
  if (!(f & FLAG_CANDIDATE) || (f & FLAG_CONFIRMED)) {
    jv_free(entity);
    return;
  }
  oc_index_set_flags(s->owned, e, f | FLAG_CONFIRMED);
  if (add_doomed(s, entity, e, s->key.p, s->key.n)) {
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
  oc_sync_job_free(j);
}

int oc_sync_confirm(oc_sync_t *s, const char *before, char *err,
                    size_t errlen)
{
  job_t *j;
  if (!s->ncands) {
    s->confirm_state = 1;
    return 0;
  }
  if (!(j = oc_sync_job_new(s, JOB_CONFIRM)))
    return oc_sync_oom(err, errlen);
  s->confirm_state = 0;
  j->id = oc_port_list_owned(s->port, before, on_confirm, on_confirm_done,
                             j, err, errlen);
  if (!j->id) {
    oc_sync_job_free(j);
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
  if (!s->o.create_missing && !(s->held.n && s->o.delete_dependents))
    return;
  for (i = 0; i < s->ndoomed; i++) {
    doomed_t *d = &s->doomed[i];
    if (oc_hashset_has(s->targets, oc_sync_target_hash(d->id, strlen(d->id)))) {
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
  ents = malloc(sizeof(jv) * s->ndoomed);
  order = malloc(sizeof(size_t) * s->ndoomed);
  level = malloc(sizeof(size_t) * s->ndoomed);
  if (!ents || !order || !level) {
    free(ents);
    free(order);
    free(level);
    return oc_sync_oom(err, errlen);
  }
  for (i = 0; i < s->ndoomed; i++)
    ents[i] = s->doomed[i].entity;
  if (oc_relation_order(ents, s->ndoomed, order, level, &cyclic)) {
    free(ents);
    free(order);
    free(level);
    return oc_sync_oom(err, errlen);
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
    oc_index_set_flags(s->owned, d->entry,
                       oc_index_flags(s->owned, d->entry) | FLAG_DELETED);
  } else {
    d->outcome = -1;
    s->st.delete_failed++;
    free(d->message);
    d->message = oc_sync_dups(e ? e->message : "Port did not delete it");
  }
}

static void on_delete_done(void *ud, const oc_port_summary_t *sum)
{
  job_t *j = ud;
  j->s->st.delete_requests += sum->requests;
  oc_sync_job_free(j);
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
    if (!(j = oc_sync_job_new(s, JOB_DELETE)))
      return oc_sync_oom(err, errlen);
    for (k = i, n = 0; k < s->ndoomed; k++)
      n += s->doomed[k].level == level && !s->doomed[k].outcome
           && !strcmp(s->doomed[k].bp, bp);
    j->doomed = malloc(sizeof(size_t) * n);
    ids = malloc(sizeof(char *) * n);
    if (!j->doomed || !ids) {
      free(ids);
      oc_sync_job_free(j);
      return oc_sync_oom(err, errlen);
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
      oc_sync_job_free(j);
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
