/* The one-time-challenge pass of a PKCSReq: the challenge the CSR presents is checked and
 * marked used by the store writer inside its transaction (so two requests cannot both use
 * it), and only after that commit does the worker issue (engine/enroll/pkcsreq.c). */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/policy/issue.h"
#include "engine/scep/reject.h"

/* Writer thread, inside the batch's transaction: look up, verify, mark used. */
static int onetime_update(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
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

int enroll_onetime_put(job *j, const profile *prof, X509_REQ *csr)
{
    enroll_state *st = enroll_state_of(j);
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
    p->update = onetime_update;
    p->update_arg = st;
    j->pki.requeue = 1;
    j->pki.audit_event = AUDIT_CHALLENGE_CONSUMED;
    j->pki.audit_detail = NULL;
    return REJ_NONE;
}
