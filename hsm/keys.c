/* hsm/keys.c: token key pairs as EVP_PKEYs: lookup by label, generation, probes. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "hsm/internal.h"

void hsm_key_clear(hsm_key *k)
{
    BN_free(k->n);
    BN_free(k->e);
    OPENSSL_free(k->pub);
    k->n = k->e = NULL;
    k->pub = NULL;
    k->publen = 0;
}

int hsm_key_copy(hsm_key *dst, const hsm_key *src)
{
    hsm_key tmp = *src;
    tmp.n = src->n != NULL ? BN_dup(src->n) : NULL;
    tmp.e = src->e != NULL ? BN_dup(src->e) : NULL;
    tmp.pub = src->pub != NULL ? OPENSSL_memdup(src->pub, src->publen) : NULL;
    if ((src->n != NULL && tmp.n == NULL) || (src->e != NULL && tmp.e == NULL)
        || (src->pub != NULL && tmp.pub == NULL)) {
        hsm_key_clear(&tmp);
        return 0;
    }
    hsm_key_clear(dst);
    *dst = tmp;
    return 1;
}

int hsm_key_size(const hsm_key *k)
{
    if (k->kind == HSM_KIND_RSA)
        return k->n != NULL ? BN_num_bytes(k->n) : (k->bits + 7) / 8;
    /* DER SEQUENCE of two INTEGERs of up to the order's size plus a sign byte */
    int b = (k->bits + 7) / 8;
    int content = 2 * (2 + b + 1);
    return content + (content < 128 ? 2 : 3);
}

static CK_RV read_ulong(hsm_sess *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG *out)
{
    CK_ATTRIBUTE a = { type, out, sizeof(*out) };
    return s->t->f->C_GetAttributeValue(s->h, o, &a, 1);
}

static CK_RV read_bn(hsm_sess *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, BIGNUM **out)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    CK_RV rv = hsm_get_attr(s, o, type, &buf, &len);
    if (rv == CKR_OK && (*out = BN_bin2bn(buf, (int)len, NULL)) == NULL)
        rv = CKR_HOST_MEMORY;
    OPENSSL_free(buf);
    return rv;
}

/* CKA_EC_PARAMS (a DER OID of a named curve) and CKA_EC_POINT (DER OCTET STRING around the
 * point; some tokens store the bare point) into k. */
static CK_RV read_ec_public(hsm_sess *s, CK_OBJECT_HANDLE pub, hsm_key *k)
{
    unsigned char *params = NULL, *point = NULL;
    size_t plen = 0, ptlen = 0;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *os = NULL;
    const unsigned char *q;
    int nid;
    CK_RV rv = hsm_get_attr(s, pub, CKA_EC_PARAMS, &params, &plen);
    if (rv != CKR_OK)
        goto out;
    rv = hsm_get_attr(s, pub, CKA_EC_POINT, &point, &ptlen);
    if (rv != CKR_OK)
        goto out;
    rv = CKR_GENERAL_ERROR;
    q = params;
    if ((oid = d2i_ASN1_OBJECT(NULL, &q, (long)plen)) == NULL
        || (nid = OBJ_obj2nid(oid)) == NID_undef) {
        hsm_set_error("EC key on an unnamed or unknown curve");
        goto out;
    }
    q = point;
    os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)ptlen);
    const unsigned char *pt = point;
    size_t len = ptlen;
    if (os != NULL && q == point + ptlen) {
        pt = ASN1_STRING_get0_data(os);
        len = (size_t)ASN1_STRING_length(os);
    }
    EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
    EC_POINT *p = g != NULL ? EC_POINT_new(g) : NULL;
    if (p != NULL && EC_POINT_oct2point(g, p, pt, len, NULL)) {
        unsigned char *buf = NULL;
        size_t n = EC_POINT_point2buf(g, p, POINT_CONVERSION_UNCOMPRESSED, &buf, NULL);
        if (n > 0) {
            k->pub = buf;
            k->publen = n;
            k->curve_nid = nid;
            k->bits = EC_GROUP_order_bits(g);
            rv = CKR_OK;
        }
    }
    EC_POINT_free(p);
    EC_GROUP_free(g);
    if (rv != CKR_OK)
        hsm_set_error("bad CKA_EC_POINT");
