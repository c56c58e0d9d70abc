/* The store writer's commit callback: what happens to each job once its put is durable (or
 * failed). Certificates leave the server only from here; admin answers are built here. Runs
 * on the writer thread. */
#include "engine/server/app_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/crypto.h>

/* Writer thread: the answer to POST /admin/revocations, once the revocation is durable. */
static void revoke_committed(app *a, job *j)
{
    const store_revocation *rv = &j->put.rev;
    int rc = j->put.result, status;
    char *body = malloc(256);
    const char *state;

    switch (rc) {
    case STORE_OK:              status = 200; state = "revoked"; break;
    case STORE_ALREADY_REVOKED: status = 200; state = "already_revoked"; break;
    case STORE_NOTFOUND:        status = 404; state = "unknown_serial"; break;
    default:                    status = 503; state = "store_failure"; break;
    }
    audit_fields f = {.serial = j->revoke.serial_hex, .peer = j->peer, .detail = j->revoke.who,
                      .diag = rc == STORE_OK ? NULL : state, .failinfo = -1,
                      .http_status = status};
    /* A repeated revocation is not a failure: the first one stands (idempotent). */
    int ok = rc == STORE_OK || rc == STORE_ALREADY_REVOKED;
    audit_emit(a->audit, ok ? AUDIT_REVOKED : AUDIT_REVOKE_FAILED, &f);
    if (body == NULL) {
        job_reply_text(j, 503, "out of memory\n");
        return;
    }
    int n = snprintf(body, 256, "{\"serial\":\"%s\",\"status\":\"%s\"", j->revoke.serial_hex,
                 state);
    if (rc == STORE_OK || rc == STORE_ALREADY_REVOKED)
        n += snprintf(body + n, 256 - (size_t)n, ",\"reason\":\"%s\",\"revoked_at\":%lld",
                      crl_reason_name(rv->reason), (long long)rv->revoked_at);
    n += snprintf(body + n, 256 - (size_t)n, "}\n");
    job_reply(j, status, "application/json", (uint8_t *)body, (size_t)n);
    if (rc == STORE_OK) {
        pthread_mutex_lock(&a->pub_mu);       /* the publisher rebuilds the CRL soon */
        a->pub_wake = 1;
        pthread_cond_broadcast(&a->pub_cv);
        pthread_mutex_unlock(&a->pub_mu);
    }
}

/* Writer thread: the answer to POST /admin/challenges, once the challenge is durable. The
 * value itself is only in this answer (the store keeps its hash). */
static void challenge_committed(app *a, job *j)
{
    if (j->challenge.ndes) {           /* GET /certsrv/mscep_admin/: NDES's page */
        ndes_committed(a, j);
        return;
    }
    int ok = j->put.result == STORE_OK && j->put.verdict == 0;
    audit_fields f = {.profile = j->profile, .peer = j->peer, .detail = j->challenge.who,
                      .diag = ok ? NULL : "store_failure", .failinfo = -1,
                      .http_status = ok ? 201 : 503};
    audit_emit(a->audit, ok ? AUDIT_CHALLENGE_CREATED : AUDIT_STORE_FAILURE, &f);
    if (!ok) {
        job_reply_later(j, "store unavailable, retry later\n", STORE_RETRY_AFTER_S);
        return;
    }
    char *body = malloc(512);
    if (body == NULL) {
        job_reply_text(j, 503, "out of memory\n");
        return;
    }
    int n = snprintf(body, 512, "{\"challenge\":\"%s\",\"profile\":\"%s\",\"expires\":%lld}\n",
                     j->challenge.value, j->profile, (long long)j->challenge.expires);
    OPENSSL_cleanse(j->challenge.value, sizeof(j->challenge.value));
    job_reply(j, 201, "application/json", (uint8_t *)body, (size_t)n);
}

/* Store writer thread: the batch is durable. Certificates may now leave the server. */
void commit_done(store_put *batch, void *arg)
{
    app *a = arg;
    job *out = NULL, *retry = NULL;
    metrics_slot *ms = metrics_writer(a->metrics);
    uint64_t now = metrics_now_ns(), nputs = 0;

    for (store_put *p = batch, *n; p != NULL; p = n) {
        n = p->next;
        job *j = JOB_OF_PUT(p);
        j->next = NULL;
        nputs++;
        if (j->m_submit_ns != 0)
            m_observe(&ms->commit, now - j->m_submit_ns);
        if (j->kind == JOB_CRL) {
            j->crl.ok = p->result == STORE_OK;
            publisher_handoff(a, j);
            continue;
        }
        if (j->kind == JOB_INTUNE_REVOKE) {   /* its poller frees it (intune_revoke.c) */
            intune_revoke_committed(a, j);
            continue;
        }
        if (j->kind == JOB_REVOKE) {
            revoke_committed(a, j);
            j->next = out;
            out = j;
            continue;
        }
        if (j->kind == JOB_CHALLENGE) {
            challenge_committed(a, j);
            j->next = out;
            out = j;
            continue;
        }
        if (mdm_wire_revoked(a, j))    /* Intune refused the certificate: now revoked, the */
            continue;                  /* FAILURE signed on a worker (or 503: stopping)     */
        if (p->result == STORE_OK) {
            audit_fields f = {.txid = j->pki.txkey, .profile = j->profile,
                              .subject = j->pki.subject, .serial = j->pki.serial_hex,
                              .peer = j->peer, .detail = j->pki.audit_detail, .failinfo = -1};
            if (j->pki.chal_consumed) {
                audit_fields c = f;
                c.diag = "challenge_ok";
                c.detail = NULL;
                audit_emit(a->audit, AUDIT_CHALLENGE_CONSUMED, &c);
            }
            audit_emit(a->audit, j->pki.audit_event, &f);
            if (j->pki.audit_event == AUDIT_ISSUED || j->pki.audit_event == AUDIT_RENEWED ||
                j->pki.audit_event == AUDIT_REQUEST_PENDING)
                m_enroll(a->metrics, ms, j->profile,
                         j->pki.audit_event == AUDIT_ISSUED    ? M_ISSUED
                         : j->pki.audit_event == AUDIT_RENEWED ? M_RENEWED : M_PENDING,
                         0);
            if (mdm_wire_committed(a, j))
                continue;              /* Intune's successNotification, then the CertRep */
            j->next = out;
            out = j;
        } else if ((p->result == STORE_DUP_SERIAL || p->result == STORE_DUP_TXID ||
                    p->result == STORE_CONFLICT) && ++j->attempts < JOB_MAX_ATTEMPTS) {
            /* A serial collision, a concurrent request of the same transaction, or a one-time
             * challenge another request consumed first: do the worker pass again (new serial,
             * or answer from what the store now holds: the replay, or challenge_used). */
            j->next = retry;
            retry = j;
        } else {
            audit_fields f = {.txid = j->pki.txkey, .subject = j->pki.subject,
                              .serial = j->pki.serial_hex, .peer = j->peer,
                              .detail = store_strerror(p->result), .failinfo = -1,
                              .http_status = 503};
            audit_emit(a->audit, AUDIT_STORE_FAILURE, &f);
            job_reply_later(j, "store unavailable, retry later\n", STORE_RETRY_AFTER_S);
            mdm_wire_refused(a, j);
            j->next = out;
            out = j;
        }
    }
    m_observe_batch(&ms->batch, nputs);
    worker_queue_push(a, retry);
    worker_deliver(a, out);
}
