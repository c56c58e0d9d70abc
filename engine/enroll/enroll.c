/* SCEP transactions on a crypto worker. See enroll.h. */
#include "engine/enroll/enroll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "engine/policy/challenge.h"
#include "engine/policy/profile.h"
#include "engine/scep/reject.h"
#include "engine/scep/scep.h"
#include "engine/scep/scep_oid.h"

static const char PKI_MESSAGE_TYPE[] = "application/x-pki-message";

void enroll_http_error(job *j, int status, const char *reason)
{
    free(j->body);
    j->body = NULL;
    j->body_len = 0;
    j->reply.resp.status = status;
    j->reply.resp.content_type = "text/plain";
    j->reply.resp.body = (const uint8_t *)reason;
    j->reply.resp.body_len = strlen(reason);
    j->reply.resp.extra_headers = NULL;
    j->reply.resp.close = status >= 500 ? 0 : 1;
}

static void set_pki_reply(job *j, uint8_t *der, size_t len)
{
    free(j->body);
    j->body = der;
    j->body_len = len;
    j->reply.resp.status = 200;
    j->reply.resp.content_type = PKI_MESSAGE_TYPE;
    j->reply.resp.body = der;
    j->reply.resp.body_len = len;
    j->reply.resp.extra_headers = NULL;
    j->reply.resp.close = 0;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The certificate's serial as 16 bytes; -1 if it is not a 1..16-byte positive integer. */
static int serial_bytes(const ASN1_INTEGER *ai, uint8_t out[STORE_SERIAL_LEN])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    int rc = -1;
    if (bn != NULL && !BN_is_negative(bn) && BN_num_bytes(bn) <= STORE_SERIAL_LEN &&
        BN_bn2binpad(bn, out, STORE_SERIAL_LEN) == STORE_SERIAL_LEN)
        rc = 0;
    BN_free(bn);
    return rc;
}

static void name_text(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    out[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0 &&
        (n = BIO_get_mem_data(b, &p)) > 0) {
        size_t m = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
        memcpy(out, p, m);
        out[m] = '\0';
    }
    BIO_free(b);
}

static void emit(const enroll_ctx *ctx, const job *j, const scep_request *req, int event,
                 int rej, const char *detail)
{
    audit_fields f = {
        .diag = rej != REJ_NONE ? reject_diag(rej) : NULL,
        .txid = req != NULL && req->txid_len > 0 ? req->txid : NULL,
        .profile = j->profile,
        .subject = j->subject,
        .serial = j->serial_hex,
        .peer = j->peer,
        .detail = detail,
        .failinfo = rej != REJ_NONE ? reject_failinfo(rej) : -1,
    };
    audit_emit(ctx->audit, event, &f);
}

/* A CertRep for req with status and, for SUCCESS, the one certificate. */
static int certrep(const enroll_ctx *ctx, job *j, const scep_request *req, int status, int rej,
                   X509 *cert)
{
    STACK_OF(X509) *certs = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    int rc = -1;

    if (cert != NULL) {
        certs = sk_X509_new_null();
        if (certs == NULL || !sk_X509_push(certs, cert))
            goto out;
    }
    if (scep_certrep(req, status, status == SCEP_FAILURE ? reject_failinfo(rej) : 0,
                     status == SCEP_FAILURE ? reject_text(rej) : NULL, certs,
                     ctx->ca->ra_key, ctx->ca->ra_cert, &der, &len) != 0)
        goto out;
    set_pki_reply(j, der, len);
    rc = 0;
out:
    sk_X509_free(certs);
    return rc;
}

/* Answers FAILURE for rej and audits it. Falls back to HTTP 500 if even that cannot be
 * signed (the RA key is unavailable). */
static int fail(const enroll_ctx *ctx, job *j, const scep_request *req, int rej,
                const char *detail)
{
    if (rej == REJ_SIG_DIGEST && req->sig_md_nid != NID_undef)
        detail = OBJ_nid2sn(req->sig_md_nid);
    /* A refused one-time challenge has its own event (the Intune connector's "challenge
     * expired/invalid" rows); everything else is a rejected request. */
    int ev = rej >= REJ_CHAL_WRONG && rej <= REJ_CHAL_PROFILE ? AUDIT_CHALLENGE_REJECTED
                                                               : AUDIT_REQUEST_REJECTED;
    emit(ctx, j, req, ev, rej, detail);
    if (certrep(ctx, j, req, SCEP_FAILURE, rej, NULL) != 0) {
        emit(ctx, j, req, AUDIT_HSM_FAILURE, REJ_INTERNAL, "cannot sign CertRep FAILURE");
        enroll_http_error(j, 500, "cannot sign the reply\n");
    }
    return JOB_DELIVER;
}

