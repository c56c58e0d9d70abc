/* issue: checks a PKCS#10 request and builds the certificate scepd issues for it.
 *
 * What is issued is fixed here, never copied blindly from the request: X.509 v3, a 16-byte
 * random positive serial, basicConstraints CA:FALSE (critical), keyUsage digitalSignature
 * (+ keyEncipherment for RSA keys, critical), extendedKeyUsage clientAuth, SKI and AKI, the
 * request's subject, and from its extensionRequest only subjectAltName entries of the allowed
 * types (DNS, email, URI, UPN). Validity never exceeds the CA's notAfter. With [issue]
 * crl_url / ocsp_url set, also a CRL Distribution Point and an AIA OCSP URI.
 */
#ifndef SCEPD_ISSUE_H
#define SCEPD_ISSUE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "engine/ca.h"
#include "engine/config.h"

typedef struct issuer issuer;

/* Prebuilds the constant extensions for ca. challenge may be empty (initial enrollment is then
 * refused). Returns 0 or -1. */
int  issuer_create(const config *cfg, const ca_set *ca, const char *challenge, issuer **out);
void issuer_destroy(issuer *is);

/* Parses and checks a request (inner content of a PKCSReq/RenewalReq).
 * need_challenge: initial enrollment (the challenge password must match).
 * Returns REJ_NONE and *out (caller frees), or an enum scep_reject. */
int issue_check_csr(const issuer *is, const uint8_t *der, size_t len, int need_challenge,
                    X509_REQ **out);

/* Builds and signs (CA key: a private-key operation) the certificate for a checked request.
 * Returns REJ_NONE and *out, or REJ_CA_EXPIRED / REJ_INTERNAL. */
int issue_build(const issuer *is, X509_REQ *csr, X509 **out);

/* SHA-256 of a public key's SubjectPublicKeyInfo DER; of a Name's DER. 0 or -1. */
int issue_key_hash(EVP_PKEY *pub, uint8_t out[32]);
int issue_name_hash(const X509_NAME *name, uint8_t out[32]);

#endif
