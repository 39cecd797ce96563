/*
 * mapping_parse.c - raw JSON text to jv for a mapping: the engine's SAX
 * scanner (json.c) with a builder that materialises only the part of each
 * item the mapping reads (its key tree, see mapping.h). Skipped values
 * are scanned and validated but never become jv values, which is where a
 * parse spends its time with libjq 1.6 (~200 ns per object member).
 *
 * Errors and positions are the scanner's: line/column and a short excerpt,
 * never the input. Owns nothing beyond a call.
 */
#include "mapping_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pframe {
  jv container;
  jv key;                        /* objects: the pending member's key */
  const oc_keytree_t *tree;      /* objects: keys kept; NULL: all */
  const oc_keytree_t *next;      /* the pending member's own tree */
} pframe_t;

typedef struct pbuilder {
  pframe_t *st;
  int top, cap;
  const oc_keytree_t *root;      /* tree of a top-level item */
  oc_keycache_t *kc;
  int skip;                      /* depth inside a skipped value */
  int skip_value;                /* the next value is skipped */
  jv result;
  int done;
  oc_json_each_fn each;          /* streaming: one call per item */
  void *each_ud;
  size_t count;
  int stream_array;
  oc_json_parser_t *parser;
} pbuilder_t;

/* Is this value (a container when container != 0) skipped? */
static int skipping(pbuilder_t *b, int container)
{
  if (b->skip) {
    b->skip += container;
    return 1;
  }
  if (b->skip_value) {
    b->skip_value = 0;
    b->skip = container;
    return 1;
  }
  return 0;
}

static int pb_add(pbuilder_t *b, jv v)
{
  pframe_t *f;
  if (b->top < 0) {
    if (b->each) {
      if (b->each(v, b->count++, b->each_ud)) {
        snprintf(b->parser->err, sizeof b->parser->err, "item %zu rejected",
                 b->count);
        return -1;
      }
      return 0;
    }
    b->result = v;
    b->done = 1;
    return 0;
  }
  f = &b->st[b->top];
  if (jv_get_kind(f->container) == JV_KIND_ARRAY) {
    f->container = jv_array_append(f->container, v);
  } else {
    f->container = jv_object_set(f->container, f->key, v);
    f->key = jv_invalid();
  }
  return 0;
}

static int pb_push(pbuilder_t *b, jv container, const oc_keytree_t *tree)
{
  if (b->top + 1 >= b->cap) {
    int cap = b->cap ? b->cap * 2 : 16;
    pframe_t *st = realloc(b->st, sizeof *st * (size_t)cap);
    if (!st) {
      jv_free(container);
      snprintf(b->parser->err, sizeof b->parser->err, "out of memory");
      return -1;
    }
    b->st = st;
    b->cap = cap;
  }
  b->top++;
  b->st[b->top].container = container;
  b->st[b->top].key = jv_invalid();
  b->st[b->top].tree = tree;
  b->st[b->top].next = NULL;
  return 0;
}

static int pb_null(void *ud)
{
  return skipping(ud, 0) ? 0 : pb_add(ud, jv_null());
}

static int pb_bool(void *ud, int v)
{
  return skipping(ud, 0) ? 0 : pb_add(ud, jv_bool(v));
}

static int pb_number(void *ud, double d, const char *t, size_t n)
{
  return skipping(ud, 0) ? 0 : pb_add(ud, oc_json_number_jv(d, t, n));
}

static int pb_string(void *ud, const char *s, size_t n)
{
  return skipping(ud, 0) ? 0 : pb_add(ud, jv_string_sized(s, (int)n));
}

static int pb_key(void *ud, const char *s, size_t n)
{
  pbuilder_t *b = ud;
  pframe_t *f;
  if (b->skip)
    return 0;
  f = &b->st[b->top];
  if (f->tree) {
    const oc_keytree_entry_t *e = oc_keytree_find(f->tree, s, n);
    if (!e) {
      b->skip_value = 1;
      return 0;
    }
    f->key = jv_copy(e->jkey);
    f->next = e->sub;
    return 0;
  }
  f->key = oc_keycache_get(b->kc, s, n);
  f->next = NULL;
  return 0;
}

