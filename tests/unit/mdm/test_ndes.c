/* Tests of engine/mdm/ndes.c: the mscep_admin page in UTF-8 and UTF-16LE, scraped the way NDES
 * scrapers do (a regular expression on "challenge password is: <B> ... </B>" after decoding),
 * the CA thumbprint (MD5 in 4 groups), the other two pages, and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine/mdm/mdm_config.h"
#include "engine/mdm/ndes.h"

static const uint8_t CA[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };   /* any bytes: only hashed */

/* Decodes UTF-16LE with a BOM back to UTF-8 (the page is ASCII but for ca_name), as a
 * scraper's decode("utf-16") does. */
static char *from_utf16(const uint8_t *b, size_t n)
{
    assert_true(n >= 2 && b[0] == 0xFF && b[1] == 0xFE && n % 2 == 0);
    char *out = malloc(n * 2 + 1), *q = out;
    for (size_t i = 2; i + 1 < n; i += 2) {
        unsigned c = b[i] | (unsigned)b[i + 1] << 8;
        if (c >= 0xD800 && c < 0xDC00) {
            unsigned lo = b[i + 2] | (unsigned)b[i + 3] << 8;
            c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
            i += 2;
        }
        if (c < 0x80) *q++ = (char)c;
        else if (c < 0x800) { *q++ = (char)(0xC0 | c >> 6); *q++ = (char)(0x80 | (c & 0x3F)); }
        else if (c < 0x10000) { *q++ = (char)(0xE0 | c >> 12); *q++ = (char)(0x80 | ((c >> 6) & 0x3F));
                                *q++ = (char)(0x80 | (c & 0x3F)); }
        else { *q++ = (char)(0xF0 | c >> 18); *q++ = (char)(0x80 | ((c >> 12) & 0x3F));
               *q++ = (char)(0x80 | ((c >> 6) & 0x3F)); *q++ = (char)(0x80 | (c & 0x3F)); }
    }
    *q = '\0';
    return out;
}

static void scrape(const char *page, const char *re_text, char *out, size_t outlen)
{
    regex_t re;
    regmatch_t m[2];
    assert_int_equal(regcomp(&re, re_text, REG_EXTENDED), 0);
    assert_int_equal(regexec(&re, page, 2, m, 0), 0);
    snprintf(out, outlen, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), page + m[1].rm_so);
    regfree(&re);
}

static char *page(int encoding, const char *challenge, const char *ca_name, int kind)
{
    ndes_page_in in = { .kind = kind, .encoding = encoding, .challenge = challenge,
                        .ttl_minutes = 60, .ca_der = CA, .ca_len = sizeof(CA),
                        .ca_name = ca_name };
    uint8_t *b = NULL;
    size_t n = 0;
    const char *ct = NULL;
    assert_int_equal(ndes_page(&in, &b, &n, &ct), 0);
    char *text;
    if (encoding == MDM_NDES_UTF16LE) {
        assert_string_equal(ct, "text/html; charset=utf-16");
        text = from_utf16(b, n);
        free(b);
    } else {
        assert_string_equal(ct, "text/html; charset=utf-8");
        text = realloc(b, n + 1);
        text[n] = '\0';
    }
    return text;
}

static void test_generate(void **state)
{
    (void)state;
    char a[NDES_CHALLENGE_LEN + 1], b[NDES_CHALLENGE_LEN + 1];
    assert_int_equal(ndes_challenge_generate(a), 0);
    assert_int_equal(ndes_challenge_generate(b), 0);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789ABCDEF"), 16);
    assert_string_not_equal(a, b);
}

static void test_scraped_both_encodings(void **state)
{
    (void)state;
    char ch[NDES_CHALLENGE_LEN + 1], got[64], thumb[64], want[40];
    unsigned char md[16];
    unsigned int n;
    EVP_Digest(CA, sizeof(CA), md, &n, EVP_md5(), NULL);
    snprintf(want, sizeof(want), "%02X%02X%02X%02X %02X%02X%02X%02X %02X%02X%02X%02X %02X%02X%02X%02X",
             md[0], md[1], md[2], md[3], md[4], md[5], md[6], md[7], md[8], md[9], md[10],
             md[11], md[12], md[13], md[14], md[15]);
    assert_int_equal(ndes_challenge_generate(ch), 0);
    int enc[] = { MDM_NDES_UTF16LE, MDM_NDES_UTF8 };
    for (int i = 0; i < 2; i++) {
        char *p = page(enc[i], ch, "Corp CA", NDES_PAGE_CHALLENGE);
        scrape(p, "The enrollment challenge password is: <B> ([A-F0-9]{16}) </B>", got,
               sizeof(got));
        assert_string_equal(got, ch);
        scrape(p, "challenge password is: <B> ([^<]+) </B>", got, sizeof(got));
        assert_string_equal(got, ch);
        scrape(p, "for the CA certificate is: <B> ([0-9A-F ]+) </B>", thumb, sizeof(thumb));
        assert_string_equal(thumb, want);
        assert_non_null(strstr(p, "<Title>Network Device Enrollment Service</Title>"));
        assert_non_null(strstr(p, "This password can be used only once and will expire within 60 minutes."));
        assert_non_null(strstr(p, enc[i] == MDM_NDES_UTF16LE ? "charset=UTF-16" : "charset=UTF-8"));
        free(p);
    }
}

static void test_ca_name_escaped_and_non_ascii(void **state)
{
    (void)state;
    const char *name = "A&B <CA> \xc3\xa9\xf0\x9f\x94\x91";    /* é and U+1F511 */
    char *p = page(MDM_NDES_UTF16LE, "0123456789ABCDEF", name, NDES_PAGE_CHALLENGE);
    assert_non_null(strstr(p, "A&amp;B &lt;CA&gt; \xc3\xa9\xf0\x9f\x94\x91"));
    free(p);
}

static void test_other_pages(void **state)
{
    (void)state;
    char *p = page(MDM_NDES_UTF8, NULL, NULL, NDES_PAGE_NO_PERMISSION);
    assert_non_null(strstr(p, "You do not have sufficient permission to enroll with SCEP."));
    assert_null(strstr(p, "challenge password is"));
    free(p);
    p = page(MDM_NDES_UTF16LE, NULL, NULL, NDES_PAGE_CACHE_FULL);
    assert_non_null(strstr(p, "The password cache is full."));
    free(p);
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t *b = NULL;
    size_t n;
    const char *ct;
    ndes_page_in in = { .kind = NDES_PAGE_CHALLENGE, .challenge = "ABC<script>", .ca_der = CA,
                        .ca_len = sizeof(CA) };
    assert_int_equal(ndes_page(&in, &b, &n, &ct), -EINVAL);
    in.challenge = "0123456789ABCDEF";
    in.ca_der = NULL;
    assert_int_equal(ndes_page(&in, &b, &n, &ct), -EINVAL);
    in.ca_der = CA;
    in.ca_name = "\xff\xfe";
    assert_int_equal(ndes_page(&in, &b, &n, &ct), -EINVAL);
    in.ca_name = NULL;
    in.kind = 99;
    assert_int_equal(ndes_page(&in, &b, &n, &ct), -EINVAL);
    assert_null(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_scraped_both_encodings),
        cmocka_unit_test(test_ca_name_escaped_and_non_ascii),
        cmocka_unit_test(test_other_pages),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
