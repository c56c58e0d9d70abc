/* store: LMDB environment, record codec, reader snapshots and the group-commit writer.
 * Record layout, durability and the resize protocol are described in docs/store.md. */
#include "engine/store/store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_SCHEMA        1u
#define STORE_DEFAULT_MAP   ((size_t)64 << 20)
#define STORE_MAX_READERS   1024
#define STORE_MAX_RETRIES   48      /* map doublings/resizes per batch before giving up */

/* certs value: fixed little-endian header, then subject, txid, profile, DER. */
#define REC_VERSION     1
#define REC_OFF_STATUS  1
#define REC_OFF_NB      4
#define REC_OFF_NA      12
#define REC_OFF_ISSUED  20
#define REC_OFF_KEYH    28
#define REC_OFF_SUBJH   (REC_OFF_KEYH + STORE_HASH_LEN)
#define REC_OFF_LENS    (REC_OFF_SUBJH + STORE_HASH_LEN)
#define REC_HDR_LEN     (REC_OFF_LENS + 4 * 4)
#define TXID_VAL_LEN    (STORE_SERIAL_LEN + STORE_HASH_LEN)

/* revoked value: version, reason, 2 reserved, who length (u32), revoked_at, invalidity, who. */
#define REV_VERSION     1
#define REV_OFF_WHOLEN  4
#define REV_OFF_AT      8
#define REV_OFF_INV     16
#define REV_HDR_LEN     24
#define REV_WHO_MAX     255

struct store {
    MDB_env *env;
    MDB_dbi certs, txid, subject, revoked, meta;
    MDB_dbi aux[STORE_DB__COUNT];
    unsigned max_key;

    /* Resize gate: every transaction of this process (read or write) is "active" between
     * gate_enter and gate_leave; mdb_env_set_mapsize runs only with none active. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    unsigned gate_active;
    bool gate_resizing;

    /* Writer queue. */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    store_put *q_head, *q_tail;
    bool q_stop;
    bool writer_running;
    pthread_t writer;
    int batch_max;
    store_done_fn done;
    void *done_arg;
};

struct store_reader {
    store *s;
    MDB_txn *txn;
    bool active;
};

/* ---- little-endian helpers ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_i64(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return (int64_t)u;
}

/* ---- resize gate ---- */

static void gate_enter(store *s)
{
    pthread_mutex_lock(&s->gate_mu);
    while (s->gate_resizing)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    s->gate_active++;
    pthread_mutex_unlock(&s->gate_mu);
}

static void gate_leave(store *s)
{
    pthread_mutex_lock(&s->gate_mu);
    s->gate_active--;
    if (s->gate_active == 0 && s->gate_resizing)
        pthread_cond_broadcast(&s->gate_cv);
    pthread_mutex_unlock(&s->gate_mu);
}

/* Sets the map size with no transaction active in this process (the caller holds none).
 * size 0 adopts a size grown by another process; otherwise the map is doubled from
 * the size seen when the caller failed (seen), unless someone already grew it. */
static int gate_resize(store *s, size_t seen, bool adopt)
{
    int rc;
    pthread_mutex_lock(&s->gate_mu);
    while (s->gate_resizing)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    s->gate_resizing = true;
    while (s->gate_active > 0)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (adopt) {
        rc = mdb_env_set_mapsize(s->env, 0);
    } else if (info.me_mapsize > seen) {
        rc = 0;
    } else if (info.me_mapsize > SIZE_MAX / 2) {
        rc = MDB_MAP_FULL;
    } else {
        rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
    }
    s->gate_resizing = false;
    pthread_cond_broadcast(&s->gate_cv);
    pthread_mutex_unlock(&s->gate_mu);
    return rc > 0 ? -rc : rc;
}

static size_t map_size(store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    return info.me_mapsize;
}

/* Begins a transaction inside the gate; adopts a map grown by another process. On success the
 * caller owns one gate share and must gate_leave after ending the transaction. */
