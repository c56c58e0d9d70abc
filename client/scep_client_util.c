/* scepc: everything around the pkiMessage itself: error names, GetCACaps, GetCACert, keys,
 * names, CSRs, transient signer certificates, files. */
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

static const char *const err_names[] = {
#define SCEPC_X(name, msg) #name,
    SCEPC_ERRORS(SCEPC_X)
#undef SCEPC_X
};
static const char *const err_msgs[] = {
#define SCEPC_X(name, msg) msg,
    SCEPC_ERRORS(SCEPC_X)
#undef SCEPC_X
};

const char *scepc_errname(int err)
{
    return err >= 0 && err < SCEPC_E__COUNT ? err_names[err] : "UNKNOWN";
}

const char *scepc_strerror(int err)
{
    return err >= 0 && err < SCEPC_E__COUNT ? err_msgs[err] : "unknown error";
}

void scepc_free(void *p)
{
    OPENSSL_free(p);
}

const char *scepc_status_name(int status)
{
    switch (status) {
    case SCEPC_SUCCESS: return "SUCCESS";
    case SCEPC_FAILURE: return "FAILURE";
    case SCEPC_PENDING: return "PENDING";
    default: return "?";
    }
}

const char *scepc_failinfo_name(int failinfo)
{
    static const char *const names[] = { "badAlg", "badMessageCheck", "badRequest", "badTime",
                                         "badCertId" };
    if (failinfo == SCEPC_FAIL_NONE)
        return "-";
    return failinfo >= 0 && failinfo <= SCEPC_FAIL_BADCERTID ? names[failinfo] : "?";
}

int scepc_md_from_name(const char *name, scepc_md *out)
{
    static const struct { const char *n; scepc_md md; } t[] = {
        { "sha1", SCEPC_MD_SHA1 }, { "sha256", SCEPC_MD_SHA256 },
        { "sha384", SCEPC_MD_SHA384 }, { "sha512", SCEPC_MD_SHA512 }, { NULL, 0 },
    };
    for (size_t i = 0; name && t[i].n; i++)
        if (strcasecmp(name, t[i].n) == 0) {
            *out = t[i].md;
            return SCEPC_OK;
        }
    return SCEPC_E_ARG;
}

int scepc_cipher_from_name(const char *name, scepc_cipher *out)
{
    static const struct { const char *n; scepc_cipher c; } t[] = {
        { "aes128", SCEPC_CIPHER_AES128 }, { "aes", SCEPC_CIPHER_AES128 },
        { "aes192", SCEPC_CIPHER_AES192 }, { "aes256", SCEPC_CIPHER_AES256 },
        { "des3", SCEPC_CIPHER_DES3 }, { NULL, 0 },
    };
    for (size_t i = 0; name && t[i].n; i++)
        if (strcasecmp(name, t[i].n) == 0) {
            *out = t[i].c;
            return SCEPC_OK;
        }
    return SCEPC_E_ARG;
}

/* ---- GetCACaps ---- */

unsigned scepc_parse_caps(const char *text, size_t len)
{
    static const struct { const char *n; unsigned f; } t[] = {
        { "POSTPKIOperation", SCEPC_CAP_POSTPKIOPERATION }, { "SHA-1", SCEPC_CAP_SHA1 },
        { "SHA-256", SCEPC_CAP_SHA256 }, { "SHA-512", SCEPC_CAP_SHA512 },
        { "AES", SCEPC_CAP_AES }, { "DES3", SCEPC_CAP_DES3 },
        { "SCEPStandard", SCEPC_CAP_SCEPSTANDARD }, { "Renewal", SCEPC_CAP_RENEWAL },
        { "GetNextCACert", SCEPC_CAP_GETNEXTCACERT }, { NULL, 0 },
    };
    unsigned flags = 0;
    size_t pos = 0;

    while (text && pos < len) {
        size_t start = pos, end;
        while (pos < len && text[pos] != '\n')
            pos++;
        end = pos++;
        while (start < end && isspace((unsigned char)text[start]))
            start++;
        while (end > start && isspace((unsigned char)text[end - 1]))
            end--;
        for (size_t i = 0; t[i].n; i++)
            if (strlen(t[i].n) == end - start && strncasecmp(t[i].n, text + start, end - start) == 0)
                flags |= t[i].f;
    }
    return flags;
}

/* ---- GetCACert ---- */

struct scepc_caset {
    STACK_OF(X509) *certs;
    X509 *ca, *recipient, *signer;   /* borrowed from certs */
};

void scepc_caset_destroy(scepc_caset *set)
{
    if (!set)
        return;
    sk_X509_pop_free(set->certs, X509_free);
    OPENSSL_free(set);
}

