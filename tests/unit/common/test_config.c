/* Tests for engine/common/config.c: every key, every error, the secret readers and the loader. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/common/config.h"

static char errbuf[512];

/* Parses text over defaults; returns the rc and leaves the message in errbuf. */
static int parse(config *c, const char *text, const char *base)
{
    config_defaults(c);
    errbuf[0] = '\0';
    return config_parse(c, text, strlen(text), base, errbuf, sizeof(errbuf));
}

/* Parses one "key = value" in a section and expects failure with a message containing want. */
static void expect_err(const char *text, const char *want)
{
    config c, before;
    config_defaults(&c);
    before = c;
    errbuf[0] = '\0';
    int rc = config_parse(&c, text, strlen(text), "/base", errbuf, sizeof(errbuf));
    if (rc != -1 || strstr(errbuf, want) == NULL)
        fail_msg("input \"%s\": rc %d, error \"%s\", wanted \"%s\"", text, rc, errbuf, want);
    assert_memory_equal(&c, &before, sizeof(c));   /* nothing applied on failure */
}

static void expect_ok(const char *text, config *c)
{
    if (parse(c, text, "/base") != 0)
        fail_msg("input \"%s\": %s", text, errbuf);
}

static void test_defaults(void **state)
{
    (void)state;
    config c;
    memset(&c, 0x5A, sizeof(c));
    config_defaults(&c);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_int_equal(c.shards, 0);
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.max_url, 65534);
    assert_int_equal(c.max_header, 16384);
    assert_int_equal(c.max_body, 256 * 1024);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.max_conns, 4096);
    assert_int_equal(c.yield_to_workers, 1);
    assert_string_equal(c.state_dir, ".");
    assert_string_equal(c.audit_log, "-");
    assert_int_equal(c.key_mode, CONFIG_KEYS_PKCS11);
    assert_string_equal(c.pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
    assert_string_equal(c.token_label, "scepd");
    assert_string_equal(c.pin_file, "");
    assert_string_equal(c.ca_key_label, "ca");
    assert_string_equal(c.ra_key_label, "ra");
    assert_string_equal(c.ca_key_file, "");
    assert_string_equal(c.ra_key_file, "");
    assert_string_equal(c.ca_cert, "");
    assert_string_equal(c.ra_cert, "");
    assert_string_equal(c.store_path, "store");
    assert_int_equal(c.store_map_size, 64u << 20);
    assert_int_equal(c.batch_max, 256);
    assert_int_equal(c.validity_days, 365);
    assert_int_equal(c.backdate_s, 300);
    assert_string_equal(c.challenge, "");
    assert_string_equal(c.challenge_file, "");
    assert_int_equal(c.allow_sha1, 0);

    /* an empty text changes nothing */
    config d;
    assert_int_equal(parse(&d, "", NULL), 0);
    assert_memory_equal(&c, &d, sizeof(c));
}

static const char full_text[] =
    "# every key, none at its default\n"
    "; both comment characters\n"
    "\n"
    "[server]\n"
    "listen = 0.0.0.0:8443\n"
    "shards = 2\n"
    "crypto_workers = 16\n"
    "max_url = 32k\n"
    "max_header = 8KiB\n"
    "max_body = 1m\n"
    "header_timeout = 5s\n"
    "idle_timeout = 2m\n"
    "max_connections = 1000\n"
    "state_dir = state\n"
    "audit_log = audit.log\n"
    "[keys]\n"
    "mode = file\n"
    "pkcs11_module = libsofthsm2.so\n"
    "token_label = \"my token\"\n"
    "pin_file = pin.txt\n"
    "ca_key_label = ca2\n"
    "ra_key_label = ra2\n"
    "ca_key_file = keys/ca.key\n"
    "ra_key_file = /abs/ra.key\n"
    "ca_cert = ca.pem\n"
    "ra_cert = ra.der\n"
    "[store]\n"
    "path = db\n"
    "map_size = 1g\n"
    "batch_max = 64\n"
    "[issue]\n"
    "validity_days = 730\n"
    "backdate = 5m\n"
    "challenge_file = challenge.txt\n"
    "allow_sha1 = yes\n";

