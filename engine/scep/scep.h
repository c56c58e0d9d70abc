/* scep: the server side of the SCEP message codec (RFC 8894).
 *
 * scep_parse() takes a pkiMessage (outer SignedData) apart and verifies its signature with
 * the signer certificate it carries (a public-key operation). scep_open_envelope() decrypts the
 * pkcsPKIEnvelope with the RA key (a private-key operation, crypto workers only).
 * scep_certrep() builds the signed CertRep (RA key: private-key operation).
 */
#ifndef SCEPD_SCEP_H
#define SCEPD_SCEP_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/cms.h>
#include <openssl/x509.h>

enum scep_msg_type {
    SCEP_MSG_CERTREP = 3,
    SCEP_MSG_RENEWALREQ = 17,
    SCEP_MSG_PKCSREQ = 19,
    SCEP_MSG_CERTPOLL = 20,
    SCEP_MSG_GETCERT = 21,
    SCEP_MSG_GETCRL = 22,
};

enum scep_status { SCEP_SUCCESS = 0, SCEP_FAILURE = 2, SCEP_PENDING = 3 };

/* failInfo values; SCEP_FAIL_NONE means "no failure". */
#define SCEP_FAILINFO(X) \
    X(BADALG, 0, "badAlg") \
    X(BADMESSAGECHECK, 1, "badMessageCheck") \
    X(BADREQUEST, 2, "badRequest") \
    X(BADTIME, 3, "badTime") \
    X(BADCERTID, 4, "badCertId")

enum scep_failinfo {
#define X(name, val, text) SCEP_FAIL_##name = val,
    SCEP_FAILINFO(X)
#undef X
    SCEP_FAIL_NONE = -1,
};

const char *scep_failinfo_name(int failinfo);

#define SCEP_NONCE_LEN 16
/* The longest transactionID accepted, in bytes; it must also be printable ASCII (0x20..0x7e).
 * Longer ones, and ones with a NUL or another control byte, are refused (REJ_BAD_TXID). */
#define SCEP_TXID_MAX 128

/* A parsed request. Owns every pointer; free with scep_request_clear(). */
typedef struct scep_request {
    CMS_ContentInfo *cms;         /* outer SignedData */
    X509   *signer;               /* signer certificate (reference owned here); its key may
                                     be left undecoded (fastpath.h): use signer_key      */
    EVP_PKEY *signer_key;         /* the signer's public key, decoded once (owned here) */
    int     msg_type;             /* as sent, may be an unknown number */
    char    txid[SCEP_TXID_MAX + 1]; /* NUL-terminated; on REJ_BAD_TXID only what the
                                        audit log shows of it (see scep_parse)        */
    size_t  txid_len;
    const ASN1_STRING *txid_sent; /* the attribute value as sent, echoed by scep_certrep
                                     (borrowed from cms; NULL when absent)           */
    uint8_t sender_nonce[SCEP_NONCE_LEN];
    int     has_nonce;
    int     sig_md_nid;           /* digest of the signer info */
    const uint8_t *envelope;      /* eContent: DER EnvelopedData (may be NULL; borrowed
                                     from cms) */
    size_t   envelope_len;
    /* Filled by scep_open_envelope(): */
    int     cipher_nid;           /* content-encryption algorithm the client used */
    uint8_t *inner;               /* decrypted content (CSR, IssuerAndSubject, ...) */
    size_t   inner_len;
} scep_request;

/* Parses and verifies the outer message. Returns an enum scep_reject (engine/scep/reject.h):
 *   REJ_NONE when the message parsed and its signature verified (req->txid is then 1 to
 *     SCEP_TXID_MAX bytes of printable ASCII, exactly as sent);
 *   REJ_BAD_TXID for a transactionID that is longer or not printable: req->txid holds a
 *     rendering for the audit log ('?' for each byte outside 0x20..0x7e, "..." past the
 *     limit), never to be used as a key;
 *   REJ_NOT_PKIMESSAGE when the bytes are not a pkiMessage at all (caller answers HTTP 400);
 *   any other code when it parsed far enough to answer with a CertRep FAILURE.
 * On any return, req must be cleared with scep_request_clear(). */
int scep_parse(const uint8_t *der, size_t len, int allow_sha1, scep_request *req);

/* Decrypts req->envelope with the RA key (ra_cert identifies the recipient). allow_des accepts
 * single DES-CBC (the caller has loaded OpenSSL's legacy provider); req->cipher_nid then says
 * so and the reply uses DES3. Returns REJ_NONE,
 * REJ_NO_ENVELOPE, REJ_CIPHER (forbidden content cipher) or REJ_DECRYPT. */
int scep_open_envelope(scep_request *req, EVP_PKEY *ra_key, X509 *ra_cert, int allow_des);

void scep_request_clear(scep_request *req);

/* Which CMS content-encryption ciphers a client may use (nid -> fetched cipher or NULL). */
const EVP_CIPHER *scep_cipher_for_nid(int nid);

/* Builds the CertRep for req.
 * status SUCCESS: certs (issued certificate first) go in a degenerate SignedData encrypted
 *   to req->signer with req->cipher_nid; failinfo ignored.
 * status FAILURE: failinfo set, failtext optional (failInfoText attribute), no envelope.
 * status PENDING: no envelope.
 * Signed with signer_key/signer_cert (the RA) using the digest the client used (SHA-256 at
 * least). Returns 0 and a malloc()ed DER in *out, its length in *outlen; or -1. */
int scep_certrep(const scep_request *req, int status, int failinfo, const char *failtext,
                 STACK_OF(X509) *certs, EVP_PKEY *signer_key, X509 *signer_cert,
                 uint8_t **out, size_t *outlen);

/* As scep_certrep, with the SUCCESS content given as DER (a degenerate SignedData carrying
 * certificates or CRLs); it is encrypted to the requester. content is ignored unless SUCCESS. */
int scep_certrep_content(const scep_request *req, int status, int failinfo,
                         const char *failtext, const uint8_t *content, size_t content_len,
                         EVP_PKEY *signer_key, X509 *signer_cert, uint8_t **out, size_t *outlen);

/* A degenerate certs-only SignedData of certs, in the given order, with no eContent (RFC 8894
 * section 3.4) (DER, malloc()ed). Returns 0 or -1. */
int scep_degenerate(STACK_OF(X509) *certs, uint8_t **out, size_t *outlen);

/* A degenerate SignedData whose crls field holds crl (the DER of one CRL, copied as is, not
 * parsed), for the GetCRL CertRep (scep_certrep_content). *out malloc()ed. Returns 0 or -1. */
int scep_degenerate_crl(const uint8_t *crl, size_t crl_len, uint8_t **out, size_t *outlen);

/* scep_degenerate for certificates already encoded: certs is the DER of one or more
 * certificates back to back (copied as is, not parsed). *out malloc()ed. Returns 0 or -1. */
int scep_degenerate_der(const uint8_t *certs, size_t len, uint8_t **out, size_t *outlen);

#endif
