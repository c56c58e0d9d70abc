/* Unit tests for engine/policy/profile.c: parsing (every key, every error with file:line), directory
 * loading, and each decision function, including the extensions added to a real certificate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "engine/policy/challenge.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"

static struct {
    EVP_PKEY *rsa2048, *rsa1024, *ec256, *ec384, *ec521, *ed25519;
    EVP_PKEY *ca_key;
    X509 *ca;
} K;

static int setup(void **state)
{
    (void)state;
    K.rsa2048 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    K.rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    K.ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    K.ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    K.ec521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    K.ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    K.ca_key = K.ec256;
    K.ca = X509_new();
    X509_NAME *n = X509_get_subject_name(K.ca);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Test CA", -1, -1, 0);
    X509_set_issuer_name(K.ca, n);
    X509_set_pubkey(K.ca, K.ca_key);
    X509_gmtime_adj(X509_getm_notBefore(K.ca), 0);
    X509_gmtime_adj(X509_getm_notAfter(K.ca), 86400);
    X509_sign(K.ca, K.ca_key, EVP_sha256());
    return K.rsa2048 && K.rsa1024 && K.ec256 && K.ec384 && K.ec521 && K.ed25519 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(K.rsa2048);
    EVP_PKEY_free(K.rsa1024);
    EVP_PKEY_free(K.ec256);
    EVP_PKEY_free(K.ec384);
    EVP_PKEY_free(K.ec521);
    EVP_PKEY_free(K.ed25519);
    X509_free(K.ca);
    return 0;
}

static int parse(const char *text, profile *p, char *err, size_t errlen)
{
    return profile_parse(text, strlen(text), "t", "t.conf", "/etc/scepd", p, err, errlen);
}

static void parse_ok(const char *text, profile *p)
{
    char err[256] = "";
    int rc = parse(text, p, err, sizeof(err));
    if (rc != 0)
        fail_msg("parse failed: %s", err);
}

static void expect_err(const char *text, const char *fragment)
{
    profile p;
    char err[256] = "";
    memset(&p, 0x5a, sizeof(p));
    assert_int_equal(parse(text, &p, err, sizeof(err)), -1);
    if (strstr(err, fragment) == NULL)
        fail_msg("error '%s' lacks '%s'", err, fragment);
    assert_int_equal(((unsigned char *)&p)[0], 0x5a);   /* untouched on failure */
}

static void test_defaults(void **state)
{
    (void)state;
    profile p;
    parse_ok("", &p);
    assert_string_equal(p.name, "t");
    assert_int_equal(p.key_usage, PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_KEY_ENCIPHERMENT);
    assert_int_equal(p.eku_count, 1);
    assert_string_equal(p.eku[0], "1.3.6.1.5.5.7.3.2");
    assert_int_equal(p.san_types, PROFILE_SAN_DNS | PROFILE_SAN_EMAIL | PROFILE_SAN_URI | PROFILE_SAN_UPN);
    assert_int_equal(p.validity_days, 365);
    assert_int_equal(p.rsa_min_bits, 2048);
    assert_int_equal(p.rsa_max_bits, 4096);
    assert_int_equal(p.ec_curves, PROFILE_CURVE_P256 | PROFILE_CURVE_P384);
    assert_int_equal(p.hashes, PROFILE_HASH_SHA256 | PROFILE_HASH_SHA384 | PROFILE_HASH_SHA512);
    assert_int_equal(p.renewal_threshold_percent, 20);
    assert_int_equal(p.approval, PROFILE_APPROVAL_AUTO);
    assert_int_equal(p.challenge, PROFILE_CHALLENGE_STATIC);
    assert_int_equal(p.beyond_ca, PROFILE_BEYOND_CA_CAP);
    assert_int_equal(p.template_class, PROFILE_TEMPLATE_GENERAL);
    assert_int_equal(p.allow_des, 0);          /* single DES: RFC 8894 MUST NOT */
}

static void test_all_keys(void **state)
{
    (void)state;
    profile p;
    parse_ok("[profile]\n"
             "name = smart-card\n"
             "description = \"Smart card ; logon\"\n"
             "key_usage = digitalSignature, nonRepudiation\n"
             "eku = smartcardLogon clientAuth 1.2.3.4.5\n"
             "policies = 1.3.6.1.4.1.99999.1.2\n"
             "template = signature\n"
             "subject_source = require\n"
             "san_source = override\n"
             "san_types = upn, dns\n"
             "subject_max_length = 64\n"
             "subject_chars = printable\n"
             "validity_days = 90   # comment\n"
             "allow_shorter = no\n"
             "beyond_ca = refuse\n"
             "key_types = rsa\n"
             "rsa_min_bits = 3072\n"
             "rsa_max_bits = 4096\n"
             "ec_curves = none\n"
             "hashes = sha256 sha1\n"
             "renewal_threshold_percent = 30\n"
             "approval = manual\n"
             "challenge = static\n"
             "challenge_password_file = secret.txt\n", &p);
    assert_string_equal(p.name, "smart-card");
    assert_string_equal(p.description, "Smart card ; logon");
    assert_int_equal(p.key_usage, PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_NON_REPUDIATION);
    assert_int_equal(p.eku_count, 3);
    assert_string_equal(p.eku[0], "1.3.6.1.4.1.311.20.2.2");
    assert_string_equal(p.eku[2], "1.2.3.4.5");
    assert_int_equal(p.smartcard_logon, 1);
    assert_int_equal(p.san_required, PROFILE_SAN_UPN);   /* implied by smartcardLogon */
    assert_int_equal(p.policy_count, 1);
    assert_int_equal(p.template_class, PROFILE_TEMPLATE_SIGNATURE);
    assert_int_equal(p.subject_source, PROFILE_SOURCE_REQUIRE);
    assert_int_equal(p.san_source, PROFILE_SOURCE_OVERRIDE);
    assert_int_equal(p.subject_max_length, 64);
    assert_int_equal(p.subject_chars, PROFILE_CHARS_PRINTABLE);
    assert_int_equal(p.validity_days, 90);
    assert_int_equal(p.allow_shorter, 0);
    assert_int_equal(p.beyond_ca, PROFILE_BEYOND_CA_REFUSE);
    assert_int_equal(p.key_types, PROFILE_KEY_RSA);
    assert_int_equal(p.rsa_min_bits, 3072);
    assert_int_equal(p.hashes, PROFILE_HASH_SHA256 | PROFILE_HASH_SHA1);
    assert_int_equal(p.renewal_threshold_percent, 30);
    assert_int_equal(p.approval, PROFILE_APPROVAL_MANUAL);
    assert_string_equal(p.challenge_password_file, "/etc/scepd/secret.txt");
}

