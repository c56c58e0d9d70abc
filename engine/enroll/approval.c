/* Manual approval: a PKCSReq under such a profile (and a renewal, unless the profile says
 * approve_renewals = yes) is answered PENDING and recorded in the store's "requests" db
 * (engine/enroll/pending.h) under its transaction key; an administrator decides with scepctl,
 * and the client's CertPoll then finds the certificate (engine/enroll/poll.c). */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/enroll/pending.h"
#include "engine/scep/reject.h"

int enroll_approval_repeat(const enroll_ctx *ctx, job *j, const scep_request *req,
                           const uint8_t key_hash[STORE_HASH_LEN], int *answered)
{
    uint8_t old_key[STORE_HASH_LEN];
    int status = 0;
    int rc = enroll_lookup_request(ctx, j->pki.txkey, &status, old_key);

    *answered = 0;
    if (rc == STORE_NOTFOUND)
        return REJ_NONE;
    if (enroll_store_lost(rc)) {
        /* no verdict on the request: 503 (the client sends it again) */
        enroll_store_unavailable(ctx, j, req, "pending request lookup", rc);
        *answered = 1;
        return REJ_NONE;
    }
    if (rc != 0)
        return REJ_INTERNAL;
    *answered = 1;
    if (memcmp(old_key, key_hash, STORE_HASH_LEN) != 0)
        return REJ_TXID_CONFLICT;
    if (status == PENDING_DENIED)
        return REJ_REQUEST_DENIED;
    return enroll_pending_reply(ctx, j, req, "repeated request, still pending");
}

int enroll_approval_hold(const enroll_ctx *ctx, job *j, const scep_request *req,
                         const profile *prof, const uint8_t key_hash[STORE_HASH_LEN])
{
    enroll_state *st = enroll_state_of(j);
    pending_request r;
    int rej;

    if (st == NULL)
        return REJ_INTERNAL;
    memset(&r, 0, sizeof(r));
    r.status = PENDING_WAITING;
    r.created = (int64_t)time(NULL);
    memcpy(r.key_hash, key_hash, STORE_HASH_LEN);
    snprintf(r.profile, sizeof(r.profile), "%s", prof->name);
    snprintf(r.subject, sizeof(r.subject), "%s", j->pki.subject);
    snprintf(r.peer, sizeof(r.peer), "%s", j->peer);
    r.csr = req->inner;
    r.csr_len = req->inner_len;
    free(st->reqrec);
    st->reqrec = NULL;
    if (pending_encode(&r, &st->reqrec, &st->reqrec_len) != 0)
        return REJ_INTERNAL;
    if ((rej = enroll_pending_reply(ctx, j, req, NULL)) != REJ_NONE)
        return rej;
    /* Inserted only if the transaction has no request yet: a concurrent request of the same
     * transaction that got there first makes this put STORE_CONFLICT, and the job is passed
     * again (enroll_approval_repeat then answers it from the stored request). */
    store_put *p = &j->put;
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_INSERT;
    p->aux_db = STORE_DB_REQUESTS;
    p->aux_key = j->pki.txkey;
    p->aux_key_len = strlen(j->pki.txkey);
    p->aux_val = st->reqrec;
    p->aux_val_len = st->reqrec_len;
    j->pki.audit_event = AUDIT_REQUEST_PENDING;
    j->pki.audit_detail = NULL;
    return REJ_NONE;
}
