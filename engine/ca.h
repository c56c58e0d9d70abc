/* ca: the CA and RA material a running scepd uses, loaded once at start.
 *
 * Keys come from the PKCS#11 token (through the scepd-hsm provider) or from PEM files,
 * depending on the configuration; either way they are EVP_PKEYs and the rest of the engine
 * does not know the difference. Certificates are parsed once here; the GetCACert and
 * GetCACaps answers are prebuilt bytes.
 */
#ifndef SCEPD_CA_H
#define SCEPD_CA_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "engine/config.h"
#include "hsm/hsm.h"

typedef struct ca_set {
    hsm_token *token;        /* NULL in file mode */
    EVP_PKEY  *ca_key;
    X509      *ca_cert;
    EVP_PKEY  *ra_key;       /* == ca_key (extra reference) when no separate RA */
    X509      *ra_cert;      /* == ca_cert (extra reference) when no separate RA */
    int        has_ra;
    EVP_PKEY  *ca_pub;       /* ca_cert's public key (default provider), for verifying */
    X509_NAME *ca_name;      /* borrowed from ca_cert */
    int64_t    ca_not_after; /* seconds since the epoch */
    uint8_t   *cacert_body;  /* GetCACert answer */
    size_t     cacert_len;
    const char *cacert_type; /* application/x-x509-ca-cert or application/x-x509-ca-ra-cert */
    char       caps[256];    /* GetCACaps answer */
    size_t     caps_len;
} ca_set;

/* Loads everything the configuration names. pin may be NULL in file mode.
 * Returns 0 or -1 with a message in err. */
int ca_load(const config *cfg, const char *pin, ca_set **out, char *err, size_t errlen);
void ca_free(ca_set *ca);     /* accepts NULL */

/* Reads a certificate file, PEM or DER. NULL on error. */
X509 *ca_read_cert(const char *path);

/* 1 if cert was issued by this CA (issuer name matches and the signature verifies). */
int ca_issued(const ca_set *ca, X509 *cert);

#endif
