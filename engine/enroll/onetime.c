/* One-time challenges of a PKCSReq. The worker checks the challenge against the record its
 * own reader sees (an early refusal, and the bindings an "override" profile issues with), and
 * the put that records the certificate (or the pending request) carries the challenge as its
 * condition: the writer checks it again and marks it used in the same transaction, so the
 * challenge is consumed exactly when what it pays for is stored (engine/store/store.h). When
 * the writer refuses (another request used it meanwhile), nothing is written and the job
 * comes back to a worker, which answers from what the store then holds: the replay if its
 * transaction has a certificate, challenge_used otherwise. */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/policy/issue.h"
#include "engine/scep/reject.h"

/* The verdict on rec (decoded from the store) for the challenge st presents. */
static int verify(const enroll_state *st, const challenge_record *rec)
{
    return challenge_verify(rec, NULL, 0, st->presented, st->plen, st->profile, st->now,
                            st->flags, st->subject, st->san);
}

/* Writer thread, inside the transaction of the put it guards: verify again, mark used. */
static int onetime_update(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                          size_t *nl)
{
    enroll_state *st = arg;
    challenge_record rec;
    if (cur == NULL || challenge_decode(cur, cur_len, &rec) != 0)
        return CHALLENGE_WRONG;
    int v = verify(st, &rec);
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

/* The stored record of st's challenge, as the worker's reader sees it: 0, STORE_NOTFOUND or
 * an error (< 0, STORE_E_CORRUPT). */
static int read_record(const enroll_ctx *ctx, const enroll_state *st, challenge_record *rec)
{
    const uint8_t *v = NULL;
    size_t vl = 0;
    int rc = store_reader_begin(ctx->reader);
    if (rc != 0)
        return rc;
    rc = store_get_aux(ctx->reader, STORE_DB_CHALLENGES, st->key, sizeof(st->key), &v, &vl);
    if (rc == 0 && challenge_decode(v, vl, rec) != 0)
        rc = STORE_E_CORRUPT;
    store_reader_end(ctx->reader);
    return rc;
}

/* enroll_onetime_check; *store_rc gets the read's error when the store did not answer
 * (then REJ_INTERNAL: no verdict). */
static int onetime_check(const enroll_ctx *ctx, job *j, const profile *prof, X509_REQ *csr,
                         int *store_rc)
{
    enroll_state *st = enroll_state_of(j);
    if (st == NULL)
        return REJ_INTERNAL;
    st->have_rec = 0;
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
    int rc = read_record(ctx, st, &st->rec);
    if (rc == STORE_NOTFOUND)
        return REJ_CHAL_WRONG;
    if (enroll_store_lost(rc))
        *store_rc = rc;
    if (rc != 0)
        return REJ_INTERNAL;
    st->have_rec = 1;
    return challenge_reject_code(verify(st, &st->rec));
}

int enroll_onetime_check(const enroll_ctx *ctx, job *j, const profile *prof, X509_REQ *csr)
{
    int store_rc = 0;
    return onetime_check(ctx, j, prof, csr, &store_rc);
}

int enroll_onetime_phase(const enroll_ctx *ctx, job *j, const scep_request *req,
                         const profile *prof, X509_REQ *csr, int *answered)
{
    int store_rc = 0;
    int rej = onetime_check(ctx, j, prof, csr, &store_rc);
    *answered = 0;
    if (store_rc != 0) {
        enroll_store_unavailable(ctx, j, req, "one-time challenge lookup", store_rc);
        *answered = 1;
        rej = REJ_NONE;
    }
    return rej;
}

void enroll_onetime_guard(job *j)
{
    enroll_state *st = j->pki.state;
    store_put *p = &j->put;
    p->cond_db = STORE_DB_CHALLENGES;
    p->cond_key = st->key;
    p->cond_key_len = sizeof(st->key);
    p->cond = onetime_update;
    p->cond_arg = st;
    j->pki.chal_consumed = 1;
}