static int txn_begin(store *s, unsigned flags, MDB_txn **txn)
{
    int rc = 0;
    for (int i = 0; i < STORE_MAX_RETRIES; i++) {
        gate_enter(s);
        rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc == 0)
            return 0;
        gate_leave(s);
        if (rc != MDB_MAP_RESIZED)
            break;
        rc = gate_resize(s, 0, true);
        if (rc != 0)
            break;
    }
    return rc > 0 ? -rc : rc;
}

/* ---- record codec ---- */

static int cert_decode(const MDB_val *key, const MDB_val *val, store_cert *c)
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

static size_t cert_encoded_len(const store_cert *c)
{
    return REC_HDR_LEN + c->subject_len + c->txid_len + c->profile_len + c->der_len;
}

static void cert_encode(const store_cert *c, uint8_t *p)
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

static bool cert_valid(const store *s, const store_cert *c)
{
    return (c->status == STORE_CERT_VALID || c->status == STORE_CERT_REVOKED)
        && c->der != NULL && c->der_len > 0 && c->der_len <= UINT32_MAX
        && field_ok(c->subject, c->subject_len) && field_ok(c->profile, c->profile_len)
        && field_ok(c->txid, c->txid_len) && c->txid_len <= s->max_key
        && cert_encoded_len(c) <= UINT32_MAX;
}

/* ---- environment ---- */

static int open_schema(store *s)
{
    MDB_txn *txn = NULL;
    int rc = txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "certs", MDB_CREATE, &s->certs)) != 0
        || (rc = mdb_dbi_open(txn, "txid", MDB_CREATE, &s->txid)) != 0
        || (rc = mdb_dbi_open(txn, "subject", MDB_CREATE | MDB_DUPSORT, &s->subject)) != 0
        || (rc = mdb_dbi_open(txn, "revoked", MDB_CREATE, &s->revoked)) != 0
        || (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0
        || (rc = mdb_dbi_open(txn, "challenges", MDB_CREATE, &s->aux[STORE_DB_CHALLENGES])) != 0
        || (rc = mdb_dbi_open(txn, "requests", MDB_CREATE, &s->aux[STORE_DB_REQUESTS])) != 0)
        goto out;
    MDB_val k = { 6, "schema" }, v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0) {
        rc = (v.mv_size == 4 && get_u32(v.mv_data) == STORE_SCHEMA) ? 0 : STORE_E_SCHEMA;
        goto out;
    }
    if (rc != MDB_NOTFOUND)
        goto out;
    uint8_t buf[4];
    put_u32(buf, STORE_SCHEMA);
    v.mv_size = sizeof(buf);
    v.mv_data = buf;
    rc = mdb_put(txn, s->meta, &k, &v, 0);
out:
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    gate_leave(s);
    return rc > 0 ? -rc : rc;
}

int store_open(const char *path, size_t map_size_bytes, store **out)
{
    int rc;
    store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->gate_mu, NULL);
    pthread_cond_init(&s->gate_cv, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);

    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    if ((rc = mdb_env_create(&s->env)) != 0)
        goto out;
    if ((rc = mdb_env_set_maxdbs(s->env, 8)) != 0
        || (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) != 0
        || (rc = mdb_env_set_mapsize(s->env, map_size_bytes ? map_size_bytes
                                                            : STORE_DEFAULT_MAP)) != 0)
        goto out;
    /* MDB_NOTLS: a reader's slot belongs to its store_reader, not to the thread, so readers
     * can move between pooled threads. Default sync: a returned commit is on disk. */
    if ((rc = mdb_env_open(s->env, path, MDB_NOTLS, 0600)) != 0)
        goto out;
#ifdef SCEPD_MUTANT_NOSYNC   /* test-only breakage, docs/testing-mutants.md */
    mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
#endif
    s->max_key = (unsigned)mdb_env_get_maxkeysize(s->env);
    rc = open_schema(s);
