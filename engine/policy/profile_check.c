/* Certificate profiles: the per-request decisions (key, hash, cipher, SAN, subject, validity,
 * renewal window and binding), the choice of a profile by requested keyUsage, and the
 * extensions a profile puts in an issued certificate. Pure functions of a loaded profile; see profile.h. */
#include "engine/policy/profile.h"
#include "engine/policy/profile_internal.h"

#include "engine/policy/challenge.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

static unsigned effective_ku(const profile *p, EVP_PKEY *key)
{
    return profile_key_usage_for(p, EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA);
}

unsigned profile_key_usage_for(const profile *p, int rsa_key)
{
    unsigned ku = p->key_usage;
    if (rsa_key)
        ku &= ~(unsigned)PROFILE_KU_KEY_AGREEMENT;
    else
        ku &= ~(unsigned)(PROFILE_KU_KEY_ENCIPHERMENT | PROFILE_KU_DATA_ENCIPHERMENT);
    return ku;
}

int profile_check_key(const profile *p, EVP_PKEY *pub)
{
    int rc = PROFILE_KEY_TYPE;
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(pub);
        if (!(p->key_types & PROFILE_KEY_RSA))
            goto out;
        rc = PROFILE_KEY_SIZE;
        if (bits < p->rsa_min_bits || bits > p->rsa_max_bits)
            goto out;
        break;
    }
    case EVP_PKEY_EC: {
        char group[64];
        size_t glen = 0;
        if (!(p->key_types & PROFILE_KEY_EC))
            goto out;
        rc = PROFILE_KEY_CURVE;
        if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen) != 1 ||
            !(p->ec_curves & profile_curve_bit(group)))
            goto out;
        break;
    }
    default:
        goto out;
    }
    rc = PROFILE_KEY_USAGE;
    if (p->key_usage != 0 && effective_ku(p, pub) == 0)
        goto out;
    rc = PROFILE_OK;
out:
    ERR_clear_error();
    return rc;
}

int profile_check_hash(const profile *p, int md_nid)
{
    unsigned bit;
    switch (md_nid) {
    case NID_sha1: bit = PROFILE_HASH_SHA1; break;
    case NID_sha224: bit = PROFILE_HASH_SHA224; break;
    case NID_sha256: bit = PROFILE_HASH_SHA256; break;
    case NID_sha384: bit = PROFILE_HASH_SHA384; break;
    case NID_sha512: bit = PROFILE_HASH_SHA512; break;
    default: return PROFILE_HASH;
    }
    return (p->hashes & bit) ? PROFILE_OK : PROFILE_HASH;
}

int profile_check_cipher(const profile *p, int cipher_nid)
{
    return cipher_nid == NID_des_cbc && !p->allow_des ? PROFILE_CIPHER_DES : PROFILE_OK;
}

int profile_set_allows_des(const profile_set *s)
{
    size_t n = 0;
    const profile *items = profile_set_items(s, &n);
    for (size_t i = 0; i < n; i++)
        if (items[i].allow_des)
            return 1;
    return 0;
}

int profile_set_allows_des_for(const profile_set *s, const char *name)
{
    size_t n = 0;
    const profile *items = profile_set_items(s, &n);
    const profile *p = name != NULL && name[0] != '\0'
                           ? profile_set_find(s, name, strlen(name))
                           : profile_select_for_key_usage(items, n, 0);
    return p != NULL && profile_check_cipher(p, NID_des_cbc) == PROFILE_OK;
}

int profile_check_san(const profile *p, const GENERAL_NAMES *san)
{
    unsigned present = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        unsigned bit;
        switch (gn->type) {
        case GEN_DNS: bit = PROFILE_SAN_DNS; break;
        case GEN_EMAIL: bit = PROFILE_SAN_EMAIL; break;
        case GEN_URI: bit = PROFILE_SAN_URI; break;
        case GEN_IPADD: bit = PROFILE_SAN_IP; break;
        case GEN_OTHERNAME:
            if (OBJ_obj2nid(gn->d.otherName->type_id) != NID_ms_upn)
                return PROFILE_SAN_TYPE;
            if (gn->d.otherName->value == NULL ||
                gn->d.otherName->value->type != V_ASN1_UTF8STRING)
                return PROFILE_SAN_INVALID;
            bit = PROFILE_SAN_UPN;
            break;
        default:
            return PROFILE_SAN_TYPE;
        }
        if (!(p->san_types & bit))
            return PROFILE_SAN_TYPE;
        present |= bit;
    }
    unsigned missing = p->san_required & ~present;
    if (missing != 0)
        return (missing & PROFILE_SAN_UPN) ? PROFILE_SAN_UPN_REQUIRED : PROFILE_SAN_TYPE;
    return PROFILE_OK;
}

