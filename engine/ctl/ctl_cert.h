/* ctl_cert: the certificates and keys scepctl makes, shared by its commands (engine/ctl/ctl_init.c,
 * engine/ctl/ctl_ca*.c): names from "/CN=.." text, new key files, certificates of the three
 * kinds a SCEP installation needs, and writing them as PEM. */
#ifndef SCEPD_CTL_CERT_H
#define SCEPD_CTL_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

enum ctl_cert_kind {
    CTL_CERT_CA,     /* CA:TRUE, keyCertSign + cRLSign + digitalSignature */
    CTL_CERT_RA,     /* CA:FALSE, digitalSignature + keyEncipherment (the SCEP envelope) */
    CTL_CERT_OCSP,   /* CA:FALSE, digitalSignature, id-kp-OCSPSigning + ocsp-nocheck */
};

/* "/CN=x/O=y" into a name (the rule of challenge_parse_subject); NULL and a message on
 * stderr when malformed. Caller frees. */
X509_NAME *ctl_parse_dn(const char *dn);

/* File mode: a new key for spec ("rsa:BITS" or "ec:CURVE") written to path as PEM, owner-
 * readable only; an existing file is never replaced. Caller frees; NULL with errno set
 * (EEXIST when path exists) on failure. */
EVP_PKEY *ctl_key_file_new(const char *path, const char *spec);

/* Writes one (may be NULL) and then certs (may be NULL) as PEM to path through a temporary
 * file and rename, so a reader (or a crash) never sees half a file. 0, or -1 with a message
 * on stderr. */
int ctl_write_certs(const char *path, STACK_OF(X509) *certs, X509 *one);

/* SHA-384 for P-384 keys, SHA-256 otherwise. */
const EVP_MD *ctl_sign_md(EVP_PKEY *k);

/* A certificate of the given kind for pub, issued by issuer/issuer_key (issuer NULL:
 * self-signed): 16-byte random serial, notBefore now - 5 min, notAfter now + days capped at
 * the issuer's notAfter, SKI, AKI. Caller frees; NULL on error. */
X509 *ctl_make_cert(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key,
                    int days, enum ctl_cert_kind kind);

#endif
