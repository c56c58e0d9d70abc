/* audit: one structured JSON line per security-relevant event, to a file or stdout.
 *
 * Event IDs are modelled on the Intune certificate connector's table (issue success/failure,
 * request verified/rejected, CA unavailable); docs/events.md lists them. Lines are written
 * with one write(2) each (O_APPEND), so concurrent writers never interleave within a line.
 *
 * Two modes. After audit_open, audit_emit writes the line itself (scepctl, tests). After
 * audit_start (scepd), audit_emit only formats the line and copies it into a bounded ring
 * (one per shard, bound with audit_bind_thread, and one shared by every other thread); one
 * writer thread owned by the audit drains the rings to the target. A producer never waits
 * for the target: when its ring is full the line is dropped and counted, and once the
 * target takes lines again the writer itself writes a LOG_DROPPED event with the count.
 * Memory: nrings * ring_bytes, fixed at audit_start.
 */
#ifndef SCEPD_AUDIT_H
#define SCEPD_AUDIT_H

#include <stddef.h>

/*  X(name,            id,   text) */
#define AUDIT_EVENTS(X) \
    X(STARTED,          100,  "scepd started") \
    X(STOPPED,          101,  "scepd stopped") \
    X(CONFIG_RELOADED,  102,  "configuration reloaded on SIGHUP: profiles and static challenges replaced (detail: the profiles now served); requests already running finish under the previous set") \
    X(CONFIG_RELOAD_FAILED, 103, "SIGHUP reload refused, the running configuration kept (detail: why: a file that does not parse, or a key that needs a restart)") \
    X(ISSUED,           1000, "certificate issued") \
    X(RENEWED,          1001, "certificate renewed") \
    X(REPLAYED,         1002, "repeated transaction answered with the certificate already issued") \
    X(CERT_RETURNED,    1003, "certificate returned (CertPoll / GetCert)") \
    X(CRL_RETURNED,     1004, "CRL returned (GetCRL)") \
    X(REVOKED,          1100, "certificate revoked") \
    X(REVOKE_FAILED,    1101, "revocation refused") \
    X(CRL_PUBLISHED,    1200, "CRL published") \
    X(CRL_FAILED,       1201, "CRL could not be built, signed or saved") \
    X(CRL_DEFERRED,     1202, "CRL build put off because another node of the cluster holds the CRL lock (PostgreSQL store); tried again within a second (count: builds put off since the previous such event)") \
    X(OCSP_FAILED,      1300, "OCSP request answered with an error status") \
    X(CHALLENGE_CREATED, 1400, "one-time challenge created (scepctl or POST /admin/challenges)") \
    X(CHALLENGE_CONSUMED, 1401, "one-time challenge verified and consumed") \
    X(REQUEST_PENDING,  1500, "request of a manual-approval profile stored, answered PENDING") \
    X(REQUEST_APPROVED, 1501, "pending request approved and its certificate issued (scepctl request approve)") \
    X(REQUEST_DENIED,   1502, "pending request denied (scepctl request deny)") \
    X(MDM_ALLOWED,      1600, "the MDM (Intune or webhook; detail: which, and its code) allowed the request") \
    X(MDM_DENIED,       1601, "the MDM refused the request or could not be asked (diag: mdm_denied, mdm_timeout, mdm_unavailable, mdm_auth_failed, mdm_tls_failed, ...; detail: the service's code and reason)") \
    X(MDM_NOTIFY_FAILED, 1602, "Intune did not acknowledge a notification after the retries (detail: success or failure notification, and why); after a successNotification the certificate is revoked") \
    X(INTUNE_REVOCATION_SYNC, 1603, "a round of Intune's revocation requests was done and its results uploaded (detail: requests, revoked, already revoked, not found, refused)") \
    X(INTUNE_REVOCATION_SYNC_FAILED, 1604, "a round of Intune's revocation sync failed: the download or the upload of results (diag: the mdm_ code; detail: which step, and why)") \
    X(REQUEST_REJECTED, 2000, "request rejected") \
    X(HTTP_REJECTED,    2001, "HTTP request rejected") \
    X(CHALLENGE_REJECTED, 2002, "one-time challenge refused (diag: wrong, expired, used, subject, san, profile)") \
    X(OVERLOADED,       2003, "requests refused with HTTP 503 and Retry-After before any crypto: the crypto workers' queue was full (count: refusals since the previous such event, at most one event per second)") \
    X(REQUEST_DROPPED,  2004, "queued requests dropped before their next private-key operation (diag deadline: past request_timeout, answered 503; diag client_gone: the connection had closed; diag reply_deadline: no reply by request_timeout + 0.5 s, a private-key call or commit stuck, answered 503 by the shard, the job may still finish; count as for 2003)") \
    X(ADMIN_AUTH_FAILED, 2005, "admin API requests with a missing or wrong bearer token from one address, one event per address and auth_fail_window, written when the window ends (count: tries in the window; diag rate_limited when some were refused with 429, else unauthorized)") \
    X(HSM_FAILURE,      3000, "CA unavailable: HSM operation failed (diag: the CKR name; with a txid and http_status 503: that request was answered 503; without a txid: a crypto worker lost its PKCS#11 session, login or token and is recovering)") \
    X(STORE_FAILURE,    3001, "store write failed, or (diag store_unavailable) a lookup the store did not answer (PostgreSQL reconnecting; detail: what was looked up): that request was answered HTTP 503 with Retry-After") \
    X(STORE_UNAVAILABLE, 3003, "a connection of the PostgreSQL store was lost or cannot be established: requests that need the store get HTTP 503 meanwhile (detail: node, connection, the libpq error; count: failures since the previous store event; at most one outage reported per second)") \
    X(STORE_RECOVERED,  3004, "the PostgreSQL store is reachable again after its STORE_UNAVAILABLE (detail: node, connection, duration; count: failures during the outage)") \
    X(HSM_RECOVERED,    3002, "a crypto worker has a PKCS#11 session again after its HSM_FAILURE (diag: the CKR that began the outage; detail: worker and duration; count: its requests answered 503 meanwhile)") \
    X(LOG_DROPPED,      3100, "audit lines dropped because the audit target did not take them in time (count: lines lost since the previous such event; written once the target drains)") \
    X(LOG_REOPEN_FAILED, 3101, "the audit log could not be reopened on SIGHUP (detail: why); lines still go to the file open before")

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
    unsigned long long count;  /* events summarised by this line (2003, 2004, 3002); 0: none */
} audit_fields;