static void test_errors(void **state)
{
    (void)state;
    expect_err("validity_days = 30\nbogus = 1\n", "t.conf:2: unknown key 'bogus'");
    expect_err("[issue]\n", "t.conf:1: unknown section");
    expect_err("[profile]\n[profile]\n", "t.conf:2:");
    expect_err("[profile\n", "malformed section");
    expect_err("just words\n", "expected key = value");
    expect_err("= 3\n", "bad key");
    expect_err("name = a/b\n", "bad profile name");
    expect_err("key_usage = keyCertSign\n", "unknown key usage 'keyCertSign'");
    expect_err("key_usage =\n", "empty key usage list");
    expect_err("eku = clientAuth, 9.1\n", "bad eku '9.1'");
    expect_err("eku = 1.02.3\n", "bad eku");
    expect_err("eku = clientAuth clientAuth\n", "duplicate eku");
    expect_err("eku = 1.1 1.2 1.3 1.4 1.5 1.6 1.7 1.8 1.9 1.10 1.11 1.12 1.13 1.14 1.15 1.16 1.17\n",
               "too many eku");
    expect_err("policies = smartcardLogon\n", "bad policy");
    expect_err("template = both\n", "bad template");
    expect_err("subject_source = challenge\n", "bad subject_source");
    expect_err("san_source = x\n", "bad san_source");
    expect_err("san_types = x400\n", "unknown SAN type 'x400'");
    expect_err("san_types = dns\nsan_required = upn\n", "san_required names a type");
    expect_err("subject_max_length = -1\n", "bad subject_max_length");
    expect_err("subject_chars = utf8\n", "bad subject_chars");
    expect_err("validity_days = 0\n", "bad validity_days");
    expect_err("validity_days = 36501\n", "bad validity_days");
    expect_err("validity_days = 12x\n", "bad validity_days");
    expect_err("allow_shorter = maybe\n", "bad allow_shorter");
    expect_err("beyond_ca = extend\n", "bad beyond_ca");
    expect_err("key_types = dsa\n", "unknown key type 'dsa'");
    expect_err("rsa_min_bits = 512\n", "bad rsa_min_bits");
    expect_err("rsa_max_bits = 99999\n", "bad rsa_max_bits");
    expect_err("rsa_min_bits = 4096\nrsa_max_bits = 2048\n", "rsa_min_bits 4096 > rsa_max_bits 2048");
    expect_err("ec_curves = P-192\n", "unknown curve");
    expect_err("ec_curves = none\n", "ec_curves is empty");
    expect_err("hashes = md5\n", "unknown hash 'md5'");
    expect_err("renewal_threshold_percent = 101\n", "bad renewal_threshold_percent");
    expect_err("approval = later\n", "bad approval");
    expect_err("challenge = otp\n", "bad challenge");
    expect_err("challenge_password = a\nchallenge_password_file = b\n", "not both");
    expect_err("allow_des = des\n", "bad allow_des 'des' (yes or no)");
    /* An override's subject comes from a one-time challenge's binding: nothing else binds. */
    expect_err("subject_source = override\n", "subject_source = override needs challenge = onetime");
    expect_err("subject_source = override\nchallenge = none\n", "needs challenge = onetime");
    expect_err("challenge = onetime\nsubject_source = override\nchallenge = static\n",
               "t.conf: subject_source = override needs challenge = onetime");
    expect_err("challenge = onetime\nchallenge_password = a\n", "only for challenge = static");
    expect_err("eku = smartcardLogon\nsan_types = dns\n", "smartcardLogon needs upn");
    expect_err("description = \"open\n", "unterminated quote");
    expect_err("description = \"a\" b\n", "text after closing quote");
    char big[6000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "description = ", 14);
    big[sizeof(big) - 2] = '\n';
    big[sizeof(big) - 1] = '\0';
    expect_err(big, "value too long");
    big[300] = '\n';
    big[301] = '\0';
    expect_err(big, "description too long");

    profile p;
    char err[128];
    static const char nul[] = "name = a\0b\n";
    assert_int_equal(profile_parse(nul, sizeof(nul) - 1, "t", "t.conf", NULL, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
    assert_int_equal(profile_parse("", 0, "bad/name", "x", NULL, &p, err, sizeof(err)), -1);
    /* CRLF lines, comment-only lines, err may be NULL */
    static const char crlf[] = "; c\r\n# c\r\nvalidity_days = 7\r\n";
    assert_int_equal(profile_parse(crlf, sizeof(crlf) - 1, "t", NULL, NULL, &p, NULL, 0), 0);
    assert_int_equal(p.validity_days, 7);
    assert_int_equal(profile_parse("x = 1", 5, "t", NULL, NULL, &p, NULL, 0), -1);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_load_dir(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_profile.XXXXXX", path[256], err[512];
    profile_set *s = NULL;
    size_t n = 0;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/wifi.conf", dir);
    write_file(path, "eku = clientAuth\n");
    snprintf(path, sizeof(path), "%s/alpha.conf", dir);
    write_file(path, "name = zeta\nchallenge_password_file = pw\n");
    snprintf(path, sizeof(path), "%s/pw", dir);
    write_file(path, "hunter2\r\n");
    snprintf(path, sizeof(path), "%s/README", dir);
    write_file(path, "not a profile\n");
    assert_int_equal(profile_set_load_dir(dir, &s, err, sizeof(err)), 0);
    const profile *items = profile_set_items(s, &n);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].name, "wifi");      /* sorted by profile name */
    assert_string_equal(items[1].name, "zeta");
    assert_ptr_equal(profile_set_find(s, "zeta", 4), &items[1]);
    assert_null(profile_set_find(s, "alpha", 5));
    assert_null(profile_set_find(s, "wif", 3));
    char pw[64];
    assert_int_equal(profile_read_challenge(&items[1], pw, sizeof(pw)), 7);
    assert_string_equal(pw, "hunter2");
    assert_int_equal(profile_read_challenge(&items[1], pw, 4), -1);
    assert_int_equal(profile_read_challenge(&items[0], pw, sizeof(pw)), 0);
    profile_set_destroy(s);

    /* duplicate names refused */
    snprintf(path, sizeof(path), "%s/zeta.conf", dir);
    write_file(path, "validity_days = 1\n");
    s = NULL;
    assert_int_equal(profile_set_load_dir(dir, &s, err, sizeof(err)), -1);
    assert_null(s);
    assert_non_null(strstr(err, "duplicate profile name 'zeta'"));
    /* an error names the file and line */
    write_file(path, "validity_days = 1\nnope = 2\n");
    assert_int_equal(profile_set_load_dir(dir, &s, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "zeta.conf:2: unknown key 'nope'"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/alpha.conf", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/wifi.conf", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/pw", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/README", dir);
    unlink(path);
    assert_int_equal(profile_set_load_dir(dir, &s, err, sizeof(err)), 0);   /* empty is fine */
    profile_set_items(s, &n);
    assert_int_equal(n, 0);
    profile_set_destroy(s);
    rmdir(dir);
    assert_int_equal(profile_set_load_dir(dir, &s, err, sizeof(err)), -1);
    profile_set_destroy(NULL);
    profile pr;
    assert_int_equal(profile_load_file("/nonexistent/x.conf", &pr, err, sizeof(err)), -1);
}

static void test_check_key(void **state)
{
    (void)state;
    profile p;
    parse_ok("", &p);
    assert_int_equal(profile_check_key(&p, K.rsa2048), PROFILE_OK);
    assert_int_equal(profile_check_key(&p, K.rsa1024), PROFILE_KEY_SIZE);
    assert_int_equal(profile_check_key(&p, K.ec256), PROFILE_OK);
    assert_int_equal(profile_check_key(&p, K.ec384), PROFILE_OK);
    assert_int_equal(profile_check_key(&p, K.ec521), PROFILE_KEY_CURVE);
    assert_int_equal(profile_check_key(&p, K.ed25519), PROFILE_KEY_TYPE);
    parse_ok("key_types = ec\nec_curves = P-521\n", &p);
    assert_int_equal(profile_check_key(&p, K.rsa2048), PROFILE_KEY_TYPE);
    assert_int_equal(profile_check_key(&p, K.ec521), PROFILE_OK);
    assert_int_equal(profile_check_key(&p, K.ec256), PROFILE_KEY_CURVE);
    parse_ok("rsa_min_bits = 3072\n", &p);
    assert_int_equal(profile_check_key(&p, K.rsa2048), PROFILE_KEY_SIZE);
    parse_ok("rsa_min_bits = 1024\nrsa_max_bits = 1024\n", &p);
    assert_int_equal(profile_check_key(&p, K.rsa1024), PROFILE_OK);
    assert_int_equal(profile_check_key(&p, K.rsa2048), PROFILE_KEY_SIZE);
    /* an encryption-only profile cannot take an EC key (no key transport) */
    parse_ok("key_usage = keyEncipherment\n", &p);
    assert_int_equal(profile_check_key(&p, K.ec256), PROFILE_KEY_USAGE);
    assert_int_equal(profile_check_key(&p, K.rsa2048), PROFILE_OK);
}

static void test_check_hash(void **state)
{
    (void)state;
    profile p;
    parse_ok("", &p);
    assert_int_equal(profile_check_hash(&p, NID_sha256), PROFILE_OK);
    assert_int_equal(profile_check_hash(&p, NID_sha384), PROFILE_OK);
    assert_int_equal(profile_check_hash(&p, NID_sha512), PROFILE_OK);
    assert_int_equal(profile_check_hash(&p, NID_sha1), PROFILE_HASH);
    assert_int_equal(profile_check_hash(&p, NID_sha224), PROFILE_HASH);
    assert_int_equal(profile_check_hash(&p, NID_md5), PROFILE_HASH);
    parse_ok("hashes = sha1, sha224\n", &p);
    assert_int_equal(profile_check_hash(&p, NID_sha1), PROFILE_OK);
    assert_int_equal(profile_check_hash(&p, NID_sha224), PROFILE_OK);
    assert_int_equal(profile_check_hash(&p, NID_sha256), PROFILE_HASH);
}

static GENERAL_NAMES *sans(const char *list)
{
    GENERAL_NAMES *g = challenge_parse_san(list);
    assert_non_null(g);
    return g;
}

static void test_check_san(void **state)
{
    (void)state;
    profile p;
    GENERAL_NAMES *g;
    parse_ok("", &p);
    assert_int_equal(profile_check_san(&p, NULL), PROFILE_OK);
    /* the URI SAN Intune adds must pass through */
    g = sans("dns:a.example,email:a@example.com,upn:a@corp,"
             "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001");
    assert_int_equal(sk_GENERAL_NAME_num(g), 4);
    assert_int_equal(profile_check_san(&p, g), PROFILE_OK);
    GENERAL_NAMES_free(g);
    g = sans("ip:10.0.0.1");
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);   /* ip not by default */
    parse_ok("san_types = ip\n", &p);
    assert_int_equal(profile_check_san(&p, g), PROFILE_OK);
    GENERAL_NAMES_free(g);
    parse_ok("san_types = dns\n", &p);
    g = sans("email:x@y");
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);
    GENERAL_NAMES_free(g);
    parse_ok("san_types = none\n", &p);
    g = sans("dns:x");
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);
    GENERAL_NAMES_free(g);

    /* smart card logon: UPN required */
    parse_ok("eku = smartcardLogon, clientAuth\n", &p);
    g = sans("dns:x");
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_UPN_REQUIRED);
    GENERAL_NAMES_free(g);
    assert_int_equal(profile_check_san(&p, NULL), PROFILE_SAN_UPN_REQUIRED);
    g = sans("upn:alice@corp.example");
    assert_int_equal(profile_check_san(&p, g), PROFILE_OK);
    GENERAL_NAMES_free(g);
    /* other required types */
    parse_ok("san_required = dns\n", &p);
    g = sans("email:x@y");
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);
    GENERAL_NAMES_free(g);

    /* UPN that is not a UTF8String; unknown otherName; directoryName */
    parse_ok("", &p);
    g = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_TYPE *v = ASN1_TYPE_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    ASN1_STRING_set(ia5, "a@b", -1);
    ASN1_TYPE_set(v, V_ASN1_IA5STRING, ia5);
    GENERAL_NAME_set0_othername(gn, OBJ_nid2obj(NID_ms_upn), v);
    sk_GENERAL_NAME_push(g, gn);
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_INVALID);
    GENERAL_NAMES_free(g);
    g = GENERAL_NAMES_new();
    gn = GENERAL_NAME_new();
    v = ASN1_TYPE_new();
    ASN1_TYPE_set(v, V_ASN1_NULL, NULL);
    GENERAL_NAME_set0_othername(gn, OBJ_txt2obj("1.2.3.4", 1), v);
    sk_GENERAL_NAME_push(g, gn);
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);
    GENERAL_NAMES_free(g);
    g = GENERAL_NAMES_new();
    gn = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(gn, GEN_DIRNAME, X509_NAME_new());
    sk_GENERAL_NAME_push(g, gn);
    assert_int_equal(profile_check_san(&p, g), PROFILE_SAN_TYPE);
    GENERAL_NAMES_free(g);
}

