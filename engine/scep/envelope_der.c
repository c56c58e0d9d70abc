/* The request's pkcsPKIEnvelope read as DER and decrypted directly. See envelope_der.h. */
#include "engine/scep/envelope_der.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "engine/common/keyclock.h"
#include "engine/scep/der.h"
#include "engine/scep/fastpath.h"
#include "engine/scep/reject.h"

static const uint8_t OID_ENVELOPED[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03 };
static const uint8_t OID_RSA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };

static const struct {
    uint8_t oid[11];
    size_t len;
    int nid;
} CIPHERS[] = {
    { { 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02 }, 11, NID_aes_128_cbc },
    { { 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16 }, 11, NID_aes_192_cbc },
    { { 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a }, 11, NID_aes_256_cbc },
    { { 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07 }, 10, NID_des_ede3_cbc },
};

/* What the reader found: slices of the caller's envelope. */
typedef struct env_view {
    der_in ek;              /* encryptedKey's content */
    der_in iv;              /* the IV's content */
    der_in ct;              /* encryptedContent: one slice, or its OCTET STRING chunks */
    int chunked;
    size_t ct_len;          /* ciphertext bytes in all */
    int cipher_nid;
    const EVP_CIPHER *cipher;
} env_view;

static size_t slice_len(der_in s)
{
    return (size_t)(s.end - s.p);
}

static int slice_is(der_in s, const uint8_t *b, size_t n)
{
    return slice_len(s) == n && memcmp(s.p, b, n) == 0;
}

/* der_take, with *tlv the whole element (header included). */
static int take_tlv(der_in *in, uint8_t tag, der_in *tlv)
{
    const uint8_t *start = in->p;
    if (der_take(in, tag, NULL) != 0)
        return -1;
    tlv->p = start;
    tlv->end = in->p;
    return 0;
}

/* The encryptedKey of the first KeyTransRecipientInfo for issuer/serial (DER of the RA
 * certificate's). 1 found (rsaEncryption), 0 otherwise: not found, or a RecipientInfo of a
 * form this reader does not take (the caller falls back). */
static int pick_recipient(der_in ris, der_in issuer, der_in serial, der_in *ek)
{
    int found = 0;
    while (ris.p < ris.end) {
        der_in ktri, ias, name, num, alg, oid, key;
        if (der_take(&ris, 0x30, &ktri) != 0 || der_take(&ktri, 0x02, NULL) != 0 ||
            der_take(&ktri, 0x30, &ias) != 0 || take_tlv(&ias, 0x30, &name) != 0 ||
            take_tlv(&ias, 0x02, &num) != 0 || ias.p != ias.end ||
            der_take(&ktri, 0x30, &alg) != 0 || take_tlv(&alg, 0x06, &oid) != 0 ||
            der_take(&ktri, 0x04, &key) != 0 || ktri.p != ktri.end)
            return 0;
        int params_ok = alg.p == alg.end ||
                        (slice_len(alg) == 2 && alg.p[0] == 0x05 && alg.p[1] == 0x00);
        if (found || !slice_is(name, issuer.p, slice_len(issuer)) ||
            !slice_is(num, serial.p, slice_len(serial)))
            continue;
        if (!params_ok || !slice_is(oid, OID_RSA, sizeof(OID_RSA)))
            return 0;
        *ek = key;
        found = 1;
    }
    return found;
}

/* encryptedContent [0]: primitive, or constructed from primitive OCTET STRINGs with a definite
 * or indefinite length. Leaves eci past it. 0, or -1 (not handled). */
