/* Server side of the SCEP message codec. See scep.h. */
#include "engine/scep/scep.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>

#include "engine/scep/certrep_der.h"
#include "engine/scep/der.h"
#include "engine/scep/envelope_der.h"
#include "engine/scep/fastpath.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"
#include "engine/scep/scep_oid.h"

const char *scep_failinfo_name(int failinfo)
{
    switch (failinfo) {
#define X(name, val, text) case val: return text;
    SCEP_FAILINFO(X)
#undef X
    default: return "-";
    }
}

void scep_request_clear(scep_request *req)
{
    if (req == NULL)
        return;
    CMS_ContentInfo_free(req->cms);
    X509_free(req->signer);
    EVP_PKEY_free(req->signer_key);
    OPENSSL_clear_free(req->inner, req->inner_len);
    memset(req, 0, sizeof(*req));
    req->msg_type = -1;
}

/* The single value of a signed attribute, or NULL. */
static const ASN1_TYPE *signed_attr(CMS_SignerInfo *si, int nid)
{
    int idx = CMS_signed_get_attr_by_NID(si, nid, -1);
    if (idx < 0)
        return NULL;
    X509_ATTRIBUTE *a = CMS_signed_get_attr(si, idx);
    if (a == NULL || X509_ATTRIBUTE_count(a) != 1)
        return NULL;
    return X509_ATTRIBUTE_get0_type(a, 0);
}

/* String-typed attribute value (PrintableString as the RFC says; UTF8/IA5 tolerated). */
static const ASN1_STRING *string_attr(CMS_SignerInfo *si, int nid)
{
    const ASN1_TYPE *t = signed_attr(si, nid);
    if (t == NULL)
        return NULL;
    switch (t->type) {
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_UTF8STRING:
    case V_ASN1_IA5STRING:
        return t->value.asn1_string;
    default:
        return NULL;
    }
}

static int digest_allowed(int nid, int allow_sha1)
{
    return nid == NID_sha256 || nid == NID_sha384 || nid == NID_sha512 ||
           (allow_sha1 && nid == NID_sha1);
}

/* The transactionID becomes a store key, a C string and an audit field: accepted only as 1 to
 * SCEP_TXID_MAX bytes of printable ASCII (never cut at a NUL or at the limit). Returns 1 when
 * accepted (req->txid is then exactly the bytes sent), else 0 with req->txid holding what
 * the audit log shows of it: '?' for each byte outside 0x20..0x7e, and past the limit the
 * first SCEP_TXID_MAX - 3 bytes and "...". */
static int take_txid(const ASN1_STRING *tid, scep_request *req)
{
    size_t n = (size_t)tid->length;
    size_t shown = n > SCEP_TXID_MAX ? SCEP_TXID_MAX - 3 : n;
    int ok = n <= SCEP_TXID_MAX;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = tid->data[i];
        int printable = c >= 0x20 && c <= 0x7e;
        ok = ok && printable;
        if (i < shown)
            req->txid[i] = printable ? (char)c : '?';
    }
    if (n > SCEP_TXID_MAX) {
        memcpy(req->txid + shown, "...", 3);
        shown += 3;
    }
    req->txid[shown] = '\0';
    req->txid_len = shown;
    return ok;
}

/* The outer message: fast, in the provider-less library context (no certificate's key is
 * decoded: fastpath.h); else the ordinary way. NULL unless it is exactly len bytes of DER/BER
 * ContentInfo. */
static CMS_ContentInfo *parse_cms(const uint8_t *der, size_t len, int fast)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = fast
        ? (CMS_ContentInfo *)ASN1_item_d2i_ex(NULL, &p, (long)len, ASN1_ITEM_rptr(CMS_ContentInfo),
                                              scep_key_nodecode_libctx(), NULL)
        : d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (cms != NULL && p != der + len) {
        CMS_ContentInfo_free(cms);
        cms = NULL;
    }
    return cms;
}

