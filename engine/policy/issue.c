/* Request checks and certificate construction. See issue.h. */
#include "engine/policy/issue.h"
#include "engine/policy/issue_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
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

#include "engine/common/keyclock.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"

static void free_exts(issue_der_exts *e, size_t n)
{
    for (size_t i = 0; e != NULL && i < n; i++)
        issue_der_exts_clear(&e[i]);
    free(e);
}

issuer *issuer_ref(issuer *is)
{
    atomic_fetch_add_explicit(&is->refs, 1, memory_order_relaxed);
    return is;
}

void issuer_destroy(issuer *is)
{
    if (is == NULL || atomic_fetch_sub_explicit(&is->refs, 1, memory_order_acq_rel) > 1)
        return;
    X509_EXTENSION_free(is->cdp);
    X509_EXTENSION_free(is->aia);
    issue_der_destroy(is->der);
    free_exts(is->prof_exts, is->nprofiles);
    OPENSSL_cleanse(is->challenge_hash, sizeof(is->challenge_hash));
    if (is->prof_hash != NULL)
        OPENSSL_cleanse(is->prof_hash, is->nprofiles * sizeof(*is->prof_hash));
    free(is->prof_hash);
    free(is->prof_has);
    profile_set_destroy(is->profiles);
    free(is);
}

static X509_EXTENSION *conf_ext(X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    ERR_clear_error();
    return e;
}

