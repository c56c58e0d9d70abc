/* Per-thread cache of decoded public keys. See keycache.h. */
#include "engine/scep/keycache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#define KEYCACHE_ENTRIES 4     /* a request needs two at most (signer, CSR); a few for slack */
#define KEYCACHE_DECODERS 3    /* key algorithms with a decoder context kept (RSA, EC, ...) */

typedef struct key_entry {
    unsigned char *der;     /* encoded SubjectPublicKeyInfo (OPENSSL_malloc'd) */
    int len;
    EVP_PKEY *key;          /* one reference held */
} key_entry;

/* A decoder context made once per thread and key algorithm: building one
 * (OSSL_DECODER_CTX_new_for_pkey) is what costs in OpenSSL 3.0, not decoding with it. It
 * decodes into *slot, an address fixed when the context is made (hence inside the cache,
 * which never moves). */
typedef struct key_decoder {
    int nid;                /* the SubjectPublicKeyInfo's algorithm; NID_undef: unused */
    OSSL_DECODER_CTX *dctx;
    EVP_PKEY *slot;
} key_decoder;

typedef struct key_cache {
    key_entry e[KEYCACHE_ENTRIES];   /* most recently used first */
    key_decoder d[KEYCACHE_DECODERS];
    EVP_PKEY_CTX *rsa, *ec;          /* fromdata contexts (made on first use) */
} key_cache;

#define RSA_MODULUS_MAX 1024         /* bytes (8192 bits): larger keys take the decoder */

static pthread_key_t g_tls;
static int g_tls_ok;
static pthread_once_t g_tls_once = PTHREAD_ONCE_INIT;

static OSSL_LIB_CTX *g_nodecode;
static pthread_once_t g_nodecode_once = PTHREAD_ONCE_INIT;

static void entry_clear(key_entry *e)
{
    OPENSSL_free(e->der);
    EVP_PKEY_free(e->key);
    memset(e, 0, sizeof(*e));
}

static void cache_free(void *p)
{
    key_cache *c = p;
    if (c == NULL)
        return;
    for (int i = 0; i < KEYCACHE_ENTRIES; i++)
        entry_clear(&c->e[i]);
    for (int i = 0; i < KEYCACHE_DECODERS; i++) {
        OSSL_DECODER_CTX_free(c->d[i].dctx);
        EVP_PKEY_free(c->d[i].slot);
    }
    EVP_PKEY_CTX_free(c->rsa);
    EVP_PKEY_CTX_free(c->ec);
    free(c);
}

static void tls_init(void)
{
    g_tls_ok = pthread_key_create(&g_tls, cache_free) == 0;
}