/* Loads a stored certificate (copied out of the read snapshot). */
static int stored_cert(const enroll_ctx *ctx, const uint8_t serial[STORE_SERIAL_LEN],
                       X509 **out, store_cert *meta)
{
    store_cert c;
    int rc;
    if (store_reader_begin(ctx->reader) != 0)
        return -1;
    rc = store_get_cert(ctx->reader, serial, &c);
    if (rc == STORE_OK) {
        const unsigned char *p = c.der;
        *out = d2i_X509(NULL, &p, (long)c.der_len);
        if (*out == NULL)
            rc = -1;
        else if (meta != NULL) {
            *meta = c;
            meta->subject = meta->txid = meta->profile = NULL;
            meta->der = NULL;
        }
    }
    store_reader_end(ctx->reader);
    return rc;
}

static int lookup_txid(const enroll_ctx *ctx, const char *txkey, uint8_t serial[16],
                       uint8_t key_hash[32])
{
    int rc;
    if (store_reader_begin(ctx->reader) != 0)
        return -1;
    rc = store_get_txid(ctx->reader, txkey, strlen(txkey), serial, key_hash);
    store_reader_end(ctx->reader);
    return rc;
}

/* Authorisation of a renewal: the signer is a certificate we issued, currently valid, known
 * to the store and not revoked. Also returns its validity and the profile it was issued under
 * (old_profile, 64 bytes). */
static int check_renewal_signer(const enroll_ctx *ctx, X509 *signer, uint8_t serial[16],
                                int64_t *nb, int64_t *na, char *old_profile)
{
    if (X509_cmp(signer, ctx->ca->ca_cert) == 0)
        return REJ_RENEW_SIGNER;
    if (serial_bytes(X509_get0_serialNumber(signer), serial) != 0)
        return REJ_RENEW_UNKNOWN;
    if (X509_cmp_current_time(X509_get0_notBefore(signer)) >= 0 ||
        X509_cmp_current_time(X509_get0_notAfter(signer)) <= 0)
        return REJ_RENEW_EXPIRED;
    X509 *stored = NULL;
    store_cert meta;
    int rc;
    old_profile[0] = '\0';
    if (store_reader_begin(ctx->reader) != 0)
        return REJ_INTERNAL;
    rc = store_get_cert(ctx->reader, serial, &meta);
    if (rc == STORE_OK) {
        const unsigned char *p = meta.der;
        stored = d2i_X509(NULL, &p, (long)meta.der_len);
        if (stored == NULL)
            rc = -1;
        if (meta.profile_len < 64) {
            memcpy(old_profile, meta.profile, meta.profile_len);
            old_profile[meta.profile_len] = '\0';
        }
    }
    store_reader_end(ctx->reader);
    if (rc != STORE_OK)
        return rc == STORE_NOTFOUND ? REJ_RENEW_UNKNOWN : REJ_INTERNAL;
    int same = X509_cmp(stored, signer) == 0;
    X509_free(stored);
    if (!same)
        return REJ_RENEW_UNKNOWN;
    *nb = meta.not_before;
    *na = meta.not_after;
    return meta.status == STORE_CERT_REVOKED ? REJ_RENEW_REVOKED : REJ_NONE;
}

/* ------------------------------------------------------------------ pending requests */

static void be_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t be_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

#define RQ_VERSION 1
#define RQ_HDR (4 + 8 + 8 + STORE_HASH_LEN + STORE_SERIAL_LEN + 4 * 2 + 4)

int enroll_request_encode(const enroll_request *r, uint8_t **out, size_t *len)
{
    const char *str[4] = {r->profile, r->subject, r->peer, r->decided_by};
    size_t sl[4] = {strnlen(r->profile, sizeof(r->profile)), strnlen(r->subject, sizeof(r->subject)),
                    strnlen(r->peer, sizeof(r->peer)), strnlen(r->decided_by, sizeof(r->decided_by))};
    size_t total = RQ_HDR + r->csr_len + sl[0] + sl[1] + sl[2] + sl[3];
    if (r->status < ENROLL_REQ_PENDING || r->status > ENROLL_REQ_DENIED || r->csr_len > UINT32_MAX ||
        (r->csr_len > 0 && r->csr == NULL))
        return -1;
    uint8_t *b = malloc(total), *p = b;
    if (b == NULL)
        return -1;
    p[0] = RQ_VERSION;
    p[1] = (uint8_t)r->status;
    p[2] = p[3] = 0;
    p += 4;
    be_put(p, (uint64_t)r->created, 8);
    be_put(p + 8, (uint64_t)r->decided_at, 8);
    p += 16;
    memcpy(p, r->key_hash, STORE_HASH_LEN);
    p += STORE_HASH_LEN;
    memcpy(p, r->serial, STORE_SERIAL_LEN);
    p += STORE_SERIAL_LEN;
    for (int i = 0; i < 4; i++, p += 2)
        be_put(p, sl[i], 2);
    be_put(p, r->csr_len, 4);
    p += 4;
    for (int i = 0; i < 4; i++) {
        memcpy(p, str[i], sl[i]);
        p += sl[i];
    }
    if (r->csr_len > 0)
        memcpy(p, r->csr, r->csr_len);
    *out = b;
    *len = total;
    return 0;
}

