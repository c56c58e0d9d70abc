/* Certificates and keys scepctl makes. See ctl_cert.h. */
#include "engine/ctl/ctl_cert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/policy/challenge.h"

X509_NAME *ctl_parse_dn(const char *dn)
{
    X509_NAME *n = challenge_parse_subject(dn);
    if (n == NULL)
        fprintf(stderr, "scepctl: bad subject '%s' (want /CN=.../O=...)\n", dn);
    return n;
}

EVP_PKEY *ctl_key_file_new(const char *path, const char *spec)
{
    EVP_PKEY *k = NULL;
    if (strncmp(spec, "rsa:", 4) == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(spec + 4));
    else if (strncmp(spec, "ec:", 3) == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", spec + 3);
    if (k == NULL) {
        errno = EINVAL;
        return NULL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok = f != NULL && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1;
    int e = errno;
    if (f != NULL)
        ok = fclose(f) == 0 && ok;
    else if (fd >= 0)
        close(fd);
    if (!ok) {
        EVP_PKEY_free(k);
        k = NULL;
        errno = e;
    }
    return k;
}

int ctl_write_certs(const char *path, STACK_OF(X509) *certs, X509 *one)
{
    char tmp[CONFIG_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f != NULL;
    if (one != NULL && ok)
        ok = PEM_write_X509(f, one) == 1;
    for (int i = 0; ok && i < sk_X509_num(certs); i++)
        ok = PEM_write_X509(f, sk_X509_value(certs, i)) == 1;
    if (f != NULL && (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0))
        ok = 0;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "scepctl: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    return ok ? 0 : -1;
}

const EVP_MD *ctl_sign_md(EVP_PKEY *k)
{
    return EVP_PKEY_get_base_id(k) == EVP_PKEY_EC && EVP_PKEY_get_bits(k) == 384 ? EVP_sha384()
                                                                                  : EVP_sha256();
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = e != NULL && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok;
}

/* A certificate for pub issued by issuer/issuer_key (issuer NULL: self-signed). notAfter is
 * now + days, capped at the issuer's notAfter. */
X509 *ctl_make_cert(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key,
                    int days, enum ctl_cert_kind kind)
{
    X509 *x = X509_new();
    uint8_t sb[16];
    BIGNUM *bn = NULL;
    int ok = 0;
    time_t now = time(NULL);

    if (x == NULL || RAND_bytes(sb, sizeof(sb)) != 1)
        goto out;
    sb[0] = (uint8_t)((sb[0] & 0x3f) | 0x40);
    bn = BN_bin2bn(sb, sizeof(sb), NULL);
    if (bn == NULL || !X509_set_version(x, X509_VERSION_3) ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        !X509_set_subject_name(x, subject) ||
        !X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : subject) ||
        X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) == NULL || !X509_set_pubkey(x, pub))
        goto out;
    if (issuer != NULL && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(issuer)) > 0 &&
        !X509_set1_notAfter(x, X509_get0_notAfter(issuer)))
        goto out;
    X509 *iss = issuer != NULL ? issuer : x;
    int is_ca = kind == CTL_CERT_CA;
    const char *ku = is_ca ? "critical,keyCertSign,cRLSign,digitalSignature"
                   : kind == CTL_CERT_OCSP ? "critical,digitalSignature"
                   : "critical,digitalSignature,keyEncipherment";
    if (!add_ext(x, iss, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") ||
        !add_ext(x, iss, NID_key_usage, ku) ||
        !add_ext(x, iss, NID_subject_key_identifier, "hash") ||
        !add_ext(x, iss, NID_authority_key_identifier, "keyid:always"))
        goto out;
    /* A delegated OCSP responder: RFC 6960 4.2.2.2 (EKU) and 4.2.2.2.1 (no-check). */
    if (kind == CTL_CERT_OCSP && (!add_ext(x, iss, NID_ext_key_usage, "OCSPSigning") ||
                                  !add_ext(x, iss, NID_id_pkix_OCSP_noCheck, "ignored")))
        goto out;
    if (X509_sign(x, issuer_key, ctl_sign_md(issuer_key)) <= 0)
        goto out;
    ok = 1;
out:
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

