/* Building the issued certificate: the checks made at issuance, then the DER path
 * (issue_der.c) or the X509 path (below). See issue.h and issue_internal.h. */
#include "engine/policy/issue_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "engine/common/keyclock.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"

/* What issuance decides before any certificate is written, shared by both paths. */
typedef struct build_in {
    EVP_PKEY *pub;                  /* the request's key (decoded: its type decides keyUsage) */
    const X509_NAME *subject;       /* issued: the binding's, else the request's */
    const GENERAL_NAMES *san;       /* issued: the binding's, else the request's (may be NULL) */
    GENERAL_NAMES *req_san;         /* owned: the request's, when san is it */
    int64_t not_before, not_after;
    int capped;
} build_in;

static void build_in_clear(build_in *b)
{
    EVP_PKEY_free(b->pub);
    GENERAL_NAMES_free(b->req_san);
}

/* The validity and, under subject_source = override, the subject rules (issue_check_request
 * skipped them: they apply to the subject issued, the challenge's binding or the CSR's when
 * it bound none). REJ_NONE or the answer. */
static int prepare(const issuer *is, X509_REQ *csr, const profile *prof,
                   const X509_NAME *subject, const GENERAL_NAMES *san, time_t now, build_in *b)
{
    int64_t wanted = 0;
    int pr;

    memset(b, 0, sizeof(*b));
    if ((b->pub = issue_csr_key(csr)) == NULL)
        return REJ_INTERNAL;
    if (profile_requested_not_after(csr, &wanted) != 0)
        return REJ_VALIDITY_REQUEST;
    pr = profile_validity(prof, now, is->ca->ca_not_after, wanted, &b->not_after, &b->capped);
    if (pr != PROFILE_OK)
        return issue_profile_reject(pr);
    if (san == NULL)
        san = b->req_san = issue_requested_san(csr);
    b->san = san;
    b->subject = subject != NULL ? subject : X509_REQ_get_subject_name(csr);
    if (prof->subject_source == PROFILE_SOURCE_OVERRIDE &&
        (pr = profile_check_subject(prof, b->subject, san)) != PROFILE_OK)
        return issue_profile_reject(pr);
    b->not_before = (int64_t)now - is->backdate_s;
    return REJ_NONE;
}

/* ---- the X509 path: CA keys the DER path does not sign with, and profiles whose extensions
 * it could not encode ---- */

static ASN1_INTEGER *serial_integer(const uint8_t serial[ISSUE_SERIAL_LEN])
{
    BIGNUM *bn = BN_bin2bn(serial, ISSUE_SERIAL_LEN, NULL);
    ASN1_INTEGER *ai = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    return ai;
}

/* Puts the CSR's SubjectPublicKeyInfo into the certificate as it was encoded (algorithm,
 * parameters and key bits copied; -2 when that cannot be exact: parameters of a type no key
 * has, a key bit string with unused bits), instead of X509_set_pubkey: that one re-encodes and
 * re-decodes the key through OpenSSL 3's encoder/decoder framework, whose lookups (global
 * read locks, name compares) cost more per enrollment than the rest of issue_build. */
static int copy_spki(X509 *x, X509_REQ *csr)
{
    ASN1_OBJECT *alg_obj = NULL;
    const unsigned char *bits = NULL;
    int nbits = 0, ptype = V_ASN1_UNDEF;
    X509_ALGOR *alg = NULL;
    const void *pval = NULL;
    const ASN1_OBJECT *pobj = NULL;
    X509_PUBKEY *src = X509_REQ_get_X509_PUBKEY(csr);
    void *param = NULL;
    unsigned char *enc = NULL;

    if (src == NULL || X509_PUBKEY_get0_param(&alg_obj, &bits, &nbits, &alg, src) != 1 ||
        nbits <= 0)
        return -1;
    X509_ALGOR_get0(&pobj, &ptype, &pval, alg);
    if (ptype == V_ASN1_OBJECT)
        param = OBJ_dup(pval);
    else if (ptype == V_ASN1_SEQUENCE)
        param = ASN1_STRING_dup(pval);
    else if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF)
        return -2;      /* parameters no key type has (RFC 3279, 5480, 8410): they could not
                           be copied as sent, and the certificate would name another SPKI */
    ASN1_OBJECT *obj = OBJ_dup(alg_obj);
    enc = OPENSSL_memdup(bits, (size_t)nbits);
    if (obj == NULL || enc == NULL || ((ptype == V_ASN1_OBJECT || ptype == V_ASN1_SEQUENCE) && param == NULL) ||
        X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(x), obj, ptype, param, enc, nbits) != 1) {
        ASN1_OBJECT_free(obj);
        if (ptype == V_ASN1_OBJECT)
            ASN1_OBJECT_free(param);
        else if (ptype == V_ASN1_SEQUENCE)
            ASN1_STRING_free(param);
        OPENSSL_free(enc);
        return -1;
    }
    /* What set0 cannot carry (a bit string's unused-bits count) must not silently change the
     * key the certificate names: compare the two encodings (plain DER, no key decoding). */
    unsigned char *want = NULL, *got = NULL;
    int nw = i2d_X509_PUBKEY(src, &want), ng = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &got);
    int same = nw > 0 && nw == ng && memcmp(want, got, (size_t)nw) == 0;
    OPENSSL_free(want);
    OPENSSL_free(got);
    return same ? 0 : -2;
}

