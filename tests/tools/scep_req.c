/* scep_req: a SCEP client for the shell integration tests, built on the scepc library.
 * It speaks plain blocking HTTP/1.1 to http://host:port/path (one connection per request).
 *
 * Exit status: 0 the reply parsed and verified (whatever its pkiStatus), 1 usage or local
 * error, 2 the reply failed validation, 3 HTTP error (status printed as http=<status>).
 * See docs/client.md for the commands. */
#include "client/scep_client.h"
#include "client/scep_http.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/pkcs7.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

enum { EXIT_USAGE = 1, EXIT_INVALID = 2, EXIT_HTTP = 3 };
#define MAX_SANS 16
#define MAX_BODY SCEPC_HTTP_BODY_MAX
#define HTTP_TIMEOUT_MS 60000

static const char usage_text[] =
    "usage: scep_req caps   --url URL\n"
    "       scep_req cacert --url URL --out DIR\n"
    "       scep_req enroll --url URL | --ca-dir DIR  [--challenge X] [--cn NAME | --subject /CN=x/O=y]\n"
    "                [--key-type rsa:2048|ec:P-256|...] [--key FILE] [--cert-out FILE]\n"
    "                [--cipher aes128|aes192|aes256|des3] [--md sha1|sha256|sha384|sha512] [--get]\n"
    "                [--txid T] [--msgtype N] [--san dns:x|email:y|uri:z|upn:w|ip:a ...]\n"
    "                [--ca-true] [--no-challenge] [--bad-signature] [--wrong-key] [--oaep]\n"
    "                [--key-usage digitalSignature,keyEncipherment,...] [--valid-days N]\n"
    "                [--renew-with CERT --renew-key KEY] [--pkcsreq-signed-by CERT --renew-key KEY]\n"
    "                [--poll] [--emit FILE] [--decode-reply FILE [--state FILE.state]]\n"
    "                [--legacy] (load OpenSSL's legacy provider: single-DES CertReps from peers)\n"
    "       scep_req getcert --url URL --serial HEX --key KEY --cert CERT [--cert-out FILE]\n"
    "       scep_req getcrl  --url URL --serial HEX --key KEY --cert CERT [--crl-out FILE]\n";

struct opts {
    const char *cmd, *url, *out_dir, *ca_dir, *challenge, *cn, *subject, *key_type, *key_file,
        *cert_out, *crl_out, *txid, *renew_with, *renew_key, *signed_by, *emit, *decode_reply,
        *state, *serial, *cert, *key_usage;
    scepc_md md;
    scepc_cipher cipher;
    int get, legacy, msgtype, ca_true, bad_signature, wrong_key, oaep, poll, has_valid_days;
    long valid_days;
    scepc_san sans[MAX_SANS];
    size_t nsans;
};

/* ---- HTTP (client/scep_http.h) ---- */

/* GET/POST ?operation=op[&message=...]; exits through the caller on error. */
static int http_op(const char *urltext, const char *op, const char *message,
                   const uint8_t *body, size_t blen, scepc_http_reply *resp)
{
    scepc_url u;
    char *query = NULL;
    int rc;

    if (scepc_url_parse(urltext, &u) != SCEPC_OK) {
        fprintf(stderr, "scep_req: bad url %s\n", urltext);
        return EXIT_USAGE;
    }
    if (asprintf(&query, "operation=%s%s%s", op, message ? "&message=" : "",
                 message ? message : "") < 0)
        return EXIT_USAGE;
    rc = scepc_http_exchange(&u, body ? "POST" : "GET", query, "application/x-pki-message", body,
                             blen, "scep_req", HTTP_TIMEOUT_MS, MAX_BODY, resp);
    free(query);
    if (rc != 0) {
        printf("http=0\n");
        fprintf(stderr, "scep_req: HTTP exchange with %s failed\n", urltext);
        return EXIT_HTTP;
    }
    if (resp->status != 200) {
        printf("http=%d\n", resp->status);
        scepc_http_reply_free(resp);
        return EXIT_HTTP;
    }
    return 0;
}

/* ---- helpers ---- */

static void die_ssl(const char *what, int err)
{
    fprintf(stderr, "scep_req: %s: %s (%s)\n", what, scepc_strerror(err), scepc_errname(err));
    ERR_print_errors_fp(stderr);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int load_pem_certs(const char *path, STACK_OF(X509) *sk)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *c;
    int n = 0;
    if (!b)
        return -1;
    while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (!sk_X509_push(sk, c)) {
            X509_free(c);
            break;
        }
        n++;
    }
    ERR_clear_error();
    BIO_free(b);
    return n;
}

