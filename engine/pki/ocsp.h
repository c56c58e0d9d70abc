/* ocsp: the RFC 6960 responder. Requests are parsed with explicit limits, statuses come from
 * the store, responses are signed with the delegated OCSP signing key (id-kp-OCSPSigning,
 * id-pkix-ocsp-nocheck; the key stays in the token) and, when nothing in them is specific to
 * one request (no nonce to echo), kept pre-signed in a cache: a flood of queries for the
 * same certificates then costs no private-key operation until the status changes (the
 * store's revocation generation moves) or the cached answer is half-way to its nextUpdate.
 *
 * Everything here runs on crypto workers; the responder is shared by all of them (the cache
 * has its own lock, held only for lookups and inserts, never while signing).
 */
#ifndef SCEPD_OCSP_H
#define SCEPD_OCSP_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include "engine/store/store.h"

#define OCSP_MAX_IDS     8       /* CertIDs in one request; more: malformedRequest */
#define OCSP_SERIAL_MAX  20      /* RFC 5280: serials are at most 20 octets */

/* One CertID of a request (pointers into the query's OCSP_REQUEST). */
typedef struct ocsp_id {
    OCSP_CERTID *cid;
    int      hash_nid;           /* hashAlgorithm of the issuer hashes */
    const unsigned char *name_hash;  int name_hash_len;
    const unsigned char *key_hash;   int key_hash_len;
    uint8_t  serial[OCSP_SERIAL_MAX];   /* magnitude, big-endian, leading zeros stripped */
    size_t   serial_len;         /* 0: the serial is negative, zero or over 20 octets */
} ocsp_id;

/* A parsed request; owns req. Clear with ocsp_query_clear. */
typedef struct ocsp_query {
    OCSP_REQUEST *req;
    size_t   n;
    ocsp_id  ids[OCSP_MAX_IDS];
    int      has_nonce;
} ocsp_query;

/* Parses a DER OCSPRequest (trailing bytes refused). Returns 0, or
 * OCSP_RESPONSE_STATUS_MALFORMEDREQUEST (bytes that are not an OCSPRequest, no CertID, more
 * than OCSP_MAX_IDS, a hash algorithm we do not know). *q is always safe to clear. */
int  ocsp_parse_request(const uint8_t *der, size_t len, ocsp_query *q);
void ocsp_query_clear(ocsp_query *q);

typedef struct ocsp_responder ocsp_responder;

/* ca_cert: the issuer we answer for. resp_cert/resp_key: the delegated responder (references
 * taken). validity_s: nextUpdate - thisUpdate. use_nonce: echo a request's nonce (such a
 * response is signed for that request and never cached). Returns 0 or -1. */
int  ocsp_responder_create(X509 *ca_cert, X509 *resp_cert, EVP_PKEY *resp_key, int validity_s,
                           int use_nonce, ocsp_responder **out);
void ocsp_responder_destroy(ocsp_responder *r);    /* accepts NULL */

/* Answers one request (DER bytes as received). Looks the certificates up through reader
 * (begun and ended here), signs when no cached answer fits, and always produces a response:
 * a successful BasicOCSPResponse, or an unsigned malformedRequest, unauthorized (a CertID
 * names another issuer) or internalError.
 * *status: the OCSPResponseStatus sent. *cached: 1 if the bytes came from the cache.
 * Returns 0 and a malloc()ed DER in *out and *outlen, or -1 (out of memory only). */
int ocsp_respond(ocsp_responder *r, store_reader *reader, const uint8_t *der, size_t len,
                 int64_t now, uint8_t **out, size_t *outlen, int *status, int *cached);

/* Statistics for tests and metrics: responses signed, and answered from the cache. */
void ocsp_stats(ocsp_responder *r, uint64_t *signed_n, uint64_t *cached_n);

#endif