static int take_content(der_in *eci, env_view *v)
{
    uint8_t tag;
    size_t h, n;
    int indef;
    if (der_header(eci, &tag, &h, &n, &indef) != 0)
        return -1;
    if (tag == 0x80) {
        v->ct.p = eci->p + h;
        v->ct.end = v->ct.p + n;
        v->ct_len = n;
        eci->p = v->ct.end;
        return 0;
    }
    if (tag != 0xa0)
        return -1;
    der_in in = { eci->p + h, indef ? eci->end : eci->p + h + n };
    v->ct.p = in.p;
    v->chunked = 1;
    v->ct_len = 0;
    while (in.p < in.end) {
        der_in chunk;
        if (indef && slice_len(in) >= 2 && in.p[0] == 0 && in.p[1] == 0)
            break;
        if (der_take(&in, 0x04, &chunk) != 0)
            return -1;
        v->ct_len += slice_len(chunk);
    }
    v->ct.end = in.p;
    if (indef) {
        if (slice_len(in) < 2 || in.p[0] != 0 || in.p[1] != 0)
            return -1;
        in.p += 2;
    }
    eci->p = in.p;
    return 0;
}

/* The EnvelopedData's parts, for the recipient issuer/serial. 0, or -1 (not handled). */
static int read_envelope(const scep_request *req, der_in issuer, der_in serial, env_view *v)
{
    der_in all = { req->envelope, req->envelope + req->envelope_len };
    der_in ci, oid, exp, ed, ris, eci, calg, coid;

    if (der_take(&all, 0x30, &ci) != 0 || all.p != all.end ||
        take_tlv(&ci, 0x06, &oid) != 0 || !slice_is(oid, OID_ENVELOPED, sizeof(OID_ENVELOPED)) ||
        der_take(&ci, 0xa0, &exp) != 0 || ci.p != ci.end ||
        der_take(&exp, 0x30, &ed) != 0 || exp.p != exp.end ||
        der_take(&ed, 0x02, NULL) != 0 || der_take(&ed, 0x31, &ris) != 0 ||
        der_take(&ed, 0x30, &eci) != 0 || ed.p != ed.end ||
        !pick_recipient(ris, issuer, serial, &v->ek))
        return -1;
    if (der_take(&eci, 0x06, NULL) != 0 || der_take(&eci, 0x30, &calg) != 0 ||
        take_tlv(&calg, 0x06, &coid) != 0 || der_take(&calg, 0x04, &v->iv) != 0 ||
        calg.p != calg.end || take_content(&eci, v) != 0 || eci.p != eci.end)
        return -1;
    for (size_t i = 0; i < sizeof(CIPHERS) / sizeof(CIPHERS[0]); i++)
        if (slice_is(coid, CIPHERS[i].oid, CIPHERS[i].len))
            v->cipher_nid = CIPHERS[i].nid;
    v->cipher = scep_fetched_cipher(v->cipher_nid);
    if (v->cipher == NULL ||
        slice_len(v->iv) != (size_t)EVP_CIPHER_get_iv_length(v->cipher) || v->ct_len == 0 ||
        v->ct_len % (size_t)EVP_CIPHER_get_block_size(v->cipher) != 0 || v->ct_len > INT_MAX / 2)
        return -1;
    return 0;
}

#define MAX_RSA_BYTES 1024          /* RSA-8192; a larger RA key is left to CMS */

/* The content key unwrapped with the RA key into cek (klen bytes); a random one when the
 * unwrap fails or has another length (envelope_der.h: no padding oracle). 0, or -1 when not
 * even a random key could be made. */
static int unwrap_key(EVP_PKEY *key, der_in ek, EVP_CIPHER_CTX *cctx, uint8_t *cek, size_t klen)
{
    uint8_t buf[MAX_RSA_BYTES];
    size_t n = sizeof(buf);
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    int got = pctx != NULL && EVP_PKEY_decrypt_init(pctx) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
    if (got) {
        uint64_t t0 = keyclock_begin();
        got = EVP_PKEY_decrypt(pctx, buf, &n, ek.p, slice_len(ek)) == 1 && n == klen;
        keyclock_end(t0);
    }
    int rc = 0;
    if (got)
        memcpy(cek, buf, klen);
    else if (EVP_CIPHER_CTX_rand_key(cctx, cek) != 1)
        rc = -1;
    OPENSSL_cleanse(buf, sizeof(buf));
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return rc;
}