static void test_every_key(void **state)
{
    (void)state;
    config c;
    expect_ok(full_text, &c);
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 8443);
    assert_int_equal(c.shards, 2);
    assert_int_equal(c.workers, 16);
    assert_int_equal(c.max_url, 32768);
    assert_int_equal(c.max_header, 8192);
    assert_int_equal(c.max_body, 1 << 20);
    assert_int_equal(c.header_timeout_ms, 5000);
    assert_int_equal(c.idle_timeout_ms, 120000);
    assert_int_equal(c.max_conns, 1000);
    assert_string_equal(c.state_dir, "/base/state");
    assert_string_equal(c.audit_log, "/base/audit.log");
    assert_int_equal(c.key_mode, CONFIG_KEYS_FILE);
    assert_string_equal(c.pkcs11_module, "libsofthsm2.so");   /* left to the loader's search */
    assert_string_equal(c.token_label, "my token");
    assert_string_equal(c.pin_file, "/base/pin.txt");
    assert_string_equal(c.ca_key_label, "ca2");
    assert_string_equal(c.ra_key_label, "ra2");
    assert_string_equal(c.ca_key_file, "/base/keys/ca.key");
    assert_string_equal(c.ra_key_file, "/abs/ra.key");
    assert_string_equal(c.ca_cert, "/base/ca.pem");
    assert_string_equal(c.ra_cert, "/base/ra.der");
    assert_string_equal(c.store_path, "/base/db");
    assert_int_equal(c.store_map_size, 1u << 30);
    assert_int_equal(c.batch_max, 64);
    assert_int_equal(c.validity_days, 730);
    assert_int_equal(c.backdate_s, 300 * 1);
    assert_string_equal(c.challenge_file, "/base/challenge.txt");
    assert_int_equal(c.allow_sha1, 1);

    /* without base_dir, paths stay as written */
    assert_int_equal(parse(&c, full_text, NULL), 0);
    assert_string_equal(c.state_dir, "state");
    assert_string_equal(c.ca_key_file, "keys/ca.key");

    /* the other values of the enumerations, and a static challenge */
    expect_ok("[keys]\nmode = pkcs11\n[issue]\nchallenge = s3cret\nbackdate = 0\n", &c);
    assert_int_equal(c.key_mode, CONFIG_KEYS_PKCS11);
    assert_string_equal(c.challenge, "s3cret");
    assert_int_equal(c.backdate_s, 0);
    expect_ok("[server]\nyield_to_workers = no\n", &c);
    assert_int_equal(c.yield_to_workers, 0);
    expect_err("[server]\nyield_to_workers = sometimes\n", "yield_to_workers");
    expect_ok("[server]\naudit_log = -\nstate_dir = /var/lib/scepd\n", &c);
    assert_string_equal(c.audit_log, "-");
    assert_string_equal(c.state_dir, "/var/lib/scepd");
}

/* A retired switch: "no" still loads and changes nothing; anything else is refused with
 * what replaced it (allow_des_requests: a profile's allow_des). */
static void test_retired_keys(void **state)
{
    (void)state;
    config c, d;
    config_defaults(&d);
    expect_ok("[issue]\nallow_des_requests = no\n", &c);
    assert_memory_equal(&c, &d, sizeof(c));
    expect_ok("[issue]\nallow_des_requests = off   # old example\n", &c);
    expect_err("[issue]\nallow_des_requests = yes\n",
               "line 2: 'allow_des_requests = yes' is no longer supported");
    expect_err("[issue]\nallow_des_requests = yes\n", "allow_des = yes in the profile");
    expect_err("[issue]\nallow_des_requests = maybe\n", "no longer supported");
    expect_err("[issue]\nallow_des_requests = \"unterminated\n", "no longer supported");
    expect_err("[server]\nallow_des_requests = no\n", "unknown key 'allow_des_requests' in [server]");
}

