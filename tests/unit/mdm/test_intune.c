/* Tests of engine/mdm/intune.c against tests/emulators/intune_emulator.py: the token and its
 * cache, Graph discovery, validateRequest (allow, every documented refusal code, 5xx, slow,
 * expired token), success and failure notifications (the recorded fields), revocation
 * download and upload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/bn.h>

#include "tests/unit/mdm/mdm_test.h"
#include "engine/mdm/intune.h"

static const char *const codes[] = {
#define X(name) #name,
    INTUNE_CODES(X)
#undef X
};

typedef struct fx {
    emu        e;
    mdm_stage *s;
    uint8_t   *csr;
    size_t     csr_len;
} fx;

static void config_for(const emu *e, mdm_config *c, int timeout_ms, int retries)
{
    mdm_config_defaults(c);
    snprintf(c->tenant, sizeof(c->tenant), "contoso.onmicrosoft.com");
    snprintf(c->client_id, sizeof(c->client_id), "11111111-2222-3333-4444-555555555555");
    c->client_secret_len = (size_t)snprintf(c->client_secret, sizeof(c->client_secret),
                                            "emulator-secret");
    snprintf(c->login_url, sizeof(c->login_url), "http://127.0.0.1:%d", e->port);
    snprintf(c->graph_url, sizeof(c->graph_url), "http://127.0.0.1:%d", e->port);
    c->timeout_ms = timeout_ms;
    c->retries = retries;
    c->retry_backoff_ms = 10;
}

static int setup_with(void **state, int timeout_ms, int retries, int max_in_flight)
{
    fx *f = calloc(1, sizeof(*f));
    mdm_config c;
    if (f == NULL || emu_start(&f->e, "intune_emulator.py", NULL) != 0)
        return -1;
    config_for(&f->e, &c, timeout_ms, retries);
    c.max_in_flight = max_in_flight;
    if (mdm_stage_create(&c, NULL, &f->s) != 0)
        return -1;
    f->csr = make_csr("device-1", &f->csr_len);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 5000, 2, 64);
}

static int setup_short(void **state)
{
    return setup_with(state, 400, 0, 2);
}

static int teardown(void **state)
{
    fx *f = *state;
    mdm_stage_destroy(f->s);
    emu_stop(&f->e);
    OPENSSL_free(f->csr);
    free(f);
    return 0;
}

static mdm_verdict validate(fx *f, const char *txid)
{
    waiter w;
    waiter_init(&w);
    mdm_request r = { .kind = MDM_INTUNE, .txid = txid, .csr_der = f->csr,
                      .csr_len = f->csr_len };
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    return w.v;
}

static void test_allow_and_wire_format(void **state)
{
    fx *f = *state;
    mdm_verdict v = validate(f, "tx-allow-1");
    assert_int_equal(v.result, MDM_ALLOW);
    assert_string_equal(v.code, "Success");
    json_t *calls = emu_calls(&f->e);
    json_t *tok = emu_last(calls, "/contoso.onmicrosoft.com/oauth2/v2.0/token");
    assert_non_null(tok);
    assert_true(json_is_true(json_object_get(json_object_get(tok, "body"), "client_secret_ok")));
    assert_int_equal(emu_count(calls, "/endpoints"), 1);
    json_t *call = emu_last(calls, "/ScepRequestValidationFEService/ScepActions/validateRequest");
    assert_non_null(call);
    json_t *req = json_object_get(json_object_get(call, "body"), "request");
    assert_string_equal(json_string_value(json_object_get(req, "transactionId")), "tx-allow-1");
    assert_string_equal(json_string_value(json_object_get(req, "callerInfo")), "scepd/1.0");
    char *want = b64(f->csr, f->csr_len);
    assert_string_equal(json_string_value(json_object_get(req, "certificateRequest")), want);
    free(want);
    json_t *h = json_object_get(call, "headers");
    assert_string_equal(json_string_value(json_object_get(h, "api-version")), "2018-02-20");
    assert_string_equal(json_string_value(json_object_get(h, "useragent")), "scepd/1.0");
    assert_int_equal(strlen(json_string_value(json_object_get(h, "client-request-id"))), 36);
    assert_string_equal(json_string_value(json_object_get(h, "authorization")), "Bearer <token>");
    json_decref(calls);
}

/* The token and the service URL are fetched once; connections are reused. */
static void test_cache_and_reuse(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(validate(f, "tx-cache").result, MDM_ALLOW);
    mdm_stats st;
    mdm_stage_stats(f->s, &st);
    assert_int_equal(st.token_fetches, 2);        /* Intune API + Graph */
    assert_int_equal(st.discoveries, 1);
    assert_int_equal(st.http_attempts, 8);        /* 2 tokens, 1 discovery, 5 validations */
    assert_true(st.connects < st.http_attempts);
    assert_int_equal(st.in_flight, 0);
}