static X509_NAME *name1(const char *field, const char *value, int type)
{
    X509_NAME *n = X509_NAME_new();
    assert_int_equal(X509_NAME_add_entry_by_txt(n, field, type, (const unsigned char *)value, -1, -1, 0), 1);
    return n;
}

static void test_check_subject(void **state)
{
    (void)state;
    profile p;
    X509_NAME *n;
    GENERAL_NAMES *g = sans("dns:x");
    parse_ok("", &p);
    X509_NAME *empty = X509_NAME_new();
    assert_int_equal(profile_check_subject(&p, empty, NULL), PROFILE_SUBJECT_EMPTY);
    assert_int_equal(profile_check_subject(&p, empty, g), PROFILE_OK);
    assert_int_equal(profile_check_subject(&p, NULL, NULL), PROFILE_SUBJECT_EMPTY);
    n = name1("CN", "d\xc3\xa9vice \x01 *", MBSTRING_UTF8);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_OK);   /* any: no limit */
    parse_ok("subject_chars = ascii\n", &p);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_SUBJECT_CHARS);
    X509_NAME_free(n);
    n = name1("CN", "dev*1@corp", MBSTRING_ASC);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_OK);
    parse_ok("subject_chars = printable\n", &p);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_SUBJECT_CHARS);
    X509_NAME_free(n);
    n = name1("CN", "Device (1) - a.b:c=d?", MBSTRING_ASC);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_OK);
    parse_ok("subject_max_length = 8\n", &p);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_SUBJECT_LENGTH);
    X509_NAME_free(n);
    n = name1("CN", "12345678", MBSTRING_ASC);
    assert_int_equal(profile_check_subject(&p, n, NULL), PROFILE_OK);
    X509_NAME_free(n);
    X509_NAME_free(empty);
    GENERAL_NAMES_free(g);
}