static int decrypt_update(EVP_CIPHER_CTX *cctx, der_in s, uint8_t *out, size_t *total)
{
    int n = 0;
    if (EVP_DecryptUpdate(cctx, out + *total, &n, s.p, (int)slice_len(s)) != 1)
        return -1;
    *total += (size_t)n;
    return 0;
}

/* The ciphertext, chunk by chunk, into out (ct_len + one block). */
static int decrypt_content(EVP_CIPHER_CTX *cctx, const env_view *v, uint8_t *out, size_t *outlen)
{
    der_in in = v->ct, chunk;
    size_t total = 0;
    int n = 0;
    if (!v->chunked && decrypt_update(cctx, in, out, &total) != 0)
        return -1;
    while (v->chunked && in.p < in.end)
        if (der_take(&in, 0x04, &chunk) != 0 || decrypt_update(cctx, chunk, out, &total) != 0)
            return -1;
    if (EVP_DecryptFinal_ex(cctx, out + total, &n) != 1)
        return -1;
    *outlen = total + (size_t)n;
    return 0;
}

int scep_envelope_der(scep_request *req, EVP_PKEY *ra_key, X509 *ra_cert)
{
    env_view v;
    unsigned char *issuer = NULL, *serial = NULL;
    uint8_t cek[EVP_MAX_KEY_LENGTH], *inner = NULL;
    size_t inner_len = 0;
    EVP_CIPHER_CTX *cctx = NULL;
    int rc = SCEP_ENVELOPE_NOT_HANDLED;

    memset(&v, 0, sizeof(v));
    int ilen = i2d_X509_NAME(X509_get_issuer_name(ra_cert), &issuer);
    int slen = i2d_ASN1_INTEGER((ASN1_INTEGER *)X509_get0_serialNumber(ra_cert), &serial);
    if (ilen <= 0 || slen <= 0 || ra_key == NULL || !EVP_PKEY_is_a(ra_key, "RSA") ||
        EVP_PKEY_get_size(ra_key) <= 0 || EVP_PKEY_get_size(ra_key) > MAX_RSA_BYTES)
        goto out;
    der_in iss = { issuer, issuer + ilen }, ser = { serial, serial + slen };
    if (read_envelope(req, iss, ser, &v) != 0)
        goto out;

    rc = REJ_INTERNAL;
    cctx = EVP_CIPHER_CTX_new();
    if (cctx == NULL || EVP_DecryptInit_ex2(cctx, v.cipher, NULL, NULL, NULL) != 1)
        goto out;
    int klen = EVP_CIPHER_CTX_get_key_length(cctx);
    if (klen <= 0 || klen > (int)sizeof(cek) ||
        unwrap_key(ra_key, v.ek, cctx, cek, (size_t)klen) != 0 ||
        EVP_DecryptInit_ex2(cctx, NULL, cek, v.iv.p, NULL) != 1 ||
        (inner = malloc(v.ct_len + EVP_MAX_BLOCK_LENGTH)) == NULL)
        goto out;
    rc = REJ_DECRYPT;
    if (decrypt_content(cctx, &v, inner, &inner_len) != 0)
        goto out;
    /* As scep_open_envelope's CMS path: an envelope of nothing is no envelope. */
    rc = inner_len > 0 ? REJ_NONE : REJ_NO_ENVELOPE;
out:
    if (rc == REJ_NONE) {
        req->inner = inner;
        req->inner_len = inner_len;
        req->cipher_nid = v.cipher_nid;
        inner = NULL;
    }
    if (inner != NULL) {
        OPENSSL_cleanse(inner, v.ct_len + EVP_MAX_BLOCK_LENGTH);
        free(inner);
    }
    OPENSSL_cleanse(cek, sizeof(cek));
    EVP_CIPHER_CTX_free(cctx);
    OPENSSL_free(issuer);
    OPENSSL_free(serial);
    ERR_clear_error();
    return rc;
}
