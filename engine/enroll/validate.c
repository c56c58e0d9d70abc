/* The MDM step of a PKCSReq (validate.h): the static challenge of a multi-kind profile, then
 * the facts for Intune or the webhook, then, on the pass after the stage answered, the
 * verdict. Runs on a crypto worker. */
#include "engine/enroll/validate.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include "engine/enroll/enroll_internal.h"
#include "engine/policy/issue.h"
#include "engine/scep/reject.h"

#define OID_UPN "1.3.6.1.4.1.311.20.2.3"

static void facts_free(void *p)
{
    enroll_mdm_facts *f = p;
    if (f == NULL)
        return;
    OPENSSL_cleanse(f->challenge, sizeof(f->challenge));
    free(f->csr);
    for (size_t i = 0; i < ENROLL_MDM_SANS; i++)
        free(f->sans[i]);
    free(f);
}

/* The CSR's challengePassword as text ("" when absent or not a string). */
static void csr_challenge(X509_REQ *csr, char *out, size_t outlen)
{
    int idx = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    X509_ATTRIBUTE *a = idx >= 0 ? X509_REQ_get_attr(csr, idx) : NULL;
    ASN1_TYPE *t = a != NULL && X509_ATTRIBUTE_count(a) == 1 ? X509_ATTRIBUTE_get0_type(a, 0)
                                                             : NULL;
    out[0] = '\0';
    if (t == NULL || (t->type != V_ASN1_PRINTABLESTRING && t->type != V_ASN1_UTF8STRING &&
                      t->type != V_ASN1_IA5STRING && t->type != V_ASN1_T61STRING))
        return;
    int n = t->value.asn1_string->length;
    if (n > 0 && (size_t)n < outlen) {
        memcpy(out, t->value.asn1_string->data, (size_t)n);
        out[n] = '\0';
    }
}

/* One SAN as "type:value" (malloc'd), NULL for a type the facts do not report. */
static char *san_text(const GENERAL_NAME *g)
{
    const char *tag = NULL;
    const ASN1_STRING *s = NULL;
    char ip[INET6_ADDRSTRLEN], *out = NULL;

    switch (g->type) {
    case GEN_DNS:   tag = "dns";   s = g->d.dNSName; break;
    case GEN_EMAIL: tag = "email"; s = g->d.rfc822Name; break;
    case GEN_URI:   tag = "uri";   s = g->d.uniformResourceIdentifier; break;
    case GEN_IPADD:
        s = g->d.iPAddress;
        if (s->length == 4 || s->length == 16) {
            if (inet_ntop(s->length == 4 ? AF_INET : AF_INET6, s->data, ip, sizeof(ip)) == NULL)
                return NULL;
            size_t n = strlen(ip) + 4;
            if ((out = malloc(n)) != NULL)
                snprintf(out, n, "ip:%s", ip);
        }
        return out;
    case GEN_OTHERNAME: {
        char oid[64];
        if (OBJ_obj2txt(oid, sizeof(oid), g->d.otherName->type_id, 1) <= 0 ||
            strcmp(oid, OID_UPN) != 0 || g->d.otherName->value->type != V_ASN1_UTF8STRING)
            return NULL;
        tag = "upn";
        s = g->d.otherName->value->value.utf8string;
        break;
    }
    default:
        return NULL;
    }
    size_t n = strlen(tag) + 1 + (size_t)s->length + 1;
    if (memchr(s->data, '\0', (size_t)s->length) != NULL || (out = malloc(n)) == NULL)
        return NULL;
    snprintf(out, n, "%s:%.*s", tag, s->length, (const char *)s->data);
    return out;
}

/* j's facts for the stage (validate.h). 0 or -1 (out of memory). */
static int keep_facts(job *j, const scep_request *req, const profile *prof, X509_REQ *csr,
                      int kind)
{
    enroll_mdm_facts *f = calloc(1, sizeof(*f));
    GENERAL_NAMES *san = NULL;
    unsigned char *der = NULL;
    int rc = -1;

    if (f == NULL)
        goto out;
    int dl = i2d_X509_REQ(csr, &der);
    if (dl <= 0 || (f->csr = malloc((size_t)dl)) == NULL)
        goto out;
    memcpy(f->csr, der, (size_t)dl);
    f->csr_len = (size_t)dl;
    snprintf(f->txid, sizeof(f->txid), "%s", req->txid);
    snprintf(f->profile, sizeof(f->profile), "%s", prof->name);
    snprintf(f->subject, sizeof(f->subject), "%s", j->pki.subject);
    snprintf(f->peer, sizeof(f->peer), "%s", j->peer);
    csr_challenge(csr, f->challenge, sizeof(f->challenge));
    size_t ns = 0;
    san = issue_requested_san(csr);
    for (int i = 0; san != NULL && i < sk_GENERAL_NAME_num(san) && ns < ENROLL_MDM_SANS; i++) {
        char *t = san_text(sk_GENERAL_NAME_value(san, i));
        if (t != NULL) {
            f->sans[ns] = t;
            f->san_ptrs[ns++] = t;
        }
    }
    f->req = (mdm_request){
        .kind = kind, .txid = f->txid, .profile = f->profile,
        .challenge = f->challenge[0] != '\0' ? f->challenge : NULL,
        .csr_der = f->csr, .csr_len = f->csr_len,
        .subject = f->subject[0] != '\0' ? f->subject : NULL,
        .sans = f->san_ptrs, .san_count = ns,
        .peer = f->peer[0] != '\0' ? f->peer : NULL,
    };
    if (j->pki.mdm.facts_free != NULL)
        j->pki.mdm.facts_free(j->pki.mdm.facts);
    j->pki.mdm.facts = f;
    j->pki.mdm.facts_free = facts_free;
    f = NULL;
    rc = 0;
out:
    OPENSSL_free(der);
    GENERAL_NAMES_free(san);
    facts_free(f);
    return rc;
}

