/* enroll: the SCEP transaction logic that runs on a crypto worker for one pkiMessage:
 * verify, decrypt (RA key), check, deduplicate by transactionID, issue (CA key), and build the
 * signed CertRep (RA key). The new certificate is not sent from here: a job that issued one
 * returns JOB_COMMIT and goes to the store writer first. */
#ifndef SCEPD_ENROLL_H
#define SCEPD_ENROLL_H

#include "engine/common/audit.h"
#include "engine/pki/ca.h"
#include "engine/common/config.h"
#include "engine/pki/crl.h"
#include "engine/policy/issue.h"
#include "engine/server/job.h"
#include "engine/store/store.h"

typedef struct enroll_ctx {
    const config *cfg;
    const ca_set *ca;
    const issuer *issuer;
    audit        *audit;
    store_reader *reader;      /* this worker's own reader */
    crl_cache    *crls;        /* the published CRL, for GetCRL (may be NULL: none) */
    /* Asked at the phase boundaries of a PKCSReq, before the next private-key operation:
     * 1 drops the job (it has set j's reply), 0 goes on. NULL: never. */
    int         (*cancelled)(void *arg, job *j);
    void         *cancel_arg;
} enroll_ctx;

/* Processes j (a JOB_PKIOPERATION) and returns enum job_next: JOB_DELIVER with
 * j->reply.resp ready to send (a CertRep, or an HTTP error for bytes that are not a
 * pkiMessage); JOB_COMMIT with j->put to commit first and the reply ready. j stays the
 * caller's (free it with job_free).
 * j->profile on entry: the profile named by the URL, or "" (choose by keyUsage); on return
 * the profile applied. Under a one-time-challenge profile the put carries the challenge as
 * its condition (engine/store/store.h): it is consumed in the transaction that records the
 * certificate, and j->pki.chal_consumed says so for the audit. Under a manual-approval
 * profile the reply is PENDING, committed with the stored request (engine/enroll/pending.h).
 * A put the store refuses with STORE_DUP_SERIAL, STORE_DUP_TXID or STORE_CONFLICT (nothing
 * written) is answered by calling enroll_process again on the same job: it then answers
 * from what the store holds. j->kind must be JOB_PKIOPERATION (j->pki is used);
 * j->msg / msg_len is the pkiMessage, j->peer names the client in audit events. */
int enroll_process(const enroll_ctx *ctx, job *j);

#endif
