/* pending: the record of a request under a manual-approval profile, kept in the store's
 * "requests" db under its transaction key until an administrator decides (scepctl request
 * approve|deny), and its byte codec. Written by the crypto workers (engine/enroll/pkcsreq.c),
 * read by CertPoll and scepctl; the bytes on disk must stay readable across versions.
 *
 * Encoding (version 1, integers big endian):
 *   u8 version=1 | u8 status | u8[2] reserved (written 0, ignored) | i64 created |
 *   i64 decided_at | key_hash[32] | serial[16] | u16 len of profile, subject, peer,
 *   decided_by | u32 csr_len | the four strings (no NUL) | csr DER
 * A string length must be below its field's capacity; the lengths must add up to the record
 * exactly (no trailing bytes). Strings are copied as stored, so a NUL inside one ends it
 * early in C; pending_encode writes them up to their first NUL. */
#ifndef SCEPD_PENDING_H
#define SCEPD_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "engine/store/store.h"

enum pending_status { PENDING_WAITING = 0, PENDING_APPROVED = 1, PENDING_DENIED = 2 };

typedef struct pending_request {
    int      status;                 /* enum pending_status */
    int64_t  created, decided_at;    /* seconds since the epoch; decided_at 0 while pending */
    uint8_t  key_hash[STORE_HASH_LEN];   /* the CSR's key (issue_spki_hash): CertPoll signer */
    uint8_t  serial[STORE_SERIAL_LEN];   /* the certificate, once approved */
    char     profile[64];
    char     subject[512];
    char     peer[64];
    char     decided_by[160];
    const uint8_t *csr;              /* PKCS#10 DER; in decode results points into the input */
    size_t   csr_len;
} pending_request;

/* Fixed part of an encoded record: the shortest valid record is this long. */
#define PENDING_FIXED_LEN (4 + 8 + 8 + STORE_HASH_LEN + STORE_SERIAL_LEN + 4 * 2 + 4)

/* Encodes r into a malloc'd *out (caller frees) of *len bytes. 0, or -1 (status out of
 * range, csr NULL with a length, csr over 4 GiB, out of memory; *out untouched). */
int pending_encode(const pending_request *r, uint8_t **out, size_t *len);

/* Decodes one record of exactly len bytes; out->csr points into in (valid while in is).
 * 0, or -1 when malformed (out untouched). */
int pending_decode(const uint8_t *in, size_t len, pending_request *out);

#endif
