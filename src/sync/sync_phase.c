/*
 * sync_phase.c - the order of a sync session's end: FINISHING (the last
 * batches answered), RETRYING (one retry in relation order), the deletion
 * decision with Ocean's safety rules, CONFIRMING (the candidates
 * re-listed), DELETING (level by level), DONE. sync_end.c holds the
 * steps; this file only sequences them and records what was decided and
 * why. See sync.h for the contract.
 */
#include "sync_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const phase_names[] = {
  "setup", "listing", "feeding", "finishing", "retrying", "confirming",
  "deleting", "done"
};

oc_sync_phase_t oc_sync_phase(const oc_sync_t *s)
{
  return s->phase;
}

int oc_sync_plan(const oc_sync_t *s)
{
  return s->o.plan;
}

const char *oc_sync_phase_name(oc_sync_phase_t p)
{
  return (unsigned)p <= OC_SYNC_DONE ? phase_names[p] : "?";
}

/* {==================== reasons and errors ==================== */

void oc_sync_strlist_free(strlist_t *l)
{
  size_t i;
  for (i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* Append a copy of msg; on OOM the message is lost but counted in the
 * caller's decision (skipped stays set), never silently turned into a
 * deletion. */
static void strlist_add(strlist_t *l, const char *msg)
{
  char **nv = realloc(l->v, sizeof(char *) * (l->n + 1));
  if (!nv)
    return;
  l->v = nv;
  if ((l->v[l->n] = oc_sync_dups(msg)))
    l->n++;
}

static void block(oc_sync_t *s, const char *reason)
{
  s->skipped = 1;
  strlist_add(&s->reasons, reason);
}

static void add_error(oc_sync_t *s, const char *msg)
{
  s->own_errors++;
  strlist_add(&s->errors, msg);
}

/* }==================== */

/* {==================== finish ==================== */

int oc_sync_finish(oc_sync_t *s, const oc_sync_finish_t *f, char *err,
                   size_t errlen)
{
  size_t i;
  if (s->phase >= OC_SYNC_FINISHING) {
    snprintf(err, errlen, "BUG: the sync session is already finishing");
    return -1;
  }
  s->fin = *f;
  s->fin.blocked = s->fin.held = NULL;
  s->fin.nblocked = s->fin.nheld = 0;
  if (f->before && !(s->fin.before = oc_sync_dups(f->before)))
    return oc_sync_oom(err, errlen);
  s->ratio = -1;
  s->phase = OC_SYNC_FINISHING;
  /* nothing was offered while listing: what it did not read yet, the
   * session does not know (deletion is then skipped) */
  if (s->owned_state == 0)
    s->listing_cut = 1;
  oc_sync_stop_listing(s, "the resync ended before the entities this "
                       "integration owns were all read");
  for (i = 0; i < f->nblocked; i++)
    strlist_add(&s->reasons, f->blocked[i]);
  for (i = 0; i < f->nheld; i++) {
    strlist_add(&s->held, f->held[i]);
    if (s->held.n != i + 1)      /* lost to OOM: hold everything back */
      strlist_add(&s->reasons, "out of memory while holding back "
                  "blueprints");
  }
  if (oc_sync_flush(s, err, errlen))
    add_error(s, err);
  return 0;
}

/* The safety rules, in Ocean's order. Returns 1 when deletion may go on
 * to the confirmation. */
static int decide(oc_sync_t *s)
{
  char msg[OC_ERR_SIZE];
  const char *oerr;
  size_t count = oc_sync_candidates(s), owned;
  size_t nerr = s->fin.errors + s->own_errors;
  strlist_t mine = s->reasons;   /* the caller's reasons go after ours */
  s->decided = 1;
  s->reasons.v = NULL;
  s->reasons.n = 0;
  if (nerr > 0) {
    snprintf(msg, sizeof msg, "%zu error%s during the resync: the state "
             "is incomplete", nerr, nerr == 1 ? "" : "s");
    block(s, msg);
  }
  for (size_t i = 0; i < mine.n; i++)
    block(s, mine.v[i]);
  oc_sync_strlist_free(&mine);
  /* a listing finish cut short is a reason only when nothing else
   * already stopped deletion: it ran short because the resync did */
  if (oc_sync_owned_state(s, &oerr) != 1 && !(s->listing_cut && s->skipped))
    block(s, *oerr ? oerr : "the entities this integration owns could not "
          "be read");
  if (count == 0)
    return 0;
  owned = s->owned ? oc_index_count(s->owned) - s->nnew : 0;
  s->ratio = owned > 0 ? (double)count / (double)owned : 1;
  if (s->fin.threshold <= 0) {
    block(s, "entityDeletionThreshold is 0: this integration never "
          "deletes");
  } else if (s->ratio > s->fin.threshold) {
    snprintf(msg, sizeof msg, "deleting %zu of %zu owned entities (%.0f%%) "
             "is above entityDeletionThreshold (%.0f%%)", count, owned,
             s->ratio * 100, s->fin.threshold * 100);
    block(s, msg);
  }
  return !s->skipped;
}

/* }==================== */

/* {==================== stepping ==================== */

static oc_sync_phase_t done(oc_sync_t *s)
{
  return s->phase = OC_SYNC_DONE;
}

/* Submit level s->level of the retry or the deletion. */
static int submit_level(oc_sync_t *s, char *err, size_t errlen)
{
  if (s->phase == OC_SYNC_RETRYING)
    return oc_sync_retry_level(s, s->level, err, errlen);
  return oc_sync_delete_level(s, s->level, err, errlen);
}

static oc_sync_phase_t start_levels(oc_sync_t *s, oc_sync_phase_t phase,
                                    int levels)
{
  char err[OC_ERR_SIZE];
  s->phase = phase;
  s->nlevels = levels;
  s->level = 0;
  if (submit_level(s, err, sizeof err)) {
    add_error(s, err);
    s->level = levels;           /* stop there */
  }
  return s->phase;
}

static oc_sync_phase_t to_confirming(oc_sync_t *s)
{
  char err[OC_ERR_SIZE];
  if (!decide(s))
    return done(s);
  s->phase = OC_SYNC_CONFIRMING;
  if (oc_sync_confirm(s, s->fin.before, err, sizeof err)) {
    block(s, err);
    return done(s);
  }
  return s->phase;
}

static oc_sync_phase_t after_finishing(oc_sync_t *s)
{
  char err[OC_ERR_SIZE];
  int levels = oc_sync_retry_prepare(s, err, sizeof err);
  if (levels < 0)
    add_error(s, err);
  if (levels <= 0)
    return to_confirming(s);
  s->retry_levels = levels;
  return start_levels(s, OC_SYNC_RETRYING, levels);
}

static oc_sync_phase_t after_confirming(oc_sync_t *s)
{
  char err[OC_ERR_SIZE];
  const char *cerr;
  int levels;
  if (oc_sync_confirm_state(s, &cerr) != 1) {
    block(s, cerr);
    return done(s);
  }
  if ((levels = oc_sync_delete_prepare(s, err, sizeof err)) < 0) {
    block(s, err);
    return done(s);
  }
  if (levels == 0 || s->o.plan)
    return done(s);
  return start_levels(s, OC_SYNC_DELETING, levels);
}

/* The next level, or the phase after the levels. */
static oc_sync_phase_t next_level(oc_sync_t *s)
{
  char err[OC_ERR_SIZE];
  if (++s->level < s->nlevels) {
    if (submit_level(s, err, sizeof err)) {
      add_error(s, err);
      s->level = s->nlevels;
    } else {
      return s->phase;
    }
  }
  return s->phase == OC_SYNC_RETRYING ? to_confirming(s) : done(s);
}

oc_sync_phase_t oc_sync_step(oc_sync_t *s)
{
  switch (s->phase) {
  case OC_SYNC_LISTING:
    if (s->owned_state != 0)
      s->phase = OC_SYNC_FEEDING;
    return s->phase;
  case OC_SYNC_FINISHING:
    return s->outstanding ? s->phase : after_finishing(s);
  case OC_SYNC_RETRYING:
  case OC_SYNC_DELETING:
    return s->outstanding ? s->phase : next_level(s);
  case OC_SYNC_CONFIRMING:
    return s->outstanding ? s->phase : after_confirming(s);
  default:
    return s->phase;
  }
}

/* }==================== */

/* {==================== report ==================== */

void oc_sync_report(const oc_sync_t *s, oc_sync_report_t *out)
{
  memset(out, 0, sizeof *out);
  out->phase = s->phase;
  out->retry_levels = s->retry_levels;
  out->decided = s->decided;
  out->skipped = s->skipped;
  out->ratio = s->ratio;
  out->threshold = s->fin.threshold;
  out->nreasons = s->reasons.n;
  out->nerrors = s->errors.n;
}

size_t oc_sync_candidate_count(const oc_sync_t *s)
{
  return s->ncands;
}

const char *oc_sync_reason(const oc_sync_t *s, size_t i)
{
  return i < s->reasons.n ? s->reasons.v[i] : NULL;
}

const char *oc_sync_error(const oc_sync_t *s, size_t i)
{
  return i < s->errors.n ? s->errors.v[i] : NULL;
}

/* }==================== */
