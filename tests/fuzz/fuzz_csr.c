/* Fuzz target for engine/policy/issue.c: issue_check_csr over the whole input (initial enrollment
 * with a challenge, and renewal with SHA-1 allowed), and issue_build for every request that
 * passes, checking the issued certificate against the fixed profile. Mutated requests rarely
 * keep a valid signature, so a request that parses is also re-signed with a fixed key and
 * checked again: that reaches the extension, SAN, subject and challenge checks and the
 * builder with fuzzed content. The re-signed request is also checked under a set of real
 * profiles (smart card logon with a required UPN, S/MIME, VPN with IP SANs, signature-only
 * with subject rules and shorter validity) and built under each profile that accepts it.
 * The key cache's decode of the request's key is compared with OpenSSL's (check_key_decode).
 * Violated invariants abort(), so the replay driver and libFuzzer both flag them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"

#define FUZZ_CHALLENGE "fuzz-challenge"   /* the seed CSRs carry it */

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    EVP_PKEY *ca_key, *resign_key;
    X509 *ca_cert;
    ca_set ca;
    issuer *initial;     /* challenge set, SHA-1 refused */
    issuer *renewal;     /* no challenge, SHA-1 allowed */
    issuer *profiled;    /* the profiles below */
} G;

/* Profiles as an administrator writes them (docs/profiles.md). */
static const struct { const char *name, *text; } PROFILES[] = {
    { "smartcard", "[profile]\nkey_usage = digitalSignature, keyEncipherment\n"
                   "eku = smartcardLogon, clientAuth\nsan_types = upn, email\nsan_required = upn\n"
                   "key_types = rsa, ec\nvalidity_days = 365\nchallenge = none\n" },
    { "email", "[profile]\nkey_usage = digitalSignature, keyEncipherment\neku = emailProtection\n"
               "san_types = email, upn\nsan_required = email\nchallenge_password = " FUZZ_CHALLENGE "\n" },
    { "vpn", "[profile]\nkey_usage = digitalSignature, keyEncipherment\neku = ipsecIKE, clientAuth\n"
             "san_types = dns, email, upn, ip\nvalidity_days = 730\nchallenge = none\n"
             "beyond_ca = refuse\n" },
    { "signature", "[profile]\ntemplate = signature\nkey_usage = digitalSignature, nonRepudiation\n"
                   "eku = clientAuth, emailProtection\nsubject_max_length = 16\n"
                   "subject_chars = printable\nallow_shorter = yes\nhashes = sha256, sha384\n"
                   "ec_curves = P-256\nchallenge = none\n" },
};
#define NPROFILES (sizeof(PROFILES) / sizeof(PROFILES[0]))

