/*
 * port.h - the Port REST client, asynchronous, on top of the event loop.
 *
 * What it owns: the access token (fetched once, cached until shortly
 * before it expires, refreshed once when a call gets 401), the
 * User-Agent that makes Port record this integration as the datasource,
 * the request splitting of bulk calls, and the mapping of Port's answers
 * to per-entity results and structured errors.
 *
 * Every operation is a job: the oc_port_* call returns a job id (> 0) at
 * once, or 0 with a message in err when the arguments are wrong or the
 * loop is closed. The job's callbacks run later, inside oc_loop_wait(),
 * never from the submitting call. Callbacks may start new jobs and cancel
 * OTHER jobs; they must not cancel their own job or free the client.
 * Strings and errors handed to callbacks are borrowed: valid only during
 * the call (copy what you keep; oc_port_error_dup()).
 *
 * Secrets: the client secret and the tokens never appear in an error, a
 * message or a stored body (anything Port echoes is masked with '*').
 *
 * Token rules (beyond Ocean): one token fetch at a time, calls needing a
 * token wait for it; the token is considered expired min(60 s, 10 % of
 * its lifetime) before `expiresIn` says (Ocean uses no margin); 401 or 403
 * from the token endpoint fails every waiting call at once with "invalid
 * Port credentials (client id '<id>'): Port answered 401 ..." and new
 * calls fail the same way, without asking Port, for auth_failure_ttl_ms.
 */
#ifndef OC_PORT_H
#define OC_PORT_H

#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "json/buf.h"
#include "json/json.h"
#include "net/loop.h"

typedef struct oc_port oc_port_t;

typedef struct oc_port_cfg {
  const char *base_url;          /* e.g. "https://api.getport.io"; the API
                                    is <base_url>/v1 */
  const char *client_id;
  const char *client_secret;
  const char *integration_type;       /* User-Agent and ownership */
  const char *integration_identifier;
  const char *integration_version;
  int insecure;                  /* 1: do not verify TLS peers */
  long timeout_ms;               /* per attempt; 0: 60 s */
  const oc_retry_t *retry;       /* NULL: oc_retry_port_defaults() */
  unsigned bulk_max_entities;    /* per bulk upsert; 0: 20 */
  size_t bulk_max_bytes;         /* per bulk upsert body; 0: 1 MiB */
  unsigned delete_batch;         /* ids per bulk delete; 0: 100 */
  unsigned list_limit;           /* page size of the owned listing; 0: 5000 */
  long auth_failure_ttl_ms;      /* 0: 10 s */
} oc_port_cfg_t;

#define OC_PORT_ERR_BODY_MAX 2048

/* A failed request, or a failed job. */
typedef struct oc_port_error {
  int status;                    /* HTTP status; 0: no answer */
  char method[8];
  char path[256];                /* "/v1/...", without the query */
  char code[64];                 /* Port's "error" field, e.g. "not_found" */
  char trace_id[128];            /* Port's x-trace-id */
  char message[OC_ERR_SIZE];     /* "Port POST /v1/... failed: 422
                                    invalid_request: ... (trace id ...)" */
  char *body;                    /* Port's answer, at most 2 KB; or NULL */
  size_t body_len;
} oc_port_error_t;

/* A copy owned by the caller (NULL on OOM), and its release. */
oc_port_error_t *oc_port_error_dup(const oc_port_error_t *e);
void oc_port_error_free(oc_port_error_t *e);

/* Create a client on `loop` (which must outlive it, or be freed first:
 * the client then fails every new call). NULL with err on bad config. */
oc_port_t *oc_port_new(oc_loop_t *loop, const oc_port_cfg_t *cfg, char *err,
                       size_t errlen);
/* Cancel every job (no callbacks) and free. NULL is a no-op. */
void oc_port_free(oc_port_t *port);
/* Forget a job: its callbacks will not run. 0, or -1 if unknown/finished
 * or if called from that job's own callback. */
int oc_port_cancel(oc_port_t *port, uint64_t job);

/* Percent-encode s[0..n) for a path segment or query value (all but
 * RFC 3986 unreserved characters). */
void oc_port_escape(oc_buf_t *b, const char *s, size_t n);

typedef struct oc_port_stats {
  unsigned jobs;                 /* jobs not finished */
  uint64_t requests;             /* HTTP requests handed to the loop
                                    (transport retries not counted) */
  uint64_t token_fetches;
} oc_port_stats_t;
void oc_port_stats(const oc_port_t *port, oc_port_stats_t *out);

/* Ocean's event context on entity calls (query ocean_info_event_type and,
 * for resyncs, ocean_info_resync_id); NULL members are left out. */
typedef struct oc_port_event {
  const char *type;              /* "resync", "http_request", ... */
  const char *resync_id;
} oc_port_event_t;

/* {==================== generic JSON call ==================== */

#define OC_PORT_AUTH      1      /* send the token (nearly every call) */
#define OC_PORT_EXPORTER  2      /* User-Agent with the "/exporter" suffix */
#define OC_PORT_RETRYABLE 4      /* retry a POST/PATCH too (GET, PUT,
                                    DELETE... always retry) */

typedef struct oc_port_call {
  const char *method;            /* "GET", "POST", "PATCH", "DELETE"... */
  const char *path;              /* after /v1, e.g. "/integration/x";
                                    segments escaped by the caller */
  const char *const *query;      /* NULL-terminated name, value pairs
                                    (escaped here); may be NULL */
  const char *body;              /* JSON text, copied; NULL: none */
  size_t body_len;
  int flags;                     /* OC_PORT_* */
  const oc_port_event_t *event;  /* may be NULL */
} oc_port_call_t;

