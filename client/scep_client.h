/* scepc: the project's own SCEP client codec (RFC 8894), for the load generator, the unit and
 * integration tests and tests/tools/scep_req.
 *
 * The library builds and parses bytes; client/scep_http.h adds the HTTP/1.1 framing and one
 * blocking exchange (the load generator runs its own event loop around the framer). No global state: every object belongs to its creator, and objects
 * may be used from several threads only if each thread uses its own (a scepc_ctx included).
 *
 * Conventions:
 *  - Functions return 0 (SCEPC_OK) or a positive scepc_err; details of OpenSSL failures are
 *    left on the OpenSSL error queue. Out-parameters are set only on success.
 *  - "borrowed" pointers stay valid as long as the object they came from; "owned" ones are the
 *    caller's to free with the named function.
 *  - Byte buffers returned by the library are freed with scepc_free().
 */
#ifndef SCEPD_SCEP_CLIENT_H
#define SCEPD_SCEP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Error codes: one list generates the enum, scepc_errname() and scepc_strerror(). Every
 * CertRep check has its own code so a test can tell which one failed. */
#define SCEPC_ERRORS(X) \
    X(OK,                  "success") \
    X(ARG,                 "invalid argument") \
    X(NOMEM,               "out of memory") \
    X(CRYPTO,              "OpenSSL operation failed") \
    X(IO,                  "cannot read or write file") \
    X(ALG,                 "algorithm not available") \
    X(KEYSPEC,             "bad key specification (want rsa:BITS or ec:CURVE)") \
    X(SUBJECT,             "bad subject name (want /CN=x/O=y)") \
    X(SAN,                 "bad subjectAltName") \
    X(TXID,                "transactionID too long or empty") \
    X(CACERT_CTYPE,        "unexpected GetCACert content type") \
    X(CACERT_PARSE,        "GetCACert body does not parse") \
    X(CACERT_EMPTY,        "GetCACert reply holds no certificate") \
    X(CACERT_NO_RECIPIENT, "no certificate usable for encryption") \
    X(REP_PARSE,           "CertRep is not a CMS SignedData with one signer") \
    X(REP_SIGNER,          "CertRep not signed by the expected signer") \
    X(REP_SIGNATURE,       "CertRep signature does not verify") \
    X(REP_MSGTYPE,         "CertRep messageType missing or not 3") \
    X(REP_TXID,            "CertRep transactionID missing or different") \
    X(REP_RECIPIENT_NONCE, "CertRep recipientNonce differs from our senderNonce") \
    X(REP_SENDER_NONCE,    "CertRep senderNonce missing or not 16 bytes") \
    X(REP_STATUS,          "CertRep pkiStatus missing or invalid") \
    X(REP_FAILINFO,        "CertRep failInfo missing or invalid") \
    X(REP_NO_CONTENT,      "CertRep SUCCESS without pkcsPKIEnvelope") \
    X(REP_DECRYPT,         "CertRep envelope does not decrypt with our key") \
    X(REP_INNER,           "CertRep inner content is not a certs-only SignedData") \
    X(REP_NO_CERT,         "CertRep SUCCESS holds no certificate or CRL") \
    X(REP_KEY_MISMATCH,    "issued certificate does not carry our public key") \
    X(HTTP,                "HTTP exchange failed or the answer cannot be framed")

typedef enum scepc_err {
#define SCEPC_X(name, msg) SCEPC_E_##name,
    SCEPC_ERRORS(SCEPC_X)
#undef SCEPC_X
    SCEPC_E__COUNT
} scepc_err;
#define SCEPC_OK SCEPC_E_OK

/* Short name ("REP_TXID") and message; never NULL, also for unknown codes. */
const char *scepc_errname(int err);
const char *scepc_strerror(int err);

/* Frees a byte buffer returned by the library. Accepts NULL. */
void scepc_free(void *p);

