/* scepc: what a request is made of: keys, subject names, subjectAltNames, the PKCS#10
 * request and the transient self-signed signer certificate. See scep_client.h. */
#include "client/scep_client.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

/* ---- keys and names ---- */

int scepc_keygen(const scepc_ctx *ctx, const char *spec, EVP_PKEY **out)
{
    EVP_PKEY *key = NULL;
    OSSL_LIB_CTX *lib = scepc_ctx_libctx(ctx);
    const char *pq = scepc_ctx_propq(ctx);

    if (!spec)
        return SCEPC_E_KEYSPEC;
    if (strncasecmp(spec, "rsa", 3) == 0 && (spec[3] == '\0' || spec[3] == ':')) {
        char *end = NULL;
        unsigned long bits = spec[3] ? strtoul(spec + 4, &end, 10) : 2048;
        if ((end && *end) || bits < 1024 || bits > 16384)
            return SCEPC_E_KEYSPEC;
        key = EVP_PKEY_Q_keygen(lib, pq, "RSA", (size_t)bits);
    } else if (strncasecmp(spec, "ec:", 3) == 0 && spec[3]) {
        key = EVP_PKEY_Q_keygen(lib, pq, "EC", spec + 3);
    } else if (strcasecmp(spec, "ed25519") == 0) {
        key = EVP_PKEY_Q_keygen(lib, pq, "ED25519");
    } else {
        return SCEPC_E_KEYSPEC;
    }
    if (!key)
        return SCEPC_E_KEYSPEC;
    *out = key;
    return SCEPC_OK;
}

int scepc_name_parse(const char *text, X509_NAME **out)
{
    int rc = SCEPC_E_SUBJECT;
    X509_NAME *name = NULL;
    char *buf = NULL, *w;
    const char *r;

    if (!text || text[0] != '/' || !(name = X509_NAME_new()))
        goto out;
    if (!(buf = OPENSSL_malloc(strlen(text) + 1))) {
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    r = text + 1;
    while (*r) {
        char *type = buf, *value = NULL;
        w = buf;
        /* Copy one component, unescaping '\x', splitting at the first '='. */
        while (*r && *r != '/') {
            if (*r == '\\' && r[1])
                r++;
            else if (*r == '=' && !value) {
                *w++ = '\0';
                value = w;
                r++;
                continue;
            }
            *w++ = *r++;
        }
        *w = '\0';
        if (*r == '/')
            r++;
        if (!value || !*type || !*value)
            goto out;
        if (!X509_NAME_add_entry_by_txt(name, type, MBSTRING_UTF8, (unsigned char *)value, -1,
                                        -1, 0))
            goto out;
    }
    if (X509_NAME_entry_count(name) == 0)
        goto out;
    rc = SCEPC_OK;
out:
    if (rc == SCEPC_OK) {
        *out = name;
        name = NULL;
    }
    X509_NAME_free(name);
    OPENSSL_free(buf);
    return rc;
}

int scepc_san_parse(const char *text, scepc_san *out)
{
    static const struct { const char *p; scepc_san_type t; } t[] = {
        { "dns:", SCEPC_SAN_DNS }, { "email:", SCEPC_SAN_EMAIL }, { "uri:", SCEPC_SAN_URI },
        { "upn:", SCEPC_SAN_UPN }, { "ip:", SCEPC_SAN_IP }, { NULL, 0 },
    };
    for (size_t i = 0; text && t[i].p; i++) {
        size_t n = strlen(t[i].p);
        if (strncasecmp(text, t[i].p, n) == 0 && text[n]) {
            out->type = t[i].t;
            out->value = text + n;
            return SCEPC_OK;
        }
    }
    return SCEPC_E_SAN;
}

/* ---- CSR ---- */

static GENERAL_NAME *make_gen(const scepc_san *san)
{
    GENERAL_NAME *gen = NULL, *res = NULL;
    ASN1_IA5STRING *ia5 = NULL;
    ASN1_OBJECT *oid = NULL;
    ASN1_TYPE *val = NULL;
    ASN1_UTF8STRING *utf8 = NULL;
    ASN1_OCTET_STRING *ip = NULL;
    int type;

    switch (san->type) {
    case SCEPC_SAN_DNS: type = GEN_DNS; break;
    case SCEPC_SAN_EMAIL: type = GEN_EMAIL; break;
    case SCEPC_SAN_URI: type = GEN_URI; break;
    case SCEPC_SAN_UPN: type = GEN_OTHERNAME; break;
    case SCEPC_SAN_IP: type = GEN_IPADD; break;
    default: return NULL;
    }
    if (!san->value || !*san->value || !(gen = GENERAL_NAME_new()))
        goto out;
    if (type == GEN_OTHERNAME) {
        /* UPN: otherName { 1.3.6.1.4.1.311.20.2.3, [0] UTF8String } */
        if (!(oid = OBJ_txt2obj("1.3.6.1.4.1.311.20.2.3", 1)) || !(val = ASN1_TYPE_new())
            || !(utf8 = ASN1_UTF8STRING_new()) || !ASN1_STRING_set(utf8, san->value, -1))
            goto out;
        ASN1_TYPE_set(val, V_ASN1_UTF8STRING, utf8);
        utf8 = NULL;
        if (!GENERAL_NAME_set0_othername(gen, oid, val))
            goto out;
        oid = NULL;
        val = NULL;
    } else if (type == GEN_IPADD) {
        if (!(ip = a2i_IPADDRESS(san->value)))
            goto out;
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        ip = NULL;
    } else {
        for (const char *c = san->value; *c; c++)
            if ((unsigned char)*c > 0x7e || (unsigned char)*c < 0x20)
                goto out;
        if (!(ia5 = ASN1_IA5STRING_new()) || !ASN1_STRING_set(ia5, san->value, -1))
            goto out;
        GENERAL_NAME_set0_value(gen, type, ia5);
        ia5 = NULL;
    }
    res = gen;
    gen = NULL;
out:
    GENERAL_NAME_free(gen);
    ASN1_IA5STRING_free(ia5);
    ASN1_OBJECT_free(oid);
    ASN1_TYPE_free(val);
    ASN1_UTF8STRING_free(utf8);
    ASN1_OCTET_STRING_free(ip);
    return res;
}

/* PrintableString when every character allows it (what most servers expect), else UTF8. */
static int challenge_type(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(isalnum(c) || strchr(" '()+,-./:=?", c)))
            return V_ASN1_UTF8STRING;
    }
    return V_ASN1_PRINTABLESTRING;
}