X509 *scepc_caset_ca(const scepc_caset *set) { return set->ca; }
X509 *scepc_caset_recipient(const scepc_caset *set) { return set->recipient; }
X509 *scepc_caset_signer(const scepc_caset *set) { return set->signer; }
STACK_OF(X509) *scepc_caset_certs(const scepc_caset *set) { return set->certs; }

static int issued(X509 *issuer, X509 *subject)
{
    return issuer != subject && X509_check_issued(issuer, subject) == X509_V_OK;
}

static int self_signed(X509 *c)
{
    return X509_NAME_cmp(X509_get_subject_name(c), X509_get_issuer_name(c)) == 0;
}

/* The CA is the CA certificate that issued the RA certificates; failing that the CA that
 * issued no other CA in the set (the one lowest in a chain); failing basicConstraints, the
 * self-signed one or the only one. */
static X509 *pick_ca(STACK_OF(X509) *certs)
{
    int n = sk_X509_num(certs);
    X509 *fallback = NULL;

    for (int i = 0; i < n; i++) {
        X509 *c = sk_X509_value(certs, i);
        if (X509_check_ca(c) <= 0)
            continue;
        for (int j = 0; j < n; j++) {
            X509 *o = sk_X509_value(certs, j);
            if (X509_check_ca(o) <= 0 && issued(c, o))
                return c;
        }
    }
    for (int i = 0; i < n && !fallback; i++) {
        X509 *c = sk_X509_value(certs, i);
        int issues_ca = 0;
        if (X509_check_ca(c) <= 0)
            continue;
        for (int j = 0; j < n; j++) {
            X509 *o = sk_X509_value(certs, j);
            if (X509_check_ca(o) > 0 && issued(c, o))
                issues_ca = 1;
        }
        if (!issues_ca)
            fallback = c;
    }
    for (int i = 0; i < n && !fallback; i++)
        if (self_signed(sk_X509_value(certs, i)))
            fallback = sk_X509_value(certs, i);
    return fallback ? fallback : sk_X509_value(certs, 0);
}

/* A non-CA certificate allowing usage ku; an explicit keyUsage is preferred over none. */
static X509 *pick_ra(STACK_OF(X509) *certs, X509 *ca, uint32_t ku)
{
    X509 *any = NULL;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (c == ca || X509_check_ca(c) > 0)
            continue;
        if (!(X509_get_extension_flags(c) & EXFLAG_KUSAGE)) {
            if (!any)
                any = c;
            continue;
        }
        if (X509_get_key_usage(c) & ku)
            return c;
    }
    return any;
}

int scepc_caset_from_certs(STACK_OF(X509) *certs, scepc_caset **out)
{
    int rc = SCEPC_OK;
    scepc_caset *set = NULL;

    if (!certs || sk_X509_num(certs) == 0)
        return SCEPC_E_CACERT_EMPTY;
    if (!(set = OPENSSL_zalloc(sizeof(*set))) || !(set->certs = X509_chain_up_ref(certs))) {
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    set->ca = pick_ca(set->certs);
    set->recipient = pick_ra(set->certs, set->ca, KU_KEY_ENCIPHERMENT);
    set->signer = pick_ra(set->certs, set->ca, KU_DIGITAL_SIGNATURE);
    if (!set->recipient)
        set->recipient = set->ca;
    if (!set->signer)
        set->signer = set->ca;
    /* With RA certificates present, falling back to a CA whose keyUsage forbids key transport
     * (RSA) and key agreement (EC) would encrypt to a key the server does not decrypt with.
     * A lone CA certificate is used as it is: that is how single-cert servers work. */
    if (set->recipient == set->ca && sk_X509_num(set->certs) > 1
        && (X509_get_extension_flags(set->ca) & EXFLAG_KUSAGE)
        && !(X509_get_key_usage(set->ca) & (KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT))) {
        rc = SCEPC_E_CACERT_NO_RECIPIENT;
        goto out;
    }
out:
    if (rc == SCEPC_OK) {
        *out = set;
        set = NULL;
    }
    scepc_caset_destroy(set);
    return rc;
}

/* Compares the media type of a Content-Type value, ignoring parameters and case. */
static int ctype_is(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    if (strncasecmp(ctype, want, n) != 0)
        return 0;
    ctype += n;
    while (*ctype == ' ' || *ctype == '\t')
        ctype++;
    return *ctype == '\0' || *ctype == ';';
}

int scepc_parse_cacert(const uint8_t *body, size_t len, const char *content_type,
                       scepc_caset **out)
{
    int rc = SCEPC_OK;
    int want_single;
    X509 *cert = NULL;
    CMS_ContentInfo *cms = NULL;
    STACK_OF(X509) *certs = NULL;
    const unsigned char *p = body;

    if (!body || len == 0 || len > LONG_MAX)
        return SCEPC_E_CACERT_PARSE;
    if (!content_type)
        want_single = (cert = d2i_X509(NULL, &p, (long)len)) != NULL;
    else if (ctype_is(content_type, "application/x-x509-ca-cert"))
        want_single = 1;
    else if (ctype_is(content_type, "application/x-x509-ca-ra-cert"))
        want_single = 0;
    else
        return SCEPC_E_CACERT_CTYPE;

    if (want_single) {
        if (!cert && !(cert = d2i_X509(NULL, &p, (long)len))) {
            rc = SCEPC_E_CACERT_PARSE;
            goto out;
        }
        if (!(certs = sk_X509_new_null()) || !sk_X509_push(certs, cert)) {
            rc = SCEPC_E_NOMEM;
            goto out;
        }
        cert = NULL;
    } else {
        p = body;
        if (!(cms = d2i_CMS_ContentInfo(NULL, &p, (long)len))
            || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
            rc = SCEPC_E_CACERT_PARSE;
            goto out;
        }
        certs = CMS_get1_certs(cms);
    }
    rc = scepc_caset_from_certs(certs, out);
out:
    X509_free(cert);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    return rc;
}

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

/* ---- files ---- */

int scepc_read_file(const char *path, uint8_t **data, size_t *len)
{
    int rc = SCEPC_E_IO;
    FILE *f = NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;

    if (!path || !(f = fopen(path, "rb")))
        goto out;
    for (;;) {
        if (cap - n < 4096) {
            uint8_t *nb = OPENSSL_realloc(buf, cap ? cap * 2 : 16384);
            if (!nb) {
                rc = SCEPC_E_NOMEM;
                goto out;
            }
            buf = nb;
            cap = cap ? cap * 2 : 16384;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        goto out;
    buf[n] = '\0';
    rc = SCEPC_OK;
out:
    if (rc == SCEPC_OK) {
        *data = buf;
        *len = n;
        buf = NULL;
    }
    OPENSSL_free(buf);
    if (f)
        fclose(f);
    return rc;
}

static int write_mode(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    const uint8_t *p = data;
    int rc = SCEPC_OK;

    if (fd < 0)
        return SCEPC_E_IO;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = SCEPC_E_IO;
            break;
        }
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) != 0)
        rc = SCEPC_E_IO;
    return rc;
}

