/* Tests of engine/mdm/webhook.c against tests/emulators/webhook_server.py over TLS with a CA
 * the test makes (openssl req): the signature (known answer, and verified by the server), the
 * JSON facts, allow, deny with its reason, 5xx retried, an unreadable answer, a wrong secret,
 * and a webhook certificate that does not chain to the configured CA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/mdm/mdm_test.h"
#include "engine/mdm/webhook.h"

#define SECRET "webhook-secret"

typedef struct fx {
    emu        e;
    char       dir[64];
    char       ca[128], other_ca[128];
    uint8_t   *csr;
    size_t     csr_len;
} fx;

static int sh(const char *fmt, const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), fmt, dir, dir, dir, dir, dir, dir, dir, dir);
    return system(cmd);
}

/* A test CA, a server certificate for 127.0.0.1 under it, and an unrelated CA. */
static int make_pki(const char *d)
{
    return sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-keyout ca.key -out ca.pem -days 2 -subj /CN=webhook-test-ca 2>/dev/null && "
              "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
              "-out srv.csr -subj /CN=127.0.0.1 2>/dev/null && "
              "printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
              "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
              "-out srv.pem -days 2 -extfile ext 2>/dev/null && "
              "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null && "
              "printf '" SECRET "\\n' > secret", d);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char cert[128], key[128], secret[128];
    snprintf(f->dir, sizeof(f->dir), "/tmp/scepd-wh-XXXXXX");
    if (mkdtemp(f->dir) == NULL || make_pki(f->dir) != 0)
        return -1;
    snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", f->dir);
    snprintf(f->other_ca, sizeof(f->other_ca), "%s/other.pem", f->dir);
    snprintf(cert, sizeof(cert), "%s/srv.pem", f->dir);
    snprintf(key, sizeof(key), "%s/srv.key", f->dir);
    snprintf(secret, sizeof(secret), "%s/secret", f->dir);
    const char *args[] = { "--secret-file", secret, "--cert", cert, "--key", key, NULL };
    if (emu_start(&f->e, "webhook_server.py", args) != 0)
        return -1;
    f->csr = make_csr("device-7", &f->csr_len);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    emu_stop(&f->e);
    sh("rm -rf '%s'", f->dir);
    OPENSSL_free(f->csr);
    free(f);
    return 0;
}

static mdm_stage *stage(fx *f, const char *ca, const char *secret, int retries)
{
    mdm_config c;
    mdm_stage *s = NULL;
    mdm_config_defaults(&c);
    snprintf(c.webhook_url, sizeof(c.webhook_url), "https://127.0.0.1:%d/check", f->e.port);
    snprintf(c.webhook_ca_file, sizeof(c.webhook_ca_file), "%s", ca);
    c.webhook_secret_len = (size_t)snprintf((char *)c.webhook_secret, sizeof(c.webhook_secret),
                                            "%s", secret);
    c.retries = retries;
    c.retry_backoff_ms = 10;
    assert_int_equal(mdm_stage_create(&c, NULL, &s), 0);
    return s;
}

static mdm_verdict ask(fx *f, mdm_stage *s, const char *challenge)
{
    static const char *const sans[] = { "dns:device-7.example", "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1" };
    waiter w;
    waiter_init(&w);
    mdm_request r = { .kind = MDM_WEBHOOK, .txid = "tx-wh-1", .profile = "mdm",
                      .challenge = challenge, .csr_der = f->csr, .csr_len = f->csr_len,
                      .subject = "CN=device-7", .sans = sans, .san_count = 2,
                      .peer = "192.0.2.7:40000" };
    assert_int_equal(mdm_submit(s, &r, on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    return w.v;
}

static void test_sign_known_answer(void **state)
{
    (void)state;
    char hex[65];
    const char *body = "{\"a\":1}";
    /* python3: hmac.new(b"webhook-secret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest() */
    assert_int_equal(webhook_sign((const uint8_t *)SECRET, strlen(SECRET), 1700000000LL, body,
                                  strlen(body), hex), 0);
    assert_string_equal(hex, "2ff3101d20a9c9551ad8fbe65d513983f9ea07874c06dadf559d0c4e7f43181c");
}

static void test_allow_and_facts(void **state)
{
    fx *f = *state;
    mdm_stage *s = stage(f, f->ca, SECRET, 0);
    mdm_verdict v = ask(f, s, "good-challenge");
    assert_int_equal(v.result, MDM_ALLOW);
    mdm_stage_destroy(s);
    json_t *calls = emu_calls(&f->e);
    json_t *c = json_array_get(calls, json_array_size(calls) - 1);
    assert_true(json_is_true(json_object_get(c, "sig_ok")));
    assert_non_null(json_object_get(json_object_get(c, "headers"), "x-scepd-signature"));
    json_t *b = json_object_get(c, "body");
    assert_int_equal(json_integer_value(json_object_get(b, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(b, "transactionId")), "tx-wh-1");
    assert_string_equal(json_string_value(json_object_get(b, "profile")), "mdm");
    assert_string_equal(json_string_value(json_object_get(b, "challenge")), "good-challenge");
    assert_string_equal(json_string_value(json_object_get(b, "subject")), "CN=device-7");
    assert_string_equal(json_string_value(json_object_get(b, "peer")), "192.0.2.7:40000");
    assert_int_equal(strlen(json_string_value(json_object_get(b, "id"))), 32);
    char *want = b64(f->csr, f->csr_len);
    assert_string_equal(json_string_value(json_object_get(b, "csr")), want);
    free(want);
    json_t *sans = json_object_get(b, "subjectAltNames");
    assert_int_equal(json_array_size(sans), 2);
    assert_string_equal(json_string_value(json_array_get(sans, 1)),
                        "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1");
    json_decref(calls);
}

static void test_deny_with_reason(void **state)
{
    fx *f = *state;
    mdm_stage *s = stage(f, f->ca, SECRET, 0);
    mdm_verdict v = ask(f, s, "deny");
    assert_int_equal(v.result, MDM_DENY);
    assert_int_equal(v.diag, MDM_DIAG_DENIED);
    assert_string_equal(v.reason, "challenge not known");
    assert_string_equal(v.code, "unknown_challenge");
    mdm_stage_destroy(s);
}

static void test_5xx_and_junk(void **state)
{
    fx *f = *state;
    mdm_stage *s = stage(f, f->ca, SECRET, 2);
    mdm_verdict v = ask(f, s, "5xx");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_UNAVAILABLE);
    assert_int_equal(v.attempts, 3);
    v = ask(f, s, "junk");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_BAD_ANSWER);
    mdm_stage_destroy(s);
}

static void test_wrong_secret(void **state)
{
    fx *f = *state;
    mdm_stage *s = stage(f, f->ca, "not-the-secret", 0);
    mdm_verdict v = ask(f, s, "good-challenge");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_AUTH);
    assert_int_equal(v.http_status, 401);
    mdm_stage_destroy(s);
}

static void test_untrusted_certificate(void **state)
{
    fx *f = *state;
    mdm_stage *s = stage(f, f->other_ca, SECRET, 2);
    mdm_verdict v = ask(f, s, "good-challenge");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_TLS);
    assert_int_equal(v.attempts, 1);              /* a certificate problem is not retried */
    assert_string_equal(mdm_diag_code(v.diag), "mdm_tls_failed");
    mdm_stage_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_answer),
        cmocka_unit_test_setup_teardown(test_allow_and_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_with_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_5xx_and_junk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_certificate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