int enroll_mdm_reject(int diag)
{
    return diag == MDM_DIAG_DENIED ? REJ_MDM_DENIED
         : diag == MDM_DIAG_TIMEOUT ? REJ_MDM_TIMEOUT : REJ_MDM_UNAVAILABLE;
}

uint32_t enroll_mdm_hresult(int rej)
{
    switch (rej) {
    case REJ_KEY_TYPE:       return 0x80094811u;   /* CERTSRV_E_KEY_LENGTH */
    case REJ_SAN_TYPE:
    case REJ_UPN_REQUIRED:   return 0x80094803u;   /* CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED */
    case REJ_EMPTY_SUBJECT:
    case REJ_SUBJECT_LENGTH:
    case REJ_SUBJECT_CHARS:
    case REJ_KEY_USAGE:
    case REJ_VALIDITY_REQUEST:
    case REJ_BEYOND_CA:      return 0x80094001u;   /* CERTSRV_E_BAD_REQUESTSUBJECT */
    case REJ_NONE:           return 0x80094006u;   /* CERTSRV_E_SERVER_SUSPENDED: HSM */
    default:                 return 0x80004005u;   /* E_FAIL */
    }
}

/* Audits the verdict once (MDM_ALLOWED / MDM_DENIED), before the request's own events. */
static void audit_verdict(const enroll_ctx *ctx, job *j, const scep_request *req)
{
    job_mdm *m = &j->pki.mdm;
    const char *which = m->kind == MDM_INTUNE ? "intune" : "webhook";
    char detail[sizeof(m->detail) + 16];
    snprintf(detail, sizeof(detail), "%s%s%s", which, m->detail[0] != '\0' ? ": " : "",
             m->detail);
    int allowed = m->result == MDM_ALLOW;
    audit_fields f = {
        .diag = allowed ? NULL : mdm_diag_code(m->diag),
        .txid = req->txid, .profile = j->profile, .subject = j->pki.subject,
        .peer = j->peer, .detail = detail,
        .failinfo = allowed ? -1 : reject_failinfo(enroll_mdm_reject(m->diag)),
    };
    audit_emit(ctx->audit, allowed ? AUDIT_MDM_ALLOWED : AUDIT_MDM_DENIED, &f);
}

int enroll_validate(const enroll_ctx *ctx, job *j, const scep_request *req, const profile *prof,
                    X509_REQ *csr, int renewal, const char **detail, int *next)
{
    job_mdm *m = &j->pki.mdm;
    unsigned set = PROFILE_CHALLENGES(prof);
    int kind = prof->challenge == PROFILE_CHALLENGE_INTUNE ? MDM_INTUNE
             : prof->challenge == PROFILE_CHALLENGE_WEBHOOK ? MDM_WEBHOOK : 0;

    *next = -1;
    if (renewal)
        return REJ_NONE;
    /* A multi-kind profile: the static challenge first (nothing is consumed by trying it). */
    if ((set & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_STATIC)) &&
        prof->challenge != PROFILE_CHALLENGE_STATIC &&
        (m->static_ok || issue_static_challenge(ctx->issuer, prof, csr) == REJ_NONE)) {
        m->static_ok = 1;
        return REJ_NONE;
    }
    if (kind == 0)
        return REJ_NONE;
    if (!m->done) {
        if (keep_facts(j, req, prof, csr, kind) != 0)
            return REJ_INTERNAL;
        m->kind = kind;
        *next = JOB_VALIDATE;
        return REJ_NONE;
    }
    if (m->done == 1) {           /* the first pass after the verdict */
        audit_verdict(ctx, j, req);
        m->done = 2;
    }
    if (m->result != MDM_ALLOW) {
        *detail = m->detail[0] != '\0' ? m->detail : mdm_diag_code(m->diag);
        return enroll_mdm_reject(m->diag);
    }
    /* Intune: successNotification after the commit. Should Intune not acknowledge it, the
     * certificate is revoked and the job comes back to a worker for its CertRep FAILURE
     * (enroll_notify_failed): nothing is signed in advance. */
    m->notify = kind == MDM_INTUNE;
    return REJ_NONE;
}