int enroll_request_decode(const uint8_t *in, size_t len, enroll_request *out)
{
    enroll_request r;
    char *str[4] = {r.profile, r.subject, r.peer, r.decided_by};
    size_t cap[4] = {sizeof(r.profile), sizeof(r.subject), sizeof(r.peer), sizeof(r.decided_by)};
    if (len < RQ_HDR || in[0] != RQ_VERSION || in[1] > ENROLL_REQ_DENIED)
        return -1;
    memset(&r, 0, sizeof(r));
    r.status = in[1];
    r.created = (int64_t)be_get(in + 4, 8);
    r.decided_at = (int64_t)be_get(in + 12, 8);
    memcpy(r.key_hash, in + 20, STORE_HASH_LEN);
    memcpy(r.serial, in + 20 + STORE_HASH_LEN, STORE_SERIAL_LEN);
    const uint8_t *l = in + 20 + STORE_HASH_LEN + STORE_SERIAL_LEN, *p = in + RQ_HDR;
    size_t total = RQ_HDR;
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)be_get(l + 2 * i, 2);
        if (n >= cap[i] || total + n > len)
            return -1;
        memcpy(str[i], p, n);
        str[i][n] = '\0';
        p += n;
        total += n;
    }
    r.csr_len = (size_t)be_get(l + 8, 4);
    if (total + r.csr_len != len)
        return -1;
    r.csr = p;
    *out = r;
    return 0;
}

/* ------------------------------------------------------------------ one-time challenges */

/* State of a PKIOperation across its passes (job->ext). */
typedef struct enroll_state {
    char           presented[256];
    size_t         plen;
    char           profile[64];
    unsigned       flags;
    X509_NAME     *subject;          /* the CSR's, for the binding check */
    GENERAL_NAMES *san;
    uint8_t        key[CHALLENGE_HASH_LEN];
    int64_t        now;
    challenge_record rec;            /* as read by the writer: bindings for "override" */
    int            have_rec;
    uint8_t        buf[CHALLENGE_RECORD_MAX];
    uint8_t       *reqrec;           /* encoded pending request */
    size_t         reqrec_len;
} enroll_state;

static void state_free(void *p)
{
    enroll_state *st = p;
    if (st == NULL)
        return;
    OPENSSL_cleanse(st->presented, sizeof(st->presented));
    X509_NAME_free(st->subject);
    GENERAL_NAMES_free(st->san);
    free(st->reqrec);
    free(st);
}

static enroll_state *job_state(job *j)
{
    if (j->ext == NULL) {
        j->ext = calloc(1, sizeof(enroll_state));
        j->ext_free = state_free;
    }
    return j->ext;
}

/* Writer thread, inside the batch's transaction: look up, verify, mark used. */
static int chal_update(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                       size_t *nl)
{
    enroll_state *st = arg;
    challenge_record rec;
    st->have_rec = 0;
    if (cur == NULL || challenge_decode(cur, cur_len, &rec) != 0)
        return CHALLENGE_WRONG;
    int v = challenge_verify(&rec, NULL, 0, st->presented, st->plen, st->profile, st->now,
                             st->flags, st->subject, st->san);
    st->rec = rec;
    st->have_rec = 1;
    if (v != CHALLENGE_OK)
        return v;
    challenge_mark_used(&rec, st->now);
    int n = challenge_encode(&rec, st->buf, sizeof(st->buf));
    if (n < 0)
        return CHALLENGE_WRONG;
    *nv = st->buf;
    *nl = (size_t)n;
    return CHALLENGE_OK;
}

/* Writer thread: stores a pending request unless the transaction already has one. */
static int request_insert(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                          size_t *nl)
{
    enroll_state *st = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = st->reqrec;
    *nl = st->reqrec_len;
    return 0;
}

