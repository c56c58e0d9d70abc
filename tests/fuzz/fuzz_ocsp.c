/* Fuzz target for engine/pki/ocsp.c: the OCSP request parser ocsp_parse_request, and the whole
 * responder ocsp_respond over a real LMDB store holding good (serials 1 and a full 16-octet
 * one) and revoked (2 with reason keyCompromise, 3 without a reason) certificates. An input is
 * used one of two ways, by its first byte:
 *
 *  - 0x30 (a DER SEQUENCE): raw. The bytes are a request. One that parses is also re-addressed
 *    to the responder's CA (each CertID rebuilt with the CA's hashes, the same serial and hash
 *    algorithm, the nonce kept), so mutated requests reach the store lookup, the signing and
 *    the cache instead of stopping at "unauthorized".
 *  - anything else: structured. The bytes choose a request (how many CertIDs, each one's hash
 *    algorithm, issuer (ours, another CA, ours with a wrong key hash or a cut name hash),
 *    serial (from the bytes, negative, zero, known ones, the full-length one); a nonce, its
 *    length and criticality; another extension; a requestorName; which responder, the one that
 *    echoes nonces or the one that does not) and the harness builds it, so every input is a
 *    well-formed request whose answer can be predicted: malformedRequest (no CertID, more than
 *    OCSP_MAX_IDS, a hash we do not know), unauthorized (a CertID of another issuer), or a
 *    signed answer with exactly the store's statuses and reasons, the validity, the nonce
 *    echoed or not as configured, cached exactly when the request is cacheable (asked again:
 *    the same bytes from the cache).
 *
 * Invariants (both ways): a parse is 0 with 1..OCSP_MAX_IDS CertIDs or malformedRequest; every
 * answer is an OCSPResponse whose status is the one reported; a request addressed to our CA is
 * answered successfully, signed by the responder, with good / revoked / unknown exactly as the
 * store says; asking again gives the same statuses (from the cache when the request is
 * cacheable), and so does asking for each CertID alone (a cached answer is never served for
 * another CertID). The responders are made once; each input answers at a time one day after
 * the previous input's, so every cached answer of earlier inputs has expired and each input
 * starts from an empty cache in effect (it replays alone). Violated invariants abort(), so the
 * replay driver and libFuzzer both flag them. The store lives in a private temporary directory
 * (TMPDIR, else /tmp). */
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
    ocsp_responder *r[2];   /* [0] echoes nonces, [1] does not */
    int64_t now;            /* this input's time: a day after the previous input's */
} G;

