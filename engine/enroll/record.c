/* The record of an issued certificate. See record.h. */
#include "engine/enroll/record.h"

#include <string.h>
#include <time.h>

#include "engine/pki/serial.h"

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    ASN1_TIME_to_tm(t, &tm);
    return (int64_t)timegm(&tm);
}

int enroll_record_fill(store_cert *c, X509 *cert, const uint8_t *der, size_t der_len,
                       const enroll_record *m)
{
    uint8_t serial[STORE_SERIAL_LEN];
    if (serial_from_asn1(X509_get0_serialNumber(cert), serial) != 0)
        return -1;
    enroll_record_fill_der(c, serial, asn1_epoch(X509_get0_notBefore(cert)),
                           asn1_epoch(X509_get0_notAfter(cert)), der, der_len, m);
    return 0;
}

void enroll_record_fill_der(store_cert *c, const uint8_t serial[STORE_SERIAL_LEN],
                            int64_t not_before, int64_t not_after, const uint8_t *der,
                            size_t der_len, const enroll_record *m)
{
    store_cert r;
    memset(&r, 0, sizeof(r));
    memcpy(r.serial, serial, STORE_SERIAL_LEN);
    r.status = STORE_CERT_VALID;
    r.not_before = not_before;
    r.not_after = not_after;
    r.issued_at = m->issued_at;
    memcpy(r.key_hash, m->key_hash, STORE_HASH_LEN);
    memcpy(r.subject_hash, m->subject_hash, STORE_HASH_LEN);
    r.subject = m->subject;
    r.subject_len = strlen(m->subject);
    r.txid = m->txid;
    r.txid_len = strlen(m->txid);
    r.profile = m->profile;
    r.profile_len = strlen(m->profile);
    r.der = der;
    r.der_len = der_len;
    *c = r;
}
