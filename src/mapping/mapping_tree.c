/*
 * mapping_tree.c - the two trees a compiled mapping keeps: the entity
 * template (oc_tnode_t: what an entity looks like, leaves are slots) and
 * the key tree (oc_keytree_t: which part of a raw item the expressions
 * read). Both are built once at compile time and read per item.
 *
 * Owns: the nodes and their jv keys.
 */
#include "mapping_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* {==================== entity template ==================== */

static int tnode_fill(oc_tnode_t *t, jv v)
{
  int i, n;
  switch (jv_get_kind(v)) {
  case JV_KIND_NUMBER:
    t->kind = OC_T_VALUE;
    t->slot = (size_t)jv_number_value(v);
    return 0;
  case JV_KIND_ARRAY:
    t->kind = OC_T_ARRAY;
    n = jv_array_length(jv_copy(v));
    t->child = calloc(n ? (size_t)n : 1, sizeof *t->child);
    if (!t->child)
      return -1;
    t->n = (size_t)n;
    for (i = 0; i < n; i++) {
      jv e = jv_array_get(jv_copy(v), i);
      int rc = tnode_fill(&t->child[i], e);
      jv_free(e);
      if (rc)
        return rc;
    }
    return 0;
  case JV_KIND_OBJECT:
    t->kind = OC_T_OBJECT;
    n = jv_object_length(jv_copy(v));
    t->child = calloc(n ? (size_t)n : 1, sizeof *t->child);
    if (!t->child)
      return -1;
    t->n = 0;
    jv_object_foreach(v, key, val) {
      oc_tnode_t *c = &t->child[t->n++];
      c->jkey = key;
      c->key = jv_string_value(key);
      c->keylen = (size_t)jv_string_length_bytes(jv_copy(key));
      if (tnode_fill(c, val)) {
        jv_free(val);
        return -1;
      }
      jv_free(val);
    }
    return 0;
  default:
    return -1;
  }
}

static void tnode_clear(oc_tnode_t *t)
{
  size_t i;
  if (t->child) {
    for (i = 0; i < t->n; i++)
      tnode_clear(&t->child[i]);
    free(t->child);
  }
  jv_free(t->jkey);
}

oc_tnode_t *oc_tnode_from_jv(jv tmpl)
{
  oc_tnode_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  if (tnode_fill(t, tmpl)) {
    oc_tnode_free(t);
    return NULL;
  }
  return t;
}

void oc_tnode_free(oc_tnode_t *t)
{
  if (!t)
    return;
  tnode_clear(t);
  free(t);
}

const oc_tnode_t *oc_tnode_member(const oc_tnode_t *t, const char *key)
{
  size_t i, n = strlen(key);
  for (i = 0; t && t->kind == OC_T_OBJECT && i < t->n; i++)
    if (t->child[i].keylen == n && !memcmp(t->child[i].key, key, n))
      return &t->child[i];
  return NULL;
}

jv oc_tnode_build(const oc_tnode_t *t, const jv *value)
{
  jv out;
  size_t i;
  switch (t->kind) {
  case OC_T_VALUE:
    return jv_copy(value[t->slot]);
  case OC_T_ARRAY:
    out = jv_array_sized((int)t->n);
    for (i = 0; i < t->n; i++)
      out = jv_array_append(out, oc_tnode_build(&t->child[i], value));
    return out;
  default:
    out = jv_object();
    for (i = 0; i < t->n; i++)
      out = jv_object_set(out, jv_copy(t->child[i].jkey),
                          oc_tnode_build(&t->child[i], value));
    return out;
  }
}

/* }==================== */

/* {==================== key tree ==================== */

/* Merge path (borrowed) into the jv tree acc (consumed): an object whose
 * members are `true` (read whole) or objects (read only those keys). */