out:
    if (rc > 0)
        rc = -rc;
    if (rc == 0) {
        *out = s;
    } else {
        store_close(s);
    }
    return rc;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    store_writer_stop(s);
    if (s->env != NULL)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->gate_mu);
    pthread_cond_destroy(&s->gate_cv);
    pthread_mutex_destroy(&s->q_mu);
    pthread_cond_destroy(&s->q_cv);
    free(s);
}

/* ---- readers ---- */

int store_reader_create(store *s, store_reader **out)
{
    store_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->s = s;
    *out = r;
    return 0;
}

void store_reader_destroy(store_reader *r)
{
    if (r == NULL)
        return;
    store_reader_end(r);
    if (r->txn != NULL)
        mdb_txn_abort(r->txn);   /* frees the reset transaction and its reader slot */
    free(r);
}

int store_reader_begin(store_reader *r)
{
    int rc = 0;
    store_reader_end(r);
    for (int i = 0; i < STORE_MAX_RETRIES; i++) {
        gate_enter(r->s);
        rc = r->txn == NULL ? mdb_txn_begin(r->s->env, NULL, MDB_RDONLY, &r->txn)
                            : mdb_txn_renew(r->txn);
        if (rc == 0) {
            r->active = true;
            return 0;
        }
        gate_leave(r->s);
        if (rc != MDB_MAP_RESIZED)
            break;
        /* A renew that failed this way has already released its slot; the transaction
         * stays renewable. */
        if ((rc = gate_resize(r->s, 0, true)) != 0)
            break;
    }
    return rc > 0 ? -rc : rc;
}

void store_reader_end(store_reader *r)
{
    if (r == NULL || !r->active)
        return;
    mdb_txn_reset(r->txn);
    r->active = false;
    gate_leave(r->s);
}

static int get_cert_in(MDB_txn *txn, MDB_dbi dbi, const uint8_t *serial, store_cert *out)
{
    MDB_val k = { STORE_SERIAL_LEN, (void *)serial }, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    return cert_decode(&k, &v, out);
}

int store_get_cert(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN], store_cert *out)
{
    if (!r->active)
        return -EINVAL;
    store_cert c;
    int rc = get_cert_in(r->txn, r->s->certs, serial, &c);
    if (rc == 0)
        *out = c;
    return rc;
}

static int get_txid_in(store *s, MDB_txn *txn, const char *txid, size_t txid_len,
                       uint8_t *serial, uint8_t *key_hash)
{
    if (txid_len == 0 || txid_len > s->max_key || txid == NULL)
        return txid_len > s->max_key ? STORE_NOTFOUND : -EINVAL;
    MDB_val k = { txid_len, (void *)txid }, v;
    int rc = mdb_get(txn, s->txid, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    if (v.mv_size != TXID_VAL_LEN)
        return STORE_E_CORRUPT;
    memcpy(serial, v.mv_data, STORE_SERIAL_LEN);
    memcpy(key_hash, (const uint8_t *)v.mv_data + STORE_SERIAL_LEN, STORE_HASH_LEN);
    return 0;
}

int store_get_txid(store_reader *r, const char *txid, size_t txid_len,
                   uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN])
{
    if (!r->active)
        return -EINVAL;
    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    int rc = get_txid_in(r->s, r->txn, txid, txid_len, sn, kh);
    if (rc == 0) {
        memcpy(serial, sn, sizeof(sn));
        memcpy(key_hash, kh, sizeof(kh));
    }
    return rc;
}

int store_foreach_cert(store_reader *r, int (*cb)(const store_cert *c, void *arg), void *arg)
{
    if (!r->active)
        return -EINVAL;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, r->s->certs, &cur);
    if (rc != 0) {
        rc = rc > 0 ? -rc : rc;
        goto out;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_cert c;
        if ((rc = cert_decode(&k, &v, &c)) != 0 || (rc = cb(&c, arg)) != 0)
            goto out;   /* cb's value is returned as is */
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = -rc;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc;
}

