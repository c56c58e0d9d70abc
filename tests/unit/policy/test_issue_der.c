/* Differential tests for engine/policy/issue_der.c: the DER path must issue what the X509
 * path (X509_set_*, profile_add_extensions, X509_sign) issues for the same inputs.
 *
 * Every shipped profile (conf/profiles/) and a few more shapes (policies, keyAgreement,
 * allow_shorter, beyond_ca = refuse, subject/SAN override) are crossed with RSA, P-256 and
 * P-384 device keys and with CSR shapes (no SAN; DNS, email, URI, UPN; an IP; an empty
 * subject with a SAN; a requested shorter notAfter; a bound subject and SAN) under four CAs
 * (RSA with CDP and AIA configured, RSA without SKI expiring in 10 days, P-256, P-384; the
 * first and last valid for 40 years, so that validity past 2049 is GeneralizedTime). With
 * the same serial and time both paths must give the same answer and, when they issue:
 * - for an RSA CA (PKCS#1 v1.5 is deterministic) byte-identical certificates;
 * - for an EC CA the same TBSCertificate and AlgorithmIdentifier, and a signature that
 *   X509_verify and `openssl verify` accept.
 * A request whose key bit string has unused bits must be refused the same way (REJ_KEY_TYPE
 * on the X509 path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/common/keyclock.h"
#include "engine/policy/issue_internal.h"
#include "engine/scep/der.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"
#include "client/scep_client.h"
#include "tests/unit/policy/policy_test_ca.h"

#define NPROF_MAX 24
#define NCSR_MAX 8

typedef struct test_ca {
    const char *what;
    EVP_PKEY *key;
    X509 *cert;
    ca_set set;
    issuer *is;
    int rsa;
} test_ca;

/* One request shape: the CSR and what issuance replaces. */
typedef struct shape {
    const char *what;
    X509_REQ *req;
    const X509_NAME *subject;
    const GENERAL_NAMES *san;
    int rsa_key;
} shape;

static struct fixture {
    scepc_ctx *ctx;
    test_ca ca[4];
    EVP_PKEY *keys[3];
    profile prof[NPROF_MAX];
    size_t nprof;
    shape shapes[3 * NCSR_MAX];
    size_t nshapes;
    X509_NAME *bound_subject;
    GENERAL_NAMES *bound_san;
} F;

static void add_ext(X509 *cert, X509 *signer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, signer, cert, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_true(X509_add_ext(cert, e, -1));
    X509_EXTENSION_free(e);
}

static void make_ca(test_ca *ca, const char *what, const char *keyspec, const char *cn,
                    long days, int with_ski, int with_urls)
{
    X509_NAME *n = NULL;
    config cfg;
    uint8_t sn[8];

    ca->what = what;
    assert_int_equal(scepc_keygen(F.ctx, keyspec, &ca->key), SCEPC_OK);
    ca->rsa = EVP_PKEY_get_base_id(ca->key) == EVP_PKEY_RSA;
    assert_non_null(ca->cert = X509_new());
    assert_int_equal(scepc_name_parse(cn, &n), SCEPC_OK);
    assert_int_equal(RAND_bytes(sn, sizeof(sn)), 1);
    sn[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(sn, sizeof(sn), NULL);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(ca->cert)));
    BN_free(bn);
    assert_true(X509_set_version(ca->cert, X509_VERSION_3));
    assert_true(X509_set_subject_name(ca->cert, n));
    assert_true(X509_set_issuer_name(ca->cert, n));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(ca->cert), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(ca->cert), days * 86400));
    assert_true(X509_set_pubkey(ca->cert, ca->key));
    add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (with_ski)
        add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(ca->cert, ca->key, EVP_sha256()) > 0);
    X509_NAME_free(n);

    test_ca_set_fill(&ca->set, ca->key, ca->cert);

    config_defaults(&cfg);
    cfg.validity_days = 365;
    if (with_urls) {
        snprintf(cfg.crl_url, sizeof(cfg.crl_url), "http://pki.example/ca.crl");
        snprintf(cfg.ocsp_url, sizeof(cfg.ocsp_url), "http://pki.example/ocsp");
    }
    assert_int_equal(issuer_create(&cfg, &ca->set, "s3cret", &ca->is), 0);
    profile_set *set = NULL;
    char err[256];
    assert_int_equal(profile_set_from(F.prof, F.nprof, &set, err, sizeof(err)), 0);
    assert_int_equal(issuer_set_profiles(ca->is, set, err, sizeof(err)), 0);
}