/* Installs set with the static challenge hashes of its profiles. */
static int install_profiles(issuer *is, profile_set *set, char *err, size_t errlen)
{
    size_t n = 0;
    const profile *items = profile_set_items(set, &n);
    uint8_t (*hashes)[32] = calloc(n > 0 ? n : 1, sizeof(*hashes));
    int *has = calloc(n > 0 ? n : 1, sizeof(*has));
    issue_der_exts *exts = is->der != NULL ? calloc(n > 0 ? n : 1, sizeof(*exts)) : NULL;
    char buf[256];
    int rc = -1;

    if (hashes == NULL || has == NULL || (is->der != NULL && exts == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int len = profile_read_challenge(&items[i], buf, sizeof(buf));
        if (len < 0) {
            snprintf(err, errlen, "profile %s: cannot read its challenge", items[i].name);
            goto out;
        }
        if (len > 0) {
            if (EVP_Digest(buf, (size_t)len, hashes[i], NULL, EVP_sha256(), NULL) != 1)
                goto out;
            has[i] = 1;
        }
        if (exts != NULL)
            issue_der_exts_make(&items[i], &exts[i]);
    }
    if (is->prof_hash != NULL)
        OPENSSL_cleanse(is->prof_hash, is->nprofiles * sizeof(*is->prof_hash));
    free(is->prof_hash);
    free(is->prof_has);
    free_exts(is->prof_exts, is->nprofiles);
    profile_set_destroy(is->profiles);
    is->profiles = set;
    is->nprofiles = n;
    is->prof_hash = hashes;
    is->prof_has = has;
    is->prof_exts = exts;
    hashes = NULL;
    has = NULL;
    exts = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    free(hashes);
    free(has);
    free_exts(exts, n);
    return rc;
}

int issuer_set_profiles(issuer *is, profile_set *set, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    return install_profiles(is, set, err, errlen);
}

const profile_set *issuer_profiles(const issuer *is)
{
    return is->profiles;
}

int issuer_create(const config *cfg, const ca_set *ca, const char *challenge, issuer **out)
{
    issuer *is = calloc(1, sizeof(*is));
    profile_set *set = NULL;
    X509V3_CTX ctx;
    char err[64];
    int rc = -1;

    if (is == NULL)
        goto out;
    atomic_init(&is->refs, 1);
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
    /* NULL (a CA key of another type): every certificate on the X509 path. Made before the
     * profiles are installed: they encode their extensions only for a DER path. */
    is->der = issue_der_create(ca, EVP_MD_get0_name(is->sign_md), is->cdp, is->aia);

    /* The built-in profile: what scepd issued before profiles existed. */
    profile builtin;
    profile_defaults(&builtin, "default");
    builtin.validity_days = cfg->validity_days;
    builtin.renewal_threshold_percent = 100;
    if (profile_set_from(&builtin, 1, &set, err, sizeof(err)) != 0 ||
        install_profiles(is, set, err, sizeof(err)) != 0)
        goto out;
    set = NULL;
    rc = 0;
out:
    profile_set_destroy(set);
    if (rc == 0) {
        *out = is;
        is = NULL;
    }
    issuer_destroy(is);
    return rc;
}

/* ---- the slot ---------------------------------------------------------------------------- */

struct issuer_slot {
    issuer *_Atomic cur;
    pthread_mutex_t mu;    /* swaps, and readers moving their pin: never the common path */
};

int issuer_slot_create(issuer *first, issuer_slot **out)
{
    issuer_slot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    atomic_init(&s->cur, first);
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

void issuer_slot_destroy(issuer_slot *s)
{
    if (s == NULL)
        return;
    issuer_destroy(atomic_load(&s->cur));
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void issuer_slot_swap(issuer_slot *s, issuer *next)
{
    pthread_mutex_lock(&s->mu);
    issuer *old = atomic_exchange_explicit(&s->cur, next, memory_order_acq_rel);
    pthread_mutex_unlock(&s->mu);
    issuer_destroy(old);
}

/* The pin keeps the pinned issuer alive, so its address cannot come back as a new issuer
 * while the pin holds it: pointer equality is enough. The lock makes "read the current one
 * and reference it" atomic against a swap dropping the slot's reference. */
const issuer *issuer_slot_get(issuer_slot *s, issuer **pin)
{
    if (atomic_load_explicit(&s->cur, memory_order_acquire) == *pin)
        return *pin;
    pthread_mutex_lock(&s->mu);
    issuer *now = issuer_ref(atomic_load_explicit(&s->cur, memory_order_acquire));
    pthread_mutex_unlock(&s->mu);
    issuer_destroy(*pin);
    *pin = now;
    return now;
}

int issue_profile_reject(int pr)
{
    static const int rows[] = {
#define X(name, rej, detail) [PROFILE_##name] = REJ_##rej,
        PROFILE_RESULTS(X)
#undef X
    };
    return pr >= 0 && pr < PROFILE__COUNT ? rows[pr] : REJ_INTERNAL;
}

/* Constant-time comparison of the request's challengePassword with the expected one: both
 * are hashed, so neither content nor length shapes the timing. */
static int challenge_ok(const uint8_t want[32], X509_REQ *csr)
{
    int idx = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    if (idx < 0)
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
    return CRYPTO_memcmp(h, want, sizeof(h)) == 0;
}

/* basicConstraints CA:TRUE is refused whatever the profile; a SAN extension that does not
 * parse is refused. Nothing is copied from here. */
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
            if (gns == NULL)
                rc = REJ_SAN_TYPE;
            GENERAL_NAMES_free(gns);
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return rc;
}

GENERAL_NAMES *issue_requested_san(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    GENERAL_NAMES *gns = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return gns;
}

static const profile *select_profile(const issuer *is, X509_REQ *csr, const char *name)
{
    size_t n = 0;
    const profile *items = profile_set_items(is->profiles, &n);
    if (name != NULL && name[0] != '\0')
        return profile_set_find(is->profiles, name, strlen(name));
    return profile_select_for_key_usage(items, n, profile_requested_key_usage(csr));
}

int issue_check_challenge(const issuer *is, const profile *prof, X509_REQ *csr)
{
    /* prof->challenge is the kind that decides: a multi-kind profile whose static challenge
     * does not match is decided by its one-time challenge or its MDM. */
    if (prof->challenge != PROFILE_CHALLENGE_STATIC)
        return REJ_NONE;
    return issue_static_challenge(is, prof, csr);
}

int issue_static_challenge(const issuer *is, const profile *prof, X509_REQ *csr)
{
    size_t nitems = 0;
    size_t idx = (size_t)(prof - profile_set_items(is->profiles, &nitems));
    if (idx >= nitems)
        return REJ_INTERNAL;
    const uint8_t *want = is->prof_has[idx] ? is->prof_hash[idx]
                        : is->has_challenge ? is->challenge_hash : NULL;
    if (want == NULL)
        return REJ_NO_CHALLENGE_SET;
    return challenge_ok(want, csr) ? REJ_NONE : REJ_CHALLENGE;
}

EVP_PKEY *issue_csr_key(X509_REQ *csr)
{
    EVP_PKEY *key = X509_REQ_get0_pubkey(csr);
    if (key != NULL)
        return EVP_PKEY_up_ref(key) ? key : NULL;
    ERR_clear_error();
    return scep_key_get1(X509_REQ_get_X509_PUBKEY(csr));
}

/* The request parsed without decoding its key (keycache.h: the decode is the costliest
 * non-private step of an enrollment, and the signer certificate's copy of the key is
 * usually decoded already). */
static X509_REQ *parse_csr(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509_REQ *csr = (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, (long)len, ASN1_ITEM_rptr(X509_REQ),
                                                 scep_key_nodecode_libctx(), NULL);
    if (csr != NULL && p != der + len) {
        X509_REQ_free(csr);
        csr = NULL;
    }
    return csr;
}

int issue_check_request(const issuer *is, const uint8_t *der, size_t len,
                        const char *profile_name, int need_challenge, const profile **prof_out,
                        X509_REQ **out, const char **detail_out)
{
    X509_REQ *csr = len <= LONG_MAX ? parse_csr(der, len) : NULL;
    if (csr == NULL) {
        if (prof_out != NULL)
            *prof_out = NULL;
        return REJ_BAD_CSR;
    }
    int rc = issue_check_parsed(is, csr, 0, profile_name, need_challenge, prof_out, detail_out);
    if (rc == REJ_NONE)
        *out = csr;
    else
        X509_REQ_free(csr);
    return rc;
}

int issue_check_parsed(const issuer *is, X509_REQ *csr, int pop_verified,
                       const char *profile_name, int need_challenge, const profile **prof_out,
                       const char **detail_out)
{
    EVP_PKEY *pub = NULL;
    GENERAL_NAMES *san = NULL;
    const profile *prof = NULL;
    const char *detail = NULL;
    int rc = REJ_BAD_CSR, md_nid = NID_undef, pk_nid = NID_undef, pr;

    if ((pub = issue_csr_key(csr)) == NULL)
        goto out;
    rc = REJ_NO_PROFILE;
    if ((prof = select_profile(is, csr, profile_name)) == NULL)
        goto out;
    if ((pr = profile_check_key(prof, pub)) != PROFILE_OK)
        goto refused;
    rc = REJ_CSR_SIG_ALG;
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(csr), &md_nid, &pk_nid))
        goto out;
    if ((pr = profile_check_hash(prof, md_nid)) != PROFILE_OK &&
        !(pr == PROFILE_HASH && md_nid == NID_sha1 && is->allow_sha1))
        goto refused;
    rc = REJ_POP;
#ifndef SCEPD_MUTANT_NO_POP   /* test-only breakage, docs/testing-mutants.md */
    /* The signature depends on the request's bytes only: a request checked on an earlier
     * pass (the one before an MDM validation) is not verified again. */
    if (!pop_verified && X509_REQ_verify_ex(csr, pub, NULL, NULL) != 1)
        goto out;
#endif
    rc = check_extensions(csr);
    if (rc != REJ_NONE)
        goto out;
    san = issue_requested_san(csr);
    /* With "override", the challenge's binding replaces what the CSR says: checked when the
     * certificate is built (profile_add_extensions, issue_build_profile), not here. */
    if (prof->san_source != PROFILE_SOURCE_OVERRIDE &&
        (pr = profile_check_san(prof, san)) != PROFILE_OK)
        goto refused;
    if (prof->subject_source != PROFILE_SOURCE_OVERRIDE &&
        (pr = profile_check_subject(prof, X509_REQ_get_subject_name(csr), san)) != PROFILE_OK)
        goto refused;
    if (need_challenge && (rc = issue_check_challenge(is, prof, csr)) != REJ_NONE)
        goto out;
    rc = REJ_NONE;
    goto out;
refused:
    rc = issue_profile_reject(pr);
    detail = profile_result_diag(pr);
out:
    EVP_PKEY_free(pub);
    GENERAL_NAMES_free(san);
    if (prof_out != NULL)      /* also on refusal: the audit event names the profile */
        *prof_out = prof;
    if (rc != REJ_NONE && detail_out != NULL)
        *detail_out = detail;
    ERR_clear_error();
    return rc;
}

int issue_check_csr(const issuer *is, const uint8_t *der, size_t len, int need_challenge,
                    X509_REQ **out)
{
    return issue_check_request(is, der, len, NULL, need_challenge, NULL, out, NULL);
}

int issue_spki_hash(const X509_PUBKEY *spki, uint8_t out[32])
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(spki, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    return ok ? 0 : -1;
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