int store_foreach_subject(store_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                          int (*cb)(const store_cert *c, void *arg), void *arg)
{
    if (!r->active)
        return -EINVAL;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, r->s->subject, &cur);
    if (rc != 0) {
        rc = rc > 0 ? -rc : rc;
        goto out;
    }
    MDB_val k = { STORE_HASH_LEN, (void *)subject_hash }, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        store_cert c;
        if (v.mv_size != STORE_SERIAL_LEN) {
            rc = STORE_E_CORRUPT;
            goto out;
        }
        rc = get_cert_in(r->txn, r->s->certs, v.mv_data, &c);
        if (rc == STORE_NOTFOUND)
            rc = STORE_E_CORRUPT;   /* index entry without its certificate */
        if (rc != 0 || (rc = cb(&c, arg)) != 0)
            goto out;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = -rc;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc;
}

/* Entries of one database in the reader's snapshot. */
static int db_count(store_reader *r, MDB_dbi dbi, size_t *n)
{
    if (!r->active)
        return -EINVAL;
    MDB_stat st;
    int rc = mdb_stat(r->txn, dbi, &st);
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    *n = st.ms_entries;
    return 0;
}

int store_count(store_reader *r, size_t *n)
{
    return db_count(r, r->s->certs, n);
}

int store_ping(store *s)
{
    MDB_txn *txn = NULL;
    int rc = txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    MDB_stat st;
    rc = mdb_stat(txn, s->meta, &st);
    mdb_txn_abort(txn);
    gate_leave(s);
    return rc > 0 ? -rc : rc;
}

/* ---- writing ---- */

/* Applies one put inside txn. Both conflicts are checked before anything is written, so a
 * put that is refused leaves no trace; a failing mdb_put poisons the whole transaction and
 * is returned as a batch error (< 0, with *fatal set). */
static int put_cert(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    const store_cert *c = &p->cert;
    int rc;
    if (!cert_valid(s, c))
        return -EINVAL;
    MDB_val sk = { STORE_SERIAL_LEN, (void *)c->serial }, v;
    rc = mdb_get(txn, s->certs, &sk, &v);
    if (rc == 0)
        return STORE_DUP_SERIAL;
    if (rc != MDB_NOTFOUND)
        goto fail;
    if (c->txid_len > 0) {
        rc = get_txid_in(s, txn, c->txid, c->txid_len, p->existing_serial,
                         p->existing_key_hash);
        if (rc == 0)
            return STORE_DUP_TXID;
        if (rc != STORE_NOTFOUND)
            goto fail;
    }
    v.mv_size = cert_encoded_len(c);
    v.mv_data = NULL;
    if ((rc = mdb_put(txn, s->certs, &sk, &v, MDB_NOOVERWRITE | MDB_RESERVE)) != 0)
        goto fail;
    cert_encode(c, v.mv_data);
    if (c->txid_len > 0) {
        uint8_t tv[TXID_VAL_LEN];
        memcpy(tv, c->serial, STORE_SERIAL_LEN);
        memcpy(tv + STORE_SERIAL_LEN, c->key_hash, STORE_HASH_LEN);
        MDB_val tk = { c->txid_len, (void *)c->txid }, tval = { sizeof(tv), tv };
        if ((rc = mdb_put(txn, s->txid, &tk, &tval, MDB_NOOVERWRITE)) != 0)
            goto fail;
    }
    MDB_val hk = { STORE_HASH_LEN, (void *)c->subject_hash };
    if ((rc = mdb_put(txn, s->subject, &hk, &sk, 0)) != 0)
        goto fail;
    return STORE_OK;
fail:
    *fatal = true;
    return rc > 0 ? -rc : rc;
}

/* ---- revocations ---- */

int store_reason_ok(int reason)
{
    return reason >= 0 && reason <= STORE_REASON_MAX && reason != 6 && reason != 7 && reason != 8;
}

static int rev_decode(const MDB_val *key, const MDB_val *val, store_revocation *rv)
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