/* The signature, and req->signer_key. Fast: the signer's key decoded once (keycache.h) and
 * the common shape checked by scep_fast_verify (anything else is a failure here: the caller
 * then runs the ordinary pass). Ordinary: CMS_verify with the included signer certificate;
 * no chain building (authorisation is the caller's business). */
static int verify_signer(scep_request *req, CMS_SignerInfo *si, int fast)
{
    if (fast) {
        req->signer_key = scep_key_get1(X509_get_X509_PUBKEY(req->signer));
        return scep_fast_verify(req->cms, si, req->signer_key, req->sig_md_nid)
                   ? REJ_NONE : REJ_BAD_SIGNATURE;
    }
    STACK_OF(X509) *one = sk_X509_new_null();
    if (one == NULL || !sk_X509_push(one, req->signer)) {
        sk_X509_free(one);
        return REJ_INTERNAL;
    }
    int ok = CMS_verify(req->cms, one, NULL, NULL, NULL,
                        CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY);
    sk_X509_free(one);
    if (ok != 1 || (req->signer_key = X509_get_pubkey(req->signer)) == NULL) {
        ERR_clear_error();
        return REJ_BAD_SIGNATURE;
    }
    /* The CSR inside usually carries the same key: issue_check_request takes it from here
     * instead of decoding it again (keycache.h). */
    scep_key_remember(X509_get_X509_PUBKEY(req->signer), req->signer_key);
    return REJ_NONE;
}

/* One parsing pass (see scep_parse and verify_signer for fast). */
static int parse_pass(const uint8_t *der, size_t len, int allow_sha1, scep_request *req,
                      int fast)
{
    const scep_oids *oids = scep_oid_get();
    STACK_OF(X509) *certs = NULL;
    int rc = REJ_NOT_PKIMESSAGE;

    memset(req, 0, sizeof(*req));
    req->msg_type = -1;
    if (oids == NULL)
        goto out;
    if (len == 0 || len > (size_t)LONG_MAX)
        goto out;
    req->cms = parse_cms(der, len, fast);
    if (req->cms == NULL ||
        OBJ_obj2nid(CMS_get0_type(req->cms)) != NID_pkcs7_signed)
        goto out;
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(req->cms);
    if (sis == NULL || sk_CMS_SignerInfo_num(sis) != 1)
        goto out;
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);

    /* From here on the message is a pkiMessage: failures are CertRep FAILUREs. Collect the
     * addressing attributes first so the CertRep can echo them. */
    const ASN1_STRING *tid = string_attr(si, oids->transaction_id);
    int txid_ok = 1;
    if (tid != NULL && tid->length > 0) {
        req->txid_sent = tid;
        txid_ok = take_txid(tid, req);
    }
    const ASN1_TYPE *nonce = signed_attr(si, oids->sender_nonce);
    if (nonce != NULL && nonce->type == V_ASN1_OCTET_STRING &&
        nonce->value.octet_string->length == SCEP_NONCE_LEN) {
        memcpy(req->sender_nonce, nonce->value.octet_string->data, SCEP_NONCE_LEN);
        req->has_nonce = 1;
    }
    const ASN1_STRING *mt = string_attr(si, oids->message_type);
    if (mt != NULL && mt->length > 0 && mt->length <= 4) {
        int v = 0;
        for (int i = 0; i < mt->length; i++) {
            if (mt->data[i] < '0' || mt->data[i] > '9') {
                v = -1;
                break;
            }
            v = v * 10 + (mt->data[i] - '0');
        }
        req->msg_type = v;
    }

    /* The signer certificate travels in the SignedData; initial enrollment signs with a
     * self-signed one, renewal with a certificate we issued (checked by the caller). */
    certs = CMS_get1_certs(req->cms);
    for (int i = 0; certs != NULL && i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (CMS_SignerInfo_cert_cmp(si, c) == 0) {
            if (!X509_up_ref(c))
                goto out;
            req->signer = c;
            break;
        }
    }

    rc = REJ_MISSING_ATTR;
    if (req->txid_len == 0 || !req->has_nonce || req->msg_type < 0)
        goto out;
    rc = REJ_BAD_TXID;
    if (!txid_ok)
        goto out;
    rc = REJ_NO_SIGNER_CERT;
    if (req->signer == NULL)
        goto out;
    X509_ALGOR *dig = NULL, *sig = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
    req->sig_md_nid = dig != NULL ? OBJ_obj2nid(dig->algorithm) : NID_undef;
    if (!digest_allowed(req->sig_md_nid, allow_sha1)) {
        rc = REJ_SIG_DIGEST;
        goto out;
    }

    rc = verify_signer(req, si, fast);
    if (rc != REJ_NONE)
        goto out;

    /* The envelope is read where it lies, in req->cms (no copy). */
    ASN1_OCTET_STRING **content = CMS_get0_content(req->cms);
    if (content != NULL && *content != NULL && (*content)->length > 0) {
        req->envelope = (*content)->data;
        req->envelope_len = (size_t)(*content)->length;
    }
    rc = REJ_NONE;