static void test_validity(void **state)
{
    (void)state;
    profile p;
    int64_t na = 0;
    int capped = -1;
    const time_t now = 1700000000;
    const int64_t day = 86400, far = now + 3650 * day;
    parse_ok("validity_days = 30\n", &p);
    assert_int_equal(profile_validity(&p, now, far, 0, &na, &capped), PROFILE_OK);
    assert_int_equal(na, now + 30 * day);
    assert_int_equal(capped, 0);
    /* shorter asked for and allowed */
    assert_int_equal(profile_validity(&p, now, far, now + 7 * day, &na, NULL), PROFILE_OK);
    assert_int_equal(na, now + 7 * day);
    /* longer asked for: the profile maximum */
    assert_int_equal(profile_validity(&p, now, far, now + 90 * day, &na, NULL), PROFILE_OK);
    assert_int_equal(na, now + 30 * day);
    /* in the past */
    na = 42;
    assert_int_equal(profile_validity(&p, now, far, now - 1, &na, NULL), PROFILE_VALIDITY_REQUEST);
    assert_int_equal(na, 42);
    /* allow_shorter = no: ignored */
    parse_ok("validity_days = 30\nallow_shorter = no\n", &p);
    assert_int_equal(profile_validity(&p, now, far, now + 7 * day, &na, NULL), PROFILE_OK);
    assert_int_equal(na, now + 30 * day);
    assert_int_equal(profile_validity(&p, now, far, now - 1, &na, NULL), PROFILE_OK);
    /* beyond the CA: capped (default) ... */
    assert_int_equal(profile_validity(&p, now, now + 10 * day, 0, &na, &capped), PROFILE_OK);
    assert_int_equal(na, now + 10 * day);
    assert_int_equal(capped, 1);
    /* ... or refused */
    parse_ok("validity_days = 30\nbeyond_ca = refuse\n", &p);
    assert_int_equal(profile_validity(&p, now, now + 10 * day, 0, &na, NULL), PROFILE_BEYOND_CA);
    /* a shorter request that fits makes refuse mode succeed */
    assert_int_equal(profile_validity(&p, now, now + 10 * day, now + 5 * day, &na, NULL), PROFILE_OK);
    assert_int_equal(na, now + 5 * day);
    /* CA expired */
    assert_int_equal(profile_validity(&p, now, now, 0, &na, NULL), PROFILE_CA_EXPIRED);
}

