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

#include "jq/jqbudget.h"
#include "jq/jqform.h"
#include "mapping.h"

typedef struct oc_slot {
  char *path;                    /* "properties.url", "selector.query" */
  char *expr;                    /* as written (JSON text if not a string) */
  char *code;                    /* rewritten for libjq */
  int line0, line1;              /* its lines in the program text */
  oc_jq_form_t form;             /* kind OC_JQ_COMPLEX: runs in jq */
  int single;                    /* at most one output: no break needed */
  int halt_style;                /* its first output stops the run (below) */
} oc_slot_t;

/* What one slot produced for one item. OC_SLOT_BIG: a value nested deeper
 * than OC_MAPPING_MAX_VALUE_DEPTH or larger than the memory limit when
 * written out, already freed (on the budget's stack). */
enum { OC_SLOT_NONE = 0, OC_SLOT_VALUE, OC_SLOT_ERROR, OC_SLOT_BIG };

#define OC_MAPPING_MAX_VALUE_DEPTH 256

/* A run of the program (mapping_prog.c): which chain position reports
 * next, and what stopped it. */
typedef struct oc_run {
  size_t next;                   /* chain position expected to report */
  size_t last;                   /* chain position that ends this run */
  int end;                       /* the end marker came */
  int stop;                      /* the item is decided: no more runs */
  int restart;                   /* halted after a value: run again */
  int parse_all;
  jv ffi;                        /* pending C builtin request, or invalid */
} oc_run_t;

struct oc_mapping {
  char *kind;
  jq_state *jq;                  /* NULL after an out-of-memory escape */
  oc_keycache_t *kc;
  int max_depth, allow_env, jq17;
  int guard_divide, path_wrap;   /* program text options (mapping_prog.c) */
  unsigned long *compile_count;
  oc_budget_t *budget;           /* may be NULL: no limits, own stack */
  double time_limit;             /* seconds; 0: none */
  size_t mem_limit;              /* bytes; 0: none */
  char *text;                    /* the program (to recompile after OOM) */
  oc_slot_t *slot;               /* nslots entries */
  size_t nslots, nfields;
  int has_items;
  size_t *chain;                 /* jq slots of selector+fields, in order */
  size_t nchain;                 /* position nchain: the itemsToParse run */
  size_t njq_fields;             /* jq slots among the fields */
  jv items_name;                 /* string */
  jv items_path;                 /* array of keys, or invalid: no delete */
  jv tmpl;                       /* template as jv (leaves: slot numbers) */
  oc_tnode_t *entity;            /* the template */
  const oc_tnode_t *id_node, *bp_node;
  oc_keytree_t *keys;            /* NULL: whole items */
  jv sig;
  /* compile errors (error callback) */
  char jq_err[OC_ERR_SIZE];
  int jq_err_line;
  /* per item scratch: one entry per slot */
  jv *val;
  unsigned char *state;
  oc_run_t run;
  int halted;                    /* the item failed as a whole: halt_msg */
  char halt_msg[OC_MAPPING_MSG_MAX + 160];
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
/* Build and compile the program (on the budget's stack). */
int oc_mapping_prog_compile(oc_mapping_t *m, char *err, size_t errlen);
/* Run the chain from position from (nchain: the itemsToParse slot) on
 * input (borrowed), filling m->val / m->state of the jq slots that report;
 * the selector (chain position 0 when it runs in jq) decides whether the
 * fields run (run.parse_all). Must be called inside the budget's armed
 * call; a breach or a halt sets m->halted. */
void oc_mapping_prog_eval(oc_mapping_t *m, size_t from, jv input,
                          int parse_all);
/* The slot the last run was evaluating (for messages). */
size_t oc_mapping_prog_slot(const oc_mapping_t *m);
/* Tear the jq_state down (on the budget's stack). */
void oc_mapping_prog_free(oc_mapping_t *m);
void oc_mapping_slots_reset(oc_mapping_t *m);

/* Copy a jq error message (any jv, borrowed) into out, at most
 * OC_MAPPING_MSG_MAX bytes and cut on a UTF-8 boundary ("..." appended). */
void oc_mapping_errmsg(jv msg, char *out, size_t outlen);
/* Short description of a value for messages: "null", "\"abc\"", "5",
 * "an object", "an array", "[]", "{}". v borrowed. */
void oc_mapping_describe(jv v, char *out, size_t outlen);

#endif