/* ---- protocol constants ---- */
enum scepc_msgtype {
    SCEPC_MSG_CERTREP = 3,
    SCEPC_MSG_RENEWALREQ = 17,
    SCEPC_MSG_PKCSREQ = 19,
    SCEPC_MSG_CERTPOLL = 20,      /* GetCertInitial */
    SCEPC_MSG_GETCERT = 21,
    SCEPC_MSG_GETCRL = 22,
};
enum scepc_status { SCEPC_SUCCESS = 0, SCEPC_FAILURE = 2, SCEPC_PENDING = 3 };
enum scepc_failinfo {
    SCEPC_FAIL_NONE = -1,
    SCEPC_FAIL_BADALG = 0,
    SCEPC_FAIL_BADMESSAGECHECK = 1,
    SCEPC_FAIL_BADREQUEST = 2,
    SCEPC_FAIL_BADTIME = 3,
    SCEPC_FAIL_BADCERTID = 4,
};
#define SCEPC_NONCE_LEN 16
#define SCEPC_TXID_MAX 128

/* "SUCCESS"/"FAILURE"/"PENDING"/"?", "badAlg".."badCertId"/"-" (for -1)/"?" */
const char *scepc_status_name(int status);
const char *scepc_failinfo_name(int failinfo);

typedef enum scepc_md { SCEPC_MD_SHA1, SCEPC_MD_SHA256, SCEPC_MD_SHA384, SCEPC_MD_SHA512,
                        SCEPC_MD__COUNT } scepc_md;
typedef enum scepc_cipher { SCEPC_CIPHER_AES128, SCEPC_CIPHER_AES192, SCEPC_CIPHER_AES256,
                            SCEPC_CIPHER_DES3, SCEPC_CIPHER__COUNT } scepc_cipher;

/* Name lookups for command lines: "sha256", "aes128", "des3", ... Return 0 or SCEPC_E_ARG. */
int scepc_md_from_name(const char *name, scepc_md *out);
int scepc_cipher_from_name(const char *name, scepc_cipher *out);

/* ---- client context: algorithms fetched once, attribute OIDs ---- */
typedef struct scepc_ctx scepc_ctx;

/* libctx and propq may be NULL (default library context). propq is copied. Fails with
 * SCEPC_E_ALG if a required algorithm (SHA-256, AES-CBC) cannot be fetched; SHA-1 and DES3
 * are optional and only fail when used. */
int scepc_ctx_create(OSSL_LIB_CTX *libctx, const char *propq, scepc_ctx **out);
void scepc_ctx_destroy(scepc_ctx *ctx);
/* Borrowed from ctx; NULL if the algorithm is unavailable. */
const EVP_MD *scepc_ctx_md(const scepc_ctx *ctx, scepc_md md);
const EVP_CIPHER *scepc_ctx_cipher(const scepc_ctx *ctx, scepc_cipher cipher);
/* What ctx was created with (borrowed; may be NULL). */
OSSL_LIB_CTX *scepc_ctx_libctx(const scepc_ctx *ctx);
const char *scepc_ctx_propq(const scepc_ctx *ctx);

/* ---- GetCACaps ---- */
enum scepc_cap {
    SCEPC_CAP_POSTPKIOPERATION = 1u << 0,
    SCEPC_CAP_SHA1 = 1u << 1,
    SCEPC_CAP_SHA256 = 1u << 2,
    SCEPC_CAP_SHA512 = 1u << 3,
    SCEPC_CAP_AES = 1u << 4,
    SCEPC_CAP_DES3 = 1u << 5,
    SCEPC_CAP_SCEPSTANDARD = 1u << 6,
    SCEPC_CAP_RENEWAL = 1u << 7,
    SCEPC_CAP_GETNEXTCACERT = 1u << 8,
};
/* One capability per line (LF or CRLF), case-insensitive, surrounding blanks ignored;
 * unknown lines are ignored. text need not be NUL-terminated. */
unsigned scepc_parse_caps(const char *text, size_t len);

/* ---- GetCACert: the CA set ---- */
typedef struct scepc_caset scepc_caset;

/* content_type: "application/x-x509-ca-cert" (one DER certificate) or
 * "application/x-x509-ca-ra-cert" (degenerate certs-only PKCS#7), parameters after ';'
 * ignored; NULL sniffs the body. */
