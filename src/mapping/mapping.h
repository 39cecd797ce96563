/*
 * mapping.h - one resource of a port app config compiled into ONE jq
 * program; raw items in, Port entities and a report out.
 *
 * A resource is the JSON form of one entry of the config's `resources`:
 *   {"kind": "...", "selector": {"query": <jq>},
 *    "port": {"itemsToParse": <jq>, "itemsToParseName": "item",
 *             "itemsToParseTopLevelTransform": true,
 *             "entity": {"mappings": {"identifier": <jq | search query>,
 *                "blueprint": <jq>, "title": <jq>, "icon": <jq>,
 *                "team": <jq | search query>, "properties": {name: <jq>},
 *                "relations": {name: <jq | search query>}}}}}
 * (snake_case spellings of the itemsToParse keys are accepted too).
 *
 * Every leaf of the mapping is a jq expression; a leaf that is not a string
 * (a YAML true, 5, null) is used as its JSON text (`true`, `5`, `null`).
 * Search queries (objects/lists under identifier, team and relations.<r>)
 * are evaluated leaf by leaf. The leaves are numbered 0..n-1 in a fixed
 * order (identifier, title, blueprint, icon, team, properties by name,
 * relations by name; depth first inside search queries) and named by a
 * dotted path without list indexes ("properties.url",
 * "identifier.rules.value"); several leaves can share a path.
 *
 * Semantics per raw item (first output of every expression, as Ocean):
 *   - the selector's first output must be a boolean, else item error;
 *   - false: no entity (or, with parse_all, an entity reported not passed);
 *   - a field whose expression errors or produces nothing is null; every
 *     null field is flagged misconfigured (a legitimate null too);
 *   - an entity whose identifier or blueprint is falsy in Ocean's (Python)
 *     sense (null, false, 0, "", [], {}) is dropped with a reason;
 *   - itemsToParse: the expression must give an array (null: no
 *     children, as Ocean; anything else is an error); each element makes
 *     one input {<parent fields>, <itemsToParseName>: element}, and with
 *     the top-level transform the simple path the expression starts with
 *     (`.a.b`, `.a["b"]`) is deleted from the parent copy.
 *
 * How: one jq program per resource, compiled once (libjq 1.6 spends ~18 ms
 * per jq_compile). Expressions in a simple form (a literal, `.a.b`,
 * `.a == "x"`, `"x" + .a`) are evaluated in C with libjq's own jv_get /
 * jv_equal / `+` rules, the others in one jq run per item; and raw JSON is
 * materialised only where the expressions read it (oc_mapping_keytree).
 * Both are invisible in results, messages included (opts turn them off).
 *
 * jq is sandboxed unless allow_env: `env` and `$ENV` are {}. import and
 * include are refused; `input`/`inputs` see no input; halt/halt_error make
 * the item fail; `debug` and `stderr` write nothing (a server's stderr is
 * its log). A field value nested deeper than 256 levels, or larger than
 * the memory limit when written as JSON, counts as null. The dialect is
 * jq 1.7.1's on libjq 1.6 and 1.7.1 alike (jqprelude.h, docs/jq.md).
 *
 * Budget (jqbudget.h): each input item is evaluated under a wall-clock
 * limit and a memory cap. A breach, or a builtin that would allocate past
 * the cap, fails the item with "<field path>: the mapping expression
 * exceeded the time limit (5 s)" (or the memory limit), so that its kind
 * fails and nothing is deleted. No mapping expression can crash the
 * process: docs/jq.md lists the ways libjq could and what stops each.
 *
 * Owns: the jq_state, a key cache for parsing raw JSON, the field table.
 * No global state: several mappings (and engines) coexist; a mapping is
 * used by one thread at a time.
 */
#ifndef OC_MAPPING_H
#define OC_MAPPING_H

#include <stddef.h>
#include <jv.h>

#include "jq/jqbudget.h"
#include "json/json.h"

#define OC_MAPPING_MSG_MAX 300   /* bytes kept of any jq error message */

typedef struct oc_mapping oc_mapping_t;

typedef struct oc_mapping_opts {
  int allow_env;                 /* env/$ENV see the process environment */
  int max_depth;                 /* raw JSON nesting bound; 0: default */
  int no_projection;             /* parse whole items (see keytree) */
  int no_native;                 /* run every expression with jq */
  unsigned long *compile_count;  /* optional: +1 per jq_compile call */
  oc_budget_t *budget;           /* optional (a reference is taken): the
                                  * watchdog and stack; NULL: no limits */
  double time_limit;             /* seconds per item; <= 0: none */
  size_t mem_limit;              /* bytes per item; 0: none */
} oc_mapping_opts_t;

/* Results of oc_mapping_compile. */
#define OC_MAPPING_OK 0
#define OC_MAPPING_EINVAL (-1)   /* malformed resource (misuse) */
#define OC_MAPPING_EJQ (-2)      /* an expression does not compile */
#define OC_MAPPING_ENOMEM (-3)

/* Compile a resource (borrowed). On success *out owns the new mapping.
 * On failure returns one of the codes above with a message in err naming
 * the kind and the field, e.g. "kind 'repo': properties.url: invalid jq
 * expression '.a |': syntax error, ...". A compile error in any field
 * fails the whole resource (a kind with a broken mapping must not sync
 * half its fields). opts may be NULL. Costs one jq_compile (~18 ms with
 * libjq 1.6) whatever the number of fields; a failing compile costs one
 * more, to word the message for the broken field alone. */
