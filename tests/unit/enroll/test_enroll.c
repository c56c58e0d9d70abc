/* Unit tests for engine/enroll: enroll_process driven with jobs the way a crypto worker runs
 * them (engine/server/app.c), against a real LMDB store in a temporary directory, CA and RA
 * keys from PEM files loaded by ca_load (file-key mode), the real issuer, and pkiMessages built
 * by the project's SCEP client library. Every answer is decoded and checked as a client would
 * (scepc_parse_certrep: signer, signature, nonces, transactionID, status, failInfo), and every
 * refusal is tied to the one audit line its transaction produced (event, diag, failinfo, txid).
 *
 * Each refusal is asserted with EXPECT_REFUSAL(outcome, REJ_x, "diag_code", SCEP_FAIL_x): the
 * diag code is spelled literally so a coverage check can grep which diagnostics have a wire
 * test, and the macro checks the literal against the rejection table too.
 *
 * A job that returns JOB_COMMIT is committed here with store_put_sync, as the store writer
 * would before the app sends the reply; a put the store refuses (STORE_CONFLICT, STORE_DUP_TXID)
 * is handed back to enroll_process, as commit_done in engine/server/commit.c does.
 *
 * Besides the fixture's issuer (the built-in "default" profile, as scepd without a profiles
 * directory), the tests use: an issuer with profiles parsed from text by profile_parse (the
 * conf/profiles/ syntax), one created without a challenge, and an issuer on a CA certificate
 * that has expired (same key and name, so the RA and the client's view stay the same). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "client/scep_client.h"
#include "engine/common/audit.h"
#include "engine/common/config.h"
#include "engine/enroll/enroll.h"
#include "engine/enroll/pending.h"
#include "engine/pki/ca.h"
#include "engine/pki/crl.h"
#include "engine/policy/challenge.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/scep/reject.h"
#include "engine/store/store.h"

#define CHALLENGE "s3cret-enroll"
#define PEER "192.0.2.7:40000"
#define NKEYS 12

static struct fixture {
    char dir[64];
    char audit_path[128];
    off_t audit_off;           /* audit bytes already consumed by the tests */
    config cfg;
    ca_set *ca;
    issuer *is;
    store *st;
    store_reader *reader;
    audit *au;
    enroll_ctx ectx;
    scepc_ctx *cl;
    scepc_caset *caset;        /* RA + CA, as GetCACert gives them */
    EVP_PKEY *keys[NKEYS];     /* RSA client keys, one or two per test */
    X509 *ra_cert;             /* the fixture's own copies, for OpenSSL-side checks */
    enroll_ctx base;           /* what every test starts from (reset_ctx) */
    char url_profile[64];      /* the profile the URL names ("" : /scep) */
    issuer *pis;               /* the profiles of PROFILES below */
    issuer *nochal;            /* built-in profile, no challenge configured */
    config old_cfg;            /* ca_cert = an expired certificate of the same CA key */
    ca_set *old_ca;
    issuer *old_is;
} F;

/* Profiles in the syntax of conf/profiles/<name>.conf, one rule each (docs/profiles.md). The
 * static ones take the main challenge (CHALLENGE). */
static const struct { const char *name, *text; } PROFILES[] = {
    { "default",       "[profile]\nrenewal_threshold_percent = 100\n" },
    { "onetime",       "[profile]\nchallenge = onetime\n" },
    { "onetime-other", "[profile]\nchallenge = onetime\n" },
    { "manual",        "[profile]\napproval = manual\n" },
    { "ec-encipher",   "[profile]\nkey_usage = keyEncipherment, dataEncipherment\n" },
    { "smartcard",     "[profile]\neku = smartcardLogon, clientAuth\nsan_types = upn, email\n" },
    { "short-subject", "[profile]\nsubject_max_length = 12\n" },
    { "printable",     "[profile]\nsubject_chars = printable\n" },
    { "refuse",        "[profile]\nvalidity_days = 36500\nbeyond_ca = refuse\n" },
    { "renew20",       "[profile]\nrenewal_threshold_percent = 20\n" },
    { "lane-a",        "[profile]\nrenewal_threshold_percent = 100\n" },
    { "lane-b",        "[profile]\nrenewal_threshold_percent = 100\nrenew_from = lane-a\n" },
    { "lane-c",        "[profile]\nrenewal_threshold_percent = 100\n" },
    { "lane-change",   "[profile]\nrenewal_threshold_percent = 100\nrenew_from = lane-a\n"
                       "renew_may_change = subject, san\n" },
    { "manual-renew",  "[profile]\napproval = manual\napprove_renewals = no\n"
                       "renewal_threshold_percent = 100\nrenew_from = lane-a\n" },
    { "manual-auto",   "[profile]\napproval = manual\nrenewal_threshold_percent = 100\n"
                       "renew_from = lane-a\n" },
    { "manual-ot",     "[profile]\napproval = manual\nchallenge = onetime\n" },
};
#define NPROFILES (sizeof(PROFILES) / sizeof(PROFILES[0]))

/* ------------------------------------------------------------------ certificates */

static X509_NAME *name_of(const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    assert_non_null(n);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
                                                -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8,
                                                (const unsigned char *)"enroll-test", -1, -1, 0), 1);
    return n;
}

static void add_ext(X509 *x, X509 *signer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, signer != NULL ? signer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, signed by signer_key (signer NULL: self-signed). serial NULL: 16
 * random bytes (positive). Validity [now + nb_off, now + na_off]. ku may be NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *signer, EVP_PKEY *signer_key,
                       const uint8_t *serial, size_t serial_len, long nb_off, long na_off,
                       int is_ca, const char *ku)
{
    uint8_t rnd[16];
    X509 *x = X509_new();
    X509_NAME *n = name_of(cn);
    assert_non_null(x);
    if (serial == NULL) {
        assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
        rnd[0] = (uint8_t)((rnd[0] & 0x7f) | 0x10);
        serial = rnd;
        serial_len = sizeof(rnd);
    }
    BIGNUM *bn = BN_bin2bn(serial, (int)serial_len, NULL);
    assert_non_null(bn);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
    BN_free(bn);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, signer != NULL ? X509_get_subject_name(signer) : n), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), nb_off));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), na_off));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    add_ext(x, signer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (ku != NULL)
        add_ext(x, signer, NID_key_usage, ku);
    add_ext(x, signer, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(x, signer_key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

static void write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert != NULL)
        assert_int_equal(PEM_write_X509(f, cert), 1);
    else
        assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------ fixture */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

/* Makes the CA (RSA, self-signed) and the RA (RSA, issued by the CA, digitalSignature +
 * keyEncipherment) as PEM files the way scripts/init-state.sh KEYS=file lays them out, and
 * loads them with ca_load, as scepd does at start. */
static int group_setup(void **state)
{
    char err[256], path[160];
    (void)state;
    memset(&F, 0, sizeof(F));
    snprintf(F.dir, sizeof(F.dir), "/tmp/test_enroll.XXXXXX");
    assert_non_null(mkdtemp(F.dir));
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.cl), SCEPC_OK);

    EVP_PKEY *ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ra_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(ca_key);
    assert_non_null(ra_key);
    X509 *ca_cert = make_cert(ca_key, "Enroll Test CA", NULL, ca_key, NULL, 0, -3600,
                              10L * 365 * 86400, 1, "critical,keyCertSign,cRLSign");
    F.ra_cert = make_cert(ra_key, "Enroll Test RA", ca_cert, ca_key, NULL, 0, -3600,
                          5L * 365 * 86400, 0, "critical,digitalSignature,keyEncipherment");

    /* The same CA (key and name) with a certificate that expired yesterday. */
    X509 *expired_ca = make_cert(ca_key, "Enroll Test CA", NULL, ca_key, NULL, 0, -30L * 86400,
                             -86400, 1, "critical,keyCertSign,cRLSign");

    config_defaults(&F.cfg);
    F.cfg.key_mode = CONFIG_KEYS_FILE;
    snprintf(F.cfg.ca_cert, sizeof(F.cfg.ca_cert), "%s/ca.pem", F.dir);
    snprintf(F.cfg.ra_cert, sizeof(F.cfg.ra_cert), "%s/ra.pem", F.dir);
    snprintf(F.cfg.ca_key_file, sizeof(F.cfg.ca_key_file), "%s/ca.key", F.dir);
    snprintf(F.cfg.ra_key_file, sizeof(F.cfg.ra_key_file), "%s/ra.key", F.dir);
    snprintf(F.cfg.store_path, sizeof(F.cfg.store_path), "%s/store", F.dir);
    snprintf(F.cfg.state_dir, sizeof(F.cfg.state_dir), "%s", F.dir);
    F.cfg.validity_days = 365;
    F.cfg.allow_sha1_messages = 0;
    write_pem(F.cfg.ca_cert, ca_cert, NULL);
    write_pem(F.cfg.ra_cert, F.ra_cert, NULL);
    write_pem(F.cfg.ca_key_file, NULL, ca_key);
    write_pem(F.cfg.ra_key_file, NULL, ra_key);
    F.old_cfg = F.cfg;
    snprintf(F.old_cfg.ca_cert, sizeof(F.old_cfg.ca_cert), "%s/ca-expired.pem", F.dir);
    write_pem(F.old_cfg.ca_cert, expired_ca, NULL);
    X509_free(expired_ca);
    X509_free(ca_cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ra_key);

    if (ca_load(&F.cfg, NULL, &F.ca, err, sizeof(err)) != 0) {
        print_error("ca_load: %s\n", err);
        return -1;
    }
    assert_int_equal(F.ca->has_ra, 1);
    assert_int_equal(issuer_create(&F.cfg, F.ca, CHALLENGE, &F.is), 0);
    assert_int_equal(store_open(F.cfg.store_path, 0, &F.st), 0);
    assert_int_equal(store_reader_create(F.st, &F.reader), 0);
    snprintf(F.audit_path, sizeof(F.audit_path), "%s/audit.log", F.dir);
    assert_int_equal(audit_open(F.audit_path, &F.au), 0);
    F.base = (enroll_ctx){ &F.cfg, F.ca, F.is, F.au, F.reader, NULL, NULL, NULL };
    F.ectx = F.base;

    profile profs[NPROFILES];
    profile_set *set = NULL;
    for (size_t i = 0; i < NPROFILES; i++) {
        if (profile_parse(PROFILES[i].text, strlen(PROFILES[i].text), PROFILES[i].name,
                          PROFILES[i].name, NULL, &profs[i], err, sizeof(err)) != 0) {
            print_error("profile %s: %s\n", PROFILES[i].name, err);
            return -1;
        }
    }
    assert_int_equal(profile_set_from(profs, NPROFILES, &set, err, sizeof(err)), 0);
    assert_int_equal(issuer_create(&F.cfg, F.ca, CHALLENGE, &F.pis), 0);
    assert_int_equal(issuer_set_profiles(F.pis, set, err, sizeof(err)), 0);
    assert_int_equal(issuer_create(&F.cfg, F.ca, "", &F.nochal), 0);
    if (ca_load(&F.old_cfg, NULL, &F.old_ca, err, sizeof(err)) != 0) {
        print_error("ca_load (expired CA): %s\n", err);
        return -1;
    }
    assert_true(F.old_ca->ca_not_after < (int64_t)time(NULL));
    assert_int_equal(issuer_create(&F.old_cfg, F.old_ca, CHALLENGE, &F.old_is), 0);

    STACK_OF(X509) *certs = sk_X509_new_null();
    assert_non_null(certs);
    assert_true(sk_X509_push(certs, F.ra_cert) > 0);
    assert_true(sk_X509_push(certs, F.ca->ca_cert) > 0);
    assert_int_equal(scepc_caset_from_certs(certs, &F.caset), SCEPC_OK);
    sk_X509_free(certs);
    assert_ptr_equal(scepc_caset_recipient(F.caset), F.ra_cert);

    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(scepc_keygen(F.cl, "rsa:2048", &F.keys[i]), SCEPC_OK);
    snprintf(path, sizeof(path), "%s/ca.pem", F.dir);
    assert_int_equal(access(path, R_OK), 0);
    return 0;
}

