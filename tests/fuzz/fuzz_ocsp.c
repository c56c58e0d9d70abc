/* Fuzz target for engine/pki/ocsp.c: the OCSP request parser ocsp_parse_request, and the whole
 * responder ocsp_respond over a real LMDB store holding one good (serial 1) and one revoked
 * (serial 2) certificate. A request that parses is also re-addressed to the responder's CA
 * (each CertID rebuilt with the CA's hashes, the same serial and hash algorithm, the nonce
 * kept), so mutated requests reach the store lookup, the signing and the cache instead of
 * stopping at "unauthorized".
 *
 * Invariants: a parse is 0 with 1..OCSP_MAX_IDS CertIDs or malformedRequest; every answer is
 * an OCSPResponse whose status is the one reported; a re-addressed request is answered
 * successfully, signed by the responder, with good / revoked / unknown exactly as the store
 * says for each serial; asking again gives the same statuses (from the cache when the
 * request is cacheable), and so does asking for each CertID of the request alone (a cached
 * answer is never served for another CertID). Each input gets a fresh responder, so its
 * cache starts empty and every input replays alone. Violated invariants abort(), so the replay driver and libFuzzer both
 * flag them. The store lives in a private temporary directory (TMPDIR, else /tmp). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "engine/pki/ocsp.h"
#include "engine/store/store.h"

#define NOW 1750000000

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    char dir[256];
    EVP_PKEY *ca_key, *resp_key;
    X509 *ca, *resp;
    STACK_OF(X509) *trust;
    X509_STORE *xs;
    store *st;
    store_reader *rd;
    ocsp_responder *r;      /* one per input */
} G;

static void cleanup(void)
{
    char p[300];
    store_reader_destroy(G.rd);
    store_close(G.st);
    snprintf(p, sizeof(p), "%s/data.mdb", G.dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", G.dir);
    unlink(p);
    rmdir(G.dir);
    X509_STORE_free(G.xs);
    sk_X509_free(G.trust);
    X509_free(G.ca);
    X509_free(G.resp);
    EVP_PKEY_free(G.ca_key);
    EVP_PKEY_free(G.resp_key);
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;
    X509_EXTENSION *e = NULL;
    if (x == NULL ||
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), issuer != NULL ? 7 : 1) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) == NULL || !X509_set_pubkey(x, key))
        abort();
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    e = issuer != NULL ? X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "OCSPSigning")
                       : X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    if (e == NULL || !X509_add_ext(x, e, -1) ||
        X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <= 0)
        abort();
    X509_EXTENSION_free(e);
    return x;
}

static void put(int revoke, uint8_t last)
{
    store_put p;
    memset(&p, 0, sizeof(p));
    p.cert.serial[STORE_SERIAL_LEN - 1] = last;
    p.rev.serial[STORE_SERIAL_LEN - 1] = last;
    p.cert.der = (const uint8_t *)"\x30\x00";
    p.cert.der_len = 2;
    if (revoke) {
        p.kind = STORE_PUT_REVOKE;
        p.rev.reason = 1;
        p.rev.revoked_at = NOW - 86400;
    }
    if (store_put_sync(G.st, &p) != 0 || p.result != STORE_OK)
        abort();
}

static void init(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(G.dir, sizeof(G.dir), "%s/fuzz_ocsp.XXXXXX", t != NULL && *t ? t : "/tmp");
    G.ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.resp_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (G.ca_key == NULL || G.resp_key == NULL || mkdtemp(G.dir) == NULL)
        abort();
    G.ca = make_cert("Fuzz OCSP CA", G.ca_key, NULL, NULL);
    G.resp = make_cert("Fuzz OCSP responder", G.resp_key, G.ca, G.ca_key);
    G.trust = sk_X509_new_null();
    G.xs = X509_STORE_new();
    if (G.trust == NULL || G.xs == NULL || !sk_X509_push(G.trust, G.resp) ||
        store_open(G.dir, 0, &G.st) != 0 || store_reader_create(G.st, &G.rd) != 0)
        abort();
    atexit(cleanup);
    put(0, 1);
    put(0, 2);
    put(1, 2);
    ERR_clear_error();
    G.ready = 1;
}

/* What the store says of a CertID's serial: V_OCSP_CERTSTATUS_*. */
static int expected_status(OCSP_CERTID *cid)
{
    ASN1_INTEGER *sn = NULL;
    if (!OCSP_id_get0_info(NULL, NULL, NULL, &sn, cid) || sn == NULL)
        abort();
    long v = ASN1_INTEGER_get(sn);
    return v == 1 ? V_OCSP_CERTSTATUS_GOOD : v == 2 ? V_OCSP_CERTSTATUS_REVOKED
                                                    : V_OCSP_CERTSTATUS_UNKNOWN;
}

/* Answers der; checks the response is the status reported. For a request addressed to our CA
 * (req != NULL) also that it succeeded, is signed by the responder and has the store's
 * statuses. Returns the response status. */