static void init(void)
{
    config cfg;
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ski = NULL;

    G.ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.resign_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.ca_cert = X509_new();
    if (n == NULL || G.ca_key == NULL || G.resign_key == NULL || G.ca_cert == NULL ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Fuzz CA",
                                    -1, -1, 0) ||
        !X509_set_version(G.ca_cert, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(G.ca_cert), 1) ||
        !X509_set_subject_name(G.ca_cert, n) || !X509_set_issuer_name(G.ca_cert, n) ||
        X509_gmtime_adj(X509_getm_notBefore(G.ca_cert), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(G.ca_cert), 3650L * 86400) == NULL ||
        !X509_set_pubkey(G.ca_cert, G.ca_key))
        abort();
    X509V3_set_ctx(&v3, G.ca_cert, G.ca_cert, NULL, NULL, 0);
    ski = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    if (ski == NULL || !X509_add_ext(G.ca_cert, ski, -1) ||
        X509_sign(G.ca_cert, G.ca_key, EVP_sha256()) <= 0)
        abort();
    X509_EXTENSION_free(ski);
    X509_NAME_free(n);

    G.ca.ca_key = G.ca_key;
    G.ca.ca_cert = G.ca_cert;
    G.ca.ra_key = G.ca_key;
    G.ca.ra_cert = G.ca_cert;
    G.ca.ca_pub = X509_get0_pubkey(G.ca_cert);
    G.ca.ca_name = X509_get_subject_name(G.ca_cert);
    G.ca.ca_not_after = (int64_t)time(NULL) + 3650L * 86400;

    config_defaults(&cfg);
    cfg.allow_sha1 = 0;
    if (issuer_create(&cfg, &G.ca, FUZZ_CHALLENGE, &G.initial) != 0)
        abort();
    cfg.allow_sha1 = 1;
    if (issuer_create(&cfg, &G.ca, "", &G.renewal) != 0)
        abort();

    profile ps[NPROFILES];
    profile_set *set = NULL;
    char err[256];
    for (size_t i = 0; i < NPROFILES; i++)
        if (profile_parse(PROFILES[i].text, strlen(PROFILES[i].text), PROFILES[i].name, "fuzz",
                          "/", &ps[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_csr: profile %s: %s\n", PROFILES[i].name, err);
            abort();
        }
    cfg.allow_sha1 = 0;
    if (issuer_create(&cfg, &G.ca, FUZZ_CHALLENGE, &G.profiled) != 0 ||
        profile_set_from(ps, NPROFILES, &set, err, sizeof(err)) != 0 ||
        issuer_set_profiles(G.profiled, set, err, sizeof(err)) != 0)
        abort();
    ERR_clear_error();
    G.ready = 1;
}

static int allowed_ext(int nid)
{
    return nid == NID_basic_constraints || nid == NID_key_usage || nid == NID_ext_key_usage ||
           nid == NID_subject_key_identifier || nid == NID_authority_key_identifier ||
           nid == NID_subject_alt_name;
}

/* 1 when the certificate carries the request's SubjectPublicKeyInfo byte for byte. */
static int same_spki(X509 *c, X509_REQ *req)
{
    unsigned char *a = NULL, *b = NULL;
    int na = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &a);
    int nb = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(req), &b);
    int eq = na > 0 && na == nb && memcmp(a, b, (size_t)na) == 0;
    OPENSSL_free(a);
    OPENSSL_free(b);
    return eq;
}

/* The issued certificate follows the profile whatever the request asked for. */
static void check_cert(X509 *c, X509_REQ *req)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(c);
    if (X509_get_version(c) != X509_VERSION_3 || ASN1_STRING_type(sn) != V_ASN1_INTEGER ||
        ASN1_STRING_length(sn) != 16 || ASN1_STRING_get0_data(sn)[0] < 0x40 ||
        ASN1_STRING_get0_data(sn)[0] > 0x7f)
        abort();
    if (X509_check_ca(c) != 0 || X509_verify(c, G.ca.ca_pub) != 1 ||
        X509_NAME_cmp(X509_get_issuer_name(c), G.ca.ca_name) != 0 ||
        X509_NAME_cmp(X509_get_subject_name(c), X509_REQ_get_subject_name(req)) != 0 ||
        !same_spki(c, req))
        abort();
    int n = X509_get_ext_count(c);
    if (n < 5 || n > 6)
        abort();
    for (int i = 0; i < n; i++) {
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(X509_get_ext(c, i)));
        if (!allowed_ext(nid) || X509_get_ext_by_NID(c, nid, i) != -1)
            abort();
    }
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(c, NID_basic_constraints, &crit, NULL);
    if (bc == NULL || bc->ca || crit != 1)
        abort();
    BASIC_CONSTRAINTS_free(bc);
    uint32_t ku = X509_get_key_usage(c);
    if ((ku & ~(uint32_t)(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT)) != 0)
        abort();
    if (X509_get_extended_key_usage(c) != XKU_SSL_CLIENT)
        abort();
    GENERAL_NAMES *san = X509_get_ext_d2i(c, NID_subject_alt_name, &crit, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        if (gn->type != GEN_DNS && gn->type != GEN_EMAIL && gn->type != GEN_URI &&
            !(gn->type == GEN_OTHERNAME && OBJ_obj2nid(gn->d.otherName->type_id) == NID_ms_upn))
            abort();
    }
    GENERAL_NAMES_free(san);
    ERR_clear_error();
}

