/* The answers of a SCEP transaction and their audit events. */
#include "engine/enroll/enroll_internal.h"

#include <string.h>
#include <openssl/bio.h>
#include <openssl/objects.h>

#include "engine/pki/serial.h"
#include "engine/scep/reject.h"
#include "hsm/hsm.h"

static const char PKI_MESSAGE_TYPE[] = "application/x-pki-message";

void enroll_name_text(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    out[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (n = BIO_get_mem_data(b, &p)) > 0) {
        size_t m = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
        memcpy(out, p, m);
        out[m] = '\0';
    }
    BIO_free(b);
}

void enroll_emit(const enroll_ctx *ctx, job *j, const scep_request *req, int event,
                 int rej, const char *detail)
{
    j->m_event = event;        /* the worker counts the outcome (engine/server/metrics.h) */
    j->m_rej = rej;
    audit_fields f = {
        .diag = rej != REJ_NONE ? reject_diag(rej) : NULL,
        .txid = req != NULL && req->txid_len > 0 ? req->txid : NULL,
        .profile = j->profile,
        .subject = j->pki.subject,
        .serial = j->pki.serial_hex,
        .peer = j->peer,
        .detail = detail,
        .failinfo = rej != REJ_NONE ? reject_failinfo(rej) : -1,
    };
    audit_emit(ctx->audit, event, &f);
}

int enroll_certrep(const enroll_ctx *ctx, job *j, const scep_request *req, int status, int rej,
                   X509 *cert)
{
    STACK_OF(X509) *certs = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    int rc = -1;

    if (cert != NULL) {
        certs = sk_X509_new_null();
        if (certs == NULL || !sk_X509_push(certs, cert))
            goto out;
    }
    if (scep_certrep(req, status, status == SCEP_FAILURE ? reject_failinfo(rej) : 0,
                     status == SCEP_FAILURE ? reject_text(rej) : NULL, certs,
                     ctx->ca->ra_key, ctx->ca->ra_cert, &der, &len) != 0)
        goto out;
    job_reply(j, 200, PKI_MESSAGE_TYPE, der, len);
    rc = 0;
out:
    sk_X509_free(certs);
    return rc;
}

int enroll_return_cert(const enroll_ctx *ctx, job *j, const scep_request *req,
                       const uint8_t serial[STORE_SERIAL_LEN], X509 *cert, const char *what)
{
    serial_to_hex(serial, j->pki.serial_hex);
    enroll_name_text(X509_get_subject_name(cert), j->pki.subject, sizeof(j->pki.subject));
    if (enroll_certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        return REJ_INTERNAL;
    enroll_emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, what);
    return REJ_NONE;
}

int enroll_certrep_content(const enroll_ctx *ctx, job *j, const scep_request *req,
                           const uint8_t *content, size_t content_len)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (scep_certrep_content(req, SCEP_SUCCESS, 0, NULL, content, content_len, ctx->ca->ra_key,
                             ctx->ca->ra_cert, &der, &len) != 0)
        return -1;
    job_reply(j, 200, PKI_MESSAGE_TYPE, der, len);
    return 0;
}

int enroll_certrep_der(const enroll_ctx *ctx, job *j, const scep_request *req,
                       const uint8_t *cert, size_t cert_len)
{
    uint8_t *deg = NULL;
    size_t len = 0;
    int rc = scep_degenerate_der(cert, cert_len, &deg, &len) == 0
                 ? enroll_certrep_content(ctx, j, req, deg, len) : -1;
    free(deg);
    return rc;
}

/* The Retry-After of a 503 for a failed private-key operation: the longest backoff between a
 * worker's recovery attempts (RECOVER_BACKOFF_MAX_MS in engine/server/recover.h, which runs
 * the attempt when a request comes), so a client coming back finds the next attempt made. */
#define ENROLL_HSM_RETRY_AFTER_S 2

/* 1 when a private-key operation of this request failed because the session, the login or
 * the token went away (hsm.h: the thread's last result, cleared when the worker's run began):
 * the request cannot be judged by what came out of it (a decryption that failed so is not a
 * bad envelope), and no CertRep can be signed. */
static int hsm_lost(const enroll_ctx *ctx)
{
    return ctx->ca->token != NULL && HSM_FAULT_IS_LOSS(hsm_last_fault());
}