int scepc_parse_cacert(const uint8_t *body, size_t len, const char *content_type,
                       scepc_caset **out);
/* Builds a set from certificates the caller has (e.g. ca.pem + ra.pem); takes its own
 * references, the caller keeps certs. */
int scepc_caset_from_certs(STACK_OF(X509) *certs, scepc_caset **out);
void scepc_caset_destroy(scepc_caset *set);
/* Borrowed from set. ca: the issuing CA; recipient: RA cert with keyEncipherment, else the
 * CA; signer: the expected CertRep signer (RA cert with digitalSignature, else the CA). */
X509 *scepc_caset_ca(const scepc_caset *set);
X509 *scepc_caset_recipient(const scepc_caset *set);
X509 *scepc_caset_signer(const scepc_caset *set);
STACK_OF(X509) *scepc_caset_certs(const scepc_caset *set);

/* ---- keys, names, CSR, transient signer ---- */
/* spec: "rsa:2048", "rsa" (2048), "ec:P-256", "ec:prime256v1", "ec:P-384", "ed25519". */
int scepc_keygen(const scepc_ctx *ctx, const char *spec, EVP_PKEY **out);
/* "/CN=x/O=y" (UTF-8, '\/' escapes a slash) -> owned X509_NAME. */
int scepc_name_parse(const char *text, X509_NAME **out);

typedef enum scepc_san_type { SCEPC_SAN_DNS, SCEPC_SAN_EMAIL, SCEPC_SAN_URI, SCEPC_SAN_UPN,
                              SCEPC_SAN_IP } scepc_san_type;
typedef struct scepc_san {
    scepc_san_type type;
    const char *value;
} scepc_san;
/* "dns:x", "email:y", "uri:z", "upn:w", "ip:1.2.3.4" -> san (value borrowed from text). */
int scepc_san_parse(const char *text, scepc_san *out);

/* Builds and signs a CSR. challenge NULL: no challengePassword attribute (otherwise a
 * PrintableString when possible, else UTF8String). sans (nsans may be 0) go into a
 * subjectAltName inside the extensionRequest attribute, followed by extra (may be NULL;
 * e.g. basicConstraints CA:TRUE for negative tests). Returns an owned X509_REQ. */
int scepc_build_csr(const scepc_ctx *ctx, EVP_PKEY *key, const X509_NAME *subject,
                    const char *challenge, const scepc_san *sans, size_t nsans,
                    const STACK_OF(X509_EXTENSION) *extra, scepc_md md, X509_REQ **out);
/* Self-signed transient signer certificate (random serial, valid from 1 h ago for 7 days),
 * as initial-enrollment clients send. Returns an owned X509. */
int scepc_self_signed(const scepc_ctx *ctx, EVP_PKEY *key, const X509_NAME *subject,
                      scepc_md md, X509 **out);

/* ---- pkiMessage ---- */

/* What a reply is checked against: returned by scepc_build_pkimessage(). */
typedef struct scepc_txn {
    char txid[SCEPC_TXID_MAX + 1];
    uint8_t sender_nonce[SCEPC_NONCE_LEN];
    int msgtype;                       /* number written into the message */
} scepc_txn;

typedef struct scepc_msg_params {
    int msgtype;                 /* enum scepc_msgtype: selects the envelope content */
    int wire_msgtype;            /* 0: msgtype; else this number is sent (e.g. 99) */
    const X509_REQ *csr;         /* PKCSReq, RenewalReq; CertPoll subject; default txid */
    const X509_NAME *subject;    /* CertPoll when csr is NULL */
    const X509_NAME *issuer;     /* CertPoll/GetCert/GetCRL; NULL: the CA's subject */
    const ASN1_INTEGER *serial;  /* GetCert/GetCRL */
    X509 *signer_cert;           /* self-signed transient or an existing certificate */
    EVP_PKEY *signer_key;        /* its key */
    const scepc_caset *ca;
    scepc_md md;
    scepc_cipher cipher;
    int oaep;                    /* RSA-OAEP key transport instead of PKCS#1 v1.5 */
    const char *txid;            /* NULL: hex SHA-256 of the CSR's (else the signer's)
                                  * SubjectPublicKeyInfo DER */
    const uint8_t *sender_nonce; /* NULL: 16 random bytes */
    /* negative-test knobs */
    int corrupt_signature;       /* flip a byte of the signature value after signing */
    EVP_PKEY *wrong_key;         /* sign with this key while naming signer_cert as signer */
} scepc_msg_params;

