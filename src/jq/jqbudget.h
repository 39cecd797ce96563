/*
 * jqbudget.h - the budget that jq programs run under: a wall-clock limit
 * and a memory cap per item, enforced by a watchdog thread that halts the
 * interpreter (jq_halt), plus a large private stack for libjq's recursive
 * C code and recovery from libjq's out-of-memory abort.
 *
 * Why each part (see docs/jq.md for the decision record):
 *   - libjq checks jq->halted before every opcode (1.6 and 1.7.1), so a
 *     jq_halt from another thread stops any program that keeps returning
 *     to the interpreter loop (`def f: f; f`, `last(range(1e15))`, a
 *     growing `[range(1e12)]`). Every halt of a budgeted jq_state goes
 *     through oc_budget_halt / the watchdog under one mutex, so jq_halt is
 *     never called twice on a halted state (libjq asserts !halted).
 *   - libjq frees, compares and prints values recursively in C; a value
 *     nested a few hundred thousand levels deep (cheap to build with
 *     `reduce range(n) as $i (null; [.])`) overflows an 8 MB stack. Work
 *     given to oc_budget_call runs on a 1 GiB stack (reserved, committed
 *     as touched, released after deep use), where the memory cap bounds
 *     the depth long before the stack ends.
 *   - libjq's jv_mem_alloc aborts the process when malloc fails, after
 *     calling a handler "that may longjmp to safety": inside
 *     oc_budget_call it does, and the call returns OC_BUDGET_NOMEM (the
 *     jq_state it was using must then be abandoned, never reused).
 *   - SIGINT/SIGTERM/SIGQUIT/SIGHUP pending (blocked: `ocean sail` reads them
 *     through a signalfd, and the big stack runs with every signal
 *     blocked) halt the item within OC_BUDGET_POLL_MS.
 *
 * Memory is the growth of the process's resident set (/proc/self/statm)
 * from the watchdog's first look at the item (within OC_BUDGET_POLL_MS of
 * its start); time is CLOCK_MONOTONIC from oc_budget_arm.
 *
 * One budget serves one thread (an engine, a Lua state); mappings hold a
 * reference. No global state. Owns: the watchdog thread, the stack.
 */
#ifndef OC_JQBUDGET_H
#define OC_JQBUDGET_H

#include <stddef.h>
#include <jq.h>

#define OC_BUDGET_POLL_MS 10            /* watchdog period while armed */
#define OC_BUDGET_DEFAULT_SECONDS 5.0
#define OC_BUDGET_DEFAULT_BYTES ((size_t)256 << 20)

/* Why an armed item was stopped (oc_budget_breach). */
enum {
  OC_BREACH_NONE = 0,
  OC_BREACH_TIME,                       /* wall-clock limit */
  OC_BREACH_MEMORY,                     /* resident-set growth */
  OC_BREACH_SIGNAL,                     /* a stop signal is pending */
  OC_BREACH_NOMEM,                      /* malloc failed inside libjq */
  OC_BREACH_SIZE                        /* a builtin would exceed the cap */
};

/* oc_budget_call results. */
#define OC_BUDGET_OK 0
#define OC_BUDGET_NOMEM (-1)

typedef struct oc_budget oc_budget_t;

/* A new budget with the default limits and one reference; NULL when out
 * of memory. Nothing starts until the first oc_budget_arm. */
oc_budget_t *oc_budget_new(void);
oc_budget_t *oc_budget_ref(oc_budget_t *b);
/* Drop a reference; the last one stops the watchdog and frees the stack
 * (must not be called from inside oc_budget_call). NULL is ignored. */
void oc_budget_unref(oc_budget_t *b);

/* Run fn(ud) on the budget's stack with every signal blocked (directly
 * on the caller's stack when no big stack could be had). Returns
 * OC_BUDGET_OK, or OC_BUDGET_NOMEM when libjq ran out of memory inside:
 * fn was cut short with a longjmp, so whatever jq_state it used is in an
 * unknown state. A call from inside a call runs fn directly (an
 * out-of-memory escape then ends the outer call). */
int oc_budget_call(oc_budget_t *b, void (*fn)(void *), void *ud);
/* Give jq's out-of-memory handler to the budget (once per jq_state). */
void oc_budget_watch_nomem(oc_budget_t *b, jq_state *jq);

/* Start measuring one item evaluated by jq (borrowed until disarm):
 * seconds <= 0 / bytes == 0 mean no limit of that kind. Starts the
 * watchdog thread on first use (and again in a forked child). */
void oc_budget_arm(oc_budget_t *b, jq_state *jq, double seconds,
                   size_t bytes);
/* Stop measuring; returns the breach that stopped the item, if any. */
int oc_budget_disarm(oc_budget_t *b);
/* The breach so far (OC_BREACH_NONE while the item may go on). */
int oc_budget_breach(oc_budget_t *b);
/* Halt the armed jq_state from inside the interpreter (a callback):
 * breach OC_BREACH_NONE for a halt of our own (control flow), else the
 * reason recorded for the item. Safe against the watchdog halting too. */
void oc_budget_halt(oc_budget_t *b, int breach);
/* "time limit of 5 s", "memory limit of 256 MiB", ... for messages, with
 * the limits of the armed item. */
void oc_budget_describe(const oc_budget_t *b, int breach, char *out,
                        size_t outlen);

#endif
