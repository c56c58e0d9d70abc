/* issue: checks a PKCS#10 request against a certificate profile (engine/policy/profile.h) and
 * builds the certificate scepd issues for it.
 *
 * What is issued is fixed by the profile, never copied blindly from the request: X.509 v3, a
 * 16-byte random positive serial, basicConstraints CA:FALSE (critical), the profile's keyUsage
 * (critical), EKUs and policies, SKI and AKI, the request's subject and subjectAltNames of the
 * allowed types (or the ones bound to a one-time challenge, for "override" profiles). Validity
 * is the profile's, never past the CA's notAfter (capped or refused, per profile). With
 * [issue] crl_url / ocsp_url set, also a CRL Distribution Point and an AIA OCSP URI.
 *
 * Without profiles (issuer_set_profiles never called) the issuer has one built-in profile
 * "default" equal to the defaults of profile.h, except validity = [issue] validity_days and
 * renewal allowed at any time (the behaviour before profiles existed).
 *
 * An issuer is the server's policy snapshot: once shared it never changes, so any thread
 * reads it without a lock. A reload (SIGHUP) builds a whole new issuer and swaps it into an
 * issuer_slot; the old one lives until its last reference is dropped.
 */
#ifndef SCEPD_ISSUE_H
#define SCEPD_ISSUE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "engine/pki/ca.h"
#include "engine/common/config.h"
#include "engine/policy/profile.h"

typedef struct issuer issuer;

/* Prebuilds the constant extensions for ca. challenge may be empty (initial enrollment is then
 * refused). *out holds one reference. ca must outlive every reference. Returns 0 or -1. */
int  issuer_create(const config *cfg, const ca_set *ca, const char *challenge, issuer **out);
/* Adds a reference (any thread); returns is. */
issuer *issuer_ref(issuer *is);
/* Drops a reference (any thread); the last one frees. Accepts NULL and half-built issuers. */
void issuer_destroy(issuer *is);

/* The current issuer of a running server. Readers keep a pin (one reference they own, e.g.
 * per thread) and refresh it with issuer_slot_get at points where they hold nothing from the
 * old issuer (between jobs): the common case is one atomic load and a compare; only after a
 * swap does a reader take the slot's lock once, to move its pin. */
typedef struct issuer_slot issuer_slot;

/* A slot holding first (its reference passes to the slot). 0 or -1 (then first is kept by
 * the caller). */
int  issuer_slot_create(issuer *first, issuer_slot **out);
/* Frees the slot and drops its reference; readers' pins stay valid until they drop them.
 * Accepts NULL. */
void issuer_slot_destroy(issuer_slot *s);
/* Makes next (its reference passes to the slot) the current issuer; the previous one is
 * freed once the last pin on it moves or is dropped. Any thread; swaps are serialised. */
void issuer_slot_swap(issuer_slot *s, issuer *next);
/* The current issuer, pinned in *pin (NULL at first): when *pin is not the current one, the
 * old pin is dropped and the current one pinned. The result is *pin: valid until the next
 * call with the same pin, or issuer_destroy(*pin). */
const issuer *issuer_slot_get(issuer_slot *s, issuer **pin);

/* Replaces the built-in profile by set (ownership passes to the issuer on success) and reads
 * each profile's static challenge. [issue] allow_sha1 = yes also admits SHA-1 CSRs under
 * every profile. Call before the issuer is shared. Returns 0 or -1 with err. */
int issuer_set_profiles(issuer *is, profile_set *set, char *err, size_t errlen);

/* The issuer's profiles (valid while the caller holds a reference). */
const profile_set *issuer_profiles(const issuer *is);

/* Parses and checks a request (inner content of a PKCSReq/RenewalReq) under a profile:
 * profile_name selects it (NULL or "": by the keyUsage the CSR requests, NDES-style,
 * see profile_select_for_key_usage). need_challenge: initial enrollment; a profile with
 * challenge = static checks the password here, challenge = onetime leaves it to the caller
 * (engine/enroll/onetime.c: the store consumes it), challenge = none needs nothing.
 * Returns REJ_NONE with *out (caller frees), or an enum scep_reject with *detail_out (may be
 * NULL) set to the profile's finer diagnostic (e.g. "profile_key_size" for REJ_KEY_TYPE) or
 * NULL. *prof_out (may be NULL) is the profile chosen (the issuer's), set on refusal too so
 * the audit event can name it; NULL when none could be chosen.
 * *out's public key is not decoded (X509_REQ_get0_pubkey gives NULL; the decode is costly in
 * OpenSSL 3.0 and the signer certificate's copy is reused, engine/scep/keycache.h): take it
 * with issue_csr_key. */
int issue_check_request(const issuer *is, const uint8_t *der, size_t len,
                        const char *profile_name, int need_challenge, const profile **prof_out,
                        X509_REQ **out, const char **detail_out);

/* issue_check_request for a request already parsed (csr stays the caller's). pop_verified:
 * its signature was verified on an earlier pass of the same job (it depends on the bytes
 * only); every profile rule is applied again, under the profiles in force now. */
