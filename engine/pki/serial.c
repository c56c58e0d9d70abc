/* See serial.h. */
#include "engine/pki/serial.h"

#include <string.h>
#include <openssl/bn.h>

#include "engine/common/hex.h"

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Colon placement: pairs, a lone digit only in the first group ("a:bc"), nothing empty. */
static int colons_ok(const char *text, size_t n)
{
    size_t group = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && text[i] != ':') {
            group++;
            continue;
        }
        if (group == 0 || group > 2 || (group == 1 && i != 1))
            return 0;
        group = 0;
    }
    return 1;
}

int serial_parse(const char *text, uint8_t out[STORE_SERIAL_LEN])
{
    uint8_t b[STORE_SERIAL_LEN] = {0};
    size_t n = strlen(text), digits = 0;

    if (n == 0 || (strchr(text, ':') != NULL && !colons_ok(text, n)))
        return -1;
    /* From the last digit backwards; past 32 digits only zeros may follow. */
    for (size_t i = n; i-- > 0;) {
        if (text[i] == ':')
            continue;
        int v = hexval(text[i]);
        if (v < 0 || (digits >= 2 * STORE_SERIAL_LEN && v != 0))
            return -1;
        if (digits < 2 * STORE_SERIAL_LEN)
            b[STORE_SERIAL_LEN - 1 - digits / 2] |= (uint8_t)(digits % 2 ? v << 4 : v);
        digits++;
    }
    memcpy(out, b, sizeof(b));
    return 0;
}

int serial_from_asn1(const ASN1_INTEGER *ai, uint8_t out[STORE_SERIAL_LEN])
{
    uint8_t b[STORE_SERIAL_LEN];
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    int rc = -1;
    if (bn != NULL && !BN_is_negative(bn) &&
        BN_num_bytes(bn) <= STORE_SERIAL_LEN &&
        BN_bn2binpad(bn, b, STORE_SERIAL_LEN) == STORE_SERIAL_LEN) {
        memcpy(out, b, sizeof(b));
        rc = 0;
    }
    BN_free(bn);
    return rc;
}

void serial_to_hex(const uint8_t serial[STORE_SERIAL_LEN], char *out)
{
    hex_encode(serial, STORE_SERIAL_LEN, out);
}