static X509_REQ *csr_with(EVP_PKEY *k, X509_EXTENSION *e1, X509_EXTENSION *e2)
{
    X509_REQ *r = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (e1 != NULL)
        sk_X509_EXTENSION_push(exts, e1);
    if (e2 != NULL)
        sk_X509_EXTENSION_push(exts, e2);
    X509_REQ_set_pubkey(r, k);
    if (sk_X509_EXTENSION_num(exts) > 0)
        X509_REQ_add_extensions(r, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_sign(r, k, EVP_sha256());
    return r;
}

static X509_EXTENSION *ku_ext(const char *v)
{
    return X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, v);
}

static void test_requested(void **state)
{
    (void)state;
    int64_t t = -1;
    X509_REQ *r = csr_with(K.ec256, NULL, NULL);
    assert_int_equal(profile_requested_not_after(r, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(profile_requested_key_usage(r), 0);
    X509_REQ_free(r);

    PKEY_USAGE_PERIOD *pup = PKEY_USAGE_PERIOD_new();
    pup->notAfter = ASN1_GENERALIZEDTIME_set(NULL, 1800000000);
    X509_EXTENSION *e = X509V3_EXT_i2d(NID_private_key_usage_period, 0, pup);
    PKEY_USAGE_PERIOD_free(pup);
    r = csr_with(K.ec256, e, ku_ext("digitalSignature,keyEncipherment"));
    assert_int_equal(profile_requested_not_after(r, &t), 0);
    assert_int_equal(t, 1800000000);
    assert_int_equal(profile_requested_key_usage(r),
                     PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_KEY_ENCIPHERMENT);
    X509_REQ_free(r);

    /* present but malformed */
    ASN1_OCTET_STRING *junk = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(junk, (const unsigned char *)"\x04\x00", 2);
    e = X509_EXTENSION_create_by_NID(NULL, NID_private_key_usage_period, 0, junk);
    ASN1_OCTET_STRING_free(junk);
    r = csr_with(K.ec256, e, NULL);
    t = 7;
    assert_int_equal(profile_requested_not_after(r, &t), -1);
    assert_int_equal(t, 7);
    X509_REQ_free(r);
}

static void test_renewal(void **state)
{
    (void)state;
    profile p;
    const int64_t nb = 1000000, na = nb + 1000000;   /* lifetime 1e6 s */
    parse_ok("", &p);                                  /* last 20 % */
    assert_int_equal(profile_renewal_allowed(&p, (time_t)(na - 200001), nb, na), PROFILE_RENEWAL_EARLY);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)(na - 200000), nb, na), PROFILE_OK);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)(na - 1), nb, na), PROFILE_OK);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)na, nb, na), PROFILE_RENEWAL_EXPIRED);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)nb, nb, nb), PROFILE_RENEWAL_EXPIRED);
    parse_ok("renewal_threshold_percent = 100\n", &p);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)nb, nb, na), PROFILE_OK);
    parse_ok("renewal_threshold_percent = 0\n", &p);
    assert_int_equal(profile_renewal_allowed(&p, (time_t)(na - 1), nb, na), PROFILE_RENEWAL_EARLY);
}

