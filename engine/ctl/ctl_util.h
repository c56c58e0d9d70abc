/* Certificate helpers shared by scepctl's commands (engine/ctl.c, engine/ctl/ctl_ca.c). */
#ifndef SCEPD_CTL_UTIL_H
#define SCEPD_CTL_UTIL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

enum ctl_cert_kind {
    CTL_CERT_CA,     /* CA:TRUE, keyCertSign + cRLSign + digitalSignature */
    CTL_CERT_RA,     /* CA:FALSE, digitalSignature + keyEncipherment (the SCEP envelope) */
    CTL_CERT_OCSP,   /* CA:FALSE, digitalSignature, id-kp-OCSPSigning + ocsp-nocheck */
};

/* "/CN=x/O=y" into a name; NULL (and a message on stderr) when malformed. Caller frees. */
X509_NAME *ctl_parse_dn(const char *dn);

/* SHA-384 for P-384 keys, SHA-256 otherwise. */
const EVP_MD *ctl_sign_md(EVP_PKEY *k);

/* A certificate of the given kind for pub, issued by issuer/issuer_key (issuer NULL:
 * self-signed): 16-byte random serial, notBefore now - 5 min, notAfter now + days capped at
 * the issuer's notAfter, SKI, AKI. Caller frees; NULL on error. */
X509 *ctl_make_cert(const X509_NAME *subject, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key,
                    int days, enum ctl_cert_kind kind);

#endif
