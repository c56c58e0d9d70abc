/* job: one deferred request on its way shard -> crypto worker -> (store writer) -> shard.
 *
 * A job is allocated by the shard's handler, owned by whichever stage holds it, and freed by
 * the shard through reply.release once the answer is sent (or the connection is gone).
 */
#ifndef SCEPD_JOB_H
#define SCEPD_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "engine/scep.h"
#include "engine/shard.h"
#include "engine/store.h"

enum job_kind { JOB_PKIOPERATION = 0, JOB_HEALTH = 1 };

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
} job;

#define JOB_OF_REPLY(r) ((job *)((char *)(r) - offsetof(job, reply)))
#define JOB_OF_PUT(p)   ((job *)((char *)(p) - offsetof(job, put)))

#endif