/* The full-length serial in the store (STORE_SERIAL_LEN octets, positive). */
static const uint8_t FULL_SERIAL[STORE_SERIAL_LEN] = {
    0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

static void cleanup(void)
{
    char p[300];
    ocsp_responder_destroy(G.r[0]);
    ocsp_responder_destroy(G.r[1]);
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

/* A certificate with serial (a STORE_SERIAL_LEN-octet value), revoked with reason when
 * reason >= 0 (0: no reason given). */
static void put(const uint8_t *serial, int reason)
{
    store_put p;
    memset(&p, 0, sizeof(p));
    memcpy(p.cert.serial, serial, STORE_SERIAL_LEN);
    p.cert.der = (const uint8_t *)"\x30\x00";
    p.cert.der_len = 2;
    if (store_put_sync(G.st, &p) != 0 || p.result != STORE_OK)
        abort();
    if (reason < 0)
        return;
    memset(&p, 0, sizeof(p));
    memcpy(p.rev.serial, serial, STORE_SERIAL_LEN);
    p.kind = STORE_PUT_REVOKE;
    p.rev.reason = reason;
    p.rev.revoked_at = NOW - 86400;
    if (store_put_sync(G.st, &p) != 0 || p.result != STORE_OK)
        abort();
}

static void put_small(uint8_t last, int reason)
{
    uint8_t sn[STORE_SERIAL_LEN] = {0};
    sn[STORE_SERIAL_LEN - 1] = last;
    put(sn, reason);
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
    put_small(1, -1);
    put_small(2, 1);
    put_small(3, 0);
    put(FULL_SERIAL, -1);
    if (ocsp_responder_create(G.ca, G.resp, G.resp_key, 3600, 1, &G.r[0]) != 0 ||
        ocsp_responder_create(G.ca, G.resp, G.resp_key, 3600, 0, &G.r[1]) != 0)
        abort();
    G.now = NOW;
    ERR_clear_error();
    G.ready = 1;
}

/* What the store says of a CertID's serial: V_OCSP_CERTSTATUS_*, and *reason (-1: none). */
static int expected_status(OCSP_CERTID *cid, int *reason)
{
    ASN1_INTEGER *sn = NULL;
    if (!OCSP_id_get0_info(NULL, NULL, NULL, &sn, cid) || sn == NULL)
        abort();
    *reason = -1;
    if (ASN1_STRING_type(sn) != V_ASN1_INTEGER)
        return V_OCSP_CERTSTATUS_UNKNOWN;
    const unsigned char *b = ASN1_STRING_get0_data(sn);
    int n = ASN1_STRING_length(sn);
    while (n > 0 && b[0] == 0) {
        b++;
        n--;
    }
    if (n == STORE_SERIAL_LEN && memcmp(b, FULL_SERIAL, STORE_SERIAL_LEN) == 0)
        return V_OCSP_CERTSTATUS_GOOD;
    if (n != 1 || b[0] < 1 || b[0] > 3)
        return V_OCSP_CERTSTATUS_UNKNOWN;
    if (b[0] == 1)
        return V_OCSP_CERTSTATUS_GOOD;
    *reason = b[0] == 2 ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : -1;
    return V_OCSP_CERTSTATUS_REVOKED;
}

/* Answers der; checks the response is the status reported. For a request addressed to our CA
 * (req != NULL) also that it succeeded, is signed by the responder and has the store's
 * statuses. Returns the response status. */
static int respond_with(ocsp_responder *r, const uint8_t *der, size_t len, OCSP_REQUEST *req,
                        int *cached_out, uint8_t **keep, size_t *keep_len)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int status = -1, cached = -1;

    if (ocsp_respond(r, G.rd, der, len, G.now, &out, &outlen, &status, &cached) != 0)
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
            int st = -1, reason = -2, want_reason = -1;
            ASN1_GENERALIZEDTIME *tu = NULL, *nu = NULL;
            int day = 0, sec = 0;
            if (!OCSP_resp_find_status(bs, cid, &st, &reason, NULL, &tu, &nu) ||
                st != expected_status(cid, &want_reason) ||
                (st == V_OCSP_CERTSTATUS_REVOKED && reason != want_reason) || tu == NULL ||
                nu == NULL || !ASN1_TIME_diff(&day, &sec, tu, nu) || day != 0 || sec != 3600)
                abort();
        }
        OCSP_BASICRESP_free(bs);
    }
    OCSP_RESPONSE_free(rsp);
    if (cached_out != NULL)
        *cached_out = cached;
    if (keep != NULL) {
        *keep = out;
        *keep_len = outlen;
    } else {
        free(out);
    }
    ERR_clear_error();
    return status;
}

