/* SCEP transactions on a crypto worker. See enroll.h. */
#include "engine/enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "engine/reject.h"
#include "engine/scep.h"
#include "engine/scep_oid.h"

static const char PKI_MESSAGE_TYPE[] = "application/x-pki-message";

void enroll_http_error(job *j, int status, const char *reason)
{
    free(j->body);
    j->body = NULL;
    j->body_len = 0;
    j->reply.resp.status = status;
    j->reply.resp.content_type = "text/plain";
    j->reply.resp.body = (const uint8_t *)reason;
    j->reply.resp.body_len = strlen(reason);
    j->reply.resp.extra_headers = NULL;
    j->reply.resp.close = status >= 500 ? 0 : 1;
}

static void set_pki_reply(job *j, uint8_t *der, size_t len)
{
    free(j->body);
    j->body = der;
    j->body_len = len;
    j->reply.resp.status = 200;
    j->reply.resp.content_type = PKI_MESSAGE_TYPE;
    j->reply.resp.body = der;
    j->reply.resp.body_len = len;
    j->reply.resp.extra_headers = NULL;
    j->reply.resp.close = 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The certificate's serial as 16 bytes; -1 if it is not a 1..16-byte positive integer. */
static int serial_bytes(const ASN1_INTEGER *ai, uint8_t out[STORE_SERIAL_LEN])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    int rc = -1;
    if (bn != NULL && !BN_is_negative(bn) && BN_num_bytes(bn) <= STORE_SERIAL_LEN &&
        BN_bn2binpad(bn, out, STORE_SERIAL_LEN) == STORE_SERIAL_LEN)
        rc = 0;
    BN_free(bn);
    return rc;
}

static void name_text(const X509_NAME *name, char *out, size_t outlen)
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

static void emit(const enroll_ctx *ctx, const job *j, const scep_request *req, int event,
                 int rej, const char *detail)
{
    audit_fields f = {
        .diag = rej != REJ_NONE ? reject_diag(rej) : NULL,
        .txid = req != NULL && req->txid_len > 0 ? req->txid : NULL,
        .profile = j->profile,
        .subject = j->subject,
        .serial = j->serial_hex,
        .peer = j->peer,
        .detail = detail,
        .failinfo = rej != REJ_NONE ? reject_failinfo(rej) : -1,
    };
    audit_emit(ctx->audit, event, &f);
}

/* A CertRep for req with status and, for SUCCESS, the one certificate. */
static int certrep(const enroll_ctx *ctx, job *j, const scep_request *req, int status, int rej,
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
    set_pki_reply(j, der, len);
    rc = 0;
out:
    sk_X509_free(certs);
    return rc;
}

/* Answers FAILURE for rej and audits it. Falls back to HTTP 500 if even that cannot be
 * signed (the RA key is unavailable). */
static int fail(const enroll_ctx *ctx, job *j, const scep_request *req, int rej)
{
    const char *detail = NULL;
    if (rej == REJ_SIG_DIGEST && req->sig_md_nid != NID_undef)
        detail = OBJ_nid2sn(req->sig_md_nid);
    emit(ctx, j, req, AUDIT_REQUEST_REJECTED, rej, detail);
    if (certrep(ctx, j, req, SCEP_FAILURE, rej, NULL) != 0) {
        emit(ctx, j, req, AUDIT_HSM_FAILURE, REJ_INTERNAL, "cannot sign CertRep FAILURE");
        enroll_http_error(j, 500, "cannot sign the reply\n");
    }
    return JOB_DELIVER;
}

