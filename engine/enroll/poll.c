/* CertPoll (GetCertInitial): the certificate of a known transaction, to its requester (the
 * poll is signed with the key the request was made for). */
#include "engine/enroll/enroll_internal.h"

#include <string.h>

#include "engine/enroll/pending.h"
#include "engine/pki/serial.h"
#include "engine/policy/issue.h"
#include "engine/scep/reject.h"

/* Not issued (yet): a request waiting for approval (PENDING), or denied. */
static int poll_pending(const enroll_ctx *ctx, job *j, const scep_request *req,
                        const uint8_t signer_key[STORE_HASH_LEN])
{
    uint8_t key_hash[STORE_HASH_LEN];
    int status = 0;
    if (enroll_lookup_request(ctx, req->txid, &status, key_hash) != 0 ||
        memcmp(key_hash, signer_key, STORE_HASH_LEN) != 0)
        return REJ_UNKNOWN_TXN;
    if (status == PENDING_DENIED)
        return REJ_REQUEST_DENIED;
    return enroll_pending_reply(ctx, j, req, NULL);
}

int enroll_certpoll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[STORE_SERIAL_LEN], key_hash[STORE_HASH_LEN], signer_key[STORE_HASH_LEN];
    X509 *cert = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert,
                                 profile_set_allows_des_for(issuer_profiles(ctx->issuer),
                                                            j->profile));

    if (rej != REJ_NONE)
        goto out;
    rej = REJ_UNKNOWN_TXN;
    if (issue_spki_hash(X509_get_X509_PUBKEY(req->signer), signer_key) != 0)
        goto out;
    if (enroll_lookup_txid(ctx, req->txid, serial, key_hash) != STORE_OK) {
        rej = poll_pending(ctx, j, req, signer_key);
        goto out;
    }
    if (memcmp(key_hash, signer_key, STORE_HASH_LEN) != 0)
        goto out;
    rej = REJ_INTERNAL;
    if (enroll_stored_cert(ctx, serial, &cert, NULL, NULL) != STORE_OK)
        goto out;
    serial_to_hex(serial, j->pki.serial_hex);
    enroll_name_text(X509_get_subject_name(cert), j->pki.subject, sizeof(j->pki.subject));
    if (enroll_certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    enroll_emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, "CertPoll");
    rej = REJ_NONE;
out:
    X509_free(cert);
    return rej != REJ_NONE ? enroll_fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}
