/* Loading of CA/RA keys and certificates; prebuilt GetCACert/GetCACaps answers. */
#include "engine/pki/ca.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/asn1.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "engine/scep/scep.h"

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

int ca_read_certs(const char *path, STACK_OF(X509) **out)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    FILE *f = fopen(path, "rb");
    X509 *x;
    int rc = -1;

    if (sk == NULL || f == NULL)
        goto out;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto out;
        }
    }
    if (sk_X509_num(sk) == 0) {
        ERR_clear_error();
        rewind(f);
        x = d2i_X509_fp(f, NULL);
        if (x == NULL || !sk_X509_push(sk, x)) {
            X509_free(x);
            goto out;
        }
    }
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (rc == 0) {
        *out = sk;
        sk = NULL;
    }
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error();
    return rc;
}

int ca_check_chain(X509 *cert, STACK_OF(X509) *chain, char *err, size_t errlen)
{
    X509 *below = cert;
    int rc = -1;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *up = sk_X509_value(chain, i);
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(up), name, sizeof(name));
        if (X509_check_ca(up) < 1) {
            snprintf(err, errlen, "chain certificate %d (%s) is not a CA", i + 1, name);
            goto out;
        }
        if (X509_NAME_cmp(X509_get_issuer_name(below), X509_get_subject_name(up)) != 0 ||
            X509_verify(below, X509_get0_pubkey(up)) != 1) {
            snprintf(err, errlen, "chain certificate %d (%s) did not issue the one below it",
                     i + 1, name);
            goto out;
        }
        below = up;
    }
    rc = 0;
out:
    ERR_clear_error();
    return rc;
}

void ca_default_path(const config *cfg, const char *name, char *out, size_t outlen)
{
    const char *slash = strrchr(cfg->ca_cert, '/');
    if (slash == NULL)
        snprintf(out, outlen, "%s", name);
    else
        snprintf(out, outlen, "%.*s/%s", (int)(slash - cfg->ca_cert), cfg->ca_cert, name);
}

void ca_key_label(const char *cert_path, const char *cfg_label, char *out, size_t outlen)
{
    char path[CONFIG_PATH_MAX + 8], line[128];
    FILE *f;
    snprintf(out, outlen, "%s", cfg_label);
    if ((size_t)snprintf(path, sizeof(path), "%s.label", cert_path) >= sizeof(path) ||
        (f = fopen(path, "r")) == NULL)
        return;
    if (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] != '\0')
            snprintf(out, outlen, "%s", line);
    }
    fclose(f);
}

EVP_PKEY *ca_read_key_file(const char *path)
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
    sk_X509_pop_free(ca->chain, X509_free);
    free(ca->cacert_body);
    free(ca->nextca_body);
    hsm_token_close(ca->token);   /* after every key of the token is gone */
    free(ca);
}

