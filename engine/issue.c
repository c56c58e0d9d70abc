/* Request checks and certificate construction. See issue.h. */
#include "engine/issue.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/reject.h"

struct issuer {
    const ca_set *ca;
    int validity_days;
    int backdate_s;
    int allow_sha1;
    uint8_t challenge_hash[32];
    int has_challenge;
    const EVP_MD *sign_md;
    X509_EXTENSION *bc, *ku_rsa, *ku_ec, *eku, *aki;   /* constant for this CA */
    X509_EXTENSION *cdp, *aia;     /* [issue] crl_url / ocsp_url; NULL when not set */
};

void issuer_destroy(issuer *is)
{
    if (is == NULL)
        return;
    X509_EXTENSION_free(is->bc);
    X509_EXTENSION_free(is->ku_rsa);
    X509_EXTENSION_free(is->ku_ec);
    X509_EXTENSION_free(is->eku);
    X509_EXTENSION_free(is->aki);
    X509_EXTENSION_free(is->cdp);
    X509_EXTENSION_free(is->aia);
    OPENSSL_cleanse(is->challenge_hash, sizeof(is->challenge_hash));
    free(is);
}

static X509_EXTENSION *conf_ext(X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    ERR_clear_error();
    return e;
}

/* AKI = the CA's subjectKeyIdentifier (or, for a CA without one, the SHA-1 of its public key
 * bits, as RFC 5280 4.2.1.2 method 1 computes it). */
static X509_EXTENSION *make_aki(X509 *ca)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_OCTET_STRING *kid = NULL;
    X509_EXTENSION *e = NULL;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (akid == NULL)
        goto out;
    if (ski != NULL) {
        kid = ASN1_OCTET_STRING_dup(ski);
    } else if (X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen) == 1) {
        kid = ASN1_OCTET_STRING_new();
        if (kid != NULL && !ASN1_OCTET_STRING_set(kid, md, (int)mdlen)) {
            ASN1_OCTET_STRING_free(kid);
            kid = NULL;
        }
    }
    if (kid == NULL)
        goto out;
    akid->keyid = kid;
    e = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
out:
    AUTHORITY_KEYID_free(akid);
    ERR_clear_error();
    return e;
}

int issuer_create(const config *cfg, const ca_set *ca, const char *challenge, issuer **out)
{
    issuer *is = calloc(1, sizeof(*is));
    X509V3_CTX ctx;
    int rc = -1;

    if (is == NULL)
        goto out;
    is->ca = ca;
    is->validity_days = cfg->validity_days;
    is->backdate_s = cfg->backdate_s;
    is->allow_sha1 = cfg->allow_sha1;
    if (challenge != NULL && challenge[0] != '\0') {
        if (EVP_Digest(challenge, strlen(challenge), is->challenge_hash, NULL, EVP_sha256(), NULL) != 1)
            goto out;
        is->has_challenge = 1;
    }
    /* P-384 CA keys sign with SHA-384, everything else with SHA-256. */
    is->sign_md = EVP_sha256();
    if (EVP_PKEY_get_bits(ca->ca_key) == 384 && EVP_PKEY_get_base_id(ca->ca_key) == EVP_PKEY_EC)
        is->sign_md = EVP_sha384();

    X509V3_set_ctx(&ctx, ca->ca_cert, NULL, NULL, NULL, 0);
    is->bc = conf_ext(&ctx, NID_basic_constraints, "critical,CA:FALSE");
    is->ku_rsa = conf_ext(&ctx, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    is->ku_ec = conf_ext(&ctx, NID_key_usage, "critical,digitalSignature");
    is->eku = conf_ext(&ctx, NID_ext_key_usage, "clientAuth");
    is->aki = make_aki(ca->ca_cert);
    if (is->bc == NULL || is->ku_rsa == NULL || is->ku_ec == NULL || is->eku == NULL ||
        is->aki == NULL)
        goto out;
    /* Where relying parties find revocation status (RFC 5280 4.2.1.13, 4.2.2.1). */
    char v[600];
    if (cfg->crl_url[0] != '\0') {
        snprintf(v, sizeof(v), "URI:%s", cfg->crl_url);
        if ((is->cdp = conf_ext(&ctx, NID_crl_distribution_points, v)) == NULL)
            goto out;
    }
    if (cfg->ocsp_url[0] != '\0') {
        snprintf(v, sizeof(v), "OCSP;URI:%s", cfg->ocsp_url);
        if ((is->aia = conf_ext(&ctx, NID_info_access, v)) == NULL)
            goto out;
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = is;
        is = NULL;
    }
    issuer_destroy(is);
    return rc;
}

static int digest_nid_allowed(int nid, int allow_sha1)
{
    return nid == NID_sha256 || nid == NID_sha384 || nid == NID_sha512 ||
           (allow_sha1 && nid == NID_sha1);
}

static int key_allowed(EVP_PKEY *pk)
{
    int bits = EVP_PKEY_get_bits(pk);
    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
        return bits >= 2048 && bits <= 4096;
    case EVP_PKEY_EC: {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen) != 1)
            return 0;
        return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
               strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0;
    }
    default:
        return 0;
    }
}

