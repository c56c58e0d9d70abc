/* crl: X.509 v2 CRLs of the CA, built as DER by hand and signed with the CA key, and the
 * published CRL that /crl/<ca>.crl, SCEP GetCRL and the file on disk serve.
 *
 * A CRL with a million entries is one linear pass: each revoked entry is encoded straight
 * into one buffer (about 50 bytes each), the TBSCertList is assembled around it with a single
 * copy, and the CA key signs it once. No X509_REVOKED objects are created.
 *
 * The builder and the signer run on a crypto worker (the signature is a private-key
 * operation); snapshots are immutable and reference-counted so a shard can send one while a
 * newer one replaces it.
 */
#ifndef SCEPD_CRL_H
#define SCEPD_CRL_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* RFC 5280 CRLReason names (as in RFC 5280 and `openssl ca -crl_reason`). Returns the code,
 * or -1 for an unknown name. certificateHold (6) and removeFromCRL (8) are refused here:
 * a revocation in scepd is final. */
int crl_reason_from_name(const char *name);
const char *crl_reason_name(int reason);       /* "unspecified" for unknown values */

/* What signs a CRL: the CA key (usually in the token) and the CA certificate, whose subject
 * becomes the CRL issuer and whose key identifier becomes the AKI. */
typedef struct crl_signer crl_signer;
/* md: NULL picks SHA-256 (SHA-384 for a P-384 key). Takes references on key and cert.
 * Returns 0 or -1. */
int  crl_signer_create(EVP_PKEY *key, X509 *ca_cert, const EVP_MD *md, crl_signer **out);
void crl_signer_destroy(crl_signer *s);        /* accepts NULL */

typedef struct crl_builder crl_builder;
/* hint: expected number of entries (0 if unknown), to size the buffer once. */
int  crl_builder_create(size_t hint, crl_builder **out);
void crl_builder_destroy(crl_builder *b);      /* accepts NULL */
/* Adds one revoked certificate. serial: big-endian unsigned bytes (1..20), leading zeros
 * allowed; reason 0 (unspecified) is left out as RFC 5280 asks; invalidity 0 = none.
 * Entries should come in serial order (the store iterates that way); nothing is sorted here.
 * Returns 0, -EINVAL or -ENOMEM. */
int  crl_builder_add(crl_builder *b, const uint8_t *serial, size_t serial_len,
                     int64_t revoked_at, int reason, int64_t invalidity);
size_t crl_builder_count(const crl_builder *b);
/* Assembles the TBSCertList (version 2, issuer, thisUpdate, nextUpdate, the entries,
 * extensions AKI + CRLNumber) and signs it: one private-key operation with the signer's key.
 * The builder can be signed again (e.g. with another number). Returns 0 and a malloc()ed DER
 * CertificateList in der and len, or -1. */
int  crl_builder_sign(const crl_builder *b, const crl_signer *s, uint64_t number,
                      int64_t this_update, int64_t next_update, uint8_t **der, size_t *len);

/* A published CRL: immutable, reference-counted (atomically; any thread). */
typedef struct crl_snapshot {
    const uint8_t *der;
    size_t   len;
    uint64_t number;
    int64_t  this_update, next_update;
    char     etag[36];          /* 32 hex digits of SHA-256(der), in double quotes */
    char     headers[192];      /* ETag, Last-Modified and Cache-Control header lines */
} crl_snapshot;

/* Takes ownership of der (malloc()ed) also on failure. One reference. Returns 0 or -1. */
int  crl_snapshot_create(uint8_t *der, size_t len, uint64_t number, int64_t this_update,
                         int64_t next_update, crl_snapshot **out);
crl_snapshot *crl_snapshot_ref(crl_snapshot *s);
void crl_snapshot_unref(crl_snapshot *s);      /* accepts NULL; frees at zero */

/* Reads a CRL file written by crl_file_save and checks it is signed by ca_pub.
 * Returns 0 and a snapshot, or -1 (missing, unreadable, not a CRL, wrong signature). */
int crl_file_load(const char *path, EVP_PKEY *ca_pub, crl_snapshot **out);
/* Writes der durably: a temporary file in the same directory (created, one level, when
 * missing), fsync, rename over path, fsync of the directory. Returns 0 or -errno. */
int crl_file_save(const char *path, const uint8_t *der, size_t len);

/* The CRL being served: one pointer under a mutex. */
typedef struct crl_cache crl_cache;
int  crl_cache_create(crl_cache **out);
void crl_cache_destroy(crl_cache *c);          /* accepts NULL; drops the current snapshot */
/* A new reference to the current snapshot, or NULL when none is published yet. */
crl_snapshot *crl_cache_get(crl_cache *c);
/* Publishes s (takes the caller's reference); the previous one is unreferenced. */
void crl_cache_set(crl_cache *c, crl_snapshot *s);

#endif
