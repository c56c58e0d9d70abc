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

#include "engine/common/config.h"
#include "hsm/hsm.h"

/* Extra CA files not (yet) in the main configuration. Every field may be NULL or "", which
 * means the default next to [keys] ca_cert (same directory):
 *   ca_chain      "ca-chain.pem": certificates above the CA (intermediates, optionally the
 *                 root), PEM, issuer order; used only when the file exists.
 *   next_ca_cert  "next-ca.pem": the staged next CA certificate (scepctl ca stage-next),
 *                 followed by its RA certificate when there is one; used only when it exists.
 * Key labels: when "<ca_cert>.label" / "<ra_cert>.label" exists, its first line names the
 * token key of that certificate instead of [keys] ca_key_label / ra_key_label (written by
 * scepctl ca activate-next and ra renew --new-key, because PKCS#11 labels are not renamed). */
typedef struct ca_paths {
    const char *ca_chain;
    const char *next_ca_cert;
} ca_paths;

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
    STACK_OF(X509) *chain;   /* certificates above the CA (may be empty, never NULL) */
    int        has_next;     /* a next CA is staged: GetNextCACert answers, caps say so */
    uint8_t   *nextca_body;  /* GetNextCACert answer: SignedData (CA key) over a degenerate
                                PKCS#7 of the next CA (+ its RA) */
    size_t     nextca_len;
    const char *nextca_type; /* application/x-x509-next-ca-cert */
} ca_set;

/* Loads everything the configuration names (and the default ca_paths files). pin may be NULL
 * in file mode. Returns 0 or -1 with a message in err. GetCACert answers RA + CA + chain as a
 * degenerate PKCS#7 when there is an RA or a chain, the bare CA DER otherwise. */
int ca_load(const config *cfg, const char *pin, ca_set **out, char *err, size_t errlen);
/* Same, with extra paths (NULL: all defaults). The chain must verify: each certificate issues
 * the one below it, starting at the CA. */
int ca_load_ex(const config *cfg, const char *pin, const ca_paths *extra, ca_set **out,
               char *err, size_t errlen);

/* Resolves the effective paths/labels (defaults above); buffers of CONFIG_PATH_MAX / 64. */
void ca_default_path(const config *cfg, const char *name, char *out, size_t outlen);
void ca_key_label(const char *cert_path, const char *cfg_label, char *out, size_t outlen);

/* Reads every certificate of a PEM file (or one DER certificate). 0 and *out (caller frees
 * with sk_X509_pop_free), or -1. An empty file gives -1. */
int ca_read_certs(const char *path, STACK_OF(X509) **out);

/* Checks that chain links cert upwards: chain[0] issued cert, chain[i+1] issued chain[i]
 * (names and signatures), each a CA (basicConstraints CA:TRUE). An empty chain is fine.
 * 0 or -1 with err. */
int ca_check_chain(X509 *cert, STACK_OF(X509) *chain, char *err, size_t errlen);
void ca_free(ca_set *ca);     /* accepts NULL */

/* Reads a certificate file, PEM or DER. NULL on error. */
X509 *ca_read_cert(const char *path);

/* Reads an unencrypted PEM private key file (file-key mode). NULL on error. */
EVP_PKEY *ca_read_key_file(const char *path);

/* 1 if cert was issued by this CA (issuer name matches and the signature verifies). */
int ca_issued(const ca_set *ca, X509 *cert);

#endif