/* Loads a stored certificate (copied out of the read snapshot). */
static int stored_cert(const enroll_ctx *ctx, const uint8_t serial[STORE_SERIAL_LEN],
                       X509 **out, store_cert *meta)
{
    store_cert c;
    int rc;
    if (store_reader_begin(ctx->reader) != 0)
        return -1;
    rc = store_get_cert(ctx->reader, serial, &c);
    if (rc == STORE_OK) {
        const unsigned char *p = c.der;
        *out = d2i_X509(NULL, &p, (long)c.der_len);
        if (*out == NULL)
            rc = -1;
        else if (meta != NULL) {
            *meta = c;
            meta->subject = meta->txid = meta->profile = NULL;
            meta->der = NULL;
        }
    }
    store_reader_end(ctx->reader);
    return rc;
}

static int lookup_txid(const enroll_ctx *ctx, const char *txkey, uint8_t serial[16],
                       uint8_t key_hash[32])
{
    int rc;
    if (store_reader_begin(ctx->reader) != 0)
        return -1;
    rc = store_get_txid(ctx->reader, txkey, strlen(txkey), serial, key_hash);
    store_reader_end(ctx->reader);
    return rc;
}

/* Authorisation of a renewal: the signer is a certificate we issued, currently valid, known
 * to the store and not revoked. */
static int check_renewal_signer(const enroll_ctx *ctx, X509 *signer, uint8_t serial[16])
{
    if (X509_cmp(signer, ctx->ca->ca_cert) == 0)
        return REJ_RENEW_SIGNER;
    if (serial_bytes(X509_get0_serialNumber(signer), serial) != 0)
        return REJ_RENEW_UNKNOWN;
    if (X509_cmp_current_time(X509_get0_notBefore(signer)) >= 0 ||
        X509_cmp_current_time(X509_get0_notAfter(signer)) <= 0)
        return REJ_RENEW_EXPIRED;
    X509 *stored = NULL;
    store_cert meta;
    int rc = stored_cert(ctx, serial, &stored, &meta);
    if (rc != STORE_OK)
        return rc == STORE_NOTFOUND ? REJ_RENEW_UNKNOWN : REJ_INTERNAL;
    int same = X509_cmp(stored, signer) == 0;
    X509_free(stored);
    if (!same)
        return REJ_RENEW_UNKNOWN;
    return meta.status == STORE_CERT_REVOKED ? REJ_RENEW_REVOKED : REJ_NONE;
}

