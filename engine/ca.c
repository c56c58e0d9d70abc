/* Loading of CA/RA keys and certificates; prebuilt GetCACert/GetCACaps answers. */
#include "engine/ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "engine/scep.h"

/* What GetCACaps advertises: only what this build truly does. */
static const char CA_CAPS[] =
    "POSTPKIOperation\nSHA-256\nSHA-512\nAES\nDES3\nSCEPStandard\nRenewal\n";

X509 *ca_read_cert(const char *path)
{
    FILE *f = fopen(path, "rb");
    X509 *x = NULL;
    if (f == NULL)
        return NULL;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    if (x == NULL) {
        ERR_clear_error();
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    ERR_clear_error();
    return x;
}

static EVP_PKEY *read_key_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    EVP_PKEY *k = NULL;
    if (f == NULL)
        return NULL;
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    return k;
}

static int64_t asn1_time_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

void ca_free(ca_set *ca)
{
    if (ca == NULL)
        return;
    EVP_PKEY_free(ca->ca_key);
    EVP_PKEY_free(ca->ra_key);
    X509_free(ca->ca_cert);
    X509_free(ca->ra_cert);
    free(ca->cacert_body);
    hsm_token_close(ca->token);   /* after every key of the token is gone */
    free(ca);
}

static int load_keys(const config *cfg, const char *pin, ca_set *ca, char *err, size_t errlen)
{
    if (cfg->key_mode == CONFIG_KEYS_FILE) {
        ca->ca_key = read_key_file(cfg->ca_key_file);
        if (ca->ca_key == NULL) {
            snprintf(err, errlen, "cannot read CA key file %s", cfg->ca_key_file);
            return -1;
        }
        if (ca->has_ra) {
            ca->ra_key = read_key_file(cfg->ra_key_file);
            if (ca->ra_key == NULL) {
                snprintf(err, errlen, "cannot read RA key file %s", cfg->ra_key_file);
                return -1;
            }
        }
        return 0;
    }
    if (config_apply_module_env(cfg) != 0) {
        snprintf(err, errlen, "[keys] module_env must be NAME=VALUE");
        return -1;
    }
    if (hsm_token_open(cfg->pkcs11_module, cfg->token_label, pin, &ca->token) != 0) {
        snprintf(err, errlen, "token '%s' via %s: %s", cfg->token_label, cfg->pkcs11_module,
                 hsm_last_error());
        return -1;
    }
    if (hsm_key_load(ca->token, cfg->ca_key_label, &ca->ca_key) != 0) {
        snprintf(err, errlen, "CA key '%s': %s", cfg->ca_key_label, hsm_last_error());
        return -1;
    }
    if (ca->has_ra && hsm_key_load(ca->token, cfg->ra_key_label, &ca->ra_key) != 0) {
        snprintf(err, errlen, "RA key '%s': %s", cfg->ra_key_label, hsm_last_error());
        return -1;
    }
    return 0;
}

int ca_load(const config *cfg, const char *pin, ca_set **out, char *err, size_t errlen)
{
    ca_set *ca = calloc(1, sizeof(*ca));
    STACK_OF(X509) *chain = NULL;
    int rc = -1;

    if (ca == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ca->ca_cert = ca_read_cert(cfg->ca_cert);
    if (ca->ca_cert == NULL) {
        snprintf(err, errlen, "cannot read CA certificate %s", cfg->ca_cert);
        goto out;
    }
    if (cfg->ra_cert[0] != '\0') {
        ca->ra_cert = ca_read_cert(cfg->ra_cert);
        if (ca->ra_cert == NULL) {
            snprintf(err, errlen, "cannot read RA certificate %s", cfg->ra_cert);
            goto out;
        }
        ca->has_ra = 1;
    }
    if (load_keys(cfg, pin, ca, err, errlen) != 0)
        goto out;
    if (!ca->has_ra) {
        if (!X509_up_ref(ca->ca_cert) || !EVP_PKEY_up_ref(ca->ca_key))
            goto out;
        ca->ra_cert = ca->ca_cert;
        ca->ra_key = ca->ca_key;
    }
    ca->ca_pub = X509_get0_pubkey(ca->ca_cert);
    if (ca->ca_pub == NULL || EVP_PKEY_eq(ca->ca_pub, ca->ca_key) != 1) {
        snprintf(err, errlen, "CA key does not match the CA certificate");
        goto out;
    }
    if (ca->has_ra && EVP_PKEY_eq(X509_get0_pubkey(ca->ra_cert), ca->ra_key) != 1) {
        snprintf(err, errlen, "RA key does not match the RA certificate");
        goto out;
    }
    if (EVP_PKEY_get_base_id(ca->ra_key) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "the RA (or CA acting as RA) key must be RSA for the SCEP envelope");
        goto out;
    }
    ca->ca_name = X509_get_subject_name(ca->ca_cert);
    ca->ca_not_after = asn1_time_epoch(X509_get0_notAfter(ca->ca_cert));

    if (ca->has_ra) {
        chain = sk_X509_new_null();
        if (chain == NULL || !sk_X509_push(chain, ca->ra_cert) || !sk_X509_push(chain, ca->ca_cert) ||
            scep_degenerate(chain, &ca->cacert_body, &ca->cacert_len) != 0) {
            snprintf(err, errlen, "cannot build the GetCACert chain");
            goto out;
        }
        ca->cacert_type = "application/x-x509-ca-ra-cert";
    } else {
        unsigned char *der = NULL;
        int n = i2d_X509(ca->ca_cert, &der);
        if (n <= 0 || (ca->cacert_body = malloc((size_t)n)) == NULL) {
            OPENSSL_free(der);
            snprintf(err, errlen, "cannot encode the CA certificate");
            goto out;
        }
        memcpy(ca->cacert_body, der, (size_t)n);
        ca->cacert_len = (size_t)n;
        OPENSSL_free(der);
        ca->cacert_type = "application/x-x509-ca-cert";
    }
    memcpy(ca->caps, CA_CAPS, sizeof(CA_CAPS));
    ca->caps_len = sizeof(CA_CAPS) - 1;
    rc = 0;
out:
    sk_X509_free(chain);
    if (rc == 0) {
        *out = ca;
        ca = NULL;
    }
    ca_free(ca);
    ERR_clear_error();
    return rc;
}

int ca_issued(const ca_set *ca, X509 *cert)
{
    int ok = X509_NAME_cmp(X509_get_issuer_name(cert), ca->ca_name) == 0 &&
             X509_verify(cert, ca->ca_pub) == 1;
    ERR_clear_error();
    return ok;
}