/* The challengePassword of a CSR as text; -1 when absent or not a string. */
static int csr_password(X509_REQ *csr, char *out, size_t outlen)
{
    int idx = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    X509_ATTRIBUTE *a = idx >= 0 ? X509_REQ_get_attr(csr, idx) : NULL;
    ASN1_TYPE *t = a != NULL && X509_ATTRIBUTE_count(a) == 1 ? X509_ATTRIBUTE_get0_type(a, 0) : NULL;
    if (t == NULL || (t->type != V_ASN1_PRINTABLESTRING && t->type != V_ASN1_UTF8STRING &&
                      t->type != V_ASN1_IA5STRING && t->type != V_ASN1_T61STRING))
        return -1;
    int n = t->value.asn1_string->length;
    if (n <= 0 || (size_t)n >= outlen)
        return -1;
    memcpy(out, t->value.asn1_string->data, (size_t)n);
    out[n] = '\0';
    return n;
}

/* First pass under a one-time-challenge profile: the put that consumes the challenge. */
static int challenge_put(job *j, const profile *prof, X509_REQ *csr)
{
    enroll_state *st = job_state(j);
    if (st == NULL)
        return REJ_INTERNAL;
    int n = csr_password(csr, st->presented, sizeof(st->presented));
    if (n < 0)
        return REJ_CHAL_WRONG;
    st->plen = (size_t)n;
    snprintf(st->profile, sizeof(st->profile), "%s", prof->name);
    st->flags = (prof->subject_source != PROFILE_SOURCE_OVERRIDE ? CHALLENGE_CHECK_SUBJECT : 0) |
                (prof->san_source != PROFILE_SOURCE_OVERRIDE ? CHALLENGE_CHECK_SAN : 0);
    st->now = (int64_t)time(NULL);
    X509_NAME_free(st->subject);
    GENERAL_NAMES_free(st->san);
    st->subject = X509_NAME_dup(X509_REQ_get_subject_name(csr));
    st->san = issue_requested_san(csr);
    if (st->subject == NULL || challenge_hash(NULL, 0, st->presented, st->plen, st->key) != 0)
        return REJ_INTERNAL;
    store_put *p = &j->put;
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_UPDATE;
    p->aux_db = STORE_DB_CHALLENGES;
    p->aux_key = st->key;
    p->aux_key_len = sizeof(st->key);
    p->update = chal_update;
    p->update_arg = st;
    j->requeue = 1;
    j->audit_event = AUDIT_CHALLENGE_CONSUMED;
    j->audit_detail = NULL;
    return REJ_NONE;
}

/* A stored request for txkey: 0 with status/key hash, STORE_NOTFOUND, or < 0. */
static int lookup_request(const enroll_ctx *ctx, const char *txkey, int *status,
                          uint8_t key_hash[32])
{
    const uint8_t *v = NULL;
    size_t vl = 0;
    enroll_request r;
    int rc;
    if (strlen(txkey) > STORE_AUX_KEY_MAX)
        return STORE_NOTFOUND;
    if (store_reader_begin(ctx->reader) != 0)
        return -1;
    rc = store_get_aux(ctx->reader, STORE_DB_REQUESTS, txkey, strlen(txkey), &v, &vl);
    if (rc == 0) {
        if (enroll_request_decode(v, vl, &r) == 0) {
            *status = r.status;
            memcpy(key_hash, r.key_hash, 32);
        } else {
            rc = STORE_E_CORRUPT;
        }
    }
    store_reader_end(ctx->reader);
    return rc;
}

static int pending(const enroll_ctx *ctx, job *j, const scep_request *req, const char *detail)
{
    if (certrep(ctx, j, req, SCEP_PENDING, REJ_NONE, NULL) != 0) {
        emit(ctx, j, req, AUDIT_HSM_FAILURE, REJ_INTERNAL, "cannot sign CertRep PENDING");
        return REJ_INTERNAL;
    }
    if (detail != NULL)
        emit(ctx, j, req, AUDIT_REQUEST_PENDING, REJ_NONE, detail);
    return REJ_NONE;
}

