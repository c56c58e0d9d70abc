/* audit: one structured JSON line per security-relevant event, to a file or stdout.
 *
 * Event IDs are modelled on the Intune certificate connector's table (issue success/failure,
 * request verified/rejected, CA unavailable); docs/events.md lists them. Lines are written
 * with one write(2) each (O_APPEND), so concurrent writers never interleave within a line.
 */
#ifndef SCEPD_AUDIT_H
#define SCEPD_AUDIT_H

#include <stddef.h>

/*  X(name,            id,   text) */
#define AUDIT_EVENTS(X) \
    X(STARTED,          100,  "scepd started") \
    X(STOPPED,          101,  "scepd stopped") \
    X(ISSUED,           1000, "certificate issued") \
    X(RENEWED,          1001, "certificate renewed") \
    X(REPLAYED,         1002, "repeated transaction answered with the certificate already issued") \
    X(CERT_RETURNED,    1003, "certificate returned (CertPoll / GetCert)") \
    X(CRL_RETURNED,     1004, "CRL returned (GetCRL)") \
    X(REVOKED,          1100, "certificate revoked") \
    X(REVOKE_FAILED,    1101, "revocation refused") \
    X(CRL_PUBLISHED,    1200, "CRL published") \
    X(CRL_FAILED,       1201, "CRL could not be built, signed or saved") \
    X(OCSP_FAILED,      1300, "OCSP request answered with an error status") \
    X(CHALLENGE_CREATED, 1400, "one-time challenge created (scepctl or POST /admin/challenges)") \
    X(CHALLENGE_CONSUMED, 1401, "one-time challenge verified and consumed") \
    X(REQUEST_PENDING,  1500, "request of a manual-approval profile stored, answered PENDING") \
    X(REQUEST_APPROVED, 1501, "pending request approved and its certificate issued (scepctl request approve)") \
    X(REQUEST_DENIED,   1502, "pending request denied (scepctl request deny)") \
    X(REQUEST_REJECTED, 2000, "request rejected") \
    X(HTTP_REJECTED,    2001, "HTTP request rejected") \
    X(CHALLENGE_REJECTED, 2002, "one-time challenge refused (diag: wrong, expired, used, subject, san, profile)") \
    X(HSM_FAILURE,      3000, "CA unavailable: HSM operation failed") \
    X(STORE_FAILURE,    3001, "store write failed")

enum audit_event {
#define X(name, id, text) AUDIT_##name = id,
    AUDIT_EVENTS(X)
#undef X
};

typedef struct audit audit;

/* Fields of one event; any may be NULL/empty. */
typedef struct audit_fields {
    const char *diag;       /* diagnostic code (engine/scep/reject.h) */
    const char *txid;
    const char *profile;
    const char *subject;
    const char *serial;     /* hex */
    const char *peer;       /* ip:port */
    const char *detail;     /* free text */
    int         failinfo;   /* -1: none */
    int         http_status;/* 0: none */
} audit_fields;

/* path "-" means stdout. Returns 0 or -errno. */
int  audit_open(const char *path, audit **out);
void audit_close(audit *a);               /* accepts NULL */
/* Writes one event line. Never fails loudly: a write error is counted, not fatal. */
void audit_emit(audit *a, int event, const audit_fields *f);
const char *audit_event_name(int event);

#endif
