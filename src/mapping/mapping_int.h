/*
 * mapping_int.h - what the mapping files share (not a public header: the
 * engine uses mapping.h):
 *   mapping.c        resource model, compile orchestration, accessors
 *   mapping_tree.c   entity template (oc_tnode_t) and key tree
 *   mapping_prog.c   the jq program: text, compile, running it
 *   mapping_run.c    one raw item: selector, values, entity, report
 *   mapping_parse.c  JSON text -> jv, reading only the key tree
 *
 * Slots: every expression of a resource is one slot. Slot 0 is the
 * selector, slots 1..nfields the mapping fields (field i is slot i + 1),
 * and slot nfields + 1 the itemsToParse expression when there is one.
 * A slot in a simple form (jqform.h) is evaluated in C ("native"); the
 * others run in the jq program.
 */
#ifndef OC_MAPPING_INT_H
#define OC_MAPPING_INT_H

#include <jq.h>

#include "jq/jqform.h"
#include "mapping.h"

/* Program entry points. An object input runs the fast mode; an array
 * input [mode, item] one of the others (see mapping_prog.c). */
enum {
  OC_MODE_FAST = 0,              /* jq slots' first outputs, gated by sel */
  OC_MODE_FAST_ALL = 1,          /* the same, not gated */
  OC_MODE_SELECTOR = 2,          /* slot stream of the selector */
  OC_MODE_FIELDS = 3,            /* slot stream of the jq fields */
  OC_MODE_ITEMS = 4              /* slot stream of itemsToParse */
};

typedef struct oc_slot {
  char *path;                    /* "properties.url", "selector.query" */
  char *expr;                    /* as written (JSON text if not a string) */
  char *code;                    /* rewritten for libjq */
  int line0, line1;              /* its lines in the program text */
  oc_jq_form_t form;             /* kind OC_JQ_COMPLEX: runs in jq */
} oc_slot_t;

/* What one slot produced for one item. */
enum { OC_SLOT_NONE = 0, OC_SLOT_VALUE, OC_SLOT_ERROR };

struct oc_mapping {
  char *kind;
  jq_state *jq;
  oc_keycache_t *kc;
  int max_depth, allow_env;
  unsigned long *compile_count;
  oc_slot_t *slot;               /* nslots entries */
  size_t nslots, nfields;
  int has_items;
  size_t *fast;                  /* jq slots in the fast output, in order */
  size_t nfast;
  size_t njq_fields;             /* jq slots among the fields */
  jv items_name;                 /* string */
  jv items_path;                 /* array of keys, or invalid: no delete */
  jv tmpl;                       /* template as jv (leaves: slot numbers) */
  oc_tnode_t *entity;            /* the template */
  const oc_tnode_t *id_node, *bp_node;
  oc_keytree_t *keys;            /* NULL: whole items */
  jv sig;
  jv mode[5];
  /* compile errors (error callback) */
  char jq_err[OC_ERR_SIZE];
  int jq_err_line;
  /* per item scratch: one entry per slot */
  jv *val;
  unsigned char *state;
  int halted;
  char halt_msg[OC_MAPPING_MSG_MAX + 64];
};

/* mapping_tree.c */
oc_tnode_t *oc_tnode_from_jv(jv tmpl);        /* tmpl borrowed */
void oc_tnode_free(oc_tnode_t *t);
const oc_tnode_t *oc_tnode_member(const oc_tnode_t *t, const char *key);
jv oc_tnode_build(const oc_tnode_t *t, const jv *value);
/* paths: jv array of key arrays (borrowed); NULL on allocation failure */
oc_keytree_t *oc_keytree_from_paths(jv paths);
void oc_keytree_free(oc_keytree_t *t);

/* mapping_prog.c */
int oc_mapping_prog_compile(oc_mapping_t *m, char *err, size_t errlen);
/* Evaluate the program in a slot-stream mode on input (consumed), filling
 * m->val / m->state for the slots it reports (first report wins). */
void oc_mapping_prog_slots(oc_mapping_t *m, int mode, jv input);
/* The first output of a fast mode on input (consumed): an array with one
 * value per m->fast entry (just the selector when it gated), or
 * jv_invalid() when some expression failed (then use the slot modes). */
jv oc_mapping_prog_fast(oc_mapping_t *m, int mode, jv input);
void oc_mapping_slots_reset(oc_mapping_t *m);

/* Copy a jq error message (any jv, borrowed) into out, at most
 * OC_MAPPING_MSG_MAX bytes and cut on a UTF-8 boundary ("..." appended). */
void oc_mapping_errmsg(jv msg, char *out, size_t outlen);
/* Short description of a value for messages: "null", "\"abc\"", "5",
 * "an object", "an array", "[]", "{}". v borrowed. */
void oc_mapping_describe(jv v, char *out, size_t outlen);

#endif
