/* issue_internal: what the issuer's files share (issue.c: the issuer, its checks; issue_build.c:
 * building a certificate on either path; issue_der.c: the DER path), and the entry point the
 * differential test (tests/unit/policy/test_issue_der.c) drives both paths through. Not for
 * use outside engine/policy/ and its tests.
 *
 * Two paths issue the same certificate: the X509 path (X509_set_*, profile_add_extensions,
 * X509_sign) and the DER path (issue_der.c: the TBSCertificate written as DER around parts
 * encoded once per issuer and profile, signed with a signature context prepared once). The
 * DER path is taken whenever the issuer could prepare it (an RSA or EC CA key whose provider
 * reports its AlgorithmIdentifier) and the profile's extensions encoded (issue_der_exts);
 * otherwise the X509 path. For an RSA CA key both give the same bytes for the same serial and
 * time (PKCS#1 v1.5 is deterministic): the test checks it for every profile shape.
 */
#ifndef SCEPD_ISSUE_INTERNAL_H
#define SCEPD_ISSUE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/x509v3.h>

#include "engine/policy/issue.h"

#define ISSUE_SERIAL_LEN 16

/* Per issuer: what every certificate of the DER path shares (issue_der.c). Immutable once
 * made; any thread. */
typedef struct issue_der issue_der;

/* Per profile: its constant extensions (profile_fixed_extensions_der) for a subject key of
 * each type, [0] any type but RSA, [1] RSA; der[i] NULL when they could not be encoded (that
 * profile then issues on the X509 path, which answers what it answered before). */
typedef struct issue_der_exts {
    uint8_t *der[2];
    size_t len[2];
} issue_der_exts;

struct issuer {
    atomic_int refs;
    const ca_set *ca;
    int validity_days;
    int backdate_s;
    int allow_sha1;
    uint8_t challenge_hash[32];     /* [issue] challenge: profiles without their own */
    int has_challenge;
    const EVP_MD *sign_md;
    profile_set *profiles;
    size_t nprofiles;
    uint8_t (*prof_hash)[32];       /* per profile (same order as the set): its static challenge */
    int *prof_has;
    issue_der_exts *prof_exts;      /* per profile (same order); NULL without a DER path */
    X509_EXTENSION *cdp, *aia;     /* [issue] crl_url / ocsp_url; NULL when not set */
    issue_der *der;                 /* NULL: every certificate on the X509 path */
};

/* ---- issue_der.c ---- */

/* The DER path for ca's key signing with md_name ("SHA256", "SHA384"), the issuer's CRL
 * Distribution Point and AIA extensions (NULL when not configured) appended to every
 * certificate. NULL when the key's type is neither RSA nor EC, its provider does not report
 * the AlgorithmIdentifier, or memory ran out: the issuer then keeps the X509 path. */
issue_der *issue_der_create(const ca_set *ca, const char *md_name, const X509_EXTENSION *cdp,
                            const X509_EXTENSION *aia);
void issue_der_destroy(issue_der *d);          /* accepts NULL */

/* Fills e for p (both key types); never fails as a whole (see issue_der_exts). */
void issue_der_exts_make(const profile *p, issue_der_exts *e);
void issue_der_exts_clear(issue_der_exts *e);  /* accepts a zeroed e */

/* One certificate's own parts; everything is borrowed. */
typedef struct issue_tbs {
    const uint8_t *serial;          /* ISSUE_SERIAL_LEN bytes, positive, top byte non-zero */
    int64_t not_before, not_after;  /* seconds since the epoch */
    const X509_NAME *subject;
    const X509_PUBKEY *spki;        /* the request's, copied as encoded */
    const uint8_t *fixed;           /* issue_der_exts for the subject key's type */
    size_t fixed_len;
    const GENERAL_NAMES *san;       /* NULL or empty: no subjectAltName */
    const profile *prof;            /* its SAN rules (profile_check_san) are applied to san */
} issue_tbs;

/* Writes and signs the certificate: REJ_NONE and *out (malloc()ed DER, caller frees),
 * REJ_KEY_TYPE (an SPKI the X509 path would refuse to copy, see issue.h), then the answer of
 * profile_check_san (the X509 path's order), REJ_INTERNAL. Nothing is signed unless REJ_NONE.
 * The CA's signature, and nothing else, is timed by keyclock. */
int issue_der_sign(const issue_der *d, const issue_tbs *t, uint8_t **out, size_t *outlen);

/* ---- issue_build.c ---- */

enum issue_path { ISSUE_PATH_AUTO = 0, ISSUE_PATH_X509, ISSUE_PATH_DER };

/* issue_build_der with the serial and the time given, on the path asked for (AUTO: the DER
 * path when available). REJ_INTERNAL when ISSUE_PATH_DER is asked and is has none. For tests:
 * the same inputs must give the same bytes on both paths. */
int issue_build_at(const issuer *is, X509_REQ *csr, const profile *prof,
                   const X509_NAME *subject, const GENERAL_NAMES *san,
                   const uint8_t serial[ISSUE_SERIAL_LEN], time_t now, enum issue_path path,
                   issue_cert *out, int *capped_out);

/* 1 when a certificate under prof (one of is's profiles) for a subject key of that type is
 * built on the DER path. */
int issue_der_available(const issuer *is, const profile *prof, int rsa_key);

#endif
