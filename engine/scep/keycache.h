/* Decoded public keys, reused by their encoded SubjectPublicKeyInfo.
 *
 * Why: in OpenSSL 3.0 every d2i of a certificate or CSR decodes its public key through the
 * decoder framework (OSSL_DECODER_CTX_new_for_pkey walks every decoder and key manager under
 * global read locks); that was ~8 % of scepd's CPU per decode, and a PKCSReq decoded the
 * same device key twice: once in its self-signed signer certificate (scep_parse), once in the
 * CSR inside the envelope. scep_parse remembers the signer's key here; the CSR is parsed in a
 * library context without providers (no decode happens) and its key is taken from here when
 * the SubjectPublicKeyInfo bytes are the same, decoded once otherwise.
 *
 * The cache is per thread (a few entries, most recent first, freed when the thread exits):
 * no locks, and nothing outlives the thread's own requests for long. Entries are found by
 * the exact DER of the SubjectPublicKeyInfo, so a hit is the key a decode would give.
 */
#ifndef SCEPD_SCEP_KEYCACHE_H
#define SCEPD_SCEP_KEYCACHE_H

#include <openssl/x509.h>

/* Remembers key (the decoded form of spki) for this thread; takes its own reference.
 * Failures (out of memory) are silent: the next lookup decodes. */
void scep_key_remember(const X509_PUBKEY *spki, EVP_PKEY *key);

/* The decoded key of spki: from this thread's cache, else made and remembered: an RSA key
 * (rsaEncryption, NULL parameters) or an EC key on a named curve from its numbers
 * (EVP_PKEY_fromdata: no decoder framework at all), any other shape decoded in the default
 * library context with a decoder context this thread keeps per key algorithm (making one is
 * the costly part of a decode in OpenSSL 3.0). The answer is d2i_PUBKEY's, the same key or
 * none (test_keycache, fuzz_csr). Returns a new reference (caller frees), or NULL
 * when it does not decode. */
EVP_PKEY *scep_key_get1(const X509_PUBKEY *spki);

/* A library context with no provider loaded: structures parsed in it (ASN1_item_d2i_ex) keep
 * their SubjectPublicKeyInfo undecoded (X509_PUBKEY_get0 gives NULL; use scep_key_get1).
 * Created once; NULL if that failed (then parse in the default context). Never freed. */
OSSL_LIB_CTX *scep_key_nodecode_libctx(void);

#endif
