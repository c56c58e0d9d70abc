/* The crypto workers: their queue (fed by the shards' batches, the commit callback and the
 * CRL publisher), one loop per worker thread, and the hand-back of answers to the shards.
 * A worker owns a PKCS#11 session and a store reader; every private-key operation of the
 * server runs here.
 *
 * A worker takes one job at a time and releases it as soon as it is done: a certificate to
 * the writer (store_submit; the writer groups whatever arrives during its previous commit,
 * which is what amortises fsync), any other answer to its shard. Holding finished jobs to
 * batch them would make the first of a share wait for the last. Before each job, and
 * between the phases of a PKCSReq, a job whose connection closed or whose request_timeout
 * passed is dropped (worker_cancelled). */
#include "engine/server/app_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/common/keyclock.h"
#include "engine/enroll/enroll.h"
#include "engine/scep/reject.h"
#include "engine/server/recover.h"
#include "hsm/hsm.h"

void worker_queue_push(app *a, job *head)
{
    job *tail = head;
    size_t n = 1;
    if (head == NULL)
        return;
    uint64_t now = metrics_now_ns();
    head->m_queued_ns = now;
    while (tail->next != NULL) {
        tail = tail->next;
        tail->m_queued_ns = now;
        n++;
    }
    pthread_mutex_lock(&a->q_mu);
    if (a->q_tail != NULL)
        a->q_tail->next = head;
    else
        a->q_head = head;
    a->q_tail = tail;
    a->q_len += n;
    if (n > 1)
        pthread_cond_broadcast(&a->q_cv);
    else
        pthread_cond_signal(&a->q_cv);
    pthread_mutex_unlock(&a->q_mu);
}

int worker_queue_offer(app *a, job *j)
{
    int rc = -1;
    j->next = NULL;
    j->m_queued_ns = metrics_now_ns();
    pthread_mutex_lock(&a->q_mu);
    if (!a->q_stopping) {      /* the workers take every queued job before they exit */
        if (a->q_tail != NULL)
            a->q_tail->next = j;
        else
            a->q_head = j;
        a->q_tail = j;
        a->q_len++;
        pthread_cond_signal(&a->q_cv);
        rc = 0;
    }
    pthread_mutex_unlock(&a->q_mu);
    return rc;
}

/* Takes the oldest job, or NULL when stopping and empty. One job: a lock per job costs
 * microseconds against milliseconds of crypto, and an idle worker never waits behind a
 * share another one took. */
static job *queue_take(app *a)
{
    job *j = NULL;
    pthread_mutex_lock(&a->q_mu);
    while (a->q_head == NULL && !a->q_stopping)
        pthread_cond_wait(&a->q_cv, &a->q_mu);
    if (a->q_head != NULL) {
        j = a->q_head;
        a->q_head = j->next;
        if (a->q_head == NULL)
            a->q_tail = NULL;
        j->next = NULL;
        a->q_len--;
    }
    pthread_mutex_unlock(&a->q_mu);
    return j;
}

int worker_cancelled(void *arg, job *j)
{
    app *a = arg;
    /* A one-time challenge is consumed only in the write transaction that records the
     * certificate (engine/enroll/onetime.c), so dropping a job here never burns one; a job
     * with an MDM verdict finishes (the MDM was told, or will be, how it ended). */
    if (!j->admitted || (j->kind != JOB_PKIOPERATION && j->kind != JOB_OCSP) ||
        (j->kind == JOB_PKIOPERATION && j->pki.mdm.done))
        return 0;
    if (!shard_ref_live(a->shards[j->reply.ref.shard], j->reply.ref)) {
        admit_note(&a->admit, a->audit, ADMIT_GONE, j->peer);
        job_reply_text(j, 503, "client gone\n");          /* released unsent */
        return 1;
    }
    if (j->deadline_ms != 0 && app_now_ms() >= j->deadline_ms) {
        admit_note(&a->admit, a->audit, ADMIT_DEADLINE, j->peer);
        job_reply_later(j, "request timed out in the queue, retry later\n",
                        admit_retry_after(&a->admit));
        return 1;
    }
    return 0;
}