static int caset_from_dir(const char *dir, scepc_caset **out)
{
    static const char *const files[] = { "ca.pem", "ra.pem", "ra-sign.pem", NULL };
    STACK_OF(X509) *sk = sk_X509_new_null();
    char path[4096];
    int rc = EXIT_USAGE;

    for (int i = 0; sk && files[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (file_exists(path) && load_pem_certs(path, sk) <= 0) {
            fprintf(stderr, "scep_req: cannot read %s\n", path);
            goto out;
        }
    }
    if (scepc_caset_from_certs(sk, out) != SCEPC_OK) {
        fprintf(stderr, "scep_req: no usable CA certificates in %s\n", dir);
        goto out;
    }
    rc = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static int fetch_caset(const struct opts *o, scepc_caset **out)
{
    scepc_http_reply r;
    int rc, err;

    if (o->ca_dir)
        return caset_from_dir(o->ca_dir, out);
    if (!o->url) {
        fprintf(stderr, "scep_req: need --url or --ca-dir\n");
        return EXIT_USAGE;
    }
    if ((rc = http_op(o->url, "GetCACert", NULL, NULL, 0, &r)) != 0)
        return rc;
    err = scepc_parse_cacert(r.body, r.len, r.ctype[0] ? r.ctype : NULL, out);
    if (err != SCEPC_OK) {
        die_ssl("GetCACert", err);
        rc = EXIT_INVALID;
    }
    scepc_http_reply_free(&r);
    return rc;
}

static void name_line(const char *key, const X509_NAME *n)
{
    char *s = n ? X509_NAME_oneline(n, NULL, 0) : NULL;
    printf("%s=%s\n", key, s ? s : "-");
    OPENSSL_free(s);
}

static void print_result(const scepc_result *res)
{
    char *serial = NULL, *subj = NULL;
    if (res->cert) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(res->cert), NULL);
        serial = bn ? BN_bn2hex(bn) : NULL;
        BN_free(bn);
        subj = X509_NAME_oneline(X509_get_subject_name(res->cert), NULL, 0);
    }
    printf("status=%s failinfo=%s serial=%s subject=%s\n", scepc_status_name(res->status),
           scepc_failinfo_name(res->failinfo), serial ? serial : "-", subj ? subj : "-");
    if (res->failinfo_text)
        printf("failinfotext=%s\n", res->failinfo_text);
    OPENSSL_free(serial);
    OPENSSL_free(subj);
}

/* Parses a CertRep, prints the result line, writes the cert/CRL. Returns an exit code. */
static int handle_reply(const struct opts *o, const scepc_ctx *ctx, const uint8_t *der,
                        size_t len, const scepc_caset *ca, const scepc_expect *exp)
{
    scepc_result res;
    int err = scepc_parse_certrep(ctx, der, len, ca, exp, &res);

    if (err != SCEPC_OK) {
        printf("error=%s\n", scepc_errname(err));
        die_ssl("CertRep", err);
        return EXIT_INVALID;
    }
    print_result(&res);
    if (res.status == SCEPC_SUCCESS && o->cert_out && res.cert
        && scepc_write_cert(o->cert_out, res.cert, 1) != SCEPC_OK)
        fprintf(stderr, "scep_req: cannot write %s\n", o->cert_out);
    if (res.status == SCEPC_SUCCESS && o->crl_out && sk_X509_CRL_num(res.crls) > 0
        && scepc_write_crl(o->crl_out, sk_X509_CRL_value(res.crls, 0), 1) != SCEPC_OK)
        fprintf(stderr, "scep_req: cannot write %s\n", o->crl_out);
    scepc_result_clear(&res);
    return 0;
}

/* Sends a pkiMessage by POST (default) or GET; returns an exit code, reply in *r. */
static int send_pki(const struct opts *o, const uint8_t *der, size_t len, scepc_http_reply *r)
{
    int rc;
    if (o->get) {
        char *msg = scepc_http_b64_query(der, len);
        if (!msg)
            return EXIT_USAGE;
        rc = http_op(o->url, "PKIOperation", msg, NULL, 0, r);
        scepc_free(msg);
        return rc;
    }
    return http_op(o->url, "PKIOperation", NULL, der, len, r);
}

static int send_and_check(const struct opts *o, const scepc_ctx *ctx, const uint8_t *der,
                          size_t len, const scepc_caset *ca, const scepc_expect *exp)
{
    scepc_http_reply r;
    int rc = send_pki(o, der, len, &r);
    if (rc != 0)
        return rc;
    rc = handle_reply(o, ctx, r.body, r.len, ca, exp);
    scepc_http_reply_free(&r);
    return rc;
}

/* ---- state saved by --emit for --decode-reply ---- */