/* The renewal lane: keys, defaults, and profile_check_renewal. */
static void test_renewal_binding(void **state)
{
    (void)state;
    profile p;
    parse_ok("", &p);
    assert_int_equal(p.renew_from_count, 0);
    assert_int_equal(p.renew_may_change, 0);
    assert_int_equal(p.approve_renewals, 1);
    parse_ok("name = wifi-v2\nrenew_from = wifi-v1, wifi.old\nrenew_may_change = san\n"
             "approve_renewals = no\n", &p);
    assert_int_equal(p.renew_from_count, 2);
    assert_string_equal(p.renew_from[0], "wifi-v1");
    assert_string_equal(p.renew_from[1], "wifi.old");
    assert_int_equal(p.renew_may_change, PROFILE_RENEW_SAN);
    assert_int_equal(p.approve_renewals, 0);
    expect_err("renew_from = bad/name\n", "bad renew_from name");
    expect_err("renew_from = a b c d e f g h i\n", "too many renew_from");
    expect_err("renew_may_change = key\n", "unknown renew_may_change entry 'key'");
    expect_err("approve_renewals = maybe\n", "bad approve_renewals");

    X509_NAME *a = name1("CN", "dev-1", MBSTRING_UTF8), *b = name1("CN", "dev-2", MBSTRING_UTF8);
    GENERAL_NAMES *s1 = sans("dns:a.example,dns:b.example"), *s2 = sans("dns:b.example,dns:a.example");
    GENERAL_NAMES *s3 = sans("dns:a.example");
    /* its own profile, or one renew_from names; a record without one is "default" */
    assert_int_equal(profile_check_renewal(&p, "wifi-v2", a, s1, a, s2), PROFILE_OK);
    assert_int_equal(profile_check_renewal(&p, "wifi-v1", a, s1, a, s2), PROFILE_OK);
    assert_int_equal(profile_check_renewal(&p, "other", a, s1, a, s1), PROFILE_RENEWAL_PROFILE);
    assert_int_equal(profile_check_renewal(&p, "", a, s1, a, s1), PROFILE_RENEWAL_PROFILE);
    profile d;
    parse_ok("name = default\n", &d);
    assert_int_equal(profile_check_renewal(&d, "", a, NULL, a, NULL), PROFILE_OK);
    /* subject and SANs as the old certificate's, unless renew_may_change */
    assert_int_equal(profile_check_renewal(&d, "default", a, NULL, b, NULL), PROFILE_RENEWAL_SUBJECT);
    assert_int_equal(profile_check_renewal(&d, "default", a, s1, a, s3), PROFILE_RENEWAL_SAN);
    assert_int_equal(profile_check_renewal(&d, "default", a, NULL, a, s3), PROFILE_RENEWAL_SAN);
    assert_int_equal(profile_check_renewal(&d, "default", a, s3, a, NULL), PROFILE_RENEWAL_SAN);
    assert_int_equal(profile_check_renewal(&p, "wifi-v2", a, s1, a, s3), PROFILE_OK);
    assert_int_equal(profile_check_renewal(&p, "wifi-v2", a, s1, b, s1), PROFILE_RENEWAL_SUBJECT);
    /* an "override" source is not compared (the old certificate's is kept) */
    parse_ok("name = default\nchallenge = onetime\nsubject_source = override\nsan_source = override\n",
             &d);
    assert_int_equal(profile_check_renewal(&d, "default", a, s1, b, s3), PROFILE_OK);
    assert_int_equal(reject_failinfo(issue_profile_reject(PROFILE_RENEWAL_PROFILE)),
                     SCEP_FAIL_BADREQUEST);
    assert_string_equal(profile_result_diag(PROFILE_RENEWAL_SUBJECT), "renewal_subject");
    X509_NAME_free(a);
    X509_NAME_free(b);
    GENERAL_NAMES_free(s1);
    GENERAL_NAMES_free(s2);
    GENERAL_NAMES_free(s3);
}

static void test_select(void **state)
{
    (void)state;
    profile ps[4];
    parse_ok("template = signature\n", &ps[0]);
    snprintf(ps[0].name, sizeof(ps[0].name), "sig");
    parse_ok("template = encryption\n", &ps[1]);
    snprintf(ps[1].name, sizeof(ps[1].name), "enc");
    parse_ok("", &ps[2]);
    snprintf(ps[2].name, sizeof(ps[2].name), "wifi");
    parse_ok("", &ps[3]);
    snprintf(ps[3].name, sizeof(ps[3].name), "default");
    assert_ptr_equal(profile_select_for_key_usage(ps, 4, PROFILE_KU_DIGITAL_SIGNATURE), &ps[0]);
    assert_ptr_equal(profile_select_for_key_usage(ps, 4, PROFILE_KU_NON_REPUDIATION), &ps[0]);
    assert_ptr_equal(profile_select_for_key_usage(ps, 4, PROFILE_KU_KEY_ENCIPHERMENT), &ps[1]);
    assert_ptr_equal(profile_select_for_key_usage(ps, 4, PROFILE_KU_DIGITAL_SIGNATURE |
                                                  PROFILE_KU_KEY_ENCIPHERMENT), &ps[3]);
    assert_ptr_equal(profile_select_for_key_usage(ps, 4, 0), &ps[3]);
    /* no "default": the first general profile */
    assert_ptr_equal(profile_select_for_key_usage(ps, 3, 0), &ps[2]);
    /* no encryption profile: fall back to the general one */
    assert_ptr_equal(profile_select_for_key_usage(ps + 2, 2, PROFILE_KU_KEY_ENCIPHERMENT), &ps[3]);
    assert_null(profile_select_for_key_usage(ps, 2, 0));
    assert_null(profile_select_for_key_usage(ps, 0, 0));
}

