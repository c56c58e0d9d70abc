/* The common shape of a pkiMessage, verified without decoding keys twice, and the
 * pkcsPKIEnvelope of a reply assembled directly. See fastpath.h. */
#include "engine/scep/fastpath.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "engine/scep/der.h"
#include "engine/scep/keycache.h"

/* The signed attributes as CMS_SignerInfo_verify encodes them for the signature: a SET OF
 * (sorted, DER) with the universal SET tag. Same template as OpenSSL's internal
 * CMS_Attributes_Verify, so the bytes are the ones OpenSSL would verify. */
typedef STACK_OF(X509_ATTRIBUTE) SCEP_SIGNED_ATTRS;
ASN1_ITEM_TEMPLATE(SCEP_SIGNED_ATTRS) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SET_OF | ASN1_TFLG_IMPTAG | ASN1_TFLG_UNIVERSAL, V_ASN1_SET,
                          SCEP_SIGNED_ATTRS, X509_ATTRIBUTE)
ASN1_ITEM_TEMPLATE_END(SCEP_SIGNED_ATTRS)

/* Algorithms fetched once for the process: EVP_sha256() and friends are fetched again on
 * every use in OpenSSL 3.0 (global lock, name map). NULL entries mean "let OpenSSL fetch". */
static struct {
    EVP_MD *sha1, *sha256, *sha384, *sha512;
    EVP_CIPHER *aes128, *aes192, *aes256, *des3;
} g_alg;
static pthread_once_t g_alg_once = PTHREAD_ONCE_INIT;

static void alg_init(void)
{
    g_alg.sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    g_alg.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_alg.sha384 = EVP_MD_fetch(NULL, "SHA384", NULL);
    g_alg.sha512 = EVP_MD_fetch(NULL, "SHA512", NULL);
    g_alg.aes128 = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    g_alg.aes192 = EVP_CIPHER_fetch(NULL, "AES-192-CBC", NULL);
    g_alg.aes256 = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    g_alg.des3 = EVP_CIPHER_fetch(NULL, "DES-EDE3-CBC", NULL);
    ERR_clear_error();
}

const EVP_MD *scep_fetched_md(int nid)
{
    pthread_once(&g_alg_once, alg_init);
    switch (nid) {
    case NID_sha1: return g_alg.sha1;
    case NID_sha256: return g_alg.sha256;
    case NID_sha384: return g_alg.sha384;
    case NID_sha512: return g_alg.sha512;
    default: return NULL;
    }
}

const EVP_CIPHER *scep_fetched_cipher(int nid)
{
    pthread_once(&g_alg_once, alg_init);
    switch (nid) {
    case NID_aes_128_cbc: return g_alg.aes128;
    case NID_aes_192_cbc: return g_alg.aes192;
    case NID_aes_256_cbc: return g_alg.aes256;
    case NID_des_ede3_cbc: return g_alg.des3;
    default: return NULL;
    }
}

/* ossl_cms_si_check_attributes' rules (RFC 5652 section 11) for the attributes this path
 * knows; 0 when an attribute needs what only CMS_verify does (ESS signing certificates,
 * receipts) or breaks a rule. */