out:
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return rc;
}

int scep_parse(const uint8_t *der, size_t len, int allow_sha1, scep_request *req)
{
    /* Only a verified message is taken from the fast pass: whatever it refuses (or cannot
     * do) is parsed again and decided by the ordinary one, so answers never depend on it. */
    int rc = scep_key_nodecode_libctx() != NULL ? parse_pass(der, len, allow_sha1, req, 1)
                                                : REJ_INTERNAL;
    if (rc != REJ_NONE) {
        scep_request_clear(req);
        rc = parse_pass(der, len, allow_sha1, req, 0);
    }
    return rc;
}

const EVP_CIPHER *scep_cipher_for_nid(int nid)
{
    /* The built-in cipher descriptors are static; CMS fetches the implementation by name. */
    switch (nid) {
    case NID_aes_128_cbc: return EVP_aes_128_cbc();
    case NID_aes_192_cbc: return EVP_aes_192_cbc();
    case NID_aes_256_cbc: return EVP_aes_256_cbc();
    case NID_des_ede3_cbc: return EVP_des_ede3_cbc();
    default: return NULL;
    }
}

int scep_open_envelope(scep_request *req, EVP_PKEY *ra_key, X509 *ra_cert, int allow_des)
{
    const unsigned char *p = req->envelope;
    PKCS7 *p7 = NULL;
    CMS_ContentInfo *env = NULL;
    BIO *out = NULL;
    int rc = REJ_NO_ENVELOPE;

    if (req->envelope == NULL)
        goto out;
    /* The common envelope read and decrypted in place (envelope_der.h); anything that reader
     * does not take is decided by OpenSSL's CMS below, as before. */
    rc = scep_envelope_der(req, ra_key, ra_cert);
    if (rc != SCEP_ENVELOPE_NOT_HANDLED)
        goto out;
    rc = REJ_NO_ENVELOPE;
    /* The CMS API hides the content-encryption algorithm; the PKCS7 view shows it. */
    p7 = d2i_PKCS7(NULL, &p, (long)req->envelope_len);
    if (p7 == NULL || !PKCS7_type_is_enveloped(p7) || p7->d.enveloped == NULL ||
        p7->d.enveloped->enc_data == NULL || p7->d.enveloped->enc_data->algorithm == NULL)
        goto out;
    req->cipher_nid = OBJ_obj2nid(p7->d.enveloped->enc_data->algorithm->algorithm);
    if (scep_cipher_for_nid(req->cipher_nid) == NULL &&
        !(allow_des && req->cipher_nid == NID_des_cbc)) {
        rc = REJ_CIPHER;
        goto out;
    }
    p = req->envelope;
    env = d2i_CMS_ContentInfo(NULL, &p, (long)req->envelope_len);
    out = BIO_new(BIO_s_mem());
    if (env == NULL || out == NULL)
        goto out;
    if (CMS_decrypt_set1_pkey_and_peer(env, ra_key, ra_cert, NULL) != 1 ||
        CMS_decrypt(env, NULL, NULL, NULL, out, CMS_BINARY) != 1) {
        rc = REJ_DECRYPT;
        goto out;
    }
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    if (n <= 0)
        goto out;
    req->inner = malloc((size_t)n);
    if (req->inner == NULL) {
        rc = REJ_INTERNAL;
        goto out;
    }
    memcpy(req->inner, data, (size_t)n);
    req->inner_len = (size_t)n;
    rc = REJ_NONE;
out:
    PKCS7_free(p7);
    CMS_ContentInfo_free(env);
    BIO_free(out);
    ERR_clear_error();
    return rc;
}