/* Constant-time comparison of the request's challengePassword with the configured one:
 * both are hashed, so neither content nor length shapes the timing. */
static int challenge_ok(const issuer *is, X509_REQ *csr)
{
    int idx = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    if (idx < 0 || !is->has_challenge)
        return 0;
    X509_ATTRIBUTE *a = X509_REQ_get_attr(csr, idx);
    ASN1_TYPE *t = a != NULL && X509_ATTRIBUTE_count(a) == 1 ? X509_ATTRIBUTE_get0_type(a, 0) : NULL;
    if (t == NULL)
        return 0;
    switch (t->type) {
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_UTF8STRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_T61STRING:
        break;
    default:
        return 0;
    }
    uint8_t h[32];
    if (EVP_Digest(t->value.asn1_string->data, (size_t)t->value.asn1_string->length, h, NULL,
                   EVP_sha256(), NULL) != 1)
        return 0;
    return CRYPTO_memcmp(h, is->challenge_hash, sizeof(h)) == 0;
}

static int san_allowed(const GENERAL_NAMES *names)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        switch (gn->type) {
        case GEN_DNS:
        case GEN_EMAIL:
        case GEN_URI:
            break;
        case GEN_OTHERNAME:
            if (OBJ_obj2nid(gn->d.otherName->type_id) != NID_ms_upn ||
                gn->d.otherName->value->type != V_ASN1_UTF8STRING)
                return 0;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* Checks the requested extensions: CA:TRUE refused, SAN types filtered. Nothing is copied
 * here; issue_build takes only the SAN again. */
static int check_extensions(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    int rc = REJ_NONE;

    for (int i = 0; i < sk_X509_EXTENSION_num(exts) && rc == REJ_NONE; i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
        if (nid == NID_basic_constraints) {
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
            if (bc == NULL || bc->ca)
                rc = REJ_CA_REQUESTED;
            BASIC_CONSTRAINTS_free(bc);
        } else if (nid == NID_subject_alt_name) {
            GENERAL_NAMES *gns = X509V3_EXT_d2i(e);
            if (gns == NULL || !san_allowed(gns))
                rc = REJ_SAN_TYPE;
            GENERAL_NAMES_free(gns);
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return rc;
}

static GENERAL_NAMES *requested_san(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    GENERAL_NAMES *gns = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return gns;
}

int issue_check_csr(const issuer *is, const uint8_t *der, size_t len, int need_challenge,
                    X509_REQ **out)
{
    const unsigned char *p = der;
    X509_REQ *csr = d2i_X509_REQ(NULL, &p, (long)len);
    int rc = REJ_BAD_CSR, md_nid = NID_undef, pk_nid = NID_undef;

    if (csr == NULL || p != der + len)
        goto out;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(csr);
    if (pub == NULL)
        goto out;
    rc = REJ_KEY_TYPE;
    if (!key_allowed(pub))
        goto out;
    rc = REJ_CSR_SIG_ALG;
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(csr), &md_nid, &pk_nid) ||
        !digest_nid_allowed(md_nid, is->allow_sha1))
        goto out;
    rc = REJ_POP;
    if (X509_REQ_verify(csr, pub) != 1)
        goto out;
    rc = check_extensions(csr);
    if (rc != REJ_NONE)
        goto out;
    if (X509_NAME_entry_count(X509_REQ_get_subject_name(csr)) == 0) {
        GENERAL_NAMES *gns = requested_san(csr);
        int n = sk_GENERAL_NAME_num(gns);
        GENERAL_NAMES_free(gns);
        rc = REJ_EMPTY_SUBJECT;
        if (n <= 0)
            goto out;
    }
    if (need_challenge) {
        rc = is->has_challenge ? REJ_CHALLENGE : REJ_NO_CHALLENGE_SET;
        if (!challenge_ok(is, csr))
            goto out;
    }
    rc = REJ_NONE;
out:
    if (rc == REJ_NONE) {
        *out = csr;
        csr = NULL;
    }
    X509_REQ_free(csr);
    ERR_clear_error();
    return rc;
}

/* 16 random bytes, positive, with the top byte never zero so the DER INTEGER stays 16 bytes
 * long: 126 bits of entropy. */
static ASN1_INTEGER *random_serial(void)
{
    uint8_t b[16];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return NULL;
    b[0] = (uint8_t)((b[0] & 0x3f) | 0x40);
    bn = BN_bin2bn(b, sizeof(b), NULL);
    if (bn != NULL)
        ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    return ai;
}

int issue_build(const issuer *is, X509_REQ *csr, X509 **out)
{
    X509 *x = X509_new();
    ASN1_INTEGER *serial = NULL;
    GENERAL_NAMES *san = NULL;
    X509_EXTENSION *ski = NULL;
    int rc = REJ_INTERNAL;
    time_t now = time(NULL);
    int64_t not_after = (int64_t)now + (int64_t)is->validity_days * 86400;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(csr);

    if (x == NULL || pub == NULL)
        goto out;
    if (is->ca->ca_not_after <= (int64_t)now) {
        rc = REJ_CA_EXPIRED;
        goto out;
    }
    if (not_after > is->ca->ca_not_after)
        not_after = is->ca->ca_not_after;
    serial = random_serial();
    if (serial == NULL || !X509_set_version(x, X509_VERSION_3) ||
        !X509_set_serialNumber(x, serial) ||
        !X509_set_issuer_name(x, is->ca->ca_name) ||
        !X509_set_subject_name(x, X509_REQ_get_subject_name(csr)) ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -(long)is->backdate_s, &now) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL ||
        !X509_set_pubkey(x, pub))
        goto out;

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, is->ca->ca_cert, x, NULL, NULL, 0);
    ski = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    if (ski == NULL)
        goto out;
    X509_EXTENSION *ku = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA ? is->ku_rsa : is->ku_ec;
    if (!X509_add_ext(x, is->bc, -1) || !X509_add_ext(x, ku, -1) ||
        !X509_add_ext(x, is->eku, -1) || !X509_add_ext(x, ski, -1) ||
        !X509_add_ext(x, is->aki, -1) ||
        (is->cdp != NULL && !X509_add_ext(x, is->cdp, -1)) ||
        (is->aia != NULL && !X509_add_ext(x, is->aia, -1)))
        goto out;
    san = requested_san(csr);
    if (san != NULL && sk_GENERAL_NAME_num(san) > 0 &&
        X509_add1_ext_i2d(x, NID_subject_alt_name, san,
                          /* RFC 5280 4.2.1.6: critical when the subject is empty */
                          X509_NAME_entry_count(X509_get_subject_name(x)) == 0,
                          X509V3_ADD_DEFAULT) != 1)
        goto out;
    if (X509_sign(x, is->ca->ca_key, is->sign_md) <= 0)
        goto out;
    rc = REJ_NONE;
out:
    if (rc == REJ_NONE) {
        *out = x;
        x = NULL;
    }
    X509_free(x);
    ASN1_INTEGER_free(serial);
    GENERAL_NAMES_free(san);
    X509_EXTENSION_free(ski);
    ERR_clear_error();
    return rc;
}

int issue_key_hash(EVP_PKEY *pub, uint8_t out[32])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(pub, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok ? 0 : -1;
}

int issue_name_hash(const X509_NAME *name, uint8_t out[32])
{
    const unsigned char *der = NULL;
    size_t n = 0;
    if (X509_NAME_get0_der(name, &der, &n) != 1)
        return -1;
    return EVP_Digest(der, n, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
}