/* Each test starts with the fixture's CA and issuer and the /scep path. */
static int reset_ctx(void **state)
{
    (void)state;
    F.ectx = F.base;
    F.url_profile[0] = '\0';
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++)
        EVP_PKEY_free(F.keys[i]);
    scepc_caset_destroy(F.caset);
    scepc_ctx_destroy(F.cl);
    store_reader_destroy(F.reader);
    store_close(F.st);
    audit_close(F.au);
    issuer_destroy(F.is);
    issuer_destroy(F.pis);
    issuer_destroy(F.nochal);
    issuer_destroy(F.old_is);
    ca_free(F.old_ca);
    ca_free(F.ca);
    X509_free(F.ra_cert);
    nftw(F.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ------------------------------------------------------------------ audit */

/* Everything the audit log gained since the last call (NUL-terminated, at most cap - 1). */
static size_t audit_take(char *buf, size_t cap)
{
    int fd = open(F.audit_path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, buf, cap - 1, F.audit_off);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    F.audit_off += n;
    return (size_t)n;
}

/* The string value of "key" in one JSON audit line (no escapes in what the tests look for),
 * copied to out; "" when absent. */
static const char *audit_str(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(line, pat);
    out[0] = '\0';
    if (p != NULL) {
        p += strlen(pat);
        const char *e = strchr(p, '"');
        assert_non_null(e);
        size_t n = (size_t)(e - p) < cap - 1 ? (size_t)(e - p) : cap - 1;
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

/* The integer value of "key", or -1 when absent. */
static long audit_int(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p != NULL ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------------ driving enroll */

typedef struct outcome {
    job *j;
    int next;                  /* enum job_next */
    int parsed;                /* res holds a decoded CertRep */
    scepc_result res;
    scepc_txn txn;
    X509 *signer;              /* borrowed, for decoding a later pass's reply */
    EVP_PKEY *signer_key;
    const EVP_PKEY *subject_key;
    char audit[8192];          /* the audit lines this pass wrote */
    int audit_lines;
} outcome;

/* Frees what the job owns, as app_job_release does once the reply is sent. */
static void job_release(job *j)
{
    job_free(j);
}

static void outcome_clear(outcome *o)
{
    scepc_result_clear(&o->res);
    job_release(o->j);
    memset(o, 0, sizeof(*o));
}

/* One worker pass over o's job (as the worker of app.c runs it, and again for a job the
 * writer sends back); the reply is decoded when it is a pkiMessage. */
static void pass(outcome *o)
{
    job *j = o->j;
    scepc_result_clear(&o->res);
    memset(&o->res, 0, sizeof(o->res));
    o->parsed = 0;
    o->next = enroll_process(&F.ectx, j);
    audit_take(o->audit, sizeof(o->audit));
    o->audit_lines = count_lines(o->audit);
    if (j->reply.resp.status == 200) {
        assert_string_equal(j->reply.resp.content_type, "application/x-pki-message");
        scepc_expect exp = { &o->txn, o->signer, o->signer_key, o->subject_key };
        int rc = scepc_parse_certrep(F.cl, j->reply.resp.body, j->reply.resp.body_len, F.caset,
                                     &exp, &o->res);
        if (rc != SCEPC_OK)
            fail_msg("CertRep does not parse: %s", scepc_errname(rc));
        o->parsed = 1;
    }
}

/* The worker pass over msg (ownership taken), profile from the URL (F.url_profile). */
static void run_job(outcome *o, uint8_t *msg, size_t len, X509 *signer, EVP_PKEY *signer_key,
                    const EVP_PKEY *subject_key)
{
    char skip[8192];
    audit_take(skip, sizeof(skip));      /* anything earlier belongs to someone else */
    job *j = calloc(1, sizeof(*j));
    assert_non_null(j);
    j->kind = JOB_PKIOPERATION;
    snprintf(j->peer, sizeof(j->peer), "%s", PEER);
    snprintf(j->profile, sizeof(j->profile), "%s", F.url_profile);
    j->msg = msg;
    j->msg_len = len;
    o->j = j;
    o->signer = signer;
    o->signer_key = signer_key;
    o->subject_key = subject_key;
    pass(o);
}

/* What commit_done does with a put the store refused without writing: the job goes back to
 * a worker. */
static void pass_again(outcome *o)
{
    o->j->attempts++;
    pass(o);
}

/* Builds the pkiMessage of p with the client library and runs it. */
static void send_msg(outcome *o, const scepc_msg_params *p, const EVP_PKEY *subject_key)
{
    uint8_t *der = NULL, *copy;
    size_t len = 0;
    memset(o, 0, sizeof(*o));
    assert_int_equal(scepc_build_pkimessage(F.cl, p, &der, &len, &o->txn), SCEPC_OK);
    copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, der, len);
    scepc_free(der);
    run_job(o, copy, len, p->signer_cert, p->signer_key, subject_key);
}

/* A refusal: FAILURE with the table's failInfo and text, no commit, and exactly one audit
 * line for this transaction carrying the same event, diag and failinfo. */
#define EXPECT_REFUSAL(o, rej, diag, failinfo) \
    expect_refusal((o), (rej), (diag), (failinfo), __LINE__)

static void expect_refusal(const outcome *o, int rej, const char *diag, int failinfo, int line)
{
    char v[256];
    if (strcmp(reject_diag(rej), diag) != 0)
        fail_msg("line %d: REJ %d is \"%s\" in the table, test says \"%s\"", line, rej,
                 reject_diag(rej), diag);
    assert_int_equal(reject_failinfo(rej), failinfo);
    if (!o->parsed)
        fail_msg("line %d: %s: no CertRep (HTTP %d)", line, diag, o->j->reply.resp.status);
    if (o->res.status != SCEPC_FAILURE || o->next != JOB_DELIVER)
        fail_msg("line %d: %s: pkiStatus %s (%s), want FAILURE (deliver)", line, diag,
                 scepc_status_name(o->res.status), o->next == JOB_COMMIT ? "commit" : "deliver");
    if (o->res.failinfo != failinfo)
        fail_msg("line %d: %s: failInfo %s, want %s", line, diag,
                 scepc_failinfo_name(o->res.failinfo), scepc_failinfo_name(failinfo));
    assert_non_null(o->res.failinfo_text);
    assert_string_equal(o->res.failinfo_text, reject_text(rej));
    assert_null(o->res.cert);
    if (o->audit_lines != 1)
        fail_msg("line %d: %s: %d audit lines, want 1:\n%s", line, diag, o->audit_lines, o->audit);
    int event = rej >= REJ_CHAL_WRONG && rej <= REJ_CHAL_PROFILE ? AUDIT_CHALLENGE_REJECTED
                                                                  : AUDIT_REQUEST_REJECTED;
    if (audit_int(o->audit, "event") != event)
        fail_msg("line %d: %s: audit event %ld, want %d: %s", line, diag,
                 audit_int(o->audit, "event"), event, o->audit);
    if (strcmp(audit_str(o->audit, "diag", v, sizeof(v)), diag) != 0)
        fail_msg("line %d: audit diag \"%s\", want \"%s\": %s", line, v, diag, o->audit);
    if (audit_int(o->audit, "failinfo") != failinfo)
        fail_msg("line %d: %s: audit failinfo %ld, want %d", line, diag,
                 audit_int(o->audit, "failinfo"), failinfo);
    if (strcmp(audit_str(o->audit, "txid", v, sizeof(v)), o->txn.txid) != 0)
        fail_msg("line %d: %s: audit txid \"%s\", want \"%s\"", line, diag, v, o->txn.txid);
    assert_string_equal(audit_str(o->audit, "peer", v, sizeof(v)), PEER);
}

/* The request parameters most tests start from. */
static scepc_msg_params params(int type, X509 *signer, EVP_PKEY *signer_key, const char *txid)
{
    scepc_msg_params p;
    memset(&p, 0, sizeof(p));
    p.msgtype = type;
    p.signer_cert = signer;
    p.signer_key = signer_key;
    p.ca = F.caset;
    p.md = SCEPC_MD_SHA256;
    p.cipher = SCEPC_CIPHER_AES256;
    p.txid = txid;
    return p;
}

static X509_REQ *make_csr(EVP_PKEY *key, const char *cn, const char *challenge)
{
    X509_NAME *n = name_of(cn);
    X509_REQ *csr = NULL;
    assert_int_equal(scepc_build_csr(F.cl, key, n, challenge, NULL, 0, NULL, SCEPC_MD_SHA256,
                                     &csr), SCEPC_OK);
    X509_NAME_free(n);
    return csr;
}

static X509 *self_signed(EVP_PKEY *key, const char *cn)
{
    X509_NAME *n = name_of(cn);
    X509 *x = NULL;
    assert_int_equal(scepc_self_signed(F.cl, key, n, SCEPC_MD_SHA256, &x), SCEPC_OK);
    X509_NAME_free(n);
    return x;
}

/* What the store writer does with a JOB_COMMIT job. */
static void commit(outcome *o)
{
    assert_int_equal(o->next, JOB_COMMIT);
    o->j->put.next = NULL;
    assert_int_equal(store_put_sync(F.st, &o->j->put), 0);
    assert_int_equal(o->j->put.result, STORE_OK);
}

/* A PKCSReq by key for cn under txid: SUCCESS, committed. Returns the issued certificate. */
static X509 *issue_one(EVP_PKEY *key, const char *cn, const char *txid)
{
    outcome o;
    X509 *ss = self_signed(key, cn);
    X509_REQ *csr = make_csr(key, cn, CHALLENGE);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, txid);
    p.csr = csr;
    send_msg(&o, &p, key);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_non_null(o.res.cert);
    commit(&o);
    X509 *cert = X509_dup(o.res.cert);
    assert_non_null(cert);
    outcome_clear(&o);
    X509_REQ_free(csr);
    X509_free(ss);
    return cert;
}

static void revoke_cert(X509 *cert)
{
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_REVOKE;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    assert_non_null(bn);
    assert_int_equal(BN_bn2binpad(bn, p.rev.serial, STORE_SERIAL_LEN), STORE_SERIAL_LEN);
    BN_free(bn);
    p.rev.reason = 1;
    p.rev.revoked_at = (int64_t)time(NULL);
    assert_int_equal(store_put_sync(F.st, &p), 0);
    assert_int_equal(p.result, STORE_OK);
}

/* A RenewalReq for a new key, signed by signer/signer_key. */
static void renew(outcome *o, X509 *signer, EVP_PKEY *signer_key, EVP_PKEY *new_key,
                  const char *cn, const char *txid)
{
    X509_REQ *csr = make_csr(new_key, cn, NULL);
    scepc_msg_params p = params(SCEPC_MSG_RENEWALREQ, signer, signer_key, txid);
    p.csr = csr;
    send_msg(o, &p, new_key);
    X509_REQ_free(csr);
}

/* ------------------------------------------------------------------ tests */

/* A PKCSReq is answered SUCCESS with a certificate an independent verifier accepts: signed by
 * the CA, the CSR's key, CA:FALSE (critical); the put the writer commits is that
 * certificate. The same message again is answered from the store (REPLAYED), same cert. */
static void test_pkcsreq_success(void **state)
{
    (void)state;
    EVP_PKEY *key = F.keys[0];
    X509 *ss = self_signed(key, "device-ok");
    X509_REQ *csr = make_csr(key, "device-ok", CHALLENGE);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-success");
    p.csr = csr;
    outcome o;
    send_msg(&o, &p, key);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(o.res.failinfo, SCEPC_FAIL_NONE);
    assert_null(o.res.failinfo_text);
    assert_int_equal(o.next, JOB_COMMIT);
    assert_int_equal(o.audit_lines, 0);             /* the issue event waits for the commit */
    assert_int_equal(o.j->pki.audit_event, AUDIT_ISSUED);
    X509 *cert = o.res.cert;
    assert_non_null(cert);

    /* OpenSSL's own checks, not the project's */
    X509_STORE *trust = X509_STORE_new();
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(trust, F.ca->ca_cert), 1);
    assert_int_equal(X509_STORE_CTX_init(vctx, trust, cert, NULL), 1);
    if (X509_verify_cert(vctx) != 1)
        fail_msg("verify: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(trust);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(F.ca->ca_cert)), 0);
    assert_int_equal(X509_check_issued(F.ca->ca_cert, cert), X509_V_OK);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(csr)), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(bc->ca, 0);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_check_ca(cert), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_REQ_get_subject_name(csr)), 0);

    /* the put is this certificate, under this transaction */
    unsigned char *der = NULL;
    int dlen = i2d_X509(cert, &der);
    assert_true(dlen > 0);
    assert_int_equal(o.j->put.kind, STORE_PUT_CERT);
    assert_int_equal(o.j->put.cert.der_len, (size_t)dlen);
    assert_memory_equal(o.j->put.cert.der, der, (size_t)dlen);
    assert_int_equal(o.j->put.cert.txid_len, strlen("tx-success"));
    assert_memory_equal(o.j->put.cert.txid, "tx-success", strlen("tx-success"));
    commit(&o);
    ASN1_INTEGER *serial = ASN1_INTEGER_dup(X509_get0_serialNumber(cert));
    outcome_clear(&o);

    /* the same request again: answered from the store, nothing to commit */
    send_msg(&o, &p, key);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(o.next, JOB_DELIVER);
    assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(o.res.cert), serial), 0);
    unsigned char *der2 = NULL;
    assert_int_equal(i2d_X509(o.res.cert, &der2), dlen);
    assert_memory_equal(der2, der, (size_t)dlen);
    assert_int_equal(o.audit_lines, 1);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_REPLAYED);
    char v[160];
    assert_string_equal(audit_str(o.audit, "txid", v, sizeof(v)), "tx-success");
    outcome_clear(&o);
    OPENSSL_free(der);
    OPENSSL_free(der2);
    ASN1_INTEGER_free(serial);
    X509_REQ_free(csr);
    X509_free(ss);
}

