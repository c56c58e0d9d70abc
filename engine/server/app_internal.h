/* app internals shared by the files of a running scepd: app.c (lifecycle, a connection's
 * jobs), worker.c (the crypto workers and their queue), commit.c (the store writer's commit
 * callback), route.c (HTTP routing on the shards), admin.c (the authenticated admin API) and
 * publisher.c (the CRL publisher thread). Not a public API. */
#ifndef SCEPD_APP_INTERNAL_H
#define SCEPD_APP_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/provider.h>

#include "engine/common/audit.h"
#include "engine/net/shard.h"
#include "engine/pki/ca.h"
#include "engine/pki/crl.h"
#include "engine/pki/ocsp.h"
#include "engine/policy/issue.h"
#include "engine/server/admit.h"
#include "engine/server/app.h"
#include "engine/server/authlimit.h"
#include "engine/server/job.h"
#include "engine/server/metrics.h"
#include "engine/store/store.h"

#define CT_TEXT "text/plain"

#define JOB_MAX_ATTEMPTS 4

/* Audit ring of each shard and of the other threads together (audit_start): about a
 * thousand lines each before lines are dropped, (shards + 1) * 256 KiB in all. */
#define APP_AUDIT_RING (256u << 10)

/* Jobs a shard collected during one batch of completions; touched only by that shard's
 * thread, handed to the workers by on_flush. */
typedef struct stage {
    job *head, *tail;
    char headers[256];     /* extra header lines of an immediate answer (304, 503) */
    struct app *app;       /* for the shard's thread body */
    uint32_t index;
} stage;

typedef struct worker {
    struct app   *app;
    pthread_t     thread;
    int           started;
    metrics_slot *m;           /* this worker's metrics slot */
    /* PKCSReq phase timing (worker_phase): the pass's boundaries seen so far. */
    uint64_t      phase_ns;    /* the last boundary */
    int           phase_n;     /* boundaries seen in this pass */
} worker;

struct app {
    config        cfg;
    audit        *audit;
    ca_set       *ca;
    issuer_slot  *policy;          /* the current issuer (profiles, static challenges):
                                      app_issuer; swapped by app_reload                 */
    store        *store;
    uint32_t      nshards;
    shard       **shards;
    pthread_t    *shard_threads;
    stage        *stages;          /* one per shard */
    OSSL_PROVIDER *legacy;         /* loaded only when a profile allows DES */
    int           nworkers;
    worker       *workers;
    int           stop_fd;         /* eventfd: app_stop -> app_run */
    int           reload_fd;       /* eventfd: app_request_reload -> app_run */
    config        cfg_file;        /* cfg as loaded (cfg.listen_port is the bound one) */
    char          cfg_path[CONFIG_PATH_MAX]; /* what app_reload reads; "" : not known */
    admit         admit;           /* the bound on jobs admitted to the workers */
    /* The crypto workers' queue: one lock per pushed list, one wake-up per list. */
    pthread_mutex_t q_mu;
    pthread_cond_t  q_cv;
    job          *q_head, *q_tail;
    size_t        q_len;
    int           q_stopping;
    /* Revocation, CRL, OCSP. */
    crl_signer   *crl_signer;
    crl_cache    *crls;
    char          crl_path[2 * CONFIG_PATH_MAX + 2];
    ocsp_responder *ocsp;
    uint8_t       admin_hash[32];  /* SHA-256 of the admin bearer token */
    int           has_admin;
    uint16_t      admin_port;      /* the admin listener's port, 0: none */
    authlimit     authlimit;       /* failed admin authentications per address */
    metrics      *metrics;         /* a slot per shard, per worker, and the writer's */
    /* The CRL publisher thread: decides when to rebuild, waits for the worker's JOB_CRL. */
    pthread_t     pub_thread;
    int           pub_started;
    pthread_mutex_t pub_mu;
    pthread_cond_t  pub_cv;
    int           pub_stop, pub_wake;
    job          *pub_done;
    /* The MDM validation stage (mdm_wire.c) and the NDES page (ndes_route.c). */
    struct mdm_stage  *mdm;        /* NULL: no mdm_config, or stopped; read under mdm_mu */
    struct mdm_config *mdm_cfg;
    pthread_mutex_t mdm_mu;
    int           mdm_mu_ready;
    struct ndes_state *ndes;       /* NULL: no [ndes] users_file */
    struct intune_revoke *irev;    /* Intune revocation sync (intune_revoke.c); NULL: off */
};

/* app.c */
/* The current issuer, pinned for the calling thread: valid until this thread's next
 * app_issuer call. Call it where the thread holds nothing from a previous result (a worker
 * at the start of a job, a shard per request), so a request that started under one
 * profile set finishes under it. */
const issuer *app_issuer(const app *a);
/* Drops the calling thread's pin (before the thread ends). */
void app_issuer_unpin(void);
/* Counts an answered request of op (enum m_op) with status in shard's slot. Shard thread. */
void app_count_request(app *a, uint32_t shard_index, int op, int status);
/* job_new for a request of connection ref: answered through the shard, freed by
 * app_job_release. NULL when out of memory. */
job *app_job_new(app *a, int kind, conn_ref ref, const char *peer, const char *pname);
/* Frees a job (its shard_reply release function). */
void app_job_release(shard_reply *r);