static int enroll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    X509_NAME *bound_subject = NULL;
    GENERAL_NAMES *bound_san = NULL;
    const profile *prof = NULL;
    const char *detail = NULL;
    uint8_t signer_serial[16], serial[16], key_hash[32], subj_hash[32];
    int64_t old_nb = 0, old_na = 0;
    char url_profile[64], old_profile[64] = "";
    int rej, next = JOB_DELIVER, capped = 0;
    int ours = ca_issued(ctx->ca, req->signer);
    int renewal = req->msg_type == SCEP_MSG_RENEWALREQ || ours;

    snprintf(url_profile, sizeof(url_profile), "%s", j->profile);
    j->requeue = 0;
    rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);
    if (rej != REJ_NONE)
        goto out;
    if (renewal) {
        rej = ours ? check_renewal_signer(ctx, req->signer, signer_serial, &old_nb, &old_na,
                                          old_profile)
                   : REJ_RENEW_SIGNER;
#ifdef SCEPD_MUTANT_RENEW_NO_SIGNER_CHECK   /* test-only breakage, docs/testing-mutants.md */
        rej = REJ_NONE;
#endif
        if (rej != REJ_NONE)
            goto out;
    }
    /* A renewal on the default path stays under the profile of the certificate it renews. */
    const char *want = url_profile;
    if (want[0] == '\0' && renewal && old_profile[0] != '\0' &&
        profile_set_find(issuer_profiles(ctx->issuer), old_profile, strlen(old_profile)) != NULL)
        want = old_profile;
    rej = issue_check_request(ctx->issuer, req->inner, req->inner_len, want, !renewal, &prof,
                              &csr, &detail);
    if (prof != NULL)
        snprintf(j->profile, sizeof(j->profile), "%s", prof->name);
    if (rej != REJ_NONE)
        goto out;
    name_text(X509_REQ_get_subject_name(csr), j->subject, sizeof(j->subject));
    if (renewal) {
        int pr = profile_renewal_allowed(prof, time(NULL), old_nb, old_na);
        if (pr != PROFILE_OK) {
            rej = issue_profile_reject(pr);
            detail = profile_result_diag(pr);
            goto out;
        }
    }

    /* Idempotence: the same transaction (a renewal is keyed by its signer too) with the same
     * key and subject gets the certificate already issued; anything else under that
     * transactionID is a conflict. */
    if (renewal) {
        char sh[33];
        hex(signer_serial, 16, sh);
        snprintf(j->txkey, sizeof(j->txkey), "%s@%s", req->txid, sh);
    } else {
        snprintf(j->txkey, sizeof(j->txkey), "%s", req->txid);
    }
    rej = REJ_INTERNAL;
    if (issue_spki_hash(X509_REQ_get_X509_PUBKEY(csr), key_hash) != 0 ||
        issue_name_hash(X509_REQ_get_subject_name(csr), subj_hash) != 0)
        goto out;
    uint8_t old_key[32];
    int trc = lookup_txid(ctx, j->txkey, serial, old_key);
    if (trc == STORE_OK) {
        store_cert meta;
        if (stored_cert(ctx, serial, &cert, &meta) != STORE_OK)
            goto out;
        if (memcmp(old_key, key_hash, 32) != 0 || memcmp(meta.subject_hash, subj_hash, 32) != 0) {
            rej = REJ_TXID_CONFLICT;
            goto out;
        }
        hex(serial, 16, j->serial_hex);
        if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
            goto out;
        emit(ctx, j, req, AUDIT_REPLAYED, REJ_NONE, NULL);
        rej = REJ_NONE;
        goto out;
    }
    if (trc != STORE_NOTFOUND)
        goto out;

    int manual = !renewal && prof->approval == PROFILE_APPROVAL_MANUAL;
    if (manual) {
        /* A repeated PKCSReq of a request already waiting: PENDING again (or its denial). */
        int status = 0;
        int rrc = lookup_request(ctx, j->txkey, &status, old_key);
        if (rrc == 0) {
            if (memcmp(old_key, key_hash, 32) != 0) {
                rej = REJ_TXID_CONFLICT;
            } else if (status == ENROLL_REQ_DENIED) {
                rej = REJ_REQUEST_DENIED;
            } else {
                rej = pending(ctx, j, req, "repeated request, still pending");
            }
            goto out;
        }
        if (rrc != STORE_NOTFOUND)
            goto out;
    }

    /* One-time challenge: consumed in the store first (next pass), then issued. */
    if (!renewal && prof->challenge == PROFILE_CHALLENGE_ONETIME) {
        if (!j->chal_done) {
            rej = challenge_put(j, prof, csr);
            if (rej != REJ_NONE)
                goto out;
            next = JOB_COMMIT;
            goto out;
        }
        if (j->chal_verdict != CHALLENGE_OK) {
            rej = challenge_reject_code(j->chal_verdict);
            goto out;
        }
        enroll_state *st = j->ext;
        if (st != NULL && st->have_rec) {
            if (prof->subject_source == PROFILE_SOURCE_OVERRIDE)
                bound_subject = challenge_bound_subject(&st->rec);
            if (prof->san_source == PROFILE_SOURCE_OVERRIDE)
                bound_san = challenge_bound_san(&st->rec);
        }
    }

    if (manual) {
        enroll_state *st = job_state(j);
        rej = REJ_INTERNAL;
        enroll_request r;
        memset(&r, 0, sizeof(r));
        r.status = ENROLL_REQ_PENDING;
        r.created = (int64_t)time(NULL);
        memcpy(r.key_hash, key_hash, 32);
        snprintf(r.profile, sizeof(r.profile), "%s", prof->name);
        snprintf(r.subject, sizeof(r.subject), "%s", j->subject);
        snprintf(r.peer, sizeof(r.peer), "%s", j->peer);
        r.csr = req->inner;
        r.csr_len = req->inner_len;
        free(st != NULL ? st->reqrec : NULL);
        if (st == NULL || enroll_request_encode(&r, &st->reqrec, &st->reqrec_len) != 0)
            goto out;
        if ((rej = pending(ctx, j, req, NULL)) != REJ_NONE)
            goto out;
        store_put *p = &j->put;
        memset(p, 0, sizeof(*p));
        p->kind = STORE_PUT_UPDATE;
        p->aux_db = STORE_DB_REQUESTS;
        p->aux_key = j->txkey;
        p->aux_key_len = strlen(j->txkey);
        p->update = request_insert;
        p->update_arg = st;
        j->audit_event = AUDIT_REQUEST_PENDING;
        j->audit_detail = NULL;
        next = JOB_COMMIT;
        goto out;
    }

    rej = issue_build_profile(ctx->issuer, csr, prof, bound_subject, bound_san, &cert, &capped);
    if (rej != REJ_NONE) {
        if (rej == REJ_INTERNAL)
            emit(ctx, j, req, AUDIT_HSM_FAILURE, rej, "CA signature failed");
        goto out;
    }
    if (bound_subject != NULL)
        name_text(X509_get_subject_name(cert), j->subject, sizeof(j->subject));
    rej = REJ_INTERNAL;
    if (serial_bytes(X509_get0_serialNumber(cert), serial) != 0)
        goto out;
    unsigned char *der = NULL;
    int dlen = i2d_X509(cert, &der);
    if (dlen <= 0)
        goto out;
    free(j->cert_der);
    j->cert_der = malloc((size_t)dlen);
    if (j->cert_der == NULL) {
        OPENSSL_free(der);
        goto out;
    }
    memcpy(j->cert_der, der, (size_t)dlen);
    j->cert_der_len = (size_t)dlen;
    OPENSSL_free(der);
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0) {
        emit(ctx, j, req, AUDIT_HSM_FAILURE, rej, "cannot sign CertRep");
        goto out;
    }
    hex(serial, 16, j->serial_hex);

    store_put *p = &j->put;
    memset(p, 0, sizeof(*p));
    memcpy(p->cert.serial, serial, 16);
    p->cert.status = STORE_CERT_VALID;
    struct tm tm;
    ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm);
    p->cert.not_before = (int64_t)timegm(&tm);
    ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm);
    p->cert.not_after = (int64_t)timegm(&tm);
    p->cert.issued_at = (int64_t)time(NULL);
    memcpy(p->cert.key_hash, key_hash, 32);
    memcpy(p->cert.subject_hash, subj_hash, 32);
    p->cert.subject = j->subject;
    p->cert.subject_len = strlen(j->subject);
    p->cert.txid = j->txkey;
    p->cert.txid_len = strlen(j->txkey);
    p->cert.profile = j->profile;
    p->cert.profile_len = strlen(j->profile);
    p->cert.der = j->cert_der;
    p->cert.der_len = j->cert_der_len;
    j->audit_event = renewal ? AUDIT_RENEWED : AUDIT_ISSUED;
    j->audit_detail = capped ? "validity capped at CA notAfter"
                    : req->cipher_nid == NID_des_cbc ? "single-DES request, DES3 reply" : NULL;
    next = JOB_COMMIT;
    rej = REJ_NONE;
