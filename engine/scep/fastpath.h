/* fastpath: the common shape of a pkiMessage handled with fewer passes through OpenSSL 3.0's
 * provider machinery (issue 13, docs/benchmarks.md "Performance: toward the crypto floor").
 *
 * Why: OpenSSL 3.0 decodes the public key of every certificate it parses through a freshly
 * built decoder context (OSSL_DECODER_CTX_new_for_pkey walks every decoder and key manager
 * under global locks): for the device's signer certificate that was the largest non-private
 * cost of an enrollment. scep_parse therefore parses the SignedData without decoding keys
 * (keycache.h), decodes the signer's key once with a per-thread decoder context, and checks
 * the signature here, the way CMS_verify does (same attribute rules, same re-encoded signed
 * attributes, same digest comparison). Only success is taken from here: anything else is
 * decided by the full OpenSSL path (CMS_verify on a normally parsed message), so a request
 * this path does not cover, or a bad one, is answered exactly as before.
 *
 * The reply's pkcsPKIEnvelope is written here as DER around the parts that vary (the
 * recipient's issuer and serial, the RSA-encrypted content key, the IV, the ciphertext):
 * CMS_encrypt needs the recipient certificate's decoded key, which a fast-parsed signer
 * certificate does not carry, and builds and re-encodes a whole CMS structure for it.
 * The encoding is the one CMS_encrypt writes for one RSA key-transport recipient
 * (EnvelopedData version 0, KTRI version 0 by issuerAndSerialNumber, rsaEncryption with NULL
 * parameters, the cipher's IV as an OCTET STRING, encryptedContent [0] IMPLICIT primitive).
 *
 * Thread-safe: no state but the process-wide fetched algorithms (made once). */
#ifndef SCEPD_SCEP_FASTPATH_H
#define SCEPD_SCEP_FASTPATH_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* 1 when si (the only SignerInfo of cms) is an RSA PKCS#1 v1.5 signature by key over signed
 * attributes that follow RFC 5652's rules, whose messageDigest is the md_nid digest of the
 * encapsulated content; 0 otherwise (unsupported or not verified: ask CMS_verify). */
int scep_fast_verify(CMS_ContentInfo *cms, CMS_SignerInfo *si, EVP_PKEY *key, int md_nid);

/* DER ContentInfo(EnvelopedData) of content encrypted with cipher_nid (AES-128/192/256-CBC,
 * DES-EDE3-CBC) to recip (identified by issuer and serial) whose RSA public key is key.
 * 0 with *out malloc'd, or -1. */
int scep_fast_envelope(X509 *recip, EVP_PKEY *key, int cipher_nid, const uint8_t *content,
                       size_t len, uint8_t **out, size_t *outlen);

/* The process's fetched EVP_MD for NID_sha1/256/384/512, or NULL. */
const EVP_MD *scep_fetched_md(int nid);

/* The process's fetched EVP_CIPHER for NID_aes_128/192/256_cbc and NID_des_ede3_cbc, or NULL. */
const EVP_CIPHER *scep_fetched_cipher(int nid);

#endif