out:
    ASN1_OBJECT_free(oid);
    ASN1_OCTET_STRING_free(os);
    OPENSSL_free(params);
    OPENSSL_free(point);
    return rv;
}

/* Finds the private key labelled label and reads its public half into *out (tok, priv and gen
 * set, ref NULL). Runs on a borrowed session. CKR_OK, the failing call's CK_RV, or
 * CKR_GENERAL_ERROR (no such key, several, unsupported type); the error text is set. */
static CK_RV lookup(hsm_token *t, const char *label, hsm_key *out)
{
    hsm_sess s;
    hsm_key k = { 0 };
    CK_OBJECT_HANDLE priv, pub;
    CK_ULONG type = 0;
    unsigned char *id = NULL;
    size_t idlen = 0;
    int count = 0;
    CK_RV rv;

    if (t == NULL || label == NULL) {
        hsm_set_error("missing token or label");
        return CKR_ARGUMENTS_BAD;
    }
    if ((rv = hsm_sess_get(t, &s)) != CKR_OK)
        goto out;
    rv = hsm_find_one(&s, CKO_PRIVATE_KEY, CKA_LABEL, label, strlen(label), &priv, &count);
    if (rv != CKR_OK) {
        if (count > 1)
            hsm_set_error("%d private keys labelled \"%s\"", count, label);
        else
            hsm_set_error("no private key labelled \"%s\" (%s)", label, hsm_rv_name(rv));
        goto out;
    }
    k.tok = t;
    k.priv = priv;
    k.gen = s.gen;
    if ((rv = read_ulong(&s, priv, CKA_KEY_TYPE, &type)) != CKR_OK) {
        hsm_set_error("CKA_KEY_TYPE: %s", hsm_rv_name(rv));
        goto out;
    }
    if (type == CKK_RSA) {
        k.kind = HSM_KIND_RSA;
        if ((rv = read_bn(&s, priv, CKA_MODULUS, &k.n)) != CKR_OK
            || (rv = read_bn(&s, priv, CKA_PUBLIC_EXPONENT, &k.e)) != CKR_OK) {
            hsm_set_error("RSA public attributes of \"%s\": %s", label, hsm_rv_name(rv));
            goto out;
        }
        k.bits = BN_num_bits(k.n);
    } else if (type == CKK_EC) {
        k.kind = HSM_KIND_EC;
        rv = hsm_get_attr(&s, priv, CKA_ID, &id, &idlen);
        if (rv == CKR_OK)
            rv = hsm_find_one(&s, CKO_PUBLIC_KEY, CKA_ID, id, idlen, &pub, NULL);
        if (rv != CKR_OK)
            rv = hsm_find_one(&s, CKO_PUBLIC_KEY, CKA_LABEL, label, strlen(label), &pub, NULL);
        if (rv != CKR_OK) {
            hsm_set_error("no public key for \"%s\"", label);
            goto out;
        }
        rv = read_ec_public(&s, pub, &k);
    } else {
        hsm_set_error("key \"%s\" has unsupported type %lu", label, (unsigned long)type);
        rv = CKR_GENERAL_ERROR;
    }
out:
    hsm_sess_put(&s);
    OPENSSL_free(id);
    if (rv == CKR_OK)
        *out = k;
    else
        hsm_key_clear(&k);
    return rv;
}

/* The token's entry for label, created on first load; k is the key just found. An entry keeps
 * the public half it was first loaded with; a later load of another key under the same label
 * (deleted and regenerated) is refused rather than silently re-pointing older EVP_PKEYs. */
static int same_public(const hsm_key *a, const hsm_key *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == HSM_KIND_RSA)
        return BN_cmp(a->n, b->n) == 0 && BN_cmp(a->e, b->e) == 0;
    return a->curve_nid == b->curve_nid && a->publen == b->publen
           && memcmp(a->pub, b->pub, a->publen) == 0;
}