int enroll_fail(const enroll_ctx *ctx, job *j, const scep_request *req, int rej,
                const char *detail)
{
    char what[96];
    if (hsm_lost(ctx)) {
        snprintf(what, sizeof(what), "%s (%s)",
                 rej == REJ_DECRYPT ? "RA decryption failed" : "PKCS#11 session lost",
                 reject_diag(rej));
        return enroll_unavailable(ctx, j, req, what);
    }
    if (rej == REJ_SIG_DIGEST && req->sig_md_nid != NID_undef)
        detail = OBJ_nid2sn(req->sig_md_nid);
    j->pki.mdm.rej = rej;          /* Intune's failureNotification names it (validate.h) */
    /* A refused one-time challenge has its own event (the Intune connector's "challenge
     * expired/invalid" rows); everything else is a rejected request. Written once the
     * FAILURE is signed: a client answered 503 instead has the HSM_FAILURE event only (and
     * a request the worker runs again is audited once). */
    int ev = rej >= REJ_CHAL_WRONG && rej <= REJ_CHAL_PROFILE ? AUDIT_CHALLENGE_REJECTED
                                                               : AUDIT_REQUEST_REJECTED;
    if (enroll_certrep(ctx, j, req, SCEP_FAILURE, rej, NULL) != 0) {
        snprintf(what, sizeof(what), "cannot sign CertRep FAILURE (%s)", reject_diag(rej));
        return enroll_unavailable(ctx, j, req, what);
    }
    enroll_emit(ctx, j, req, ev, rej, detail);
    return JOB_DELIVER;
}

/* The request was fine but a private-key operation failed: the client gets HTTP 503 with
 * Retry-After and should retry; no CertRep (it could not be signed, or would wrongly tell the
 * device its request is bad). One HSM_FAILURE event with the token's own error (diag: the CKR
 * name; while the worker is in an outage, the CKR that keeps it without a session), unless
 * the worker runs the request again after recovering (enroll_ctx.hsm_will_retry): then the
 * next run's answer is the one audited. */
int enroll_unavailable(const enroll_ctx *ctx, job *j, const scep_request *req,
                       const char *what)
{
    const char *cause = NULL;
    int retried = ctx->ca->token != NULL && ctx->hsm_will_retry != NULL &&
                  ctx->hsm_will_retry(ctx->hsm_arg, &cause);
    if (!retried) {
        char detail[320];
        const char *rv = ctx->ca->token != NULL && hsm_last_rv() != 0 ? hsm_last_rv_name() : NULL;
        if (ctx->ca->token == NULL)
            snprintf(detail, sizeof(detail), "%s", what);
        else if (cause != NULL)
            snprintf(detail, sizeof(detail), "%s: %s; the worker has no PKCS#11 session (%s)",
                     what, hsm_last_error(), cause);
        else
            snprintf(detail, sizeof(detail), "%s: %s", what, hsm_last_error());
        enroll_audit_503(ctx, j, req, AUDIT_HSM_FAILURE, cause != NULL ? cause : rv, detail);
    }
    job_reply_later(j, "CA unavailable, retry later\n", ENROLL_HSM_RETRY_AFTER_S);
    return JOB_DELIVER;
}

void enroll_audit_503(const enroll_ctx *ctx, const job *j, const scep_request *req, int event,
                      const char *diag, const char *detail)
{
    audit_fields f = {
        .diag = diag,
        .txid = req != NULL && req->txid_len > 0 ? req->txid : NULL,
        .profile = j->profile,
        .subject = j->pki.subject,
        .serial = j->pki.serial_hex[0] != '\0' ? j->pki.serial_hex : NULL,
        .peer = j->peer,
        .detail = detail,
        .failinfo = -1,
        .http_status = 503,
    };
    audit_emit(ctx->audit, event, &f);
}


int enroll_pending_reply(const enroll_ctx *ctx, job *j, const scep_request *req,
                         const char *detail)
{
    if (enroll_certrep(ctx, j, req, SCEP_PENDING, REJ_NONE, NULL) != 0) {
        /* a lost session: the caller's enroll_fail answers 503 and audits it */
        if (!hsm_lost(ctx))
            enroll_emit(ctx, j, req, AUDIT_HSM_FAILURE, REJ_INTERNAL,
                        "cannot sign CertRep PENDING");
        return REJ_INTERNAL;
    }
    if (detail != NULL)
        enroll_emit(ctx, j, req, AUDIT_REQUEST_PENDING, REJ_NONE, detail);
    return REJ_NONE;
}
