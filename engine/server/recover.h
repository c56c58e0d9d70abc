/* recover: a crypto worker's side of HSM recovery (hsm/hsm.h "Recovery", docs/hsm.md).
 *
 * A PKCS#11 session, its login or the token itself can go away under a running server (a
 * network HSM dropping sessions, a token pulled, a module reset). Each worker owns one
 * recover (no lock) and runs every job through recover_run:
 *
 *  - Outage. The first private-key operation (or /healthz ping) of the worker that fails with
 *    a loss (HSM_FAULT_IS_LOSS: session, login, object handles, token, device, module) starts
 *    an outage: one HSM_FAILURE event with the CKR name as diag and no txid (the worker's
 *    event; the request's own is written by engine/enroll). The worker recovers at once
 *    (hsm_thread_recover); when that works, HSM_RECOVERED with the same CKR, the outage's
 *    duration and the number of its jobs answered 503 meanwhile (count). One pair per outage
 *    per worker, not per request.
 *  - Backoff. While recovery fails, the worker tries again before a job once the backoff has
 *    passed: 50 ms doubling to RECOVER_BACKOFF_MAX_MS, with +-25 % jitter, reset on success.
 *    It never sleeps: jobs that come meanwhile run on the dead session, whose operations fail
 *    at once without a module call (hsm.h), so they are answered 503 immediately and /healthz
 *    answers 503 (hsm_ping: no worker has a session). An idle worker makes no attempt; the
 *    next job, a /healthz probe included, does.
 *  - Retry once. A job whose first run lost the session before any of its private-key
 *    operations completed (hsm_thread_ops unchanged) is run a second time after the
 *    recovery attempt, successful or not: redoing a failed decryption is harmless, but a
 *    certificate that was signed must not be signed again, so a job that completed one is
 *    answered from its first run (503). During that first run the job's code asks
 *    recover_will_retry (enroll_ctx.hsm_will_retry) and, when it says 1, answers without an
 *    audit event: the second run audits what the client finally gets. A job that went
 *    elsewhere (run returned < 0: a CRL build back to its publisher) is not run again.
 *  - A private-key call that hangs (a network HSM that stops answering) keeps its worker
 *    inside the module until the call returns; recover cannot interrupt it (PKCS#11 has no
 *    cancel). The other workers go on taking jobs; queued jobs past request_timeout are
 *    answered 503 by whichever worker takes them (worker_cancelled), and the shards never
 *    wait for a worker. See docs/hsm.md, "The server side".
 *
 * Threads: a recover is used only by its worker thread.
 */
#ifndef SCEPD_RECOVER_H
#define SCEPD_RECOVER_H

#include <stdint.h>

#include "engine/common/audit.h"
#include "engine/server/job.h"
#include "hsm/hsm.h"

#define RECOVER_BACKOFF_MIN_MS 50u
#define RECOVER_BACKOFF_MAX_MS 2000u

typedef struct recover {
    hsm_token  *token;          /* NULL: software keys, nothing to recover */
    audit      *audit;
    int         index;          /* the worker's number, in event details */
    int         down;           /* in an outage: the session is lost and not recovered */
    char        rv[48];         /* the CKR name that began the outage */
    char        why[48];        /* the latest reason it lasts: the failed recovery's CKR */
    uint64_t    since_ms;       /* CLOCK_MONOTONIC ms: when the outage began */
    uint64_t    next_ms;        /* no recovery attempt before this */
    unsigned    backoff_ms;     /* 0: the next attempt is the first of the outage */
    uint64_t    refused;        /* jobs answered 503 during the outage */
    uint32_t    rng;            /* jitter */
    /* The run in progress. */
    int         final;          /* a loss in this run is answered, not retried */
    uint64_t    ops0;           /* hsm_thread_ops() when the run began */
} recover;

/* token NULL: recover_run only runs the job. index: the worker's number. */
void recover_init(recover *r, hsm_token *token, audit *au, int index);

/* Runs run(arg, j) once, or twice as above, and returns what run returned last (enum
 * job_next, or < 0 when run gave j away). Before the first run, an outage whose backoff has
 * passed gets a recovery attempt. */
int  recover_run(recover *r, job *j, int (*run)(void *arg, job *j), void *arg);

/* For the job's own code (enroll_ctx.hsm_will_retry, arg = the recover), asked when a
 * private-key operation failed: 1 when recover_run will run the job again (a loss, on its
 * first run, before any of its private-key operations completed), 0 when this run's answer is
 * the one the client gets. *cause (may be NULL): while the worker is in an outage, the CKR
 * name of its latest failed recovery (or of the loss that began it), which says more than
 * the dead session's CKR_SESSION_HANDLE_INVALID; NULL otherwise. */
int  recover_will_retry(void *arg, const char **cause);

/* 1 while the worker is in an outage (tests, metrics). */
int  recover_down(const recover *r);

#endif