static int pb_begin_object(void *ud)
{
  pbuilder_t *b = ud;
  const oc_keytree_t *tree = NULL;
  if (skipping(b, 1))
    return 0;
  if (b->top < 0)
    tree = b->root;
  else if (jv_get_kind(b->st[b->top].container) == JV_KIND_OBJECT)
    tree = b->st[b->top].next;
  return pb_push(b, jv_object(), tree);
}

static int pb_begin_array(void *ud)
{
  pbuilder_t *b = ud;
  if (skipping(b, 1))
    return 0;
  if (b->each && b->top < 0 && !b->stream_array && b->count == 0) {
    b->stream_array = 1;         /* its elements are the items */
    return 0;
  }
  return pb_push(b, jv_array(), NULL);
}

static int pb_end(void *ud)
{
  pbuilder_t *b = ud;
  jv v;
  if (b->skip) {
    b->skip--;
    return 0;
  }
  if (b->top < 0 && b->stream_array) {
    b->stream_array = 0;
    return 0;
  }
  v = b->st[b->top].container;
  jv_free(b->st[b->top].key);
  b->top--;
  return pb_add(b, v);
}

static const oc_json_sax_t pb_sax = {
  pb_null, pb_bool, pb_number, pb_string, pb_key,
  pb_begin_object, pb_end, pb_begin_array, pb_end
};

static void pb_init(pbuilder_t *b, oc_mapping_t *m, oc_json_parser_t *p)
{
  memset(b, 0, sizeof *b);
  b->top = -1;
  b->root = m->keys;
  b->kc = m->kc;
  b->parser = p;
  b->result = jv_invalid();
}

static void pb_free(pbuilder_t *b)
{
  while (b->top >= 0) {
    jv_free(b->st[b->top].container);
    jv_free(b->st[b->top].key);
    b->top--;
  }
  free(b->st);
}

jv oc_mapping_parse_item(oc_mapping_t *m, const char *s, size_t n,
                         char *err, size_t errlen)
{
  pbuilder_t b;
  oc_json_parser_t p;
  size_t used;
  int rc;
  oc_json_parser_init(&p, &pb_sax, &b, m->max_depth);
  pb_init(&b, m, &p);
  rc = oc_json_parse_value(&p, s, n, &used);
  if (rc == 0 && used != n) {
    char where[64];
    p.s = s + used;
    oc_json_parser_where(&p, where, sizeof where);
    snprintf(p.err, sizeof p.err, "invalid JSON at %s: unexpected data "
             "after the JSON value", where);
    rc = -1;
  }
  if (rc) {
    snprintf(err, errlen, "%s", p.err);
    if (b.done)
      jv_free(b.result);
    b.result = jv_invalid();
  }
  pb_free(&b);
  oc_json_parser_free(&p);
  return b.result;
}

jv oc_mapping_parse_at(oc_mapping_t *m, const char *s, size_t n, size_t off,
                       size_t *used, char *err, size_t errlen)
{
  pbuilder_t b;
  oc_json_parser_t p;
  int rc;
  oc_json_parser_init(&p, &pb_sax, &b, m->max_depth);
  pb_init(&b, m, &p);
  rc = oc_json_parse_next(&p, s, n, off, used);
  if (rc) {
    snprintf(err, errlen, "%s", p.err[0] ? p.err : "invalid JSON");
    if (b.done)
      jv_free(b.result);
    b.result = jv_invalid();
  }
  pb_free(&b);
  oc_json_parser_free(&p);
  return b.result;
}

int oc_mapping_each_json(oc_mapping_t *m, const char *s, size_t n,
                         oc_json_each_fn each, void *ud, char *err,
                         size_t errlen)
{
  pbuilder_t b;
  oc_json_parser_t p;
  int rc;
  oc_json_parser_init(&p, &pb_sax, &b, m->max_depth);
  pb_init(&b, m, &p);
  b.each = each;
  b.each_ud = ud;
  rc = oc_json_parse_stream(&p, s, n);
  if (rc)
    snprintf(err, errlen, "%s", p.err[0] ? p.err : "invalid JSON");
  pb_free(&b);
  oc_json_parser_free(&p);
  return rc;
}