static int chars_ok(const profile *p, const unsigned char *s, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        switch (p->subject_chars) {
        case PROFILE_CHARS_ANY:
            return 1;
        case PROFILE_CHARS_ASCII:
            if (c < 0x20 || c > 0x7e)
                return 0;
            break;
        case PROFILE_CHARS_PRINTABLE:
            if (!isalnum(c) && strchr(" '()+,-./:=?", c) == NULL)
                return 0;
            break;
        }
    }
    return 1;
}

int profile_check_subject(const profile *p, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    int n = subject != NULL ? X509_NAME_entry_count(subject) : 0;
    if (n == 0)
        return sk_GENERAL_NAME_num(san) > 0 ? PROFILE_OK : PROFILE_SUBJECT_EMPTY;
    for (int i = 0; i < n; i++) {
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, v);
        int rc = PROFILE_OK;
        if (len < 0)
            rc = PROFILE_SUBJECT_CHARS;
        else if (p->subject_max_length > 0 && len > p->subject_max_length)
            rc = PROFILE_SUBJECT_LENGTH;
        else if (!chars_ok(p, utf8, len))
            rc = PROFILE_SUBJECT_CHARS;
        OPENSSL_free(utf8);
        ERR_clear_error();
        if (rc != PROFILE_OK)
            return rc;
    }
    return PROFILE_OK;
}

int profile_validity(const profile *p, time_t now, int64_t ca_not_after,
                     int64_t requested_not_after, int64_t *not_after_out, int *capped_out)
{
    int64_t t = (int64_t)now + (int64_t)p->validity_days * 86400;
    int capped = 0;
    if (ca_not_after <= (int64_t)now)
        return PROFILE_CA_EXPIRED;
    if (requested_not_after != 0 && p->allow_shorter) {
        if (requested_not_after <= (int64_t)now)
            return PROFILE_VALIDITY_REQUEST;
        if (requested_not_after < t)
            t = requested_not_after;
    }
    if (t > ca_not_after) {
        if (p->beyond_ca == PROFILE_BEYOND_CA_REFUSE)
            return PROFILE_BEYOND_CA;
        t = ca_not_after;
        capped = 1;
    }
    *not_after_out = t;
    if (capped_out != NULL)
        *capped_out = capped;
    return PROFILE_OK;
}

static int64_t time_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    return (int64_t)timegm(&tm);
}

int profile_requested_not_after(X509_REQ *csr, int64_t *out)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    int crit = 0, rc = -1;
    PKEY_USAGE_PERIOD *pup = X509V3_get_d2i(exts, NID_private_key_usage_period, &crit, NULL);
    if (pup == NULL) {
        if (crit == -1) {       /* absent */
            *out = 0;
            rc = 0;
        }
        goto out;
    }
    if (pup->notAfter != NULL) {
        int64_t t = time_epoch(pup->notAfter);
        if (t > 0) {
            *out = t;
            rc = 0;
        }
    }
out:
    PKEY_USAGE_PERIOD_free(pup);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return rc;
}

int profile_renewal_allowed(const profile *p, time_t now, int64_t old_not_before,
                            int64_t old_not_after)
{
    if ((int64_t)now >= old_not_after || old_not_after <= old_not_before)
        return PROFILE_RENEWAL_EXPIRED;
    /* 128-bit-free arithmetic: lifetimes are far below 2^63 / 100. */
    int64_t lifetime = old_not_after - old_not_before;
    int64_t window = lifetime / 100 * p->renewal_threshold_percent +
                     lifetime % 100 * p->renewal_threshold_percent / 100;
    return (int64_t)now >= old_not_after - window ? PROFILE_OK : PROFILE_RENEWAL_EARLY;
}

int profile_check_renewal(const profile *p, const char *old_profile,
                          const X509_NAME *old_subject, const GENERAL_NAMES *old_san,
                          const X509_NAME *csr_subject, const GENERAL_NAMES *csr_san)
{
    const char *old = old_profile[0] != '\0' ? old_profile : PROFILE_LEGACY_NAME;
    int lane = strcmp(p->name, old) == 0;
    for (int i = 0; i < p->renew_from_count && !lane; i++)
        lane = strcmp(p->renew_from[i], old) == 0;
    if (!lane)
        return PROFILE_RENEWAL_PROFILE;
    int keep_subject = p->subject_source != PROFILE_SOURCE_OVERRIDE &&
                       !(p->renew_may_change & PROFILE_RENEW_SUBJECT);
    int keep_san = p->san_source != PROFILE_SOURCE_OVERRIDE &&
                   !(p->renew_may_change & PROFILE_RENEW_SAN);
    if (keep_subject && (old_subject == NULL || csr_subject == NULL ||
                         X509_NAME_cmp(old_subject, csr_subject) != 0))
        return PROFILE_RENEWAL_SUBJECT;
    if (keep_san && !challenge_same_names(old_san, csr_san))
        return PROFILE_RENEWAL_SAN;
    return PROFILE_OK;
}

