/* store: the record codecs, the byte layouts of a certificate record and of a revocation
 * entry (little-endian, versioned; docs/store.md), and the checks a record must pass before it
 * is encoded. No LMDB calls beyond MDB_val. */
#include "engine/store/store.h"
#include "engine/store/store_internal.h"

#include <string.h>

int store_cert_decode(const MDB_val *key, const MDB_val *val, store_cert *c)
{
    const uint8_t *p = val->mv_data;
    if (key->mv_size != STORE_SERIAL_LEN || val->mv_size < REC_HDR_LEN || p[0] != REC_VERSION
        || p[REC_OFF_STATUS] > STORE_CERT_REVOKED)
        return STORE_E_CORRUPT;
    uint64_t lens[4], total = 0;
    for (int i = 0; i < 4; i++) {
        lens[i] = get_u32(p + REC_OFF_LENS + 4 * i);
        total += lens[i];
    }
    if (total != val->mv_size - REC_HDR_LEN)
        return STORE_E_CORRUPT;
    const uint8_t *q = p + REC_HDR_LEN;
    memset(c, 0, sizeof(*c));
    memcpy(c->serial, key->mv_data, STORE_SERIAL_LEN);
    c->status = p[REC_OFF_STATUS];
    c->not_before = get_i64(p + REC_OFF_NB);
    c->not_after = get_i64(p + REC_OFF_NA);
    c->issued_at = get_i64(p + REC_OFF_ISSUED);
    memcpy(c->key_hash, p + REC_OFF_KEYH, STORE_HASH_LEN);
    memcpy(c->subject_hash, p + REC_OFF_SUBJH, STORE_HASH_LEN);
    c->subject = (const char *)q;   c->subject_len = lens[0]; q += lens[0];
    c->txid = (const char *)q;      c->txid_len = lens[1];    q += lens[1];
    c->profile = (const char *)q;   c->profile_len = lens[2]; q += lens[2];
    c->der = q;                     c->der_len = lens[3];
    return 0;
}

size_t store_cert_len(const store_cert *c)
{
    return REC_HDR_LEN + c->subject_len + c->txid_len + c->profile_len + c->der_len;
}

void store_cert_encode(const store_cert *c, uint8_t *p)
{
    memset(p, 0, REC_HDR_LEN);
    p[0] = REC_VERSION;
    p[REC_OFF_STATUS] = (uint8_t)c->status;
    put_i64(p + REC_OFF_NB, c->not_before);
    put_i64(p + REC_OFF_NA, c->not_after);
    put_i64(p + REC_OFF_ISSUED, c->issued_at);
    memcpy(p + REC_OFF_KEYH, c->key_hash, STORE_HASH_LEN);
    memcpy(p + REC_OFF_SUBJH, c->subject_hash, STORE_HASH_LEN);
    put_u32(p + REC_OFF_LENS, (uint32_t)c->subject_len);
    put_u32(p + REC_OFF_LENS + 4, (uint32_t)c->txid_len);
    put_u32(p + REC_OFF_LENS + 8, (uint32_t)c->profile_len);
    put_u32(p + REC_OFF_LENS + 12, (uint32_t)c->der_len);
    uint8_t *q = p + REC_HDR_LEN;
    if (c->subject_len) { memcpy(q, c->subject, c->subject_len); q += c->subject_len; }
    if (c->txid_len)    { memcpy(q, c->txid, c->txid_len);       q += c->txid_len; }
    if (c->profile_len) { memcpy(q, c->profile, c->profile_len); q += c->profile_len; }
    memcpy(q, c->der, c->der_len);
}

static bool field_ok(const void *p, size_t len)
{
    return len <= UINT32_MAX && (len == 0 || p != NULL);
}

bool store_cert_valid(const store *s, const store_cert *c)
{
    return (c->status == STORE_CERT_VALID || c->status == STORE_CERT_REVOKED)
        && c->der != NULL && c->der_len > 0 && c->der_len <= UINT32_MAX
        && field_ok(c->subject, c->subject_len) && field_ok(c->profile, c->profile_len)
        && field_ok(c->txid, c->txid_len) && c->txid_len <= s->max_key
        && store_cert_len(c) <= UINT32_MAX;
}

int store_reason_ok(int reason)
{
    return reason >= 0 && reason <= STORE_REASON_MAX && reason != 6 && reason != 7 && reason != 8;
}

int store_rev_decode(const MDB_val *key, const MDB_val *val, store_revocation *rv)
{
    const uint8_t *p = val->mv_data;
    if (key->mv_size != STORE_SERIAL_LEN || val->mv_size < REV_HDR_LEN || p[0] != REV_VERSION
        || !store_reason_ok(p[1]) || get_u32(p + REV_OFF_WHOLEN) != val->mv_size - REV_HDR_LEN)
        return STORE_E_CORRUPT;
    memcpy(rv->serial, key->mv_data, STORE_SERIAL_LEN);
    rv->reason = p[1];
    rv->revoked_at = get_i64(p + REV_OFF_AT);
    rv->invalidity = get_i64(p + REV_OFF_INV);
    rv->who_len = val->mv_size - REV_HDR_LEN;
    rv->who = (const char *)p + REV_HDR_LEN;
    return 0;
}


size_t store_rev_encode(const store_revocation *rv, uint8_t *out)
{
    memset(out, 0, REV_HDR_LEN);
    out[0] = REV_VERSION;
    out[1] = (uint8_t)rv->reason;
    put_u32(out + REV_OFF_WHOLEN, (uint32_t)rv->who_len);
    put_i64(out + REV_OFF_AT, rv->revoked_at);
    put_i64(out + REV_OFF_INV, rv->invalidity);
    if (rv->who_len > 0)
        memcpy(out + REV_HDR_LEN, rv->who, rv->who_len);
    return REV_HDR_LEN + rv->who_len;
}