static int save_state(const char *path, const scepc_txn *txn, EVP_PKEY *signer_key,
                      const EVP_PKEY *subject_key, X509 *signer, const scepc_caset *ca)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    STACK_OF(X509) *certs = scepc_caset_certs(ca);
    int ok;

    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char nonce[2 * SCEPC_NONCE_LEN + 1];
    scepc_hex(txn->sender_nonce, SCEPC_NONCE_LEN, 1, nonce);
    fprintf(f, "txid=%s\nmsgtype=%d\nnonce=%s\n", txn->txid, txn->msgtype, nonce);
    ok = PEM_write_PrivateKey(f, signer_key, NULL, NULL, 0, NULL, NULL)
         && PEM_write_PUBKEY(f, subject_key) && PEM_write_X509(f, signer);
    /* The expected CertRep signer first, so the reloaded set picks the same one. */
    for (int i = 0; ok && i < sk_X509_num(certs); i++)
        ok = PEM_write_X509(f, sk_X509_value(certs, i));
    return fclose(f) == 0 && ok ? 0 : -1;
}

struct state {
    scepc_txn txn;
    EVP_PKEY *signer_key, *subject_key;
    X509 *signer;
    scepc_caset *ca;
};

static void state_free(struct state *s)
{
    EVP_PKEY_free(s->signer_key);
    EVP_PKEY_free(s->subject_key);
    X509_free(s->signer);
    scepc_caset_destroy(s->ca);
}

static int load_state(const char *path, struct state *s)
{
    uint8_t *data = NULL;
    size_t len;
    BIO *b = NULL;
    STACK_OF(X509) *sk = NULL;
    X509 *c;
    int rc = -1;
    const char *p;

    memset(s, 0, sizeof(*s));
    if (scepc_read_file(path, &data, &len) != SCEPC_OK)
        return -1;
    p = (const char *)data;
    if (sscanf(p, "txid=%128s\nmsgtype=%d\n", s->txn.txid, &s->txn.msgtype) != 2
        || !(p = strstr(p, "\nnonce=")))
        goto out;
    for (int i = 0; i < SCEPC_NONCE_LEN; i++) {
        unsigned v;
        if (sscanf(p + 7 + 2 * i, "%2X", &v) != 1)
            goto out;
        s->txn.sender_nonce[i] = (uint8_t)v;
    }
    if (!(b = BIO_new_mem_buf(data, (int)len))
        || !(s->signer_key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)))
        goto out;
    BIO_free(b);
    if (!(b = BIO_new_mem_buf(data, (int)len))
        || !(s->subject_key = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL)))
        goto out;
    BIO_free(b);
    if (!(b = BIO_new_mem_buf(data, (int)len)) || !(s->signer = PEM_read_bio_X509(b, NULL, NULL, NULL))
        || !(sk = sk_X509_new_null()))
        goto out;
    while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL)))
        if (!sk_X509_push(sk, c)) {
            X509_free(c);
            goto out;
        }
    ERR_clear_error();
    if (scepc_caset_from_certs(sk, &s->ca) != SCEPC_OK)
        goto out;
    rc = 0;
out:
    if (rc != 0) {
        state_free(s);
        memset(s, 0, sizeof(*s));
    }
    sk_X509_pop_free(sk, X509_free);
    BIO_free(b);
    OPENSSL_clear_free(data, len);
    return rc;
}

/* certmonger's scep-submit prints, after verifying the CertRep signature itself, only the
 * pkcsPKIEnvelope (PEM "PKCS7"). Decrypt it with the saved signer key and pick the issued
 * certificate (the one carrying our subject key) from the degenerate SignedData inside. */