/* The shipped profiles, then shapes none of them has. */
static void load_profiles(void)
{
    static const char *const shipped[] = { "default", "email", "encryption", "legacy",
                                           "manual", "onetime", "signature", "smartcard",
                                           "vpn", "wifi" };
    static const char *const extra[][2] = {
        { "x-policies", "key_usage = digitalSignature, keyAgreement, keyEncipherment\n"
                        "eku = serverAuth, clientAuth, 1.3.6.1.4.1.311.20.2.2\n"
                        "policies = 1.2.3.4, 2.23.140.1.2.1\nvalidity_days = 3\n"
                        "san_types = dns, email, uri, upn, ip\n" },
        { "x-shorter", "allow_shorter = yes\nvalidity_days = 90\n" },
        { "x-refuse", "validity_days = 365\nbeyond_ca = refuse\n" },
        { "x-override", "challenge = onetime\nsubject_source = override\nsan_source = override\n"
                        "subject_max_length = 20\nsubject_chars = printable\n" },
        { "x-noeku", "key_usage = keyAgreement\nsan_types = ip\n" },
        { "x-long", "validity_days = 12000\n" },   /* past 2049: GeneralizedTime */
    };
    const char *src = getenv("SCEPD_SRC");
    char path[1024], err[256];

    assert_non_null(src);
    for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        snprintf(path, sizeof(path), "%s/conf/profiles/%s.conf", src, shipped[i]);
        if (profile_load_file(path, &F.prof[F.nprof++], err, sizeof(err)) != 0)
            fail_msg("%s", err);
    }
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        const char *text = extra[i][1];
        if (profile_parse(text, strlen(text), extra[i][0], extra[i][0], NULL, &F.prof[F.nprof++],
                          err, sizeof(err)) != 0)
            fail_msg("%s: %s", extra[i][0], err);
    }
}

static X509_REQ *make_csr(EVP_PKEY *key, const char *subject, const char *const *sans,
                          int64_t shorter_not_after)
{
    X509_NAME *n = NULL;
    scepc_san s[6];
    size_t ns = 0;
    STACK_OF(X509_EXTENSION) *extra = NULL;
    X509_REQ *req = NULL;

    if (subject[0] == '\0')
        assert_non_null(n = X509_NAME_new());
    else
        assert_int_equal(scepc_name_parse(subject, &n), SCEPC_OK);
    for (; sans != NULL && sans[ns] != NULL; ns++)
        assert_int_equal(scepc_san_parse(sans[ns], &s[ns]), SCEPC_OK);
    if (shorter_not_after != 0) {
        PKEY_USAGE_PERIOD *pup = PKEY_USAGE_PERIOD_new();
        assert_non_null(pup);
        assert_non_null(pup->notAfter = ASN1_GENERALIZEDTIME_set(NULL, (time_t)shorter_not_after));
        X509_EXTENSION *e = X509V3_EXT_i2d(NID_private_key_usage_period, 0, pup);
        assert_non_null(e);
        assert_non_null(extra = sk_X509_EXTENSION_new_null());
        assert_true(sk_X509_EXTENSION_push(extra, e) > 0);
        PKEY_USAGE_PERIOD_free(pup);
    }
    assert_int_equal(scepc_build_csr(F.ctx, key, n, "s3cret", s, ns, extra, SCEPC_MD_SHA256,
                                     &req), SCEPC_OK);
    /* Parsed back as the server parses requests: in the library context that leaves the key
     * undecoded (issue_check_request). */
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    assert_true(len > 0);
    X509_REQ_free(req);
    uint8_t *copy = malloc((size_t)len);
    assert_non_null(copy);
    memcpy(copy, der, (size_t)len);
    OPENSSL_free(der);
    const unsigned char *p = copy;
    req = (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, len, ASN1_ITEM_rptr(X509_REQ),
                                       scep_key_nodecode_libctx(), NULL);
    assert_non_null(req);
    free(copy);
    sk_X509_EXTENSION_pop_free(extra, X509_EXTENSION_free);
    X509_NAME_free(n);
    return req;
}