static int load_keys(const config *cfg, const char *pin, ca_set *ca, char *err, size_t errlen)
{
    if (cfg->key_mode == CONFIG_KEYS_FILE) {
        ca->ca_key = ca_read_key_file(cfg->ca_key_file);
        if (ca->ca_key == NULL) {
            snprintf(err, errlen, "cannot read CA key file %s", cfg->ca_key_file);
            return -1;
        }
        if (ca->has_ra) {
            ca->ra_key = ca_read_key_file(cfg->ra_key_file);
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
    char label[64];
    ca_key_label(cfg->ca_cert, cfg->ca_key_label, label, sizeof(label));
    if (hsm_key_load(ca->token, label, &ca->ca_key) != 0) {
        snprintf(err, errlen, "CA key '%s': %s", label, hsm_last_error());
        return -1;
    }
    ca_key_label(cfg->ra_cert, cfg->ra_key_label, label, sizeof(label));
    if (ca->has_ra && hsm_key_load(ca->token, label, &ca->ra_key) != 0) {
        snprintf(err, errlen, "RA key '%s': %s", label, hsm_last_error());
        return -1;
    }
    return 0;
}

static int copy_out(const uint8_t *der, int n, uint8_t **out, size_t *outlen)
{
    if (n <= 0 || (*out = malloc((size_t)n)) == NULL)
        return -1;
    memcpy(*out, der, (size_t)n);
    *outlen = (size_t)n;
    return 0;
}

/* GetNextCACert (RFC 8894 4.7.1): a SignedData signed by the current CA key whose content is
 * the degenerate certificates-only PKCS#7 of the next CA certificate(s). Built once. */
static int build_next(ca_set *ca, const char *path, char *err, size_t errlen)
{
    STACK_OF(X509) *next = NULL;
    uint8_t *inner = NULL;
    size_t inner_len = 0;
    BIO *in = NULL;
    CMS_ContentInfo *cms = NULL;
    unsigned char *der = NULL;
    int n, rc = -1;

    if (ca_read_certs(path, &next) != 0) {
        snprintf(err, errlen, "cannot read the next CA certificate %s", path);
        goto out;
    }
    if (X509_check_ca(sk_X509_value(next, 0)) < 1) {
        snprintf(err, errlen, "%s: first certificate is not a CA", path);
        goto out;
    }
    if (scep_degenerate(next, &inner, &inner_len) != 0 ||
        (in = BIO_new_mem_buf(inner, (int)inner_len)) == NULL ||
        (cms = CMS_sign(ca->ca_cert, ca->ca_key, NULL, in, CMS_BINARY | CMS_NOSMIMECAP)) == NULL ||
        (n = i2d_CMS_ContentInfo(cms, &der)) <= 0 ||
        copy_out(der, n, &ca->nextca_body, &ca->nextca_len) != 0) {
        snprintf(err, errlen, "cannot build the GetNextCACert answer");
        goto out;
    }
    ca->nextca_type = "application/x-x509-next-ca-cert";
    ca->has_next = 1;
    rc = 0;
out:
    sk_X509_pop_free(next, X509_free);
    free(inner);
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    OPENSSL_free(der);
    return rc;
}

int ca_load(const config *cfg, const char *pin, ca_set **out, char *err, size_t errlen)
{
    return ca_load_ex(cfg, pin, NULL, out, err, errlen);
}

int ca_load_ex(const config *cfg, const char *pin, const ca_paths *extra, ca_set **out,
               char *err, size_t errlen)
{
    ca_set *ca = calloc(1, sizeof(*ca));
    STACK_OF(X509) *chain = NULL;
    char chain_path[CONFIG_PATH_MAX], next_path[CONFIG_PATH_MAX];
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

    if (extra != NULL && extra->ca_chain != NULL && extra->ca_chain[0] != '\0')
        snprintf(chain_path, sizeof(chain_path), "%s", extra->ca_chain);
    else
        ca_default_path(cfg, "ca-chain.pem", chain_path, sizeof(chain_path));
    if (access(chain_path, F_OK) == 0) {
        if (ca_read_certs(chain_path, &ca->chain) != 0) {
            snprintf(err, errlen, "cannot read the CA chain %s", chain_path);
            goto out;
        }
        if (ca_check_chain(ca->ca_cert, ca->chain, err, errlen) != 0)
            goto out;
    } else if ((ca->chain = sk_X509_new_null()) == NULL) {
        goto out;
    }

    if (ca->has_ra || sk_X509_num(ca->chain) > 0) {
        chain = sk_X509_new_null();
        int ok = chain != NULL && (!ca->has_ra || sk_X509_push(chain, ca->ra_cert)) &&
                 sk_X509_push(chain, ca->ca_cert);
        for (int i = 0; ok && i < sk_X509_num(ca->chain); i++)
            ok = sk_X509_push(chain, sk_X509_value(ca->chain, i)) > 0;
        if (!ok || scep_degenerate(chain, &ca->cacert_body, &ca->cacert_len) != 0) {
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
    if (extra != NULL && extra->next_ca_cert != NULL && extra->next_ca_cert[0] != '\0')
        snprintf(next_path, sizeof(next_path), "%s", extra->next_ca_cert);
    else
        ca_default_path(cfg, "next-ca.pem", next_path, sizeof(next_path));
    if (access(next_path, F_OK) == 0 && build_next(ca, next_path, err, errlen) != 0)
        goto out;
    ca->caps_len = (size_t)snprintf(ca->caps, sizeof(ca->caps), "%s%s", CA_CAPS,
                                    ca->has_next ? "GetNextCACert\n" : "");
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
