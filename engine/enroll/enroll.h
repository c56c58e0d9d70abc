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
} enroll_ctx;

/* A request of a manual-approval profile, kept in the store's "requests" db under its
 * transactionID until an administrator decides (scepctl request approve|deny). */
enum enroll_req_status { ENROLL_REQ_PENDING = 0, ENROLL_REQ_APPROVED = 1, ENROLL_REQ_DENIED = 2 };

typedef struct enroll_request {
    int      status;                 /* enum enroll_req_status */
    int64_t  created, decided_at;    /* seconds since the epoch; decided_at 0 while pending */
    uint8_t  key_hash[STORE_HASH_LEN];   /* the CSR's key (issue_key_hash): CertPoll signer */
    uint8_t  serial[STORE_SERIAL_LEN];   /* the certificate, once approved */
    char     profile[64];
    char     subject[512];
    char     peer[64];
    char     decided_by[160];
    const uint8_t *csr;              /* PKCS#10 DER; in decode results points into the input */
    size_t   csr_len;
} enroll_request;

/* Encodes r (malloc'd *out, caller frees). 0 or -1. */
int enroll_request_encode(const enroll_request *r, uint8_t **out, size_t *len);
/* Decodes one record (csr points into in). 0 or -1 (malformed). */
int enroll_request_decode(const uint8_t *in, size_t len, enroll_request *out);

/* Processes j (a JOB_PKIOPERATION). Always leaves j->reply.resp ready to send (a CertRep, or
 * an HTTP error for bytes that are not a pkiMessage) and returns enum job_next.
 * j->profile on entry: the profile named by the URL, or "" (choose by keyUsage); on return
 * the profile applied. Under a one-time-challenge profile the first pass returns JOB_COMMIT
 * with j->requeue set and a put that consumes the challenge; the app sends the job back to
 * a worker once that commit is done (j->chal_done), and only then is a certificate issued.
 * Under a manual-approval profile the reply is PENDING, committed with the stored request. */
int enroll_process(const enroll_ctx *ctx, job *j);

/* Fills j's reply with an HTTP error (static body). */
void enroll_http_error(job *j, int status, const char *reason);

#endif