static hsm_keyref *keyref_get(hsm_token *t, const char *label, const hsm_key *k)
{
    hsm_keyref *r;
    pthread_mutex_lock(&t->keys_mu);
    for (r = t->keys; r != NULL; r = r->next)
        if (strcmp(r->label, label) == 0)
            break;
    if (r != NULL) {
        if (!same_public(&r->pub, k)) {
            hsm_set_error("key \"%s\" is not the key loaded earlier under that label", label);
            r = NULL;
        }
        goto out;
    }
    if ((r = OPENSSL_zalloc(sizeof(*r))) == NULL || (r->label = OPENSSL_strdup(label)) == NULL
        || !hsm_key_copy(&r->pub, k)) {
        if (r != NULL)
            OPENSSL_free(r->label);
        OPENSSL_free(r);
        r = NULL;
        hsm_set_error("out of memory");
        goto out;
    }
    r->pub.tok = NULL;
    r->pub.ref = NULL;
    atomic_store(&r->handle, k->priv);
    atomic_store(&r->gen, k->gen);
    r->next = t->keys;
    t->keys = r;
out:
    pthread_mutex_unlock(&t->keys_mu);
    return r;
}

CK_RV hsm_keys_resolve(hsm_token *t)
{
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&t->keys_mu);
    for (hsm_keyref *r = t->keys; r != NULL && rv == CKR_OK; r = r->next) {
        hsm_key k = { 0 };
        if ((rv = lookup(t, r->label, &k)) != CKR_OK)
            break;
        if (!same_public(&r->pub, &k)) {
            hsm_set_error("key \"%s\" on the token is not the key loaded at start", r->label);
            rv = CKR_GENERAL_ERROR;
        } else {
            /* handle before gen: a reader that sees the new generation sees its handle */
            atomic_store(&r->handle, k.priv);
            atomic_store(&r->gen, k.gen);
        }
        hsm_key_clear(&k);
    }
    pthread_mutex_unlock(&t->keys_mu);
    return rv;
}

void hsm_keys_free(hsm_token *t)
{
    for (hsm_keyref *r = t->keys, *n; r != NULL; r = n) {
        n = r->next;
        hsm_key_clear(&r->pub);
        OPENSSL_free(r->label);
        OPENSSL_free(r);
    }
    t->keys = NULL;
}

int hsm_key_load(hsm_token *t, const char *label, EVP_PKEY **out)
{
    hsm_key k = { 0 };
    hsm_key *ref = &k;
    EVP_PKEY_CTX *pc = NULL;
    EVP_PKEY *pkey = NULL;
    int rc = -1;

    if (out == NULL || lookup(t, label, &k) != CKR_OK)
        goto out;
    if ((k.ref = keyref_get(t, label, &k)) == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(HSM_PARAM_REF, &ref, sizeof(ref)),
        OSSL_PARAM_construct_end(),
    };
    pc = EVP_PKEY_CTX_new_from_name(NULL, k.kind == HSM_KIND_RSA ? "RSA" : "EC",
                                    HSM_PROV_PROPQ);
    if (pc == NULL || EVP_PKEY_fromdata_init(pc) <= 0
        || EVP_PKEY_fromdata(pc, &pkey, EVP_PKEY_KEYPAIR, params) <= 0) {
        hsm_set_error("scepd-hsm provider refused key \"%s\"", label);
        goto out;
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = pkey;
        pkey = NULL;
    }
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pc);
    hsm_key_clear(&k);
    return rc;
}

static int label_exists(hsm_sess *s, const char *label)
{
    CK_OBJECT_HANDLE h;
    int count = 0;
    hsm_find_one(s, CKO_PRIVATE_KEY, CKA_LABEL, label, strlen(label), &h, &count);
    if (count > 0)
        return 1;
    hsm_find_one(s, CKO_PUBLIC_KEY, CKA_LABEL, label, strlen(label), &h, &count);
    return count > 0;
}

