/* CertPoll (GetCertInitial): the certificate of a known transaction, to its requester (the
 * poll is signed like the request: with the key it was made for, or for a renewal with the
 * certificate it renews). */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <string.h>

#include "engine/enroll/pending.h"
#include "engine/pki/serial.h"
#include "engine/policy/issue.h"
#include "engine/scep/reject.h"

/* Not issued (yet): a request waiting for approval (PENDING), or denied. A renewal's
 * (by_signer) is the poller's by its key: the signer serial in it. *store_rc: the lookup's
 * error when the store did not answer (then REJ_NONE, nothing answered). */
static int poll_pending(const enroll_ctx *ctx, job *j, const scep_request *req,
                        const char *txkey, int by_signer,
                        const uint8_t signer_key[STORE_HASH_LEN], int *store_rc)
{
    uint8_t key_hash[STORE_HASH_LEN];
    int status = 0;
    int rc = enroll_lookup_request(ctx, txkey, &status, key_hash);
    if (enroll_store_lost(rc)) {
        *store_rc = rc;
        return REJ_NONE;
    }
    if (rc != 0 || (!by_signer && memcmp(key_hash, signer_key, STORE_HASH_LEN) != 0))
        return REJ_UNKNOWN_TXN;
    if (status == PENDING_DENIED)
        return REJ_REQUEST_DENIED;
    return enroll_pending_reply(ctx, j, req, NULL);
}

/* The store's key of the polled transaction. A renewal is stored as txid@<serial of the
 * certificate that signed it>, and its poll is signed by that same certificate: when the
 * signer is one of ours and that key is known (a certificate or a request), it is the one
 * (*by_signer = 1: the signature with the old certificate's key is the authorisation);
 * otherwise the transactionID alone, authorised by the key the request was made for.
 * 0, or the lookup's error when the store did not answer. */
static int poll_key(const enroll_ctx *ctx, const scep_request *req, char *txkey, size_t cap,
                    int *by_signer)
{
    uint8_t serial[STORE_SERIAL_LEN], key_hash[STORE_HASH_LEN];
    char sh[2 * STORE_SERIAL_LEN + 1];
    int status = 0;

    *by_signer = 0;
    if (ca_issued(ctx->ca, req->signer) &&
        serial_from_asn1(X509_get0_serialNumber(req->signer), serial) == 0) {
        serial_to_hex(serial, sh);
        snprintf(txkey, cap, "%s@%s", req->txid, sh);
        int rc = enroll_lookup_txid(ctx, txkey, serial, key_hash);
        if (rc != STORE_OK && !enroll_store_lost(rc))
            rc = enroll_lookup_request(ctx, txkey, &status, key_hash);
        if (enroll_store_lost(rc))
            return rc;
        if (rc == STORE_OK) {
            *by_signer = 1;
            return 0;
        }
    }
    snprintf(txkey, cap, "%s", req->txid);
    return 0;
}

int enroll_certpoll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[STORE_SERIAL_LEN], key_hash[STORE_HASH_LEN], signer_key[STORE_HASH_LEN];
    X509 *cert = NULL;
    int by_signer = 0, store_rc = 0;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert,
                                 profile_set_allows_des_for(issuer_profiles(ctx->issuer),
                                                            j->profile));

    if (rej != REJ_NONE)
        goto out;
    rej = REJ_UNKNOWN_TXN;
    if (issue_spki_hash(X509_get_X509_PUBKEY(req->signer), signer_key) != 0)
        goto out;
    /* The store not answering is no verdict on the request: 503, the client polls again. */
    rej = REJ_NONE;
    if ((store_rc = poll_key(ctx, req, j->pki.txkey, sizeof(j->pki.txkey), &by_signer)) != 0)
        goto out;
    int rc = enroll_lookup_txid(ctx, j->pki.txkey, serial, key_hash);
    if (enroll_store_lost(rc)) {
        store_rc = rc;
        goto out;
    }
    if (rc != STORE_OK) {
        rej = poll_pending(ctx, j, req, j->pki.txkey, by_signer, signer_key, &store_rc);
        goto out;
    }
    rej = REJ_UNKNOWN_TXN;
    if (!by_signer && memcmp(key_hash, signer_key, STORE_HASH_LEN) != 0)
        goto out;
    rc = enroll_stored_cert(ctx, serial, &cert, NULL, NULL);
    rej = REJ_INTERNAL;
    if (enroll_store_lost(rc)) {
        store_rc = rc;
        rej = REJ_NONE;
    }
    if (rc != STORE_OK)
        goto out;
    rej = enroll_return_cert(ctx, j, req, serial, cert, "CertPoll");
out:
    X509_free(cert);
    if (store_rc != 0)
        return enroll_store_unavailable(ctx, j, req, "CertPoll", store_rc);
    return rej != REJ_NONE ? enroll_fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}