static X509 *new_cert(EVP_PKEY *k, const char *cn)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(K.ca));
    X509_set_pubkey(x, k);
    return x;
}

static int ext_crit(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

static void test_add_extensions_default(void **state)
{
    (void)state;
    profile p;
    parse_ok("", &p);
    GENERAL_NAMES *g = sans("dns:dev.example,upn:dev@corp");
    X509 *x = new_cert(K.rsa2048, "dev");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.rsa2048, g), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(ext_crit(x, NID_basic_constraints), 1);
    assert_int_equal(X509_check_ca(x), 0);
    assert_int_equal(ext_crit(x, NID_key_usage), 1);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    assert_int_equal(ext_crit(x, NID_subject_alt_name), 0);
    assert_int_equal(ext_crit(x, NID_certificate_policies), -1);
    assert_non_null(X509_get0_subject_key_id(x));
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
    assert_non_null(akid);
    unsigned char md[20];
    unsigned int mdlen;
    X509_pubkey_digest(K.ca, EVP_sha1(), md, &mdlen);   /* CA without SKI: method 1 */
    assert_memory_equal(akid->data, md, 20);
    X509_free(x);

    /* EC: no keyEncipherment; empty subject: SAN critical */
    x = new_cert(K.ec256, NULL);
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.ec256, g), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_crit(x, NID_subject_alt_name), 1);
    X509_free(x);
    /* no SAN: no extension */
    x = new_cert(K.ec256, "x");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.ec256, NULL), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(ext_crit(x, NID_subject_alt_name), -1);
    X509_free(x);
    GENERAL_NAMES_free(g);
}

static void test_add_extensions_profiles(void **state)
{
    (void)state;
    profile p;
    X509 *x;
    GENERAL_NAMES *g;

    /* smart card logon: EKU + UPN, refused without UPN */
    parse_ok("eku = smartcardLogon clientAuth\npolicies = 1.3.6.1.4.1.99999.7\n", &p);
    g = sans("dns:only.dns");
    x = new_cert(K.rsa2048, "sc");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.rsa2048, g), PROFILE_SAN_UPN_REQUIRED);
    X509_free(x);
    GENERAL_NAMES_free(g);
    g = sans("upn:alice@corp.example");
    x = new_cert(K.rsa2048, "sc");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.rsa2048, g), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 2);
    char oid[64];
    OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, 0), 1);
    assert_string_equal(oid, "1.3.6.1.4.1.311.20.2.2");
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    CERTIFICATEPOLICIES *pol = X509_get_ext_d2i(x, NID_certificate_policies, NULL, NULL);
    assert_int_equal(sk_POLICYINFO_num(pol), 1);
    OBJ_obj2txt(oid, sizeof(oid), sk_POLICYINFO_value(pol, 0)->policyid, 1);
    assert_string_equal(oid, "1.3.6.1.4.1.99999.7");
    sk_POLICYINFO_pop_free(pol, POLICYINFO_free);
    X509_free(x);
    GENERAL_NAMES_free(g);

    /* vpn / email / server: EKU sets; eku = none: no EKU extension */
    parse_ok("eku = ipsecIKE serverAuth emailProtection\n", &p);
    x = new_cert(K.ec384, "v");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.ec384, NULL), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SMIME | 0);
    eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, 0), 1);
    assert_string_equal(oid, "1.3.6.1.5.5.7.3.17");
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    X509_free(x);
    parse_ok("eku = none\nkey_usage = digitalSignature nonRepudiation keyAgreement\n", &p);
    x = new_cert(K.ec256, "n");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.ec256, NULL), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(ext_crit(x, NID_ext_key_usage), -1);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION | KU_KEY_AGREEMENT);
    X509_free(x);
    x = new_cert(K.rsa2048, "n");      /* keyAgreement dropped for RSA */
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.rsa2048, NULL), PROFILE_OK);
    X509_sign(x, K.ca_key, EVP_sha256());   /* fills the extension cache */
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION);
    X509_free(x);
    /* SAN type the profile forbids */
    parse_ok("san_types = dns\n", &p);
    g = sans("email:a@b");
    x = new_cert(K.ec256, "n");
    assert_int_equal(profile_add_extensions(&p, x, K.ca, K.ec256, g), PROFILE_SAN_TYPE);
    X509_free(x);
    GENERAL_NAMES_free(g);
}