int hsm_key_generate(hsm_token *t, const char *label, const char *spec, EVP_PKEY **out)
{
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    static CK_BYTE f4[] = { 0x01, 0x00, 0x01 };
    CK_ULONG bits = 0;
    int nid = NID_undef, rc = -1, is_rsa;
    unsigned char id[16], *ecparams = NULL;
    int ecparamslen = 0;
    hsm_sess s;
    int have_sess = 0;
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv;

    if (t == NULL || label == NULL || spec == NULL || *label == '\0') {
        hsm_set_error("hsm_key_generate: missing argument");
        goto out;
    }
    if (strcmp(spec, "rsa:2048") == 0)
        bits = 2048;
    else if (strcmp(spec, "rsa:3072") == 0)
        bits = 3072;
    else if (strcmp(spec, "rsa:4096") == 0)
        bits = 4096;
    else if (strcmp(spec, "ec:P-256") == 0)
        nid = NID_X9_62_prime256v1;
    else if (strcmp(spec, "ec:P-384") == 0)
        nid = NID_secp384r1;
    else {
        hsm_set_error("unknown key spec \"%s\"", spec);
        goto out;
    }
    is_rsa = bits != 0;
    if (!is_rsa && (ecparamslen = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &ecparams)) <= 0) {
        hsm_set_error("cannot encode curve OID");
        goto out;
    }
    if (RAND_bytes(id, sizeof(id)) != 1) {
        hsm_set_error("RAND_bytes failed");
        goto out;
    }

    CK_ATTRIBUTE pub_rsa[] = {
        { CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &no, sizeof(no) },
        { CKA_VERIFY, &yes, sizeof(yes) }, { CKA_ENCRYPT, &yes, sizeof(yes) },
        { CKA_LABEL, (void *)label, strlen(label) }, { CKA_ID, id, sizeof(id) },
        { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_PUBLIC_EXPONENT, f4, sizeof(f4) },
    };
    CK_ATTRIBUTE pub_ec[] = {
        { CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &no, sizeof(no) },
        { CKA_VERIFY, &yes, sizeof(yes) },
        { CKA_LABEL, (void *)label, strlen(label) }, { CKA_ID, id, sizeof(id) },
        { CKA_EC_PARAMS, ecparams, (CK_ULONG)ecparamslen },
    };
    CK_ATTRIBUTE priv_tmpl[] = {
        { CKA_TOKEN, &yes, sizeof(yes) }, { CKA_PRIVATE, &yes, sizeof(yes) },
        { CKA_SENSITIVE, &yes, sizeof(yes) }, { CKA_EXTRACTABLE, &no, sizeof(no) },
        { CKA_LABEL, (void *)label, strlen(label) }, { CKA_ID, id, sizeof(id) },
        { CKA_SIGN, &yes, sizeof(yes) },
        { CKA_DECRYPT, &yes, sizeof(yes) },          /* RSA only: left out for EC */
    };
    CK_MECHANISM mech = { is_rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_ULONG npriv = sizeof(priv_tmpl) / sizeof(priv_tmpl[0]) - (is_rsa ? 0 : 1);

    have_sess = 1;
    if ((rv = hsm_sess_get(t, &s)) != CKR_OK)
        goto out;
    if (label_exists(&s, label)) {
        hsm_set_error("a key labelled \"%s\" already exists", label);
        goto out;
    }
    rv = t->f->C_GenerateKeyPair(s.h, &mech, is_rsa ? pub_rsa : pub_ec,
                                 is_rsa ? sizeof(pub_rsa) / sizeof(pub_rsa[0])
                                        : sizeof(pub_ec) / sizeof(pub_ec[0]),
                                 priv_tmpl, npriv, &hpub, &hpriv);
    if (rv != CKR_OK) {
        hsm_set_error("C_GenerateKeyPair(%s): %s", spec, hsm_rv_name(rv));
        goto out;
    }
    hsm_sess_put(&s);
    have_sess = 0;
    rc = out != NULL ? hsm_key_load(t, label, out) : 0;
out:
    if (have_sess)
        hsm_sess_put(&s);
    OPENSSL_free(ecparams);
    return rc;
}

