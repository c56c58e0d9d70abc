/* Intune revocation sync ([intune] revocation_poll_interval; docs/mdm.md "Revocation"): every
 * interval, one round of
 *   1. downloadRevocationRequests for this CA (at most 500; issuerName = the CA's subject, as
 *      successNotification names it),
 *   2. each requested serial revoked through the store's single writer, as POST
 *      /admin/revocations does (a JOB_INTUNE_REVOKE put, reason cessationOfOperation; audit
 *      REVOKED / REVOKE_FAILED from the commit callback),
 *   3. uploadRevocationResults: succeeded, or CertificateNotFoundError (no such
 *      certificate, another issuer, a serial that does not parse), ConflictError (already
 *      revoked), RetryableServiceException (the store failed),
 *   4. audit INTUNE_REVOCATION_SYNC with the counts, or INTUNE_REVOCATION_SYNC_FAILED.
 *
 * Threads: the round runs on a thread of its own, which only waits (never on a shard, a
 * crypto worker or the stage thread); the stage's callbacks (stage thread) and the commit
 * callback (writer thread) only copy what they got under r->mu and signal. The state lives
 * from intune_revoke_start to intune_revoke_free (mdm_wire_free), after the stage and the
 * writer have stopped, so a callback that comes after a stop still finds it. */
#include "engine/server/app_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include "engine/mdm/validate.h"
#include "engine/pki/serial.h"

#define REV_BATCH 500

typedef struct intune_revoke intune_revoke;
#define CRL_REASON_CESSATION 5

typedef struct rev_slot {
    mdm_revocation req;          /* what Intune asked */
    job           *j;            /* the put, or NULL when refused before the store */
    int            error_code;   /* enum mdm_revocation_error: MDM_REV_OK when revoked */
    const char    *message;      /* static text for errorMessage, or NULL */
} rev_slot;

struct intune_revoke {
    app            *a;
    pthread_t       thread;
    int             started;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             stop;
    int             answered;    /* the stage called back for the current step */
    mdm_verdict     v;           /* its verdict */
    rev_slot       *slots;       /* the round's requests (REV_BATCH) */
    size_t          n;
    size_t          pending;     /* puts not yet committed */
    char            issuer[512]; /* the CA's subject, RFC 2253 */
};

/* ---- callbacks (stage thread, writer thread) ------------------------------------------ */