int oc_mapping_compile(jv resource, const oc_mapping_opts_t *opts,
                       oc_mapping_t **out, char *err, size_t errlen);
void oc_mapping_free(oc_mapping_t *m);

/* The shape of the entities a mapping produces: objects and arrays whose
 * leaves are expression values. A node that is a member of an object has
 * its key in key/keylen (and as a shared jv string in jkey). */
enum { OC_T_VALUE, OC_T_OBJECT, OC_T_ARRAY };
typedef struct oc_tnode {
  int kind;
  size_t slot;                   /* OC_T_VALUE: index into view->value */
  const char *key;
  size_t keylen;
  jv jkey;
  size_t n;                      /* OC_T_OBJECT / OC_T_ARRAY: children */
  struct oc_tnode *child;
} oc_tnode_t;

/* An entity before it is built: the template and the values (borrowed,
 * valid during the callback). Lets a binding build its own form (e.g. Lua
 * tables) without building the jv first. */
typedef struct oc_mapping_view {
  const oc_tnode_t *entity;
  const jv *value;
} oc_mapping_view_t;

/* Where oc_mapping_run reports. All callbacks are optional. */
typedef struct oc_mapping_sink {
  /* A mapped entity (consumed by the callee); passed = selector true.
   * Returning non-zero stops the run (oc_mapping_run returns -1). */
  int (*entity)(void *ud, jv entity, int passed);
  /* Called instead of entity when set: the entity as a view. */
  int (*entity_view)(void *ud, const oc_mapping_view_t *view, int passed);
  /* The raw item failed (msg borrowed, valid during the call). Several
   * calls per raw item are possible with itemsToParse. */
  void (*error)(void *ud, const char *msg);
  /* An entity was dropped: its identifier or blueprint is falsy. */
  void (*dropped)(void *ud, const char *reason);
  /* An input failed the selector (not called with parse_all, where the
   * entity comes with passed = 0). */
  void (*filtered)(void *ud);
  /* itemsToParse gave something else than an array or null: the raw
   * item's children are unknown. Called instead of error when set. */
  void (*items_error)(void *ud, const char *msg);
  /* field_count flags; set to 1 for each field that came out null. */
  unsigned char *misconfigured;
  void *ud;
} oc_mapping_sink_t;

/* Map one raw item (consumed). Reports through sink; bad items (not an
 * object, selector not boolean, ...) are reported, not failures. Returns 0,
 * or -1 when the sink's entity callback stopped the run. */
int oc_mapping_run(oc_mapping_t *m, jv raw, int parse_all,
                   const oc_mapping_sink_t *sink);

/* Parse one JSON text as a raw item with the mapping's key cache and
 * nesting bound; jv_invalid() with err set on bad JSON (the message gives
 * line/column and a short excerpt, never the whole input). */
jv oc_mapping_parse_item(oc_mapping_t *m, const char *s, size_t n,
                         char *err, size_t errlen);
/* One JSON value at s + off (positions in messages count from s), as
 * oc_mapping_parse_item; *used: bytes consumed from off (trailing
 * whitespace included). With oc_json_cursor_next, a stream one element at
 * a time. */
jv oc_mapping_parse_at(oc_mapping_t *m, const char *s, size_t n, size_t off,
                       size_t *used, char *err, size_t errlen);
/* oc_json_each (a JSON array or NDJSON) with the mapping's key cache and
 * nesting bound. */
int oc_mapping_each_json(oc_mapping_t *m, const char *s, size_t n,
                         oc_json_each_fn each, void *ud, char *err,
                         size_t errlen);

/* The part of a raw item the mapping reads (its expressions were
 * analysed at compile time): per key, the whole value (sub == NULL) or,
 * when the value is an object, only the keys in sub. Entries are sorted
 * by key bytes (shorter first on a common prefix). Parsing and converting
 * only this part gives the same entities, errors and reports. NULL when
 * an expression may read anything (e.g. `.`, `keys`, `to_entries`). */
typedef struct oc_keytree oc_keytree_t;
typedef struct oc_keytree_entry {
  const char *key;
  size_t len;
  jv jkey;
  oc_keytree_t *sub;
} oc_keytree_entry_t;
struct oc_keytree {
  size_t n;
  oc_keytree_entry_t *entry;
  size_t mask;                   /* lookup index (oc_keytree_find) */
  int *bucket;
};
const oc_keytree_t *oc_mapping_keytree(const oc_mapping_t *m);
/* The entry for key s[0..n) in t, or NULL. */
const oc_keytree_entry_t *oc_keytree_find(const oc_keytree_t *t,
                                          const char *s, size_t n);

/* Accessors; strings are owned by the mapping. */
const char *oc_mapping_kind(const oc_mapping_t *m);
size_t oc_mapping_field_count(const oc_mapping_t *m);
const char *oc_mapping_field_path(const oc_mapping_t *m, size_t i);
/* The expression as written in the resource (JSON text for non-strings). */
const char *oc_mapping_field_expr(const oc_mapping_t *m, size_t i);
oc_keycache_t *oc_mapping_keycache(oc_mapping_t *m);
int oc_mapping_max_depth(const oc_mapping_t *m);

/* What the mapping writes, for comparing Port's copy of an entity:
 * {"title":bool,"icon":bool,"team":bool,"properties":[names],
 *  "relations":[names]} with names sorted. Returns a new reference. */
jv oc_mapping_signature(const oc_mapping_t *m);

#endif
