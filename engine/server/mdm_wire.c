/* The MDM validation stage in the running server (engine/mdm/validate.h; the enrollment side
 * is engine/enroll/validate.h): started and stopped with the app, a parked job handed to it
 * by a worker and brought back to a worker queue by its callback, and Intune's notifications:
 * successNotification between the commit and the CertRep, failureNotification for a refusal
 * after Intune allowed.
 *
 * Threads: mdm_wire_park and mdm_wire_refused on a crypto worker, mdm_wire_committed and
 * mdm_wire_revoked on the store writer, the callbacks on the stage thread. a->mdm is read
 * under a->mdm_mu so that mdm_wire_teardown cannot free the stage under a caller; every mdm_*
 * call below is non-blocking, so the lock is held for a list push at most. */
#include "engine/server/app_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/enroll/validate.h"
#include "engine/mdm/intune.h"
#include "engine/mdm/validate.h"
#include "hsm/hsm.h"
#include "engine/scep/reject.h"

#define PKI_MESSAGE_TYPE "application/x-pki-message"
#define CRL_REASON_CESSATION 5
static const char REVOKED_BY[] = "scepd: Intune did not acknowledge the certificate";

/* [intune] client_key_label: the certificate credential's key is on scepd's own token, loaded
 * through the scepd-hsm provider like the CA key (engine/pki/ca.c); freed by mdm_wire_free,
 * before the token closes (ca_free). The stage thread signs with it on the token's shared
 * session (it never attaches: a signature an hour). */
static int client_key_setup(app *a, char *why, size_t whylen)
{
    const char *label = a->mdm_cfg->client_key_label;
    EVP_PKEY *k = NULL;
    if (label[0] == '\0')
        return 0;
    if (a->ca->token == NULL) {
        snprintf(why, whylen, "client_key_label %s: needs [keys] mode = pkcs11", label);
        return -1;
    }
    if (hsm_key_load(a->ca->token, label, &k) != 0) {
        snprintf(why, whylen, "client_key_label %s: %s", label, hsm_last_error());
        return -1;
    }
    a->mdm_cfg->client_token_key = k;
    return 0;
}