static void answered(intune_revoke *r, const mdm_verdict *v)
{
    pthread_mutex_lock(&r->mu);
    r->v = *v;
    r->answered = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void downloaded(void *arg, const mdm_verdict *v, const mdm_revocation *list, size_t n)
{
    intune_revoke *r = arg;
    pthread_mutex_lock(&r->mu);
    r->n = 0;
    for (size_t i = 0; i < n && i < REV_BATCH; i++) {
        memset(&r->slots[i], 0, sizeof(r->slots[i]));
        r->slots[i].req = list[i];
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
    answered(r, v);
}

static void uploaded(void *arg, const mdm_verdict *v)
{
    answered(arg, v);
}

void intune_revoke_committed(app *a, job *j)
{
    intune_revoke *r = a->irev;
    int rc = j->put.result;
    int ok = rc == STORE_OK || rc == STORE_ALREADY_REVOKED;
    const char *state = rc == STORE_OK ? NULL : rc == STORE_ALREADY_REVOKED ? "already_revoked"
                        : rc == STORE_NOTFOUND ? "unknown_serial" : "store_failure";
    audit_fields f = {.serial = j->revoke.serial_hex, .detail = j->revoke.who, .diag = state,
                      .failinfo = -1};
    audit_emit(a->audit, ok ? AUDIT_REVOKED : AUDIT_REVOKE_FAILED, &f);
    if (rc == STORE_OK) {
        pthread_mutex_lock(&a->pub_mu);       /* the publisher rebuilds the CRL soon */
        a->pub_wake = 1;
        pthread_cond_broadcast(&a->pub_cv);
        pthread_mutex_unlock(&a->pub_mu);
    }
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        rev_slot *s = &r->slots[i];
        if (s->j != j)
            continue;
        s->error_code = rc == STORE_OK ? MDM_REV_OK : rc == STORE_ALREADY_REVOKED
                        ? MDM_REV_CONFLICT : rc == STORE_NOTFOUND ? MDM_REV_NOT_FOUND
                        : MDM_REV_RETRYABLE;
        s->message = rc == STORE_OK ? NULL : rc == STORE_ALREADY_REVOKED
                     ? "the certificate was already revoked" : rc == STORE_NOTFOUND
                     ? "no certificate with this serial number" : "the store failed; retry";
    }
    r->pending--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- one round (poller thread) ---------------------------------------------------------- */

/* Waits for the stage's answer; 0 with the verdict, -1 when stopping first. */
static int wait_answer(intune_revoke *r, mdm_verdict *v)
{
    pthread_mutex_lock(&r->mu);
    while (!r->answered && !r->stop)
        pthread_cond_wait(&r->cv, &r->mu);
    int rc = r->answered ? 0 : -1;
    if (rc == 0)
        *v = r->v;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void sync_failed(intune_revoke *r, const char *step, const mdm_verdict *v, int rc)
{
    char detail[400];
    if (v != NULL)
        snprintf(detail, sizeof(detail), "%s: %s%s%s", step, v->code, v->code[0] ? ": " : "",
                 v->reason);
    else
        snprintf(detail, sizeof(detail), "%s: %s", step, strerror(-rc));
    audit_fields f = {.diag = v != NULL ? mdm_diag_code(v->diag) : "mdm_unavailable",
                      .detail = detail, .failinfo = -1};
    audit_emit(r->a->audit, AUDIT_INTUNE_REVOCATION_SYNC_FAILED, &f);
}

/* One of the stage's calls: under mdm_mu (the stage may be going away), answered reset. */
static int stage_call(intune_revoke *r, int upload, const mdm_revocation_result *res, size_t n)
{
    app *a = r->a;
    int rc = -ESHUTDOWN;
    pthread_mutex_lock(&r->mu);
    r->answered = 0;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&a->mdm_mu);
    if (a->mdm != NULL)
        rc = upload ? mdm_revocations_upload(a->mdm, res, n, uploaded, r)
                    : mdm_revocations_download(a->mdm, REV_BATCH, r->issuer, downloaded, r);
    pthread_mutex_unlock(&a->mdm_mu);
    return rc;
}

/* The puts of the round to the writer, at once; refused requests get their code here. */
static void submit_revocations(intune_revoke *r)
{
    store_put *head = NULL, **tail = &head;
    size_t pending = 0;
    for (size_t i = 0; i < r->n; i++) {
        rev_slot *s = &r->slots[i];
        uint8_t serial[STORE_SERIAL_LEN];
        s->error_code = MDM_REV_NOT_FOUND;
        if (s->req.issuer_name[0] != '\0' && strcasecmp(s->req.issuer_name, r->issuer) != 0) {
            s->message = "issued by another CA";
            continue;
        }
        if (serial_parse(s->req.serial, serial) != 0) {
            s->message = "not a serial number this CA issues (1-32 hex digits)";
            continue;
        }
        job *j = job_new(JOB_INTUNE_REVOKE, "intune", "");
        if (j == NULL) {
            s->error_code = MDM_REV_RETRYABLE;
            s->message = "out of memory; retry";
            continue;
        }
        j->owner = r->a;
        serial_to_hex(serial, j->revoke.serial_hex);
        snprintf(j->revoke.who, sizeof(j->revoke.who), "intune revocation request %.120s",
                 s->req.request_context);
        j->put.kind = STORE_PUT_REVOKE;
        memcpy(j->put.rev.serial, serial, sizeof(serial));
        j->put.rev.reason = CRL_REASON_CESSATION;
        j->put.rev.revoked_at = (int64_t)time(NULL);
        j->put.rev.who = j->revoke.who;
        j->put.rev.who_len = strlen(j->revoke.who);
        s->j = j;
        *tail = &j->put;
        tail = &j->put.next;
        pending++;
    }
    pthread_mutex_lock(&r->mu);
    r->pending = pending;
    pthread_mutex_unlock(&r->mu);
    if (head != NULL)
        store_submit(r->a->store, head);
    /* The writer runs until after intune_revoke_stop: every put is answered. */
    pthread_mutex_lock(&r->mu);
    while (r->pending > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static const char *rev_error_name(int code)
{
    switch (code) {
    case MDM_REV_NOT_FOUND:  return "not_found";
    case MDM_REV_CONFLICT:   return "already_revoked";
    default:                 return "refused";
    }
}

static void round_once(intune_revoke *r)
{
    mdm_verdict v;
    int rc = stage_call(r, 0, NULL, 0);
    if (rc != 0) {
        sync_failed(r, "downloadRevocationRequests", NULL, rc);
        return;
    }
    if (wait_answer(r, &v) != 0)
        return;
    if (v.result != MDM_ALLOW) {
        sync_failed(r, "downloadRevocationRequests", &v, 0);
        return;
    }
    if (r->n == 0)
        return;                          /* nothing asked: no event every interval */
    submit_revocations(r);
    mdm_revocation_result res[REV_BATCH];
    size_t count[4] = {0};               /* revoked, already, not found, refused */
    for (size_t i = 0; i < r->n; i++) {
        rev_slot *s = &r->slots[i];
        res[i] = (mdm_revocation_result){.request_context = s->req.request_context,
                                         .succeeded = s->error_code == MDM_REV_OK,
                                         .error_code = s->error_code,
                                         .error_message = s->message};
        count[s->error_code == MDM_REV_OK ? 0 : s->error_code == MDM_REV_CONFLICT ? 1
              : s->error_code == MDM_REV_NOT_FOUND ? 2 : 3]++;
        if (s->error_code != MDM_REV_OK && s->j == NULL) {
            audit_fields f = {.diag = rev_error_name(s->error_code), .detail = s->message,
                              .failinfo = -1};
            audit_emit(r->a->audit, AUDIT_REVOKE_FAILED, &f);
        }
    }
    rc = stage_call(r, 1, res, r->n);
    int got = rc == 0 ? wait_answer(r, &v) : -1;
    if (rc != 0) {
        sync_failed(r, "uploadRevocationResults", NULL, rc);
    } else if (got == 0 && v.result != MDM_ALLOW) {
        sync_failed(r, "uploadRevocationResults", &v, 0);
    } else if (got == 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "requests=%zu revoked=%zu already_revoked=%zu "
                 "not_found=%zu refused=%zu", r->n, count[0], count[1], count[2], count[3]);
        audit_fields f = {.detail = detail, .failinfo = -1};
        audit_emit(r->a->audit, AUDIT_INTUNE_REVOCATION_SYNC, &f);
    }
    for (size_t i = 0; i < r->n; i++) {
        job_free(r->slots[i].j);
        r->slots[i].j = NULL;
    }
    r->n = 0;
}

static void *poller_main(void *arg)
{
    intune_revoke *r = arg;
    int64_t interval = r->a->mdm_cfg->revocation_poll_ms;
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += interval / 1000;
        until.tv_nsec += (interval % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&r->mu);
        int e = 0;
        while (!r->stop && e != ETIMEDOUT)
            e = pthread_cond_timedwait(&r->cv, &r->mu, &until);
        int stop = r->stop;
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        round_once(r);
    }
    return NULL;
}

/* ---- life ---------------------------------------------------------------------------------- */

static int ca_subject(X509 *ca, char *out, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    int n = -1;
    if (b != NULL && X509_NAME_print_ex(b, X509_get_subject_name(ca), 0, XN_FLAG_RFC2253) >= 0)
        n = BIO_read(b, out, (int)size - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(b);
    return n > 0 ? 0 : -1;
}

int intune_revoke_start(app *a)
{
    if (a->mdm == NULL || a->mdm_cfg == NULL || !mdm_config_intune_enabled(a->mdm_cfg) ||
        a->mdm_cfg->revocation_poll_ms <= 0)
        return 0;
    intune_revoke *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->slots = calloc(REV_BATCH, sizeof(*r->slots))) == NULL) {
        free(r);
        return -ENOMEM;
    }
    r->a = a;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (ca_subject(a->ca->ca_cert, r->issuer, sizeof(r->issuer)) != 0)
        r->issuer[0] = '\0';
    a->irev = r;
    int e = pthread_create(&r->thread, NULL, poller_main, r);
    if (e != 0)
        return -e;
    r->started = 1;
    return 0;
}

void intune_revoke_stop(app *a)
{
    intune_revoke *r = a->irev;
    if (r == NULL || !r->started)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    r->started = 0;
}

void intune_revoke_free(app *a)
{
    intune_revoke *r = a->irev;
    if (r == NULL)
        return;
    intune_revoke_stop(a);
    for (size_t i = 0; i < REV_BATCH; i++)
        job_free(r->slots[i].j);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->slots);
    free(r);
    a->irev = NULL;
}