static void add_shape(const char *what, X509_REQ *req, const X509_NAME *subject,
                      const GENERAL_NAMES *san, int rsa_key)
{
    assert_true(F.nshapes < sizeof(F.shapes) / sizeof(F.shapes[0]));
    F.shapes[F.nshapes++] = (shape){ what, req, subject, san, rsa_key };
}

static void make_shapes(void)
{
    static const char *const all[] = { "dns:device-1.example", "email:dev@example.org",
                                       "uri:urn:uuid:8a7f0c3e-1d4b-4c55-9d6e-0f1a2b3c4d5e",
                                       "upn:dev@corp.example", NULL };
    static const char *const ip[] = { "ip:192.0.2.7", NULL };
    static const char *const upn[] = { "upn:alice@corp.example", "email:alice@corp.example",
                                       NULL };
    int64_t in_30_days = (int64_t)time(NULL) + 30L * 86400;

    assert_int_equal(scepc_name_parse("/CN=from-mdm/O=corp", &F.bound_subject), SCEPC_OK);
    assert_non_null(F.bound_san = GENERAL_NAMES_new());
    assert_true(sk_GENERAL_NAME_push(F.bound_san, a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS,
                                                                   "mdm.example", 0)) > 0);
    for (int k = 0; k < 3; k++) {
        EVP_PKEY *key = F.keys[k];
        int rsa = k == 0;
        add_shape("plain", make_csr(key, "/CN=device-1/O=fleet/OU=unit 7", NULL, 0), NULL,
                  NULL, rsa);
        add_shape("dns+email+uri+upn", make_csr(key, "/CN=device-2/O=fleet", all, 0), NULL,
                  NULL, rsa);
        add_shape("ip", make_csr(key, "/CN=vpn-1", ip, 0), NULL, NULL, rsa);
        add_shape("upn+email", make_csr(key, "/CN=alice/DC=corp/DC=example", upn, 0), NULL,
                  NULL, rsa);
        add_shape("empty subject", make_csr(key, "", all, 0), NULL, NULL, rsa);
        add_shape("shorter", make_csr(key, "/CN=device-3", NULL, in_30_days), NULL, NULL, rsa);
        X509_REQ *r = make_csr(key, "/CN=a-name-longer-than-twenty/O=x", all, 0);
        add_shape("bound", r, F.bound_subject, F.bound_san, rsa);
        add_shape("bound subject only", X509_REQ_dup(r), F.bound_subject, NULL, rsa);
    }
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    load_profiles();
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.keys[0]), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-256", &F.keys[1]), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-384", &F.keys[2]), SCEPC_OK);
    make_ca(&F.ca[0], "RSA CA, CDP and AIA", "rsa:2048", "/CN=RSA CA/O=scepd", 14600, 1, 1);
    make_ca(&F.ca[1], "RSA CA without SKI, 10 days", "rsa:2048", "/CN=Short RSA CA", 10, 0, 0);
    make_ca(&F.ca[2], "P-256 CA", "ec:P-256", "/CN=EC CA/O=scepd", 3650, 1, 0);
    make_ca(&F.ca[3], "P-384 CA", "ec:P-384", "/CN=P-384 CA/O=scepd", 14600, 1, 1);
    make_shapes();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) {
        issuer_destroy(F.ca[i].is);
        X509_free(F.ca[i].cert);
        EVP_PKEY_free(F.ca[i].key);
    }
    for (size_t i = 0; i < F.nshapes; i++)
        X509_REQ_free(F.shapes[i].req);
    for (int k = 0; k < 3; k++)
        EVP_PKEY_free(F.keys[k]);
    X509_NAME_free(F.bound_subject);
    GENERAL_NAMES_free(F.bound_san);
    scepc_ctx_destroy(F.ctx);
    return 0;
}

/* ---- comparing ---- */

/* The TBSCertificate of a certificate's DER, and what follows it inside (AlgorithmIdentifier,
 * BIT STRING). */
static void split(const issue_cert *c, der_in *tbs, der_in *rest)
{
    der_in in = { c->der, c->der + c->der_len }, body;
    uint8_t tag = 0;
    size_t hl = 0, len = 0;
    int indef = 0;
    assert_int_equal(der_take(&in, 0x30, &body), 0);
    assert_true(in.p == in.end);
    assert_int_equal(der_header(&body, &tag, &hl, &len, &indef), 0);
    assert_int_equal(tag, 0x30);
    *tbs = (der_in){ body.p, body.p + hl + len };
    *rest = (der_in){ tbs->end, body.end };
}