static int enroll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    uint8_t signer_serial[16], serial[16], key_hash[32], subj_hash[32];
    int rej, next = JOB_DELIVER;
    int ours = ca_issued(ctx->ca, req->signer);
    int renewal = req->msg_type == SCEP_MSG_RENEWALREQ || ours;

    rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);
    if (rej != REJ_NONE)
        goto out;
    if (renewal) {
        rej = ours ? check_renewal_signer(ctx, req->signer, signer_serial) : REJ_RENEW_SIGNER;
        if (rej != REJ_NONE)
            goto out;
    }
    rej = issue_check_csr(ctx->issuer, req->inner, req->inner_len, !renewal, &csr);
    if (rej != REJ_NONE)
        goto out;
    name_text(X509_REQ_get_subject_name(csr), j->subject, sizeof(j->subject));

    /* Idempotence: the same transaction (a renewal is keyed by its signer too) with the same
     * key and subject gets the certificate already issued; anything else under that
     * transactionID is a conflict. */
    if (renewal) {
        char sh[33];
        hex(signer_serial, 16, sh);
        snprintf(j->txkey, sizeof(j->txkey), "%s@%s", req->txid, sh);
    } else {
        snprintf(j->txkey, sizeof(j->txkey), "%s", req->txid);
    }
    rej = REJ_INTERNAL;
    if (issue_key_hash(X509_REQ_get0_pubkey(csr), key_hash) != 0 ||
        issue_name_hash(X509_REQ_get_subject_name(csr), subj_hash) != 0)
        goto out;
    uint8_t old_key[32];
    int trc = lookup_txid(ctx, j->txkey, serial, old_key);
    if (trc == STORE_OK) {
        store_cert meta;
        if (stored_cert(ctx, serial, &cert, &meta) != STORE_OK)
            goto out;
        if (memcmp(old_key, key_hash, 32) != 0 || memcmp(meta.subject_hash, subj_hash, 32) != 0) {
            rej = REJ_TXID_CONFLICT;
            goto out;
        }
        hex(serial, 16, j->serial_hex);
        if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
            goto out;
        emit(ctx, j, req, AUDIT_REPLAYED, REJ_NONE, NULL);
        rej = REJ_NONE;
        goto out;
    }
    if (trc != STORE_NOTFOUND)
        goto out;

    rej = issue_build(ctx->issuer, csr, &cert);
    if (rej != REJ_NONE) {
        if (rej == REJ_INTERNAL)
            emit(ctx, j, req, AUDIT_HSM_FAILURE, rej, "CA signature failed");
        goto out;
    }
    rej = REJ_INTERNAL;
    if (serial_bytes(X509_get0_serialNumber(cert), serial) != 0)
        goto out;
    unsigned char *der = NULL;
    int dlen = i2d_X509(cert, &der);
    if (dlen <= 0)
        goto out;
    free(j->cert_der);
    j->cert_der = malloc((size_t)dlen);
    if (j->cert_der == NULL) {
        OPENSSL_free(der);
        goto out;
    }
    memcpy(j->cert_der, der, (size_t)dlen);
    j->cert_der_len = (size_t)dlen;
    OPENSSL_free(der);
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0) {
        emit(ctx, j, req, AUDIT_HSM_FAILURE, rej, "cannot sign CertRep");
        goto out;
    }
    hex(serial, 16, j->serial_hex);

    store_put *p = &j->put;
    memset(p, 0, sizeof(*p));
    memcpy(p->cert.serial, serial, 16);
    p->cert.status = STORE_CERT_VALID;
    struct tm tm;
    ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm);
    p->cert.not_before = (int64_t)timegm(&tm);
    ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
    p->cert.not_after = (int64_t)timegm(&tm);
    p->cert.issued_at = (int64_t)time(NULL);
    memcpy(p->cert.key_hash, key_hash, 32);
    memcpy(p->cert.subject_hash, subj_hash, 32);
    p->cert.subject = j->subject;
    p->cert.subject_len = strlen(j->subject);
    p->cert.txid = j->txkey;
    p->cert.txid_len = strlen(j->txkey);
    p->cert.profile = j->profile;
    p->cert.profile_len = strlen(j->profile);
    p->cert.der = j->cert_der;
    p->cert.der_len = j->cert_der_len;
    j->audit_event = renewal ? AUDIT_RENEWED : AUDIT_ISSUED;
    j->audit_detail = req->cipher_nid == NID_des_cbc ? "single-DES request, DES3 reply" : NULL;
    next = JOB_COMMIT;
    rej = REJ_NONE;
out:
    X509_REQ_free(csr);
    X509_free(cert);
    ERR_clear_error();
    if (rej != REJ_NONE)
        return fail(ctx, j, req, rej);
    return next;
}

/* CertPoll / GetCertInitial: the certificate of a known transaction, to its requester. */
static int poll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16], key_hash[32], signer_key[32];
    X509 *cert = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);

    if (rej != REJ_NONE)
        goto out;
    rej = REJ_UNKNOWN_TXN;
    if (lookup_txid(ctx, req->txid, serial, key_hash) != STORE_OK ||
        issue_key_hash(X509_get0_pubkey(req->signer), signer_key) != 0 ||
        memcmp(key_hash, signer_key, 32) != 0)
        goto out;
    rej = REJ_INTERNAL;
    if (stored_cert(ctx, serial, &cert, NULL) != STORE_OK)
        goto out;
    hex(serial, 16, j->serial_hex);
    name_text(X509_get_subject_name(cert), j->subject, sizeof(j->subject));
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, "CertPoll");
    rej = REJ_NONE;
out:
    X509_free(cert);
    return rej != REJ_NONE ? fail(ctx, j, req, rej) : JOB_DELIVER;
}