/* 2*n hex digits (upper case when upper: the form of transactionIDs and nonces in SCEP
 * tooling) and a NUL into out (2*n+1 bytes). The engine has its own (engine/common/hex.h):
 * this library does not link the engine. */
void scepc_hex(const uint8_t *b, size_t n, int upper, char *out);

/* Builds the DER pkiMessage: SignedData (signed attributes transactionID, messageType,
 * senderNonce) over an EnvelopedData (to the CA set's recipient) holding the CSR,
 * IssuerAndSubject or IssuerAndSerialNumber. *der is owned (scepc_free); *txn is filled. */
int scepc_build_pkimessage(const scepc_ctx *ctx, const scepc_msg_params *p,
                           uint8_t **der, size_t *der_len, scepc_txn *txn);
/* Hex (upper case) SHA-256 of the DER SubjectPublicKeyInfo of key: the default txid. */
int scepc_txid_from_key(const scepc_ctx *ctx, const EVP_PKEY *key,
                        char out[SCEPC_TXID_MAX + 1]);

/* ---- CertRep ---- */
typedef struct scepc_expect {
    const scepc_txn *txn;          /* txid and our senderNonce */
    X509 *signer_cert;             /* ours: the envelope is encrypted to it */
    EVP_PKEY *signer_key;          /* decrypts the envelope */
    const EVP_PKEY *subject_key;   /* SUCCESS must issue a cert with this key; NULL: no check
                                    * (GetCert, GetCRL) */
} scepc_expect;

/* Owned by the caller after a successful parse; release with scepc_result_clear(). */
typedef struct scepc_result {
    int status;                    /* enum scepc_status */
    int failinfo;                  /* enum scepc_failinfo, SCEPC_FAIL_NONE unless FAILURE */
    char *failinfo_text;           /* NUL-terminated UTF-8 or NULL */
    uint8_t server_nonce[SCEPC_NONCE_LEN];
    STACK_OF(X509) *certs;         /* SUCCESS: every certificate in the reply, else NULL */
    STACK_OF(X509_CRL) *crls;      /* SUCCESS to GetCRL, else NULL */
    X509 *cert;                    /* borrowed from certs: the one with subject_key (or the
                                    * first when subject_key is NULL), or NULL */
} scepc_result;

/* Parses and checks a CertRep: signer == the CA set's expected signer, signature,
 * messageType 3, transactionID, recipientNonce, senderNonce, pkiStatus, failInfo, and for
 * SUCCESS decrypts the envelope and checks the issued key. Each failed check returns its own
 * SCEPC_E_REP_* code. */
int scepc_parse_certrep(const scepc_ctx *ctx, const uint8_t *der, size_t len,
                        const scepc_caset *ca, const scepc_expect *exp, scepc_result *out);
/* Frees what a result owns and zeroes it; accepts NULL and zeroed results. */
void scepc_result_clear(scepc_result *r);

/* ---- files (for tools) ---- */
/* Reads a whole file; *data owned (scepc_free), NUL-terminated beyond *len. */
int scepc_read_file(const char *path, uint8_t **data, size_t *len);
/* Writes atomically enough for tests (create/truncate, mode 0600 for keys via write_key). */
int scepc_write_file(const char *path, const void *data, size_t len);
int scepc_write_cert(const char *path, X509 *cert, int pem);
int scepc_write_key(const char *path, EVP_PKEY *key);          /* PEM PKCS#8, mode 0600 */
int scepc_write_crl(const char *path, X509_CRL *crl, int pem);
/* PEM or DER, detected. Return owned objects. */
int scepc_read_cert(const char *path, X509 **out);
int scepc_read_key(const scepc_ctx *ctx, const char *path, EVP_PKEY **out);

#endif