static void test_listen(void **state)
{
    (void)state;
    config c;
    expect_ok("[server]\nlisten = [::1]:8443\n", &c);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 8443);
    expect_ok("[server]\nlisten = [fe80::1%eth0]:80\n", &c);
    assert_string_equal(c.listen_host, "fe80::1%eth0");
    expect_ok("[server]\nlisten = localhost:0\n", &c);
    assert_string_equal(c.listen_host, "localhost");
    assert_int_equal(c.listen_port, 0);
    expect_ok("[server]\nlisten = h:65535\n", &c);
    assert_int_equal(c.listen_port, 65535);

    expect_err("[server]\nlisten = ::1:80\n", "line 2: bad listen address '::1:80'");
    expect_err("[server]\nlisten = [::1]80\n", "want [v6addr]:port");
    expect_err("[server]\nlisten = [::1]\n", "want [v6addr]:port");
    expect_err("[server]\nlisten = [host]:80\n", "want [v6addr]:port");
    expect_err("[server]\nlisten = [::1:80\n", "want [v6addr]:port");
    expect_err("[server]\nlisten = host\n", "want host:port");
    expect_err("[server]\nlisten = :80\n", "has no host");
    expect_err("[server]\nlisten = []:80\n", "want [v6addr]:port");
    expect_err("[server]\nlisten = h:65536\n", "bad port");
    expect_err("[server]\nlisten = h:\n", "bad port");
    expect_err("[server]\nlisten = h:-1\n", "bad port");
    expect_err("[server]\nlisten = h:80x\n", "bad port");
    expect_err("[server]\nlisten = b@d:80\n", "bad character in listen host");
    expect_err("[server]\nlisten = "
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:80\n",
               "listen host too long (max 63 bytes)");
    expect_err("[server]\nlisten =\n", "bad listen address");
}

static void test_numbers(void **state)
{
    (void)state;
    config c;
    expect_ok("[server]\nshards = 256\ncrypto_workers = 1024\nmax_connections = 1\n", &c);
    assert_int_equal(c.shards, 256);
    assert_int_equal(c.workers, 1024);
    assert_int_equal(c.max_conns, 1);
    expect_ok("[issue]\nvalidity_days = 1\n", &c);
    assert_int_equal(c.validity_days, 1);
    expect_ok("[issue]\nvalidity_days = 36500\n", &c);
    assert_int_equal(c.validity_days, 36500);
    expect_ok("[store]\nbatch_max = 65536\nmap_size = 1MiB\n", &c);
    assert_int_equal(c.batch_max, 65536);
    assert_int_equal(c.store_map_size, 1u << 20);

    expect_err("[server]\nshards = 257\n", "line 2: bad value '257' for 'shards' (want an integer 0..256)");
    expect_err("[server]\nshards = -1\n", "bad value '-1' for 'shards'");
    expect_err("[server]\nshards = 4x\n", "bad value '4x'");
    expect_err("[server]\nshards =\n", "bad value '' for 'shards'");
    expect_err("[server]\nshards = 99999999999999999999999\n", "bad value");
    expect_err("[server]\ncrypto_workers = 1025\n", "want an integer 0..1024");
    expect_err("[server]\nmax_connections = 0\n", "'max_connections'");
    expect_err("[issue]\nvalidity_days = 0\n", "want an integer 1..36500");
    expect_err("[issue]\nvalidity_days = 36501\n", "want an integer 1..36500");
    expect_err("[store]\nbatch_max = 0\n", "'batch_max'");
    expect_err("[store]\nbatch_max = 65537\n", "'batch_max'");

    /* sizes */
    expect_err("[store]\nmap_size = 512k\n", "bad size '512k' for 'map_size'");
    expect_err("[store]\nmap_size = 2t\n", "bad size");
    expect_err("[server]\nmax_body = 12x\n", "bad size '12x' for 'max_body'");
    expect_err("[server]\nmax_body = 2g\n", "'max_body'");
    expect_err("[server]\nmax_url = 100\n", "'max_url'");
    expect_err("[server]\nmax_header = 17m\n", "'max_header'");

    /* durations */
    expect_ok("[server]\nheader_timeout = 500ms\nidle_timeout = 2h\n", &c);
    assert_int_equal(c.header_timeout_ms, 500);
    assert_int_equal(c.idle_timeout_ms, 7200000);
    expect_ok("[server]\nidle_timeout = 1d\n", &c);
    assert_int_equal(c.idle_timeout_ms, 86400000);
    expect_err("[server]\nheader_timeout = 0\n", "bad duration '0' for 'header_timeout'");
    expect_err("[server]\nidle_timeout = 25h\n", "'idle_timeout'");
    expect_err("[server]\nidle_timeout = 5 s\n", "'idle_timeout'");
    expect_err("[issue]\nbackdate = 1500ms\n", "whole seconds");
    expect_err("[issue]\nbackdate = 31d\n", "'backdate'");
    expect_ok("[issue]\nbackdate = 30d\n", &c);
    assert_int_equal(c.backdate_s, 30 * 86400);
}

