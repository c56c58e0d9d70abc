/* See der.h. */
#include "engine/scep/der.h"

size_t der_hdr_size(size_t n)
{
    return n < 0x80 ? 2 : n <= 0xff ? 3 : n <= 0xffff ? 4 : n <= 0xffffff ? 5 : 6;
}

uint8_t *der_hdr(uint8_t *p, uint8_t tag, size_t n)
{
    size_t h = der_hdr_size(n);
    *p++ = tag;
    if (h == 2) {
        *p++ = (uint8_t)n;
        return p;
    }
    *p++ = (uint8_t)(0x80 | (h - 2));
    for (size_t i = h - 2; i > 0; i--)
        *p++ = (uint8_t)(n >> (8 * (i - 1)));
    return p;
}
