/* Per-thread cache of decoded public keys. See keycache.h. */
#include "engine/scep/keycache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/provider.h>

#define KEYCACHE_ENTRIES 4     /* a request needs two at most (signer, CSR); a few for slack */

typedef struct key_entry {
    unsigned char *der;     /* encoded SubjectPublicKeyInfo (OPENSSL_malloc'd) */
    int len;
    EVP_PKEY *key;          /* one reference held */
} key_entry;

typedef struct key_cache {
    key_entry e[KEYCACHE_ENTRIES];   /* most recently used first */
} key_cache;

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
    const unsigned char *p = der;
    key = d2i_PUBKEY(NULL, &p, len);
    if (key == NULL || p != der + len) {
        EVP_PKEY_free(key);
        key = NULL;
        goto out;
    }
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
