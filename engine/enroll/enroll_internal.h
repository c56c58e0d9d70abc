/* What the files of engine/enroll share; not a public API (engine/enroll/enroll.h is).
 *
 *   enroll.c    enroll_process: parse, then one handler per message type
 *   pkcsreq.c   PKCSReq / RenewalReq, phase by phase
 *   onetime.c   one-time challenges (checked, then consumed with what they pay for)
 *   approval.c  manual approval: the pending request record, a repeated request
 *   poll.c      CertPoll (GetCertInitial)
 *   query.c     GetCert, GetCRL
 *   lookup.c    what the store already holds (certificates, transactions, requests) and
 *               the renewal signer check against it
 *   reply.c     the answers (CertRep SUCCESS / FAILURE / PENDING) and their audit events
 *   pending.c   the pending-request record codec (pending.h)
 *   record.c    the store record of an issued certificate (record.h)
 * Everything runs on a crypto worker, except the store callbacks (named *_update/_insert),
 * which run on the store writer inside its transaction. */
#ifndef SCEPD_ENROLL_INTERNAL_H
#define SCEPD_ENROLL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509v3.h>

#include "engine/enroll/enroll.h"
#include "engine/policy/challenge.h"
#include "engine/policy/profile.h"
#include "engine/scep/scep.h"

#define ENROLL_PROFILE_MAX 64     /* a profile name, NUL included (as job->profile) */

/* A PKCSReq's state (job->pki.state, freed with the job), kept while the writer holds the
 * job: what it needs for the one-time challenge (the put's condition) or the pending request.
 * Refilled by every worker pass. */
typedef struct enroll_state {
    char           presented[256];   /* the CSR's challengePassword (cleansed on free) */
    size_t         plen;
    char           profile[ENROLL_PROFILE_MAX];
    unsigned       flags;            /* CHALLENGE_CHECK_* */
    X509_NAME     *subject;          /* the CSR's, for the binding check */
    GENERAL_NAMES *san;
    uint8_t        key[CHALLENGE_HASH_LEN];
    int64_t        now;
    challenge_record rec;            /* as the worker read it: bindings for "override" */
    int            have_rec;
    uint8_t        buf[CHALLENGE_RECORD_MAX];   /* the writer's new value of the record */
    uint8_t       *reqrec;           /* encoded pending request (owned) */
    size_t         reqrec_len;
    scep_request   kept;             /* the parsed request with its envelope opened, kept
                                        while the job waits for the MDM: the pass after it
                                        neither parses the pkiMessage nor decrypts again
                                        (owned, scep_request_clear on free) */
    int            have_kept;
    X509_REQ      *kept_csr;         /* its CSR as that pass parsed it, signature verified:
                                        the next pass applies the profile rules again but
                                        neither decodes nor verifies it (owned) */
} enroll_state;

/* pkcsreq.c */
int  enroll_pkcsreq(const enroll_ctx *ctx, job *j, scep_request *req);
/* j's state, created on first use; NULL when out of memory. */
enroll_state *enroll_state_of(job *j);
/* The pass after MDM validation: 1 with *req the request the first pass parsed and opened
 * (moved out of j's state: the caller clears it), 0 when none is kept (parse again). */
int  enroll_kept_request(job *j, scep_request *req);
/* The pass after a failed successNotification (the certificate is recorded and revoked,
 * j->pki.mdm.revoking == 2): 1 with *next = JOB_DELIVER and j's reply the CertRep FAILURE
 * REJ_MDM_NOTIFY (HTTP 503 if it cannot be signed), audited; 0 for any other job. */
int  enroll_notify_failed(const enroll_ctx *ctx, job *j, int *next);

/* onetime.c */
/* The challenge the CSR presents under prof, checked against the record the worker's reader
 * sees (j's state keeps the record: bindings for "override"). REJ_NONE when it is valid, its
 * REJ_CHAL_* row, or REJ_INTERNAL. Not authoritative: enroll_onetime_guard makes the writer
 * check it again. */
int  enroll_onetime_check(const enroll_ctx *ctx, job *j, const profile *prof, X509_REQ *csr);
/* enroll_onetime_check, except that a store that does not answer is no verdict: j's reply is
 * then HTTP 503 (enroll_store_unavailable), *answered = 1 and REJ_NONE returned (the caller
 * stops with JOB_DELIVER). */
int  enroll_onetime_phase(const enroll_ctx *ctx, job *j, const scep_request *req,
                          const profile *prof, X509_REQ *csr, int *answered);
/* Makes j->put (a certificate or a pending request, already prepared) conditional on the
 * challenge enroll_onetime_check accepted: the writer marks it used in the same transaction,
 * or refuses the put (STORE_CONFLICT) when it is no longer valid. */
void enroll_onetime_guard(job *j);

/* approval.c */
/* A request already waiting under j's txkey: REJ_NONE with *answered = 1 when this is its
 * repetition (answered PENDING, or refused: conflict, denied) or when the store did not
 * answer (HTTP 503, enroll_store_unavailable), *answered = 0 when there is none. */
int  enroll_approval_repeat(const enroll_ctx *ctx, job *j, const scep_request *req,
                            const uint8_t key_hash[STORE_HASH_LEN], int *answered);
/* Answers PENDING and prepares the put that records the request (STORE_PUT_INSERT under
 * j's txkey). REJ_. */
int  enroll_approval_hold(const enroll_ctx *ctx, job *j, const scep_request *req,
                          const profile *prof, const uint8_t key_hash[STORE_HASH_LEN]);