/* path "-" means stdout. Returns 0 or -errno. Lines are written by audit_emit itself until
 * audit_start. */
int  audit_open(const char *path, audit **out);
/* Starts the writer thread with nrings rings of ring_bytes each (ring 0: threads that did
 * not bind; 1..nrings-1: for audit_bind_thread). Once, before the producer threads start.
 * Returns 0 or -errno (then a stays synchronous). */
int  audit_start(audit *a, unsigned nrings, size_t ring_bytes);
/* The calling thread's lines go to ring index (1..nrings-1; others: ring 0) of a from now
 * on. A ring has one lock, taken by its producers and briefly by the writer. */
void audit_bind_thread(audit *a, unsigned index);
/* Stops the writer thread after it has written what the rings hold, waiting at most
 * wait_ms for a blocked target (what is left is counted as dropped, reported on stderr).
 * audit_close does this with 2000 ms. Accepts NULL or a synchronous a. */
void audit_stop(audit *a, int wait_ms);
void audit_close(audit *a);               /* accepts NULL */
/* Reopens the log file by its path (after logrotate moved it away): the file is created
 * again if missing, and the descriptor number stays the same, so no writer sees it closed.
 * After audit_start the writer thread does it between two batches of lines and the caller
 * waits for it (at most wait_ms): lines emitted after the call go to the new file, lines
 * emitted before it to either. Returns 0 (also for stdout, which is not reopened), -errno
 * from open(2) (the old file stays in use) or -ETIMEDOUT. Any thread but the writer. */
int  audit_reopen(audit *a, int wait_ms);
/* Writes, or queues, one event line. Never blocks on the target and never fails loudly: a
 * write error or a dropped line is counted, not fatal. Any thread. */
void audit_emit(audit *a, int event, const audit_fields *f);
/* Lines dropped so far (ring full, or left at audit_stop); any thread, a snapshot. */
unsigned long long audit_dropped(const audit *a);
const char *audit_event_name(int event);

#endif
