/* job: one deferred request on its way shard -> crypto worker -> (store writer) -> shard,
 * and the one place an HTTP answer of the server is filled in.
 *
 * A job is allocated by the shard's handler (engine/server/route.c, admin.c) or the CRL
 * publisher, owned by whichever stage holds it, and freed by the shard through
 * reply.release once the answer is sent (or the connection is gone). A job has a common
 * header and the data of its kind in a union: only the member named by kind is used.
 *
 * Close policy (job_answer, for every answer the server gives, immediate or deferred): the
 * connection stays open. An answer from the server is always to a request the HTTP parser
 * framed completely (head and body read), so the stream is in a known state whatever the
 * status; only the shard closes, for its own parse-level refusals (400/408/413/414/431/
 * 501/505, engine/net/shard.h) where the stream is unusable, when the client asked to
 * (Connection: close, HTTP/1.0), and at shutdown.
 *
 * Threads: a job is touched by one thread at a time, the one that holds it.
 */
#ifndef SCEPD_JOB_H
#define SCEPD_JOB_H

#include <stddef.h>
#include <stdint.h>

#include "engine/net/shard.h"
#include "engine/policy/challenge.h"
#include "engine/scep/scep.h"
#include "engine/store/store.h"

enum job_kind {
    JOB_PKIOPERATION = 0,  /* msg = pkiMessage DER; engine/enroll answers it on a worker   */
    JOB_HEALTH = 1,
    JOB_OCSP = 2,       /* msg = OCSPRequest DER: answered on a worker (cache or sign)       */
    JOB_CRL = 3,        /* no connection: the CRL publisher's build; worker builds and signs,
                           the writer commits crl_number, the publisher saves and publishes  */
    JOB_REVOKE = 4,     /* POST /admin/revocations: put (STORE_PUT_REVOKE) straight to the
                           writer, answered from the commit callback                        */
    JOB_HELD = 5,       /* a ready answer whose body is held by reference (a published CRL) */
    JOB_CHALLENGE = 6,  /* POST /admin/challenges: the new record (msg) put straight to the
                           writer, answered (JSON with the value) from the commit callback  */
    JOB_INTUNE_REVOKE = 7, /* one of Intune's revocation requests (engine/server/intune_revoke.c):
                           put (STORE_PUT_REVOKE) straight to the writer, no connection     */
};

/* What a worker decided for a job. */
enum job_next {
    JOB_DELIVER = 0,   /* reply is ready: send it */
    JOB_COMMIT = 1,    /* reply carries a new certificate: store it first, then send */
    JOB_VALIDATE = 2,  /* ask the MDM first (j->pki.mdm): the job is parked at the validation
                          stage, holding no worker, and comes back to a worker queue with the
                          verdict (engine/server/mdm_wire.c) */
};

/* JOB_PKIOPERATION under an intune or webhook challenge: the validation's state across the
 * passes (engine/enroll/validate.c fills the request side, engine/server/mdm_wire.c the
 * verdict and the notifications). */
typedef struct job_mdm {
    int           kind;          /* enum mdm_kind asked (engine/mdm/validate.h); 0: none */
    int           done;          /* the stage answered: result, diag, detail */
    int           result;        /* enum mdm_result */
    int           diag;          /* enum mdm_diag */
    char          detail[384];   /* "code: reason" for the audit events */
    int           static_ok;     /* a multi-kind profile's static challenge matched */
    int           rej;           /* REJ_ of a refusal after an Intune allow (failureNotification) */
    int           notify;        /* Intune allowed and issued: successNotification after commit */
    int           revoking;      /* the successNotification failed: 1 the revocation is
                                    committing, 2 committed: the job is back on a worker queue
                                    for its CertRep FAILURE (engine/enroll/pkcsreq.c) */
    void         *facts;         /* enroll's copy of the request's facts (owned: facts_free) */
    void        (*facts_free)(void *facts);
} job_mdm;

/* JOB_PKIOPERATION: what the worker pass keeps for the store record and the audit event,
 * and the state of a request that takes more than one pass (engine/enroll). */
typedef struct job_pki {
    uint8_t      *cert_der;      /* the issued certificate (owned); put.cert.der points here */
    size_t        cert_der_len;
    char          subject[512];  /* of the CSR or the certificate, RFC 2253 text */
    char          txkey[SCEP_TXID_MAX + 40];  /* transactionID, or transactionID@signer-serial
                                                  (renewal): the store's transaction key */
    char          serial_hex[2 * STORE_SERIAL_LEN + 1];
    int           audit_event;   /* event to emit once committed */
    const char   *audit_detail;  /* static text for that event, or NULL */
    int           chal_consumed; /* the put also consumes a one-time challenge: audit
                                    CHALLENGE_CONSUMED with audit_event once committed */
    void         *state;         /* enroll's state across passes (owned, state_free) */
    void        (*state_free)(void *state);
    job_mdm       mdm;           /* MDM validation (intune, webhook profiles) */
} job_pki;