static void test_enums(void **state)
{
    (void)state;
    static const char *const yes[] = { "yes", "true", "1", "YES", "True", "on" };
    static const char *const no[] = { "no", "false", "0", "NO", "False", "off" };
    char text[64];
    config c;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(text, sizeof(text), "[issue]\nallow_sha1 = %s\n", yes[i]);
        expect_ok(text, &c);
        assert_int_equal(c.allow_sha1, 1);
        snprintf(text, sizeof(text), "[issue]\nallow_sha1 = yes\nallow_sha1 = %s\n", no[i]);
        expect_ok(text, &c);
        assert_int_equal(c.allow_sha1, 0);
    }
    expect_err("[issue]\nallow_sha1 = maybe\n", "bad value 'maybe' for 'allow_sha1'");
    expect_err("[issue]\nallow_sha1 =\n", "'allow_sha1'");
    expect_err("[keys]\nmode = hsm\n", "line 2: bad mode 'hsm' (want pkcs11 or file)");
    expect_err("[keys]\nmode = PKCS11\n", "bad mode");
}

static void test_syntax(void **state)
{
    (void)state;
    config c;
    /* CRLF, whitespace everywhere, spaced section name, no final newline, inline comments */
    expect_ok("\r\n  # comment\r\n\t[ server ]  ; why\r\n  shards\t=  3   # three\r\n"
              "[issue]\r\nchallenge = pa#ss;word\r\nvalidity_days=10", &c);
    assert_int_equal(c.shards, 3);
    assert_string_equal(c.challenge, "pa#ss;word");   /* no whitespace before: not a comment */
    assert_int_equal(c.validity_days, 10);

    expect_ok("[issue]\nchallenge = \"a # b ; c  \"  # trailing\n", &c);
    assert_string_equal(c.challenge, "a # b ; c  ");
    expect_ok("[issue]\nchallenge = \"say \\\"hi\\\" \\\\ \\n\"\n", &c);
    assert_string_equal(c.challenge, "say \"hi\" \\ \\n");
    expect_ok("[keys]\npin_file = /x\npin_file =\n", &c);
    assert_string_equal(c.pin_file, "");
    expect_ok("[keys]\npin_file = /x\npin_file = \"\"\n", &c);
    assert_string_equal(c.pin_file, "");
    expect_ok("[keys]\ntoken_label = two words\n", &c);
    assert_string_equal(c.token_label, "two words");

    expect_err("shards = 2\n", "line 1: key 'shards' outside a section");
    expect_err("# c\n\n[server]\nbogus = 1\n", "line 4: unknown key 'bogus' in [server]");
    expect_err("[server]\nmode = file\n", "unknown key 'mode' in [server]");
    expect_err("[keys]\nShards = 1\n", "unknown key 'Shards' in [keys]");
    expect_err("[bogus]\n", "line 1: unknown section [bogus]");
    expect_err("[Server]\n", "unknown section [Server]");
    expect_err("[server\n", "line 1: missing ']' in section header");
    expect_err("[server] x\n", "line 1: text after section header");
    expect_err("[server]\nshards\n", "line 2: expected 'key = value'");
    expect_err("[server]\n = 3\n", "line 2: missing key before '='");
    expect_err("[issue]\nchallenge = \"abc\n", "line 2: unterminated quote for 'challenge'");
    expect_err("[issue]\nchallenge = \"abc\\\"\n", "unterminated quote");
    expect_err("[issue]\nchallenge = \"abc\" def\n", "text after closing quote for 'challenge'");
    expect_err("[issue]\nchallenge = ab\"c\n", "quote inside an unquoted value");
    expect_err("[issue]\nchallenge = x\nchallenge_file = /f\n",
               "challenge and challenge_file are both set");

    static const char nul[] = "[server]\nshards = 1\0\n";
    config_defaults(&c);
    assert_int_equal(config_parse(&c, nul, sizeof(nul) - 1, NULL, errbuf, sizeof(errbuf)), -1);
    assert_string_equal(errbuf, "line 2: NUL byte");

    /* text need not be NUL-terminated: only len bytes are read */
    config_defaults(&c);
    assert_int_equal(config_parse(&c, "[server]\nshards = 12", 19, NULL, errbuf,
                                  sizeof(errbuf)), 0);
    assert_int_equal(c.shards, 1);

    /* a tiny or absent error buffer is fine */
    char small[8];
    config_defaults(&c);
    assert_int_equal(config_parse(&c, "[x]\n", 4, NULL, small, sizeof(small)), -1);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(config_parse(&c, "[x]\n", 4, NULL, NULL, 0), -1);
}

