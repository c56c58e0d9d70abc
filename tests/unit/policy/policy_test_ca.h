/* Test-only helpers shared by the policy unit tests: an ASN1_TIME as seconds since the epoch,
 * and the ca_set a self-signed test CA stands for (what ca_load fills in file mode, for the
 * fields the issuer uses: the CA key and certificate serve as RA too). Include after
 * <cmocka.h> and engine/policy/issue.h. */
#ifndef SCEPD_TEST_POLICY_CA_H
#define SCEPD_TEST_POLICY_CA_H

#include <string.h>
#include <time.h>

static inline int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
    return (int64_t)timegm(&tm);
}

static inline void test_ca_set_fill(ca_set *set, EVP_PKEY *key, X509 *cert)
{
    memset(set, 0, sizeof(*set));
    set->ca_key = key;
    set->ca_cert = cert;
    set->ra_key = key;
    set->ra_cert = cert;
    set->ca_pub = X509_get0_pubkey(cert);
    set->ca_name = X509_get_subject_name(cert);
    set->ca_not_after = asn1_epoch(X509_get0_notAfter(cert));
}

#endif