/* A transactionID already used for another key, or the same key with another subject. */
static void test_txid_conflict(void **state)
{
    (void)state;
    X509 *c = issue_one(F.keys[1], "device-tx", "tx-conflict");
    outcome o;
    X509 *ss = self_signed(F.keys[2], "device-tx");
    X509_REQ *csr = make_csr(F.keys[2], "device-tx", CHALLENGE);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, F.keys[2], "tx-conflict");
    p.csr = csr;
    send_msg(&o, &p, F.keys[2]);
    EXPECT_REFUSAL(&o, REJ_TXID_CONFLICT, "txid_conflict", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(csr);
    X509_free(ss);

    ss = self_signed(F.keys[1], "device-tx-other");
    csr = make_csr(F.keys[1], "device-tx-other", CHALLENGE);
    p = params(SCEPC_MSG_PKCSREQ, ss, F.keys[1], "tx-conflict");
    p.csr = csr;
    send_msg(&o, &p, F.keys[1]);
    EXPECT_REFUSAL(&o, REJ_TXID_CONFLICT, "txid_conflict", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(csr);
    X509_free(ss);
    X509_free(c);
}

/* A renewal signed by a certificate we issued succeeds; once that certificate is revoked, the
 * next renewal it signs is refused. */
static void test_renewal_and_revoked(void **state)
{
    (void)state;
    X509 *old = issue_one(F.keys[3], "device-renew", "tx-renew-0");
    outcome o;
    renew(&o, old, F.keys[3], F.keys[4], "device-renew", "tx-renew-1");
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(o.res.cert), F.keys[4]), 1);
    assert_int_equal(o.j->pki.audit_event, AUDIT_RENEWED);
    commit(&o);
    outcome_clear(&o);

    revoke_cert(old);
    renew(&o, old, F.keys[3], F.keys[5], "device-renew", "tx-renew-2");
    EXPECT_REFUSAL(&o, REJ_RENEW_REVOKED, "renewal_revoked", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_free(old);
}

/* Signers the CA key made that the store does not vouch for: never stored, stored but a
 * different certificate under that serial, and a serial too long to be one of ours. */
