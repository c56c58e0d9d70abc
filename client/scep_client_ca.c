/* scepc: the CA side a client discovers first: GetCACaps flags and the GetCACert set (CA,
 * RA encryption recipient, RA signer). See scep_client.h. */
#include "client/scep_client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* ---- GetCACaps ---- */

unsigned scepc_parse_caps(const char *text, size_t len)
{
    static const struct { const char *n; unsigned f; } t[] = {
        { "POSTPKIOperation", SCEPC_CAP_POSTPKIOPERATION }, { "SHA-1", SCEPC_CAP_SHA1 },
        { "SHA-256", SCEPC_CAP_SHA256 }, { "SHA-512", SCEPC_CAP_SHA512 },
        { "AES", SCEPC_CAP_AES }, { "DES3", SCEPC_CAP_DES3 },
        { "SCEPStandard", SCEPC_CAP_SCEPSTANDARD }, { "Renewal", SCEPC_CAP_RENEWAL },
        { "GetNextCACert", SCEPC_CAP_GETNEXTCACERT }, { NULL, 0 },
    };
    unsigned flags = 0;
    size_t pos = 0;

    while (text && pos < len) {
        size_t start = pos, end;
        while (pos < len && text[pos] != '\n')
            pos++;
        end = pos++;
        while (start < end && isspace((unsigned char)text[start]))
            start++;
        while (end > start && isspace((unsigned char)text[end - 1]))
            end--;
        for (size_t i = 0; t[i].n; i++)
            if (strlen(t[i].n) == end - start && strncasecmp(t[i].n, text + start, end - start) == 0)
                flags |= t[i].f;
    }
    return flags;
}

/* ---- GetCACert ---- */

struct scepc_caset {
    STACK_OF(X509) *certs;
    X509 *ca, *recipient, *signer;   /* borrowed from certs */
};

void scepc_caset_destroy(scepc_caset *set)
{
    if (!set)
        return;
    sk_X509_pop_free(set->certs, X509_free);
    OPENSSL_free(set);
}

X509 *scepc_caset_ca(const scepc_caset *set) { return set->ca; }
X509 *scepc_caset_recipient(const scepc_caset *set) { return set->recipient; }
X509 *scepc_caset_signer(const scepc_caset *set) { return set->signer; }
STACK_OF(X509) *scepc_caset_certs(const scepc_caset *set) { return set->certs; }

static int issued(X509 *issuer, X509 *subject)
{
    return issuer != subject && X509_check_issued(issuer, subject) == X509_V_OK;
}

static int self_signed(X509 *c)
{
    return X509_NAME_cmp(X509_get_subject_name(c), X509_get_issuer_name(c)) == 0;
}

/* The CA is the CA certificate that issued the RA certificates; failing that the CA that
 * issued no other CA in the set (the one lowest in a chain); failing basicConstraints, the
 * self-signed one or the only one. */
static X509 *pick_ca(STACK_OF(X509) *certs)
{
    int n = sk_X509_num(certs);
    X509 *fallback = NULL;

    for (int i = 0; i < n; i++) {
        X509 *c = sk_X509_value(certs, i);
        if (X509_check_ca(c) <= 0)
            continue;
        for (int j = 0; j < n; j++) {
            X509 *o = sk_X509_value(certs, j);
            if (X509_check_ca(o) <= 0 && issued(c, o))
                return c;
        }
    }
    for (int i = 0; i < n && !fallback; i++) {
        X509 *c = sk_X509_value(certs, i);
        int issues_ca = 0;
        if (X509_check_ca(c) <= 0)
            continue;
        for (int j = 0; j < n; j++) {
            X509 *o = sk_X509_value(certs, j);
            if (X509_check_ca(o) > 0 && issued(c, o))
                issues_ca = 1;
        }
        if (!issues_ca)
            fallback = c;
    }
    for (int i = 0; i < n && !fallback; i++)
        if (self_signed(sk_X509_value(certs, i)))
            fallback = sk_X509_value(certs, i);
    return fallback ? fallback : sk_X509_value(certs, 0);
}

