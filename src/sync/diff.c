/*
 * diff.c - entity identity, content projections and hashes, the
 * owned-entity index, a 64-bit hash set and relation ordering.
 *
 * Owns: index and hash-set storage. No global state.
 */
#include "diff.h"

#include <stdlib.h>
#include <string.h>

#include "json/json.h"

#define CANON OC_DUMP_CANONICAL

/* {==================== identity ==================== */

void oc_identifier_text(jv id, oc_buf_t *out)
{
  switch (jv_get_kind(id)) {
  case JV_KIND_STRING:
    oc_buf_add(out, jv_string_value(id),
               (size_t)jv_string_length_bytes(jv_copy(id)));
    break;
  case JV_KIND_NUMBER:
    oc_json_add_jv_number(out, id, 1);
    break;
  default:
    oc_json_dump(id, out, OC_DUMP_SORT_KEYS);
  }
}

int oc_entity_key(jv entity, oc_buf_t *out)
{
  jv bp, id;
  jv_kind ik;
  int rc = -1;
  if (jv_get_kind(entity) != JV_KIND_OBJECT)
    return -1;
  bp = jv_object_get(jv_copy(entity), jv_string("blueprint"));
  id = jv_object_get(jv_copy(entity), jv_string("identifier"));
  ik = jv_get_kind(id);
  if (jv_get_kind(bp) == JV_KIND_STRING
      && jv_string_length_bytes(jv_copy(bp)) > 0
      && (ik == JV_KIND_STRING || ik == JV_KIND_NUMBER)) {
    oc_buf_add(out, jv_string_value(bp),
               (size_t)jv_string_length_bytes(jv_copy(bp)));
    oc_buf_addc(out, '\0');
    oc_identifier_text(id, out);
    rc = out->oom ? -1 : 0;
  }
  jv_free(bp);
  jv_free(id);
  return rc;
}

/* }==================== */

/* {==================== projections ==================== */

static int strp_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copy the strings of array field `name` of sig into a sorted vector. */
static int names_from(jv sig, const char *name, char ***out, size_t *n)
{
  jv arr = jv_object_get(jv_copy(sig), jv_string(name));
  int i, len;
  *out = NULL;
  *n = 0;
  if (jv_get_kind(arr) != JV_KIND_ARRAY) {
    jv_free(arr);
    return 0;
  }
  len = jv_array_length(jv_copy(arr));
  *out = calloc((size_t)len + 1, sizeof(char *));
  if (!*out) {
    jv_free(arr);
    return -1;
  }
  for (i = 0; i < len; i++) {
    jv s = jv_array_get(jv_copy(arr), i);
    if (jv_get_kind(s) == JV_KIND_STRING) {
      (*out)[*n] = strdup(jv_string_value(s));
      if (!(*out)[*n]) {
        jv_free(s);
        jv_free(arr);
        return -1;
      }
      (*n)++;
    }
    jv_free(s);
  }
  jv_free(arr);
  qsort(*out, *n, sizeof(char *), strp_cmp);
  return 0;
}

static int sig_flag(jv sig, const char *name)
{
  jv v = jv_object_get(jv_copy(sig), jv_string(name));
  int on = jv_get_kind(v) == JV_KIND_TRUE;
  jv_free(v);
  return on;
}

oc_projection_t *oc_projection_new(jv sig, int full)
{
  oc_projection_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  if (full || jv_get_kind(sig) != JV_KIND_OBJECT) {
    p->full = 1;
    return p;
  }
  p->title = sig_flag(sig, "title");
  p->icon = sig_flag(sig, "icon");
  p->team = sig_flag(sig, "team");
  if (names_from(sig, "properties", &p->props, &p->nprops)
      || names_from(sig, "relations", &p->rels, &p->nrels)) {
    oc_projection_free(p);
    return NULL;
  }
  return p;
}