static void test_layering(void **state)
{
    (void)state;
    config c;
    expect_ok("[server]\nshards = 3\n", &c);
    const char *more = "[issue]\nvalidity_days = 9\n";
    assert_int_equal(config_parse(&c, more, strlen(more), NULL, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(c.shards, 3);          /* kept from the first text */
    assert_int_equal(c.validity_days, 9);
    /* a failing text changes nothing, even keys before the failing line */
    const char *bad = "[server]\nshards = 7\nbogus = 1\n";
    assert_int_equal(config_parse(&c, bad, strlen(bad), NULL, errbuf, sizeof(errbuf)), -1);
    assert_int_equal(c.shards, 3);
}

static void test_lengths(void **state)
{
    (void)state;
    char text[3000], v[2100];
    config c;

    memset(v, 'a', 63);
    v[63] = '\0';
    snprintf(text, sizeof(text), "[keys]\ntoken_label = %s\n", v);
    expect_ok(text, &c);
    assert_string_equal(c.token_label, v);
    memset(v, 'a', 64);
    v[64] = '\0';
    snprintf(text, sizeof(text), "[keys]\ntoken_label = %s\n", v);
    expect_err(text, "line 2: value too long for 'token_label' (max 63 bytes)");
    snprintf(text, sizeof(text), "[keys]\nca_key_label = \"%s\"\n", v);
    expect_err(text, "value too long for 'ca_key_label'");
    snprintf(text, sizeof(text), "[keys]\nra_key_label = %s\n", v);
    expect_err(text, "value too long for 'ra_key_label'");

    memset(v, 'c', 255);
    v[255] = '\0';
    snprintf(text, sizeof(text), "[issue]\nchallenge = %s\n", v);
    expect_ok(text, &c);
    assert_int_equal(strlen(c.challenge), 255);
    memset(v, 'c', 256);
    v[256] = '\0';
    snprintf(text, sizeof(text), "[issue]\nchallenge = %s\n", v);
    expect_err(text, "value too long for 'challenge' (max 255 bytes)");

    /* absolute path: 1023 fits, 1024 does not */
    v[0] = '/';
    memset(v + 1, 'p', 1022);
    v[1023] = '\0';
    snprintf(text, sizeof(text), "[store]\npath = %s\n", v);
    expect_ok(text, &c);
    assert_int_equal(strlen(c.store_path), 1023);
    memset(v + 1, 'p', 1023);
    v[1024] = '\0';
    snprintf(text, sizeof(text), "[store]\npath = %s\n", v);
    expect_err(text, "value too long for 'path' (max 1023 bytes)");
    /* relative path that only overflows once base_dir is prepended */
    memset(v, 'p', 1020);
    v[1020] = '\0';
    snprintf(text, sizeof(text), "[keys]\nca_cert = %s\n", v);
    expect_err(text, "after resolving against the configuration directory");
    assert_int_equal(parse(&c, text, NULL), 0);
    /* longer than any field: refused while reading the value */
    memset(v, 'q', 2000);
    v[2000] = '\0';
    snprintf(text, sizeof(text), "[keys]\npkcs11_module = %s\n", v);
    expect_err(text, "value too long for 'pkcs11_module'");
    snprintf(text, sizeof(text), "[keys]\npkcs11_module = \"%s\"\n", v);
    expect_err(text, "value too long for 'pkcs11_module'");
    /* every other string field refuses overlong values too */
    static const char *const keys[] = {
        "[server]\nstate_dir", "[server]\naudit_log", "[keys]\npin_file", "[keys]\nca_key_file",
        "[keys]\nra_key_file", "[keys]\nra_cert", "[issue]\nchallenge_file",
    };
    memset(v, '/', 1);
    memset(v + 1, 'r', 1100);
    v[1101] = '\0';
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(text, sizeof(text), "%s = %s\n", keys[i], v);
        expect_err(text, "value too long");
    }
}

static void test_duration(void **state)
{
    (void)state;
    assert_int_equal(config_parse_duration_ms("30"), 30000);
    assert_int_equal(config_parse_duration_ms("30s"), 30000);
    assert_int_equal(config_parse_duration_ms("500ms"), 500);
    assert_int_equal(config_parse_duration_ms("10m"), 600000);
    assert_int_equal(config_parse_duration_ms("2h"), 7200000);
    assert_int_equal(config_parse_duration_ms("7d"), 604800000);
    assert_int_equal(config_parse_duration_ms("0"), 0);
    assert_int_equal(config_parse_duration_ms(""), -1);
    assert_int_equal(config_parse_duration_ms("s"), -1);
    assert_int_equal(config_parse_duration_ms("-1"), -1);
    assert_int_equal(config_parse_duration_ms(" 5"), -1);
    assert_int_equal(config_parse_duration_ms("5 s"), -1);
    assert_int_equal(config_parse_duration_ms("5x"), -1);
    assert_int_equal(config_parse_duration_ms("5S"), -1);
    assert_int_equal(config_parse_duration_ms("1.5s"), -1);
    assert_int_equal(config_parse_duration_ms("99999999999999999999"), -1);
    assert_int_equal(config_parse_duration_ms("9223372036854775d"), -1);
    assert_int_equal(config_parse_duration_ms(NULL), -1);
}

static void test_size(void **state)
{
    (void)state;
    size_t n = 7;
    assert_int_equal(config_parse_size("1024", &n), 0);
    assert_int_equal(n, 1024);
    assert_int_equal(config_parse_size("256k", &n), 0);
    assert_int_equal(n, 262144);
    assert_int_equal(config_parse_size("256KiB", &n), 0);
    assert_int_equal(n, 262144);
    assert_int_equal(config_parse_size("16m", &n), 0);
    assert_int_equal(n, 16u << 20);
    assert_int_equal(config_parse_size("2MB", &n), 0);
    assert_int_equal(n, 2u << 20);
    assert_int_equal(config_parse_size("1g", &n), 0);
    assert_int_equal(n, 1u << 30);
    assert_int_equal(config_parse_size("1G", &n), 0);
    assert_int_equal(n, 1u << 30);
    assert_int_equal(config_parse_size("3t", &n), 0);
    assert_int_equal(n, (size_t)3 << 40);
    assert_int_equal(config_parse_size("10b", &n), 0);
    assert_int_equal(n, 10);
    n = 7;
    assert_int_equal(config_parse_size("", &n), -1);
    assert_int_equal(config_parse_size("k", &n), -1);
    assert_int_equal(config_parse_size("1kk", &n), -1);
    assert_int_equal(config_parse_size("-1", &n), -1);
    assert_int_equal(config_parse_size("1 k", &n), -1);
    assert_int_equal(config_parse_size("18446744073709551615k", &n), -1);
    assert_int_equal(config_parse_size("99999999999999999999999", &n), -1);
    assert_int_equal(config_parse_size(NULL, &n), -1);
    assert_int_equal(n, 7);   /* untouched on failure */
}

/* ---- files ---- */

static char tmpdir[64];

static int files_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int files_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const void *data, size_t len, char *path, size_t plen)
{
    snprintf(path, plen, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_load(void **state)
{
    (void)state;
    char path[256], want[1200];
    config c;
    const char *text = "[server]\nshards = 5\nstate_dir = st\naudit_log = -\n"
                       "[store]\npath = /abs/db\n";
    write_file("scepd.conf", text, strlen(text), path, sizeof(path));
    char *real = realpath(tmpdir, NULL);
    assert_non_null(real);

    memset(&c, 0, sizeof(c));
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(c.shards, 5);
    assert_int_equal(c.validity_days, 365);            /* defaults underneath */
    snprintf(want, sizeof(want), "%s/st", real);
    assert_string_equal(c.state_dir, want);
    assert_string_equal(c.audit_log, "-");
    assert_string_equal(c.store_path, "/abs/db");
    snprintf(want, sizeof(want), "%s/profiles", real);   /* default, beside the file */
    assert_string_equal(c.profiles_dir, want);

    /* profiles_dir: relative to the file, or absolute as written */
    const char *t2 = "[issue]\nprofiles_dir = p2\n";
    write_file("p.conf", t2, strlen(t2), path, sizeof(path));
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    snprintf(want, sizeof(want), "%s/p2", real);
    assert_string_equal(c.profiles_dir, want);
    const char *t3 = "[issue]\nprofiles_dir = /etc/scepd/profiles\n";
    write_file("p.conf", t3, strlen(t3), path, sizeof(path));
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(c.profiles_dir, "/etc/scepd/profiles");
    write_file("scepd.conf", text, strlen(text), path, sizeof(path));
    snprintf(want, sizeof(want), "%s/st", real);

    /* a bare file name resolves against the working directory's real path */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpdir), 0);
    assert_int_equal(config_load(&c, "scepd.conf", errbuf, sizeof(errbuf)), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(c.state_dir, want);
    free(real);

    /* errors: missing file, a directory, a bad line (cfg untouched) */
    config before = c;
    snprintf(path, sizeof(path), "%s/missing.conf", tmpdir);
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), -1);
    assert_non_null(strstr(errbuf, "missing.conf: No such file or directory"));
    assert_int_equal(config_load(&c, tmpdir, errbuf, sizeof(errbuf)), -1);
    assert_non_null(strstr(errbuf, tmpdir));
    write_file("bad.conf", "[server]\nshards = 1\nnope = 2\n", 29, path, sizeof(path));
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), -1);
    assert_string_equal(errbuf, "line 3: unknown key 'nope' in [server]");
    assert_memory_equal(&c, &before, sizeof(c));
}