/* A non-CA certificate allowing usage ku; an explicit keyUsage is preferred over none. */
static X509 *pick_ra(STACK_OF(X509) *certs, X509 *ca, uint32_t ku)
{
    X509 *any = NULL;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (c == ca || X509_check_ca(c) > 0)
            continue;
        if (!(X509_get_extension_flags(c) & EXFLAG_KUSAGE)) {
            if (!any)
                any = c;
            continue;
        }
        if (X509_get_key_usage(c) & ku)
            return c;
    }
    return any;
}

int scepc_caset_from_certs(STACK_OF(X509) *certs, scepc_caset **out)
{
    int rc = SCEPC_OK;
    scepc_caset *set = NULL;

    if (!certs || sk_X509_num(certs) == 0)
        return SCEPC_E_CACERT_EMPTY;
    if (!(set = OPENSSL_zalloc(sizeof(*set))) || !(set->certs = X509_chain_up_ref(certs))) {
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    set->ca = pick_ca(set->certs);
    set->recipient = pick_ra(set->certs, set->ca, KU_KEY_ENCIPHERMENT);
    set->signer = pick_ra(set->certs, set->ca, KU_DIGITAL_SIGNATURE);
    if (!set->recipient)
        set->recipient = set->ca;
    if (!set->signer)
        set->signer = set->ca;
    /* With RA certificates present, falling back to a CA whose keyUsage forbids key transport
     * (RSA) and key agreement (EC) would encrypt to a key the server does not decrypt with.
     * A lone CA certificate is used as it is: that is how single-cert servers work. */
    if (set->recipient == set->ca && sk_X509_num(set->certs) > 1
        && (X509_get_extension_flags(set->ca) & EXFLAG_KUSAGE)
        && !(X509_get_key_usage(set->ca) & (KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT))) {
        rc = SCEPC_E_CACERT_NO_RECIPIENT;
        goto out;
    }
out:
    if (rc == SCEPC_OK) {
        *out = set;
        set = NULL;
    }
    scepc_caset_destroy(set);
    return rc;
}

/* Compares the media type of a Content-Type value, ignoring parameters and case. */
static int ctype_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    if (strncasecmp(ctype, want, n) != 0)
        return 0;
    ctype += n;
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    return *ctype == '\0' || *ctype == ';';
}

int scepc_parse_cacert(const uint8_t *body, size_t len, const char *content_type,
                       scepc_caset **out)
{
    int rc = SCEPC_OK;
    int want_single;
    X509 *cert = NULL;
    CMS_ContentInfo *cms = NULL;
    STACK_OF(X509) *certs = NULL;
    const unsigned char *p = body;

    if (!body || len == 0 || len > LONG_MAX)
        return SCEPC_E_CACERT_PARSE;
    if (!content_type)
        want_single = (cert = d2i_X509(NULL, &p, (long)len)) != NULL;
    else if (ctype_is(content_type, "application/x-x509-ca-cert"))
        want_single = 1;
    else if (ctype_is(content_type, "application/x-x509-ca-ra-cert"))
        want_single = 0;
    else
        return SCEPC_E_CACERT_CTYPE;

    if (want_single) {
        if (!cert && !(cert = d2i_X509(NULL, &p, (long)len))) {
            rc = SCEPC_E_CACERT_PARSE;
            goto out;
        }
        if (!(certs = sk_X509_new_null()) || !sk_X509_push(certs, cert)) {
            rc = SCEPC_E_NOMEM;
            goto out;
        }
        cert = NULL;
    } else {
        p = body;
        if (!(cms = d2i_CMS_ContentInfo(NULL, &p, (long)len))
            || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
            rc = SCEPC_E_CACERT_PARSE;
            goto out;
        }
        certs = CMS_get1_certs(cms);
    }
    rc = scepc_caset_from_certs(certs, out);
out:
    X509_free(cert);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    return rc;
}