static jv merge_path(jv acc, jv path, int at)
{
  jv key, cur;
  if (at >= jv_array_length(jv_copy(path))) {
    jv_free(acc);
    return jv_true();                    /* the whole subtree */
  }
  if (jv_get_kind(acc) == JV_KIND_TRUE)
    return acc;                          /* already whole */
  key = jv_array_get(jv_copy(path), at);
  cur = jv_object_get(jv_copy(acc), jv_copy(key));
  if (!jv_is_valid(cur)) {
    jv_free(cur);
    cur = jv_object();
  }
  return jv_object_set(acc, key, merge_path(cur, path, at + 1));
}

static int cmp_entry(const void *a, const void *b)
{
  const oc_keytree_entry_t *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->key, y->key, n);
  return c ? c : (x->len > y->len) - (x->len < y->len);
}

static size_t key_hash(const char *s, size_t n)
{
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

/* An open-addressing index over the entries: most keys of a raw item are
 * not in the tree, and a miss usually costs one hash and no compare. */
static int index_keys(oc_keytree_t *t)
{
  size_t size = 8, i;
  while (size < t->n * 3)
    size *= 2;
  if (!(t->bucket = malloc(size * sizeof *t->bucket)))
    return -1;
  t->mask = size - 1;
  for (i = 0; i <= t->mask; i++)
    t->bucket[i] = -1;
  for (i = 0; i < t->n; i++) {
    size_t b = key_hash(t->entry[i].key, t->entry[i].len) & t->mask;
    while (t->bucket[b] >= 0)
      b = (b + 1) & t->mask;
    t->bucket[b] = (int)i;
  }
  return 0;
}

static oc_keytree_t *keytree_from_jv(jv tree)
{
  oc_keytree_t *t = calloc(1, sizeof *t);
  int n = jv_object_length(jv_copy(tree)), fail = 0;
  if (!t || !(t->entry = calloc(n ? (size_t)n : 1, sizeof *t->entry))) {
    free(t);
    return NULL;
  }
  jv_object_foreach(tree, key, val) {
    oc_keytree_entry_t *e = &t->entry[t->n++];
    e->jkey = key;
    e->key = jv_string_value(key);
    e->len = (size_t)jv_string_length_bytes(jv_copy(key));
    if (jv_get_kind(val) == JV_KIND_OBJECT && !(e->sub = keytree_from_jv(val)))
      fail = 1;
    jv_free(val);
  }
  qsort(t->entry, t->n, sizeof *t->entry, cmp_entry);
  if (!fail && index_keys(t))
    fail = 1;
  if (fail) {
    oc_keytree_free(t);
    return NULL;
  }
  return t;
}

oc_keytree_t *oc_keytree_from_paths(jv paths)
{
  jv tree = jv_object();
  oc_keytree_t *t;
  int i, n = jv_array_length(jv_copy(paths));
  for (i = 0; i < n; i++) {
    jv p = jv_array_get(jv_copy(paths), i);
    tree = merge_path(tree, p, 0);
    jv_free(p);
  }
  t = jv_get_kind(tree) == JV_KIND_OBJECT ? keytree_from_jv(tree) : NULL;
  jv_free(tree);
  return t;
}

void oc_keytree_free(oc_keytree_t *t)
{
  size_t i;
  if (!t)
    return;
  for (i = 0; i < t->n; i++) {
    jv_free(t->entry[i].jkey);
    oc_keytree_free(t->entry[i].sub);
  }
  free(t->entry);
  free(t->bucket);
  free(t);
}

const oc_keytree_entry_t *oc_keytree_find(const oc_keytree_t *t,
                                          const char *s, size_t n)
{
  size_t b = key_hash(s, n) & t->mask;
  int k;
  while ((k = t->bucket[b]) >= 0) {
    const oc_keytree_entry_t *e = &t->entry[k];
    if (e->len == n && !memcmp(e->key, s, n))
      return e;
    b = (b + 1) & t->mask;
  }
  return NULL;
}

/* }==================== */