int issue_check_parsed(const issuer *is, X509_REQ *csr, int pop_verified,
                       const char *profile_name, int need_challenge, const profile **prof_out,
                       const char **detail_out);

/* The initial-enrollment challenge of prof (one of the issuer's) for a parsed request: a
 * static challenge (when it is the kind that decides) is compared here (REJ_NONE, REJ_CHALLENGE,
 * REJ_NO_CHALLENGE_SET); otherwise REJ_NONE (a one-time challenge is the store's to decide,
 * an MDM's verdict the validation stage's). */
int issue_check_challenge(const issuer *is, const profile *prof, X509_REQ *csr);

/* The static challenge of prof (one of the issuer's: its own, else the main configuration's)
 * against the request's challengePassword, whatever kinds prof lists (a multi-kind profile
 * tries it first): REJ_NONE, REJ_CHALLENGE, REJ_NO_CHALLENGE_SET. Constant time. */
int issue_static_challenge(const issuer *is, const profile *prof, X509_REQ *csr);
/* The public key of a request (parsed by issue_check_request or by d2i_X509_REQ): a new
 * reference (caller frees), or NULL when it does not decode. */
EVP_PKEY *issue_csr_key(X509_REQ *csr);

/* issue_check_request with the profile chosen by keyUsage. */
int issue_check_csr(const issuer *is, const uint8_t *der, size_t len, int need_challenge,
                    X509_REQ **out);

/* Builds and signs (CA key: a private-key operation) the certificate for a checked request
 * under prof. subject / san (may be NULL) replace the request's (challenge bindings of an
 * "override" profile). *capped_out (may be NULL) = 1 when notAfter was cut to the CA's.
 * Under subject_source = override the profile's subject rules are applied here, to the
 * subject issued (subject, else the request's).
 * Returns REJ_NONE and *out, or REJ_CA_EXPIRED, REJ_BEYOND_CA, REJ_VALIDITY_REQUEST,
 * REJ_UPN_REQUIRED, REJ_SAN_TYPE, REJ_EMPTY_SUBJECT, REJ_SUBJECT_LENGTH, REJ_SUBJECT_CHARS,
 * REJ_KEY_TYPE (a SubjectPublicKeyInfo that cannot be copied as encoded: algorithm
 * parameters of a type no key has, a key bit string with unused bits), REJ_INTERNAL.
 * The certificate's SubjectPublicKeyInfo is the request's, copied as encoded: *out is meant to
 * be encoded (i2d_X509, CMS), and X509_get0_pubkey(*out) returns NULL because the key was
 * never decoded (doing so, or X509_set_pubkey, costs a third of an enrollment's CPU in OpenSSL
 * 3.0's encoder/decoder lookups). Compare keys with X509_PUBKEY_eq / the encoded form.
 * On the DER path *out is issue_build_der's DER parsed back (that parse costs more than the
 * building: the enrollment path takes the DER instead). */
int issue_build_profile(const issuer *is, X509_REQ *csr, const profile *prof,
                        const X509_NAME *subject, const GENERAL_NAMES *san, X509 **out,
                        int *capped_out);

/* A certificate issue_build_der made: its DER (what is issued, byte for byte) and the fields
 * its store record takes, read from the values encoded (no X509 object). */
typedef struct issue_cert {
    uint8_t *der;              /* malloc()ed: the caller frees (free()) */
    size_t   der_len;
    uint8_t  serial[16];       /* the serialNumber's content bytes, big endian, positive */
    int64_t  not_before;       /* seconds since the epoch */
    int64_t  not_after;
} issue_cert;

/* issue_build_profile without the X509: the same checks, answers and certificate, and in
 * *out the DER and the record's fields (out untouched unless REJ_NONE). The enrollment path
 * uses this: an RSA or EC CA key signs a TBSCertificate written as DER (issue_der.c; nothing
 * is encoded twice and nothing is fetched per certificate), other keys go through X509_sign.
 * Only the CA's signature is timed by keyclock. */
int issue_build_der(const issuer *is, X509_REQ *csr, const profile *prof,
                    const X509_NAME *subject, const GENERAL_NAMES *san, issue_cert *out,
                    int *capped_out);

/* issue_build_profile under the profile chosen by keyUsage, nothing replaced. */
int issue_build(const issuer *is, X509_REQ *csr, X509 **out);

/* The subjectAltNames of a request's extensionRequest (caller frees), NULL when none. */
GENERAL_NAMES *issue_requested_san(X509_REQ *csr);

/* The enum scep_reject row a PROFILE_* result is answered with (the REJ_ column of
 * PROFILE_RESULTS); REJ_INTERNAL when out of range. */
int issue_profile_reject(int profile_result);

/* SHA-256 of a public key's SubjectPublicKeyInfo DER; of a Name's DER. 0 or -1. */
int issue_key_hash(EVP_PKEY *pub, uint8_t out[32]);
/* The same hash from an encoded SubjectPublicKeyInfo, without OpenSSL's encoder (cheap). */
int issue_spki_hash(const X509_PUBKEY *spki, uint8_t out[32]);
int issue_name_hash(const X509_NAME *name, uint8_t out[32]);

#endif
