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

#include "engine/enroll/enroll.h"
#include "hsm/hsm.h"

void worker_queue_push(app *a, job *head)
{
    job *tail = head;
    size_t n = 1;
    if (head == NULL)
        return;
    while (tail->next != NULL) {
        tail = tail->next;
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
        job_reply_text(j, 503, "request timed out in the queue, retry later\n");
        snprintf(j->headers, sizeof(j->headers), "Retry-After: %u\r\n",
                 admit_retry_after(&a->admit));
        j->reply.resp.extra_headers = j->headers;
        return 1;
    }
    return 0;
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
static void ocsp_job(app *a, store_reader *reader, job *j)
{
    uint8_t *out = NULL;
    size_t len = 0;
    int status = 0, cached = 0;
    if (ocsp_respond(a->ocsp, reader, j->msg, j->msg_len, (int64_t)time(NULL), &out, &len,
                     &status, &cached) != 0) {
        job_reply_text(j, 503, "busy\n");
        return;
    }
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

void *worker_main(void *arg)
{
    worker *w = arg;
    app *a = w->app;
    store_reader *reader = NULL;

    if (a->ca->token != NULL && hsm_thread_attach(a->ca->token) != 0) {
        fprintf(stderr, "scepd: worker cannot open a PKCS#11 session: %s\n", hsm_last_error());
        audit_fields f = {.detail = "worker cannot open a PKCS#11 session", .failinfo = -1};
        audit_emit(a->audit, AUDIT_HSM_FAILURE, &f);
    }
    if (store_reader_create(a->store, &reader) != 0) {
        fprintf(stderr, "scepd: worker cannot create a store reader\n");
        return NULL;
    }
    enroll_ctx ctx = {&a->cfg, a->ca, NULL, a->audit, reader, a->crls,
                      worker_cancelled, a};
    job *j;
    while ((j = queue_take(a)) != NULL) {
        uint64_t t0 = app_now_ms();
        int next = JOB_DELIVER, sample = 0;
        if (worker_cancelled(a, j)) {
            /* dropped before any private-key operation: the reply is set */
        } else if (j->kind == JOB_HEALTH) {
            health(a, j);
        } else if (j->kind == JOB_OCSP) {
            ocsp_job(a, reader, j);
            sample = 1;
        } else if (j->kind == JOB_CRL) {
            if (!crl_job(a, reader, j))
                continue;                  /* went back to the publisher */
            next = JOB_COMMIT;
        } else {
            ctx.issuer = app_issuer(a);    /* the profile set this job runs under */
            next = enroll_process(&ctx, j);
            sample = 1;
        }
        if (sample)
            admit_sample(&a->admit, (app_now_ms() - t0) * 1000u);
        if (next == JOB_VALIDATE) {
            mdm_wire_park(a, j);           /* held by the stage, not by this worker */
        } else if (next == JOB_COMMIT) {
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
