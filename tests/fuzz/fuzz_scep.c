/* Fuzz target for engine/scep/scep.c, the server side of the SCEP codec: scep_parse over the
 * whole input (and, when it parses, scep_open_envelope with the fixed RA key below and
 * scep_certrep as the server would answer), plus scep_open_envelope over the whole input
 * taken as a pkcsPKIEnvelope, so the envelope code is reached without a valid signature.
 * Violated invariants abort(), so the replay driver and libFuzzer both flag them.
 *
 * The seed corpus (tests/fuzz/corpus/fuzz_scep/) holds pkiMessages encrypted to this RA
 * certificate; a small RSA key keeps the private-key operation cheap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>

#include "engine/scep/reject.h"
#include "engine/scep/scep.h"

static const char RA_KEY_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAO8L5QYrpjJJ5HzI\n"
    "JSUuHqe0jL3w0CBCGltUbRVQnjwwjn9LXqWpv4ulQ1rMh5hu1SobfhAu6fV1OjvJ\n"
    "UYz5o42vfYw3+bH4TLMDFJ+izcLAenHZnI6IrmttjJvLyNGd/FASu/E7ewTe8MKL\n"
    "nr4u0oHPNW9mO0amrAQqlW26GJYpAgMBAAECgYA6p8+FqRY5xrnjCHVc3yk0e3AB\n"
    "d2KKV84B1QCDN2nsWPnOMF9EBRf0GxQg5ojrFV8G2wIe1HQh/6bPXsG89tBzjUOW\n"
    "6sI/UkfoHaG8qvsrwvontT3Cqe88xj30BSmkT7nFA4JbSS1tGMRwVg9Lv4dAiA7+\n"
    "Z7vJSzaC3ObK0Vl+BQJBAP8dTbE1s9h9EiqhBAtkCMB9w2l91LDHW9xcJmNIQzaC\n"
    "tbm448+x7QKkDCwTKtQBIZZwlJukQ/lNojrM1IVkDCMCQQDv4FAgtCK7AXc1Kyde\n"
    "S/Yb+YS5ChR6N+uMwIp/5KZjjrtsfctY1IDIQ7deQvhh0ol626TUM8CkvlPfjSDF\n"
    "9wNDAkEApwXtZrbtHzCLY0N13WtJ25S7CmbqiC6NctEWBOw7rQWYqpZk+AbaUF9M\n"
    "5NJLuO9gqRjeAqRiKGdubibKgOaGlwJACAbYh4+fjeRpqcTM53HhRWRfFZYJw2E1\n"
    "p5sVx1vOWYyAJww6jrllqc3iR+wzxYo3AX5yEIu+yYR46AUf8J/oYwJAanQj/abW\n"
    "iZQXEFYPKALLeBpMMneJfq2WAoWERh/biPGTPSb3cnBlWlVwhQnXhUVuivQFSl5I\n"
    "OXloBMlFz+s1lw==\n"
    "-----END PRIVATE KEY-----\n";

static const char RA_CERT_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICRDCCAa2gAwIBAgIUPDiD9T4jpnHXnvBCSjQy53ktaZgwDQYJKoZIhvcNAQEL\n"
    "BQAwLjEWMBQGA1UEAwwNc2NlcGQgZnV6eiBSQTEUMBIGA1UECgwLc2NlcGQgdGVz\n"
    "dHMwIBcNMjYxMTIzMDIyNjM2WhgPMjEyNjEwMzAwMjI2MzZaMC4xFjAUBgNVBAMM\n"
    "DXNjZXBkIGZ1enogUkExFDASBgNVBAoMC3NjZXBkIHRlc3RzMIGfMA0GCSqGSIb3\n"
    "DQEBAQUAA4GNADCBiQKBgQDvC+UGK6YySeR8yCUlLh6ntIy98NAgQhpbVG0VUJ48\n"
    "MI5/S16lqb+LpUNazIeYbtUqG34QLun1dTo7yVGM+aONr32MN/mx+EyzAxSfos3C\n"
    "wHpx2ZyOiK5rbYyby8jRnfxQErvxO3sE3vDCi56+LtKBzzVvZjtGpqwEKpVtuhiW\n"
    "KQIDAQABo10wWzAdBgNVHQ4EFgQU4IqlHCQuub505wpGk2SsMJUYob4wHwYDVR0j\n"
    "BBgwFoAU4IqlHCQuub505wpGk2SsMJUYob4wDgYDVR0PAQH/BAQDAgWgMAkGA1Ud\n"
    "EwQCMAAwDQYJKoZIhvcNAQELBQADgYEAK2XvKeliaVNqP2vWbBuPO+TTA7vyTMgY\n"
    "fqy7PEGUzFmi2YPsWTZalkGbTUFVPtPFKE1yhODDgWaQCfbl4SlyIzcxOc9lkq3r\n"
    "d4WYF1YvOcBc+Zt0CsdRuoNebs5ymbGINJ3E4ZkEEmU+Xxw8QFvCgQftzTceDCm9\n"
    "PgYKYqhUHM8=\n"
    "-----END CERTIFICATE-----\n";

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    OSSL_PROVIDER *legacy, *deflt;  /* kept so they stay reachable until exit */
    EVP_PKEY *ra_key;
    X509 *ra_cert;
    STACK_OF(X509) *certs;        /* what a SUCCESS carries */
} G;