out:
    X509_REQ_free(csr);
    X509_free(cert);
    X509_NAME_free(bound_subject);
    GENERAL_NAMES_free(bound_san);
    ERR_clear_error();
    if (rej != REJ_NONE)
        return fail(ctx, j, req, rej, detail);
    return next;
}

/* CertPoll / GetCertInitial: the certificate of a known transaction, to its requester. */
static int poll(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16], key_hash[32], signer_key[32];
    X509 *cert = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);

    if (rej != REJ_NONE)
        goto out;
    rej = REJ_UNKNOWN_TXN;
    if (issue_spki_hash(X509_get_X509_PUBKEY(req->signer), signer_key) != 0)
        goto out;
    if (lookup_txid(ctx, req->txid, serial, key_hash) != STORE_OK) {
        /* Not issued (yet): a request waiting for approval, or denied. */
        int status = 0;
        if (lookup_request(ctx, req->txid, &status, key_hash) != 0 ||
            memcmp(key_hash, signer_key, 32) != 0)
            goto out;
        if (status == ENROLL_REQ_DENIED) {
            rej = REJ_REQUEST_DENIED;
            goto out;
        }
        rej = pending(ctx, j, req, NULL);
        goto out;
    }
    if (memcmp(key_hash, signer_key, 32) != 0)
        goto out;
    rej = REJ_INTERNAL;
    if (stored_cert(ctx, serial, &cert, NULL) != STORE_OK)
        goto out;
    hex(serial, 16, j->serial_hex);
    name_text(X509_get_subject_name(cert), j->subject, sizeof(j->subject));
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, "CertPoll");
    rej = REJ_NONE;