int scepc_build_csr(const scepc_ctx *ctx, EVP_PKEY *key, const X509_NAME *subject,
                    const char *challenge, const scepc_san *sans, size_t nsans,
                    const STACK_OF(X509_EXTENSION) *extra, scepc_md md, X509_REQ **out)
{
    int rc = SCEPC_E_CRYPTO;
    X509_REQ *req = NULL;
    GENERAL_NAMES *gens = NULL;
    GENERAL_NAME *gen = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *ext = NULL;
    const EVP_MD *dg = scepc_ctx_md(ctx, md);

    if (!key || !subject || (nsans && !sans))
        return SCEPC_E_ARG;
    if (!dg && EVP_PKEY_get_id(key) != EVP_PKEY_ED25519)
        return SCEPC_E_ALG;
    if (!(req = X509_REQ_new_ex(scepc_ctx_libctx(ctx), scepc_ctx_propq(ctx)))
        || !X509_REQ_set_version(req, X509_REQ_VERSION_1)
        || !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, key))
        goto out;
    if (challenge && !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword,
                                                challenge_type(challenge),
                                                (const unsigned char *)challenge,
                                                (int)strlen(challenge)))
        goto out;
    if (!(exts = sk_X509_EXTENSION_new_null())) {
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    if (nsans) {
        if (!(gens = GENERAL_NAMES_new()))
            goto out;
        for (size_t i = 0; i < nsans; i++) {
            if (!(gen = make_gen(&sans[i]))) {
                rc = SCEPC_E_SAN;
                goto out;
            }
            if (!sk_GENERAL_NAME_push(gens, gen))
                goto out;
            gen = NULL;
        }
        if (!(ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens))
            || !sk_X509_EXTENSION_push(exts, ext))
            goto out;
        ext = NULL;
    }
    for (int i = 0; extra && i < sk_X509_EXTENSION_num(extra); i++) {
        if (!(ext = X509_EXTENSION_dup(sk_X509_EXTENSION_value(extra, i)))
            || !sk_X509_EXTENSION_push(exts, ext))
            goto out;
        ext = NULL;
    }
    if (sk_X509_EXTENSION_num(exts) > 0 && !X509_REQ_add_extensions(req, exts))
        goto out;
    if (X509_REQ_sign(req, key, EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 ? NULL : dg) <= 0)
        goto out;
    rc = SCEPC_OK;
out:
    if (rc == SCEPC_OK) {
        *out = req;
        req = NULL;
    }
    X509_REQ_free(req);
    GENERAL_NAMES_free(gens);
    GENERAL_NAME_free(gen);
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

int scepc_self_signed(const scepc_ctx *ctx, EVP_PKEY *key, const X509_NAME *subject,
                      scepc_md md, X509 **out)
{
    int rc = SCEPC_E_CRYPTO;
    X509 *cert = NULL;
    unsigned char sn[16];
    ASN1_INTEGER *serial = NULL;
    BIGNUM *bn = NULL;
    const EVP_MD *dg = scepc_ctx_md(ctx, md);

    if (!key || !subject)
        return SCEPC_E_ARG;
    if (!dg && EVP_PKEY_get_id(key) != EVP_PKEY_ED25519)
        return SCEPC_E_ALG;
    if (RAND_bytes_ex(scepc_ctx_libctx(ctx), sn, sizeof(sn), 0) <= 0)
        goto out;
    sn[0] &= 0x7f;
    sn[0] |= 0x40;
    if (!(bn = BN_bin2bn(sn, sizeof(sn), NULL)) || !(serial = BN_to_ASN1_INTEGER(bn, NULL)))
        goto out;
    if (!(cert = X509_new_ex(scepc_ctx_libctx(ctx), scepc_ctx_propq(ctx)))
        || !X509_set_version(cert, X509_VERSION_3) || !X509_set_serialNumber(cert, serial)
        || !X509_set_subject_name(cert, subject) || !X509_set_issuer_name(cert, subject)
        || !X509_gmtime_adj(X509_getm_notBefore(cert), -3600)
        || !X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600)
        || !X509_set_pubkey(cert, key))
        goto out;
    if (X509_sign(cert, key, EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 ? NULL : dg) <= 0)
        goto out;
    rc = SCEPC_OK;
out:
    if (rc == SCEPC_OK) {
        *out = cert;
        cert = NULL;
    }
    X509_free(cert);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}