/* worker.c: the crypto workers */
/* Appends a linked list of jobs to the crypto workers' queue (one lock, one wake-up). */
void  worker_queue_push(app *a, job *head);
/* Appends one job unless the workers are stopping: 0, or -1 (the caller answers it). Under
 * the queue's lock, so a job it takes is always run by a worker before they exit. */
int   worker_queue_offer(app *a, job *j);
/* Sends each job's reply to its shard: one shard_deliver per shard per call. */
void  worker_deliver(app *a, job *list);
/* A worker thread's body (arg: its worker). */
void *worker_main(void *arg);
/* 1 when j is to be dropped before its next private-key operation (its connection closed,
 * or its deadline passed): j's reply is then set (503, Retry-After) and the drop counted.
 * 0 for jobs that must finish (a consumed one-time challenge). enroll_ctx.cancelled; arg is
 * the app. */
int   worker_cancelled(void *arg, job *j);
/* shard_expire_fn (shard thread, ctx: the app): a reply stuck past request_timeout + grace;
 * counts and audits it (REQUEST_DROPPED, reply_deadline), returns the Retry-After seconds. */
unsigned worker_expired(void *ctx, conn_ref ref, const char *peer);
/* CLOCK_MONOTONIC in ms: job deadlines. */
uint64_t app_now_ms(void);

/* commit.c: the store writer's commit callback (store_writer_start's done, arg = the app). */
void  commit_done(store_put *batch, void *arg);

/* route.c: the shard handlers */
int  route_request(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                   conn_ref ref, const char *peer, http_response *resp);
void route_flush(void *ctx, uint32_t shard_index);
void route_http_reject(void *ctx, int status, const char *reason, const char *peer);
/* Helpers the admin API shares with the router (shard thread). */
/* Queues j for the crypto workers at the end of the shard's batch (route_flush). */
void route_stage(app *a, job *j);
/* An immediate answer: job_answer (engine/server/job.h: the one setter and its close policy)
 * and the shard verdict APP_RESPOND. */
int  route_respond(http_response *resp, int status, const char *ct, const void *body, size_t len);
/* GET /healthz (both listeners): a JOB_HEALTH for the workers, admitted (or 503). */
int  route_health(app *a, conn_ref ref, const char *peer, http_response *resp);
/* route_respond of a text/plain refusal, audited as AUDIT_HTTP_REJECTED. */
int  route_reject(app *a, http_response *resp, int status, const char *reason, const char *peer);

/* admin.c: the admin listener's routes: POST /admin/revocations and /admin/challenges
 * (bearer token, failed tries rate-limited per address), GET /metrics, /healthz. */
int admin_route(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                conn_ref ref, const char *peer, http_response *resp);

/* mdm_wire.c: the MDM validation stage in the server (engine/enroll/validate.h). */
/* Loads cfg.mdm_config (if set) and starts the stage and the NDES page; after the profiles
 * and the audit log. 0 or -1 with err. */
int  mdm_wire_setup(app *a, char *err, size_t errlen);
/* Stops the stage: pending validations come back to the worker queue (refused, shutdown);
 * pending successNotifications end in revocation. Before the workers stop. */
void mdm_wire_teardown(app *a);
void mdm_wire_free(app *a);            /* teardown and free; accepts a half-built app */
/* Worker: a job whose pass returned JOB_VALIDATE goes to the stage (or is answered 503). */
void mdm_wire_park(app *a, job *j);
/* Worker or writer: j is answered without a certificate; after an Intune allow, Intune gets
 * a failureNotification (once). */
void mdm_wire_refused(app *a, job *j);
/* Writer, j's certificate committed: 1 when Intune must acknowledge it first (the job is
 * the stage's until then), 0 to deliver now. */
int  mdm_wire_committed(app *a, job *j);
/* Writer: 1 when j's put was the revocation after a failed successNotification (j is then
 * taken: back on a worker queue to sign its CertRep FAILURE, or answered 503 when the workers
 * are stopping), 0 otherwise. */
int  mdm_wire_revoked(app *a, job *j);

/* intune_revoke.c: Intune's revocation requests, polled by a thread of their own when
 * [intune] revocation_poll_interval is set. start: app_run, once the writer and the stage run
 * (0 or -errno); stop: before mdm_wire_teardown (the stage and the writer still run); the
 * state is freed by mdm_wire_free. committed: the writer's commit callback for a
 * JOB_INTUNE_REVOKE (writer thread). */
int  intune_revoke_start(app *a);
void intune_revoke_stop(app *a);
void intune_revoke_free(app *a);
void intune_revoke_committed(app *a, job *j);

/* ndes_route.c: GET /certsrv/mscep_admin/ (NDES's one-time challenge page, Basic auth). */
int  ndes_route_setup(app *a, char *err, size_t errlen);
void ndes_route_free(app *a);
/* 1 when path is the NDES admin page. */
int  ndes_route_match(http_slice path);
int  ndes_route(app *a, const http_request *req, int is_get, conn_ref ref, const char *peer,
                http_response *resp);
/* Writer: the answer to the page once its challenge is durable. */
void ndes_committed(app *a, job *j);

/* publisher.c: the CRL publisher thread body (arg = the app). */
void *publisher_main(void *arg);
/* Gives the publisher back its JOB_CRL, built or failed (j->crl.ok); any thread. */
void  publisher_handoff(app *a, job *j);

#endif
