/* Unit tests for engine/enroll/pending.c: the pending-request record codec. Round trip, the
 * exact bytes of a known record (the format is on disk: it must not drift), every
 * truncation and every bad length refused, and what the encoder refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/enroll/pending.h"

static const uint8_t CSR[] = {0x30, 0x03, 0x02, 0x01, 0x05};

/* Offsets in an encoding (pending.h). */
#define OFF_LENS (4 + 8 + 8 + STORE_HASH_LEN + STORE_SERIAL_LEN)
#define OFF_CSRLEN (OFF_LENS + 8)

static void sample(pending_request *r)
{
    memset(r, 0, sizeof(*r));
    r->status = PENDING_APPROVED;
    r->created = 0x0102030405060708LL;
    r->decided_at = 1700000000;
    for (int i = 0; i < STORE_HASH_LEN; i++)
        r->key_hash[i] = (uint8_t)(0xa0 + i);
    for (int i = 0; i < STORE_SERIAL_LEN; i++)
        r->serial[i] = (uint8_t)(0x10 + i);
    snprintf(r->profile, sizeof(r->profile), "wifi");
    snprintf(r->subject, sizeof(r->subject), "CN=dev1,O=Corp");
    snprintf(r->peer, sizeof(r->peer), "127.0.0.1:4000");
    snprintf(r->decided_by, sizeof(r->decided_by), "alice");
    r->csr = CSR;
    r->csr_len = sizeof(CSR);
}

static void assert_same(const pending_request *a, const pending_request *b)
{
    assert_int_equal(a->status, b->status);
    assert_true(a->created == b->created);
    assert_true(a->decided_at == b->decided_at);
    assert_memory_equal(a->key_hash, b->key_hash, STORE_HASH_LEN);
    assert_memory_equal(a->serial, b->serial, STORE_SERIAL_LEN);
    assert_string_equal(a->profile, b->profile);
    assert_string_equal(a->subject, b->subject);
    assert_string_equal(a->peer, b->peer);
    assert_string_equal(a->decided_by, b->decided_by);
    assert_int_equal(a->csr_len, b->csr_len);
    if (a->csr_len > 0)
        assert_memory_equal(a->csr, b->csr, a->csr_len);
}

static void test_roundtrip(void **state)
{
    (void)state;
    pending_request r, got;
    uint8_t *enc = NULL;
    size_t len = 0;
    sample(&r);
    assert_int_equal(pending_encode(&r, &enc, &len), 0);
    assert_int_equal(len, PENDING_FIXED_LEN + 4 + 14 + 14 + 5 + sizeof(CSR));
    assert_int_equal(pending_decode(enc, len, &got), 0);
    assert_same(&r, &got);
    assert_ptr_equal(got.csr, enc + len - sizeof(CSR));   /* zero-copy: into the input */
    free(enc);

    /* Empty strings and no CSR; every status; a negative time survives. */
    for (int st = PENDING_WAITING; st <= PENDING_DENIED; st++) {
        memset(&r, 0, sizeof(r));
        r.status = st;
        r.created = -5;
        assert_int_equal(pending_encode(&r, &enc, &len), 0);
        assert_int_equal(len, PENDING_FIXED_LEN);
        assert_int_equal(pending_decode(enc, len, &got), 0);
        assert_same(&r, &got);
        free(enc);
    }

    /* Strings at their longest (capacity - 1). */
    sample(&r);
    memset(r.profile, 'p', sizeof(r.profile) - 1);
    memset(r.subject, 's', sizeof(r.subject) - 1);
    memset(r.peer, 'e', sizeof(r.peer) - 1);
    memset(r.decided_by, 'd', sizeof(r.decided_by) - 1);
    assert_int_equal(pending_encode(&r, &enc, &len), 0);
    assert_int_equal(pending_decode(enc, len, &got), 0);
    assert_same(&r, &got);
    free(enc);
}

/* The encoding of a fixed record, byte for byte. */
static void test_known_bytes(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x01, 0x00, 0x00, 0x00,                                  /* v1, pending */
        0x00, 0x00, 0x00, 0x00, 0x65, 0x53, 0xf1, 0x00,          /* created 1700000000 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,          /* decided_at 0 */
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11,                                  /* key_hash */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,                                              /* serial */
        0x00, 0x01, 0x00, 0x04, 0x00, 0x02, 0x00, 0x00,          /* string lengths */
        0x00, 0x00, 0x00, 0x02,                                  /* csr_len */
        'P', 'C', 'N', '=', 'x', 'h', '1', 0x30, 0x00,
    };
    pending_request r, got;
    uint8_t *enc = NULL;
    size_t len = 0;
    memset(&r, 0, sizeof(r));
    r.status = PENDING_WAITING;
    r.created = 1700000000;
    memset(r.key_hash, 0x11, sizeof(r.key_hash));
    snprintf(r.profile, sizeof(r.profile), "P");
    snprintf(r.subject, sizeof(r.subject), "CN=x");
    snprintf(r.peer, sizeof(r.peer), "h1");
    static const uint8_t csr[] = {0x30, 0x00};
    r.csr = csr;
    r.csr_len = sizeof(csr);
    assert_int_equal(pending_encode(&r, &enc, &len), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(enc, want, sizeof(want));
    free(enc);
    assert_int_equal(pending_decode(want, sizeof(want), &got), 0);
    assert_same(&r, &got);

    /* The reserved bytes are ignored on input. */
    uint8_t alt[sizeof(want)];
    memcpy(alt, want, sizeof(want));
    alt[2] = 0xff;
    alt[3] = 0x01;
    assert_int_equal(pending_decode(alt, sizeof(alt), &got), 0);
    assert_same(&r, &got);
}