static void free_names(char **v, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void oc_projection_free(oc_projection_t *p)
{
  if (!p)
    return;
  free_names(p->props, p->nprops);
  free_names(p->rels, p->nrels);
  free(p);
}

static int names_equal(char **a, size_t na, char **b, size_t nb)
{
  size_t i;
  if (na != nb)
    return 0;
  for (i = 0; i < na; i++)
    if (strcmp(a[i], b[i]))
      return 0;
  return 1;
}

int oc_projection_equal(const oc_projection_t *a, const oc_projection_t *b)
{
  if (a->full || b->full)
    return a->full == b->full;
  return a->title == b->title && a->icon == b->icon && a->team == b->team
         && names_equal(a->props, a->nprops, b->props, b->nprops)
         && names_equal(a->rels, a->nrels, b->rels, b->nrels);
}

static void add_member(oc_buf_t *b, const char *name, jv v, int *first)
{
  if (!*first)
    oc_buf_addc(b, ',');
  *first = 0;
  oc_buf_add_json_string(b, name, strlen(name));
  oc_buf_addc(b, ':');
  oc_json_dump(v, b, CANON);
}

/* Team as Port keeps it: a sorted array; a lone string is a one-element
 * array; null and [] are "no team" (returns jv_null()). Consumes t. */
static jv normalize_team(jv t)
{
  if (jv_get_kind(t) == JV_KIND_STRING)
    t = jv_array_append(jv_array(), t);
  if (jv_get_kind(t) == JV_KIND_ARRAY) {
    if (jv_array_length(jv_copy(t)) == 0) {
      jv_free(t);
      return jv_null();
    }
    return jv_sort(t, jv_copy(t));
  }
  return t;
}

/* Emit the members of object `obj` named in names (all members when
 * `all`), skipping nulls. A missing or non-object value counts as {}: an
 * entity without properties and one with none are the same. Consumes
 * obj. */
static void add_object(oc_buf_t *b, const char *field, jv obj, char **names,
                       size_t n, int all, int *first)
{
  size_t i;
  int inner = 1;
  if (jv_get_kind(obj) != JV_KIND_OBJECT) {
    jv_free(obj);
    obj = jv_object();
  }
  if (!*first)
    oc_buf_addc(b, ',');
  *first = 0;
  oc_buf_add_json_string(b, field, strlen(field));
  oc_buf_adds(b, ":{");
  if (all) {
    jv keys = jv_keys(jv_copy(obj));
    int k, nk = jv_array_length(jv_copy(keys));
    for (k = 0; k < nk; k++) {
      jv key = jv_array_get(jv_copy(keys), k);
      jv v = jv_object_get(jv_copy(obj), jv_copy(key));
      if (!oc_json_is_null(v))
        add_member(b, jv_string_value(key), v, &inner);
      jv_free(v);
      jv_free(key);
    }
    jv_free(keys);
  } else {
    for (i = 0; i < n; i++) {
      jv v = jv_object_get(jv_copy(obj), jv_string(names[i]));
      if (jv_is_valid(v) && !oc_json_is_null(v))
        add_member(b, names[i], v, &inner);
      jv_free(v);
    }
  }
  oc_buf_addc(b, '}');
  jv_free(obj);
}

static void add_field(oc_buf_t *b, jv entity, const char *name, int team,
                      int *first)
{
  jv v = jv_object_get(jv_copy(entity), jv_string(name));
  if (team)
    v = normalize_team(v);
  if (jv_is_valid(v) && !oc_json_is_null(v))
    add_member(b, name, v, first);
  jv_free(v);
}

uint64_t oc_projection_hash(const oc_projection_t *p, jv entity,
                            oc_buf_t *scratch)
{
  int first = 1;
  uint64_t h;
  oc_buf_reset(scratch);
  oc_buf_addc(scratch, '{');
  if (p->full || p->icon)
    add_field(scratch, entity, "icon", 0, &first);
  add_object(scratch, "properties",
             jv_object_get(jv_copy(entity), jv_string("properties")),
             p->props, p->nprops, p->full, &first);
  add_object(scratch, "relations",
             jv_object_get(jv_copy(entity), jv_string("relations")),
             p->rels, p->nrels, p->full, &first);
  if (p->full || p->team)
    add_field(scratch, entity, "team", 1, &first);
  if (p->full || p->title)
    add_field(scratch, entity, "title", 0, &first);
  oc_buf_addc(scratch, '}');
  h = oc_hash64(scratch->p ? scratch->p : "", scratch->n, 0x6f63);
  return h == OC_HASH_UNKNOWN ? 1 : h;
}

/* }==================== */

/* {==================== owned-entity index ==================== */

typedef struct ix_entry {
  uint64_t keyhash;
  size_t key_off;
  uint32_t key_len;
  uint32_t flags;
} ix_entry_t;

struct oc_index {
  size_t nhash;
  ix_entry_t *entries;
  size_t n, cap;
  uint64_t *hashes;              /* nhash per entry */
  long *slots;                   /* entry number or -1 */
  size_t nslots;                 /* power of two */
  oc_buf_t keys;                 /* key bytes of every entry */
};

oc_index_t *oc_index_new(size_t nhash)
{
  oc_index_t *ix = calloc(1, sizeof *ix);
  if (!ix)
    return NULL;
  ix->nhash = nhash ? nhash : 1;
  oc_buf_init(&ix->keys);
  return ix;
}

void oc_index_free(oc_index_t *ix)
{
  if (!ix)
    return;
  free(ix->entries);
  free(ix->hashes);
  free(ix->slots);
  oc_buf_free(&ix->keys);
  free(ix);
}

static uint64_t key_hash(const char *key, size_t klen)
{
  return oc_hash64(key, klen, 0x6b6579);
}

static long probe(const oc_index_t *ix, const char *key, size_t klen,
                  uint64_t h, size_t *slot)
{
  size_t mask = ix->nslots - 1, i = (size_t)h & mask;
  for (;;) {
    long e = ix->slots[i];
    if (e < 0) {
      *slot = i;
      return -1;
    }
    if (ix->entries[e].keyhash == h && ix->entries[e].key_len == klen
        && memcmp(ix->keys.p + ix->entries[e].key_off, key, klen) == 0) {
      *slot = i;
      return e;
    }
    i = (i + 1) & mask;
  }
}

static int grow_slots(oc_index_t *ix)
{
  size_t ns = ix->nslots ? ix->nslots * 2 : 64, i, e;
  long *slots = malloc(sizeof(long) * ns);
  if (!slots)
    return -1;
  for (i = 0; i < ns; i++)
    slots[i] = -1;
  free(ix->slots);
  ix->slots = slots;
  ix->nslots = ns;
  for (e = 0; e < ix->n; e++) {
    size_t j = (size_t)ix->entries[e].keyhash & (ns - 1);
    while (slots[j] >= 0)
      j = (j + 1) & (ns - 1);
    slots[j] = (long)e;
  }
  return 0;
}

static int grow_entries(oc_index_t *ix)
{
  size_t cap = ix->cap ? ix->cap * 2 : 64;
  ix_entry_t *en = realloc(ix->entries, sizeof(ix_entry_t) * cap);
  uint64_t *hs;
  if (!en)
    return -1;
  ix->entries = en;
  hs = realloc(ix->hashes, sizeof(uint64_t) * ix->nhash * cap);
  if (!hs)
    return -1;
  ix->hashes = hs;
  ix->cap = cap;
  return 0;
}

int oc_index_put(oc_index_t *ix, const char *key, size_t klen,
                 const uint64_t *hashes)
{
  uint64_t h = key_hash(key, klen);
  size_t slot;
  long e;
  if ((ix->n + 1) * 10 > ix->nslots * 7 && grow_slots(ix))
    return -1;
  e = probe(ix, key, klen, h, &slot);
  if (e < 0) {
    if (ix->n == ix->cap && grow_entries(ix))
      return -1;
    e = (long)ix->n;
    ix->entries[e].keyhash = h;
    ix->entries[e].key_off = ix->keys.n;
    ix->entries[e].key_len = (uint32_t)klen;
    ix->entries[e].flags = 0;
    oc_buf_add(&ix->keys, key, klen);
    if (ix->keys.oom)
      return -1;
    ix->slots[slot] = e;
    ix->n++;
  }
  memcpy(ix->hashes + (size_t)e * ix->nhash, hashes,
         sizeof(uint64_t) * ix->nhash);
  return 0;
}

long oc_index_find(const oc_index_t *ix, const char *key, size_t klen)
{
  size_t slot;
  if (!ix->n)
    return -1;
  return probe(ix, key, klen, key_hash(key, klen), &slot);
}

size_t oc_index_count(const oc_index_t *ix)
{
  return ix->n;
}

const uint64_t *oc_index_hashes(const oc_index_t *ix, long e)
{
  return ix->hashes + (size_t)e * ix->nhash;
}

void oc_index_set_hash(oc_index_t *ix, long e, size_t i, uint64_t h)
{
  ix->hashes[(size_t)e * ix->nhash + i] = h;
}

unsigned oc_index_flags(const oc_index_t *ix, long e)
{
  return ix->entries[e].flags;
}

void oc_index_set_flags(oc_index_t *ix, long e, unsigned flags)
{
  ix->entries[e].flags = flags;
}

const char *oc_index_key(const oc_index_t *ix, long e, size_t *klen)
{
  *klen = ix->entries[e].key_len;
  return ix->keys.p + ix->entries[e].key_off;
}

/* }==================== */

/* {==================== hash set ==================== */

struct oc_hashset {
  uint64_t *slots;               /* 0 = empty */
  size_t n, cap;
};

oc_hashset_t *oc_hashset_new(void)
{
  return calloc(1, sizeof(oc_hashset_t));
}

void oc_hashset_free(oc_hashset_t *s)
{
  if (!s)
    return;
  free(s->slots);
  free(s);
}

static void hs_insert(uint64_t *slots, size_t cap, uint64_t h)
{
  size_t i = (size_t)h & (cap - 1);
  while (slots[i] && slots[i] != h)
    i = (i + 1) & (cap - 1);
  slots[i] = h;
}

int oc_hashset_add(oc_hashset_t *s, uint64_t h)
{
  if (!h)
    h = 1;
  if ((s->n + 1) * 10 > s->cap * 7) {
    size_t cap = s->cap ? s->cap * 2 : 64, i;
    uint64_t *ns = calloc(cap, sizeof(uint64_t));
    if (!ns)
      return -1;
    for (i = 0; i < s->cap; i++)
      if (s->slots[i])
        hs_insert(ns, cap, s->slots[i]);
    free(s->slots);
    s->slots = ns;
    s->cap = cap;
  }
  if (!oc_hashset_has(s, h))
    s->n++;
  hs_insert(s->slots, s->cap, h);
  return 0;
}

int oc_hashset_has(const oc_hashset_t *s, uint64_t h)
{
  size_t i;
  if (!s->cap)
    return 0;
  if (!h)
    h = 1;
  for (i = (size_t)h & (s->cap - 1); s->slots[i];
       i = (i + 1) & (s->cap - 1))
    if (s->slots[i] == h)
      return 1;
  return 0;
}

size_t oc_hashset_count(const oc_hashset_t *s)
{
  return s->n;
}

static void call_string(jv s, oc_target_fn fn, void *ud)
{
  if (jv_get_kind(s) == JV_KIND_STRING)
    fn(ud, jv_string_value(s), (size_t)jv_string_length_bytes(jv_copy(s)));
}

/* `$identifier =` rules anywhere inside a search query (borrowed). */
static void query_targets(jv q, oc_target_fn fn, void *ud, int depth)
{
  jv rules, prop, op;
  int i, n;
  if (jv_get_kind(q) != JV_KIND_OBJECT || depth > 32)
    return;
  prop = jv_object_get(jv_copy(q), jv_string("property"));
  op = jv_object_get(jv_copy(q), jv_string("operator"));
  if (jv_get_kind(prop) == JV_KIND_STRING && jv_get_kind(op)
      == JV_KIND_STRING && !strcmp(jv_string_value(prop), "$identifier")
      && !strcmp(jv_string_value(op), "=")) {
    jv v = jv_object_get(jv_copy(q), jv_string("value"));
    call_string(v, fn, ud);
    jv_free(v);
  }
  jv_free(prop);
  jv_free(op);
  rules = jv_object_get(jv_copy(q), jv_string("rules"));
  if (jv_get_kind(rules) == JV_KIND_ARRAY) {
    n = jv_array_length(jv_copy(rules));
    for (i = 0; i < n; i++) {
      jv r = jv_array_get(jv_copy(rules), i);
      query_targets(r, fn, ud, depth + 1);
      jv_free(r);
    }
  }
  jv_free(rules);
}

void oc_entity_targets(jv entity, oc_target_fn fn, void *ud)
{
  jv rels = jv_object_get(jv_copy(entity), jv_string("relations"));
  if (jv_get_kind(rels) == JV_KIND_OBJECT) {
    jv_object_foreach(rels, k, v) {
      if (jv_get_kind(v) == JV_KIND_ARRAY) {
        int i, n = jv_array_length(jv_copy(v));
        for (i = 0; i < n; i++) {
          jv e = jv_array_get(jv_copy(v), i);
          call_string(e, fn, ud);
          jv_free(e);
        }
      } else if (jv_get_kind(v) == JV_KIND_OBJECT) {
        query_targets(v, fn, ud, 0);
      } else {
        call_string(v, fn, ud);
      }
      jv_free(k);
      jv_free(v);
    }
  }
  jv_free(rels);
}

/* }==================== */

/* {==================== relation order ==================== */

typedef struct hashidx { uint64_t h; size_t i; } hashidx_t;

static int hashidx_cmp(const void *a, const void *b)
{
  const hashidx_t *x = a, *y = b;
  if (x->h != y->h)
    return x->h < y->h ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

static int size_cmp(const void *a, const void *b)
{
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

typedef struct order_ctx {
  size_t n, self;
  hashidx_t *byhash;             /* entities sorted by identifier hash */
  size_t *edges, nedges, cap;    /* pairs (from = target, to = dependent) */
  int oom;
} order_ctx_t;

static uint64_t id_hash(const char *s, size_t n)
{
  return oc_hash64(s, n, 0x6964);
}

/* Target callback: an edge target -> self for every entity whose
 * identifier equals the target (blueprint not considered, as Ocean). */
static void add_edges(void *ud, const char *id, size_t n)
{
  order_ctx_t *c = ud;
  hashidx_t key;
  size_t lo = 0, hi = c->n;
  key.h = id_hash(id, n);
  while (lo < hi) {                    /* first entry with hash >= key */
    size_t mid = (lo + hi) / 2;
    if (c->byhash[mid].h < key.h)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (; lo < c->n && c->byhash[lo].h == key.h && !c->oom; lo++) {
    if (c->byhash[lo].i == c->self)
      continue;
    if (c->nedges == c->cap) {
      size_t cap = c->cap ? c->cap * 2 : 64;
      size_t *ne = realloc(c->edges, sizeof(size_t) * cap * 2);
      if (!ne) {
        c->oom = 1;
        return;
      }
      c->edges = ne;
      c->cap = cap;
    }
    c->edges[2 * c->nedges] = c->byhash[lo].i;
    c->edges[2 * c->nedges + 1] = c->self;
    c->nedges++;
  }
}

/* Adjacency (CSR) of the edges: the dependents of each entity. */
static int build_adjacency(const order_ctx_t *c, size_t **start,
                           size_t **adj, size_t *indeg)
{
  size_t e, i, *fill;
  *start = calloc(c->n + 1, sizeof(size_t));
  *adj = malloc(sizeof(size_t) * (c->nedges + 1));
  fill = calloc(c->n + 1, sizeof(size_t));
  if (!*start || !*adj || !fill) {
    free(fill);
    return -1;
  }
  for (e = 0; e < c->nedges; e++) {
    (*start)[c->edges[2 * e] + 1]++;
    indeg[c->edges[2 * e + 1]]++;
  }
  for (i = 0; i < c->n; i++)
    (*start)[i + 1] += (*start)[i];
  for (e = 0; e < c->nedges; e++) {
    size_t from = c->edges[2 * e];
    (*adj)[(*start)[from] + fill[from]++] = c->edges[2 * e + 1];
  }
  free(fill);
  return 0;
}

int oc_relation_order(const jv *entities, size_t n, size_t *order,
                      size_t *level, int *cyclic)
{
  order_ctx_t c;
  oc_buf_t t = OC_BUF_INIT;
  size_t i, k, placed = 0, lvl = 0, nf = 0, *indeg = NULL, *start = NULL;
  size_t *adj = NULL, *cur = NULL, *next = NULL;
  unsigned char *done = NULL;
  int rc = -1;
  memset(&c, 0, sizeof c);
  c.n = n;
  *cyclic = 0;
  c.byhash = calloc(n + 1, sizeof(hashidx_t));
  indeg = calloc(n + 1, sizeof(size_t));
  cur = calloc(n + 1, sizeof(size_t));
  next = calloc(n + 1, sizeof(size_t));
  done = calloc(n + 1, 1);
  if (!c.byhash || !indeg || !cur || !next || !done)
    goto out;
  for (i = 0; i < n; i++) {
    jv id = jv_object_get(jv_copy(entities[i]), jv_string("identifier"));
    oc_buf_reset(&t);
    oc_identifier_text(id, &t);
    c.byhash[i].h = id_hash(t.p ? t.p : "", t.n);
    c.byhash[i].i = i;
    jv_free(id);
  }
  qsort(c.byhash, n, sizeof(hashidx_t), hashidx_cmp);
  for (i = 0; i < n && !c.oom; i++) {
    c.self = i;
    oc_entity_targets(entities[i], add_edges, &c);
  }
  if (c.oom || build_adjacency(&c, &start, &adj, indeg))
    goto out;
  /* Kahn's algorithm level by level, input order within a level. */
  for (i = 0; i < n; i++)
    if (indeg[i] == 0)
      cur[nf++] = i;
  while (nf > 0) {
    size_t nn = 0;
    for (i = 0; i < nf; i++) {
      order[placed] = cur[i];
      if (level)
        level[placed] = lvl;
      done[cur[i]] = 1;
      placed++;
      for (k = start[cur[i]]; k < start[cur[i] + 1]; k++)
        if (--indeg[adj[k]] == 0)
          next[nn++] = adj[k];
    }
    qsort(next, nn, sizeof(size_t), size_cmp);
    memcpy(cur, next, sizeof(size_t) * nn);
    nf = nn;
    lvl++;
  }
  if (placed < n) {                 /* a cycle: the rest in input order */
    *cyclic = 1;
    for (i = 0; i < n; i++)
      if (!done[i]) {
        order[placed] = i;
        if (level)
          level[placed] = lvl++;
        placed++;
      }
  }
  rc = 0;
out:
  free(c.byhash);
  free(c.edges);
  free(indeg);
  free(start);
  free(adj);
  free(cur);
  free(next);
  free(done);
  oc_buf_free(&t);
  return rc;
}

/* }==================== */