/* Degenerate certificates-only SignedData, written as DER around ready-made bytes (the
 * certificates, or a published CRL that may be megabytes: parsing it into an X509_CRL only to
 * encode it again would cost more than the rest of the answer). RFC 8894 section 3.4: the
 * content MUST be omitted, so encapContentInfo is { id-data } with no eContent.
 *   ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [tag] { body }, {} } }
 * tag is 0xa0 (certificates [0], kept in the given order: RA first) or 0xa1 (crls [1]). */
static const uint8_t OID_SIGNED_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02 };
static const uint8_t OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01 };

static int degenerate(uint8_t tag, const uint8_t *body, size_t body_len, uint8_t **out,
                      size_t *outlen)
{
    size_t set = body_len > 0 ? der_hdr_size(body_len) + body_len : 0;
    size_t sd_inner = 3 + 2 + (2 + sizeof(OID_DATA)) + set + 2;
    size_t sd = der_hdr_size(sd_inner) + sd_inner;
    size_t ci_inner = sizeof(OID_SIGNED_DATA) + der_hdr_size(sd) + sd;
    size_t total = der_hdr_size(ci_inner) + ci_inner;
    uint8_t *b = malloc(total), *p = b;
    if (b == NULL)
        return -1;
    p = der_hdr(p, 0x30, ci_inner);
    memcpy(p, OID_SIGNED_DATA, sizeof(OID_SIGNED_DATA));
    p += sizeof(OID_SIGNED_DATA);
    p = der_hdr(p, 0xa0, sd);
    p = der_hdr(p, 0x30, sd_inner);
    *p++ = 0x02; *p++ = 0x01; *p++ = 0x01;          /* version 1 */
    *p++ = 0x31; *p++ = 0x00;                       /* digestAlgorithms {} */
    p = der_hdr(p, 0x30, sizeof(OID_DATA));          /* encapContentInfo { data }, no eContent */
    memcpy(p, OID_DATA, sizeof(OID_DATA));
    p += sizeof(OID_DATA);
    if (body_len > 0) {
        p = der_hdr(p, tag, body_len);
        memcpy(p, body, body_len);
        p += body_len;
    }
    *p++ = 0x31; *p++ = 0x00;                       /* signerInfos {} */
    *out = b;
    *outlen = (size_t)(p - b);
    return 0;
}