/* Each truncation of a valid record, and one byte more, is refused; out is untouched. */
static void test_truncations(void **state)
{
    (void)state;
    pending_request r, got;
    uint8_t *enc = NULL;
    size_t len = 0;
    sample(&r);
    assert_int_equal(pending_encode(&r, &enc, &len), 0);
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);   /* exact size, so ASan sees an over-read */
        assert_non_null(cut);
        memcpy(cut, enc, n);
        memset(&got, 0x5a, sizeof(got));
        assert_int_equal(pending_decode(cut, n, &got), -1);
        assert_int_equal(got.status, 0x5a5a5a5a);
        free(cut);
    }
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, enc, len);
    longer[len] = 0;
    assert_int_equal(pending_decode(longer, len + 1, &got), -1);
    free(longer);
    free(enc);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void test_bad_fields(void **state)
{
    (void)state;
    pending_request r, got;
    uint8_t *enc = NULL, *bad;
    size_t len = 0;
    sample(&r);
    assert_int_equal(pending_encode(&r, &enc, &len), 0);
    bad = malloc(len);
    assert_non_null(bad);

    /* Version and status. */
    memcpy(bad, enc, len);
    bad[0] = 2;
    assert_int_equal(pending_decode(bad, len, &got), -1);
    memcpy(bad, enc, len);
    bad[0] = 0;
    assert_int_equal(pending_decode(bad, len, &got), -1);
    memcpy(bad, enc, len);
    bad[1] = PENDING_DENIED + 1;
    assert_int_equal(pending_decode(bad, len, &got), -1);

    /* A string length at its field's capacity, even when the bytes are there. */
    static const unsigned caps[4] = {64, 512, 64, 160};
    for (int i = 0; i < 4; i++) {
        size_t n = PENDING_FIXED_LEN + caps[i];
        uint8_t *b = calloc(1, n);
        assert_non_null(b);
        b[0] = 1;
        put16(b + OFF_LENS + 2 * i, caps[i]);
        assert_int_equal(pending_decode(b, n, &got), -1);
        put16(b + OFF_LENS + 2 * i, caps[i] - 1);        /* one less, one byte left over */
        assert_int_equal(pending_decode(b, n, &got), -1);
        assert_int_equal(pending_decode(b, n - 1, &got), 0);
        free(b);
    }

    /* Lengths that do not add up to the record: each string one longer or shorter, the csr
     * one longer or shorter, a huge csr length. */
    for (int i = 0; i < 4; i++) {
        for (int d = -1; d <= 1; d += 2) {
            memcpy(bad, enc, len);
            unsigned cur = (unsigned)bad[OFF_LENS + 2 * i] << 8 | bad[OFF_LENS + 2 * i + 1];
            put16(bad + OFF_LENS + 2 * i, cur + (unsigned)d);
            assert_int_equal(pending_decode(bad, len, &got), -1);
        }
    }
    memcpy(bad, enc, len);
    bad[OFF_CSRLEN + 3]++;
    assert_int_equal(pending_decode(bad, len, &got), -1);
    memcpy(bad, enc, len);
    bad[OFF_CSRLEN + 3]--;
    assert_int_equal(pending_decode(bad, len, &got), -1);
    memcpy(bad, enc, len);
    memset(bad + OFF_CSRLEN, 0xff, 4);
    assert_int_equal(pending_decode(bad, len, &got), -1);
    memcpy(bad, enc, len);
    memset(bad + OFF_LENS, 0xff, 8);
    assert_int_equal(pending_decode(bad, len, &got), -1);
    free(bad);
    free(enc);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    pending_request r;
    uint8_t *enc = (uint8_t *)"untouched";
    size_t len = 7;
    sample(&r);
    r.status = PENDING_DENIED + 1;
    assert_int_equal(pending_encode(&r, &enc, &len), -1);
    r.status = -1;
    assert_int_equal(pending_encode(&r, &enc, &len), -1);
    sample(&r);
    r.csr = NULL;                     /* a length without bytes */
    assert_int_equal(pending_encode(&r, &enc, &len), -1);
    r.csr_len = (size_t)UINT32_MAX + 1;
    r.csr = CSR;
    assert_int_equal(pending_encode(&r, &enc, &len), -1);
    assert_string_equal((const char *)enc, "untouched");
    assert_int_equal(len, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_encode_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