/* shard_expire_fn, on a shard thread: a deferred request had no answer by request_timeout +
 * SHARD_WAIT_GRACE_MS (a worker inside a PKCS#11 call that hangs, a commit that does not
 * end); the shard answers it 503 and closes. The job itself stays where it is (a PKCS#11
 * call cannot be cancelled): it is dropped at its next phase boundary once the connection
 * has closed, or, past its last private-key operation, commits and its reply is released
 * unsent; a retry of the transaction then gets the certificate as a replay. */
unsigned worker_expired(void *ctx, conn_ref ref, const char *peer)
{
    app *a = ctx;
    (void)ref;
    admit_note(&a->admit, a->audit, ADMIT_EXPIRED, peer);
    return admit_retry_after(&a->admit);
}

/* Sends each job's reply to its shard: one shard_deliver per shard per call. */
void worker_deliver(app *a, job *list)
{
    shard_reply *heads[64] = {0};
    shard_reply **per = a->nshards <= 64 ? heads : calloc(a->nshards, sizeof(*per));
    if (per == NULL) {
        for (job *j = list, *n; j != NULL; j = n) {    /* fall back to one at a time */
            n = j->next;
            j->reply.next = NULL;
            shard_deliver(a->shards[j->reply.ref.shard], &j->reply);
        }
        return;
    }
    for (job *j = list, *n; j != NULL; j = n) {
        n = j->next;
        j->next = NULL;
        j->reply.next = per[j->reply.ref.shard];
        per[j->reply.ref.shard] = &j->reply;
    }
    for (uint32_t i = 0; i < a->nshards; i++)
        if (per[i] != NULL)
            shard_deliver(a->shards[i], per[i]);
    if (per != heads)
        free(per);
}

static void health(app *a, job *j)
{
    int ok = store_ping(a->store) == 0 && (a->ca->token == NULL || hsm_ping(a->ca->token) == 0);
    job_reply_text(j, ok ? 200 : 503, ok ? "ok\n" : "unavailable\n");
}

/* An OCSP request on a worker: cached answer, or the statuses from the store and one
 * signature with the delegated key. */
static void ocsp_job(app *a, worker *w, store_reader *reader, job *j)
{
    uint8_t *out = NULL;
    size_t len = 0;
    int status = 0, cached = 0;
    if (ocsp_respond(a->ocsp, reader, j->msg, j->msg_len, (int64_t)time(NULL), &out, &len,
                     &status, &cached) != 0) {
        job_reply_text(j, 503, "busy\n");
        return;
    }
    m_inc(cached ? &w->m->ocsp_cached : &w->m->ocsp_signed);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        audit_fields f = {.diag = status == OCSP_RESPONSE_STATUS_MALFORMEDREQUEST ? "ocsp_malformed"
                                : status == OCSP_RESPONSE_STATUS_UNAUTHORIZED ? "ocsp_unauthorized"
                                : "ocsp_internal",
                          .peer = j->peer, .failinfo = -1, .http_status = 200};
        audit_emit(a->audit, AUDIT_OCSP_FAILED, &f);
    }
    job_reply(j, 200, "application/ocsp-response", out, len);
}

typedef struct crl_fill {
    crl_builder *b;
    int rc;
} crl_fill;

static int crl_add_one(const store_revocation *rv, void *arg)
{
    crl_fill *f = arg;
    f->rc = crl_builder_add(f->b, rv->serial, STORE_SERIAL_LEN, rv->revoked_at, rv->reason,
                            rv->invalidity);
    return f->rc;
}

/* The publisher's build on a worker: every revocation from one snapshot into the DER
 * builder (the snapshot ends before the signature), one CA signature, then the new CRL
 * number goes to the writer; the CRL is published only once that number is durable.
 * Returns 1 when j->put must be committed, 0 when j went back to the publisher (failure). */