/* status: the HTTP status (0: none). body: Port's JSON answer, owned by
 * the callee (jv_null() when empty or on error). err: NULL on a 2xx
 * answer with valid JSON, else the failure (a non-2xx status included). */
typedef void (*oc_port_call_fn)(void *ud, uint64_t job, int status, jv body,
                                const oc_port_error_t *err);

uint64_t oc_port_call(oc_port_t *port, const oc_port_call_t *call,
                      oc_port_call_fn fn, void *ud, char *err, size_t errlen);

/* POST /v1/entities/search?exclude_calculated_properties=true[&include=..]
 * with the query (JSON text of {"combinator":..,"rules":[..]}); when its
 * `rules` is a non-empty list, the two ownership rules ($datasource
 * contains "port-ocean/<type>/" and "/<identifier>/exporter") are
 * appended, as Ocean does. include: NULL-terminated list, or NULL for
 * whole entities. The callback gets Port's answer {"ok":..,"entities":[]}.
 */
uint64_t oc_port_search(oc_port_t *port, const char *query, size_t len,
                        const char *const *include, oc_port_call_fn fn,
                        void *ud, char *err, size_t errlen);

/* The current access token (fetched if needed). For tests and the Lua
 * facade's token(); never log it. */
typedef void (*oc_port_token_fn)(void *ud, uint64_t job, const char *token,
                                 const oc_port_error_t *err);
uint64_t oc_port_token(oc_port_t *port, oc_port_token_fn fn, void *ud,
                       char *err, size_t errlen);

/* }==================== */

/* {==================== entity jobs ==================== */

/* The end of a multi-request job. error: the first request-level failure
 * (NULL if none). For a listing, an error means the listing is
 * incomplete. */
typedef struct oc_port_summary {
  uint64_t job;
  unsigned requests;             /* HTTP requests (413 splits and pages
                                    included) */
  unsigned failed_requests;
  const oc_port_error_t *error;
} oc_port_summary_t;
typedef void (*oc_port_done_fn)(void *ud, const oc_port_summary_t *s);

typedef struct oc_port_upsert_opts {
  int upsert, merge, create_missing_related_entities, validation_only;
  oc_port_event_t event;
} oc_port_upsert_opts_t;
/* Ocean's defaults (port app config: merge and create missing related
 * entities on). */
#define OC_PORT_UPSERT_DEFAULTS { 1, 1, 1, 0, { NULL, NULL } }

/* One entity's outcome. */
typedef struct oc_port_entity_result {
  size_t index;                  /* in the caller's list */
  int ok;
  int created;                   /* ok: Port created it (not updated) */
  int unresolved;                /* failed: its search identifier matched
                                    nothing (Port's identifier "unknown") */
  int status;                    /* the entity's status (200/207 request
                                    status when ok, Port's statusCode or the
                                    request's status when failed) */
  const char *identifier;        /* as Port returned it; may be NULL */
  const char *code;              /* failed: Port's error code, or "" */
  const char *message;           /* failed: what went wrong */
} oc_port_entity_result_t;
typedef void (*oc_port_entity_fn)(void *ud, const oc_port_entity_result_t *r);

/* Bulk upsert of n entities of blueprint `bp`, each given as JSON text
 * (copied). Requests of at most bulk_max_entities entities and
 * bulk_max_bytes of body, sent concurrently within the loop's bound,
 * retried as Ocean does (bulk upsert is retryable). A 413, or a 400/422
 * answered to the whole request, splits it in halves down to single
 * entities, so that only the entity at fault fails. entity_fn runs once per
 * entity (any order), then done_fn once. */
uint64_t oc_port_upsert(oc_port_t *port, const char *bp,
                        const char *const *texts, const size_t *lens,
                        size_t n, const oc_port_upsert_opts_t *opts,
                        oc_port_entity_fn entity_fn, oc_port_done_fn done_fn,
                        void *ud, char *err, size_t errlen);

typedef struct oc_port_delete_opts {
  int delete_dependents;
  oc_port_event_t event;
} oc_port_delete_opts_t;

/* Per id: deleted (listed in Port's deletedEntities) or not; err set
 * when its request failed. */
typedef void (*oc_port_id_fn)(void *ud, size_t index, int deleted,
                              const oc_port_error_t *err);

/* Bulk delete: requests of at most delete_batch ids, concurrently. */
uint64_t oc_port_delete(oc_port_t *port, const char *bp,
                        const char *const *ids, size_t n,
                        const oc_port_delete_opts_t *opts, oc_port_id_fn id_fn,
                        oc_port_done_fn done_fn, void *ud, char *err,
                        size_t errlen);

/* Every entity this integration owns (datasource prefix
 * "port-ocean/<type>/", suffix "/<identifier>/exporter"), page after page
 * (`next` cursors), last updated before `before` (ISO-8601; NULL: no
 * bound). entity_fn gets each entity, owned by the callee. */
typedef void (*oc_port_jv_fn)(void *ud, jv entity);
/* The message that makes every request fail at once while Port is known
 * to be unreachable (a retried request got no answer - refused, reset,
 * timed out, empty reply - until its retry budget ran out, within the
 * last retry budget), or NULL. */
const char *oc_port_unreachable(const oc_port_t *port);

uint64_t oc_port_list_owned(oc_port_t *port, const char *before,
                            oc_port_jv_fn entity_fn, oc_port_done_fn done_fn,
                            void *ud, char *err, size_t errlen);

/* }==================== */

#endif
