/*
 * jqprelude.h - the jq definitions every mapping program starts with:
 * Ocean's jq dialect (jq 1.7.1's builtins and results on libjq 1.6, the
 * jq 1.8 additions Ocean mappings meet), the sandbox of the engine
 * (debug/stderr/input/halt never reach the process), and guards that
 * stop a builtin before it runs away inside libjq's C code. docs/jq.md
 * has the table; jqlib.h is the C side.
 */
#ifndef OC_JQPRELUDE_H
#define OC_JQPRELUDE_H

#include "json/buf.h"

/* Append the prelude for libjq 1.7+ (jq17) or 1.6 to p: definitions
 * only, each line ending in ';' or '\n', no catch constructs (see
 * oc_jq_catches) so that a slot's break is never swallowed by them.
 * guard_divide: with the guard of `/` (jqanalyze.h oc_jq_may_split). */
void oc_jq_prelude(oc_buf_t *p, int jq17, int guard_divide);

/* Whether the libjq the module runs with is 1.7 or later. */
int oc_jq_is_17(void);

#endif