static int respond(const uint8_t *der, size_t len, OCSP_REQUEST *req)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int status = -1, cached = -1;

    if (ocsp_respond(G.r, G.rd, der, len, NOW, &out, &outlen, &status, &cached) != 0)
        abort();
    const unsigned char *p = out;
    OCSP_RESPONSE *rsp = d2i_OCSP_RESPONSE(NULL, &p, (long)outlen);
    if (out == NULL || rsp == NULL || p != out + outlen || OCSP_response_status(rsp) != status ||
        (cached != 0 && cached != 1) ||
        (cached && status != OCSP_RESPONSE_STATUS_SUCCESSFUL))
        abort();
    if (req != NULL) {
        OCSP_BASICRESP *bs = OCSP_response_get1_basic(rsp);
        if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL || bs == NULL ||
            OCSP_basic_verify(bs, G.trust, G.xs, OCSP_TRUSTOTHER | OCSP_NOVERIFY) != 1)
            abort();
        for (int i = 0; i < OCSP_request_onereq_count(req); i++) {
            OCSP_CERTID *cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, i));
            int st = -1, reason = -1;
            if (!OCSP_resp_find_status(bs, cid, &st, &reason, NULL, NULL, NULL) ||
                st != expected_status(cid))
                abort();
        }
        OCSP_BASICRESP_free(bs);
    }
    OCSP_RESPONSE_free(rsp);
    free(out);
    ERR_clear_error();
    return status;
}

/* CertIDs [from, to) of the parsed request rebuilt for our CA, with its nonce when
 * with_nonce; NULL when one cannot be. */
static OCSP_REQUEST *readdress(const ocsp_query *q, size_t from, size_t to, int with_nonce)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    if (req == NULL)
        return NULL;
    for (size_t i = from; i < to; i++) {
        ASN1_INTEGER *sn = NULL;
        const EVP_MD *md = EVP_get_digestbynid(q->ids[i].hash_nid);
        if (!OCSP_id_get0_info(NULL, NULL, NULL, &sn, q->ids[i].cid) || sn == NULL || md == NULL)
            goto fail;
        OCSP_CERTID *id = OCSP_cert_id_new(md, X509_get_subject_name(G.ca),
                                           X509_get0_pubkey_bitstr(G.ca), sn);
        if (id == NULL || OCSP_request_add0_id(req, id) == NULL) {
            OCSP_CERTID_free(id);
            goto fail;
        }
    }
    if (with_nonce && q->has_nonce) {
        int at = OCSP_REQUEST_get_ext_by_NID(q->req, NID_id_pkix_OCSP_Nonce, -1);
        if (at < 0 || !OCSP_REQUEST_add_ext(req, OCSP_REQUEST_get_ext(q->req, at), -1))
            goto fail;
    }
    return req;
fail:
    OCSP_REQUEST_free(req);
    return NULL;
}

/* Asks twice (the second may come from the cache) for CertIDs [from, to) re-addressed. */
static void readdressed(const ocsp_query *q, size_t from, size_t to, int with_nonce)
{
    unsigned char *der = NULL;
    OCSP_REQUEST *req = readdress(q, from, to, with_nonce);
    int n = req != NULL ? i2d_OCSP_REQUEST(req, &der) : 0;
    if (n > 0) {
        respond(der, (size_t)n, req);
        respond(der, (size_t)n, req);
    }
    OPENSSL_free(der);
    OCSP_REQUEST_free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ocsp_query q;

    if (!G.ready)
        init();
    /* A responder (and its cache) per input, so every input replays alone. */
    if (ocsp_responder_create(G.ca, G.resp, G.resp_key, 3600, 1, &G.r) != 0)
        abort();
    /* An exact-size heap copy, so ASan sees any read past size. */
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        abort();
    in[0] = 0;
    if (size > 0)
        memcpy(in, data, size);

    int rc = ocsp_parse_request(in, size, &q);
    if (rc == 0) {
        if (q.req == NULL || q.n < 1 || q.n > OCSP_MAX_IDS)
            abort();
        for (size_t i = 0; i < q.n; i++)
            if (q.ids[i].cid == NULL || q.ids[i].serial_len > OCSP_SERIAL_MAX ||
                q.ids[i].name_hash_len < 0 || q.ids[i].key_hash_len < 0)
                abort();
    } else if (rc != OCSP_RESPONSE_STATUS_MALFORMEDREQUEST) {
        abort();
    }

    int status = respond(in, size, NULL);
    if ((rc != 0) != (status == OCSP_RESPONSE_STATUS_MALFORMEDREQUEST))
        abort();

    if (rc == 0) {
        readdressed(&q, 0, q.n, 1);
        /* each CertID alone (cacheable): no cached answer may be served for another one */
        for (size_t i = 0; q.n > 1 && i < q.n; i++)
            readdressed(&q, i, i + 1, 0);
    }
    ocsp_query_clear(&q);
    ocsp_responder_destroy(G.r);
    G.r = NULL;
    free(in);
    ERR_clear_error();
    return 0;
}
