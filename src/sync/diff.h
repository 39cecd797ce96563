/*
 * diff.h - what the sync engine compares: entity identity keys, content
 * projections and their hashes, the owned-entity index, hash sets, and the
 * relation order of a set of entities.
 *
 * The owned-entity index holds keys and 64-bit content hashes, never whole
 * entities, so a resync's memory does not grow with the size of entities.
 */
#ifndef OC_DIFF_H
#define OC_DIFF_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "json/buf.h"

/* {==================== identity ==================== */

/* Append the normalised form of an identifier: a string as is, a number as
 * the engine writes numbers ("5" for 5 and 5.0: Ocean's str()), anything
 * else as canonical JSON. v is borrowed. */
void oc_identifier_text(jv id, oc_buf_t *out);

/* The identity key of an entity: "<blueprint>\0<identifier text>". Returns
 * 0, or -1 when the entity has no string blueprint, no identifier, or a
 * search-query (object) identifier: such entities have no stable key.
 * entity is borrowed. */
int oc_entity_key(jv entity, oc_buf_t *out);

/* }==================== */

/* {==================== projections ==================== */

/* Which parts of an entity a mapping writes. With merge (Port keeps what an
 * upsert does not send), only those parts can differ after an upsert, so
 * Port's copy is compared on them alone; without merge the whole entity. */
typedef struct oc_projection {
  int full;                      /* compare everything */
  int title, icon, team;
  char **props;                  /* sorted names */
  size_t nprops;
  char **rels;
  size_t nrels;
} oc_projection_t;

/* Build from a mapping signature {"title":b,"icon":b,"team":b,
 * "properties":[..],"relations":[..]} (borrowed), or full when sig is not
 * an object. NULL on allocation failure. */
oc_projection_t *oc_projection_new(jv sig, int full);
void oc_projection_free(oc_projection_t *p);
int oc_projection_equal(const oc_projection_t *a, const oc_projection_t *b);

/* Hash of the entity's content seen through p: title, icon, team (sorted;
 * [] and null count as absent), properties and relations, in canonical
 * form where null-valued members don't count. entity is borrowed. Never
 * OC_HASH_UNKNOWN. */
#define OC_HASH_UNKNOWN 0u
uint64_t oc_projection_hash(const oc_projection_t *p, jv entity,
                            oc_buf_t *scratch);

/* }==================== */

/* {==================== owned-entity index ==================== */

#define OC_INDEX_SEEN 1u         /* produced by this run */
#define OC_INDEX_FAILED 2u       /* its upsert failed in this run */

typedef struct oc_index oc_index_t;

/* An index storing `nhash` hashes per key. NULL on allocation failure. */
oc_index_t *oc_index_new(size_t nhash);
void oc_index_free(oc_index_t *ix);
/* Insert or replace key -> hashes (nhash values, copied). 0 or -1 (OOM). */
int oc_index_put(oc_index_t *ix, const char *key, size_t klen,
                 const uint64_t *hashes);
/* Entry number of key, or -1. Entry numbers are stable. */
long oc_index_find(const oc_index_t *ix, const char *key, size_t klen);
size_t oc_index_count(const oc_index_t *ix);
const uint64_t *oc_index_hashes(const oc_index_t *ix, long entry);
/* Set hash i (< nhash) of entry. */
void oc_index_set_hash(oc_index_t *ix, long entry, size_t i, uint64_t h);
unsigned oc_index_flags(const oc_index_t *ix, long entry);
void oc_index_set_flags(oc_index_t *ix, long entry, unsigned flags);
/* The key of entry e (not NUL-terminated; blueprint \0 identifier). */
const char *oc_index_key(const oc_index_t *ix, long entry, size_t *klen);

/* }==================== */

/* {==================== hash set ==================== */

typedef struct oc_hashset oc_hashset_t;
oc_hashset_t *oc_hashset_new(void);
void oc_hashset_free(oc_hashset_t *s);
int oc_hashset_add(oc_hashset_t *s, uint64_t h);     /* 0 or -1 (OOM) */
int oc_hashset_has(const oc_hashset_t *s, uint64_t h);
size_t oc_hashset_count(const oc_hashset_t *s);

/* Call fn for every relation target identifier of entity (borrowed):
 * string values, strings inside arrays, and the values of
 * `$identifier =` rules inside search-query relations. */
typedef void (*oc_target_fn)(void *ud, const char *id, size_t n);
void oc_entity_targets(jv entity, oc_target_fn fn, void *ud);

/* }==================== */

/* {==================== relation order ==================== */

/* Order n entities so that relation targets come before the entities that
 * point at them (Ocean matches targets by identifier only). order[] gets a
 * permutation of 0..n-1 and level[] (may be NULL) the dependency depth of
 * each position: entities of one level don't depend on each other. A
 * cycle doesn't fail: the entities caught in it follow in input order and
 * *cyclic is set. Returns 0 or -1 (OOM). entities are borrowed. */
int oc_relation_order(const jv *entities, size_t n, size_t *order,
                      size_t *level, int *cyclic);

/* }==================== */

#endif