/* poll.c, query.c: return enum job_next with j's reply set. */
int  enroll_certpoll(const enroll_ctx *ctx, job *j, scep_request *req);
int  enroll_getcert(const enroll_ctx *ctx, job *j, scep_request *req);
int  enroll_getcrl(const enroll_ctx *ctx, job *j, scep_request *req);

/* lookup.c: STORE_OK / STORE_NOTFOUND / < 0 unless said otherwise. */
/* A stored certificate, parsed (*out, caller frees); meta (may be NULL) gets its record
 * without the pointers (they would dangle once the read ends), profile_out (may be
 * NULL, ENROLL_PROFILE_MAX bytes) the name of the profile it was issued under when it fits. */
int  enroll_stored_cert(const enroll_ctx *ctx, const uint8_t serial[STORE_SERIAL_LEN],
                        X509 **out, store_cert *meta, char *profile_out);
/* The certificate issued for a transaction key, and its key hash. */
int  enroll_lookup_txid(const enroll_ctx *ctx, const char *txkey,
                        uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN]);
/* A pending request under txkey: 0 with its status and key hash. */
int  enroll_lookup_request(const enroll_ctx *ctx, const char *txkey, int *status,
                           uint8_t key_hash[STORE_HASH_LEN]);
/* 1 when a lookup's rc says the store did not answer (a lost PostgreSQL connection while it
 * reconnects, an LMDB I/O error): the request is fine, the client should retry. Not for
 * STORE_NOTFOUND or a damaged record (STORE_E_CORRUPT). */
int  enroll_store_lost(int rc);
/* HTTP 503 with Retry-After (ENROLL_STORE_RETRY_AFTER_S: the store's longest reconnect
 * backoff) and one STORE_FAILURE event (diag store_unavailable, detail: what was looked up
 * and rc): for a request the store could not be asked about. Returns JOB_DELIVER. */
#define ENROLL_STORE_RETRY_AFTER_S STORE_RETRY_AFTER_S
/* The audit event of a "retry later" 503 (job_reply_later): the request's transactionID,
 * profile, subject, serial if any, peer, with diag and detail. */
void enroll_audit_503(const enroll_ctx *ctx, const job *j, const scep_request *req, int event,
                      const char *diag, const char *detail);
int  enroll_store_unavailable(const enroll_ctx *ctx, job *j, const scep_request *req,
                              const char *what, int rc);
/* Authorisation of a renewal: signer is a certificate we issued, currently valid, known to
 * the store and not revoked. REJ_NONE with its serial, validity and the profile it was
 * issued under ("" if unknown), or the REJ_ code. *store_rc is the store lookup's error
 * (STORE_OK when it answered): with enroll_store_lost(*store_rc) the caller answers 503. */
int  enroll_check_renewal_signer(const enroll_ctx *ctx, X509 *signer,
                                 uint8_t serial[STORE_SERIAL_LEN], int64_t *nb, int64_t *na,
                                 char old_profile[ENROLL_PROFILE_MAX], int *store_rc);

/* reply.c */
/* Audits event for j (rej REJ_NONE: no diagnostic) and notes both in j (m_event, m_rej)
 * for the metrics. req may be NULL. */
void enroll_emit(const enroll_ctx *ctx, job *j, const scep_request *req, int event,
                 int rej, const char *detail);
/* j's reply: a CertRep of status (FAILURE: rej's failInfo and text; SUCCESS: cert). 0/-1. */
int  enroll_certrep(const enroll_ctx *ctx, job *j, const scep_request *req, int status,
                    int rej, X509 *cert);
/* j's reply: CertRep SUCCESS carrying a stored certificate (CertPoll, GetCert), audited
 * CERT_RETURNED with what as detail. REJ_NONE, or REJ_INTERNAL when it cannot be signed. */
int  enroll_return_cert(const enroll_ctx *ctx, job *j, const scep_request *req,
                        const uint8_t serial[STORE_SERIAL_LEN], X509 *cert, const char *what);
/* j's reply: CertRep SUCCESS whose envelope carries content (a degenerate SignedData). */
int  enroll_certrep_content(const enroll_ctx *ctx, job *j, const scep_request *req,
                            const uint8_t *content, size_t content_len);
/* enroll_certrep SUCCESS for a certificate given as DER (cert is copied, not parsed). 0/-1. */
int  enroll_certrep_der(const enroll_ctx *ctx, job *j, const scep_request *req,
                        const uint8_t *cert, size_t cert_len);
/* HTTP 503 (retry later) and one HSM_FAILURE event naming what failed and the token's error:
 * for a private-key operation that failed on a request that was fine. Returns JOB_DELIVER. */
int  enroll_unavailable(const enroll_ctx *ctx, job *j, const scep_request *req,
                        const char *what);
/* Answers FAILURE for rej and audits it (HTTP 503 if even that cannot be signed). Returns
 * JOB_DELIVER. */
int  enroll_fail(const enroll_ctx *ctx, job *j, const scep_request *req, int rej,
                 const char *detail);
/* Answers PENDING (audited as AUDIT_REQUEST_PENDING with detail when detail is not NULL).
 * REJ_NONE, or REJ_INTERNAL when the CertRep cannot be signed. */
int  enroll_pending_reply(const enroll_ctx *ctx, job *j, const scep_request *req,
                          const char *detail);
/* name as RFC 2253 text, truncated to outlen; "" on error. */
void enroll_name_text(const X509_NAME *name, char *out, size_t outlen);

#endif
