/* Test-only helper shared by the scep unit tests: a self-signed certificate for a key, from a
 * subject written as "/CN=x/O=y". Include after <cmocka.h> and client/scep_client.h. */
#ifndef SCEPD_TEST_SCEP_CERTS_H
#define SCEPD_TEST_SCEP_CERTS_H

static inline X509 *test_self_signed(scepc_ctx *ctx, EVP_PKEY *key, const char *name)
{
    X509_NAME *subj = NULL;
    X509 *x = NULL;
    assert_int_equal(scepc_name_parse(name, &subj), SCEPC_OK);
    assert_int_equal(scepc_self_signed(ctx, key, subj, SCEPC_MD_SHA256, &x), SCEPC_OK);
    X509_NAME_free(subj);
    return x;
}

#endif