static X509 *parse(const issue_cert *c)
{
    const unsigned char *p = c->der;
    X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
    assert_non_null(x);
    assert_true(p == c->der + c->der_len);
    return x;
}

static void compare(const test_ca *ca, const char *what, const issue_cert *a,
                    const issue_cert *b)
{
    assert_memory_equal(a->serial, b->serial, sizeof(a->serial));
    assert_int_equal(a->not_before, b->not_before);
    assert_int_equal(a->not_after, b->not_after);
    if (ca->rsa) {
        if (a->der_len != b->der_len || memcmp(a->der, b->der, a->der_len) != 0)
            fail_msg("%s: the DER path's certificate differs from the X509 path's", what);
        return;
    }
    der_in ta, ra, tb, rb, alg_a, alg_b;
    split(a, &ta, &ra);
    split(b, &tb, &rb);
    if (ta.end - ta.p != tb.end - tb.p || memcmp(ta.p, tb.p, (size_t)(ta.end - ta.p)) != 0)
        fail_msg("%s: the DER path's TBSCertificate differs from the X509 path's", what);
    alg_a = ra;
    alg_b = rb;
    der_in aa, ab;
    assert_int_equal(der_take(&alg_a, 0x30, &aa), 0);
    assert_int_equal(der_take(&alg_b, 0x30, &ab), 0);
    assert_int_equal(aa.end - aa.p, ab.end - ab.p);
    assert_memory_equal(aa.p, ab.p, (size_t)(aa.end - aa.p));
    X509 *x = parse(b);
    if (X509_verify(x, ca->key) != 1)
        fail_msg("%s: the DER path's signature does not verify", what);
    X509_free(x);
}

/* One build on each path with the same serial and time: the same answer, the same
 * certificate. Returns the answer. */
static int both_paths(const test_ca *ca, const profile *prof, const shape *s, int *capped)
{
    uint8_t serial[ISSUE_SERIAL_LEN];
    issue_cert a, b;
    int ca_capped = -1, cb_capped = -1;
    char what[256];
    time_t now = time(NULL);

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(RAND_bytes(serial, sizeof(serial)), 1);
    serial[0] = (uint8_t)((serial[0] & 0x3f) | 0x40);
    snprintf(what, sizeof(what), "%s, profile %s, %s key, %s", ca->what, prof->name,
             s->rsa_key ? "RSA" : "EC", s->what);
    if (!issue_der_available(ca->is, prof, s->rsa_key))
        fail_msg("%s: no DER path", what);
    int ra = issue_build_at(ca->is, s->req, prof, s->subject, s->san, serial, now,
                            ISSUE_PATH_X509, &a, &ca_capped);
    uint64_t ops = keyclock_thread().ops;
    int rb = issue_build_at(ca->is, s->req, prof, s->subject, s->san, serial, now,
                            ISSUE_PATH_DER, &b, &cb_capped);
    if (ra != rb)
        fail_msg("%s: X509 path %s, DER path %s", what, reject_diag(ra), reject_diag(rb));
    /* One timed operation per certificate signed, none for a refusal. */
    assert_int_equal(keyclock_thread().ops - ops, rb == REJ_NONE ? 1 : 0);
    if (ra == REJ_NONE) {
        assert_int_equal(ca_capped, cb_capped);
        compare(ca, what, &a, &b);
        *capped = cb_capped;
    }
    free(a.der);
    free(b.der);
    return ra;
}

static void test_same_certificates(void **state)
{
    (void)state;
    for (int c = 0; c < 4; c++) {
        const test_ca *ca = &F.ca[c];
        size_t n = 0, issued = 0, refused = 0, capped_n = 0;
        const profile *items = profile_set_items(issuer_profiles(ca->is), &n);
        for (size_t i = 0; i < n; i++) {
            for (size_t k = 0; k < F.nshapes; k++) {
                int capped = 0;
                int rc = both_paths(ca, &items[i], &F.shapes[k], &capped);
                issued += rc == REJ_NONE;
                refused += rc != REJ_NONE;
                capped_n += rc == REJ_NONE && capped;
            }
        }
        /* Both outcomes were compared, and the short CA capped validity. */
        assert_true(issued > 0);
        assert_true(refused > 0);
        if (c == 1)
            assert_true(capped_n > 0);
    }
}