static int respond(const uint8_t *der, size_t len, OCSP_REQUEST *req)
{
    return respond_with(G.r[0], der, len, req, NULL, NULL, NULL);
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

/* The raw path: the input as a request. */
static void raw(const uint8_t *data, size_t size)
{
    ocsp_query q;
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
    free(in);
}

/* ------------------------------------------------------------------ structured requests */

/* The structured input (layout also in make_seeds.py):
 *   b0  bits 0-3 number of CertIDs (0..15), bit 4 a nonce, bit 5 the nonce critical, bit 6 an
 *       odd nonce length (1 or 40 octets, else 16), bit 7 another (unknown) extension
 *   b1  bit 0 the responder that does not echo nonces, bit 1 a requestorName, bit 2 ask twice
 *   then per CertID: a flags byte (bits 0-2 hash: SHA-1, SHA-256, SHA-384, SHA-512, MD5,
 *       SHA-224, SHA-1, SHA-256; bits 3-4 issuer: ours, another CA, ours with another key
 *       hash, ours with the name hash cut; bit 5 negative serial; bits 6-7 serial: from the
 *       bytes (a length byte, then the octets), a known one (1, 2, 3 by the next byte), zero,
 *       the full-length one) and the serial's bytes. Past the end: zeros. */
typedef struct breader {
    const uint8_t *p;
    size_t n;
} breader;

static uint8_t next8(breader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static const EVP_MD *pick_md(int sel, int *known)
{
    static const char *const names[8] = { "SHA1", "SHA256", "SHA384", "SHA512", "MD5",
                                          "SHA224", "SHA1", "SHA256" };
    *known = sel != 4 && sel != 5;
    return EVP_get_digestbyname(names[sel]);
}

/* The serial of one CertID. */
static ASN1_INTEGER *pick_serial(breader *r, uint8_t flags)
{
    uint8_t buf[40];
    size_t n = 0;
    switch (flags >> 6) {
    case 0:
        n = next8(r) % sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = next8(r);
        break;
    case 1:
        buf[0] = (uint8_t)(1 + next8(r) % 3);
        n = 1;
        break;
    case 2:
        break;
    default:
        memcpy(buf, FULL_SERIAL, STORE_SERIAL_LEN);
        n = STORE_SERIAL_LEN;
        break;
    }
    BIGNUM *bn = BN_bin2bn(buf, (int)n, NULL);
    ASN1_INTEGER *ai = NULL;
    if (bn != NULL) {
        BN_set_negative(bn, flags >> 5 & 1);
        ai = BN_to_ASN1_INTEGER(bn, NULL);
    }
    BN_free(bn);
    return ai;
}

/* One CertID as the flags say; *ours: it names our CA; *known: its hash is one we know. */
static OCSP_CERTID *pick_id(breader *r, int *ours, int *known)
{
    uint8_t flags = next8(r);
    int iss = flags >> 3 & 3;
    const EVP_MD *md = pick_md(flags & 7, known);
    ASN1_INTEGER *sn = pick_serial(r, flags);
    X509 *ca = iss == 1 ? G.resp : G.ca;      /* the responder's certificate: another issuer */
    OCSP_CERTID *id = md != NULL && sn != NULL
        ? OCSP_cert_id_new(md, X509_get_subject_name(ca), X509_get0_pubkey_bitstr(ca), sn)
        : NULL;
    ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
    ASN1_INTEGER_free(sn);
    *ours = iss == 0;
    if (id != NULL && iss >= 2 && OCSP_id_get0_info(&nh, NULL, &kh, NULL, id) == 1) {
        if (iss == 2)
            kh->data[0] ^= 0x01;
        else
            nh->length--;           /* a shorter name hash: not ours */
    }
    return id;
}

/* The request the bytes describe; NULL when one cannot be built (skipped). */
static OCSP_REQUEST *build(breader *r, size_t *n_out, int *all_ours, int *all_known,
                           int *nonce_out)
{
    uint8_t b0 = next8(r), b1 = next8(r);
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    size_t n = b0 & 15;
    *all_ours = *all_known = 1;
    *nonce_out = b0 >> 4 & 1;
    for (size_t i = 0; req != NULL && i < n; i++) {
        int ours = 0, known = 0;
        OCSP_CERTID *id = pick_id(r, &ours, &known);
        if (id == NULL || OCSP_request_add0_id(req, id) == NULL) {
            OCSP_CERTID_free(id);
            OCSP_REQUEST_free(req);
            return NULL;
        }
        *all_ours &= ours;
        *all_known &= known;
    }
    if (req == NULL)
        return NULL;
    if (*nonce_out) {
        uint8_t v[40];
        int len = b0 >> 6 & 1 ? (next8(r) & 1 ? 40 : 1) : 16;
        for (int i = 0; i < len; i++)
            v[i] = next8(r);
        int at;
        if (OCSP_request_add1_nonce(req, v, len) != 1 ||
            (at = OCSP_REQUEST_get_ext_by_NID(req, NID_id_pkix_OCSP_Nonce, -1)) < 0 ||
            ((b0 >> 5 & 1) && !X509_EXTENSION_set_critical(OCSP_REQUEST_get_ext(req, at), 1)))
            goto fail;
    }
    if (b0 >> 7) {
        ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
        X509_EXTENSION *e = os != NULL && ASN1_OCTET_STRING_set(os, (const unsigned char *)"\x05\x00", 2)
            ? X509_EXTENSION_create_by_NID(NULL, NID_id_pkix_OCSP_serviceLocator, 0, os) : NULL;
        int ok = e != NULL && OCSP_REQUEST_add_ext(req, e, -1) == 1;
        X509_EXTENSION_free(e);
        ASN1_OCTET_STRING_free(os);
        if (!ok)
            goto fail;
    }
    if ((b1 >> 1 & 1) && OCSP_request_set1_name(req, X509_get_subject_name(G.resp)) != 1)
        goto fail;
    *n_out = n;
    return req;
fail:
    OCSP_REQUEST_free(req);
    return NULL;
}

static void structured(const uint8_t *data, size_t size)
{
    breader rd = { data, size };
    uint8_t b1 = size > 1 ? data[1] : 0;
    size_t n = 0;
    int ours = 0, known = 0, has_nonce = 0;
    unsigned char *der = NULL;
    OCSP_REQUEST *req = build(&rd, &n, &ours, &known, &has_nonce);
    int len = req != NULL ? i2d_OCSP_REQUEST(req, &der) : 0;
    if (len <= 0)
        goto out;
    int echo = !(b1 & 1);
    ocsp_responder *r = G.r[echo ? 0 : 1];
    int want = n == 0 || n > OCSP_MAX_IDS || !known ? OCSP_RESPONSE_STATUS_MALFORMEDREQUEST
             : !ours ? OCSP_RESPONSE_STATUS_UNAUTHORIZED : OCSP_RESPONSE_STATUS_SUCCESSFUL;
    ocsp_query q;
    int prc = ocsp_parse_request(der, (size_t)len, &q);
    if ((prc == 0) != (want != OCSP_RESPONSE_STATUS_MALFORMEDREQUEST) ||
        (prc == 0 && (q.n != n || q.has_nonce != has_nonce)))
        abort();
    int cacheable = want == OCSP_RESPONSE_STATUS_SUCCESSFUL && n == 1 && !(echo && has_nonce) &&
                    q.ids[0].serial_len > 0;
    ocsp_query_clear(&q);
    uint8_t *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    int cached = -1;
    OCSP_REQUEST *check = want == OCSP_RESPONSE_STATUS_SUCCESSFUL ? req : NULL;
    if (respond_with(r, der, (size_t)len, check, &cached, &first, &first_len) != want || cached)
        abort();
    if (want == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        const unsigned char *p = first;
        OCSP_RESPONSE *rsp = d2i_OCSP_RESPONSE(NULL, &p, (long)first_len);
        OCSP_BASICRESP *bs = rsp != NULL ? OCSP_response_get1_basic(rsp) : NULL;
        int nc = bs != NULL ? OCSP_check_nonce(req, bs) : -9;
        if (nc != (!has_nonce ? 2 : echo ? 1 : -1))
            abort();
        OCSP_BASICRESP_free(bs);
        OCSP_RESPONSE_free(rsp);
    }
    if ((b1 >> 2 & 1) || cacheable) {
        if (respond_with(r, der, (size_t)len, check, &cached, &second, &second_len) != want ||
            cached != cacheable ||
            (cacheable && (second_len != first_len || memcmp(first, second, first_len) != 0)))
            abort();
    }
    free(first);
    free(second);
out:
    OPENSSL_free(der);
    OCSP_REQUEST_free(req);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.ready)
        init();
    /* A day after the previous input: every answer cached before has expired. */
    G.now += 86400;
    if (size > 0 && data[0] == 0x30)
        raw(data, size);
    else
        structured(data, size);
    ERR_clear_error();
    return 0;
}