static int get_rev_in(store *s, MDB_txn *txn, const uint8_t *serial, store_revocation *out)
{
    MDB_val k = { STORE_SERIAL_LEN, (void *)serial }, v;
    int rc = mdb_get(txn, s->revoked, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    return rev_decode(&k, &v, out);
}

int store_get_revocation(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                         store_revocation *out)
{
    if (!r->active)
        return -EINVAL;
    store_revocation rv;
    int rc = get_rev_in(r->s, r->txn, serial, &rv);
    if (rc == 0)
        *out = rv;
    return rc;
}

int store_foreach_revoked(store_reader *r, int (*cb)(const store_revocation *rv, void *arg),
                          void *arg)
{
    if (!r->active)
        return -EINVAL;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, r->s->revoked, &cur);
    if (rc != 0) {
        rc = rc > 0 ? -rc : rc;
        goto out;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_revocation rv;
        if ((rc = rev_decode(&k, &v, &rv)) != 0 || (rc = cb(&rv, arg)) != 0)
            goto out;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = -rc;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc;
}

int store_count_revoked(store_reader *r, size_t *n)
{
    return db_count(r, r->s->revoked, n);
}

/* A meta u64 counter (absent: 0). */
static int get_counter(store *s, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k = { strlen(name), (void *)name }, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return 0;
    }
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    if (v.mv_size != 8)
        return STORE_E_CORRUPT;
    *out = (uint64_t)get_i64(v.mv_data);
    return 0;
}

static int put_counter(store *s, MDB_txn *txn, const char *name, uint64_t value)
{
    uint8_t buf[8];
    put_i64(buf, (int64_t)value);
    MDB_val k = { strlen(name), (void *)name }, v = { sizeof(buf), buf };
    return mdb_put(txn, s->meta, &k, &v, 0);
}

int store_get_counters(store_reader *r, uint64_t *rev_gen, uint64_t *crl_number)
{
    if (!r->active)
        return -EINVAL;
    uint64_t g = 0, n = 0;
    int rc = get_counter(r->s, r->txn, "rev_gen", &g);
    if (rc == 0)
        rc = get_counter(r->s, r->txn, "crl_number", &n);
    if (rc == 0) {
        *rev_gen = g;
        *crl_number = n;
    }
    return rc;
}

/* Marks a certificate revoked: its record's status byte, the revoked entry, rev_gen + 1. */
static int put_revoke(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    store_revocation *rv = &p->rev;
    uint8_t *copy = NULL;
    int rc;
    if (!store_reason_ok(rv->reason) || rv->who_len > REV_WHO_MAX ||
        (rv->who_len > 0 && rv->who == NULL))
        return -EINVAL;
    MDB_val sk = { STORE_SERIAL_LEN, rv->serial }, v;
    rc = mdb_get(txn, s->certs, &sk, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        goto fail;
    store_cert c;
    if (cert_decode(&sk, &v, &c) != 0)
        return STORE_E_CORRUPT;
    store_revocation old;
    rc = get_rev_in(s, txn, rv->serial, &old);
    if (rc == 0) {
        old.who = NULL;
        old.who_len = 0;
        *rv = old;
        return STORE_ALREADY_REVOKED;
    }
    if (rc == STORE_E_CORRUPT)
        return rc;
    if (rc != STORE_NOTFOUND)
        goto fail;
    /* The record is rewritten from a copy: the put may move the page it lives in. */
    copy = malloc(v.mv_size);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, v.mv_data, v.mv_size);
    copy[REC_OFF_STATUS] = STORE_CERT_REVOKED;
    MDB_val nv = { v.mv_size, copy };
    if ((rc = mdb_put(txn, s->certs, &sk, &nv, 0)) != 0)
        goto fail;
    uint8_t hdr[REV_HDR_LEN + REV_WHO_MAX];
    memset(hdr, 0, REV_HDR_LEN);
    hdr[0] = REV_VERSION;
    hdr[1] = (uint8_t)rv->reason;
    put_u32(hdr + REV_OFF_WHOLEN, (uint32_t)rv->who_len);
    put_i64(hdr + REV_OFF_AT, rv->revoked_at);
    put_i64(hdr + REV_OFF_INV, rv->invalidity);
    if (rv->who_len > 0)
        memcpy(hdr + REV_HDR_LEN, rv->who, rv->who_len);
    MDB_val rvv = { REV_HDR_LEN + rv->who_len, hdr };
    if ((rc = mdb_put(txn, s->revoked, &sk, &rvv, MDB_NOOVERWRITE)) != 0)
        goto fail;
    uint64_t gen = 0;
    if ((rc = get_counter(s, txn, "rev_gen", &gen)) != 0 ||
        (rc = put_counter(s, txn, "rev_gen", gen + 1)) != 0)
        goto fail;
    free(copy);
    return STORE_OK;
fail:
    free(copy);
    *fatal = true;
    return rc > 0 ? -rc : rc;
}