unsigned profile_requested_key_usage(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    ASN1_BIT_STRING *ku = X509V3_get_d2i(exts, NID_key_usage, NULL, NULL);
    unsigned out = 0;
    if (ku != NULL) {
        if (ASN1_BIT_STRING_get_bit(ku, 0)) out |= PROFILE_KU_DIGITAL_SIGNATURE;
        if (ASN1_BIT_STRING_get_bit(ku, 1)) out |= PROFILE_KU_NON_REPUDIATION;
        if (ASN1_BIT_STRING_get_bit(ku, 2)) out |= PROFILE_KU_KEY_ENCIPHERMENT;
        if (ASN1_BIT_STRING_get_bit(ku, 3)) out |= PROFILE_KU_DATA_ENCIPHERMENT;
        if (ASN1_BIT_STRING_get_bit(ku, 4)) out |= PROFILE_KU_KEY_AGREEMENT;
    }
    ASN1_BIT_STRING_free(ku);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return out;
}

const profile *profile_select_for_key_usage(const profile *profiles, size_t n,
                                            unsigned requested_ku_bits)
{
    const unsigned sig = PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_NON_REPUDIATION;
    const unsigned enc = PROFILE_KU_KEY_ENCIPHERMENT | PROFILE_KU_DATA_ENCIPHERMENT |
                         PROFILE_KU_KEY_AGREEMENT;
    enum profile_template want = PROFILE_TEMPLATE_GENERAL;
    const profile *deflt = NULL, *general = NULL;

    if ((requested_ku_bits & sig) && !(requested_ku_bits & enc))
        want = PROFILE_TEMPLATE_SIGNATURE;
    else if ((requested_ku_bits & enc) && !(requested_ku_bits & sig))
        want = PROFILE_TEMPLATE_ENCRYPTION;
    for (size_t i = 0; i < n; i++) {
        if (want != PROFILE_TEMPLATE_GENERAL && profiles[i].template_class == want)
            return &profiles[i];
        if (strcmp(profiles[i].name, "default") == 0)
            deflt = &profiles[i];
        else if (general == NULL && profiles[i].template_class == PROFILE_TEMPLATE_GENERAL)
            general = &profiles[i];
    }
    return deflt != NULL ? deflt : general;
}

static int add_nid(X509 *x, int nid, int crit, void *value)
{
    return X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_REPLACE) == 1;
}

/* basicConstraints (critical CA:FALSE), keyUsage (critical), extendedKeyUsage and
 * certificatePolicies: the extensions the profile and the key's type alone decide (the DER
 * path of issue_der.c encodes them once per profile: profile_fixed_extensions_der). 1 or 0. */
static int add_fixed(const profile *p, X509 *cert, int rsa_key)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    CERTIFICATEPOLICIES *pol = sk_POLICYINFO_new_null();
    int ok = 0;

    if (bc == NULL || ku == NULL || eku == NULL || pol == NULL)
        goto out;
    bc->ca = 0;
#ifdef SCEPD_MUTANT_CA_TRUE   /* test-only breakage, docs/testing-mutants.md */
    bc->ca = 0xff;
#endif
    if (!add_nid(cert, NID_basic_constraints, 1, bc))
        goto out;

    unsigned bits = profile_key_usage_for(p, rsa_key);
    if (bits != 0) {
        static const unsigned map[] = { PROFILE_KU_DIGITAL_SIGNATURE, PROFILE_KU_NON_REPUDIATION,
                                        PROFILE_KU_KEY_ENCIPHERMENT, PROFILE_KU_DATA_ENCIPHERMENT,
                                        PROFILE_KU_KEY_AGREEMENT };
        for (int i = 0; i < 5; i++)
            if ((bits & map[i]) && !ASN1_BIT_STRING_set_bit(ku, i, 1))
                goto out;
        if (!add_nid(cert, NID_key_usage, 1, ku))
            goto out;
    }
    for (int i = 0; i < p->eku_count; i++) {
        ASN1_OBJECT *o = OBJ_txt2obj(p->eku[i], 1);
        if (o == NULL || !sk_ASN1_OBJECT_push(eku, o)) {
            ASN1_OBJECT_free(o);
            goto out;
        }
    }
    if (p->eku_count > 0 && !add_nid(cert, NID_ext_key_usage, 0, eku))
        goto out;
    for (int i = 0; i < p->policy_count; i++) {
        POLICYINFO *pi = POLICYINFO_new();
        if (pi == NULL)
            goto out;
        ASN1_OBJECT_free(pi->policyid);
        pi->policyid = OBJ_txt2obj(p->policy[i], 1);
        if (pi->policyid == NULL || !sk_POLICYINFO_push(pol, pi)) {
            POLICYINFO_free(pi);
            goto out;
        }
    }
    if (p->policy_count > 0 && !add_nid(cert, NID_certificate_policies, 0, pol))
        goto out;
    ok = 1;
out:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    sk_POLICYINFO_pop_free(pol, POLICYINFO_free);
    return ok;
}

/* SKI: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1), taken from the
 * certificate when it has them already (no re-encoding of subject_key). 1 or 0. */
static int add_ski(X509 *cert, EVP_PKEY *subject_key)
{
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    const ASN1_BIT_STRING *kbits = X509_get0_pubkey_bitstr(cert);
    X509_PUBKEY *xpk = NULL;
    const unsigned char *pk = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int pklen = 0, ok = 0;

    if (ski == NULL)
        goto out;
    if (kbits != NULL && kbits->length > 0) {
        pk = kbits->data;
        pklen = kbits->length;
    } else if (!X509_PUBKEY_set(&xpk, subject_key) ||
               X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, xpk) != 1) {
        goto out;
    }
    ok = EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) == 1 &&
         ASN1_OCTET_STRING_set(ski, md, (int)mdlen) &&
         add_nid(cert, NID_subject_key_identifier, 0, ski);
out:
    X509_PUBKEY_free(xpk);
    ASN1_OCTET_STRING_free(ski);
    return ok;
}

/* AKI: keyIdentifier only, the CA's SKI, else the SHA-1 of its key. 1 or 0. */
static int add_aki(X509 *cert, X509 *ca)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = 0;

    if (akid == NULL)
        goto out;
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca);
    if (ca_ski != NULL) {
        akid->keyid = ASN1_OCTET_STRING_dup(ca_ski);
    } else if (X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen) == 1) {
        akid->keyid = ASN1_OCTET_STRING_new();
        if (akid->keyid != NULL && !ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen))
            goto out;
    }
    ok = akid->keyid != NULL && add_nid(cert, NID_authority_key_identifier, 0, akid);
out:
    AUTHORITY_KEYID_free(akid);
    return ok;
}

int profile_add_extensions(const profile *p, X509 *cert, X509 *ca, EVP_PKEY *subject_key,
                           const GENERAL_NAMES *san)
{
    int rc = profile_check_san(p, san);
    if (rc != PROFILE_OK)
        goto out;
    rc = PROFILE_INTERNAL;
    if (!add_fixed(p, cert, EVP_PKEY_get_base_id(subject_key) == EVP_PKEY_RSA) ||
        !add_ski(cert, subject_key) || !add_aki(cert, ca))
        goto out;
    if (sk_GENERAL_NAME_num(san) > 0) {
        int crit = X509_NAME_entry_count(X509_get_subject_name(cert)) == 0;
        if (!add_nid(cert, NID_subject_alt_name, crit, (void *)san))
            goto out;
    }
    rc = PROFILE_OK;
out:
    ERR_clear_error();
    return rc;
}

/* The extensions of x, each a whole DER Extension, back to back in a malloc()ed buffer. */
static int extensions_der(const X509 *x, uint8_t **out, size_t *outlen)
{
    const STACK_OF(X509_EXTENSION) *exts = X509_get0_extensions(x);
    size_t total = 0;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        int n = i2d_X509_EXTENSION(sk_X509_EXTENSION_value(exts, i), NULL);
        if (n <= 0)
            return -1;
        total += (size_t)n;
    }
    uint8_t *b = malloc(total > 0 ? total : 1), *w = b;
    if (b == NULL)
        return -1;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        if (i2d_X509_EXTENSION(sk_X509_EXTENSION_value(exts, i), &w) <= 0) {
            free(b);
            return -1;
        }
    }
    *out = b;
    *outlen = total;
    return 0;
}

int profile_fixed_extensions_der(const profile *p, int rsa_key, uint8_t **out, size_t *outlen)
{
    X509 *x = X509_new();
    int rc = x != NULL && add_fixed(p, x, rsa_key) ? extensions_der(x, out, outlen) : -1;
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int profile_aki_extension_der(X509 *ca, uint8_t **out, size_t *outlen)
{
    X509 *x = X509_new();
    int rc = x != NULL && add_aki(x, ca) ? extensions_der(x, out, outlen) : -1;
    X509_free(x);
    ERR_clear_error();
    return rc;
}