/* Single DES per profile: allow_des parsed, checked, and what the wiring asks of a set. */
static void test_cipher(void **state)
{
    (void)state;
    profile ps[3];
    profile_set *s = NULL;
    char err[256];
    parse_ok("allow_des = yes\n", &ps[0]);
    assert_int_equal(ps[0].allow_des, 1);
    parse_ok("challenge = onetime\nsubject_source = override\n", &ps[1]);
    assert_int_equal(ps[1].subject_source, PROFILE_SOURCE_OVERRIDE);
    assert_int_equal(profile_check_cipher(&ps[0], NID_des_cbc), PROFILE_OK);
    assert_int_equal(profile_check_cipher(&ps[1], NID_des_cbc), PROFILE_CIPHER_DES);
    assert_int_equal(profile_check_cipher(&ps[1], NID_aes_128_cbc), PROFILE_OK);
    assert_int_equal(profile_check_cipher(&ps[1], NID_des_ede3_cbc), PROFILE_OK);
    assert_int_equal(issue_profile_reject(PROFILE_CIPHER_DES), REJ_CIPHER);
    assert_int_equal(reject_failinfo(REJ_CIPHER), SCEP_FAIL_BADALG);
    assert_string_equal(profile_result_diag(PROFILE_CIPHER_DES), "profile_des");

    /* legacy allows DES, default does not: the default path ("" / NULL) is default's. */
    parse_ok("name = legacy\nallow_des = yes\n", &ps[0]);
    parse_ok("name = default\n", &ps[1]);
    parse_ok("name = sig\ntemplate = signature\n", &ps[2]);
    assert_int_equal(profile_set_from(ps, 3, &s, err, sizeof(err)), 0);
    assert_int_equal(profile_set_allows_des(s), 1);
    assert_int_equal(profile_set_allows_des_for(s, "legacy"), 1);
    assert_int_equal(profile_set_allows_des_for(s, "default"), 0);
    assert_int_equal(profile_set_allows_des_for(s, "sig"), 0);
    assert_int_equal(profile_set_allows_des_for(s, ""), 0);
    assert_int_equal(profile_set_allows_des_for(s, NULL), 0);
    assert_int_equal(profile_set_allows_des_for(s, "nosuch"), 0);
    profile_set_destroy(s);
    /* Without a "default" the default path is the first general profile: legacy here. */
    assert_int_equal(profile_set_from(ps, 1, &s, err, sizeof(err)), 0);
    assert_int_equal(profile_set_allows_des_for(s, ""), 1);
    profile_set_destroy(s);
    assert_int_equal(profile_set_from(&ps[1], 2, &s, err, sizeof(err)), 0);
    assert_int_equal(profile_set_allows_des(s), 0);
    profile_set_destroy(s);
}

static void test_result_tables(void **state)
{
    (void)state;
    assert_string_equal(profile_result_diag(PROFILE_OK), "ok");
    /* failInfo and text are the REJ_ row's (engine/scep/reject.h) */
    assert_int_equal(reject_failinfo(issue_profile_reject(PROFILE_HASH)), SCEP_FAIL_BADALG);
    assert_int_equal(reject_failinfo(issue_profile_reject(PROFILE_BEYOND_CA)), SCEP_FAIL_BADTIME);
    assert_int_equal(reject_failinfo(issue_profile_reject(PROFILE_SAN_UPN_REQUIRED)),
                     SCEP_FAIL_BADREQUEST);
    assert_string_equal(profile_result_diag(PROFILE_SAN_UPN_REQUIRED), "profile_upn_required");
    assert_string_equal(profile_result_diag(PROFILE_KEY_SIZE), "profile_key_size");
    assert_string_equal(profile_result_diag(-1), "unknown");
    assert_string_equal(profile_result_diag(PROFILE__COUNT), "unknown");
    for (int i = 0; i < PROFILE__COUNT; i++)
        for (int j = i + 1; j < PROFILE__COUNT; j++)
            assert_string_not_equal(profile_result_diag(i), profile_result_diag(j));
}

/* The shipped example profiles all parse and keep their promises. */
static void test_shipped_profiles(void **state)
{
    (void)state;
    const char *src = getenv("SCEPD_SRC");
    char dir[1024], err[512];
    profile_set *s = NULL;
    size_t n;
    if (src == NULL)
        skip();
    snprintf(dir, sizeof(dir), "%s/conf/profiles", src);
    if (profile_set_load_dir(dir, &s, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    profile_set_items(s, &n);
    assert_true(n >= 8);
    const profile *sc = profile_set_find(s, "smartcard", 9);
    assert_non_null(sc);
    assert_true(sc->smartcard_logon);
    assert_int_equal(profile_set_find(s, "manual", 6)->approval, PROFILE_APPROVAL_MANUAL);
    assert_int_equal(profile_set_find(s, "signature", 9)->template_class, PROFILE_TEMPLATE_SIGNATURE);
    assert_int_equal(profile_set_find(s, "encryption", 10)->template_class, PROFILE_TEMPLATE_ENCRYPTION);
    const profile *all = profile_set_items(s, &n);
    assert_ptr_equal(profile_select_for_key_usage(all, n, 0), profile_set_find(s, "default", 7));
    /* Single DES: only the explicitly named legacy profile, never the default path. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(all[i].allow_des, strcmp(all[i].name, "legacy") == 0);
    assert_non_null(profile_set_find(s, "legacy", 6));
    assert_int_equal(profile_set_allows_des_for(s, ""), 0);
    profile_set_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_dir),
        cmocka_unit_test(test_check_key),
        cmocka_unit_test(test_check_hash),
        cmocka_unit_test(test_check_san),
        cmocka_unit_test(test_check_subject),
        cmocka_unit_test(test_validity),
        cmocka_unit_test(test_requested),
        cmocka_unit_test(test_renewal),
        cmocka_unit_test(test_renewal_binding),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_add_extensions_default),
        cmocka_unit_test(test_add_extensions_profiles),
        cmocka_unit_test(test_cipher),
        cmocka_unit_test(test_result_tables),
        cmocka_unit_test(test_shipped_profiles),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