static int decode_envelope(const struct opts *o, const uint8_t *data, size_t len,
                           const struct state *s)
{
    BIO *in = BIO_new_mem_buf(data, (int)len), *plain = BIO_new(BIO_s_mem());
    CMS_ContentInfo *env = NULL;
    PKCS7 *p7 = NULL;
    int rc = EXIT_INVALID;

    if (in == NULL || plain == NULL)
        goto out;
    char *pem_name = NULL, *pem_header = NULL;
    unsigned char *pem_der = NULL;
    long pem_len = 0;
    if (PEM_read_bio(in, &pem_name, &pem_header, &pem_der, &pem_len) == 1) {
        const unsigned char *d = pem_der;
        env = d2i_CMS_ContentInfo(NULL, &d, pem_len);
    }
    OPENSSL_free(pem_name);
    OPENSSL_free(pem_header);
    OPENSSL_free(pem_der);
    if (env == NULL || OBJ_obj2nid(CMS_get0_type(env)) != NID_pkcs7_enveloped ||
        !CMS_decrypt(env, s->signer_key, s->signer, NULL, plain, CMS_BINARY)) {
        printf("error=REP_DECRYPT\n");
        goto out;
    }
    char *p = NULL;
    long n = BIO_get_mem_data(plain, &p);
    const unsigned char *q = (const unsigned char *)p;
    p7 = n > 0 ? d2i_PKCS7(NULL, &q, n) : NULL;
    STACK_OF(X509) *certs = p7 != NULL && PKCS7_type_is_signed(p7) ? p7->d.sign->cert : NULL;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *c = sk_X509_value(certs, i);
        if (EVP_PKEY_eq(X509_get0_pubkey(c), s->subject_key) != 1)
            continue;
        char subj[512];
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
        char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
        X509_NAME_oneline(X509_get_subject_name(c), subj, sizeof(subj));
        printf("status=SUCCESS failinfo=- serial=%s subject=%s\n", hex ? hex : "-", subj);
        OPENSSL_free(hex);
        BN_free(bn);
        rc = 0;
        if (o->cert_out != NULL && scepc_write_cert(o->cert_out, c, 1) != SCEPC_OK)
            rc = EXIT_USAGE;
        goto out;
    }
    printf("error=REP_CERT_KEY\n");
out:
    PKCS7_free(p7);
    CMS_ContentInfo_free(env);
    BIO_free(in);
    BIO_free(plain);
    ERR_clear_error();
    return rc;
}

static int cmd_decode(const struct opts *o, const scepc_ctx *ctx)
{
    char path[4096];
    struct state s;
    uint8_t *der = NULL;
    size_t len;
    int rc;

    if (o->state)
        snprintf(path, sizeof(path), "%s", o->state);
    else if (o->emit)
        snprintf(path, sizeof(path), "%s.state", o->emit);
    else {
        fprintf(stderr, "scep_req: --decode-reply needs --state FILE or --emit FILE\n");
        return EXIT_USAGE;
    }
    if (load_state(path, &s) != 0) {
        fprintf(stderr, "scep_req: cannot load state %s\n", path);
        return EXIT_USAGE;
    }
    if (scepc_read_file(o->decode_reply, &der, &len) != SCEPC_OK) {
        fprintf(stderr, "scep_req: cannot read %s\n", o->decode_reply);
        rc = EXIT_USAGE;
    } else {
        scepc_expect exp = { .txn = &s.txn, .signer_cert = s.signer, .signer_key = s.signer_key,
                             .subject_key = s.subject_key };
        printf("txid=%s\n", s.txn.txid);
        if (len > 16 && memcmp(der, "-----BEGIN PKCS7", 16) == 0)
            rc = decode_envelope(o, der, len, &s);
        else
            rc = handle_reply(o, ctx, der, len, s.ca, &exp);
    }
    scepc_free(der);
    state_free(&s);
    return rc;
}

/* ---- commands ---- */

static int cmd_caps(const struct opts *o)
{
    scepc_http_reply r;
    int rc;
    if (!o->url)
        return EXIT_USAGE;
    if ((rc = http_op(o->url, "GetCACaps", NULL, NULL, 0, &r)) != 0)
        return rc;
    fwrite(r.body, 1, r.len, stdout);
    if (r.len && r.body[r.len - 1] != '\n')
        putchar('\n');
    printf("flags=0x%x\n", scepc_parse_caps((const char *)r.body, r.len));
    scepc_http_reply_free(&r);
    return 0;
}

static int cmd_cacert(const struct opts *o)
{
    scepc_http_reply r;
    scepc_caset *ca = NULL;
    char path[4096];
    int rc, err;

    if (!o->url || !o->out_dir)
        return EXIT_USAGE;
    if ((rc = http_op(o->url, "GetCACert", NULL, NULL, 0, &r)) != 0)
        return rc;
    err = scepc_parse_cacert(r.body, r.len, r.ctype[0] ? r.ctype : NULL, &ca);
    if (err != SCEPC_OK) {
        printf("error=%s\n", scepc_errname(err));
        die_ssl("GetCACert", err);
        rc = EXIT_INVALID;
        goto out;
    }
    mkdir(o->out_dir, 0755);
    snprintf(path, sizeof(path), "%s/ca.pem", o->out_dir);
    rc = scepc_write_cert(path, scepc_caset_ca(ca), 1) == SCEPC_OK ? 0 : EXIT_USAGE;
    if (rc == 0 && scepc_caset_recipient(ca) != scepc_caset_ca(ca)) {
        snprintf(path, sizeof(path), "%s/ra.pem", o->out_dir);
        rc = scepc_write_cert(path, scepc_caset_recipient(ca), 1) == SCEPC_OK ? 0 : EXIT_USAGE;
    }
    if (rc == 0 && scepc_caset_signer(ca) != scepc_caset_ca(ca)
        && scepc_caset_signer(ca) != scepc_caset_recipient(ca)) {
        snprintf(path, sizeof(path), "%s/ra-sign.pem", o->out_dir);
        rc = scepc_write_cert(path, scepc_caset_signer(ca), 1) == SCEPC_OK ? 0 : EXIT_USAGE;
    }
    printf("ctype=%s certs=%d\n", r.ctype[0] ? r.ctype : "-", sk_X509_num(scepc_caset_certs(ca)));
    name_line("ca", X509_get_subject_name(scepc_caset_ca(ca)));
    name_line("recipient", X509_get_subject_name(scepc_caset_recipient(ca)));
    name_line("signer", X509_get_subject_name(scepc_caset_signer(ca)));
out:
    scepc_caset_destroy(ca);
    scepc_http_reply_free(&r);
    return rc;
}