static int build_x509(const issuer *is, X509_REQ *csr, const profile *prof, const build_in *b,
                      const uint8_t serial[ISSUE_SERIAL_LEN], time_t now, X509 **out)
{
    X509 *x = X509_new();
    ASN1_INTEGER *sn = serial_integer(serial);
    int rc = REJ_INTERNAL, pr;

    if (x == NULL || sn == NULL || !X509_set_version(x, X509_VERSION_3) ||
        !X509_set_serialNumber(x, sn) ||
        !X509_set_issuer_name(x, is->ca->ca_name) ||
        !X509_set_subject_name(x, b->subject) ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -(long)is->backdate_s, &now) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)b->not_after) == NULL)
        goto out;
    if ((pr = copy_spki(x, csr)) != 0) {
        rc = pr == -2 ? REJ_KEY_TYPE : REJ_INTERNAL;
        goto out;
    }
    pr = profile_add_extensions(prof, x, is->ca->ca_cert, b->pub, b->san);
    if (pr != PROFILE_OK) {
        rc = issue_profile_reject(pr);
        goto out;
    }
    if ((is->cdp != NULL && !X509_add_ext(x, is->cdp, -1)) ||
        (is->aia != NULL && !X509_add_ext(x, is->aia, -1)))
        goto out;
    uint64_t t0 = keyclock_begin();    /* with the TBS encoding and digest (keyclock.h) */
    int signed_ok = X509_sign(x, is->ca->ca_key, is->sign_md) > 0;
    keyclock_end(t0);
    if (!signed_ok)
        goto out;
    rc = REJ_NONE;
out:
    if (rc == REJ_NONE) {
        *out = x;
        x = NULL;
    }
    X509_free(x);
    ASN1_INTEGER_free(sn);
    return rc;
}

/* ---- both paths ---- */

static size_t profile_index(const issuer *is, const profile *prof)
{
    size_t n = 0;
    const profile *items = profile_set_items(is->profiles, &n);
    size_t i = (size_t)(prof - items);
    return prof >= items && i < n ? i : SIZE_MAX;
}

/* The profile's encoded extensions for the DER path, NULL when it has none. */
static const issue_der_exts *der_exts(const issuer *is, const profile *prof)
{
    size_t i = is->der != NULL && is->prof_exts != NULL ? profile_index(is, prof) : SIZE_MAX;
    return i != SIZE_MAX ? &is->prof_exts[i] : NULL;
}

int issue_der_available(const issuer *is, const profile *prof, int rsa_key)
{
    const issue_der_exts *e = der_exts(is, prof);
    return e != NULL && e->der[rsa_key ? 1 : 0] != NULL;
}

static int build_der(const issuer *is, X509_REQ *csr, const profile *prof, const build_in *b,
                     const uint8_t serial[ISSUE_SERIAL_LEN], uint8_t **der, size_t *der_len)
{
    int rsa = EVP_PKEY_get_base_id(b->pub) == EVP_PKEY_RSA;
    const issue_der_exts *e = der_exts(is, prof);
    const X509_PUBKEY *spki = X509_REQ_get_X509_PUBKEY(csr);
    if (e == NULL || e->der[rsa] == NULL || spki == NULL)
        return REJ_INTERNAL;
    issue_tbs t = { serial, b->not_before, b->not_after, b->subject, spki, e->der[rsa],
                    e->len[rsa], b->san, prof };
    return issue_der_sign(is->der, &t, der, der_len);
}

/* One certificate on the path asked for: the X509 (x_out) and/or its DER (der_out), each
 * made from the other when that path did not make it. */
static int build(const issuer *is, X509_REQ *csr, const profile *prof, const X509_NAME *subject,
                 const GENERAL_NAMES *san, const uint8_t serial[ISSUE_SERIAL_LEN], time_t now,
                 enum issue_path path, X509 **x_out, issue_cert *der_out, int *capped_out)
{
    build_in b;
    X509 *x = NULL;
    uint8_t *der = NULL;
    size_t der_len = 0;