static key_cache *this_thread(void)
{
    pthread_once(&g_tls_once, tls_init);
    if (!g_tls_ok)
        return NULL;
    key_cache *c = pthread_getspecific(g_tls);
    if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL && pthread_setspecific(g_tls, c) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

/* Moves entry i to the front (the others shift down one). */
static void to_front(key_cache *c, int i)
{
    key_entry hit = c->e[i];
    memmove(&c->e[1], &c->e[0], (size_t)i * sizeof(c->e[0]));
    c->e[0] = hit;
}

/* Takes der (len bytes, OPENSSL_malloc'd) and a reference to key. */
static void insert(key_cache *c, unsigned char *der, int len, EVP_PKEY *key)
{
    entry_clear(&c->e[KEYCACHE_ENTRIES - 1]);
    c->e[KEYCACHE_ENTRIES - 1] = (key_entry){ .der = der, .len = len, .key = key };
    to_front(c, KEYCACHE_ENTRIES - 1);
}

static int find(const key_cache *c, const unsigned char *der, int len)
{
    for (int i = 0; i < KEYCACHE_ENTRIES; i++)
        if (c->e[i].key != NULL && c->e[i].len == len && memcmp(c->e[i].der, der, (size_t)len) == 0)
            return i;
    return -1;
}

/* This thread's decoder context for the algorithm nid (made on first use), or NULL (no
 * room, or no decoder for it: the caller decodes the ordinary way). */
static key_decoder *decoder_for(key_cache *c, const X509_PUBKEY *spki)
{
    ASN1_OBJECT *alg = NULL;
    char name[80];          /* an OID in text: "rsaEncryption", "id-ecPublicKey", ... */

    if (c == NULL || !X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, spki))
        return NULL;
    int nid = OBJ_obj2nid(alg);
    if (nid == NID_undef)
        return NULL;
    for (int i = 0; i < KEYCACHE_DECODERS; i++) {
        key_decoder *d = &c->d[i];
        if (d->nid == nid)
            return d->dctx != NULL ? d : NULL;
        if (d->nid != NID_undef)
            continue;
        /* The same key type name as OpenSSL's own SubjectPublicKeyInfo decode uses. */
        d->nid = nid;
        if (OBJ_obj2txt(name, sizeof(name), alg, 0) > 0)
            d->dctx = OSSL_DECODER_CTX_new_for_pkey(&d->slot, "DER", "SubjectPublicKeyInfo",
                                                    name, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (d->dctx != NULL && OSSL_DECODER_CTX_get_num_decoders(d->dctx) == 0) {
            OSSL_DECODER_CTX_free(d->dctx);
            d->dctx = NULL;
        }
        return d->dctx != NULL ? d : NULL;
    }
    return NULL;
}

/* One DER TLV at *p (end: one past the input): its tag, and its contents in *v, *vlen; *p
 * moves past it. Definite lengths of at most 4 bytes, minimal; 0 on anything else. */
static int der_tlv(const unsigned char **p, const unsigned char *end, int tag,
                   const unsigned char **v, size_t *vlen)
{
    const unsigned char *q = *p;
    if (end - q < 2 || q[0] != tag)
        return 0;
    size_t n = q[1];
    q += 2;
    if (n & 0x80) {
        size_t k = n & 0x7f;
        if (k == 0 || k > 4 || (size_t)(end - q) < k || q[0] == 0)
            return 0;
        for (n = 0; k > 0; k--)
            n = (n << 8) | *q++;
        if (n < 0x80)
            return 0;
    }
    if ((size_t)(end - q) < n)
        return 0;
    *v = q;
    *vlen = n;
    *p = q + n;
    return 1;
}

/* A positive DER INTEGER's magnitude (no leading zero byte), or 0 if it is not one. */
static int der_uint(const unsigned char **p, const unsigned char *end,
                    const unsigned char **v, size_t *vlen)
{
    if (!der_tlv(p, end, 0x02, v, vlen) || *vlen == 0 || ((*v)[0] & 0x80))
        return 0;
    if ((*v)[0] == 0) {
        if (*vlen == 1 || !((*v)[1] & 0x80))
            return 0;           /* zero, or not minimal */
        (*v)++;
        (*vlen)--;
    }
    return 1;
}

/* OSSL_PARAM integers are unsigned in the machine's byte order. */
static void to_native(unsigned char *dst, const unsigned char *be, size_t n)
{
    const unsigned int one = 1;
    if (*(const unsigned char *)&one == 1) {
        for (size_t i = 0; i < n; i++)
            dst[i] = be[n - 1 - i];
    } else {
        memcpy(dst, be, n);
    }
}

static EVP_PKEY *fromdata(EVP_PKEY_CTX **ctx, const char *type, OSSL_PARAM *params)
{
    EVP_PKEY *key = NULL;
    if (*ctx == NULL) {
        *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        if (*ctx != NULL && EVP_PKEY_fromdata_init(*ctx) != 1) {
            EVP_PKEY_CTX_free(*ctx);
            *ctx = NULL;
        }
    }
    if (*ctx != NULL && EVP_PKEY_fromdata(*ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    return key;
}

/* The two common shapes built straight from their numbers (EVP_PKEY_fromdata): an RSA key
 * (rsaEncryption, NULL parameters, a DER RSAPublicKey) and an EC key on a named curve (the
 * point is checked on the curve by the import). Skips the decoder framework, whose own
 * overhead is most of a decode in OpenSSL 3.0. NULL for anything else: the caller decodes
 * the ordinary way, so the result never differs from a decode's, only its cost. */
static EVP_PKEY *from_numbers(key_cache *c, const X509_PUBKEY *spki)
{
    ASN1_OBJECT *alg = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0, ptype = V_ASN1_UNDEF;
    const void *pval = NULL;
    X509_ALGOR *a = NULL;

    if (c == NULL || !X509_PUBKEY_get0_param(&alg, &pk, &pklen, &a, spki) || pklen <= 0)
        return NULL;
    X509_ALGOR_get0(NULL, &ptype, &pval, a);
    int nid = OBJ_obj2nid(alg);
    if (nid == NID_rsaEncryption && ptype == V_ASN1_NULL) {
        const unsigned char *p = pk, *end = pk + pklen, *seq, *n, *e;
        size_t seqlen, nlen, elen;
        unsigned char nb[RSA_MODULUS_MAX], eb[8];
        if (!der_tlv(&p, end, 0x30, &seq, &seqlen) || p != end)
            return NULL;
        p = seq;
        end = seq + seqlen;
        if (!der_uint(&p, end, &n, &nlen) || !der_uint(&p, end, &e, &elen) || p != end ||
            nlen > sizeof(nb) || elen > sizeof(eb))
            return NULL;
        to_native(nb, n, nlen);
        to_native(eb, e, elen);
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_N, nb, nlen),
            OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_RSA_E, eb, elen),
            OSSL_PARAM_construct_end(),
        };
        return fromdata(&c->rsa, "RSA", params);
    }
    if (nid == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT) {
        int curve = OBJ_obj2nid(pval);
        const char *group = curve != NID_undef ? OBJ_nid2sn(curve) : NULL;
        if (group == NULL)
            return NULL;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pk, (size_t)pklen),
            OSSL_PARAM_construct_end(),
        };
        return fromdata(&c->ec, "EC", params);
    }
    return NULL;
}