/* GetCert: a certificate we issued, by issuer and serial. */
static int getcert(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16];
    X509 *cert = NULL;
    PKCS7_ISSUER_AND_SERIAL *ias = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);

    if (rej != REJ_NONE)
        goto out;
    const unsigned char *p = req->inner;
    ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, (long)req->inner_len);
    rej = REJ_BAD_QUERY;
    if (ias == NULL)
        goto out;
    rej = REJ_UNKNOWN_CERT;
    if (X509_NAME_cmp(ias->issuer, ctx->ca->ca_name) != 0 ||
        serial_bytes(ias->serial, serial) != 0 ||
        stored_cert(ctx, serial, &cert, NULL) != STORE_OK)
        goto out;
    hex(serial, 16, j->serial_hex);
    name_text(X509_get_subject_name(cert), j->subject, sizeof(j->subject));
    rej = REJ_INTERNAL;
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, "GetCert");
    rej = REJ_NONE;
out:
    X509_free(cert);
    PKCS7_ISSUER_AND_SERIAL_free(ias);
    ERR_clear_error();
    return rej != REJ_NONE ? fail(ctx, j, req, rej) : JOB_DELIVER;
}

/* ------------------------------------------------------------------ GetCRL
 *
 * scep_certrep() only carries certificates; a GetCRL answer carries the CRL in the
 * degenerate SignedData's crls field. The CRL may be megabytes (a million entries), so the
 * SignedData is written as DER around the published bytes instead of parsing them into an
 * X509_CRL, and the CertRep around it is signed here the way scep_certrep signs its own. */

static const uint8_t OID_SIGNED_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02 };
static const uint8_t OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01 };

static size_t hdr_len(size_t n)
{
    return n < 0x80 ? 2 : n <= 0xff ? 3 : n <= 0xffff ? 4 : n <= 0xffffff ? 5 : 6;
}

static uint8_t *put_hdr(uint8_t *p, uint8_t tag, size_t n)
{
    size_t h = hdr_len(n);
    *p++ = tag;
    if (h == 2) {
        *p++ = (uint8_t)n;
        return p;
    }
    *p++ = (uint8_t)(0x80 | (h - 2));
    for (size_t i = h - 2; i > 0; i--)
        *p++ = (uint8_t)(n >> (8 * (i - 1)));
    return p;
}

/* ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [1] { crl }, {} } } */
static uint8_t *degenerate_crl(const uint8_t *crl, size_t crl_len, size_t *outlen)
{
    size_t crls = hdr_len(crl_len) + crl_len;
    size_t sd_inner = 3 + 2 + (2 + sizeof(OID_DATA)) + crls + 2;
    size_t sd = hdr_len(sd_inner) + sd_inner;
    size_t ci_inner = sizeof(OID_SIGNED_DATA) + hdr_len(sd) + sd;
    size_t total = hdr_len(ci_inner) + ci_inner;
    uint8_t *out = malloc(total), *p = out;
    if (out == NULL)
        return NULL;
    p = put_hdr(p, 0x30, ci_inner);
    memcpy(p, OID_SIGNED_DATA, sizeof(OID_SIGNED_DATA));
    p += sizeof(OID_SIGNED_DATA);
    p = put_hdr(p, 0xa0, sd);
    p = put_hdr(p, 0x30, sd_inner);
    *p++ = 0x02; *p++ = 0x01; *p++ = 0x01;          /* version 1 */
    *p++ = 0x31; *p++ = 0x00;                       /* digestAlgorithms {} */
    p = put_hdr(p, 0x30, sizeof(OID_DATA));          /* encapContentInfo { data } */
    memcpy(p, OID_DATA, sizeof(OID_DATA));
    p += sizeof(OID_DATA);
    p = put_hdr(p, 0xa1, crl_len);                  /* crls [1] */
    memcpy(p, crl, crl_len);
    p += crl_len;
    *p++ = 0x31; *p++ = 0x00;                       /* signerInfos {} */
    *outlen = (size_t)(p - out);
    return out;
}