int mdm_wire_setup(app *a, char *err, size_t errlen)
{
    char why[512];
    int rc = -1;

    pthread_mutex_init(&a->mdm_mu, NULL);
    a->mdm_mu_ready = 1;
    if (a->cfg.mdm_config[0] == '\0')
        return 0;
    if ((a->mdm_cfg = calloc(1, sizeof(*a->mdm_cfg))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (mdm_config_load(a->mdm_cfg, a->cfg.mdm_config, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "mdm_config %s: %s", a->cfg.mdm_config, why);
        goto out;
    }
    if (client_key_setup(a, why, sizeof(why)) != 0 ||
        intune_cred_check(a->mdm_cfg, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "mdm_config %s: [intune] %s", a->cfg.mdm_config, why);
        goto out;
    }
    int e = mdm_stage_create(a->mdm_cfg, a->audit, &a->mdm);
    if (e != 0) {
        snprintf(err, errlen, "mdm_config %s: cannot start the validation stage: %s",
                 a->cfg.mdm_config, strerror(-e));
        goto out;
    }
    if (ndes_route_setup(a, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    return rc;
}

void mdm_wire_teardown(app *a)
{
    if (!a->mdm_mu_ready)
        return;
    pthread_mutex_lock(&a->mdm_mu);
    mdm_stage *s = a->mdm;
    a->mdm = NULL;
    pthread_mutex_unlock(&a->mdm_mu);
    mdm_stage_destroy(s);      /* answers what is pending: callbacks below, SHUTDOWN */
}

void mdm_wire_free(app *a)
{
    intune_revoke_stop(a);
    mdm_wire_teardown(a);
    intune_revoke_free(a);     /* after the stage (its callbacks) and the writer stopped */
    ndes_route_free(a);
    if (a->mdm_cfg != NULL) {
        EVP_PKEY_free(a->mdm_cfg->client_token_key);   /* after the stage: it signs with it */
        mdm_config_cleanse(a->mdm_cfg);
        free(a->mdm_cfg);
        a->mdm_cfg = NULL;
    }
    if (a->mdm_mu_ready)
        pthread_mutex_destroy(&a->mdm_mu);
    a->mdm_mu_ready = 0;
}

/* Stage thread: the verdict into the job, the job back to the workers. */
static void validated(void *arg, const mdm_verdict *v)
{
    job *j = arg;
    job_mdm *m = &j->pki.mdm;
    m->result = v->result;
    m->diag = v->diag;
    if (v->code[0] != '\0' && v->reason[0] != '\0')
        snprintf(m->detail, sizeof(m->detail), "%s: %s", v->code, v->reason);
    else
        snprintf(m->detail, sizeof(m->detail), "%s", v->code[0] != '\0' ? v->code : v->reason);
    m->done = 1;
    j->next = NULL;
    worker_queue_push(j->owner, j);
}

/* The verdict without asking (the stage is not there or refused the call): on the job's
 * next pass it becomes the refusal. */
static void verdict_now(job *j, int diag, const char *why)
{
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    v.result = MDM_ERROR;
    v.diag = diag;
    snprintf(v.reason, sizeof(v.reason), "%s", why);
    validated(j, &v);
}

void mdm_wire_park(app *a, job *j)
{
    const enroll_mdm_facts *f = j->pki.mdm.facts;
    int rc = -ENOTSUP;

    pthread_mutex_lock(&a->mdm_mu);
    if (a->mdm != NULL && f != NULL)
        rc = mdm_submit(a->mdm, &f->req, validated, j);
    pthread_mutex_unlock(&a->mdm_mu);
    if (rc == 0)
        return;                       /* parked: the stage holds it */
    if (rc == -EAGAIN || rc == -ESHUTDOWN) {
        /* Too many validations in flight, or stopping: retry later, same transactionID. */
        job_reply_text(j, 503, "MDM validation busy, retry later\n");
        snprintf(j->headers, sizeof(j->headers), "Retry-After: %u\r\n",
                 admit_retry_after(&a->admit));
        j->reply.resp.extra_headers = j->headers;
        audit_fields af = {.diag = rc == -EAGAIN ? "mdm_busy" : "mdm_shutdown",
                           .profile = j->profile, .peer = j->peer,
                           .detail = "validation stage full or stopping", .failinfo = -1,
                           .http_status = 503};
        audit_emit(a->audit, AUDIT_HTTP_REJECTED, &af);
        worker_deliver(a, j);
        return;
    }
    verdict_now(j, rc == -ENOTSUP ? MDM_DIAG_NOT_CONFIGURED : MDM_DIAG_UNAVAILABLE,
                rc == -ENOTSUP ? "this MDM integration is not configured (mdm_config)"
                               : strerror(-rc));
}

void mdm_wire_refused(app *a, job *j)
{
    job_mdm *m = &j->pki.mdm;
    const enroll_mdm_facts *f = m->facts;
    if (j->kind != JOB_PKIOPERATION || m->kind != MDM_INTUNE || m->done == 0 ||
        m->result != MDM_ALLOW || f == NULL)
        return;
    /* A 200 without a refusal is a CertRep SUCCESS (a replay after a store conflict). */
    if (j->reply.resp.status == 200 && m->rej == REJ_NONE)
        return;
    int rej = j->reply.resp.status == 200 ? m->rej : REJ_NONE;
    char text[256];
    snprintf(text, sizeof(text), "%s", rej != REJ_NONE ? reject_text(rej)
                                       : "the CA could not sign, retry later");
    /* Fire and forget: the refusal is answered now; an unacknowledged notification is
     * the stage's to log, not the client's business. */
    pthread_mutex_lock(&a->mdm_mu);
    if (a->mdm != NULL)
        mdm_notify_failure(a->mdm, f->txid, f->csr, f->csr_len, enroll_mdm_hresult(rej), text,
                           NULL, NULL);
    pthread_mutex_unlock(&a->mdm_mu);
    m->kind = 0;                        /* once per transaction */
}

/* Stage thread: Intune's answer to the successNotification. ALLOW: the CertRep SUCCESS goes
 * out now. Otherwise the certificate is revoked (it stays recorded) and, once the revocation
 * is durable (mdm_wire_revoked), a worker signs the client's FAILURE. */
static void success_notified(void *arg, const mdm_verdict *v)
{
    job *j = arg;
    app *a = j->owner;
    job_mdm *m = &j->pki.mdm;
    if (v->result == MDM_ALLOW) {
        j->next = NULL;
        worker_deliver(a, j);
        return;
    }
    char detail[400];
    snprintf(detail, sizeof(detail), "successNotification: %s%s%s", mdm_diag_code(v->diag),
             v->code[0] != '\0' ? ": " : "", v->code[0] != '\0' ? v->code : v->reason);
    audit_fields f = {.diag = mdm_diag_code(v->diag), .txid = j->pki.txkey,
                      .profile = j->profile, .subject = j->pki.subject,
                      .serial = j->pki.serial_hex, .peer = j->peer, .detail = detail,
                      .failinfo = -1};
    audit_emit(a->audit, AUDIT_MDM_NOTIFY_FAILED, &f);
    uint8_t serial[STORE_SERIAL_LEN];
    memcpy(serial, j->put.cert.serial, sizeof(serial));
    memset(&j->put, 0, sizeof(j->put));
    j->put.kind = STORE_PUT_REVOKE;
    memcpy(j->put.rev.serial, serial, sizeof(serial));
    j->put.rev.reason = CRL_REASON_CESSATION;
    j->put.rev.revoked_at = (int64_t)time(NULL);
    j->put.rev.who = REVOKED_BY;
    j->put.rev.who_len = strlen(REVOKED_BY);
    m->revoking = 1;
    store_submit(a->store, &j->put);
}

int mdm_wire_committed(app *a, job *j)
{
    job_mdm *m = &j->pki.mdm;
    const enroll_mdm_facts *f = m->facts;
    int rc = -ENOTSUP;
    if (!m->notify || j->put.kind != STORE_PUT_CERT || j->pki.cert_der == NULL || f == NULL)
        return 0;
    m->notify = 0;
    m->kind = 0;           /* notified either way: no failureNotification after this */
    pthread_mutex_lock(&a->mdm_mu);
    if (a->mdm != NULL)
        rc = f->have_cert ? mdm_notify_success_facts(a->mdm, f->txid, f->csr, f->csr_len,
                                                     &f->cert, success_notified, j)
           : mdm_notify_success(a->mdm, f->txid, f->csr, f->csr_len, j->pki.cert_der,
                                j->pki.cert_der_len, success_notified, j);
    pthread_mutex_unlock(&a->mdm_mu);
    if (rc != 0) {
        mdm_verdict v;
        memset(&v, 0, sizeof(v));
        v.result = MDM_ERROR;
        v.diag = rc == -ESHUTDOWN ? MDM_DIAG_SHUTDOWN : MDM_DIAG_UNAVAILABLE;
        snprintf(v.reason, sizeof(v.reason), "%s", strerror(-rc));
        success_notified(j, &v);
    }
    return 1;
}

int mdm_wire_revoked(app *a, job *j)
{
    job_mdm *m = &j->pki.mdm;
    if (j->kind != JOB_PKIOPERATION || m->revoking != 1)
        return 0;
    int ok = j->put.result == STORE_OK || j->put.result == STORE_ALREADY_REVOKED;
    audit_fields f = {.diag = reject_diag(REJ_MDM_NOTIFY), .txid = j->pki.txkey,
                      .profile = j->profile, .subject = j->pki.subject,
                      .serial = j->pki.serial_hex, .peer = j->peer,
                      .detail = ok ? REVOKED_BY : store_strerror(j->put.result), .failinfo = -1};
    audit_emit(a->audit, ok ? AUDIT_REVOKED : AUDIT_REVOKE_FAILED, &f);
    if (ok) {
        pthread_mutex_lock(&a->pub_mu);       /* the publisher rebuilds the CRL soon */
        a->pub_wake = 1;
        pthread_cond_broadcast(&a->pub_cv);
        pthread_mutex_unlock(&a->pub_mu);
    }
    /* The CertRep FAILURE needs the RA key: a worker signs it (enroll_notify_failed). Only
     * when this is the rare path, so an acknowledged enrollment costs no fourth signature. */
    memset(&j->put, 0, sizeof(j->put));
    m->revoking = 2;
    if (worker_queue_offer(a, j) == 0)
        return 1;
    /* Stopping (the workers are joined before the writer): no key to sign with any more.
     * A clean 503 (the shards are stopped: it is released unsent). */
    m->revoking = 0;
    f.detail = "stopping: the CertRep FAILURE cannot be signed";
    f.http_status = 503;
    audit_emit(a->audit, AUDIT_REQUEST_REJECTED, &f);
    job_reply_text(j, 503, "server stopping, retry later\n");
    worker_deliver(a, j);
    return 1;
}
