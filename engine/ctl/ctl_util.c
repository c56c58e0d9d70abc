/* Certificate helpers shared by scepctl's commands. See ctl_util.h. */
#include "engine/ctl/ctl_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bn.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

X509_NAME *ctl_parse_dn(const char *dn)
{
    X509_NAME *n = X509_NAME_new();
    char *copy = strdup(dn), *save = NULL;
    int ok = n != NULL && copy != NULL && dn[0] == '/';
    for (char *tok = ok ? strtok_r(copy, "/", &save) : NULL; ok && tok != NULL;
         tok = strtok_r(NULL, "/", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL || eq == tok || eq[1] == '\0') {
            ok = 0;
            break;
        }
        *eq = '\0';
        ok = X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0);
    }
    if (ok && X509_NAME_entry_count(n) == 0)
        ok = 0;
    free(copy);
    if (!ok) {
        fprintf(stderr, "scepctl: bad subject '%s' (want /CN=.../O=...)\n", dn);
        X509_NAME_free(n);
        n = NULL;
    }
    return n;
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

