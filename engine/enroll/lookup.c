/* What the store already holds about a transaction, read with the worker's own reader (one
 * read snapshot per lookup, nothing kept past it), and the renewal signer check. */
#include "engine/enroll/enroll_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/enroll/pending.h"
#include "engine/pki/serial.h"
#include "engine/scep/reject.h"

int enroll_stored_cert(const enroll_ctx *ctx, const uint8_t serial[STORE_SERIAL_LEN],
                       X509 **out, store_cert *meta, char *profile_out)
{
    store_cert c;
    int rc = store_reader_begin(ctx->reader);
    if (rc != 0)
        return rc;
    rc = store_get_cert(ctx->reader, serial, &c);
    if (rc == STORE_OK) {
        const unsigned char *p = c.der;
        *out = d2i_X509(NULL, &p, (long)c.der_len);
        if (*out == NULL)
            rc = STORE_E_CORRUPT;     /* a damaged record, not a store that is away */
        if (profile_out != NULL && c.profile_len < ENROLL_PROFILE_MAX) {
            memcpy(profile_out, c.profile, c.profile_len);
            profile_out[c.profile_len] = '\0';
        }
        if (*out != NULL && meta != NULL) {
            *meta = c;
            meta->subject = meta->txid = meta->profile = NULL;
            meta->der = NULL;
        }
    }
    store_reader_end(ctx->reader);
    return rc;
}

int enroll_lookup_txid(const enroll_ctx *ctx, const char *txkey,
                       uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN])
{
    int rc = store_reader_begin(ctx->reader);
    if (rc != 0)
        return rc;
    rc = store_get_txid(ctx->reader, txkey, strlen(txkey), serial, key_hash);
    store_reader_end(ctx->reader);
    return rc;
}

int enroll_lookup_request(const enroll_ctx *ctx, const char *txkey, int *status,
                          uint8_t key_hash[STORE_HASH_LEN])
{
    const uint8_t *v = NULL;
    size_t vl = 0;
    pending_request r;
    int rc;
    if (strlen(txkey) > STORE_AUX_KEY_MAX)
        return STORE_NOTFOUND;
    if ((rc = store_reader_begin(ctx->reader)) != 0)
        return rc;
    rc = store_get_aux(ctx->reader, STORE_DB_REQUESTS, txkey, strlen(txkey), &v, &vl);
    if (rc == 0) {
        if (pending_decode(v, vl, &r) == 0) {
            *status = r.status;
            memcpy(key_hash, r.key_hash, STORE_HASH_LEN);
        } else {
            rc = STORE_E_CORRUPT;
        }
    }
    store_reader_end(ctx->reader);
    return rc;
}

int enroll_store_lost(int rc)
{
    return rc < 0 && rc != STORE_E_CORRUPT;
}

int enroll_store_unavailable(const enroll_ctx *ctx, job *j, const scep_request *req,
                             const char *what, int rc)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "store unavailable: %s (%s)", what,
             rc > -4096 && rc < 0 ? strerror(-rc) : "store error");
    enroll_audit_503(ctx, j, req, AUDIT_STORE_FAILURE, "store_unavailable", detail);
    job_reply_later(j, "store unavailable, retry later\n", ENROLL_STORE_RETRY_AFTER_S);
    return JOB_DELIVER;
}

int enroll_check_renewal_signer(const enroll_ctx *ctx, X509 *signer,
                                uint8_t serial[STORE_SERIAL_LEN], int64_t *nb, int64_t *na,
                                char old_profile[ENROLL_PROFILE_MAX], int *store_rc)
{
    X509 *stored = NULL;
    store_cert meta;
    int rej = REJ_RENEW_SIGNER;

    old_profile[0] = '\0';
    *store_rc = STORE_OK;
    if (X509_cmp(signer, ctx->ca->ca_cert) == 0)
        goto out;
    rej = REJ_RENEW_UNKNOWN;
    if (serial_from_asn1(X509_get0_serialNumber(signer), serial) != 0)
        goto out;
    rej = REJ_RENEW_EXPIRED;
    if (X509_cmp_current_time(X509_get0_notBefore(signer)) >= 0 ||
        X509_cmp_current_time(X509_get0_notAfter(signer)) <= 0)
        goto out;
    int rc = enroll_stored_cert(ctx, serial, &stored, &meta, old_profile);
    rej = rc == STORE_NOTFOUND ? REJ_RENEW_UNKNOWN : REJ_INTERNAL;
    if (rc != STORE_OK) {
        *store_rc = rc;
        goto out;
    }
    rej = REJ_RENEW_UNKNOWN;
    if (X509_cmp(stored, signer) != 0)
        goto out;
    *nb = meta.not_before;
    *na = meta.not_after;
    rej = meta.status == STORE_CERT_REVOKED ? REJ_RENEW_REVOKED : REJ_NONE;
out:
    X509_free(stored);
    return rej;
}