/* der (len bytes, the encoding of spki) decoded: from its numbers for the common shapes,
 * else with this thread's decoder context for the algorithm when there is one, else by
 * d2i_PUBKEY. NULL when it does not decode. */
static EVP_PKEY *decode(key_cache *c, const X509_PUBKEY *spki, const unsigned char *der, int len)
{
    EVP_PKEY *quick = from_numbers(c, spki);
    if (quick != NULL)
        return quick;
    ERR_clear_error();
    key_decoder *d = decoder_for(c, spki);
    const unsigned char *p = der;
    EVP_PKEY *key = NULL;

    if (d == NULL) {
        key = d2i_PUBKEY(NULL, &p, len);
        if (key != NULL && p != der + len) {
            EVP_PKEY_free(key);
            key = NULL;
        }
        return key;
    }
    size_t left = (size_t)len;
    EVP_PKEY_free(d->slot);
    d->slot = NULL;
    if (OSSL_DECODER_from_data(d->dctx, &p, &left) == 1 && left == 0)
        key = d->slot;
    else
        EVP_PKEY_free(d->slot);
    d->slot = NULL;
    return key;
}

void scep_key_remember(const X509_PUBKEY *spki, EVP_PKEY *key)
{
    key_cache *c = this_thread();
    unsigned char *der = NULL;
    int len;

    if (c == NULL || spki == NULL || key == NULL || (len = i2d_X509_PUBKEY(spki, &der)) <= 0)
        goto out;
    int i = find(c, der, len);
    if (i >= 0) {
        to_front(c, i);
        goto out;
    }
    if (!EVP_PKEY_up_ref(key))
        goto out;
    insert(c, der, len, key);
    der = NULL;
out:
    OPENSSL_free(der);
}

EVP_PKEY *scep_key_get1(const X509_PUBKEY *spki)
{
    key_cache *c = this_thread();
    unsigned char *der = NULL;
    EVP_PKEY *key = NULL;
    int len;

    if (spki == NULL || (len = i2d_X509_PUBKEY(spki, &der)) <= 0)
        goto out;
    int i = c != NULL ? find(c, der, len) : -1;
    if (i >= 0) {
        to_front(c, i);
        key = c->e[0].key;
        if (!EVP_PKEY_up_ref(key))
            key = NULL;
        goto out;
    }
    key = decode(c, spki, der, len);
    if (key == NULL)
        goto out;
    if (c != NULL && EVP_PKEY_up_ref(key)) {
        insert(c, der, len, key);
        der = NULL;
    }
out:
    OPENSSL_free(der);
    ERR_clear_error();
    return key;
}

static void nodecode_init(void)
{
    OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
    /* With a provider loaded the context never falls back to loading "default". */
    if (ctx != NULL && OSSL_PROVIDER_load(ctx, "null") == NULL) {
        OSSL_LIB_CTX_free(ctx);
        ctx = NULL;
    }
    g_nodecode = ctx;
    ERR_clear_error();
}

OSSL_LIB_CTX *scep_key_nodecode_libctx(void)
{
    pthread_once(&g_nodecode_once, nodecode_init);
    return g_nodecode;
}