int hsm_key_is_protected(hsm_token *t, const char *label)
{
    hsm_key k = { 0 };
    hsm_sess s;
    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE;
    CK_ATTRIBUTE flags[] = {
        { CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
        { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
    };
    unsigned char secret[1024];
    CK_ATTRIBUTE sec = { 0, secret, sizeof(secret) };
    CK_RV rv, srv;
    int rc;

    if (lookup(t, label, &k) != CKR_OK)
        return -1;
    sec.type = k.kind == HSM_KIND_RSA ? CKA_PRIVATE_EXPONENT : CKA_VALUE;
    srv = rv = hsm_sess_get(t, &s);
    if (rv == CKR_OK && s.gen == k.gen) {
        rv = t->f->C_GetAttributeValue(s.h, k.priv, flags, 2);
        srv = t->f->C_GetAttributeValue(s.h, k.priv, &sec, 1);
    } else if (rv == CKR_OK) {
        rv = CKR_KEY_HANDLE_INVALID;
    }
    hsm_sess_put(&s);
    OPENSSL_cleanse(secret, sizeof(secret));
    hsm_key_clear(&k);
    if (rv != CKR_OK) {
        hsm_set_error("C_GetAttributeValue: %s", hsm_rv_name(rv));
        return -1;
    }
    rc = sensitive == CK_TRUE && extractable == CK_FALSE && srv == CKR_ATTRIBUTE_SENSITIVE;
    return rc;
}

/* SHA-256 of a fixed string: the probe measures the token, not the hash. */
static void probe_digest(unsigned char d[32])
{
    unsigned int n = 32;
    EVP_Digest("scepd probe", 11, d, &n, EVP_sha256(), NULL);
}

int hsm_probe_sign(hsm_token *t, const char *label, int n)
{
    hsm_key k = { 0 };
    unsigned char in[19 + 32], sig[1024];
    const unsigned char *pfx;
    size_t pfxlen = 0, inlen;
    CK_MECHANISM mech = { 0, NULL, 0 };
    int rc = -1;

    if (n < 0 || lookup(t, label, &k) != CKR_OK)
        goto out;
    if (k.kind == HSM_KIND_RSA) {
        hsm_digest_info_prefix(NID_sha256, &pfx, &pfxlen);
        memcpy(in, pfx, pfxlen);
        mech.mechanism = CKM_RSA_PKCS;
    } else {
        mech.mechanism = CKM_ECDSA;
    }
    probe_digest(in + pfxlen);
    inlen = pfxlen + 32;
    for (int i = 0; i < n; i++) {
        size_t siglen = sizeof(sig);
        if (hsm_p11_sign(&k, &mech, in, inlen, sig, &siglen) != CKR_OK)
            goto out;
    }
    rc = 0;
out:
    hsm_key_clear(&k);
    return rc;
}

/* Encrypts a block in software with the public half, then has the token decrypt it n times. */
int hsm_probe_decrypt(hsm_token *t, const char *label, int n)
{
    hsm_key k = { 0 };
    EVP_PKEY_CTX *pc = NULL, *ec = NULL;
    EVP_PKEY *pub = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    unsigned char msg[32], ct[1024], pt[1024];
    size_t ctlen = sizeof(ct);
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    int rc = -1;

    if (n < 0 || lookup(t, label, &k) != CKR_OK)
        goto out;
    if (k.kind != HSM_KIND_RSA) {
        hsm_set_error("decrypt probe needs an RSA key");
        goto out;
    }
    probe_digest(msg);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, k.n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, k.e)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL
        || (pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", "provider=default")) == NULL
        || EVP_PKEY_fromdata_init(pc) <= 0
        || EVP_PKEY_fromdata(pc, &pub, EVP_PKEY_PUBLIC_KEY, params) <= 0
        || (ec = EVP_PKEY_CTX_new_from_pkey(NULL, pub, "provider=default")) == NULL
        || EVP_PKEY_encrypt_init(ec) <= 0
        || EVP_PKEY_CTX_set_rsa_padding(ec, RSA_PKCS1_PADDING) <= 0
        || EVP_PKEY_encrypt(ec, ct, &ctlen, msg, sizeof(msg)) <= 0) {
        hsm_set_error("software encryption for the decrypt probe failed");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        size_t ptlen = sizeof(pt);
        if (hsm_p11_decrypt(&k, &mech, ct, ctlen, pt, &ptlen) != CKR_OK)
            goto out;
        if (ptlen != sizeof(msg) || memcmp(pt, msg, sizeof(msg)) != 0) {
            hsm_set_error("decrypt probe returned wrong plaintext");
            goto out;
        }
    }
    rc = 0;
out:
    EVP_PKEY_CTX_free(ec);
    EVP_PKEY_CTX_free(pc);
    EVP_PKEY_free(pub);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    hsm_key_clear(&k);
    return rc;
}
