/* validate: the MDM validation stage. Asking Intune or a webhook whether a request may be
 * signed is I/O (50-500 ms a round trip), so it never runs on a crypto worker or a shard: one
 * stage thread drives every HTTP exchange at once through libcurl's multi interface.
 *
 * Per exchange: a timeout per attempt, at most cfg->retries further attempts after a
 * transport error, a 5xx or a 429 (pauses of retry_backoff, doubled each time, +-25 %
 * jitter), connections reused through libcurl's pool (max_connections). Intune's OAuth2
 * token and its service URLs are cached by the stage (engine/mdm/intune.h).
 *
 * Threads and ownership:
 *  - mdm_stage_create / mdm_stage_destroy: the owner's thread (the app at start / stop).
 *  - mdm_submit, mdm_notify_*, mdm_revocations_*: any thread; non-blocking (a mutex held for a
 *    list push, then a wake-up of the stage thread). Every pointer argument is copied before
 *    they return; the caller keeps its memory.
 *  - done callbacks run on the stage thread, exactly once per accepted call (also at
 *    mdm_stage_destroy, with MDM_DIAG_SHUTDOWN), never from inside mdm_submit. They must
 *    not block: post the job back to a worker queue and return. The verdict (and any list
 *    handed to them) is valid only during the callback.
 *  - The audit log given to mdm_stage_create must outlive the stage.
 *
 * The bound: at most cfg->max_in_flight mdm_submit calls are pending at once; past it
 * mdm_submit returns -EAGAIN (answer the client HTTP 503 + Retry-After). Notifications and
 * revocation calls are not counted: each follows an admitted request or the one poller, so
 * they are bounded by the same number.
 */
#ifndef SCEPD_MDM_VALIDATE_H
#define SCEPD_MDM_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/common/audit.h"
#include "engine/mdm/mdm_config.h"

typedef struct mdm_stage mdm_stage;

enum mdm_kind { MDM_INTUNE = 1, MDM_WEBHOOK = 2 };

enum mdm_result { MDM_ALLOW = 0, MDM_DENY = 1, MDM_ERROR = 2 };

/* Why a verdict is what it is: the audit diagnostic, the HRESULT the request's
 * failureNotification should carry (Intune), and the text. Suggested REJ_ rows for
 * engine/scep/reject.h are in README.md ("Wiring").
 *  X(name,        diag code,            HRESULT,    text) */
#define MDM_DIAGS(X) \
    X(OK,          "ok",                 0x00000000u, "allowed") \
    X(DENIED,      "mdm_denied",         0x80094011u, "the MDM refused the request") \
    X(UNAVAILABLE, "mdm_unavailable",    0x80094006u, "the MDM service could not be reached or failed (5xx)") \
    X(TIMEOUT,     "mdm_timeout",        0x800705B4u, "the MDM service did not answer in time") \
    X(BAD_ANSWER,  "mdm_bad_answer",     0x80004005u, "the MDM service answered something scepd cannot read") \
    X(AUTH,        "mdm_auth_failed",    0x80070005u, "scepd could not authenticate to the MDM service") \
    X(TLS,         "mdm_tls_failed",     0x800B010Au, "the MDM service's TLS certificate did not verify") \
    X(NOT_CONFIGURED, "mdm_not_configured", 0x80004005u, "this MDM integration is not configured") \
    X(SHUTDOWN,    "mdm_shutdown",       0x80004005u, "scepd is stopping")

enum mdm_diag {
#define X(name, code, hr, text) MDM_DIAG_##name,
    MDM_DIAGS(X)
#undef X
    MDM_DIAG__COUNT
};
const char *mdm_diag_code(int diag);      /* "unknown" when out of range */
const char *mdm_diag_text(int diag);
uint32_t    mdm_diag_hresult(int diag);   /* E_FAIL when out of range */

typedef struct mdm_verdict {
    int      result;          /* enum mdm_result */
    int      diag;            /* enum mdm_diag: OK for ALLOW, DENIED for DENY, else the error */
    uint32_t hresult;         /* for failureNotification; 0 when allowed */
    char     code[64];        /* the service's own code: Intune's ("ChallengeExpired"), the
                                 webhook's "code" field; "" when none */
    char     reason[256];     /* the service's text (printable ASCII kept) for the audit
                                 event's detail, or scepd's own for errors */
    int      http_status;     /* last HTTP status, 0 when none was received */
    int      attempts;        /* HTTP attempts made for the final exchange */
} mdm_verdict;

typedef void (*mdm_done_fn)(void *arg, const mdm_verdict *v);

/* The facts of one request, as the worker read them. All copied by mdm_submit. */
typedef struct mdm_request {
    int             kind;          /* enum mdm_kind */
    const char     *txid;          /* transactionID (required) */
    const char     *profile;       /* profile name, may be NULL */
    const char     *challenge;     /* challengePassword as presented, may be NULL */
    const uint8_t  *csr_der;       /* the PKCS#10 (required) */
    size_t          csr_len;
    const char     *subject;       /* RFC 2253 text, may be NULL */
    const char *const *sans;       /* "dns:host", "uri:...", "email:...", "upn:...", "ip:..." */
    size_t          san_count;
    const char     *peer;          /* ip:port, may be NULL */
} mdm_request;

