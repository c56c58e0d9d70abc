/* envelope_der: the request's pkcsPKIEnvelope read as DER and decrypted directly (issue 13).
 *
 * Why: scep_open_envelope decoded the same bytes twice (d2i_PKCS7 to see the content cipher,
 * d2i_CMS_ContentInfo to decrypt), then ran CMS_decrypt_set1_pkey_and_peer and CMS_decrypt's
 * BIO chain and copied the plaintext out of a memory BIO. This reader walks the EnvelopedData
 * once, in place:
 *   ContentInfo { envelopedData, [0] EnvelopedData { version, SET OF KeyTransRecipientInfo
 *     { version, issuerAndSerialNumber, rsaEncryption, encryptedKey },
 *     { contentType, { AES-128/192/256-CBC or DES-EDE3-CBC, IV }, [0] encryptedContent } } }
 * with definite lengths; encryptedContent primitive, or constructed from OCTET STRING chunks
 * (definite or indefinite length). The recipient is the first whose issuer and serial are the
 * RA certificate's, byte for byte. The content key is unwrapped with EVP_PKEY_decrypt (RSA
 * PKCS#1 v1.5) in the key's own provider (a token key decrypts in hsm/); when the unwrap fails
 * or gives a key of the wrong length, a random key takes its place, as CMS_decrypt does, so
 * the failure shows only at the content decryption, as the same REJ_DECRYPT (no padding
 * oracle: reject.h). Anything else (BER lengths elsewhere, a recipient by subjectKeyIdentifier
 * or key agreement, a name encoded otherwise, another cipher, an unprotectedAttrs field,
 * trailing bytes, an empty or misaligned ciphertext) is not handled here: the caller decides
 * it with OpenSSL's CMS exactly as before, so no envelope is answered differently.
 *
 * Thread-safe: no state but the process's fetched ciphers (fastpath.h). */
#ifndef SCEPD_SCEP_ENVELOPE_DER_H
#define SCEPD_SCEP_ENVELOPE_DER_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "engine/scep/scep.h"

#define SCEP_ENVELOPE_NOT_HANDLED (-1)

/* Opens req->envelope (not NULL) for ra_cert with ra_key. Returns REJ_NONE (req->inner and
 * req->cipher_nid set), REJ_DECRYPT, REJ_NO_ENVELOPE (it decrypts to nothing), REJ_INTERNAL,
 * or SCEP_ENVELOPE_NOT_HANDLED (req untouched). */
int scep_envelope_der(scep_request *req, EVP_PKEY *ra_key, X509 *ra_cert);

#endif
