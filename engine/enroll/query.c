/* GetCert and GetCRL: an IssuerAndSerialNumber naming a certificate this CA issued, answered
 * with that certificate or with the current CRL. */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>

#include "engine/pki/serial.h"
#include "engine/scep/reject.h"

/* Opens the envelope (single DES if the URL's profile allows it), then REJ_NONE with the
 * serial and the stored certificate, or REJ_BAD_QUERY / REJ_UNKNOWN_CERT / an envelope
 * rejection. The store not answering is no verdict: REJ_NONE with *store_rc set (and no
 * certificate); the caller answers 503. */
static int issuer_and_serial(const enroll_ctx *ctx, const job *j, scep_request *req,
                             uint8_t serial[STORE_SERIAL_LEN], X509 **cert, int *store_rc)
{
    PKCS7_ISSUER_AND_SERIAL *ias = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert,
                                 profile_set_allows_des_for(issuer_profiles(ctx->issuer),
                                                            j->profile));

    if (rej != REJ_NONE)
        goto out;
    const unsigned char *p = req->inner;
    ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, (long)req->inner_len);
    rej = REJ_BAD_QUERY;
    if (ias == NULL)
        goto out;
    rej = REJ_UNKNOWN_CERT;
    if (X509_NAME_cmp(ias->issuer, ctx->ca->ca_name) != 0 ||
        serial_from_asn1(ias->serial, serial) != 0)
        goto out;
    int rc = enroll_stored_cert(ctx, serial, cert, NULL, NULL);
    if (enroll_store_lost(rc))
        *store_rc = rc;
    else if (rc != STORE_OK)
        goto out;
    rej = REJ_NONE;
out:
    PKCS7_ISSUER_AND_SERIAL_free(ias);
    return rej;
}

int enroll_getcert(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[STORE_SERIAL_LEN];
    X509 *cert = NULL;
    int store_rc = 0;
    int rej = issuer_and_serial(ctx, j, req, serial, &cert, &store_rc);

    if (rej != REJ_NONE || store_rc != 0)
        goto out;
    rej = enroll_return_cert(ctx, j, req, serial, cert, "GetCert");
out:
    X509_free(cert);
    ERR_clear_error();
    if (store_rc != 0)
        return enroll_store_unavailable(ctx, j, req, "GetCert", store_rc);
    return rej != REJ_NONE ? enroll_fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}

/* The CRL may be megabytes (a million entries): it goes into the reply as the published
 * bytes (scep_degenerate_crl), never parsed into an X509_CRL. */
int enroll_getcrl(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[STORE_SERIAL_LEN], *deg = NULL;
    size_t deg_len = 0;
    X509 *cert = NULL;
    crl_snapshot *crl = NULL;
    int store_rc = 0;
    int rej = issuer_and_serial(ctx, j, req, serial, &cert, &store_rc);

    if (rej != REJ_NONE || store_rc != 0)
        goto out;
    serial_to_hex(serial, j->pki.serial_hex);
    rej = REJ_NO_CRL;
    crl = ctx->crls != NULL ? crl_cache_get(ctx->crls) : NULL;
    if (crl == NULL)
        goto out;
    rej = REJ_INTERNAL;
    if (scep_degenerate_crl(crl->der, crl->len, &deg, &deg_len) != 0 ||
        enroll_certrep_content(ctx, j, req, deg, deg_len) != 0)
        goto out;
    char detail[48];
    snprintf(detail, sizeof(detail), "crl_number=%llu", (unsigned long long)crl->number);
    enroll_emit(ctx, j, req, AUDIT_CRL_RETURNED, REJ_NONE, detail);
    rej = REJ_NONE;
out:
    free(deg);
    crl_snapshot_unref(crl);
    X509_free(cert);
    ERR_clear_error();
    if (store_rc != 0)
        return enroll_store_unavailable(ctx, j, req, "GetCRL", store_rc);
    return rej != REJ_NONE ? enroll_fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}