out:
    X509_free(cert);
    return rej != REJ_NONE ? fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}

/* The content of GetCert and GetCRL: an IssuerAndSerialNumber naming a certificate this CA
 * issued. Opens the envelope, then REJ_NONE with the serial and the stored certificate, or
 * REJ_BAD_QUERY / REJ_UNKNOWN_CERT / an envelope rejection. */
static int issuer_and_serial(const enroll_ctx *ctx, scep_request *req, uint8_t serial[16],
                             X509 **cert)
{
    PKCS7_ISSUER_AND_SERIAL *ias = NULL;
    int rej = scep_open_envelope(req, ctx->ca->ra_key, ctx->ca->ra_cert, ctx->cfg->allow_des_requests);

    if (rej != REJ_NONE)
        goto out;
    const unsigned char *p = req->inner;
    ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, (long)req->inner_len);
    rej = REJ_BAD_QUERY;
    if (ias == NULL)
        goto out;
    rej = REJ_UNKNOWN_CERT;
    if (X509_NAME_cmp(ias->issuer, ctx->ca->ca_name) != 0 ||
        serial_bytes(ias->serial, serial) != 0 ||
        stored_cert(ctx, serial, cert, NULL) != STORE_OK)
        goto out;
    rej = REJ_NONE;
out:
    PKCS7_ISSUER_AND_SERIAL_free(ias);
    return rej;
}

/* GetCert: a certificate we issued, by issuer and serial. */
static int getcert(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16];
    X509 *cert = NULL;
    int rej = issuer_and_serial(ctx, req, serial, &cert);

    if (rej != REJ_NONE)
        goto out;
    hex(serial, 16, j->serial_hex);
    name_text(X509_get_subject_name(cert), j->subject, sizeof(j->subject));
    rej = REJ_INTERNAL;
    if (certrep(ctx, j, req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    emit(ctx, j, req, AUDIT_CERT_RETURNED, REJ_NONE, "GetCert");
    rej = REJ_NONE;
out:
    X509_free(cert);
    ERR_clear_error();
    return rej != REJ_NONE ? fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}

/* ------------------------------------------------------------------ GetCRL
 *
 * scep_certrep() only carries certificates; a GetCRL answer carries the CRL in the
 * degenerate SignedData's crls field. The CRL may be megabytes (a million entries), so the
 * SignedData is written as DER around the published bytes instead of parsing them into an
 * X509_CRL, and the CertRep around it is signed here the way scep_certrep signs its own. */

static const uint8_t OID_SIGNED_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02 };
static const uint8_t OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01 };

static size_t hdr_len(size_t n)
{
    return n < 0x80 ? 2 : n <= 0xff ? 3 : n <= 0xffff ? 4 : n <= 0xffffff ? 5 : 6;
}

static uint8_t *put_hdr(uint8_t *p, uint8_t tag, size_t n)
{
    size_t h = hdr_len(n);
    *p++ = tag;
    if (h == 2) {
        *p++ = (uint8_t)n;
        return p;
    }
    *p++ = (uint8_t)(0x80 | (h - 2));
    for (size_t i = h - 2; i > 0; i--)
        *p++ = (uint8_t)(n >> (8 * (i - 1)));
    return p;
}

/* ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [1] { crl }, {} } } */
static uint8_t *degenerate_crl(const uint8_t *crl, size_t crl_len, size_t *outlen)
{
    size_t crls = hdr_len(crl_len) + crl_len;
    size_t sd_inner = 3 + 2 + (2 + sizeof(OID_DATA)) + crls + 2;
    size_t sd = hdr_len(sd_inner) + sd_inner;
    size_t ci_inner = sizeof(OID_SIGNED_DATA) + hdr_len(sd) + sd;
    size_t total = hdr_len(ci_inner) + ci_inner;
    uint8_t *out = malloc(total), *p = out;
    if (out == NULL)
        return NULL;
    p = put_hdr(p, 0x30, ci_inner);
    memcpy(p, OID_SIGNED_DATA, sizeof(OID_SIGNED_DATA));
    p += sizeof(OID_SIGNED_DATA);
    p = put_hdr(p, 0xa0, sd);
    p = put_hdr(p, 0x30, sd_inner);
    *p++ = 0x02; *p++ = 0x01; *p++ = 0x01;          /* version 1 */
    *p++ = 0x31; *p++ = 0x00;                       /* digestAlgorithms {} */
    p = put_hdr(p, 0x30, sizeof(OID_DATA));          /* encapContentInfo { data } */
    memcpy(p, OID_DATA, sizeof(OID_DATA));
    p += sizeof(OID_DATA);
    p = put_hdr(p, 0xa1, crl_len);                  /* crls [1] */
    memcpy(p, crl, crl_len);
    p += crl_len;
    *p++ = 0x31; *p++ = 0x00;                       /* signerInfos {} */
    *outlen = (size_t)(p - out);
    return out;
}

/* CertRep SUCCESS whose pkcsPKIEnvelope encrypts content (DER) to the requester. */
static int certrep_content(const enroll_ctx *ctx, job *j, const scep_request *req,
                           const uint8_t *content, size_t content_len)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (scep_certrep_content(req, SCEP_SUCCESS, 0, NULL, content, content_len, ctx->ca->ra_key,
                             ctx->ca->ra_cert, &der, &len) != 0)
        return -1;
    set_pki_reply(j, der, len);
    return 0;
}

/* GetCRL: IssuerAndSerialNumber of a certificate we issued -> the current CRL. */
static int getcrl(const enroll_ctx *ctx, job *j, scep_request *req)
{
    uint8_t serial[16], *deg = NULL;
    size_t deg_len = 0;
    X509 *cert = NULL;
    crl_snapshot *crl = NULL;
    int rej = issuer_and_serial(ctx, req, serial, &cert);

    if (rej != REJ_NONE)
        goto out;
    hex(serial, 16, j->serial_hex);
    rej = REJ_NO_CRL;
    crl = ctx->crls != NULL ? crl_cache_get(ctx->crls) : NULL;
    if (crl == NULL)
        goto out;
    rej = REJ_INTERNAL;
    if ((deg = degenerate_crl(crl->der, crl->len, &deg_len)) == NULL ||
        certrep_content(ctx, j, req, deg, deg_len) != 0)
        goto out;
    char detail[48];
    snprintf(detail, sizeof(detail), "crl_number=%llu", (unsigned long long)crl->number);
    emit(ctx, j, req, AUDIT_CRL_RETURNED, REJ_NONE, detail);
    rej = REJ_NONE;
out:
    free(deg);
    crl_snapshot_unref(crl);
    X509_free(cert);
    ERR_clear_error();
    return rej != REJ_NONE ? fail(ctx, j, req, rej, NULL) : JOB_DELIVER;
}

int enroll_process(const enroll_ctx *ctx, job *j)
{
    scep_request req;
    int next;
    int rej = scep_parse(j->msg, j->msg_len, ctx->cfg->allow_sha1_messages, &req);

    j->subject[0] = '\0';
    j->serial_hex[0] = '\0';
    if (rej == REJ_NOT_PKIMESSAGE) {
        audit_fields f = {.diag = reject_diag(rej), .peer = j->peer, .profile = j->profile,
                          .failinfo = -1, .http_status = 400};
        audit_emit(ctx->audit, AUDIT_HTTP_REJECTED, &f);
        enroll_http_error(j, 400, "body is not a SCEP pkiMessage\n");
        next = JOB_DELIVER;
    } else if (rej != REJ_NONE) {
        next = fail(ctx, j, &req, rej, NULL);
    } else {
        switch (req.msg_type) {
        case SCEP_MSG_PKCSREQ:
        case SCEP_MSG_RENEWALREQ:
            next = enroll(ctx, j, &req);
            break;
        case SCEP_MSG_CERTPOLL:
            next = poll(ctx, j, &req);
            break;
        case SCEP_MSG_GETCERT:
            next = getcert(ctx, j, &req);
            break;
        case SCEP_MSG_GETCRL:
            next = getcrl(ctx, j, &req);
            break;
        default:
            next = fail(ctx, j, &req, REJ_UNKNOWN_TYPE, NULL);
            break;
        }
    }
    scep_request_clear(&req);
    return next;
}