static void test_read_pin(void **state)
{
    (void)state;
    char path[256], pin[16], err[256];
    config c;
    config_defaults(&c);

    write_file("pin1", "1234\n", 5, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), 0);
    assert_string_equal(pin, "1234");
    write_file("pin2", "5678\r\n\n", 7, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), 0);
    assert_string_equal(pin, "5678");
    write_file("pin3", "no newline", 10, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), 0);
    assert_string_equal(pin, "no newline");

    strcpy(pin, "unchanged");
    write_file("empty", "", 0, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is empty"));
    write_file("nl", "\r\n", 2, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is empty"));
    write_file("long", "0123456789abcdef\n", 17, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long (max 15 bytes)"));
    write_file("nul", "12\0" "34\n", 6, c.pin_file, sizeof(c.pin_file));
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NUL"));
    snprintf(c.pin_file, sizeof(c.pin_file), "%s/absent", tmpdir);
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "No such file"));
    snprintf(c.pin_file, sizeof(c.pin_file), "%s", tmpdir);     /* a directory */
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_string_equal(pin, "unchanged");

    /* from the environment when no pin_file is set */
    c.pin_file[0] = '\0';
    assert_int_equal(setenv("SCEPD_PIN", "env-pin", 1), 0);
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), 0);
    assert_string_equal(pin, "env-pin");
    assert_int_equal(setenv("SCEPD_PIN", "0123456789abcdef", 1), 0);
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too long"));
    assert_int_equal(setenv("SCEPD_PIN", "", 1), 0);
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no PIN"));
    assert_int_equal(unsetenv("SCEPD_PIN"), 0);
    assert_int_equal(config_read_pin(&c, pin, sizeof(pin), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "SCEPD_PIN"));
    (void)path;
}

