/* job: one deferred request on its way shard -> crypto worker -> (store writer) -> shard.
 *
 * A job is allocated by the shard's handler, owned by whichever stage holds it, and freed by
 * the shard through reply.release once the answer is sent (or the connection is gone).
 */
#ifndef SCEPD_JOB_H
#define SCEPD_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "engine/scep/scep.h"
#include "engine/net/shard.h"
#include "engine/store/store.h"

enum job_kind {
    JOB_PKIOPERATION = 0,
    JOB_HEALTH = 1,
    JOB_OCSP = 2,       /* msg = OCSPRequest DER: answered on a worker (cache or sign)       */
    JOB_CRL = 3,        /* no connection: the CRL publisher's build; worker builds and signs,
                           the writer commits crl_number, the publisher saves and publishes  */
    JOB_REVOKE = 4,     /* POST /admin/revocations: put (STORE_PUT_REVOKE) straight to the
                           writer, answered from the commit callback                        */
    JOB_HELD = 5,       /* a ready answer whose body is held by reference (a published CRL) */
    JOB_CHALLENGE = 6,  /* POST /admin/challenges: the new record (msg) put straight to the
                           writer, answered (JSON with the value) from the commit callback  */
};

/* What a worker decided for a job. */
enum job_next {
    JOB_DELIVER = 0,   /* reply is ready: send it */
    JOB_COMMIT = 1,    /* reply carries a new certificate: store it first, then send */
};

typedef struct job {
    struct job   *next;          /* link in the worker queue */
    shard_reply   reply;         /* what the shard sends; reply.resp.body -> body */
    store_put     put;           /* the record to commit (JOB_COMMIT) */
    void         *owner;         /* the app */
    int           kind;
    int           attempts;      /* worker passes (a store conflict sends a job back) */
    char          peer[64];
    char          profile[64];
    uint8_t      *msg;           /* the pkiMessage (owned) */
    size_t        msg_len;
    uint8_t      *body;          /* the answer body (owned; NULL for static bodies) */
    size_t        body_len;
    /* Kept from the worker pass for the store record and the audit event. */
    uint8_t      *cert_der;      /* owned */
    size_t        cert_der_len;
    char          subject[512];
    char          txkey[SCEP_TXID_MAX + 40];    /* transactionID, or transactionID@signer-serial (renewal) */
    char          serial_hex[2 * STORE_SERIAL_LEN + 1];
    int           audit_event;   /* event to emit once committed */
    const char   *audit_detail;  /* static text for that event, or NULL */
    /* A body held by reference (JOB_HELD): unhold(hold) when the job is released. */
    void         *hold;
    void        (*unhold)(void *hold);
    char          headers[256];  /* extra response header lines of this job, if any */
    char          who[160];      /* JOB_REVOKE: who revoked (for the store and the audit) */
    /* PKIOperation under a one-time-challenge or manual-approval profile (engine/enroll/enroll.c). */
    int           requeue;       /* after the commit: back to a worker, not to the client    */
    int           chal_done;     /* the challenge was checked in the store: chal_verdict    */
    int           chal_verdict;  /* enum challenge_result                                   */
    void         *ext;           /* enroll's state for these passes (owned)                 */
    void        (*ext_free)(void *ext);
    uint8_t       aux_key[32];   /* JOB_CHALLENGE: the store key of the record              */
    /* JOB_CRL: what the worker built (body = the signed CRL DER). */
    uint64_t      crl_number, crl_rev_gen;
    int64_t       crl_this_update, crl_next_update;
    int           crl_ok;
} job;

#define JOB_OF_REPLY(r) ((job *)((char *)(r) - offsetof(job, reply)))
#define JOB_OF_PUT(p)   ((job *)((char *)(p) - offsetof(job, put)))

#endif