static void test_renewal_unknown_cert(void **state)
{
    (void)state;
    EVP_PKEY *ca_key = F.ca->ca_key;
    outcome o;

    X509 *stranger = make_cert(F.keys[6], "device-stranger", F.ca->ca_cert, ca_key, NULL, 0,
                               -3600, 86400, 0, "critical,digitalSignature");
    assert_int_equal(ca_issued(F.ca, stranger), 1);       /* it is the CA's signature */
    renew(&o, stranger, F.keys[6], F.keys[7], "device-stranger", "tx-unknown-1");
    EXPECT_REFUSAL(&o, REJ_RENEW_UNKNOWN, "renewal_unknown_cert", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_free(stranger);

    X509 *stored = issue_one(F.keys[6], "device-twin", "tx-unknown-2");
    X509 *twin = X509_dup(stored);
    assert_non_null(twin);
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(twin), 2L * 86400));
    assert_true(X509_sign(twin, ca_key, EVP_sha256()) > 0);
    assert_int_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(twin), X509_get0_serialNumber(stored)), 0);
    assert_int_equal(ca_issued(F.ca, twin), 1);
    assert_true(X509_cmp(twin, stored) != 0);
    renew(&o, twin, F.keys[6], F.keys[7], "device-twin", "tx-unknown-3");
    EXPECT_REFUSAL(&o, REJ_RENEW_UNKNOWN, "renewal_unknown_cert", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    /* the stored one itself still renews: the refusal was about the copy */
    renew(&o, stored, F.keys[6], F.keys[7], "device-twin", "tx-unknown-4");
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    commit(&o);
    outcome_clear(&o);
    X509_free(twin);
    X509_free(stored);

    uint8_t long_serial[20];
    memset(long_serial, 0x5a, sizeof(long_serial));
    X509 *wide = make_cert(F.keys[6], "device-wide", F.ca->ca_cert, ca_key, long_serial,
                           sizeof(long_serial), -3600, 86400, 0, NULL);
    renew(&o, wide, F.keys[6], F.keys[7], "device-wide", "tx-unknown-5");
    EXPECT_REFUSAL(&o, REJ_RENEW_UNKNOWN, "renewal_unknown_cert", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_free(wide);
}

/* Signers made by the CA key whose validity does not cover now. */
static void test_renewal_expired(void **state)
{
    (void)state;
    outcome o;
    X509 *expired = make_cert(F.keys[8], "device-expired", F.ca->ca_cert, F.ca->ca_key, NULL, 0,
                              -10L * 86400, -86400, 0, NULL);
    renew(&o, expired, F.keys[8], F.keys[9], "device-expired", "tx-expired-1");
    EXPECT_REFUSAL(&o, REJ_RENEW_EXPIRED, "renewal_expired", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
    X509_free(expired);

    X509 *future = make_cert(F.keys[8], "device-future", F.ca->ca_cert, F.ca->ca_key, NULL, 0,
                             86400, 10L * 86400, 0, NULL);
    renew(&o, future, F.keys[8], F.keys[9], "device-future", "tx-expired-2");
    EXPECT_REFUSAL(&o, REJ_RENEW_EXPIRED, "renewal_expired", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
    X509_free(future);
}

/* A RenewalReq signed by something this CA did not issue, or by the CA certificate itself. */
static void test_renewal_signer(void **state)
{
    (void)state;
    outcome o;
    X509 *ss = self_signed(F.keys[8], "device-self");
    renew(&o, ss, F.keys[8], F.keys[9], "device-self", "tx-signer-1");
    EXPECT_REFUSAL(&o, REJ_RENEW_SIGNER, "renewal_signer", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_free(ss);

    renew(&o, F.ca->ca_cert, F.ca->ca_key, F.keys[9], "device-ca", "tx-signer-2");
    EXPECT_REFUSAL(&o, REJ_RENEW_SIGNER, "renewal_signer", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
}

/* CertPoll: the requester's key gets its certificate; another key, or a transaction never
 * seen, gets badCertId. */
static void test_certpoll(void **state)
{
    (void)state;
    X509 *issued = issue_one(F.keys[10], "device-poll", "tx-poll");
    outcome o;
    X509 *ss = self_signed(F.keys[10], "device-poll");
    X509_NAME *subj = name_of("device-poll");
    scepc_msg_params p = params(SCEPC_MSG_CERTPOLL, ss, F.keys[10], "tx-poll");
    p.subject = subj;
    send_msg(&o, &p, F.keys[10]);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(X509_cmp(o.res.cert, issued), 0);
    assert_int_equal(o.next, JOB_DELIVER);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_CERT_RETURNED);
    outcome_clear(&o);

    X509 *other = self_signed(F.keys[11], "device-poll");
    p = params(SCEPC_MSG_CERTPOLL, other, F.keys[11], "tx-poll");
    p.subject = subj;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_UNKNOWN_TXN, "unknown_transaction", SCEP_FAIL_BADCERTID);
    outcome_clear(&o);

    p = params(SCEPC_MSG_CERTPOLL, ss, F.keys[10], "tx-never-seen");
    p.subject = subj;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_UNKNOWN_TXN, "unknown_transaction", SCEP_FAIL_BADCERTID);
    outcome_clear(&o);
    X509_NAME_free(subj);
    X509_free(other);
    X509_free(ss);
    X509_free(issued);
}

/* GetCert by issuer and serial: ours is returned; an unknown serial or another issuer name is
 * badCertId. */
static void test_getcert(void **state)
{
    (void)state;
    X509 *issued = issue_one(F.keys[0], "device-getcert", "tx-getcert");
    X509 *ss = self_signed(F.keys[1], "someone");
    outcome o;
    scepc_msg_params p = params(SCEPC_MSG_GETCERT, ss, F.keys[1], "tx-getcert-q1");
    p.serial = X509_get0_serialNumber(issued);
    send_msg(&o, &p, NULL);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(X509_cmp(o.res.cert, issued), 0);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_CERT_RETURNED);
    outcome_clear(&o);

    ASN1_INTEGER *unknown = ASN1_INTEGER_new();
    assert_int_equal(ASN1_INTEGER_set_uint64(unknown, 0x1234567890abcdefULL), 1);
    p = params(SCEPC_MSG_GETCERT, ss, F.keys[1], "tx-getcert-q2");
    p.serial = unknown;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_UNKNOWN_CERT, "unknown_certificate", SCEP_FAIL_BADCERTID);
    outcome_clear(&o);

    X509_NAME *other_ca = name_of("Some Other CA");
    p = params(SCEPC_MSG_GETCERT, ss, F.keys[1], "tx-getcert-q3");
    p.serial = X509_get0_serialNumber(issued);
    p.issuer = other_ca;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_UNKNOWN_CERT, "unknown_certificate", SCEP_FAIL_BADCERTID);
    outcome_clear(&o);
    X509_NAME_free(other_ca);
    ASN1_INTEGER_free(unknown);
    X509_free(ss);
    X509_free(issued);
}

/* GetCRL before any CRL is published (a cache with nothing in it, and no cache), then with a
 * published CRL: the reply carries exactly that CRL. */
static void test_getcrl(void **state)
{
    (void)state;
    X509 *issued = issue_one(F.keys[2], "device-getcrl", "tx-getcrl");
    X509 *ss = self_signed(F.keys[3], "crl-reader");
    crl_cache *cache = NULL;
    outcome o;
    assert_int_equal(crl_cache_create(&cache), 0);

    F.ectx.crls = NULL;
    scepc_msg_params p = params(SCEPC_MSG_GETCRL, ss, F.keys[3], "tx-getcrl-q1");
    p.serial = X509_get0_serialNumber(issued);
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_NO_CRL, "no_crl", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    F.ectx.crls = cache;
    p.txid = "tx-getcrl-q2";
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_NO_CRL, "no_crl", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    crl_signer *signer = NULL;
    crl_builder *b = NULL;
    crl_snapshot *snap = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    int64_t now = (int64_t)time(NULL);
    assert_int_equal(crl_signer_create(F.ca->ca_key, F.ca->ca_cert, NULL, &signer), 0);
    assert_int_equal(crl_builder_create(0, &b), 0);
    assert_int_equal(crl_builder_sign(b, signer, 3, now, now + 3600, &der, &len), 0);
    assert_int_equal(crl_snapshot_create(der, len, 3, now, now + 3600, &snap), 0);
    crl_cache_set(cache, snap);
    p.txid = "tx-getcrl-q3";
    send_msg(&o, &p, NULL);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_non_null(o.res.crls);
    assert_int_equal(sk_X509_CRL_num(o.res.crls), 1);
    X509_CRL *crl = sk_X509_CRL_value(o.res.crls, 0);
    assert_int_equal(X509_CRL_verify(crl, F.ca->ca_pub), 1);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(F.ca->ca_cert)), 0);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_CRL_RETURNED);
    assert_non_null(strstr(o.audit, "crl_number=3"));
    outcome_clear(&o);

    F.ectx.crls = NULL;
    crl_builder_destroy(b);
    crl_signer_destroy(signer);
    crl_cache_destroy(cache);
    X509_free(ss);
    X509_free(issued);
}

/* internal_error: a store record that is there but does not decode (a transaction whose
 * certificate DER is garbage, written through the store API). */
static void test_internal_error(void **state)
{
    (void)state;
    EVP_PKEY *key = F.keys[4];
    X509 *ss = self_signed(key, "device-corrupt");
    static const uint8_t garbage[] = "this is not a certificate";
    const char *txid = "tx-corrupt";
    store_put put;
    memset(&put, 0, sizeof(put));
    put.kind = STORE_PUT_CERT;
    memset(put.cert.serial, 0x6c, STORE_SERIAL_LEN);
    put.cert.status = STORE_CERT_VALID;
    put.cert.not_before = (int64_t)time(NULL) - 60;
    put.cert.not_after = (int64_t)time(NULL) + 86400;
    assert_int_equal(issue_spki_hash(X509_get_X509_PUBKEY(ss), put.cert.key_hash), 0);
    put.cert.subject = "CN=device-corrupt";
    put.cert.subject_len = strlen(put.cert.subject);
    put.cert.txid = txid;
    put.cert.txid_len = strlen(txid);
    put.cert.der = garbage;
    put.cert.der_len = sizeof(garbage);
    assert_int_equal(store_put_sync(F.st, &put), 0);
    assert_int_equal(put.result, STORE_OK);

    outcome o;
    X509_NAME *subj = name_of("device-corrupt");
    scepc_msg_params p = params(SCEPC_MSG_CERTPOLL, ss, key, txid);
    p.subject = subj;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_INTERNAL, "internal_error", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_NAME_free(subj);
    X509_free(ss);
}

/* No padding oracle, on the wire: an envelope the RA key cannot open (encrypted to another
 * RSA recipient), one that opens to something that is not a CSR (a PKCSReq carrying an
 * IssuerAndSerialNumber) and a GetCert that opens to something that is not an
 * IssuerAndSerialNumber (a CSR) get byte-for-byte the same failInfo and text; only the audit
 * diagnostics tell them apart. */
static void test_padding_oracle(void **state)
{
    (void)state;
    EVP_PKEY *key = F.keys[5];
    X509 *ss = self_signed(key, "device-oracle");
    X509_REQ *csr = make_csr(key, "device-oracle", CHALLENGE);
    outcome o[3];

    /* another RA the client believes in: the envelope goes to its key */
    EVP_PKEY *fake_key = F.keys[11];
    X509 *fake_ra = make_cert(fake_key, "Fake RA", F.ca->ca_cert, F.ca->ca_key, NULL, 0, -3600,
                              86400, 0, "critical,digitalSignature,keyEncipherment");
    STACK_OF(X509) *certs = sk_X509_new_null();
    scepc_caset *fake = NULL;
    assert_true(sk_X509_push(certs, fake_ra) > 0);
    assert_true(sk_X509_push(certs, F.ca->ca_cert) > 0);
    assert_int_equal(scepc_caset_from_certs(certs, &fake), SCEPC_OK);
    sk_X509_free(certs);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-oracle-1");
    p.csr = csr;
    p.ca = fake;
    send_msg(&o[0], &p, NULL);
    EXPECT_REFUSAL(&o[0], REJ_DECRYPT, "decrypt_failed", SCEP_FAIL_BADMESSAGECHECK);

    p = params(SCEPC_MSG_GETCERT, ss, key, "tx-oracle-2");
    p.serial = X509_get0_serialNumber(ss);
    p.wire_msgtype = SCEPC_MSG_PKCSREQ;
    send_msg(&o[1], &p, NULL);
    EXPECT_REFUSAL(&o[1], REJ_BAD_CSR, "bad_csr", SCEP_FAIL_BADMESSAGECHECK);

    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-oracle-3");
    p.csr = csr;
    p.wire_msgtype = SCEPC_MSG_GETCERT;
    send_msg(&o[2], &p, NULL);
    EXPECT_REFUSAL(&o[2], REJ_BAD_QUERY, "bad_query", SCEP_FAIL_BADMESSAGECHECK);

    for (int i = 1; i < 3; i++) {
        assert_int_equal(o[i].res.failinfo, o[0].res.failinfo);
        assert_string_equal(o[i].res.failinfo_text, o[0].res.failinfo_text);
    }
    for (int i = 0; i < 3; i++)
        outcome_clear(&o[i]);
    scepc_caset_destroy(fake);
    X509_free(fake_ra);
    X509_REQ_free(csr);
    X509_free(ss);
}