/* JOB_CRL: what the worker built (body = the signed CRL DER). */
typedef struct job_crl {
    uint64_t      number;        /* in: the published number; out: the new one */
    uint64_t      rev_gen;       /* the store's revocation generation it was built from */
    int64_t       this_update, next_update;
    int           ok;            /* built, signed and its number committed */
} job_crl;

/* JOB_REVOKE, JOB_INTUNE_REVOKE */
typedef struct job_revoke {
    char          serial_hex[2 * STORE_SERIAL_LEN + 1];
    char          who[160];      /* who revoked (for the store and the audit) */
} job_revoke;

/* JOB_CHALLENGE: the value is sent once in the answer and cleansed after; the store keeps
 * only its hash (key). */
typedef struct job_challenge {
    char          value[CHALLENGE_VALUE_LEN + 1];
    uint8_t       key[CHALLENGE_HASH_LEN];
    int64_t       expires;       /* seconds since the epoch */
    char          who[160];      /* who created it (audit) */
    int           ndes;          /* GET /certsrv/mscep_admin/: answered with NDES's page */
} job_challenge;

/* JOB_HELD: unhold(hold) when the job is released. */
typedef struct job_held {
    void         *hold;
    void        (*unhold)(void *hold);
    char          headers[256];  /* extra response header lines (ETag, Cache-Control...) */
} job_held;

typedef struct job {
    struct job   *next;          /* link in the worker queue */
    shard_reply   reply;         /* what the shard sends; reply.resp.body -> body */
    store_put     put;           /* the record to commit (JOB_COMMIT) */
    void         *owner;         /* the app */
    int           kind;          /* enum job_kind: which member of the union is used */
    int           attempts;      /* worker passes (a store conflict sends a job back) */
    int           admitted;      /* counted by the app's admission (admit.h) until freed */
    uint64_t      deadline_ms;   /* CLOCK_MONOTONIC ms after which a worker drops it (503);
                                    0: none */
    char          headers[40];   /* extra header lines of a deferred answer (Retry-After) */
    char          peer[64];
    char          profile[64];
    uint8_t      *msg;           /* the request's payload (owned): see enum job_kind */
    size_t        msg_len;
    uint8_t      *body;          /* the answer body (owned; NULL for static bodies) */
    size_t        body_len;
    /* Metrics (engine/server/metrics.h): what the request was and when it passed where,
     * CLOCK_MONOTONIC ns (0: not set); the SCEP outcome enroll reported (enroll_emit). */
    int           m_op;          /* enum m_op + 1; 0: not counted (the publisher's JOB_CRL) */
    uint64_t      m_start_ns;    /* the complete request reached the app */
    uint64_t      m_queued_ns;   /* pushed onto the workers' queue */
    uint64_t      m_submit_ns;   /* submitted to the store writer */
    int           m_event;       /* audit event of the transaction's answer, 0: none */
    int           m_rej;         /* its REJ_ code (REJ_NONE for a success) */
    union {
        job_pki       pki;
        job_crl       crl;
        job_revoke    revoke;
        job_challenge challenge;
        job_held      held;
    };
} job;

#define JOB_OF_REPLY(r) ((job *)((char *)(r) - offsetof(job, reply)))
#define JOB_OF_PUT(p)   ((job *)((char *)(p) - offsetof(job, put)))

/* A zeroed job of kind with peer and profile copied (either may be NULL: ""). reply.ref,
 * reply.release and owner are the caller's. NULL when out of memory. */
job *job_new(int kind, const char *peer, const char *profile);

/* Frees j and everything it owns (msg, body, the data of its kind). Accepts NULL. */
void job_free(job *j);

/* The one response setter (close policy above). body is not copied: static, or owned by
 * whoever holds resp until the shard has sent it. extra_headers is reset to NULL; a caller
 * that needs header lines sets them afterwards. */
void job_answer(http_response *resp, int status, const char *content_type, const void *body,
                size_t len);

/* j's reply: takes body (malloc'd, or NULL with len 0), freeing a previous one. */
void job_reply(job *j, int status, const char *content_type, uint8_t *body, size_t len);

/* j's reply with a static text/plain body. */
void job_reply_text(job *j, int status, const char *text);

/* j's "retry later" reply: HTTP 503, a static text/plain body, Retry-After: after_s (the
 * header line kept in j->headers). Every 503 a client should retry is answered this way. */
void job_reply_later(job *j, const char *text, unsigned after_s);

/* A store_put update callback (writer thread) that writes j->msg (arg is the job) only when
 * the key is new: 1 (leave the existing record, the put reports a conflict) otherwise. */
int job_insert_new(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                   size_t *nl);

#endif