static void test_read_challenge(void **state)
{
    (void)state;
    char buf[16];
    config c;
    config_defaults(&c);
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), 0);   /* none configured */
    assert_string_equal(buf, "");
    strcpy(c.challenge, "static-pw");
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), 9);
    assert_string_equal(buf, "static-pw");
    strcpy(c.challenge, "0123456789abcdef");
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), -1);

    c.challenge[0] = '\0';
    write_file("ch", "from-file\n", 10, c.challenge_file, sizeof(c.challenge_file));
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), 9);
    assert_string_equal(buf, "from-file");
    write_file("ch-empty", "\n", 1, c.challenge_file, sizeof(c.challenge_file));
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), -1);
    write_file("ch-long", "0123456789abcdefg", 17, c.challenge_file, sizeof(c.challenge_file));
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), -1);
    snprintf(c.challenge_file, sizeof(c.challenge_file), "%s/absent", tmpdir);
    assert_int_equal(config_read_challenge(&c, buf, sizeof(buf)), -1);
}

/* The shipped example must parse and must match the defaults it documents. The source tree
 * is SCEPD_SRC (ctest sets it), else the one this file was compiled from: a missing example
 * is a failure, never a skip. */
static void test_example_file(void **state)
{
    (void)state;
    const char *src = getenv("SCEPD_SRC");
    char path[1024];
    if (src != NULL && src[0] != '\0') {
        snprintf(path, sizeof(path), "%s/conf/scepd.conf.example", src);
    } else {
        /* __FILE__ is <src>/tests/unit/common/test_config.c */
        snprintf(path, sizeof(path), "%s", __FILE__);
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(path, '/');
            if (slash == NULL) {       /* a relative __FILE__: the build ran in the tree */
                snprintf(path, sizeof(path), ".");
                break;
            }
            *slash = '\0';
        }
        size_t n = strlen(path);
        snprintf(path + n, sizeof(path) - n, "/conf/scepd.conf.example");
    }
    if (access(path, R_OK) != 0)
        fail_msg("%s: %s (set SCEPD_SRC to the source tree)", path, strerror(errno));
    config c, d;
    assert_int_equal(config_load(&c, path, errbuf, sizeof(errbuf)), 0);
    config_defaults(&d);
    /* paths differ only by resolution; compare the non-path fields */
    assert_string_equal(c.listen_host, d.listen_host);
    assert_int_equal(c.listen_port, d.listen_port);
    assert_int_equal(c.max_body, d.max_body);
    assert_int_equal(c.store_map_size, d.store_map_size);
    assert_int_equal(c.backdate_s, d.backdate_s);
    assert_int_equal(c.validity_days, d.validity_days);
    assert_int_equal(c.header_timeout_ms, d.header_timeout_ms);
    assert_string_equal(c.pkcs11_module, d.pkcs11_module);
    assert_string_equal(c.audit_log, d.audit_log);
}

