/* scepctl request list|approve|deny: the requests a manual-approval profile keeps in the
 * store's "requests" db (engine/enroll/pending.h) until an administrator decides.
 *
 * approve: the certificate is issued here, with the CA key from the token, under the profile
 * the request was made for, and committed in the same transaction as the decision; the
 * client's next CertPoll finds it by transactionID. deny: the decision alone; the client's
 * CertPoll gets FAILURE. See ctl_internal.h. */
#include "engine/ctl/ctl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "engine/enroll/pending.h"
#include "engine/enroll/record.h"
#include "engine/pki/serial.h"
#include "engine/policy/issue.h"

static int list_request(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                        void *arg)
{
    int all = *(int *)arg;
    pending_request r;
    char when[32];
    static const char *const names[] = {"pending", "approved", "denied"};
    if (pending_decode(val, vlen, &r) != 0) {
        printf("%.*s  (corrupt record)\n", (int)klen, (const char *)key);
        return 0;
    }
    if (!all && r.status != PENDING_WAITING)
        return 0;
    ctl_iso_time(r.created, when, sizeof(when));
    printf("%.*s  %-8s  %s  %-12s  %s  %s\n", (int)klen, (const char *)key, names[r.status], when,
           r.profile, r.peer[0] ? r.peer : "-", r.subject);
    return 0;
}

/* request list [--all] */
static int request_list(store_reader *r, int argc, char **argv)
{
    int all = argc == 2 && strcmp(argv[1], "--all") == 0;
    if (argc == 2 && !all) {
        ctl_usage();
        return 2;
    }
    int e = store_reader_begin(r);
    if (e == 0)
        e = store_foreach_aux(r, STORE_DB_REQUESTS, list_request, &all);
    store_reader_end(r);
    return e == 0 ? 0 : 1;
}

typedef struct decide_arg {
    int status;
    int64_t when;
    const char *who;
    const uint8_t *serial;   /* the certificate's, when approving */
    uint8_t *buf;            /* the new record (freed by the caller) */
} decide_arg;

/* Inside the write transaction: only a request still pending is decided. */
static int decide(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv, size_t *nl)
{
    decide_arg *d = arg;
    pending_request r;
    if (cur == NULL || pending_decode(cur, cur_len, &r) != 0)
        return 1;
    if (r.status != PENDING_WAITING)
        return 2;
    r.status = d->status;
    r.decided_at = d->when;
    snprintf(r.decided_by, sizeof(r.decided_by), "%s", d->who);
    if (d->serial != NULL)
        memcpy(r.serial, d->serial, STORE_SERIAL_LEN);
    free(d->buf);
    d->buf = NULL;
    if (pending_encode(&r, &d->buf, nl) != 0)
        return 3;
    *nv = d->buf;
    return 0;
}

/* One decision in progress: the request as read and, when approving, what issuance built.
 * Everything the puts borrow lives here until the commit; decision_free frees it all. */
typedef struct decision {
    const char *id;
    int approve;
    pending_request rq;            /* rq.csr points into csr_der */
    uint8_t *csr_der;
    char who[CTL_WHO_MAX];
    decide_arg d;
    store_put puts[2];             /* [0] the decision, [1] the certificate (approve only) */
    uint8_t serial[STORE_SERIAL_LEN], subj_hash[STORE_HASH_LEN];
    char sn_hex[2 * STORE_SERIAL_LEN + 1];
    ca_set *ca;
    issuer *is;
    X509_REQ *csr;
    X509 *cert;
    uint8_t *cert_der;
} decision;

static void decision_free(decision *dc)
{
    free(dc->d.buf);
    free(dc->csr_der);
    OPENSSL_free(dc->cert_der);
    X509_free(dc->cert);
    X509_REQ_free(dc->csr);
    issuer_destroy(dc->is);
    ca_free(dc->ca);
}

/* Reads the request (its CSR copied out of the read transaction); 0 when it is still pending,
 * -1 otherwise (message printed). */
static int request_read(store_reader *r, decision *dc)
{
    const uint8_t *v = NULL;
    size_t vl = 0, idl = strlen(dc->id);
    int e;
    if (idl == 0 || idl > STORE_AUX_KEY_MAX || store_reader_begin(r) != 0)
        e = STORE_NOTFOUND;
    else
        e = store_get_aux(r, STORE_DB_REQUESTS, dc->id, idl, &v, &vl);
    if (e == 0 && pending_decode(v, vl, &dc->rq) == 0 &&
        (dc->csr_der = malloc(dc->rq.csr_len + 1)) != NULL) {
        memcpy(dc->csr_der, dc->rq.csr, dc->rq.csr_len);
        dc->rq.csr = dc->csr_der;
    } else if (e == 0) {
        e = STORE_E_CORRUPT;
    }
    store_reader_end(r);
    if (e != 0) {
        fprintf(stderr, "scepctl: request %s: %s\n", dc->id,
                e == STORE_NOTFOUND ? "not found" : store_strerror(e));
        return -1;
    }
    if (dc->rq.status != PENDING_WAITING) {
        fprintf(stderr, "scepctl: request %s was already %s\n", dc->id,
                dc->rq.status == PENDING_APPROVED ? "approved" : "denied");
        return -1;
    }
    return 0;
}

/* The issuer scepd would use (CA, challenge, profiles), and the request's profile in it;
 * NULL when the profile is gone or the issuer cannot be built (message printed). */
