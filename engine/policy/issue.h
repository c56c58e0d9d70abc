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
 * refused). Returns 0 or -1. */
int  issuer_create(const config *cfg, const ca_set *ca, const char *challenge, issuer **out);
void issuer_destroy(issuer *is);

/* Replaces the built-in profile by set (ownership passes to the issuer on success) and reads
 * each profile's static challenge. [issue] allow_sha1 = yes also admits SHA-1 CSRs under
 * every profile. Call before the issuer is shared. Returns 0 or -1 with err. */
int issuer_set_profiles(issuer *is, profile_set *set, char *err, size_t errlen);

/* The issuer's profiles (valid until issuer_destroy). */
const profile_set *issuer_profiles(const issuer *is);

/* Parses and checks a request (inner content of a PKCSReq/RenewalReq) under a profile:
 * profile_name selects it (NULL or "": by the keyUsage the CSR requests, NDES-style,
 * see profile_select_for_key_usage). need_challenge: initial enrollment; a profile with
 * challenge = static checks the password here, challenge = onetime leaves it to the caller
 * (engine/enroll/onetime.c: the store consumes it), challenge = none needs nothing.
 * Returns REJ_NONE with *out (caller frees), or an enum scep_reject with *detail_out (may be
 * NULL) set to the profile's finer diagnostic (e.g. "profile_key_size" for REJ_KEY_TYPE) or
 * NULL. *prof_out (may be NULL) is the profile chosen (the issuer's), set on refusal too so
 * the audit event can name it; NULL when none could be chosen. */
int issue_check_request(const issuer *is, const uint8_t *der, size_t len,
                        const char *profile_name, int need_challenge, const profile **prof_out,
                        X509_REQ **out, const char **detail_out);

/* The initial-enrollment challenge of prof (one of the issuer's) for a parsed request: a
 * static challenge is compared here (REJ_NONE, REJ_CHALLENGE, REJ_NO_CHALLENGE_SET); onetime
 * and none give REJ_NONE (a one-time challenge is the store's to decide). */
int issue_check_challenge(const issuer *is, const profile *prof, X509_REQ *csr);

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
 * REJ_INTERNAL.
 * The certificate's SubjectPublicKeyInfo is the request's, copied as encoded: *out is meant to
 * be encoded (i2d_X509, CMS), and X509_get0_pubkey(*out) returns NULL because the key was
 * never decoded (doing so, or X509_set_pubkey, costs a third of an enrollment's CPU in OpenSSL
 * 3.0's encoder/decoder lookups). Compare keys with X509_PUBKEY_eq / the encoded form. */
int issue_build_profile(const issuer *is, X509_REQ *csr, const profile *prof,
                        const X509_NAME *subject, const GENERAL_NAMES *san, X509 **out,
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
