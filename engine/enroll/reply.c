/* The answers of a SCEP transaction and their audit events. */
#include "engine/enroll/enroll_internal.h"

#include <string.h>
#include <openssl/bio.h>
#include <openssl/objects.h>

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

void enroll_emit(const enroll_ctx *ctx, const job *j, const scep_request *req, int event,
                 int rej, const char *detail)
{
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

int enroll_fail(const enroll_ctx *ctx, job *j, const scep_request *req, int rej,
                const char *detail)
{
    if (rej == REJ_SIG_DIGEST && req->sig_md_nid != NID_undef)
        detail = OBJ_nid2sn(req->sig_md_nid);
    j->pki.mdm.rej = rej;          /* Intune's failureNotification names it (validate.h) */
    /* A refused one-time challenge has its own event (the Intune connector's "challenge
     * expired/invalid" rows); everything else is a rejected request. */
    int ev = rej >= REJ_CHAL_WRONG && rej <= REJ_CHAL_PROFILE ? AUDIT_CHALLENGE_REJECTED
                                                               : AUDIT_REQUEST_REJECTED;
    enroll_emit(ctx, j, req, ev, rej, detail);
    if (enroll_certrep(ctx, j, req, SCEP_FAILURE, rej, NULL) != 0)
        return enroll_unavailable(ctx, j, req, "cannot sign CertRep FAILURE");
    return JOB_DELIVER;
}

/* The request was fine but a private-key operation failed: the client gets HTTP 503 and
 * should retry; no CertRep (it could not be signed, or would wrongly tell the device its
 * request is bad). One HSM_FAILURE event, with the token's own error (the CKR name). */
int enroll_unavailable(const enroll_ctx *ctx, job *j, const scep_request *req,
                       const char *what)
{
    char detail[320];
    if (ctx->ca->token != NULL)
        snprintf(detail, sizeof(detail), "%s: %s", what, hsm_last_error());
    else
        snprintf(detail, sizeof(detail), "%s", what);
    audit_fields f = {
        .txid = req != NULL && req->txid_len > 0 ? req->txid : NULL,
        .profile = j->profile,
        .subject = j->pki.subject,
        .peer = j->peer,
        .detail = detail,
        .failinfo = -1,
        .http_status = 503,
    };
    audit_emit(ctx->audit, AUDIT_HSM_FAILURE, &f);
    job_reply_text(j, 503, "CA unavailable, retry later\n");
    return JOB_DELIVER;
}

int enroll_pending_reply(const enroll_ctx *ctx, job *j, const scep_request *req,
                         const char *detail)
{
    if (enroll_certrep(ctx, j, req, SCEP_PENDING, REJ_NONE, NULL) != 0) {
        enroll_emit(ctx, j, req, AUDIT_HSM_FAILURE, REJ_INTERNAL, "cannot sign CertRep PENDING");
        return REJ_INTERNAL;
    }
    if (detail != NULL)
        enroll_emit(ctx, j, req, AUDIT_REQUEST_PENDING, REJ_NONE, detail);
    return REJ_NONE;
}