/* Refusals of the message itself and of the request in it, each as a CertRep. */
static void test_message_refusals(void **state)
{
    (void)state;
    EVP_PKEY *key = F.keys[6];
    X509 *ss = self_signed(key, "device-msg");
    X509_REQ *csr = make_csr(key, "device-msg", CHALLENGE);
    outcome o;

    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-1");
    p.csr = csr;
    p.corrupt_signature = 1;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_BAD_SIGNATURE, "bad_signature", SCEP_FAIL_BADMESSAGECHECK);
    outcome_clear(&o);

    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-2");
    p.csr = csr;
    p.md = SCEPC_MD_SHA1;                         /* allow_sha1_messages = no */
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_SIG_DIGEST, "digest_not_allowed", SCEP_FAIL_BADALG);
    outcome_clear(&o);

    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-3");
    p.csr = csr;
    p.wire_msgtype = 99;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_UNKNOWN_TYPE, "unknown_message_type", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    X509_REQ *wrong = make_csr(key, "device-msg", "not-the-challenge");
    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-4");
    p.csr = wrong;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_CHALLENGE, "bad_challenge", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(wrong);

    /* proof of possession: the CSR's signature no longer matches its content */
    X509_REQ *nopop = X509_REQ_dup(csr);
    assert_non_null(nopop);
    const ASN1_BIT_STRING *sig = NULL;
    X509_REQ_get0_signature(nopop, &sig, NULL);
    assert_non_null(sig);
    ((ASN1_BIT_STRING *)sig)->data[10] ^= 0x01;
    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-5");
    p.csr = nopop;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_POP, "pop_failed", SCEP_FAIL_BADMESSAGECHECK);
    outcome_clear(&o);
    X509_REQ_free(nopop);

    /* a CSR asking for a CA certificate */
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
    assert_non_null(bc);
    assert_true(sk_X509_EXTENSION_push(exts, bc) > 0);
    X509_NAME *n = name_of("device-msg");
    X509_REQ *ca_csr = NULL;
    assert_int_equal(scepc_build_csr(F.cl, key, n, CHALLENGE, NULL, 0, exts, SCEPC_MD_SHA256,
                                     &ca_csr), SCEPC_OK);
    p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-msg-6");
    p.csr = ca_csr;
    send_msg(&o, &p, NULL);
    EXPECT_REFUSAL(&o, REJ_CA_REQUESTED, "ca_requested", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(ca_csr);
    X509_NAME_free(n);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);

    /* bytes that are no pkiMessage: HTTP 400, no CertRep, event 2001 */
    uint8_t *junk = malloc(16);
    assert_non_null(junk);
    memset(junk, 0x30, 16);
    memset(&o, 0, sizeof(o));
    run_job(&o, junk, 16, NULL, NULL, NULL);
    assert_false(o.parsed);
    assert_int_equal(o.next, JOB_DELIVER);
    assert_int_equal(o.j->reply.resp.status, 400);
    assert_int_equal(o.audit_lines, 1);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_HTTP_REJECTED);
    char v[64];
    assert_string_equal(audit_str(o.audit, "diag", v, sizeof(v)), "not_pkimessage");
    assert_int_equal(audit_int(o.audit, "http_status"), 400);
    outcome_clear(&o);

    X509_REQ_free(csr);
    X509_free(ss);
}

/* ------------------------------------------------------------------ profiles, challenges */

/* A CSR for key: subject CN=cn, O=enroll-test (cn NULL: an empty subject), challenge (NULL:
 * none), the subjectAltNames of sans ("dns:x", NULL-terminated; NULL: none), one extra
 * extension (may be NULL, freed here), signed with md. */
static X509_REQ *csr_ex(EVP_PKEY *key, const char *cn, const char *challenge,
                        const char *const *sans, X509_EXTENSION *extra, scepc_md md)
{
    X509_NAME *n = cn != NULL ? name_of(cn) : X509_NAME_new();
    scepc_san san[4];
    size_t nsans = 0;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_REQ *csr = NULL;
    assert_non_null(n);
    for (; sans != NULL && sans[nsans] != NULL; nsans++) {
        assert_true(nsans < 4);
        assert_int_equal(scepc_san_parse(sans[nsans], &san[nsans]), SCEPC_OK);
    }
    if (extra != NULL) {
        exts = sk_X509_EXTENSION_new_null();
        assert_non_null(exts);
        assert_true(sk_X509_EXTENSION_push(exts, extra) > 0);
    }
    assert_int_equal(scepc_build_csr(F.cl, key, n, challenge, san, nsans, exts, md, &csr),
                     SCEPC_OK);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(n);
    return csr;
}

/* A PKCSReq of csr by key (self-signed transient signer) under txid. */
static void pkcsreq(outcome *o, EVP_PKEY *key, const X509_REQ *csr, const char *txid)
{
    X509 *ss = self_signed(key, "device-signer");
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, txid);
    p.csr = csr;
    send_msg(o, &p, key);
    X509_free(ss);
}

/* pkcsreq with a CSR of csr_ex(key, cn, challenge, sans, NULL, SHA-256). */
static void enroll_as(outcome *o, EVP_PKEY *key, const char *cn, const char *challenge,
                      const char *const *sans, const char *txid)
{
    X509_REQ *csr = csr_ex(key, cn, challenge, sans, NULL, SCEPC_MD_SHA256);
    pkcsreq(o, key, csr, txid);
    X509_REQ_free(csr);
}

/* The refusal's audit line also carries the profile's finer diagnostic and the profile. */
static void expect_detail(const outcome *o, const char *detail, const char *prof)
{
    char v[128];
    if (detail != NULL && strcmp(audit_str(o->audit, "detail", v, sizeof(v)), detail) != 0)
        fail_msg("audit detail \"%s\", want \"%s\": %s", v, detail, o->audit);
    if (prof != NULL && strcmp(audit_str(o->audit, "profile", v, sizeof(v)), prof) != 0)
        fail_msg("audit profile \"%s\", want \"%s\": %s", v, prof, o->audit);
}

/* SUCCESS with a certificate for the requester's key (scepc_parse_certrep checks the key),
 * waiting for its commit. */
static void expect_success(const outcome *o)
{
    if (!o->parsed || o->res.status != SCEPC_SUCCESS)
        fail_msg("want SUCCESS, got %s %s: %s",
                 o->parsed ? scepc_status_name(o->res.status) : "no CertRep",
                 o->parsed ? scepc_failinfo_name(o->res.failinfo) : "", o->audit);
    assert_non_null(o->res.cert);
    assert_int_equal(o->next, JOB_COMMIT);
}

/* A privateKeyUsagePeriod extension (how a client asks for a shorter validity) whose
 * notAfter lies off seconds from now. */
static X509_EXTENSION *usage_period(long off)
{
    PKEY_USAGE_PERIOD *pup = PKEY_USAGE_PERIOD_new();
    assert_non_null(pup);
    pup->notAfter = ASN1_GENERALIZEDTIME_adj(NULL, time(NULL), 0, off);
    assert_non_null(pup->notAfter);
    X509_EXTENSION *e = X509V3_EXT_i2d(NID_private_key_usage_period, 0, pup);
    assert_non_null(e);
    PKEY_USAGE_PERIOD_free(pup);
    return e;
}

/* Refusals of the request itself under the built-in profile (the defaults of profile.h: RSA
 * 2048..4096, P-256/P-384, SHA-256/384/512, SANs DNS/email/URI/UPN, a subject or a SAN), each
 * audited with the profile's finer diagnostic. */