static int load_key_cert(const scepc_ctx *ctx, const char *keyf, const char *certf,
                         EVP_PKEY **key, X509 **cert)
{
    if (scepc_read_key(ctx, keyf, key) != SCEPC_OK) {
        fprintf(stderr, "scep_req: cannot read key %s\n", keyf);
        return EXIT_USAGE;
    }
    if (scepc_read_cert(certf, cert) != SCEPC_OK) {
        fprintf(stderr, "scep_req: cannot read certificate %s\n", certf);
        return EXIT_USAGE;
    }
    return 0;
}

/* Takes ownership of ext (freed on failure); creates *sk on first use. */
static int push_ext(STACK_OF(X509_EXTENSION) **sk, X509_EXTENSION *ext)
{
    if (ext == NULL)
        return -1;
    if ((*sk == NULL && (*sk = sk_X509_EXTENSION_new_null()) == NULL)
        || !sk_X509_EXTENSION_push(*sk, ext)) {
        X509_EXTENSION_free(ext);
        return -1;
    }
    return 0;
}

/* A privateKeyUsagePeriod with only notAfter = now + days: how a client asks scepd for a
 * shorter validity (docs/profiles.md). Negative days give an end in the past, for tests. */
static X509_EXTENSION *usage_period_ext(long days)
{
    PKEY_USAGE_PERIOD *pup = PKEY_USAGE_PERIOD_new();
    X509_EXTENSION *ext = NULL;

    if (pup == NULL || (pup->notAfter = ASN1_GENERALIZEDTIME_adj(NULL, time(NULL), (int)days,
                                                                 0)) == NULL)
        goto out;
    ext = X509V3_EXT_i2d(NID_private_key_usage_period, 0, pup);
out:
    PKEY_USAGE_PERIOD_free(pup);
    return ext;
}

/* Extra CSR extensions from --ca-true, --key-usage, --valid-days; NULL *out when none. */
static int build_extra_exts(const struct opts *o, STACK_OF(X509_EXTENSION) **out)
{
    STACK_OF(X509_EXTENSION) *sk = NULL;
    int rc = -1;

    if (o->ca_true && push_ext(&sk, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
                                                        "critical,CA:TRUE")) != 0)
        goto out;
    /* OpenSSL's own names (digitalSignature, keyEncipherment, ...); critical as Windows
     * clients mark it. */
    if (o->key_usage) {
        char value[512];
        if (snprintf(value, sizeof(value), "critical,%s", o->key_usage) >= (int)sizeof(value)
            || push_ext(&sk, X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, value)) != 0) {
            fprintf(stderr, "scep_req: bad --key-usage %s\n", o->key_usage);
            goto out;
        }
    }
    if (o->has_valid_days && push_ext(&sk, usage_period_ext(o->valid_days)) != 0)
        goto out;
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(sk, X509_EXTENSION_free);
    return rc;
}

