/* record: the store record (store_cert) of a certificate this CA has just issued, filled
 * from the X509 and from what the issuance knew. The one place that turns an issued
 * certificate into its record: the crypto workers (engine/enroll/pkcsreq.c) and scepctl
 * request approve (engine/ctl/ctl_request.c) both use it. */
#ifndef SCEPD_RECORD_H
#define SCEPD_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "engine/store/store.h"

/* What the issuance knew beyond the certificate. Everything is borrowed. */
typedef struct enroll_record {
    const uint8_t *key_hash;      /* STORE_HASH_LEN bytes: issue_spki_hash of the CSR's key */
    const uint8_t *subject_hash;  /* STORE_HASH_LEN bytes: issue_name_hash of the CSR subject */
    const char    *subject;       /* NUL-terminated text, as audited */
    const char    *txid;          /* the transaction key */
    const char    *profile;
    int64_t        issued_at;     /* seconds since the epoch */
} enroll_record;

/* Fills *c (status STORE_CERT_VALID; serial and validity from cert; der/der_len the
 * certificate's DER). c's pointers borrow der and m's strings: they must stay valid until the
 * put is done. 0, or -1 when cert's serial is not a positive integer of at most
 * STORE_SERIAL_LEN bytes (c untouched). */
int enroll_record_fill(store_cert *c, X509 *cert, const uint8_t *der, size_t der_len,
                       const enroll_record *m);
/* The same from the fields themselves (issue_build_der's issue_cert, no X509 object): serial
 * in store form (STORE_SERIAL_LEN bytes, big endian), validity in seconds since the epoch. */
void enroll_record_fill_der(store_cert *c, const uint8_t serial[STORE_SERIAL_LEN],
                            int64_t not_before, int64_t not_after, const uint8_t *der,
                            size_t der_len, const enroll_record *m);

#endif