static int put_crl_number(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    uint64_t cur = 0;
    int rc = get_counter(s, txn, "crl_number", &cur);
    if (rc == STORE_E_CORRUPT)
        return rc;
    if (rc == 0 && p->crl_number <= cur)
        return -ERANGE;
    if (rc == 0)
        rc = put_counter(s, txn, "crl_number", p->crl_number);
    if (rc != 0) {
        *fatal = true;
        return rc > 0 ? -rc : rc;
    }
    return STORE_OK;
}

/* ---- auxiliary databases ---- */

static bool aux_ok(int db, const void *key, size_t key_len)
{
    return db >= 0 && db < STORE_DB__COUNT && key != NULL && key_len > 0 &&
           key_len <= STORE_AUX_KEY_MAX;
}

int store_get_aux(store_reader *r, int db, const void *key, size_t key_len,
                  const uint8_t **val, size_t *val_len)
{
    if (!r->active || !aux_ok(db, key, key_len))
        return -EINVAL;
    MDB_val k = { key_len, (void *)key }, v;
    int rc = mdb_get(r->txn, r->s->aux[db], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    *val = v.mv_data;
    *val_len = v.mv_size;
    return 0;
}

int store_foreach_aux(store_reader *r, int db,
                      int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                size_t val_len, void *arg),
                      void *arg)
{
    if (!r->active || db < 0 || db >= STORE_DB__COUNT)
        return -EINVAL;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, r->s->aux[db], &cur);
    if (rc != 0) {
        rc = rc > 0 ? -rc : rc;
        goto out;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((rc = cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, arg)) != 0)
            goto out;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = -rc;
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc;
}