/* CertRep SUCCESS whose pkcsPKIEnvelope encrypts content (DER) to the requester. */
static int certrep_content(const enroll_ctx *ctx, job *j, const scep_request *req,
                           const uint8_t *content, size_t content_len)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (scep_certrep_content(req, SCEP_SUCCESS, 0, NULL, content, content_len, ctx->ca->ra_key,
                             ctx->ca->ra_cert, &der, &len) != 0)
        return -1;
    set_pki_reply(j, der, len);
    return 0;
}

/* GetCRL: IssuerAndSerialNumber of a certificate we issued -> the current CRL. */
static int getcrl(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16], *deg = NULL;
    size_t deg_len = 0;
    X509 *cert = NULL;
    PKCS7_ISSUER_AND_SERIAL *ias = NULL;
    crl_snapshot *crl = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);

    if (rej != REJ_NONE)
        goto out;
    const unsigned char *p = req->inner;
    ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, (long)req->inner_len);
    rej = REJ_BAD_QUERY;
    if (ias == NULL)
        goto out;
    rej = REJ_UNKNOWN_CERT;
    if (X509_NAME_cmp(ias->issuer, ctx->ca->ca_name) != 0 ||
        serial_bytes(ias->serial, serial) != 0 ||
        stored_cert(ctx, serial, &cert, NULL) != STORE_OK)
        goto out;
    hex(serial, 16, j->serial_hex);
    rej = REJ_NO_CRL;
    crl = ctx->crls != NULL ? crl_cache_get(ctx->crls) : NULL;
    if (crl == NULL)
        goto out;
    rej = REJ_INTERNAL;
    if ((deg = degenerate_crl(crl->der, crl->len, &deg_len)) == NULL ||
        certrep_content(ctx, j, req, deg, deg_len) != 0)
        goto out;
    char detail[48];
    snprintf(detail, sizeof(detail), "crl_number=%llu", (unsigned long long)crl->number);
    emit(ctx, j, req, AUDIT_CRL_RETURNED, REJ_NONE, detail);
    rej = REJ_NONE;
out:
    free(deg);
    crl_snapshot_unref(crl);
    X509_free(cert);
    PKCS7_ISSUER_AND_SERIAL_free(ias);
    ERR_clear_error();
    return rej != REJ_NONE ? fail(ctx, j, req, rej) : JOB_DELIVER;
}

int enroll_process(const enroll_ctx *ctx, job *j)
{
    scep_request req;
    int next;
    int rej = scep_parse(j->msg, j->msg_len, ctx->cfg->allow_sha1_messages, &req);

    j->subject[0] = '\0';
    j->serial_hex[0] = '\0';
    if (rej == REJ_NOT_PKIMESSAGE) {
        audit_fields f = {.diag = reject_diag(rej), .peer = j->peer, .profile = j->profile,
                          .failinfo = -1, .http_status = 400};
        audit_emit(ctx->audit, AUDIT_HTTP_REJECTED, &f);
        enroll_http_error(j, 400, "body is not a SCEP pkiMessage\n");
        next = JOB_DELIVER;
    } else if (rej != REJ_NONE) {
        next = fail(ctx, j, &req, rej);
    } else {
        switch (req.msg_type) {
        case SCEP_MSG_PKCSREQ:
        case SCEP_MSG_RENEWALREQ:
            next = enroll(ctx, j, &req);
            break;
        case SCEP_MSG_CERTPOLL:
            next = poll(ctx, j, &req);
            break;
        case SCEP_MSG_GETCERT:
            next = getcert(ctx, j, &req);
            break;
        case SCEP_MSG_GETCRL:
            next = getcrl(ctx, j, &req);
            break;
        default:
            next = fail(ctx, j, &req, REJ_UNKNOWN_TYPE);
            break;
        }
    }
    scep_request_clear(&req);
    return next;
}