static void test_every_refusal_code(void **state)
{
    fx *f = *state;
    for (size_t i = 1; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char knob[128];
        snprintf(knob, sizeof(knob), "{\"validate\": \"%s\"}", codes[i]);
        assert_int_equal(emu_post(&f->e, "/_control", knob), 200);
        mdm_verdict v = validate(f, "tx-deny");
        assert_int_equal(v.result, MDM_DENY);
        assert_int_equal(v.diag, MDM_DIAG_DENIED);
        assert_string_equal(v.code, codes[i]);
        assert_true(intune_code_known(v.code));
        assert_non_null(strstr(v.reason, codes[i]));
        assert_int_not_equal(v.hresult, 0);
    }
}

static void test_5xx_retried(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control", "{\"fail_5xx\": 1}"), 200);
    mdm_verdict v = validate(f, "tx-5xx-once");
    assert_int_equal(v.result, MDM_ALLOW);
    assert_int_equal(v.attempts, 2);
    assert_int_equal(emu_post(&f->e, "/_control", "{\"fail_5xx\": 10}"), 200);
    v = validate(f, "tx-5xx-always");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_UNAVAILABLE);
    assert_int_equal(v.http_status, 503);
    assert_int_equal(v.attempts, 3);              /* 1 + retries */
    assert_string_equal(mdm_diag_code(v.diag), "mdm_unavailable");
}

static void test_token_endpoint_down(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control", "{\"fail_token_5xx\": 10}"), 200);
    mdm_verdict v = validate(f, "tx-token-down");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_UNAVAILABLE);
}

static void test_expired_token_reauth(void **state)
{
    fx *f = *state;
    assert_int_equal(validate(f, "tx-before").result, MDM_ALLOW);
    mdm_stats a, b;
    mdm_stage_stats(f->s, &a);
    assert_int_equal(emu_post(&f->e, "/_control", "{\"revoke_tokens\": true}"), 200);
    assert_int_equal(validate(f, "tx-after").result, MDM_ALLOW);
    mdm_stage_stats(f->s, &b);
    assert_int_equal(b.token_fetches, a.token_fetches + 1);
}

/* A token close to its end is renewed in the background while the old one still serves. */
static void test_token_refreshed_before_expiry(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control", "{\"token_expires_in\": 4}"), 200);
    assert_int_equal(validate(f, "tx-r1").result, MDM_ALLOW);
    mdm_stats a, b;
    mdm_stage_stats(f->s, &a);
    sleep(3);                                     /* past half the lifetime, before the end */
    assert_int_equal(validate(f, "tx-r2").result, MDM_ALLOW);
    for (int i = 0; i < 100; i++) {
        mdm_stage_stats(f->s, &b);
        if (b.token_fetches > a.token_fetches)
            break;
        usleep(50000);
    }
    assert_int_equal(b.token_fetches, a.token_fetches + 1);
    json_t *calls = emu_calls(&f->e);
    json_t *last = emu_last(calls, "/ScepActions/validateRequest");
    assert_int_equal(json_integer_value(json_object_get(last, "status")), 200);
    json_decref(calls);
}

static void test_bad_secret(void **state)
{
    fx *f = *state;
    mdm_config c;
    mdm_stage *s = NULL;
    config_for(&f->e, &c, 5000, 0);
    c.client_secret_len = (size_t)snprintf(c.client_secret, sizeof(c.client_secret), "wrong");
    assert_int_equal(mdm_stage_create(&c, NULL, &s), 0);
    waiter w;
    waiter_init(&w);
    mdm_request r = { .kind = MDM_INTUNE, .txid = "tx-bad", .csr_der = f->csr,
                      .csr_len = f->csr_len };
    assert_int_equal(mdm_submit(s, &r, on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    assert_int_equal(w.v.result, MDM_ERROR);
    assert_int_equal(w.v.diag, MDM_DIAG_AUTH);
    mdm_stage_destroy(s);
}

static void test_service_missing_from_discovery(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control",
                              "{\"hide_service\": \"ScepRequestValidationFEService\"}"), 200);
    mdm_verdict v = validate(f, "tx-hidden");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_UNAVAILABLE);
    assert_non_null(strstr(v.reason, "ScepRequestValidationFEService"));
}