static int put_update(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    if (!aux_ok(p->aux_db, p->aux_key, p->aux_key_len) || p->update == NULL)
        return -EINVAL;
    MDB_val k = { p->aux_key_len, (void *)p->aux_key }, v;
    int rc = mdb_get(txn, s->aux[p->aux_db], &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto fail;
    const uint8_t *nv = NULL;
    size_t nl = 0;
    p->verdict = p->update(rc == 0 ? v.mv_data : NULL, rc == 0 ? v.mv_size : 0, p->update_arg,
                           &nv, &nl);
    if (nv != NULL) {
        MDB_val w = { nl, (void *)nv };
        if ((rc = mdb_put(txn, s->aux[p->aux_db], &k, &w, 0)) != 0)
            goto fail;
    }
    return STORE_OK;
fail:
    *fatal = true;
    return rc > 0 ? -rc : rc;
}

static int put_one(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    switch (p->kind) {
    case STORE_PUT_CERT:       return put_cert(s, txn, p, fatal);
    case STORE_PUT_REVOKE:     return put_revoke(s, txn, p, fatal);
    case STORE_PUT_CRL_NUMBER: return put_crl_number(s, txn, p, fatal);
    case STORE_PUT_UPDATE:     return put_update(s, txn, p, fatal);
    default:                   return -EINVAL;
    }
}

/* Writes a list in one transaction on the calling thread; grows the map and retries the whole
 * list on MDB_MAP_FULL. Returns 0 or the batch error (also stored in every ->result). */
static int write_batch(store *s, store_put *list)
{
    int rc = 0;
    for (int attempt = 0; attempt < STORE_MAX_RETRIES; attempt++) {
        MDB_txn *txn = NULL;
        bool fatal = false;
        rc = txn_begin(s, 0, &txn);
        if (rc != 0)
            break;
        size_t seen = map_size(s);   /* stable: no resize while we hold a gate share */
        for (store_put *p = list; p != NULL && !fatal; p = p->next) {
            int r = put_one(s, txn, p, &fatal);
            if (fatal)
                rc = r;
            else
                p->result = r;
        }
        if (fatal) {
            mdb_txn_abort(txn);
        } else {
            rc = mdb_txn_commit(txn);   /* frees txn on failure too */
            if (rc > 0)
                rc = -rc;
        }
        gate_leave(s);
        if (rc != MDB_MAP_FULL)
            break;
        if ((rc = gate_resize(s, seen, false)) != 0)
            break;
        rc = MDB_MAP_FULL;
    }
    if (rc != 0) {
        for (store_put *p = list; p != NULL; p = p->next)
            p->result = rc;
    }
    return rc;
}

int store_put_sync(store *s, store_put *list)
{
    pthread_mutex_lock(&s->q_mu);
    bool busy = s->writer_running;
    pthread_mutex_unlock(&s->q_mu);
    if (busy) {
        for (store_put *p = list; p != NULL; p = p->next)
            p->result = -EBUSY;
        return -EBUSY;
    }
    return write_batch(s, list);
}

static void *writer_main(void *arg)
{
    store *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->q_mu);
        while (s->q_head == NULL && !s->q_stop)
            pthread_cond_wait(&s->q_cv, &s->q_mu);
        store_put *list = s->q_head;
        s->q_head = s->q_tail = NULL;
        bool stop = s->q_stop;
        pthread_mutex_unlock(&s->q_mu);
        if (list == NULL && stop)
            break;
        while (list != NULL) {
            store_put *batch = list, *last = list;
            for (int n = 1; n < s->batch_max && last->next != NULL; n++)
                last = last->next;
            list = last->next;
            last->next = NULL;
            write_batch(s, batch);
            s->done(batch, s->done_arg);   /* may free or reuse the puts */
        }
    }
    return NULL;
}

int store_writer_start(store *s, int batch_max, store_done_fn done, void *arg)
{
    int rc = 0;
    if (batch_max <= 0 || done == NULL)
        return -EINVAL;
    pthread_mutex_lock(&s->q_mu);
    if (s->writer_running) {
        rc = -EBUSY;
        goto out;
    }
    s->batch_max = batch_max;
    s->done = done;
    s->done_arg = arg;
    s->q_stop = false;
    rc = -pthread_create(&s->writer, NULL, writer_main, s);
    if (rc == 0)
        s->writer_running = true;
out:
    pthread_mutex_unlock(&s->q_mu);
    return rc;
}

void store_writer_stop(store *s)
{
    pthread_mutex_lock(&s->q_mu);
    bool running = s->writer_running;
    s->q_stop = true;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
    if (!running)
        return;
    pthread_join(s->writer, NULL);
    pthread_mutex_lock(&s->q_mu);
    s->writer_running = false;
    pthread_mutex_unlock(&s->q_mu);
}

void store_submit(store *s, store_put *list)
{
    if (list == NULL)
        return;
    store_put *tail = list;
    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_tail != NULL)
        s->q_tail->next = list;
    else
        s->q_head = list;
    s->q_tail = tail;
    pthread_cond_signal(&s->q_cv);
    pthread_mutex_unlock(&s->q_mu);
}

const char *store_strerror(int rc)
{
    switch (rc) {
    case STORE_OK:          return "success";
    case STORE_NOTFOUND:    return "not found";
    case STORE_DUP_SERIAL:  return "serial already present";
    case STORE_DUP_TXID:    return "transactionID already mapped";
    case STORE_ALREADY_REVOKED: return "certificate already revoked";
    case STORE_E_CORRUPT:   return "corrupt store record";
    case STORE_E_SCHEMA:    return "store schema version not supported";
    default:                break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return mdb_strerror(rc);
}