/* Starts the stage thread. cfg is copied (secrets included; cleansed at destroy); audit may
 * be NULL. Returns 0 and *out, or -errno (-EINVAL for a configuration libcurl refuses,
 * -ENOMEM). */
int mdm_stage_create(const mdm_config *cfg, audit *audit, mdm_stage **out);

/* Stops the thread: exchanges still running are abandoned and their callbacks run with
 * MDM_ERROR / MDM_DIAG_SHUTDOWN, on the calling thread, before it returns. Accepts NULL. */
void mdm_stage_destroy(mdm_stage *s);

/* Asks the MDM of facts->kind whether the request may be signed. 0: done(arg, verdict) will
 * run on the stage thread. -EAGAIN: max_in_flight calls pending (nothing happens);
 * -EINVAL: a required fact is missing; -ENOTSUP: that MDM is not configured; -ENOMEM;
 * -ESHUTDOWN: the stage is stopping. */
int mdm_submit(mdm_stage *s, const mdm_request *facts, mdm_done_fn done, void *arg);

/* Intune successNotification, after the certificate is committed: thumbprint (SHA-1,
 * upper-case hex), serial (hex), expiry (ISO 8601 UTC) and issuer are taken from cert_der
 * on the stage thread. ALLOW: Intune acknowledged it; anything else: it did not (after the
 * retries) and the caller must not hand out the certificate (README.md, "Ordering").
 * Returns as mdm_submit, never -EAGAIN. */
int mdm_notify_success(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       const uint8_t *cert_der, size_t cert_len, mdm_done_fn done, void *arg);

/* Intune failureNotification for a refusal after validation: hresult (e.g.
 * mdm_diag_hresult, or one of README.md's table) and a description, cut to 255 bytes at a
 * UTF-8 boundary ("" becomes the HRESULT's hex). done may be NULL (fire and forget).
 * Returns as mdm_notify_success. */
int mdm_notify_failure(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       uint32_t hresult, const char *description, mdm_done_fn done, void *arg);

/* Intune's revocation requests for this CA (PkiConnectorFEService). */
typedef struct mdm_revocation {
    char request_context[256];     /* echoed in the result */
    char serial[130];              /* hex, as Intune sends it */
    char issuer_name[256];         /* may be "" */
    char ca_configuration[256];    /* may be "" */
} mdm_revocation;

/* Intune's CARequestErrorCode for a result (the reference library's enum): the number and
 * the name. The upload sends the name ("CertificateNotFoundError"): the reference library
 * serialises the enum with a string converter.
 *  X(name,           number, wire name) */
#define MDM_REV_ERRORS(X) \
    X(OK,             0,    "None") \
    X(NON_RETRYABLE,  4000, "NonRetryableServiceException") \
    X(SERIALIZATION,  4001, "DataSerializationError") \
    X(BAD_PARAMETER,  4002, "ParameterDataInvalidError") \
    X(CRYPTOGRAPHY,   4003, "CryptographyError") \
    X(NOT_FOUND,      4004, "CertificateNotFoundError") \
    X(CONFLICT,       4005, "ConflictError")            /* already revoked */ \
    X(NOT_SUPPORTED,  4006, "NotSupportedError") \
    X(TOO_LARGE,      4007, "PayloadTooLargeError") \
    X(RETRYABLE,      4100, "RetryableServiceException") \
    X(UNAVAILABLE,    4101, "ServiceUnavailableException") \
    X(TOO_BUSY,       4102, "ServiceTooBusyException") \
    X(AUTHENTICATION, 4103, "AuthenticationException")

enum mdm_revocation_error {
#define X(name, num, wire) MDM_REV_##name = num,
    MDM_REV_ERRORS(X)
#undef X
};
/* The wire name of a code; NULL when it is not one of MDM_REV_ERRORS. */
const char *mdm_revocation_error_name(int code);

typedef struct mdm_revocation_result {
    const char *request_context;
    int         succeeded;
    int         error_code;        /* enum mdm_revocation_error; 0 when succeeded */
    const char *error_message;     /* may be NULL */
} mdm_revocation_result;

typedef void (*mdm_revocations_fn)(void *arg, const mdm_verdict *v, const mdm_revocation *list,
                                   size_t n);

/* downloadRevocationRequests: at most max (1..500) requests, optionally only for issuer_name
 * (may be NULL). done gets the list (valid during the call) with ALLOW, or n = 0 and the error. */
int mdm_revocations_download(mdm_stage *s, int max, const char *issuer_name,
                             mdm_revocations_fn done, void *arg);

/* uploadRevocationResults: n >= 1 results (copied). ALLOW when Intune answered value: true. */
int mdm_revocations_upload(mdm_stage *s, const mdm_revocation_result *results, size_t n,
                           mdm_done_fn done, void *arg);

/* Counters for tests and the health page (any thread; a snapshot). */
typedef struct mdm_stats {
    long in_flight;       /* admitted mdm_submit calls not yet answered */
    long http_attempts;   /* HTTP transfers started */
    long token_fetches;   /* OAuth2 token requests sent */
    long discoveries;     /* Graph discovery requests sent */
    long connects;        /* new TCP connections libcurl opened (reuse shows as fewer) */
} mdm_stats;
void mdm_stage_stats(mdm_stage *s, mdm_stats *out);

#endif
