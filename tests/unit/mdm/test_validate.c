/* Tests of engine/mdm/validate.c and mdm_config.c that need no emulator: the configuration
 * file (keys, limits, secrets, URL rule, cross checks), the diagnostic table, and the
 * refusals of mdm_submit / mdm_notify_* (missing facts, integration not configured). The
 * stage under load (bound, retries, timeouts, reuse, shutdown) is exercised in test_intune.c
 * and test_webhook.c against the emulators. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/mdm/mdm_config.h"
#include "engine/mdm/validate.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/scepd-mdmcfg-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char p[128];
    snprintf(p, sizeof(p), "%s/intune.secret", dir);
    FILE *f = fopen(p, "w");
    fputs("s3cret\r\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int parse(mdm_config *c, const char *text, char *err)
{
    mdm_config_defaults(c);
    return mdm_config_parse(c, text, strlen(text), dir, err, 256);
}

static void test_config_good(void **state)
{
    (void)state;
    mdm_config c;
    char err[256] = "";
    const char *text =
        "[mdm]\nmax_in_flight = 512\ntimeout = 2s\nretries = 3 # comment\nretry_backoff = 50ms\n"
        "[intune]\ntenant = contoso.onmicrosoft.com\nclient_id = abc\n"
        "client_secret_file = intune.secret\nlogin_url = http://127.0.0.1:9/\n"
        "validation_url = https://scep.manage.microsoft.com/svc\n"
        "[ndes]\nttl = 30m\nencoding = utf-8\nca_name = \"Corp CA\"\n";
    assert_int_equal(parse(&c, text, err), 0);
    assert_int_equal(c.max_in_flight, 512);
    assert_int_equal(c.timeout_ms, 2000);
    assert_int_equal(c.retries, 3);
    assert_int_equal(c.retry_backoff_ms, 50);
    assert_string_equal(c.client_secret, "s3cret");
    assert_int_equal(c.client_secret_len, 6);
    assert_true(mdm_config_intune_enabled(&c));
    assert_false(mdm_config_webhook_enabled(&c));
    assert_int_equal(c.ndes_ttl_s, 1800);
    assert_int_equal(c.ndes_encoding, MDM_NDES_UTF8);
    assert_string_equal(c.ndes_ca_name, "Corp CA");
    assert_string_equal(c.resource, "https://api.manage.microsoft.com/");
    mdm_config_cleanse(&c);
    assert_int_equal(c.client_secret[0], 0);
}

static void test_config_refusals(void **state)
{
    (void)state;
    static const struct { const char *text, *msg; } bad[] = {
        { "[mdm]\nnope = 1\n", "line 2: unknown key" },
        { "[other]\n", "line 1: unknown section" },
        { "key = 1\n", "line 1: key outside a section" },
        { "[mdm]\nretries = 11\n", "line 2: retries" },
        { "[mdm]\ntimeout = 10\"\n", "line 2: quote inside" },
        { "[webhook]\nurl = http://mdm.example/check\n", "line 2: url: https://" },
        { "[webhook]\nurl = https://mdm.example/check\n", "[webhook] needs secret_file" },
        { "[intune]\ntenant = t\n", "[intune] needs tenant" },
        { "[intune]\nclient_secret_file = missing\n", "line 2: " },
        { "[ndes]\nencoding = latin1\n", "line 2: encoding" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mdm_config c;
        char err[256] = "";
        mdm_config_defaults(&c);
        c.max_in_flight = 7;
        assert_int_equal(mdm_config_parse(&c, bad[i].text, strlen(bad[i].text), dir, err,
                                          sizeof(err)), -1);
        assert_non_null(strstr(err, bad[i].msg));
        assert_int_equal(c.max_in_flight, 7);          /* unchanged on failure */
    }
}

static void test_url_rule(void **state)
{
    (void)state;
    assert_true(mdm_url_allowed("https://login.microsoftonline.com"));
    assert_true(mdm_url_allowed("http://127.0.0.1:8080/x"));
    assert_true(mdm_url_allowed("http://[::1]:1"));
    assert_true(mdm_url_allowed("http://localhost/"));
    assert_false(mdm_url_allowed("http://127.0.0.1.evil.example/"));
    assert_false(mdm_url_allowed("http://example.com/"));
    assert_false(mdm_url_allowed("ftp://127.0.0.1/"));
    assert_false(mdm_url_allowed("https://"));
}

static void test_diag_table(void **state)
{
    (void)state;
    assert_string_equal(mdm_diag_code(MDM_DIAG_OK), "ok");
    assert_string_equal(mdm_diag_code(MDM_DIAG_DENIED), "mdm_denied");
    assert_string_equal(mdm_diag_code(-1), "unknown");
    assert_string_equal(mdm_diag_code(MDM_DIAG__COUNT), "unknown");
    assert_int_equal(mdm_diag_hresult(MDM_DIAG_OK), 0);
    for (int d = 1; d < MDM_DIAG__COUNT; d++)          /* every failure has a failing HRESULT */
        assert_true((mdm_diag_hresult(d) & 0x80000000u) != 0);
}

static void no_call(void *arg, const mdm_verdict *v)
{
    (void)arg;
    (void)v;
    fail_msg("callback after a refused call");
}

static void test_submit_refusals(void **state)
{
    (void)state;
    mdm_config c;
    mdm_stage *s = NULL;
    mdm_config_defaults(&c);
    assert_int_equal(mdm_stage_create(&c, NULL, &s), 0);
    const uint8_t csr[] = { 0x30, 0x00 };
    mdm_request r = { .kind = MDM_INTUNE, .txid = "t", .csr_der = csr, .csr_len = sizeof(csr) };
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -ENOTSUP);
    r.kind = MDM_WEBHOOK;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -ENOTSUP);
    r.kind = 99;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    r.kind = MDM_INTUNE;
    r.txid = NULL;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    r.txid = "t";
    r.csr_len = 0;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    assert_int_equal(mdm_submit(s, &r, NULL, NULL), -EINVAL);
    assert_int_equal(mdm_notify_failure(s, "t", csr, sizeof(csr), 1, "x", NULL, NULL), -ENOTSUP);
    assert_int_equal(mdm_revocations_download(s, 0, NULL, NULL, NULL), -EINVAL);
    mdm_stats st;
    mdm_stage_stats(s, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.http_attempts, 0);
    mdm_stage_destroy(s);
    mdm_stage_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_url_rule),
        cmocka_unit_test(test_diag_table),
        cmocka_unit_test(test_submit_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
