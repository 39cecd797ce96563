/*
 * port_int.h - what the Port client's files share: port.c (jobs,
 * requests, token), port_calls.c (call, search, token job),
 * port_entities.c (bulk upsert, bulk delete, owned listing) and
 * port_util.c (errors, parsing, query strings).
 *
 * A job owns its requests (preq). A preq is one Port call: it waits for
 * the token if it needs one, goes to the loop, and is resent once after a
 * 401. When it ends, the preq layer calls its handler with either Port's
 * answer (res, any status) or a failure without an answer (err), then
 * frees it; the job finishes (its done callback runs) when it has no
 * request left.
 */
#ifndef OC_PORT_INT_H
#define OC_PORT_INT_H

#include "port.h"

typedef struct preq preq_t;
typedef struct pjob pjob_t;

/* res and err are borrowed; exactly one is non-NULL, except for a
 * no-send preq (token job), which gets neither. */
typedef void (*preq_fn)(preq_t *p, const oc_response_t *res,
                        const oc_port_error_t *err);

struct preq {
  preq_t *prev, *next;           /* the job's requests */
  preq_t *wprev, *wnext;         /* waiting for the token */
  oc_port_t *port;
  pjob_t *job;
  int state;                     /* P_* in port.c */
  int flags;                     /* OC_PORT_* */
  int nosend;                    /* only waits for the token */
  int resent;                    /* resent after a 401 already */
  unsigned token_gen;            /* token it was sent with */
  uint64_t xfer;                 /* transfer or deferral timer */
  char method[8];
  char *path;                    /* "/v1/..." without query (for errors) */
  char *tail;                    /* path + "?" + query */
  char *body;
  size_t body_len;
  oc_port_error_t *deferred;     /* failure delivered by a timer */
  preq_fn handler;
  void *data;                    /* the kind's request state */
  void (*free_data)(void *);
};

struct pjob {
  pjob_t *prev, *next;
  uint64_t id;
  oc_port_t *port;
  preq_t *reqs;
  int busy;                      /* inside one of its callbacks */
  unsigned requests, failed;
  oc_port_error_t *error;        /* first request-level failure */
  void (*finish)(pjob_t *j);     /* runs the user's final callback */
  void *state;                   /* the kind's job state */
  void (*free_state)(void *);
  void *ud;
};

struct oc_port {
  oc_loop_t *loop;               /* NULL once the loop is gone */
  char *api;                     /* base_url, no trailing "/" */
  char *client_id, *client_secret, *type, *identifier;
  char *ua, *ua_exporter;        /* "User-Agent: ..." lines */
  char *token;                   /* NULL: none */
  char *auth;                    /* "Authorization: <type> <token>" */
  int64_t token_expires;
  unsigned token_gen;
  uint64_t token_xfer;           /* fetch in flight */
  int64_t creds_failed_until;
  oc_port_error_t *creds_error;
  int64_t down_until;            /* Port unreachable: fail fast until */
  oc_port_error_t *down_error;   /* ... with this (NULL: Port answers) */
  preq_t *whead, *wtail;         /* waiting for the token */
  pjob_t *jobs;
  uint64_t next_job;
  oc_retry_t retry, token_retry;
  long timeout_ms, auth_failure_ttl_ms;
  int insecure;
  unsigned bulk_max_entities, delete_batch, list_limit;
  size_t bulk_max_bytes;
  oc_keycache_t *kc;
  uint64_t requests, token_fetches;
};

/* port.c, for port_entities.c */
pjob_t *oc_pjob_new(oc_port_t *P, void *ud, char *err, size_t errlen);
void oc_pjob_abort(pjob_t *j);   /* free without callbacks */
/* A preq of job j; takes body (malloc'd) whatever happens. NULL on OOM. */
preq_t *oc_preq_new(pjob_t *j, const char *method, const char *path,
                    const char *query, char *body, size_t body_len,
                    int flags, preq_fn handler);
/* A job with nothing to send finishes inside the next wait. */
void oc_pjob_finish_soon(pjob_t *j);
/* Send it (or queue it behind the token). */
void oc_preq_send(preq_t *p);
/* Fill e from a non-success answer (scrubbed, message formatted). */
void oc_port_error_from_response(oc_port_t *P, const char *method,
                                 const char *path, const oc_response_t *res,
                                 oc_port_error_t *e);
/* e = "Port <method> <path> failed: <what>" with status. */
void oc_port_error_set(oc_port_error_t *e, int status, const char *method,
                       const char *path, const char *what);
/* Remember the job's first request-level failure, count it. */
void oc_pjob_note_error(pjob_t *j, const oc_port_error_t *e);
/* Query string for the event context ("" or "&ocean_info_..."). */
void oc_port_add_event(oc_buf_t *q, const oc_port_event_t *ev);
/* Parse Port's JSON answer; jv_invalid() (and e set) when not JSON. */
jv oc_port_parse(oc_port_t *P, const char *method, const char *path,
                 const oc_response_t *res, oc_port_error_t *e);
/* Mask the client secret and the current token in e's message and body. */
void oc_port_scrub(oc_port_t *P, oc_port_error_t *e);
/* "<status> <code>: <message> (after N attempts; trace id ...)" of an
 * answer into detail; sets e->code and e->trace_id. */
void oc_port_describe_answer(const oc_response_t *res, oc_port_error_t *e,
                             char *detail, size_t dlen);
/* Keep (up to 2 KB of) Port's answer in e->body. */
void oc_port_keep_body(const oc_response_t *res, oc_port_error_t *e);
/* Append "&k=v" (escaped) to a query string. */
void oc_port_add_param(oc_buf_t *q, const char *k, const char *v);
/* A JSON string member of an object, or NULL (borrowed from o). */
const char *oc_jv_str(jv o, const char *key);

#endif