    int rc = prepare(is, csr, prof, subject, san, now, &b);
    if (rc != REJ_NONE)
        goto out;
    int der_path = issue_der_available(is, prof, EVP_PKEY_get_base_id(b.pub) == EVP_PKEY_RSA);
    rc = REJ_INTERNAL;
    if (path == ISSUE_PATH_DER && !der_path)
        goto out;
    if (path == ISSUE_PATH_X509 || !der_path) {
        if ((rc = build_x509(is, csr, prof, &b, serial, now, &x)) != REJ_NONE)
            goto out;
        rc = REJ_INTERNAL;
        unsigned char *enc = NULL;
        int n = der_out != NULL ? i2d_X509(x, &enc) : 0;
        if (n < 0 || (n > 0 && (der = malloc((size_t)n)) == NULL)) {
            OPENSSL_free(enc);
            goto out;
        }
        if (n > 0)
            memcpy(der, enc, (size_t)n);
        der_len = (size_t)n;
        OPENSSL_free(enc);
    } else {
        if ((rc = build_der(is, csr, prof, &b, serial, &der, &der_len)) != REJ_NONE)
            goto out;
        rc = REJ_INTERNAL;
        /* Parsed as the CSR is: the key stays undecoded (issue.h). */
        const unsigned char *p = der;
        if (x_out != NULL &&
            ((x = (X509 *)ASN1_item_d2i_ex(NULL, &p, (long)der_len, ASN1_ITEM_rptr(X509),
                                          scep_key_nodecode_libctx(), NULL)) == NULL ||
             p != der + der_len))
            goto out;
    }
    rc = REJ_NONE;
out:
    if (rc == REJ_NONE) {
        if (x_out != NULL) {
            *x_out = x;
            x = NULL;
        }
        if (der_out != NULL) {
            der_out->der = der;
            der_out->der_len = der_len;
            memcpy(der_out->serial, serial, ISSUE_SERIAL_LEN);
            der_out->not_before = b.not_before;
            der_out->not_after = b.not_after;
            der = NULL;
        }
        if (capped_out != NULL)
            *capped_out = b.capped;
    }
    X509_free(x);
    free(der);
    build_in_clear(&b);
    ERR_clear_error();
    return rc;
}

int issue_build_at(const issuer *is, X509_REQ *csr, const profile *prof,
                   const X509_NAME *subject, const GENERAL_NAMES *san,
                   const uint8_t serial[ISSUE_SERIAL_LEN], time_t now, enum issue_path path,
                   issue_cert *out, int *capped_out)
{
    return build(is, csr, prof, subject, san, serial, now, path, NULL, out, capped_out);
}

/* 16 random bytes, positive, with the top byte never zero so the DER INTEGER stays 16 bytes
 * long: 126 bits of entropy. Drawn from a per-thread pool that RAND_bytes refills for
 * SERIAL_POOL certificates at a time: its per-call cost (the thread's DRBG looked up and
 * locked) was ~0.3 % of an enrollment's CPU; the bytes are the same generator's. 0 or -1. */
#define SERIAL_POOL 32
static _Thread_local struct {
    uint8_t b[SERIAL_POOL][ISSUE_SERIAL_LEN];
    unsigned used;                  /* 0: empty (a new thread's) */
} serials;

static int random_serial(uint8_t b[ISSUE_SERIAL_LEN])
{
    if (serials.used == 0) {
        if (RAND_bytes(&serials.b[0][0], sizeof(serials.b)) != 1)
            return -1;
        serials.used = SERIAL_POOL;
    }
    serials.used--;
    memcpy(b, serials.b[serials.used], ISSUE_SERIAL_LEN);
    b[0] = (uint8_t)((b[0] & 0x3f) | 0x40);
    return 0;
}

/* build with a fresh serial, now: the certificate as an X509 (x) or as DER (der). */
static int build_now(const issuer *is, X509_REQ *csr, const profile *prof,
                     const X509_NAME *subject, const GENERAL_NAMES *san, X509 **x,
                     issue_cert *der, int *capped_out)
{
    uint8_t serial[ISSUE_SERIAL_LEN];
    if (random_serial(serial) != 0)
        return REJ_INTERNAL;
    return build(is, csr, prof, subject, san, serial, time(NULL), ISSUE_PATH_AUTO, x, der,
                 capped_out);
}

int issue_build_der(const issuer *is, X509_REQ *csr, const profile *prof,
                    const X509_NAME *subject, const GENERAL_NAMES *san, issue_cert *out,
                    int *capped_out)
{
    return build_now(is, csr, prof, subject, san, NULL, out, capped_out);
}

int issue_build_profile(const issuer *is, X509_REQ *csr, const profile *prof,
                        const X509_NAME *subject, const GENERAL_NAMES *san, X509 **out,
                        int *capped_out)
{
    return build_now(is, csr, prof, subject, san, out, NULL, capped_out);
}

int issue_build(const issuer *is, X509_REQ *csr, X509 **out)
{
    size_t n = 0;
    const profile *items = profile_set_items(is->profiles, &n);
    const profile *prof = profile_select_for_key_usage(items, n, profile_requested_key_usage(csr));
    if (prof == NULL)
        return REJ_NO_PROFILE;
    return issue_build_profile(is, csr, prof, NULL, NULL, out, NULL);
}
