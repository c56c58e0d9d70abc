/* The pending-request record codec. See pending.h for the encoding. */
#include "engine/enroll/pending.h"

#include <stdlib.h>
#include <string.h>

#define PENDING_VERSION 1
#define PENDING_STRINGS 4

static void be_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t be_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int pending_encode(const pending_request *r, uint8_t **out, size_t *len)
{
    const char *str[PENDING_STRINGS] = {r->profile, r->subject, r->peer, r->decided_by};
    size_t sl[PENDING_STRINGS] = {
        strnlen(r->profile, sizeof(r->profile)), strnlen(r->subject, sizeof(r->subject)),
        strnlen(r->peer, sizeof(r->peer)), strnlen(r->decided_by, sizeof(r->decided_by))};
    size_t total = PENDING_FIXED_LEN + r->csr_len + sl[0] + sl[1] + sl[2] + sl[3];
    if (r->status < PENDING_WAITING || r->status > PENDING_DENIED || r->csr_len > UINT32_MAX ||
        (r->csr_len > 0 && r->csr == NULL))
        return -1;
    uint8_t *b = malloc(total), *p = b;
    if (b == NULL)
        return -1;
    p[0] = PENDING_VERSION;
    p[1] = (uint8_t)r->status;
    p[2] = p[3] = 0;
    p += 4;
    be_put(p, (uint64_t)r->created, 8);
    be_put(p + 8, (uint64_t)r->decided_at, 8);
    p += 16;
    memcpy(p, r->key_hash, STORE_HASH_LEN);
    p += STORE_HASH_LEN;
    memcpy(p, r->serial, STORE_SERIAL_LEN);
    p += STORE_SERIAL_LEN;
    for (int i = 0; i < PENDING_STRINGS; i++, p += 2)
        be_put(p, sl[i], 2);
    be_put(p, r->csr_len, 4);
    p += 4;
    for (int i = 0; i < PENDING_STRINGS; i++) {
        memcpy(p, str[i], sl[i]);
        p += sl[i];
    }
    if (r->csr_len > 0)
        memcpy(p, r->csr, r->csr_len);
    *out = b;
    *len = total;
    return 0;
}

int pending_decode(const uint8_t *in, size_t len, pending_request *out)
{
    pending_request r;
    char *str[PENDING_STRINGS] = {r.profile, r.subject, r.peer, r.decided_by};
    size_t cap[PENDING_STRINGS] = {sizeof(r.profile), sizeof(r.subject), sizeof(r.peer),
                                   sizeof(r.decided_by)};
    if (len < PENDING_FIXED_LEN || in[0] != PENDING_VERSION || in[1] > PENDING_DENIED)
        return -1;
    memset(&r, 0, sizeof(r));
    r.status = in[1];
    r.created = (int64_t)be_get(in + 4, 8);
    r.decided_at = (int64_t)be_get(in + 12, 8);
    memcpy(r.key_hash, in + 20, STORE_HASH_LEN);
    memcpy(r.serial, in + 20 + STORE_HASH_LEN, STORE_SERIAL_LEN);
    const uint8_t *l = in + 20 + STORE_HASH_LEN + STORE_SERIAL_LEN, *p = in + PENDING_FIXED_LEN;
    size_t total = PENDING_FIXED_LEN;
    for (int i = 0; i < PENDING_STRINGS; i++) {
        size_t n = (size_t)be_get(l + 2 * i, 2);
        if (n >= cap[i] || total + n > len)
            return -1;
        memcpy(str[i], p, n);
        str[i][n] = '\0';
        p += n;
        total += n;
    }
    r.csr_len = (size_t)be_get(l + 8, 4);
    if (total + r.csr_len != len)
        return -1;
    r.csr = p;
    *out = r;
    return 0;
}