/* A refusal is any row of the reject table (engine/scep/reject.h) that is answered with a
 * failInfo; which rows a check may return grows with the profiles, so the harness checks the
 * table's invariants, not a list of codes. */
static int is_refusal(int rc)
{
    return rc > REJ_NONE && rc < REJ__COUNT && reject_failinfo(rc) != SCEP_FAIL_NONE;
}

static void run(const issuer *is, const uint8_t *der, size_t len, int need_challenge)
{
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    int rc = issue_check_csr(is, der, len, need_challenge, &req);

    if (rc == REJ_NONE) {
        if (req == NULL)
            abort();
        rc = issue_build(is, req, &cert);
        if (rc == REJ_NONE) {
            if (cert == NULL)
                abort();
            check_cert(cert, req);
        } else if (!is_refusal(rc) || cert != NULL) {
            abort();
        }
    } else if (!is_refusal(rc) || req != NULL) {
        abort();
    }
    X509_free(cert);
    X509_REQ_free(req);
}

/* Under every profile by name (initial enrollment), and chosen by keyUsage: the table's
 * invariants, and what passes is built under its profile. */
static void run_profiles(const uint8_t *der, size_t len)
{
    for (size_t i = 0; i <= NPROFILES; i++) {
        const profile *prof = NULL;
        const char *detail = NULL;
        X509_REQ *req = NULL;
        X509 *cert = NULL;
        int rc = issue_check_request(G.profiled, der, len, i < NPROFILES ? PROFILES[i].name : NULL,
                                     1, &prof, &req, &detail);
        if (rc == REJ_NONE) {
            if (req == NULL || prof == NULL)
                abort();
            rc = issue_build_profile(G.profiled, req, prof, NULL, NULL, &cert, NULL);
            if (rc == REJ_NONE) {
                if (cert == NULL || X509_check_ca(cert) != 0 ||
                    X509_verify(cert, G.ca.ca_pub) != 1 || !same_spki(cert, req))
                    abort();
            } else if (!is_refusal(rc) || cert != NULL) {
                abort();
            }
        } else if (!is_refusal(rc) || req != NULL) {
            abort();
        }
        X509_free(cert);
        X509_REQ_free(req);
        ERR_clear_error();
    }
}

/* The key cache builds the common key shapes from their numbers (engine/scep/keycache.c):
 * whatever the SubjectPublicKeyInfo, it must give what OpenSSL's decode gives, or nothing
 * when that gives nothing. */
static void check_key_decode(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    unsigned char *enc = NULL;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    X509_PUBKEY *spki = req != NULL ? X509_REQ_get_X509_PUBKEY(req) : NULL;
    int n = spki != NULL ? i2d_X509_PUBKEY(spki, &enc) : 0;
    if (n > 0) {
        const unsigned char *q = enc;
        EVP_PKEY *ref = d2i_PUBKEY(NULL, &q, n);
        EVP_PKEY *ours = scep_key_get1(spki);
        if ((ref == NULL) != (ours == NULL) || (ref != NULL && EVP_PKEY_eq(ref, ours) != 1))
            abort();
        EVP_PKEY_free(ref);
        EVP_PKEY_free(ours);
    }
    OPENSSL_free(enc);
    X509_REQ_free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.ready)
        init();
    /* Exact-size copy so an over-read is caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    unsigned char *der = NULL;
    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);

    run(G.initial, buf, size, 1);
    run(G.renewal, buf, size, 0);
    check_key_decode(buf, size);

    /* Re-signed with a valid key: the request's content goes through the remaining checks. */
    const unsigned char *p = buf;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)size);
    if (req != NULL && X509_REQ_set_pubkey(req, G.resign_key) &&
        X509_REQ_sign(req, G.resign_key, EVP_sha256()) > 0) {
        int n = i2d_X509_REQ(req, &der);
        if (n > 0) {
            run(G.initial, der, (size_t)n, 1);
            run(G.renewal, der, (size_t)n, 0);
            run_profiles(der, (size_t)n);
        }
    }
    OPENSSL_free(der);
    X509_REQ_free(req);
    free(buf);
    ERR_clear_error();
    return 0;
}