int scepc_write_file(const char *path, const void *data, size_t len)
{
    return write_mode(path, data, len, 0644);
}

/* Writes what a BIO collected, so every writer shares one file path. */
static int write_bio(const char *path, BIO *bio, mode_t mode)
{
    char *p = NULL;
    long n = BIO_get_mem_data(bio, &p);
    return n < 0 ? SCEPC_E_CRYPTO : write_mode(path, p, (size_t)n, mode);
}

int scepc_write_cert(const char *path, X509 *cert, int pem)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = SCEPC_E_CRYPTO;
    if (b && (pem ? PEM_write_bio_X509(b, cert) : i2d_X509_bio(b, cert)))
        rc = write_bio(path, b, 0644);
    BIO_free(b);
    return rc;
}

int scepc_write_crl(const char *path, X509_CRL *crl, int pem)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = SCEPC_E_CRYPTO;
    if (b && (pem ? PEM_write_bio_X509_CRL(b, crl) : i2d_X509_CRL_bio(b, crl)))
        rc = write_bio(path, b, 0644);
    BIO_free(b);
    return rc;
}

int scepc_write_key(const char *path, EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    int rc = SCEPC_E_CRYPTO;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL))
        rc = write_bio(path, b, 0600);
    BIO_free(b);
    return rc;
}

int scepc_read_cert(const char *path, X509 **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    BIO *b = NULL;
    X509 *cert = NULL;
    const unsigned char *p;
    int rc = scepc_read_file(path, &data, &len);

    if (rc != SCEPC_OK)
        return rc;
    p = data;
    if (len > 0 && data[0] == 0x30)
        cert = d2i_X509(NULL, &p, (long)len);
    else if ((b = BIO_new_mem_buf(data, (int)len)))
        cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (cert)
        *out = cert;
    else
        rc = SCEPC_E_CRYPTO;
    BIO_free(b);
    OPENSSL_free(data);
    return rc;
}

int scepc_read_key(const scepc_ctx *ctx, const char *path, EVP_PKEY **out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    BIO *b = NULL;
    EVP_PKEY *key = NULL;
    int rc = scepc_read_file(path, &data, &len);

    if (rc != SCEPC_OK)
        return rc;
    if ((b = BIO_new_mem_buf(data, (int)len)))
        key = len > 0 && data[0] == 0x30
                  ? d2i_PrivateKey_ex_bio(b, NULL, scepc_ctx_libctx(ctx), scepc_ctx_propq(ctx))
                  : PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, scepc_ctx_libctx(ctx),
                                               scepc_ctx_propq(ctx));
    if (key)
        *out = key;
    else
        rc = SCEPC_E_CRYPTO;
    BIO_free(b);
    OPENSSL_clear_free(data, len);
    return rc;
}