static int crl_job(app *a, store_reader *reader, job *j)
{
    crl_builder *b = NULL;
    uint64_t gen = 0, number = 0;
    size_t n = 0;
    int rc = -1;

    if (store_reader_begin(reader) != 0)
        goto out;
    if (store_get_counters(reader, &gen, &number) == 0 && store_count_revoked(reader, &n) == 0 &&
        crl_builder_create(n, &b) == 0) {
        crl_fill f = {b, 0};
        rc = store_foreach_revoked(reader, crl_add_one, &f);
    }
    store_reader_end(reader);
    if (rc != 0)
        goto out;
    rc = -1;
    if (number < j->crl.number)
        number = j->crl.number;
    number++;
    int64_t now = (int64_t)time(NULL);
    uint8_t *der = NULL;
    size_t len = 0;
    if (crl_builder_sign(b, a->crl_signer, number, now, now + a->cfg.crl_validity_s, &der,
                         &len) != 0)
        goto out;
    free(j->body);
    j->body = der;
    j->body_len = len;
    j->crl.number = number;
    j->crl.rev_gen = gen;
    j->crl.this_update = now;
    j->crl.next_update = now + a->cfg.crl_validity_s;
    memset(&j->put, 0, sizeof(j->put));
    j->put.kind = STORE_PUT_CRL_NUMBER;
    j->put.crl_number = number;
    rc = 0;
out:
    crl_builder_destroy(b);
    if (rc != 0) {
        j->crl.ok = 0;
        publisher_handoff(a, j);
        return 0;
    }
    return 1;
}

/* enroll_ctx.cancelled: called at each PKCSReq phase boundary. The first boundary ends the
 * envelope phase (signature check, RA decryption), timed here; then the usual check. */
static int worker_phase(void *arg, job *j)
{
    worker *w = arg;
    uint64_t now = metrics_now_ns();
    if (++w->phase_n == 1)
        m_observe(&w->m->phase[M_PHASE_ENVELOPE], now - w->phase_ns);
    w->phase_ns = now;
    return worker_cancelled(w->app, j);
}

/* What enroll reported for a transaction answered now (committed ones are counted by the
 * writer, commit.c). */
static void count_enroll(app *a, worker *w, const job *j)
{
    switch (j->m_event) {
    case AUDIT_REPLAYED:
        m_enroll(a->metrics, w->m, j->profile, M_REPLAYED, REJ_NONE);
        break;
    case AUDIT_REQUEST_PENDING:
        m_enroll(a->metrics, w->m, j->profile, M_PENDING, REJ_NONE);
        break;
    case AUDIT_REQUEST_REJECTED:
    case AUDIT_CHALLENGE_REJECTED:
        m_enroll(a->metrics, w->m, j->profile, M_REFUSED, j->m_rej);
        break;
    default:
        break;
    }
}

/* One PKCSReq pass, timed by phase (worker_phase); a pass that issued ends with the issue
 * phase (CA and CertRep signatures). */
static int enroll_timed(const enroll_ctx *ctx, app *a, worker *w, job *j)
{
    w->phase_n = 0;
    w->phase_ns = metrics_now_ns();
    j->m_event = 0;
    j->m_rej = REJ_NONE;
    int next = enroll_process(ctx, j);
    if (next == JOB_COMMIT && w->phase_n > 0 &&
        (j->pki.audit_event == AUDIT_ISSUED || j->pki.audit_event == AUDIT_RENEWED))
        m_observe(&w->m->phase[M_PHASE_ISSUE], metrics_now_ns() - w->phase_ns);
    if (next == JOB_DELIVER)
        count_enroll(a, w, j);
    return next;
}

/* What one run of a job needs (recover_run runs a job twice when its first run lost the
 * PKCS#11 session before any private-key operation completed). */
typedef struct worker_run {
    app          *a;
    worker       *w;
    store_reader *reader;
    enroll_ctx   *ctx;
    int           sample;       /* the run did the job's work: its time feeds Retry-After */
} worker_run;

/* One run of j: enum job_next with j's reply (or put) ready, or -1 when j went back to the
 * CRL publisher. */