/* [issue] crl_url/ocsp_url, [crl], [ocsp], [admin]: values, defaults, ranges, paths. */
static void test_revocation_keys(void **state)
{
    (void)state;
    config c;
    config_defaults(&c);
    assert_int_equal(c.crl_validity_s, 86400);
    assert_int_equal(c.crl_rebuild_delay_ms, 2000);
    assert_string_equal(c.crl_file, "crl/ca.crl");
    assert_string_equal(c.ocsp_key_label, "ocsp");
    assert_int_equal(c.ocsp_validity_s, 3600);
    assert_int_equal(c.ocsp_nonce, 1);
    assert_string_equal(c.admin_token_file, "");
    expect_ok("[issue]\ncrl_url = http://h:1/crl/ca.crl\nocsp_url = http://h:1/ocsp\n"
              "[crl]\nvalidity = 12h\nrebuild_delay = 500ms\nfile = c.crl\n"
              "[ocsp]\ncert = ocsp.pem\nkey_label = resp\nkey_file = o.key\nvalidity = 2h\nnonce = no\n"
              "[admin]\ntoken_file = tok\n", &c);
    assert_string_equal(c.crl_url, "http://h:1/crl/ca.crl");
    assert_string_equal(c.ocsp_url, "http://h:1/ocsp");
    assert_int_equal(c.crl_validity_s, 43200);
    assert_int_equal(c.crl_rebuild_delay_ms, 500);
    assert_string_equal(c.crl_file, "/base/c.crl");
    assert_string_equal(c.ocsp_cert, "/base/ocsp.pem");
    assert_string_equal(c.ocsp_key_label, "resp");
    assert_string_equal(c.ocsp_key_file, "/base/o.key");
    assert_int_equal(c.ocsp_validity_s, 7200);
    assert_int_equal(c.ocsp_nonce, 0);
    assert_string_equal(c.admin_token_file, "/base/tok");
    expect_err("[crl]\nvalidity = 10s\n", "line 2");          /* below a minute */
    expect_err("[crl]\nvalidity = 90s500ms\n", "line 2");
    expect_err("[ocsp]\nvalidity = 8d\n", "line 2");          /* over a week */
    expect_err("[crl]\nrebuild_delay = 2h\n", "line 2");
    expect_err("[admin]\nbogus = 1\n", "unknown key");

    /* the admin token: read from its file, at least 16 bytes */
    char dir[] = "/tmp/test_config_tok.XXXXXX", path[64], tok[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tok", dir);
    config_defaults(&c);
    assert_int_equal(config_read_admin_token(&c, tok, sizeof(tok)), 0);    /* none set */
    snprintf(c.admin_token_file, sizeof(c.admin_token_file), "%s", path);
    assert_int_equal(config_read_admin_token(&c, tok, sizeof(tok)), -1);   /* missing file */
    FILE *f = fopen(path, "w");
    fputs("short\n", f);
    fclose(f);
    assert_int_equal(config_read_admin_token(&c, tok, sizeof(tok)), -1);   /* too short */
    f = fopen(path, "w");
    fputs("0123456789abcdef0123\r\n", f);
    fclose(f);
    assert_int_equal(config_read_admin_token(&c, tok, sizeof(tok)), 20);
    assert_string_equal(tok, "0123456789abcdef0123");
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_revocation_keys),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_layering),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_retired_keys),
        cmocka_unit_test(test_read_pin),
        cmocka_unit_test(test_read_challenge),
        cmocka_unit_test(test_example_file),
    };
    return cmocka_run_group_tests(tests, files_setup, files_teardown);
}