int scep_degenerate(STACK_OF(X509) *certs, uint8_t **out, size_t *outlen)
{
    uint8_t *body = NULL, *p;
    size_t len = 0;
    int rc = -1;

    for (int i = 0; i < sk_X509_num(certs); i++) {
        int n = i2d_X509(sk_X509_value(certs, i), NULL);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    if (len > 0 && (body = malloc(len)) == NULL)
        return -1;
    p = body;
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (i2d_X509(sk_X509_value(certs, i), &p) <= 0)
            goto out;
    rc = degenerate(0xa0, body, len, out, outlen);
out:
    free(body);
    return rc;
}

int scep_degenerate_crl(const uint8_t *crl, size_t crl_len, uint8_t **out, size_t *outlen)
{
    return degenerate(0xa1, crl, crl_len, out, outlen);
}

int scep_degenerate_der(const uint8_t *certs, size_t len, uint8_t **out, size_t *outlen)
{
    return degenerate(0xa0, certs, len, out, outlen);
}

/* DER of a CMS ContentInfo into a malloc'd buffer. */
static int cms_der(CMS_ContentInfo *cms, uint8_t **out, size_t *outlen)
{
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    if (n <= 0)
        return -1;
    *out = malloc((size_t)n);
    if (*out == NULL) {
        OPENSSL_free(der);
        return -1;
    }
    memcpy(*out, der, (size_t)n);
    *outlen = (size_t)n;
    OPENSSL_free(der);
    return 0;
}

static int add_string_attr(CMS_SignerInfo *si, int nid, const char *s, size_t len)
{
    return CMS_signed_add1_attr_by_NID(si, nid, V_ASN1_PRINTABLESTRING, s, (int)len) == 1;
}

/* The pkcsPKIEnvelope of a SUCCESS: content (a degenerate SignedData) encrypted to the
 * requester's signer certificate with the client's cipher (DES3 for a single-DES request). */
static int encrypt_to_requester(const scep_request *req, const uint8_t *content, size_t len,
                                uint8_t **out, size_t *outlen)
{
    BIO *in = NULL;
    CMS_ContentInfo *env = NULL;
    STACK_OF(X509) *recips = NULL;
    int rc = -1;
    int nid = scep_cipher_for_nid(req->cipher_nid) != NULL ? req->cipher_nid : NID_des_ede3_cbc;
    const EVP_CIPHER *cipher = scep_cipher_for_nid(nid);

    /* RSA recipients (all of them in practice): written directly (fastpath.h). Others (an EC
     * signer certificate, parsed the ordinary way) go through CMS_encrypt. */
    if (scep_fast_envelope(req->signer, req->signer_key, nid, content, len, out, outlen) == 0)
        return 0;
    recips = sk_X509_new_null();
    in = BIO_new_mem_buf(content, (int)len);
    if (recips == NULL || in == NULL || req->signer == NULL || !sk_X509_push(recips, req->signer))
        goto out;
    env = CMS_encrypt(recips, in, cipher, CMS_BINARY);
    if (env == NULL)
        goto out;
    rc = cms_der(env, out, outlen);
out:
    CMS_ContentInfo_free(env);
    BIO_free(in);
    sk_X509_free(recips);
    return rc;
}

int scep_certrep(const scep_request *req, int status, int failinfo, const char *failtext,
                 STACK_OF(X509) *certs, EVP_PKEY *signer_key, X509 *signer_cert,
                 uint8_t **out, size_t *outlen)
{
    uint8_t *deg = NULL;
    size_t deglen = 0;
    int rc;

    if (status == SCEP_SUCCESS && scep_degenerate(certs, &deg, &deglen) != 0)
        return -1;
    rc = scep_certrep_content(req, status, failinfo, failtext, deg, deglen, signer_key,
                              signer_cert, out, outlen);
    free(deg);
    return rc;
}

/* The CertRep through OpenSSL's CMS: the fallback for a signer certrep_der.h does not write
 * (a key neither RSA nor EC). envelope NULL: no eContent (FAILURE, PENDING). */
static int certrep_cms(const scep_request *req, int status, int failinfo, const char *failtext,
                       const uint8_t *envelope, size_t envelope_len, EVP_PKEY *signer_key,
                       X509 *signer_cert, const EVP_MD *md, uint8_t **out, size_t *outlen)
{
    const scep_oids *oids = scep_oid_get();
    uint8_t sender_nonce[SCEP_NONCE_LEN];
    CMS_ContentInfo *cms = NULL;
    BIO *in = NULL;
    int rc = -1;
    char num[8];

    if (oids == NULL)
        goto out;
    cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
    if (cms == NULL)
        goto out;
    CMS_SignerInfo *si = CMS_add1_signer(cms, signer_cert, signer_key, md,
                                         CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL);
    if (si == NULL)
        goto out;
    snprintf(num, sizeof(num), "%d", SCEP_MSG_CERTREP);
    if (!add_string_attr(si, oids->message_type, num, strlen(num)))
        goto out;
    snprintf(num, sizeof(num), "%d", status);
    if (!add_string_attr(si, oids->pki_status, num, strlen(num)))
        goto out;
    if (status == SCEP_FAILURE) {
        snprintf(num, sizeof(num), "%d", failinfo);
        if (!add_string_attr(si, oids->fail_info, num, strlen(num)))
            goto out;
        if (failtext != NULL &&
            CMS_signed_add1_attr_by_NID(si, oids->fail_info_text, V_ASN1_UTF8STRING, failtext,
                                        (int)strlen(failtext)) != 1)
            goto out;
    }
    /* The transactionID's bytes as sent, also when they were refused: the client matches
     * them. */
    if (req->txid_sent != NULL) {
        if (!add_string_attr(si, oids->transaction_id, (const char *)req->txid_sent->data,
                             (size_t)req->txid_sent->length))
            goto out;
    } else if (req->txid_len > 0 &&
               !add_string_attr(si, oids->transaction_id, req->txid, req->txid_len)) {
        goto out;
    }
    if (req->has_nonce &&
        CMS_signed_add1_attr_by_NID(si, oids->recipient_nonce, V_ASN1_OCTET_STRING,
                                    req->sender_nonce, SCEP_NONCE_LEN) != 1)
        goto out;
    if (RAND_bytes(sender_nonce, sizeof(sender_nonce)) != 1 ||
        CMS_signed_add1_attr_by_NID(si, oids->sender_nonce, V_ASN1_OCTET_STRING, sender_nonce,
                                    SCEP_NONCE_LEN) != 1)
        goto out;

    /* FAILURE and PENDING carry no pkcsPKIEnvelope: the content is absent (detached). */
    if (envelope == NULL)
        CMS_set_detached(cms, 1);
    in = envelope != NULL ? BIO_new_mem_buf(envelope, (int)envelope_len) : BIO_new(BIO_s_mem());
    if (in == NULL || CMS_final(cms, in, NULL, CMS_BINARY) != 1)
        goto out;
    rc = cms_der(cms, out, outlen);
out:
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    return rc;
}

int scep_certrep_content(const scep_request *req, int status, int failinfo,
                         const char *failtext, const uint8_t *content, size_t content_len,
                         EVP_PKEY *signer_key, X509 *signer_cert, uint8_t **out, size_t *outlen)
{
    uint8_t *envelope = NULL;
    size_t envelope_len = 0;
    int rc = -1;

    if (status == SCEP_SUCCESS &&
        (content == NULL || encrypt_to_requester(req, content, content_len, &envelope, &envelope_len) != 0))
        goto out;

    /* Reply with the client's digest when it is a strong one; SHA-256 otherwise (fetched
     * once: fastpath.h). */
    int md_nid = req->sig_md_nid == NID_sha384 || req->sig_md_nid == NID_sha512
                     ? req->sig_md_nid : NID_sha256;
    const EVP_MD *md = scep_fetched_md(md_nid);
    if (md == NULL)
        md = EVP_get_digestbynid(md_nid);

    /* Written as DER (certrep_der.h); OpenSSL's CMS only for a signer it does not cover. */
    rc = scep_certrep_der(req, status, failinfo, failtext, envelope, envelope_len, signer_key,
                          signer_cert, md, out, outlen);
    if (rc == 1)
        rc = certrep_cms(req, status, failinfo, failtext, envelope, envelope_len, signer_key,
                         signer_cert, md, out, outlen);
out:
    free(envelope);
    ERR_clear_error();
    return rc;
}