static int run_job(void *arg, job *j)
{
    worker_run *wr = arg;
    app *a = wr->a;
    int next = JOB_DELIVER;
    wr->sample = 0;
    if (worker_cancelled(a, j)) {
        /* dropped before any private-key operation: the reply is set */
    } else if (j->kind == JOB_HEALTH) {
        health(a, j);
    } else if (j->kind == JOB_OCSP) {
        ocsp_job(a, wr->w, wr->reader, j);
        wr->sample = 1;
    } else if (j->kind == JOB_CRL) {
        next = crl_job(a, wr->reader, j) ? JOB_COMMIT : -1;
    } else {
        wr->ctx->issuer = app_issuer(a);    /* the profile set this job runs under */
        next = enroll_timed(wr->ctx, a, wr->w, j);
        wr->sample = 1;
    }
    return next;
}

void *worker_main(void *arg)
{
    worker *w = arg;
    app *a = w->app;
    store_reader *reader = NULL;

    pthread_setname_np(pthread_self(), "scepd-worker");   /* top -H, perf --sort comm */
    if (a->cfg.yield_to_workers) {      /* back from the SCHED_BATCH main.c gave everyone */
        struct sched_param sp = {.sched_priority = 0};
        pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
    }
    if (a->ca->token != NULL && hsm_thread_attach(a->ca->token) != 0) {
        fprintf(stderr, "scepd: worker cannot open a PKCS#11 session: %s\n", hsm_last_error());
        audit_fields f = {.detail = "worker cannot open a PKCS#11 session", .failinfo = -1};
        audit_emit(a->audit, AUDIT_HSM_FAILURE, &f);
    }
    if (store_reader_create(a->store, &reader) != 0) {
        fprintf(stderr, "scepd: worker cannot create a store reader\n");
        return NULL;
    }
    recover rec;
    recover_init(&rec, a->ca->token, a->audit, (int)(w - a->workers));
    enroll_ctx ctx = {&a->cfg, a->ca, NULL, a->audit, reader, a->crls,
                      worker_phase, w, recover_will_retry, &rec};
    worker_run wr = {a, w, reader, &ctx, 0};
    job *j;
    while ((j = queue_take(a)) != NULL) {
        uint64_t t0 = app_now_ms();
        uint64_t ops0 = a->ca->token != NULL ? hsm_thread_ops() : 0;
        keyclock_totals k0 = keyclock_thread();
        if (j->m_queued_ns != 0)
            m_observe(&w->m->queue_wait, metrics_now_ns() - j->m_queued_ns);
        if (a->ca->token != NULL)
            hsm_fault_clear();
        int next = recover_run(&rec, j, run_job, &wr);
        keyclock_totals k1 = keyclock_thread();
        m_add(&w->m->keyop_ops, k1.ops - k0.ops);
        m_add(&w->m->keyop_sampled, k1.sampled - k0.sampled);
        m_add(&w->m->keyop_sampled_ns, k1.sampled_ns - k0.sampled_ns);
        if (next < 0)
            continue;                      /* went back to the publisher */
        if (wr.sample)
            admit_sample(&a->admit, (app_now_ms() - t0) * 1000u);
        if (a->ca->token != NULL) {
            m_add(&w->m->hsm_ops, hsm_thread_ops() - ops0);
            if (hsm_last_fault() != HSM_FAULT_NONE)
                m_hsm_error(w->m, hsm_last_rv_name());
        }
        if (next == JOB_VALIDATE) {
            mdm_wire_park(a, j);           /* held by the stage, not by this worker */
        } else if (next == JOB_COMMIT) {
            j->m_submit_ns = metrics_now_ns();
            j->put.next = NULL;
            store_submit(a->store, &j->put);
        } else {
            if (j->kind == JOB_PKIOPERATION)
                mdm_wire_refused(a, j);
            worker_deliver(a, j);
        }
    }
    store_reader_destroy(reader);
    app_issuer_unpin();
    if (a->ca->token != NULL)
        hsm_thread_detach();
    return NULL;
}
