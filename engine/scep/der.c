/* DER header writing and reading. See der.h. */
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

int der_header(const der_in *in, uint8_t *tag, size_t *hdr_len, size_t *len, int *indef)
{
    size_t avail = (size_t)(in->end - in->p), n, h = 2;
    if (avail < 2 || (in->p[0] & 0x1f) == 0x1f)
        return -1;
    *tag = in->p[0];
    *indef = 0;
    n = in->p[1];
    if (n == 0x80) {
        if (!(in->p[0] & 0x20))
            return -1;
        *indef = 1;
        n = 0;
    } else if (n > 0x80) {
        size_t k = n & 0x7f;
        if (k > 4 || avail < 2 + k)
            return -1;
        n = 0;
        for (size_t i = 0; i < k; i++)
            n = n << 8 | in->p[2 + i];
        h += k;
    }
    if (n > avail - h)
        return -1;
    *hdr_len = h;
    *len = n;
    return 0;
}

int der_take(der_in *in, uint8_t tag, der_in *body)
{
    uint8_t t;
    size_t h, n;
    int indef;
    if (der_header(in, &t, &h, &n, &indef) != 0 || t != tag || indef)
        return -1;
    if (body != NULL) {
        body->p = in->p + h;
        body->end = in->p + h + n;
    }
    in->p += h + n;
    return 0;
}
