/* scepc: reading and writing the files a client keeps (DER/PEM certificates, CRLs, keys).
 * See scep_client.h. */
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