static int attrs_plain(CMS_SignerInfo *si)
{
    int n = CMS_signed_get_attr_count(si), ctype = 0, mdig = 0, stime = 0;
    if (n <= 0 || CMS_unsigned_get_attr_count(si) > 0)
        return 0;
    for (int i = 0; i < n; i++) {
        X509_ATTRIBUTE *a = CMS_signed_get_attr(si, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
        int *seen = nid == NID_pkcs9_contentType ? &ctype
                  : nid == NID_pkcs9_messageDigest ? &mdig
                  : nid == NID_pkcs9_signingTime ? &stime : NULL;
        if (nid == NID_pkcs9_countersignature || nid == NID_id_smime_aa_signingCertificate ||
            nid == NID_id_smime_aa_signingCertificateV2 || nid == NID_id_smime_aa_receiptRequest)
            return 0;
        if (seen != NULL && ((*seen)++ > 0 || X509_ATTRIBUTE_count(a) != 1))
            return 0;
    }
    return ctype == 1 && mdig == 1;
}

/* The messageDigest attribute equals the digest of the encapsulated content. */
static int content_digest_ok(CMS_ContentInfo *cms, CMS_SignerInfo *si, const EVP_MD *md)
{
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    ASN1_OCTET_STRING **content = CMS_get0_content(cms);
    ASN1_OCTET_STRING *want = CMS_signed_get0_data_by_OBJ(
        si, OBJ_nid2obj(NID_pkcs9_messageDigest), -3, V_ASN1_OCTET_STRING);
    if (content == NULL || *content == NULL || want == NULL)
        return 0;
    if (EVP_Digest((*content)->data, (size_t)(*content)->length, buf, &n, md, NULL) != 1)
        return 0;
    return (int)n == want->length && memcmp(buf, want->data, n) == 0;
}

/* The signature over the DER of the signed attributes. */
static int attrs_signature_ok(CMS_SignerInfo *si, EVP_PKEY *key, const EVP_MD *md)
{
    SCEP_SIGNED_ATTRS *attrs = sk_X509_ATTRIBUTE_new_null();
    unsigned char *abuf = NULL;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
    int ok = 0, alen = -1;

    for (int i = 0; attrs != NULL && i < CMS_signed_get_attr_count(si); i++)
        if (!sk_X509_ATTRIBUTE_push(attrs, CMS_signed_get_attr(si, i)))
            goto out;
    if (attrs == NULL || mctx == NULL || sig == NULL)
        goto out;
    alen = ASN1_item_i2d((ASN1_VALUE *)attrs, &abuf, ASN1_ITEM_rptr(SCEP_SIGNED_ATTRS));
    if (alen <= 0)
        goto out;
    ok = EVP_DigestVerifyInit_ex(mctx, NULL, EVP_MD_get0_name(md), NULL, NULL, key, NULL) == 1 &&
         EVP_DigestVerify(mctx, sig->data, (size_t)sig->length, abuf, (size_t)alen) == 1;
out:
    OPENSSL_free(abuf);
    EVP_MD_CTX_free(mctx);
    sk_X509_ATTRIBUTE_free(attrs);     /* the attributes are the SignerInfo's */
    return ok;
}

int scep_fast_verify(CMS_ContentInfo *cms, CMS_SignerInfo *si, EVP_PKEY *key, int md_nid)
{
    X509_ALGOR *sig_alg = NULL;
    int pk = NID_undef, ok = 0;
    const EVP_MD *md = scep_fetched_md(md_nid);

    CMS_SignerInfo_get0_algs(si, NULL, NULL, NULL, &sig_alg);
    if (md == NULL || key == NULL || sig_alg == NULL || !EVP_PKEY_is_a(key, "RSA"))
        goto out;
    /* PKCS#1 v1.5: rsaEncryption, or a signature OID over RSA (accepted by CMS too). */
    int sn = OBJ_obj2nid(sig_alg->algorithm);
    if (sn != NID_rsaEncryption && !(OBJ_find_sigid_algs(sn, NULL, &pk) && pk == NID_rsaEncryption))
        goto out;
    ok = attrs_plain(si) && content_digest_ok(cms, si, md) && attrs_signature_ok(si, key, md);
out:
    ERR_clear_error();
    return ok;
}

/* Fixed parts of the EnvelopedData, as OpenSSL's CMS_encrypt writes them. */
static const uint8_t OID_ENVELOPED[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03 };
static const uint8_t OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01 };
static const uint8_t ALG_RSA[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                   0x01, 0x01, 0x01, 0x05, 0x00 };

/* The parts that vary, in DER: rid (IssuerAndSerialNumber), encryptedKey, cipher OID, IV,
 * ciphertext. */
typedef struct env_parts {
    unsigned char *issuer, *serial, *cipher_oid;
    int issuer_len, serial_len, cipher_oid_len;
    unsigned char ek[1024];
    size_t ek_len;
    unsigned char iv[EVP_MAX_IV_LENGTH];
    int iv_len;
    unsigned char *ct;
    size_t ct_len;
} env_parts;

/* Random content key and IV (EVP_CIPHER_CTX_rand_key: DES keys get their parity, as in
 * CMS), content encrypted (PKCS#7 padding), key encrypted to key (RSA PKCS#1 v1.5). */