static uint8_t *make_cert(size_t *len)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, "0123456789ABCDEF01");
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Test CA", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Corp", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_subject_name(x, n);
    ASN1_TIME_set_string(X509_getm_notBefore(x), "20240101000000Z");
    ASN1_TIME_set_string(X509_getm_notAfter(x), "20301231235959Z");
    X509_set_pubkey(x, k);
    X509_sign(x, k, EVP_sha256());
    unsigned char *der = NULL;
    *len = (size_t)i2d_X509(x, &der);
    BN_free(bn);
    X509_NAME_free(n);
    X509_free(x);
    EVP_PKEY_free(k);
    return der;
}

static void test_success_notification_fields(void **state)
{
    fx *f = *state;
    size_t clen;
    uint8_t *cert = make_cert(&clen);
    waiter w;
    waiter_init(&w);
    assert_int_equal(mdm_notify_success(f->s, "tx-issued", f->csr, f->csr_len, cert, clen,
                                        on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    assert_int_equal(w.v.result, MDM_ALLOW);
    unsigned char md[20];
    unsigned int mdlen;
    char thumb[41];
    EVP_Digest(cert, clen, md, &mdlen, EVP_sha1(), NULL);
    for (int i = 0; i < 20; i++)
        snprintf(thumb + 2 * i, 3, "%02X", md[i]);
    json_t *calls = emu_calls(&f->e);
    json_t *n = json_object_get(json_object_get(emu_last(calls, "/successNotification"), "body"),
                                "notification");
    assert_non_null(n);
    assert_string_equal(json_string_value(json_object_get(n, "transactionId")), "tx-issued");
    assert_string_equal(json_string_value(json_object_get(n, "certificateThumbprint")), thumb);
    assert_string_equal(json_string_value(json_object_get(n, "certificateSerialNumber")),
                        "0123456789ABCDEF01");
    assert_string_equal(json_string_value(json_object_get(n, "certificateExpirationDateUtc")),
                        "2030-12-31T23:59:59.000Z");
    assert_string_equal(json_string_value(json_object_get(n, "issuingCertificateAuthority")),
                        "O=Corp,CN=Test CA");
    json_decref(calls);
    OPENSSL_free(cert);
}

static void test_success_notification_refused(void **state)
{
    fx *f = *state;
    size_t clen;
    uint8_t *cert = make_cert(&clen);
    const char *modes[] = { "{\"notify_success\": \"5xx\"}",
                            "{\"notify_success\": \"ScepProfileNoLongerTargetedToTheClient\"}" };
    int want[] = { MDM_ERROR, MDM_DENY };
    for (int i = 0; i < 2; i++) {
        waiter w;
        waiter_init(&w);
        assert_int_equal(emu_post(&f->e, "/_control", modes[i]), 200);
        assert_int_equal(mdm_notify_success(f->s, "tx-n", f->csr, f->csr_len, cert, clen,
                                            on_verdict, &w), 0);
        assert_int_equal(waiter_wait(&w, 1), 0);
        assert_int_equal(w.v.result, want[i]);
    }
    OPENSSL_free(cert);
}

static void test_failure_notification(void **state)
{
    fx *f = *state;
    char desc[700] = "";
    for (int i = 0; i < 300; i++)
        strcat(desc, "\xc3\xa9");                 /* 600 bytes of U+00E9 */
    waiter w;
    waiter_init(&w);
    assert_int_equal(mdm_notify_failure(f->s, "tx-fail", f->csr, f->csr_len, 0x80094011u, desc,
                                        on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    assert_int_equal(w.v.result, MDM_ALLOW);
    json_t *calls = emu_calls(&f->e);
    json_t *n = json_object_get(json_object_get(emu_last(calls, "/failureNotification"), "body"),
                                "notification");
    assert_int_equal(json_integer_value(json_object_get(n, "hResult")), 0x80094011LL);
    const char *d = json_string_value(json_object_get(n, "errorDescription"));
    assert_non_null(d);                           /* jansson parsed it: valid UTF-8 */
    assert_int_equal(strlen(d), 254);             /* 127 whole characters <= 255 bytes */
    json_decref(calls);
}

static void test_revocations(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control",
        "{\"revocations\": [{\"requestContext\": \"ctx-1\", \"serialNumber\": \"0A1B\","
        " \"issuerName\": \"CN=Test CA\", \"caConfiguration\": \"scepd\"},"
        " {\"requestContext\": \"ctx-2\", \"serialNumber\": \"FF\"}]}"), 200);
    waiter w;
    waiter_init(&w);
    assert_int_equal(mdm_revocations_download(f->s, 10, "CN=Test CA", on_revocations, &w), 0);
    assert_int_equal(waiter_wait(&w, 1), 0);
    assert_int_equal(w.v.result, MDM_ALLOW);
    assert_int_equal(w.nrevs, 2);
    assert_string_equal(w.revs[0].request_context, "ctx-1");
    assert_string_equal(w.revs[0].serial, "0A1B");
    assert_string_equal(w.revs[0].issuer_name, "CN=Test CA");
    assert_string_equal(w.revs[1].serial, "FF");
    mdm_revocation_result res[2] = {
        { .request_context = "ctx-1", .succeeded = 1 },
        { .request_context = "ctx-2", .succeeded = 0, .error_code = MDM_REV_NOT_FOUND,
          .error_message = "no such certificate" },
    };
    assert_int_equal(mdm_revocations_upload(f->s, res, 2, on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 2), 0);
    assert_int_equal(w.v.result, MDM_ALLOW);
    json_t *calls = emu_calls(&f->e);
    json_t *dl = json_object_get(json_object_get(emu_last(calls, "/downloadRevocationRequests"),
                                                 "body"), "downloadParameters");
    assert_int_equal(json_integer_value(json_object_get(dl, "maxRequests")), 10);
    json_t *up = emu_last(calls, "/uploadRevocationResults");
    assert_string_equal(json_string_value(json_object_get(json_object_get(up, "headers"),
                                                          "api-version")), "5019-05-05");
    json_t *r1 = json_array_get(json_object_get(json_object_get(up, "body"), "results"), 1);
    assert_true(json_is_false(json_object_get(r1, "succeeded")));
    /* The reference library's enum goes by name (a string enum converter). */
    assert_string_equal(json_string_value(json_object_get(r1, "errorCode")),
                        "CertificateNotFoundError");
    json_t *r0 = json_array_get(json_object_get(json_object_get(up, "body"), "results"), 0);
    assert_string_equal(json_string_value(json_object_get(r0, "errorCode")), "None");
    assert_true(json_is_null(json_object_get(r0, "errorMessage")));
    json_decref(calls);
    assert_int_equal(emu_post(&f->e, "/_control", "{\"upload_value\": false}"), 200);
    assert_int_equal(mdm_revocations_upload(f->s, res, 1, on_verdict, &w), 0);
    assert_int_equal(waiter_wait(&w, 3), 0);
    assert_int_not_equal(w.v.result, MDM_ALLOW);
}

/* setup_short: timeout 400 ms, no retries, max_in_flight 2. */
static void test_slow_answer_times_out(void **state)
{
    fx *f = *state;
    assert_int_equal(validate(f, "tx-warm").result, MDM_ALLOW);   /* token + discovery */
    assert_int_equal(emu_post(&f->e, "/_control", "{\"delay_ms\": 1500}"), 200);
    mdm_verdict v = validate(f, "tx-slow");
    assert_int_equal(v.result, MDM_ERROR);
    assert_int_equal(v.diag, MDM_DIAG_TIMEOUT);
    assert_string_equal(mdm_diag_code(v.diag), "mdm_timeout");
}

static void test_in_flight_bound(void **state)
{
    fx *f = *state;
    assert_int_equal(validate(f, "tx-warm").result, MDM_ALLOW);
    assert_int_equal(emu_post(&f->e, "/_control", "{\"delay_ms\": 1000}"), 200);
    waiter w;
    waiter_init(&w);
    mdm_request r = { .kind = MDM_INTUNE, .txid = "tx-b", .csr_der = f->csr,
                      .csr_len = f->csr_len };
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), 0);
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), 0);
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), -EAGAIN);
    assert_int_equal(waiter_wait(&w, 2), 0);
    mdm_stats st;
    mdm_stage_stats(f->s, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), 0);      /* room again */
    assert_int_equal(waiter_wait(&w, 3), 0);
}

static void test_shutdown_answers_pending(void **state)
{
    fx *f = *state;
    assert_int_equal(emu_post(&f->e, "/_control", "{\"delay_ms\": 1500}"), 200);
    waiter w;
    waiter_init(&w);
    mdm_request r = { .kind = MDM_INTUNE, .txid = "tx-stop", .csr_der = f->csr,
                      .csr_len = f->csr_len };
    assert_int_equal(mdm_submit(f->s, &r, on_verdict, &w), 0);
    mdm_stage_destroy(f->s);
    f->s = NULL;
    assert_int_equal(w.done, 1);
    assert_int_equal(w.v.result, MDM_ERROR);
    assert_int_equal(w.v.diag, MDM_DIAG_SHUTDOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allow_and_wire_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_refusal_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_5xx_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_endpoint_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_token_reauth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_refreshed_before_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_missing_from_discovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_notification_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_notification_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_notification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_answer_times_out, setup_short, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_bound, setup_short, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_answers_pending, setup_short, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
