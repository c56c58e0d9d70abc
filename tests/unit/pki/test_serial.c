/* Unit tests for engine/pki/serial.c: the one serial text rule (serial.h) that scepctl and the
 * admin API share, the serial of a certificate as store bytes, and the hex form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>

#include "engine/pki/serial.h"

/* out is filled with a marker first so "untouched on refusal" is checked too. */
static int parse(const char *text, uint8_t out[STORE_SERIAL_LEN])
{
    memset(out, 0xee, STORE_SERIAL_LEN);
    return serial_parse(text, out);
}

static void refused(const char *text)
{
    uint8_t b[STORE_SERIAL_LEN], mark[STORE_SERIAL_LEN];
    memset(mark, 0xee, sizeof(mark));
    if (parse(text, b) != -1)
        fail_msg("'%s' was accepted", text);
    assert_memory_equal(b, mark, sizeof(b));
}

static void test_one_digit(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN], want[STORE_SERIAL_LEN] = {0};
    want[15] = 0x0a;
    assert_int_equal(parse("a", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("A", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    memset(want, 0, sizeof(want));
    assert_int_equal(parse("0", b), 0);
    assert_memory_equal(b, want, sizeof(b));
}

static void test_32_digits(void **state)
{
    (void)state;
    static const uint8_t want[STORE_SERIAL_LEN] = {
        0x4c, 0x8e, 0x6a, 0x07, 0x1b, 0x79, 0x11, 0xa7,
        0x5b, 0x8b, 0xa3, 0xde, 0xec, 0xe6, 0x81, 0x4d };
    uint8_t b[STORE_SERIAL_LEN];
    assert_int_equal(parse("4c8e6a071b7911a75b8ba3deece6814d", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("4C8E6A071B7911A75B8BA3DEECE6814D", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("4c:8e:6a:07:1b:79:11:a7:5b:8b:a3:de:ec:e6:81:4d", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("ffffffffffffffffffffffffffffffff", b), 0);
    for (int i = 0; i < STORE_SERIAL_LEN; i++)
        assert_int_equal(b[i], 0xff);
}

/* An odd number of digits is left-padded: "abc" is 0x0a 0xbc. */
static void test_odd_digits(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN], want[STORE_SERIAL_LEN] = {0};
    want[14] = 0x0a;
    want[15] = 0xbc;
    assert_int_equal(parse("abc", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("a:bc", b), 0);      /* a single digit in the first group */
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("0a:bc", b), 0);
    assert_memory_equal(b, want, sizeof(b));
}

static void test_33_digits_refused(void **state)
{
    (void)state;
    refused("14c8e6a071b7911a75b8ba3deece6814d");
    refused("1:4c:8e:6a:07:1b:79:11:a7:5b:8b:a3:de:ec:e6:81:4d");
    refused("01:4c:8e:6a:07:1b:79:11:a7:5b:8b:a3:de:ec:e6:81:4d");
    refused("1000000000000000000000000000000000000000");
}

/* Decided (serial.h): leading zeros do not count, so openssl's "00:8f:.." (the DER sign byte
 * in front of a serial whose top bit is set) parses to the same 16 bytes. */
static void test_leading_zeros_over_32(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN], want[STORE_SERIAL_LEN];
    memset(want, 0x8f, sizeof(want));
    assert_int_equal(parse("00:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f:8f", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("0008f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    memset(want, 0, sizeof(want));
    want[15] = 1;
    assert_int_equal(parse("0000000000000000000000000000000000000001", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    /* only zeros, more than 32 of them: the serial 0 */
    memset(want, 0, sizeof(want));
    assert_int_equal(parse("000000000000000000000000000000000000", b), 0);
    assert_memory_equal(b, want, sizeof(b));
}

static void test_colons(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN], want[STORE_SERIAL_LEN] = {0};
    want[14] = 0x0a;
    want[15] = 0x1b;
    assert_int_equal(parse("0a:1B", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("0A:1b", b), 0);
    assert_memory_equal(b, want, sizeof(b));
    assert_int_equal(parse("0a1b", b), 0);
    assert_memory_equal(b, want, sizeof(b));
}

static void test_bad_colons_refused(void **state)
{
    (void)state;
    refused(":0a:1b");
    refused("0a:1b:");
    refused("0a::1b");
    refused(":");
    refused("0a1:b2");    /* a group of three */
    refused("0a:1b2c");
    refused("0a:b");      /* a lone digit after the first group */
    refused("0a:1b:c");
}

static void test_empty_and_non_hex_refused(void **state)
{
    (void)state;
    refused("");
    refused("0x1b");
    refused("1g");
    refused(" 1b");
    refused("1b ");
    refused("1b\n");
    refused("-1");
    refused("0a-1b");
    refused("0a 1b");
}

static ASN1_INTEGER *integer(const char *hex)
{
    BIGNUM *bn = NULL;
    assert_true(BN_hex2bn(&bn, hex) > 0);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    assert_non_null(ai);
    return ai;
}

static void test_from_asn1(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN], mark[STORE_SERIAL_LEN], want[STORE_SERIAL_LEN] = {0};
    memset(mark, 0xee, sizeof(mark));
    want[14] = 0x01;
    want[15] = 0x02;
    ASN1_INTEGER *ai = integer("0102");
    memcpy(b, mark, sizeof(b));
    assert_int_equal(serial_from_asn1(ai, b), 0);
    assert_memory_equal(b, want, sizeof(b));
    ASN1_INTEGER_free(ai);

    memset(want, 0x8f, sizeof(want));   /* 16 bytes, top bit set: still fits */
    ai = integer("8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f");
    assert_int_equal(serial_from_asn1(ai, b), 0);
    assert_memory_equal(b, want, sizeof(b));
    ASN1_INTEGER_free(ai);

    ai = integer("-0102");                                /* negative */
    memcpy(b, mark, sizeof(b));
    assert_int_equal(serial_from_asn1(ai, b), -1);
    assert_memory_equal(b, mark, sizeof(b));
    ASN1_INTEGER_free(ai);

    ai = integer("018f8f8f8f8f8f8f8f8f8f8f8f8f8f8f8f");   /* 17 bytes */
    assert_int_equal(serial_from_asn1(ai, b), -1);
    assert_memory_equal(b, mark, sizeof(b));
    ASN1_INTEGER_free(ai);
}

static void test_to_hex(void **state)
{
    (void)state;
    uint8_t b[STORE_SERIAL_LEN];
    char hex[2 * STORE_SERIAL_LEN + 1];
    assert_int_equal(serial_parse("0A:1B", b), 0);
    serial_to_hex(b, hex);
    assert_string_equal(hex, "00000000000000000000000000000a1b");
    /* round trip: what scepctl and the audit log print parses back to the same bytes */
    uint8_t back[STORE_SERIAL_LEN];
    assert_int_equal(serial_parse(hex, back), 0);
    assert_memory_equal(back, b, sizeof(b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_digit),
        cmocka_unit_test(test_32_digits),
        cmocka_unit_test(test_odd_digits),
        cmocka_unit_test(test_33_digits_refused),
        cmocka_unit_test(test_leading_zeros_over_32),
        cmocka_unit_test(test_colons),
        cmocka_unit_test(test_bad_colons_refused),
        cmocka_unit_test(test_empty_and_non_hex_refused),
        cmocka_unit_test(test_from_asn1),
        cmocka_unit_test(test_to_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