static int cmd_enroll(const struct opts *o, const scepc_ctx *ctx)
{
    int rc, err;
    scepc_caset *ca = NULL;
    EVP_PKEY *key = NULL, *signer_key = NULL, *wrong = NULL;
    X509 *signer = NULL;
    X509_NAME *subject = NULL;
    X509_REQ *csr = NULL;
    STACK_OF(X509_EXTENSION) *extra = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    scepc_txn txn;
    char subj[1024];
    const char *signer_cert_file = o->renew_with ? o->renew_with : o->signed_by;

    if (o->decode_reply)
        return cmd_decode(o, ctx);
    if (!o->url && !(o->emit && o->ca_dir))
        return EXIT_USAGE;
    if ((rc = fetch_caset(o, &ca)) != 0)
        goto out;
    rc = EXIT_USAGE;
    if (o->key_file && file_exists(o->key_file)) {
        if ((err = scepc_read_key(ctx, o->key_file, &key)) != SCEPC_OK) {
            die_ssl(o->key_file, err);
            goto out;
        }
    } else {
        if ((err = scepc_keygen(ctx, o->key_type ? o->key_type : "rsa:2048", &key)) != SCEPC_OK) {
            die_ssl("key generation", err);
            goto out;
        }
        if (o->key_file && scepc_write_key(o->key_file, key) != SCEPC_OK) {
            fprintf(stderr, "scep_req: cannot write %s\n", o->key_file);
            goto out;
        }
    }
    if (o->subject)
        snprintf(subj, sizeof(subj), "%s", o->subject);
    else
        snprintf(subj, sizeof(subj), "/CN=%s", o->cn ? o->cn : "scep-req-client");
    if ((err = scepc_name_parse(subj, &subject)) != SCEPC_OK) {
        die_ssl(subj, err);
        goto out;
    }
    if (build_extra_exts(o, &extra) != 0) {
        ERR_print_errors_fp(stderr);
        goto out;
    }
    if ((err = scepc_build_csr(ctx, key, subject, o->challenge, o->sans, o->nsans, extra, o->md,
                               &csr)) != SCEPC_OK) {
        die_ssl("CSR", err);
        goto out;
    }
    if (signer_cert_file) {
        if (!o->renew_key) {
            fprintf(stderr, "scep_req: --renew-with/--pkcsreq-signed-by need --renew-key\n");
            goto out;
        }
        if ((rc = load_key_cert(ctx, o->renew_key, signer_cert_file, &signer_key, &signer)) != 0)
            goto out;
        rc = EXIT_USAGE;
    } else {
        if ((err = scepc_self_signed(ctx, key, subject, o->md, &signer)) != SCEPC_OK) {
            die_ssl("self-signed certificate", err);
            goto out;
        }
        EVP_PKEY_up_ref(key);
        signer_key = key;
    }
    if (o->wrong_key && (err = scepc_keygen(ctx, EVP_PKEY_get_id(signer_key) == EVP_PKEY_EC
                                                     ? "ec:P-256" : "rsa:2048", &wrong)) != SCEPC_OK) {
        die_ssl("key generation", err);
        goto out;
    }
    {
        int type = o->renew_with ? SCEPC_MSG_RENEWALREQ : SCEPC_MSG_PKCSREQ;
        scepc_msg_params p = {
            .msgtype = (o->msgtype == SCEPC_MSG_RENEWALREQ || o->msgtype == SCEPC_MSG_PKCSREQ)
                           ? o->msgtype : type,
            .wire_msgtype = o->msgtype, .csr = csr, .signer_cert = signer,
            .signer_key = signer_key, .ca = ca, .md = o->md, .cipher = o->cipher,
            .oaep = o->oaep, .txid = o->txid, .corrupt_signature = o->bad_signature,
            .wrong_key = wrong,
        };
        if ((err = scepc_build_pkimessage(ctx, &p, &der, &len, &txn)) != SCEPC_OK) {
            die_ssl("pkiMessage", err);
            goto out;
        }
    }
    printf("txid=%s\n", txn.txid);
    if (o->emit) {
        char path[4096];
        snprintf(path, sizeof(path), "%s.state", o->emit);
        if (scepc_write_file(o->emit, der, len) != SCEPC_OK
            || save_state(path, &txn, signer_key, key, signer, ca) != 0) {
            fprintf(stderr, "scep_req: cannot write %s\n", o->emit);
            goto out;
        }
        printf("emitted=%s state=%s\n", o->emit, path);
        rc = 0;
        goto out;
    }
    {
        scepc_expect exp = { .txn = &txn, .signer_cert = signer, .signer_key = signer_key,
                             .subject_key = key };
        if ((rc = send_and_check(o, ctx, der, len, ca, &exp)) != 0 || !o->poll)
            goto out;
        /* CertPoll for the same transaction, same signer. */
        scepc_msg_params p = { .msgtype = SCEPC_MSG_CERTPOLL, .csr = csr, .signer_cert = signer,
                               .signer_key = signer_key, .ca = ca, .md = o->md,
                               .cipher = o->cipher, .oaep = o->oaep, .txid = txn.txid };
        scepc_free(der);
        der = NULL;
        if ((err = scepc_build_pkimessage(ctx, &p, &der, &len, &txn)) != SCEPC_OK) {
            die_ssl("CertPoll", err);
            rc = EXIT_USAGE;
            goto out;
        }
        rc = send_and_check(o, ctx, der, len, ca, &exp);
    }
out:
    scepc_free(der);
    scepc_caset_destroy(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(signer_key);
    EVP_PKEY_free(wrong);
    X509_free(signer);
    X509_NAME_free(subject);
    X509_REQ_free(csr);
    sk_X509_EXTENSION_pop_free(extra, X509_EXTENSION_free);
    return rc;
}

/* GetCert / GetCRL: IssuerAndSerialNumber signed by an existing certificate. */
static int cmd_get(const struct opts *o, const scepc_ctx *ctx, int msgtype)
{
    int rc, err;
    scepc_caset *ca = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    uint8_t *der = NULL;
    size_t len;
    scepc_txn txn;

    if (!o->url || !o->serial || !o->key_file || !o->cert)
        return EXIT_USAGE;
    if (!BN_hex2bn(&bn, o->serial) || !(serial = BN_to_ASN1_INTEGER(bn, NULL))) {
        fprintf(stderr, "scep_req: bad serial %s\n", o->serial);
        rc = EXIT_USAGE;
        goto out;
    }
    if ((rc = load_key_cert(ctx, o->key_file, o->cert, &key, &cert)) != 0
        || (rc = fetch_caset(o, &ca)) != 0)
        goto out;
    {
        scepc_msg_params p = { .msgtype = msgtype, .wire_msgtype = o->msgtype, .serial = serial,
                               .signer_cert = cert, .signer_key = key, .ca = ca, .md = o->md,
                               .cipher = o->cipher, .oaep = o->oaep, .txid = o->txid,
                               .corrupt_signature = o->bad_signature };
        if ((err = scepc_build_pkimessage(ctx, &p, &der, &len, &txn)) != SCEPC_OK) {
            die_ssl("pkiMessage", err);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    printf("txid=%s\n", txn.txid);
    {
        scepc_expect exp = { .txn = &txn, .signer_cert = cert, .signer_key = key };
        rc = send_and_check(o, ctx, der, len, ca, &exp);
    }
out:
    scepc_free(der);
    scepc_caset_destroy(ca);
    EVP_PKEY_free(key);
    X509_free(cert);
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    return rc;
}

/* ---- main ---- */

enum {
    O_URL = 256, O_OUT, O_CA_DIR, O_CHALLENGE, O_CN, O_SUBJECT, O_KEY_TYPE, O_KEY, O_CERT_OUT,
    O_CRL_OUT, O_CIPHER, O_MD, O_GET, O_TXID, O_MSGTYPE, O_SAN, O_CA_TRUE, O_NO_CHALLENGE,
    O_BAD_SIG, O_WRONG_KEY, O_OAEP, O_RENEW_WITH, O_RENEW_KEY, O_SIGNED_BY, O_POLL, O_EMIT,
    O_DECODE, O_STATE, O_SERIAL, O_CERT, O_LEGACY, O_KEY_USAGE, O_VALID_DAYS,
};

static const struct option long_opts[] = {
    { "url", 1, NULL, O_URL }, { "out", 1, NULL, O_OUT }, { "ca-dir", 1, NULL, O_CA_DIR },
    { "challenge", 1, NULL, O_CHALLENGE }, { "cn", 1, NULL, O_CN },
    { "subject", 1, NULL, O_SUBJECT }, { "key-type", 1, NULL, O_KEY_TYPE },
    { "key", 1, NULL, O_KEY }, { "cert-out", 1, NULL, O_CERT_OUT },
    { "crl-out", 1, NULL, O_CRL_OUT }, { "cipher", 1, NULL, O_CIPHER }, { "md", 1, NULL, O_MD },
    { "get", 0, NULL, O_GET }, { "txid", 1, NULL, O_TXID }, { "msgtype", 1, NULL, O_MSGTYPE },
    { "san", 1, NULL, O_SAN }, { "ca-true", 0, NULL, O_CA_TRUE },
    { "no-challenge", 0, NULL, O_NO_CHALLENGE }, { "bad-signature", 0, NULL, O_BAD_SIG },
    { "wrong-key", 0, NULL, O_WRONG_KEY }, { "oaep", 0, NULL, O_OAEP },
    { "renew-with", 1, NULL, O_RENEW_WITH }, { "renew-key", 1, NULL, O_RENEW_KEY },
    { "pkcsreq-signed-by", 1, NULL, O_SIGNED_BY }, { "poll", 0, NULL, O_POLL },
    { "emit", 1, NULL, O_EMIT }, { "decode-reply", 1, NULL, O_DECODE },
    { "state", 1, NULL, O_STATE }, { "serial", 1, NULL, O_SERIAL }, { "cert", 1, NULL, O_CERT },
    { "legacy", 0, NULL, O_LEGACY }, { "key-usage", 1, NULL, O_KEY_USAGE },
    { "valid-days", 1, NULL, O_VALID_DAYS },
    { NULL, 0, NULL, 0 },
};

static int parse_args(int argc, char **argv, struct opts *o)
{
    int c;
    char *end;

    memset(o, 0, sizeof(*o));
    o->md = SCEPC_MD_SHA256;
    o->cipher = SCEPC_CIPHER_AES128;
    if (argc < 2)
        return -1;
    o->cmd = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case O_URL: o->url = optarg; break;
        case O_OUT: o->out_dir = optarg; break;
        case O_CA_DIR: o->ca_dir = optarg; break;
        case O_CHALLENGE: o->challenge = optarg; break;
        case O_NO_CHALLENGE: o->challenge = NULL; break;
        case O_CN: o->cn = optarg; break;
        case O_SUBJECT: o->subject = optarg; break;
        case O_KEY_TYPE: o->key_type = optarg; break;
        case O_KEY: o->key_file = optarg; break;
        case O_CERT_OUT: o->cert_out = optarg; break;
        case O_CRL_OUT: o->crl_out = optarg; break;
        case O_CIPHER:
            if (scepc_cipher_from_name(optarg, &o->cipher) != SCEPC_OK)
                return -1;
            break;
        case O_MD:
            if (scepc_md_from_name(optarg, &o->md) != SCEPC_OK)
                return -1;
            break;
        case O_GET: o->get = 1; break;
        case O_LEGACY: o->legacy = 1; break;
        case O_TXID: o->txid = optarg; break;
        case O_MSGTYPE:
            o->msgtype = (int)strtol(optarg, &end, 10);
            if (*end || o->msgtype <= 0)
                return -1;
            break;
        case O_SAN:
            if (o->nsans >= MAX_SANS || scepc_san_parse(optarg, &o->sans[o->nsans++]) != SCEPC_OK)
                return -1;
            break;
        case O_CA_TRUE: o->ca_true = 1; break;
        case O_BAD_SIG: o->bad_signature = 1; break;
        case O_WRONG_KEY: o->wrong_key = 1; break;
        case O_OAEP: o->oaep = 1; break;
        case O_RENEW_WITH: o->renew_with = optarg; break;
        case O_RENEW_KEY: o->renew_key = optarg; break;
        case O_SIGNED_BY: o->signed_by = optarg; break;
        case O_POLL: o->poll = 1; break;
        case O_EMIT: o->emit = optarg; break;
        case O_DECODE: o->decode_reply = optarg; break;
        case O_STATE: o->state = optarg; break;
        case O_SERIAL: o->serial = optarg; break;
        case O_CERT: o->cert = optarg; break;
        case O_KEY_USAGE: o->key_usage = optarg; break;
        case O_VALID_DAYS:
            errno = 0;
            o->valid_days = strtol(optarg, &end, 10);
            /* ASN1_GENERALIZEDTIME_adj takes an int; 100 years either way is plenty. */
            if (errno || end == optarg || *end || o->valid_days < -36500 || o->valid_days > 36500)
                return -1;
            o->has_valid_days = 1;
            break;
        default: return -1;
        }
    }
    if (optind != argc || (o->renew_with && o->signed_by))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    scepc_ctx *ctx = NULL;
    OSSL_PROVIDER *legacy = NULL, *deflt = NULL;
    int rc = EXIT_USAGE, err;

    if (parse_args(argc, argv, &o) != 0) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    /* Peer servers such as micromdm's encrypt CertReps with single DES, which only the
     * legacy provider has; never load it by default. */
    if (o.legacy && (!(legacy = OSSL_PROVIDER_load(NULL, "legacy"))
                     || !(deflt = OSSL_PROVIDER_load(NULL, "default")))) {
        ERR_print_errors_fp(stderr);
        goto out;
    }
    if ((err = scepc_ctx_create(NULL, NULL, &ctx)) != SCEPC_OK) {
        die_ssl("init", err);
        goto out;
    }
    if (strcmp(o.cmd, "caps") == 0)
        rc = cmd_caps(&o);
    else if (strcmp(o.cmd, "cacert") == 0)
        rc = cmd_cacert(&o);
    else if (strcmp(o.cmd, "enroll") == 0)
        rc = cmd_enroll(&o, ctx);
    else if (strcmp(o.cmd, "getcert") == 0)
        rc = cmd_get(&o, ctx, SCEPC_MSG_GETCERT);
    else if (strcmp(o.cmd, "getcrl") == 0)
        rc = cmd_get(&o, ctx, SCEPC_MSG_GETCRL);
    else
        fputs(usage_text, stderr);
out:
    scepc_ctx_destroy(ctx);
    if (legacy)
        OSSL_PROVIDER_unload(legacy);
    if (deflt)
        OSSL_PROVIDER_unload(deflt);
    return rc;
}
