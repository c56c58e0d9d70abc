/* enroll: the SCEP transaction logic that runs on a crypto worker for one pkiMessage:
 * verify, decrypt (RA key), check, deduplicate by transactionID, issue (CA key), and build the
 * signed CertRep (RA key). The new certificate is not sent from here: a job that issued one
 * returns JOB_COMMIT and goes to the store writer first. */
#ifndef SCEPD_ENROLL_H
#define SCEPD_ENROLL_H

#include "engine/audit.h"
#include "engine/ca.h"
#include "engine/config.h"
#include "engine/crl.h"
#include "engine/issue.h"
#include "engine/job.h"
#include "engine/store.h"

typedef struct enroll_ctx {
    const config *cfg;
    const ca_set *ca;
    const issuer *issuer;
    audit        *audit;
    store_reader *reader;      /* this worker's own reader */
    crl_cache    *crls;        /* the published CRL, for GetCRL (may be NULL: none) */
} enroll_ctx;

/* Processes j (a JOB_PKIOPERATION). Always leaves j->reply.resp ready to send (a CertRep, or
 * an HTTP error for bytes that are not a pkiMessage) and returns enum job_next. */
int enroll_process(const enroll_ctx *ctx, job *j);

/* Fills j's reply with an HTTP error (static body). */
void enroll_http_error(job *j, int status, const char *reason);

#endif
