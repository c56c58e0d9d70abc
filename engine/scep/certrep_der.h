/* certrep_der: the CertRep's signed SignedData written as DER (issue 13).
 *
 * Why: CMS_sign/CMS_add1_signer/CMS_final build a whole CMS object for a reply whose shape
 * never changes (they copy the attributes, check the private key against the certificate,
 * run the content through a BIO chain, and re-encode everything with i2d), which cost about as
 * much as a tenth of an enrollment on top of the RSA signature. The encoding written here is
 * the one that path writes for one signer, byte for byte in structure:
 *   ContentInfo { signedData, [0] SignedData { 1, { digestAlgorithm },
 *     { id-data, [0] { OCTET STRING envelope } } (no eContent for FAILURE/PENDING),
 *     [0] { signer certificate },
 *     { SignerInfo { 1, issuerAndSerialNumber, digestAlgorithm,
 *       [0] signedAttrs (DER SET OF, sorted), signatureAlgorithm, signature } } } }
 * with the signed attributes messageType, pkiStatus, failInfo + failInfoText (FAILURE),
 * transactionID, recipientNonce, senderNonce (random), contentType (id-data), signingTime
 * (now) and messageDigest. digestAlgorithm has absent parameters; signatureAlgorithm is
 * rsaEncryption with NULL parameters for an RSA key, ecdsa-with-SHAxxx (absent parameters)
 * for an EC key, as OpenSSL's CMS writes them. The signature is the digest of the DER SET
 * OF signed by EVP_PKEY_sign in the key's own provider (a token key signs in hsm/), on a copy
 * of a context each thread prepares once per (key, digest).
 *
 * Thread-safe: the only state is that per-thread context (freed when the thread exits). */
#ifndef SCEPD_SCEP_CERTREP_DER_H
#define SCEPD_SCEP_CERTREP_DER_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "engine/scep/scep.h"

/* The CertRep for req (status, failinfo, failtext as in scep_certrep_content), envelope the
 * encrypted reply or NULL (no eContent), signed by key/cert with md (SHA-256/384/512).
 * Returns 0 with *out malloc()ed; 1 when this writer does not express the signer (a key
 * neither RSA nor EC, another digest): the caller builds it with OpenSSL's CMS; -1 on error. */
int scep_certrep_der(const scep_request *req, int status, int failinfo, const char *failtext,
                     const uint8_t *envelope, size_t envelope_len, EVP_PKEY *key, X509 *cert,
                     const EVP_MD *md, uint8_t **out, size_t *outlen);

#endif