/* The public entry points take the DER path and give what issue_build_at gives. */
static void test_public_entry_points(void **state)
{
    (void)state;
    const test_ca *ca = &F.ca[0];
    const profile *prof = profile_set_find(issuer_profiles(ca->is), "default", 7);
    const shape *s = &F.shapes[1];
    issue_cert ic;
    X509 *x = NULL;
    int capped = -1;

    assert_non_null(prof);
    assert_int_equal(issue_build_der(ca->is, s->req, prof, NULL, NULL, &ic, &capped), REJ_NONE);
    assert_int_equal(capped, 0);
    X509 *p = parse(&ic);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(p);
    assert_int_equal(ASN1_STRING_length(sn), ISSUE_SERIAL_LEN);
    assert_memory_equal(ASN1_STRING_get0_data(sn), ic.serial, ISSUE_SERIAL_LEN);
    assert_int_equal(asn1_epoch(X509_get0_notBefore(p)), ic.not_before);
    assert_int_equal(asn1_epoch(X509_get0_notAfter(p)), ic.not_after);
    assert_int_equal(X509_verify(p, ca->key), 1);
    X509_free(p);
    free(ic.der);

    assert_int_equal(issue_build_profile(ca->is, s->req, prof, NULL, NULL, &x, NULL), REJ_NONE);
    assert_null(X509_get0_pubkey(x));       /* parsed without decoding the key (issue.h) */
    ERR_clear_error();
    assert_int_equal(X509_verify(x, ca->key), 1);
    X509_free(x);
}

static int run_verify(const char *dir, X509 *ca, const issue_cert *leaf)
{
    char ca_path[128], leaf_path[128], cmd[700];
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(leaf_path, sizeof(leaf_path), "%s/leaf.der", dir);
    FILE *f = fopen(ca_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, ca), 1);
    assert_int_equal(fclose(f), 0);
    f = fopen(leaf_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(leaf->der, 1, leaf->der_len, f), leaf->der_len);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof(cmd), "openssl x509 -inform DER -in '%s' -out '%s.pem' 2>/dev/null && "
             "openssl verify -CAfile '%s' '%s.pem' >/dev/null 2>&1", leaf_path, leaf_path,
             ca_path, leaf_path);
    return system(cmd);
}

/* openssl verify accepts what the DER path signs (every CA), and refuses it with one bit of
 * the signature flipped (so this test can fail). */
static void test_openssl_verify(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_issue_der.XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (int c = 0; c < 4; c++) {
        const test_ca *ca = &F.ca[c];
        const profile *prof = profile_set_find(issuer_profiles(ca->is), "vpn", 3);
        issue_cert ic;
        assert_non_null(prof);
        assert_int_equal(issue_build_der(ca->is, F.shapes[2].req, prof, NULL, NULL, &ic, NULL),
                         REJ_NONE);
        if (run_verify(dir, ca->cert, &ic) != 0)
            fail_msg("%s: openssl verify refused the certificate", ca->what);
        ic.der[ic.der_len - 1] ^= 0x01;
        assert_true(run_verify(dir, ca->cert, &ic) != 0);
        free(ic.der);
    }
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* A key bit string with unused bits cannot be copied as sent: both paths refuse it. */
static void test_unused_bits_refused(void **state)
{
    (void)state;
    static const uint8_t rsa2048_bits[] = { 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01 };
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(F.shapes[0].req, &der);
    assert_true(len > 0);
    uint8_t *hit = memmem(der, (size_t)len, rsa2048_bits, sizeof(rsa2048_bits));
    assert_non_null(hit);
    hit[4] = 0x01;                          /* one unused bit */
    const unsigned char *p = der;
    X509_REQ *req = (X509_REQ *)ASN1_item_d2i_ex(NULL, &p, len, ASN1_ITEM_rptr(X509_REQ),
                                                 scep_key_nodecode_libctx(), NULL);
    assert_non_null(req);
    shape s = { "unused bits", req, NULL, NULL, 1 };
    const profile *prof = profile_set_find(issuer_profiles(F.ca[0].is), "default", 7);
    int capped = 0;
    assert_int_equal(both_paths(&F.ca[0], prof, &s, &capped), REJ_KEY_TYPE);
    X509_REQ_free(req);
    OPENSSL_free(der);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_certificates),
        cmocka_unit_test(test_public_entry_points),
        cmocka_unit_test(test_openssl_verify),
        cmocka_unit_test(test_unused_bits_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