static void init(void)
{
    BIO *kb = BIO_new_mem_buf(RA_KEY_PEM, -1), *cb = BIO_new_mem_buf(RA_CERT_PEM, -1);

    /* Single DES (allow_des) can only be decrypted with the legacy provider; loading it
     * needs the default provider loaded explicitly too. Either may be missing. */
    G.legacy = OSSL_PROVIDER_load(NULL, "legacy");
    G.deflt = OSSL_PROVIDER_load(NULL, "default");
    if (kb == NULL || cb == NULL)
        abort();
    G.ra_key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    G.ra_cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    G.certs = sk_X509_new_null();
    if (G.ra_key == NULL || G.ra_cert == NULL || G.certs == NULL ||
        !sk_X509_push(G.certs, G.ra_cert))
        abort();
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    G.ready = 1;
}

static void certrep(const scep_request *req, int status, int failinfo, const char *text)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int rc = scep_certrep(req, status, failinfo, text, G.certs, G.ra_key, G.ra_cert, &out,
                          &outlen);
    if (rc == 0 && (out == NULL || outlen == 0))
        abort();
    if (rc != 0 && rc != -1)
        abort();
    free(out);
}

/* A refusal is any row of the reject table answered with a failInfo (the table, not a list
 * of codes, so a new row needs no harness change); a refused envelope leaves no inner. */
static void check_opened(const scep_request *req, int rc, int allow_des)
{
    if (rc == REJ_NONE) {
        if (req->inner == NULL || req->inner_len == 0)
            abort();
        if (scep_cipher_for_nid(req->cipher_nid) == NULL &&
            !(allow_des && req->cipher_nid == NID_des_cbc))
            abort();
    } else if (rc < 0 || rc >= REJ__COUNT || reject_failinfo(rc) == SCEP_FAIL_NONE ||
               req->inner != NULL) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    scep_request req;

    if (!G.ready)
        init();
    /* Exact-size copy so an over-read is caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);

    int allow = size > 0 ? data[size - 1] & 1 : 0;
    int rc = scep_parse(buf, size, allow, &req);
    if (rc < 0 || rc >= REJ__COUNT)
        abort();
    if (rc == REJ_NONE) {
        /* An accepted transactionID is what was sent: printable ASCII, no NUL, no cut. */
        for (size_t i = 0; i < req.txid_len; i++)
            if (req.txid[i] < 0x20 || req.txid[i] > 0x7e)
                abort();
        if (req.txid_len == 0 || req.txid_len > SCEP_TXID_MAX || !req.has_nonce ||
            strlen(req.txid) != req.txid_len || req.txid_sent == NULL ||
            (size_t)req.txid_sent->length != req.txid_len ||
            req.msg_type < 0 || req.signer == NULL || req.cms == NULL ||
            (req.envelope == NULL) != (req.envelope_len == 0))
            abort();
        int orc = scep_open_envelope(&req, G.ra_key, G.ra_cert, allow);
        check_opened(&req, orc, allow);
        if (orc == REJ_NONE)
            certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL);
        else
            certrep(&req, SCEP_FAILURE, reject_failinfo(orc), reject_text(orc));
    } else if (rc != REJ_NOT_PKIMESSAGE) {
        /* Parsed far enough to be answered: the server sends a signed FAILURE. */
        if (reject_failinfo(rc) == SCEP_FAIL_NONE)
            abort();
        certrep(&req, SCEP_FAILURE, reject_failinfo(rc), reject_text(rc));
        certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL);
    }
    scep_request_clear(&req);
    if (req.cms != NULL || req.signer != NULL || req.envelope != NULL || req.inner != NULL)
        abort();

    /* The whole input as the pkcsPKIEnvelope of an already verified request. */
    memset(&req, 0, sizeof(req));
    if (size > 0) {
        req.envelope = buf;
        req.envelope_len = size;
        buf = NULL;
        check_opened(&req, scep_open_envelope(&req, G.ra_key, G.ra_cert, allow), allow);
    }
    scep_request_clear(&req);
    free(buf);
    return 0;
}