static int encrypt_parts(const EVP_CIPHER *cipher, EVP_PKEY *key, const uint8_t *content,
                         size_t len, env_parts *e)
{
    unsigned char cek[EVP_MAX_KEY_LENGTH];
    EVP_CIPHER_CTX *cctx = EVP_CIPHER_CTX_new();
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int rc = -1, n = 0, fin = 0;

    if (cctx == NULL || pctx == NULL || len > INT_MAX - EVP_MAX_BLOCK_LENGTH ||
        EVP_EncryptInit_ex2(cctx, cipher, NULL, NULL, NULL) != 1)
        goto out;
    int klen = EVP_CIPHER_CTX_get_key_length(cctx);
    e->iv_len = EVP_CIPHER_CTX_get_iv_length(cctx);
    if (klen <= 0 || klen > (int)sizeof(cek) || e->iv_len <= 0 ||
        EVP_CIPHER_CTX_rand_key(cctx, cek) != 1 || RAND_bytes(e->iv, e->iv_len) != 1 ||
        EVP_EncryptInit_ex2(cctx, NULL, cek, e->iv, NULL) != 1)
        goto out;
    if ((e->ct = malloc(len + EVP_MAX_BLOCK_LENGTH)) == NULL ||
        EVP_EncryptUpdate(cctx, e->ct, &n, content, (int)len) != 1 ||
        EVP_EncryptFinal_ex(cctx, e->ct + n, &fin) != 1)
        goto out;
    e->ct_len = (size_t)n + (size_t)fin;
    e->ek_len = sizeof(e->ek);
    if (EVP_PKEY_encrypt_init(pctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_encrypt(pctx, e->ek, &e->ek_len, cek, (size_t)klen) != 1)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(cek, sizeof(cek));
    EVP_CIPHER_CTX_free(cctx);
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

/* ContentInfo { envelopedData, [0] EnvelopedData { 0, { KTRI { 0, rid, rsaEncryption,
 *   encryptedKey } }, { data, { cipher, IV }, [0] IMPLICIT ciphertext } } }, front to back. */
static int assemble(const env_parts *e, uint8_t **out, size_t *outlen)
{
    size_t rid = (size_t)e->issuer_len + (size_t)e->serial_len;
    size_t ktri = 3 + der_hdr_size(rid) + rid + sizeof(ALG_RSA) + der_hdr_size(e->ek_len) + e->ek_len;
    size_t ris = der_hdr_size(ktri) + ktri;
    size_t calg = (size_t)e->cipher_oid_len + 2 + (size_t)e->iv_len;
    size_t eci = sizeof(OID_DATA) + der_hdr_size(calg) + calg + der_hdr_size(e->ct_len) + e->ct_len;
    size_t ed = 3 + der_hdr_size(ris) + ris + der_hdr_size(eci) + eci;
    size_t ci = sizeof(OID_ENVELOPED) + der_hdr_size(der_hdr_size(ed) + ed) + der_hdr_size(ed) + ed;
    size_t total = der_hdr_size(ci) + ci;
    uint8_t *b = malloc(total), *p = b;
    if (b == NULL)
        return -1;
    p = der_hdr(p, 0x30, ci);
    memcpy(p, OID_ENVELOPED, sizeof(OID_ENVELOPED));
    p += sizeof(OID_ENVELOPED);
    p = der_hdr(p, 0xa0, der_hdr_size(ed) + ed);
    p = der_hdr(p, 0x30, ed);
    *p++ = 0x02; *p++ = 0x01; *p++ = 0x00;                  /* version 0 */
    p = der_hdr(p, 0x31, ris);
    p = der_hdr(p, 0x30, ktri);
    *p++ = 0x02; *p++ = 0x01; *p++ = 0x00;                  /* KTRI version 0 */
    p = der_hdr(p, 0x30, rid);
    memcpy(p, e->issuer, (size_t)e->issuer_len);
    p += e->issuer_len;
    memcpy(p, e->serial, (size_t)e->serial_len);
    p += e->serial_len;
    memcpy(p, ALG_RSA, sizeof(ALG_RSA));
    p += sizeof(ALG_RSA);
    p = der_hdr(p, 0x04, e->ek_len);
    memcpy(p, e->ek, e->ek_len);
    p += e->ek_len;
    p = der_hdr(p, 0x30, eci);
    memcpy(p, OID_DATA, sizeof(OID_DATA));
    p += sizeof(OID_DATA);
    p = der_hdr(p, 0x30, calg);
    memcpy(p, e->cipher_oid, (size_t)e->cipher_oid_len);
    p += e->cipher_oid_len;
    p = der_hdr(p, 0x04, (size_t)e->iv_len);
    memcpy(p, e->iv, (size_t)e->iv_len);
    p += e->iv_len;
    p = der_hdr(p, 0x80, e->ct_len);                         /* [0] IMPLICIT OCTET STRING */
    memcpy(p, e->ct, e->ct_len);
    p += e->ct_len;
    *out = b;
    *outlen = (size_t)(p - b);
    return 0;
}

int scep_fast_envelope(X509 *recip, EVP_PKEY *key, int cipher_nid, const uint8_t *content,
                       size_t len, uint8_t **out, size_t *outlen)
{
    const EVP_CIPHER *cipher = scep_fetched_cipher(cipher_nid);
    env_parts e;
    int rc = -1;

    memset(&e, 0, sizeof(e));
    if (cipher == NULL || recip == NULL || key == NULL || !EVP_PKEY_is_a(key, "RSA") ||
        EVP_PKEY_get_size(key) > (int)sizeof(e.ek))
        goto out;
    e.issuer_len = i2d_X509_NAME(X509_get_issuer_name(recip), &e.issuer);
    e.serial_len = i2d_ASN1_INTEGER((ASN1_INTEGER *)X509_get0_serialNumber(recip), &e.serial);
    e.cipher_oid_len = i2d_ASN1_OBJECT(OBJ_nid2obj(cipher_nid), &e.cipher_oid);
    if (e.issuer_len <= 0 || e.serial_len <= 0 || e.cipher_oid_len <= 0 ||
        encrypt_parts(cipher, key, content, len, &e) != 0)
        goto out;
    rc = assemble(&e, out, outlen);
out:
    OPENSSL_free(e.issuer);
    OPENSSL_free(e.serial);
    OPENSSL_free(e.cipher_oid);
    free(e.ct);
    ERR_clear_error();
    return rc;
}