static const profile *request_issuer(const config *cfg, decision *dc)
{
    profile_set *set = NULL;
    const profile *prof = NULL;
    char chal[256], err[512];
    if (ctl_load_profiles(cfg, &set) != 0)
        goto out;
    if (profile_set_find(set, dc->rq.profile, strlen(dc->rq.profile)) == NULL) {
        fprintf(stderr, "scepctl: the request's profile '%s' no longer exists\n", dc->rq.profile);
        goto out;
    }
    if (ctl_load_ca(cfg, &dc->ca) != 0)
        goto out;
    if (config_read_challenge(cfg, chal, sizeof(chal)) < 0)
        chal[0] = '\0';
    int e = issuer_create(cfg, dc->ca, chal, &dc->is);
    OPENSSL_cleanse(chal, sizeof(chal));
    if (e != 0 || issuer_set_profiles(dc->is, set, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: cannot prepare issuance: %s\n", e != 0 ? "CA" : err);
        goto out;
    }
    set = NULL;   /* the issuer's now */
    prof = profile_set_find(issuer_profiles(dc->is), dc->rq.profile, strlen(dc->rq.profile));
out:
    profile_set_destroy(set);
    return prof;
}

/* approve: issues the certificate and adds its put (puts[1]) behind the decision's. 0 or -1. */
static int request_issue(const config *cfg, decision *dc)
{
    const profile *prof = request_issuer(cfg, dc);
    if (prof == NULL)
        return -1;
    const unsigned char *pp = dc->rq.csr;
    dc->csr = d2i_X509_REQ(NULL, &pp, (long)dc->rq.csr_len);
    int capped = 0;
    int rej = dc->csr == NULL ? -1
              : issue_build_profile(dc->is, dc->csr, prof, NULL, NULL, &dc->cert, &capped);
    if (rej != 0) {
        fprintf(stderr, "scepctl: cannot issue for request %s (reject code %d)\n", dc->id, rej);
        return -1;
    }
    int dlen = i2d_X509(dc->cert, &dc->cert_der);
    if (dlen <= 0 || serial_from_asn1(X509_get0_serialNumber(dc->cert), dc->serial) != 0 ||
        issue_name_hash(X509_REQ_get_subject_name(dc->csr), dc->subj_hash) != 0)
        return -1;
    serial_to_hex(dc->serial, dc->sn_hex);
    enroll_record m = {dc->rq.key_hash, dc->subj_hash, dc->rq.subject, dc->id, dc->rq.profile,
                       dc->d.when};
    dc->puts[0].next = &dc->puts[1];
    dc->puts[1].kind = STORE_PUT_CERT;
    if (enroll_record_fill(&dc->puts[1].cert, dc->cert, dc->cert_der, (size_t)dlen, &m) != 0)
        return -1;
    dc->d.serial = dc->serial;
    return 0;
}

/* Commits the decision (and certificate) in one transaction; 0 or -1 (message printed). */
static int request_commit(store *s, decision *dc)
{
    store_put *p = dc->puts;
    int e = store_put_sync(s, &p[0]);
    int cert_failed = dc->approve && p[1].result != STORE_OK;
    if (e != 0 || p[0].result != STORE_OK || p[0].verdict != 0 || cert_failed) {
        fprintf(stderr, "scepctl: request %s: %s\n", dc->id,
                e != 0 ? store_strerror(e) : p[0].verdict != 0 ? "no longer pending"
                : store_strerror(cert_failed ? p[1].result : p[0].result));
        return -1;
    }
    return 0;
}

/* request approve|deny TXID */
static int request_decide(const config *cfg, store *s, store_reader *r, int argc, char **argv)
{
    decision dc;
    audit *au = NULL;
    int rc = 1;

    memset(&dc, 0, sizeof(dc));
    dc.approve = strcmp(argv[0], "approve") == 0;
    if ((!dc.approve && strcmp(argv[0], "deny") != 0) || argc != 2) {
        ctl_usage();
        return 2;
    }
    dc.id = argv[1];
    if (request_read(r, &dc) != 0)
        goto out;
    ctl_who_am_i(dc.who, sizeof(dc.who));
    dc.d.status = dc.approve ? PENDING_APPROVED : PENDING_DENIED;
    dc.d.when = (int64_t)time(NULL);
    dc.d.who = dc.who;
    dc.puts[0].kind = STORE_PUT_UPDATE;
    dc.puts[0].aux_db = STORE_DB_REQUESTS;
    dc.puts[0].aux_key = dc.id;
    dc.puts[0].aux_key_len = strlen(dc.id);
    dc.puts[0].update = decide;
    dc.puts[0].update_arg = &dc.d;
    if ((dc.approve && request_issue(cfg, &dc) != 0) || request_commit(s, &dc) != 0)
        goto out;
    if ((au = ctl_audit(cfg)) != NULL) {
        audit_fields f = {.txid = dc.id, .profile = dc.rq.profile, .subject = dc.rq.subject,
                          .serial = dc.approve ? dc.sn_hex : NULL, .detail = dc.who,
                          .failinfo = -1};
        audit_emit(au, dc.approve ? AUDIT_REQUEST_APPROVED : AUDIT_REQUEST_DENIED, &f);
    }
    if (dc.approve)
        printf("%s approved serial=%s\n", dc.id, dc.sn_hex);
    else
        printf("%s denied\n", dc.id);
    rc = 0;
out:
    audit_close(au);
    decision_free(&dc);
    return rc;
}

int ctl_cmd_request(const config *cfg, int argc, char **argv)
{
    store *s = NULL;
    store_reader *r = NULL;
    int rc = 1;

    if (argc < 1) {
        ctl_usage();
        return 2;
    }
    if (ctl_store_open(cfg, &s, &r) != 0)
        goto out;
    if (strcmp(argv[0], "list") == 0 && argc <= 2)
        rc = request_list(r, argc, argv);
    else
        rc = request_decide(cfg, s, r, argc, argv);
out:
    store_reader_destroy(r);
    store_close(s);
    return rc;
}