static void test_request_rules(void **state)
{
    (void)state;
    outcome o;

    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(small);
    enroll_as(&o, small, "device-small", CHALLENGE, NULL, "tx-rule-1");
    EXPECT_REFUSAL(&o, REJ_KEY_TYPE, "key_not_allowed", SCEP_FAIL_BADALG);
    expect_detail(&o, "profile_key_size", "default");
    outcome_clear(&o);
    EVP_PKEY_free(small);

    EVP_PKEY *p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    assert_non_null(p521);
    enroll_as(&o, p521, "device-p521", CHALLENGE, NULL, "tx-rule-2");
    EXPECT_REFUSAL(&o, REJ_KEY_TYPE, "key_not_allowed", SCEP_FAIL_BADALG);
    expect_detail(&o, "profile_key_curve", "default");
    outcome_clear(&o);
    EVP_PKEY_free(p521);

    EVP_PKEY *key = F.keys[7];
    X509_REQ *csr = csr_ex(key, "device-sha1", CHALLENGE, NULL, NULL, SCEPC_MD_SHA1);
    pkcsreq(&o, key, csr, "tx-rule-3");
    EXPECT_REFUSAL(&o, REJ_CSR_SIG_ALG, "csr_alg_not_allowed", SCEP_FAIL_BADALG);
    expect_detail(&o, "profile_hash", "default");
    outcome_clear(&o);
    X509_REQ_free(csr);

    static const char *const ip[] = { "ip:192.0.2.10", NULL };
    enroll_as(&o, key, "device-ip", CHALLENGE, ip, "tx-rule-4");
    EXPECT_REFUSAL(&o, REJ_SAN_TYPE, "san_not_allowed", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, "profile_san_type", "default");
    outcome_clear(&o);

    enroll_as(&o, key, NULL, CHALLENGE, NULL, "tx-rule-5");
    EXPECT_REFUSAL(&o, REJ_EMPTY_SUBJECT, "empty_subject", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, "profile_subject_empty", "default");
    outcome_clear(&o);
    /* an empty subject with a SAN is a request */
    static const char *const dns[] = { "dns:nameless.example", NULL };
    enroll_as(&o, key, NULL, CHALLENGE, dns, "tx-rule-6");
    expect_success(&o);
    outcome_clear(&o);

    /* a requested notAfter in the past, and a privateKeyUsagePeriod that does not decode */
    csr = csr_ex(key, "device-validity", CHALLENGE, NULL, usage_period(-3600), SCEPC_MD_SHA256);
    pkcsreq(&o, key, csr, "tx-rule-7");
    EXPECT_REFUSAL(&o, REJ_VALIDITY_REQUEST, "profile_validity_request", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
    X509_REQ_free(csr);
    ASN1_OCTET_STRING *junk = ASN1_OCTET_STRING_new();
    assert_non_null(junk);
    assert_int_equal(ASN1_OCTET_STRING_set(junk, (const unsigned char *)"\x05\x00", 2), 1);
    X509_EXTENSION *bad = X509_EXTENSION_create_by_NID(NULL, NID_private_key_usage_period, 0, junk);
    assert_non_null(bad);
    ASN1_OCTET_STRING_free(junk);
    csr = csr_ex(key, "device-validity", CHALLENGE, NULL, bad, SCEPC_MD_SHA256);
    pkcsreq(&o, key, csr, "tx-rule-8");
    EXPECT_REFUSAL(&o, REJ_VALIDITY_REQUEST, "profile_validity_request", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
    X509_REQ_free(csr);

    /* a URL naming a profile that does not exist */
    snprintf(F.url_profile, sizeof(F.url_profile), "no-such-profile");
    enroll_as(&o, key, "device-noprofile", CHALLENGE, NULL, "tx-rule-9");
    EXPECT_REFUSAL(&o, REJ_NO_PROFILE, "no_profile", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
}

/* What the issuer's setup decides: no challenge configured at all (initial enrollment off),
 * and a CA certificate that has expired. */
static void test_issuer_state(void **state)
{
    (void)state;
    outcome o;
    EVP_PKEY *key = F.keys[8];

    F.ectx.issuer = F.nochal;
    enroll_as(&o, key, "device-nochal", CHALLENGE, NULL, "tx-issuer-1");
    EXPECT_REFUSAL(&o, REJ_NO_CHALLENGE_SET, "enrollment_disabled", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, key, "device-nochal", NULL, NULL, "tx-issuer-2");
    EXPECT_REFUSAL(&o, REJ_NO_CHALLENGE_SET, "enrollment_disabled", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    F.ectx.ca = F.old_ca;
    F.ectx.issuer = F.old_is;
    enroll_as(&o, key, "device-late", CHALLENGE, NULL, "tx-issuer-3");
    EXPECT_REFUSAL(&o, REJ_CA_EXPIRED, "ca_expired", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
}

/* One rule of a profile each, chosen by the URL (/scep/<name>); the same request is accepted
 * where the rule is met, so the refusal is about that rule. */
static void test_profile_rules(void **state)
{
    (void)state;
    outcome o;
    EVP_PKEY *rsa = F.keys[9];
    F.ectx.issuer = F.pis;

    /* keyEncipherment/dataEncipherment only: nothing an EC key can do */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    snprintf(F.url_profile, sizeof(F.url_profile), "ec-encipher");
    enroll_as(&o, ec, "device-ec", CHALLENGE, NULL, "tx-prof-1");
    EXPECT_REFUSAL(&o, REJ_KEY_USAGE, "profile_key_usage", SCEP_FAIL_BADALG);
    expect_detail(&o, "profile_key_usage", "ec-encipher");
    outcome_clear(&o);
    enroll_as(&o, rsa, "device-rsa", CHALLENGE, NULL, "tx-prof-2");
    expect_success(&o);
    outcome_clear(&o);
    EVP_PKEY_free(ec);

    /* smart card logon implies a required UPN */
    snprintf(F.url_profile, sizeof(F.url_profile), "smartcard");
    static const char *const email[] = { "email:user@example.com", NULL };
    enroll_as(&o, rsa, "device-card", CHALLENGE, email, "tx-prof-3");
    EXPECT_REFUSAL(&o, REJ_UPN_REQUIRED, "profile_upn_required", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, "profile_upn_required", "smartcard");
    outcome_clear(&o);
    static const char *const upn[] = { "upn:user@example.com", NULL };
    enroll_as(&o, rsa, "device-card", CHALLENGE, upn, "tx-prof-4");
    expect_success(&o);
    outcome_clear(&o);

    snprintf(F.url_profile, sizeof(F.url_profile), "short-subject");
    enroll_as(&o, rsa, "device-with-a-long-name", CHALLENGE, NULL, "tx-prof-5");
    EXPECT_REFUSAL(&o, REJ_SUBJECT_LENGTH, "profile_subject_length", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, rsa, "device-12345", CHALLENGE, NULL, "tx-prof-6");
    expect_success(&o);
    outcome_clear(&o);

    snprintf(F.url_profile, sizeof(F.url_profile), "printable");
    enroll_as(&o, rsa, "device_under", CHALLENGE, NULL, "tx-prof-7");
    EXPECT_REFUSAL(&o, REJ_SUBJECT_CHARS, "profile_subject_chars", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, rsa, "device-dash", CHALLENGE, NULL, "tx-prof-8");
    expect_success(&o);
    outcome_clear(&o);

    /* 100 years asked of a 10-year CA, beyond_ca = refuse */
    snprintf(F.url_profile, sizeof(F.url_profile), "refuse");
    enroll_as(&o, rsa, "device-long", CHALLENGE, NULL, "tx-prof-9");
    EXPECT_REFUSAL(&o, REJ_BEYOND_CA, "profile_beyond_ca", SCEP_FAIL_BADTIME);
    outcome_clear(&o);
    /* a shorter notAfter the client asks for (allow_shorter) stays inside the CA */
    X509_REQ *csr = csr_ex(rsa, "device-long", CHALLENGE, NULL, usage_period(30L * 86400),
                           SCEPC_MD_SHA256);
    pkcsreq(&o, rsa, csr, "tx-prof-10");
    expect_success(&o);
    outcome_clear(&o);
    X509_REQ_free(csr);

    /* renewal only in the last 20 %: a fresh certificate is too young; the renewal on /scep
     * stays under the profile the certificate was issued under */
    snprintf(F.url_profile, sizeof(F.url_profile), "renew20");
    X509 *young = issue_one(F.keys[10], "device-young", "tx-prof-11");
    F.url_profile[0] = '\0';
    renew(&o, young, F.keys[10], F.keys[11], "device-young", "tx-prof-12");
    EXPECT_REFUSAL(&o, REJ_RENEW_EARLY, "profile_renewal_early", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, "profile_renewal_early", "renew20");
    outcome_clear(&o);
    X509_free(young);
}

typedef struct blob {
    const uint8_t *v;
    size_t n;
    uint8_t *owned;            /* decide(): the re-encoded record */
    int status;
} blob;

/* Store update: insert b unless the key exists (verdict 1). */
static int insert_new(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                      size_t *nl)
{
    blob *b = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = b->v;
    *nl = b->n;
    return 0;
}

/* Store update: an administrator's decision on a pending request (scepctl request deny). */
static int decide(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv, size_t *nl)
{
    blob *b = arg;
    pending_request r;
    if (cur == NULL || pending_decode(cur, cur_len, &r) != 0 ||
        r.status != PENDING_WAITING)
        return 1;
    r.status = b->status;
    r.decided_at = (int64_t)time(NULL);
    snprintf(r.decided_by, sizeof(r.decided_by), "test-admin");
    free(b->owned);
    b->owned = NULL;
    if (pending_encode(&r, &b->owned, &b->n) != 0)
        return 1;
    *nv = b->owned;
    *nl = b->n;
    return 0;
}

/* A manual-approval request: PENDING (the request record is what the writer commits), still
 * PENDING on CertPoll; once an administrator denies it, both the repeated PKCSReq and the
 * CertPoll are refused. */
static void test_request_denied(void **state)
{
    (void)state;
    outcome o;
    EVP_PKEY *key = F.keys[0];
    F.ectx.issuer = F.pis;
    snprintf(F.url_profile, sizeof(F.url_profile), "manual");
    X509 *ss = self_signed(key, "device-manual");
    X509_REQ *csr = make_csr(key, "device-manual", CHALLENGE);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, key, "tx-manual");
    p.csr = csr;
    send_msg(&o, &p, key);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_PENDING);
    assert_int_equal(o.j->put.kind, STORE_PUT_INSERT);
    assert_int_equal(o.j->put.aux_db, STORE_DB_REQUESTS);
    commit(&o);
    outcome_clear(&o);

    X509_NAME *subj = name_of("device-manual");
    scepc_msg_params poll = params(SCEPC_MSG_CERTPOLL, ss, key, "tx-manual");
    poll.subject = subj;
    send_msg(&o, &poll, key);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_PENDING);
    outcome_clear(&o);

    blob d = { .status = PENDING_DENIED };
    store_put put;
    memset(&put, 0, sizeof(put));
    put.kind = STORE_PUT_UPDATE;
    put.aux_db = STORE_DB_REQUESTS;
    put.aux_key = "tx-manual";
    put.aux_key_len = strlen("tx-manual");
    put.update = decide;
    put.update_arg = &d;
    assert_int_equal(store_put_sync(F.st, &put), 0);
    assert_int_equal(put.result, STORE_OK);
    assert_int_equal(put.verdict, 0);
    free(d.owned);

    send_msg(&o, &p, key);
    EXPECT_REFUSAL(&o, REJ_REQUEST_DENIED, "request_denied", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, NULL, "manual");
    outcome_clear(&o);
    F.url_profile[0] = '\0';
    send_msg(&o, &poll, key);
    EXPECT_REFUSAL(&o, REJ_REQUEST_DENIED, "request_denied", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_NAME_free(subj);
    X509_REQ_free(csr);
    X509_free(ss);
}

/* A one-time challenge for prof, created at now with ttl_s and optional bindings, stored
 * under its hash as POST /admin/challenges and scepctl challenge create store it. */
static void add_challenge(const char *prof, int64_t now, int64_t ttl_s, const char *subject,
                          const char *san, char value[CHALLENGE_VALUE_LEN + 1])
{
    uint8_t key[CHALLENGE_HASH_LEN], rec[CHALLENGE_RECORD_MAX];
    size_t rec_len = 0;
    const char *why = NULL;
    if (challenge_create(prof, now, ttl_s, subject, san, value, key, rec, &rec_len, &why) != 0)
        fail_msg("challenge_create: %s", why != NULL ? why : "?");
    blob b = { rec, rec_len, NULL, 0 };
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_UPDATE;
    p.aux_db = STORE_DB_CHALLENGES;
    p.aux_key = key;
    p.aux_key_len = sizeof(key);
    p.update = insert_new;
    p.update_arg = &b;
    assert_int_equal(store_put_sync(F.st, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    assert_int_equal(p.verdict, 0);
}

/* A one-time challenge is consumed by the put that records its certificate: right once, then
 * used; unknown, absent, expired, bound to another subject / SANs / profile. A refused
 * binding does not consume it. */
static void test_onetime_challenges(void **state)
{
    (void)state;
    outcome o;
    char v[CHALLENGE_VALUE_LEN + 1];
    int64_t now = (int64_t)time(NULL);
    F.ectx.issuer = F.pis;
    snprintf(F.url_profile, sizeof(F.url_profile), "onetime");

    add_challenge("onetime", now, 3600, NULL, NULL, v);
    enroll_as(&o, F.keys[1], "device-ot", v, NULL, "tx-ot-1");
    expect_success(&o);
    /* the certificate's put consumes the challenge: its condition */
    assert_int_equal(o.j->put.kind, STORE_PUT_CERT);
    assert_int_equal(o.j->put.cond_db, STORE_DB_CHALLENGES);
    assert_non_null(o.j->put.cond);
    assert_true(o.j->pki.chal_consumed);
    commit(&o);
    assert_int_equal(o.j->put.cond_verdict, CHALLENGE_OK);
    outcome_clear(&o);
    enroll_as(&o, F.keys[2], "device-ot", v, NULL, "tx-ot-2");
    EXPECT_REFUSAL(&o, REJ_CHAL_USED, "challenge_used", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    char unknown[CHALLENGE_VALUE_LEN + 1];
    assert_int_equal(challenge_generate(unknown, sizeof(unknown)), 0);
    enroll_as(&o, F.keys[2], "device-ot", unknown, NULL, "tx-ot-3");
    EXPECT_REFUSAL(&o, REJ_CHAL_WRONG, "challenge_wrong", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, F.keys[2], "device-ot", NULL, NULL, "tx-ot-4");
    EXPECT_REFUSAL(&o, REJ_CHAL_WRONG, "challenge_wrong", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    /* the static challenge means nothing here */
    enroll_as(&o, F.keys[2], "device-ot", CHALLENGE, NULL, "tx-ot-5");
    EXPECT_REFUSAL(&o, REJ_CHAL_WRONG, "challenge_wrong", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    add_challenge("onetime", now - 7200, 60, NULL, NULL, v);
    enroll_as(&o, F.keys[2], "device-ot", v, NULL, "tx-ot-6");
    EXPECT_REFUSAL(&o, REJ_CHAL_EXPIRED, "challenge_expired", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    add_challenge("onetime", now, 3600, "/CN=device-bound/O=enroll-test", NULL, v);
    enroll_as(&o, F.keys[2], "device-other", v, NULL, "tx-ot-7");
    EXPECT_REFUSAL(&o, REJ_CHAL_SUBJECT, "challenge_subject", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, F.keys[2], "device-bound", v, NULL, "tx-ot-8");
    expect_success(&o);
    commit(&o);
    outcome_clear(&o);

    static const char *const other[] = { "dns:other.example", NULL };
    static const char *const bound[] = { "dns:bound.example", NULL };
    add_challenge("onetime", now, 3600, NULL, "dns:bound.example", v);
    enroll_as(&o, F.keys[3], "device-san", v, other, "tx-ot-9");
    EXPECT_REFUSAL(&o, REJ_CHAL_SAN, "challenge_san", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, F.keys[3], "device-san", v, NULL, "tx-ot-10");
    EXPECT_REFUSAL(&o, REJ_CHAL_SAN, "challenge_san", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    enroll_as(&o, F.keys[3], "device-san", v, bound, "tx-ot-11");
    expect_success(&o);
    commit(&o);
    outcome_clear(&o);

    add_challenge("onetime-other", now, 3600, NULL, NULL, v);
    enroll_as(&o, F.keys[4], "device-ot", v, NULL, "tx-ot-12");
    EXPECT_REFUSAL(&o, REJ_CHAL_PROFILE, "challenge_profile", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, NULL, "onetime");
    outcome_clear(&o);
    snprintf(F.url_profile, sizeof(F.url_profile), "onetime-other");
    enroll_as(&o, F.keys[4], "device-ot", v, NULL, "tx-ot-13");
    expect_success(&o);
    outcome_clear(&o);
}

/* A message for a CSR, signed by signer (a RenewalReq, or a PKCSReq: signed by one of ours it
 * is a renewal too), run under the URL's profile. */
static void renew_csr(outcome *o, int type, X509 *signer, EVP_PKEY *signer_key,
                      EVP_PKEY *new_key, const X509_REQ *csr, const char *txid)
{
    scepc_msg_params p = params(type, signer, signer_key, txid);
    p.csr = csr;
    send_msg(o, &p, new_key);
}

/* A certificate issued under prof (the static challenge), committed. */
static X509 *issue_under(const char *prof, EVP_PKEY *key, const char *cn, const char *txid)
{
    snprintf(F.url_profile, sizeof(F.url_profile), "%s", prof);
    return issue_one(key, cn, txid);
}

/* A renewal stays in its lane: the renewed certificate's profile or one whose renew_from names
 * it, the same subject and SANs (unless renew_may_change), else refused with its own
 * diagnostic; with the target profile's challenge it is an initial enrollment there. */
static void test_renewal_lane(void **state)
{
    (void)state;
    outcome o;
    F.ectx.issuer = F.pis;
    X509 *old = issue_under("lane-a", F.keys[0], "device-lane", "tx-lane-0");

    snprintf(F.url_profile, sizeof(F.url_profile), "lane-c");
    renew(&o, old, F.keys[0], F.keys[1], "device-lane", "tx-lane-1");
    EXPECT_REFUSAL(&o, REJ_RENEW_PROFILE, "renewal_profile", SCEP_FAIL_BADREQUEST);
    expect_detail(&o, NULL, "lane-c");
    outcome_clear(&o);
    X509_REQ *csr = make_csr(F.keys[1], "device-lane", NULL);
    renew_csr(&o, SCEPC_MSG_PKCSREQ, old, F.keys[0], F.keys[1], csr, "tx-lane-2");
    EXPECT_REFUSAL(&o, REJ_RENEW_PROFILE, "renewal_profile", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(csr);
    /* a wrong challenge does not open the other profile either */
    csr = make_csr(F.keys[1], "device-lane", "not-the-challenge");
    renew_csr(&o, SCEPC_MSG_RENEWALREQ, old, F.keys[0], F.keys[1], csr, "tx-lane-3");
    EXPECT_REFUSAL(&o, REJ_RENEW_PROFILE, "renewal_profile", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_REQ_free(csr);
    /* with the target profile's challenge: an initial enrollment there, any subject */
    csr = make_csr(F.keys[1], "device-elsewhere", CHALLENGE);
    renew_csr(&o, SCEPC_MSG_RENEWALREQ, old, F.keys[0], F.keys[1], csr, "tx-lane-4");
    expect_success(&o);
    assert_int_equal(o.j->pki.audit_event, AUDIT_ISSUED);
    assert_string_equal(o.j->pki.txkey, "tx-lane-4");
    assert_string_equal(o.j->profile, "lane-c");
    commit(&o);
    outcome_clear(&o);
    X509_REQ_free(csr);

    snprintf(F.url_profile, sizeof(F.url_profile), "lane-b");
    renew(&o, old, F.keys[0], F.keys[2], "device-lane", "tx-lane-5");
    expect_success(&o);
    assert_int_equal(o.j->pki.audit_event, AUDIT_RENEWED);
    commit(&o);
    outcome_clear(&o);

    snprintf(F.url_profile, sizeof(F.url_profile), "lane-a");
    renew(&o, old, F.keys[0], F.keys[2], "device-renamed", "tx-lane-6");
    EXPECT_REFUSAL(&o, REJ_RENEW_SUBJECT, "renewal_subject", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    static const char *const extra[] = { "dns:extra.example", NULL };
    csr = csr_ex(F.keys[2], "device-lane", NULL, extra, NULL, SCEPC_MD_SHA256);
    renew_csr(&o, SCEPC_MSG_RENEWALREQ, old, F.keys[0], F.keys[2], csr, "tx-lane-7");
    EXPECT_REFUSAL(&o, REJ_RENEW_SAN, "renewal_san", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);

    /* renew_may_change = subject, san */
    snprintf(F.url_profile, sizeof(F.url_profile), "lane-change");
    renew_csr(&o, SCEPC_MSG_RENEWALREQ, old, F.keys[0], F.keys[2], csr, "tx-lane-8");
    expect_success(&o);
    assert_int_equal(o.j->pki.audit_event, AUDIT_RENEWED);
    outcome_clear(&o);
    X509_REQ_free(csr);

    /* the default path keeps the renewal under the profile it was issued under */
    F.url_profile[0] = '\0';
    renew(&o, old, F.keys[0], F.keys[3], "device-lane", "tx-lane-9");
    expect_success(&o);
    assert_string_equal(o.j->profile, "lane-a");
    outcome_clear(&o);
    X509_free(old);
}

/* A record written before records named their profile counts as the default profile. */
static void test_renewal_legacy_record(void **state)
{
    (void)state;
    outcome o;
    F.ectx.issuer = F.pis;
    snprintf(F.url_profile, sizeof(F.url_profile), "default");
    X509 *ss = self_signed(F.keys[4], "device-legacy");
    X509_REQ *csr = make_csr(F.keys[4], "device-legacy", CHALLENGE);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, F.keys[4], "tx-legacy-0");
    p.csr = csr;
    send_msg(&o, &p, F.keys[4]);
    expect_success(&o);
    o.j->put.cert.profile = "";
    o.j->put.cert.profile_len = 0;
    commit(&o);
    X509 *old = X509_dup(o.res.cert);
    store_cert rec;
    assert_int_equal(store_reader_begin(F.reader), 0);
    assert_int_equal(store_get_cert(F.reader, o.j->put.cert.serial, &rec), STORE_OK);
    assert_int_equal(rec.profile_len, 0);
    store_reader_end(F.reader);
    outcome_clear(&o);

    F.url_profile[0] = '\0';
    renew(&o, old, F.keys[4], F.keys[5], "device-legacy", "tx-legacy-1");
    expect_success(&o);
    assert_string_equal(o.j->profile, "default");
    outcome_clear(&o);
    snprintf(F.url_profile, sizeof(F.url_profile), "lane-a");
    renew(&o, old, F.keys[4], F.keys[5], "device-legacy", "tx-legacy-2");
    EXPECT_REFUSAL(&o, REJ_RENEW_PROFILE, "renewal_profile", SCEP_FAIL_BADREQUEST);
    outcome_clear(&o);
    X509_free(old);
    X509_REQ_free(csr);
    X509_free(ss);
}

/* A renewal under a manual-approval profile with approve_renewals = no waits (PENDING), and
 * the CertPoll its client sends (signed by the certificate it renews, as the renewal was)
 * finds it; with approve_renewals = yes it is issued at once and CertPoll returns it. */
static void test_renewal_pending_poll(void **state)
{
    (void)state;
    outcome o;
    F.ectx.issuer = F.pis;
    X509 *old = issue_under("lane-a", F.keys[6], "device-mr", "tx-mr-0");
    X509_NAME *subj = name_of("device-mr");

    snprintf(F.url_profile, sizeof(F.url_profile), "manual-renew");
    renew(&o, old, F.keys[6], F.keys[7], "device-mr", "tx-mr-1");
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_PENDING);
    assert_int_equal(o.j->put.kind, STORE_PUT_INSERT);
    assert_int_equal(o.j->put.aux_db, STORE_DB_REQUESTS);
    commit(&o);
    outcome_clear(&o);
    F.url_profile[0] = '\0';
    scepc_msg_params poll = params(SCEPC_MSG_CERTPOLL, old, F.keys[6], "tx-mr-1");
    poll.subject = subj;
    send_msg(&o, &poll, F.keys[7]);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_PENDING);
    outcome_clear(&o);

    snprintf(F.url_profile, sizeof(F.url_profile), "manual-auto");
    renew(&o, old, F.keys[6], F.keys[8], "device-mr", "tx-mr-2");
    expect_success(&o);
    assert_int_equal(o.j->pki.audit_event, AUDIT_RENEWED);
    commit(&o);
    X509 *renewed = X509_dup(o.res.cert);
    outcome_clear(&o);
    F.url_profile[0] = '\0';
    poll = params(SCEPC_MSG_CERTPOLL, old, F.keys[6], "tx-mr-2");
    poll.subject = subj;
    send_msg(&o, &poll, F.keys[8]);
    assert_true(o.parsed);
    assert_int_equal(o.res.status, SCEPC_SUCCESS);
    assert_int_equal(X509_cmp(o.res.cert, renewed), 0);
    assert_int_equal(audit_int(o.audit, "event"), AUDIT_CERT_RETURNED);
    outcome_clear(&o);
    X509_free(renewed);
    X509_NAME_free(subj);
    X509_free(old);
}

/* Runs the same pkiMessage bytes as two jobs (a client's retransmission racing the first). */
static void run_twice(outcome *a, outcome *b, const scepc_msg_params *p, const EVP_PKEY *key)
{
    uint8_t *der = NULL, *c1, *c2;
    size_t len = 0;
    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    assert_int_equal(scepc_build_pkimessage(F.cl, p, &der, &len, &a->txn), SCEPC_OK);
    b->txn = a->txn;
    c1 = malloc(len);
    c2 = malloc(len);
    assert_non_null(c1);
    assert_non_null(c2);
    memcpy(c1, der, len);
    memcpy(c2, der, len);
    scepc_free(der);
    run_job(a, c1, len, p->signer_cert, p->signer_key, key);
    run_job(b, c2, len, p->signer_cert, p->signer_key, key);
}

/* Commits a's and b's puts in one batch, as the writer would: a's result, then b's. */
static void commit_both(outcome *a, outcome *b, int want_a, int want_b)
{
    a->j->put.next = &b->j->put;
    b->j->put.next = NULL;
    assert_int_equal(store_put_sync(F.st, &a->j->put), 0);
    assert_int_equal(a->j->put.result, want_a);
    assert_int_equal(b->j->put.result, want_b);
}

/* A one-time challenge is consumed in the transaction that records the certificate: two
 * copies of one request worked at once both get that certificate (the second's put is
 * refused, its job answers with the replay); another transaction with the same challenge gets
 * challenge_used; a put that was never committed leaves the challenge usable. */
static void test_onetime_atomic(void **state)
{
    (void)state;
    outcome a, b;
    char v[CHALLENGE_VALUE_LEN + 1];
    int64_t now = (int64_t)time(NULL);
    F.ectx.issuer = F.pis;
    snprintf(F.url_profile, sizeof(F.url_profile), "onetime");

    add_challenge("onetime", now, 3600, NULL, NULL, v);
    X509 *ss = self_signed(F.keys[6], "device-dup");
    X509_REQ *csr = make_csr(F.keys[6], "device-dup", v);
    scepc_msg_params p = params(SCEPC_MSG_PKCSREQ, ss, F.keys[6], "tx-ot-dup");
    p.csr = csr;
    run_twice(&a, &b, &p, F.keys[6]);
    expect_success(&a);
    expect_success(&b);
    commit_both(&a, &b, STORE_OK, STORE_CONFLICT);
    assert_int_equal(b.j->put.cond_verdict, CHALLENGE_USED);
    pass_again(&b);
    assert_true(b.parsed);
    assert_int_equal(b.res.status, SCEPC_SUCCESS);
    assert_int_equal(b.next, JOB_DELIVER);
    assert_int_equal(X509_cmp(a.res.cert, b.res.cert), 0);
    assert_int_equal(audit_int(b.audit, "event"), AUDIT_REPLAYED);
    outcome_clear(&a);
    outcome_clear(&b);
    X509_REQ_free(csr);

    add_challenge("onetime", now, 3600, NULL, NULL, v);
    enroll_as(&a, F.keys[7], "device-race", v, NULL, "tx-ot-race-1");
    enroll_as(&b, F.keys[8], "device-race", v, NULL, "tx-ot-race-2");
    expect_success(&a);
    expect_success(&b);
    commit_both(&a, &b, STORE_OK, STORE_CONFLICT);
    pass_again(&b);
    EXPECT_REFUSAL(&b, REJ_CHAL_USED, "challenge_used", SCEP_FAIL_BADREQUEST);
    outcome_clear(&a);
    outcome_clear(&b);

    /* issued and signed, but never committed (a store error, or a shutdown): not consumed */
    add_challenge("onetime", now, 3600, NULL, NULL, v);
    enroll_as(&a, F.keys[9], "device-lost", v, NULL, "tx-ot-lost-1");
    expect_success(&a);
    outcome_clear(&a);
    enroll_as(&a, F.keys[9], "device-lost", v, NULL, "tx-ot-lost-2");
    expect_success(&a);
    commit(&a);
    outcome_clear(&a);
    X509_free(ss);
}

/* Manual approval: a second request of a transaction that was worked before the first was
 * stored is refused by the store (the request exists) and answered from it: txid_conflict for
 * another key, PENDING for the same one; with a one-time challenge too. */
static void test_pending_conflict(void **state)
{
    (void)state;
    outcome a, b;
    char v[CHALLENGE_VALUE_LEN + 1];
    F.ectx.issuer = F.pis;
    snprintf(F.url_profile, sizeof(F.url_profile), "manual");

    enroll_as(&a, F.keys[7], "device-md", CHALLENGE, NULL, "tx-md-1");
    enroll_as(&b, F.keys[8], "device-md", CHALLENGE, NULL, "tx-md-1");
    assert_int_equal(a.res.status, SCEPC_PENDING);
    assert_int_equal(b.res.status, SCEPC_PENDING);
    commit_both(&a, &b, STORE_OK, STORE_CONFLICT);
    pass_again(&b);
    EXPECT_REFUSAL(&b, REJ_TXID_CONFLICT, "txid_conflict", SCEP_FAIL_BADREQUEST);
    outcome_clear(&a);
    outcome_clear(&b);

    enroll_as(&a, F.keys[9], "device-md", CHALLENGE, NULL, "tx-md-2");
    enroll_as(&b, F.keys[9], "device-md", CHALLENGE, NULL, "tx-md-2");
    commit_both(&a, &b, STORE_OK, STORE_CONFLICT);
    pass_again(&b);
    assert_true(b.parsed);
    assert_int_equal(b.res.status, SCEPC_PENDING);
    assert_int_equal(b.next, JOB_DELIVER);
    outcome_clear(&a);
    outcome_clear(&b);

    snprintf(F.url_profile, sizeof(F.url_profile), "manual-ot");
    add_challenge("manual-ot", (int64_t)time(NULL), 3600, NULL, NULL, v);
    enroll_as(&a, F.keys[10], "device-mot", v, NULL, "tx-mot-1");
    enroll_as(&b, F.keys[11], "device-mot", v, NULL, "tx-mot-1");
    assert_int_equal(a.res.status, SCEPC_PENDING);
    assert_non_null(a.j->put.cond);
    commit_both(&a, &b, STORE_OK, STORE_CONFLICT);
    pass_again(&b);
    EXPECT_REFUSAL(&b, REJ_TXID_CONFLICT, "txid_conflict", SCEP_FAIL_BADREQUEST);
    outcome_clear(&a);
    outcome_clear(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_pkcsreq_success, reset_ctx),
        cmocka_unit_test_setup(test_txid_conflict, reset_ctx),
        cmocka_unit_test_setup(test_renewal_and_revoked, reset_ctx),
        cmocka_unit_test_setup(test_renewal_unknown_cert, reset_ctx),
        cmocka_unit_test_setup(test_renewal_expired, reset_ctx),
        cmocka_unit_test_setup(test_renewal_signer, reset_ctx),
        cmocka_unit_test_setup(test_certpoll, reset_ctx),
        cmocka_unit_test_setup(test_getcert, reset_ctx),
        cmocka_unit_test_setup(test_getcrl, reset_ctx),
        cmocka_unit_test_setup(test_internal_error, reset_ctx),
        cmocka_unit_test_setup(test_padding_oracle, reset_ctx),
        cmocka_unit_test_setup(test_message_refusals, reset_ctx),
        cmocka_unit_test_setup(test_request_rules, reset_ctx),
        cmocka_unit_test_setup(test_issuer_state, reset_ctx),
        cmocka_unit_test_setup(test_profile_rules, reset_ctx),
        cmocka_unit_test_setup(test_request_denied, reset_ctx),
        cmocka_unit_test_setup(test_onetime_challenges, reset_ctx),
        cmocka_unit_test_setup(test_renewal_lane, reset_ctx),
        cmocka_unit_test_setup(test_renewal_legacy_record, reset_ctx),
        cmocka_unit_test_setup(test_renewal_pending_poll, reset_ctx),
        cmocka_unit_test_setup(test_onetime_atomic, reset_ctx),
        cmocka_unit_test_setup(test_pending_conflict, reset_ctx),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
