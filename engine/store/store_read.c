/* store: reader snapshots and every lookup and walk over them (certificates, the transactionID
 * and subject indexes, revocations, counters, auxiliary databases). A reader's functions run
 * on whichever thread holds the reader. */
#include "engine/store/store.h"
#include "engine/store/store_internal.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int store_reader_create(store *s, store_reader **out)
{
    int rc;
    store_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->s = s;
    if (s->pg != NULL && (rc = store_pg_reader_create(s->pg, &r->pg)) != 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void store_reader_destroy(store_reader *r)
{
    if (r == NULL)
        return;
    store_reader_end(r);
    store_pg_reader_destroy(r->pg);
    if (r->txn != NULL)
        mdb_txn_abort(r->txn);   /* frees the reset transaction and its reader slot */
    free(r);
}

int store_reader_begin(store_reader *r)
{
    int rc = 0;
    if (r->pg != NULL)
        return store_pg_reader_begin(r->pg);
    store_reader_end(r);
    for (int i = 0; i < STORE_MAX_RETRIES; i++) {
        store_gate_enter(r->s);
        rc = r->txn == NULL ? mdb_txn_begin(r->s->env, NULL, MDB_RDONLY, &r->txn)
                            : mdb_txn_renew(r->txn);
        if (rc == 0) {
            r->active = true;
            return 0;
        }
        store_gate_leave(r->s);
        if (rc != MDB_MAP_RESIZED)
            break;
        /* A renew that failed this way has already released its slot; the transaction
         * stays renewable. */
        if ((rc = store_gate_resize(r->s, 0, true)) != 0)
            break;
    }
    return rc > 0 ? -rc : rc;
}

void store_reader_end(store_reader *r)
{
    if (r != NULL && r->pg != NULL)
        store_pg_reader_end(r->pg);
    if (r == NULL || !r->active)
        return;
    mdb_txn_reset(r->txn);
    r->active = false;
    store_gate_leave(r->s);
}

static int get_cert_in(MDB_txn *txn, MDB_dbi dbi, const uint8_t *serial, store_cert *out)
{
    MDB_val k = { STORE_SERIAL_LEN, (void *)serial }, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    return store_cert_decode(&k, &v, out);
}

int store_get_cert(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN], store_cert *out)
{
    if (r->pg != NULL)
        return store_pg_get_cert(r->pg, serial, out);
    if (!r->active)
        return -EINVAL;
    store_cert c;
    int rc = get_cert_in(r->txn, r->s->certs, serial, &c);
    if (rc == 0)
        *out = c;
    return rc;
}

int store_txid_in(store *s, MDB_txn *txn, const char *txid, size_t txid_len,
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
    if (r->pg != NULL)
        return store_pg_get_txid(r->pg, txid, txid_len, serial, key_hash);
    if (!r->active)
        return -EINVAL;
    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    int rc = store_txid_in(r->s, r->txn, txid, txid_len, sn, kh);
    if (rc == 0) {
        memcpy(serial, sn, sizeof(sn));
        memcpy(key_hash, kh, sizeof(kh));
    }
    return rc;
}

/* Walks dbi in the reader's snapshot: every entry in key order, or (dup_key set) the
 * duplicates of one key. row's non-zero value stops the walk and is returned as is (the
 * callers' callbacks keep their own codes); otherwise 0 or -errno / MDB code < 0. */
static int db_walk(store_reader *r, MDB_dbi dbi, const MDB_val *dup_key,
                   int (*row)(const MDB_val *k, const MDB_val *v, void *ctx), void *ctx)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, dbi, &cur);
    if (rc != 0) {
        rc = rc > 0 ? -rc : rc;
        goto out;
    }
    MDB_val k = dup_key != NULL ? *dup_key : (MDB_val){0, NULL}, v;
    MDB_cursor_op first = dup_key != NULL ? MDB_SET_KEY : MDB_FIRST;
    MDB_cursor_op next = dup_key != NULL ? MDB_NEXT_DUP : MDB_NEXT;
    for (rc = mdb_cursor_get(cur, &k, &v, first); rc == 0; rc = mdb_cursor_get(cur, &k, &v, next)) {
        if ((rc = row(&k, &v, ctx)) != 0)
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

struct cert_walk {
    store_reader *r;
    int (*cb)(const store_cert *c, void *arg);
    void *arg;
};

static int cert_row(const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct cert_walk *w = ctx;
    store_cert c;
    int rc = store_cert_decode(k, v, &c);
    return rc != 0 ? rc : w->cb(&c, w->arg);
}

/* A subject index entry: the serial of a certificate, which must exist. */
static int subject_row(const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct cert_walk *w = ctx;
    store_cert c;
    (void)k;
    if (v->mv_size != STORE_SERIAL_LEN)
        return STORE_E_CORRUPT;
    int rc = get_cert_in(w->r->txn, w->r->s->certs, v->mv_data, &c);
    if (rc == STORE_NOTFOUND)
        rc = STORE_E_CORRUPT;   /* index entry without its certificate */
    return rc != 0 ? rc : w->cb(&c, w->arg);
}

int store_foreach_cert(store_reader *r, int (*cb)(const store_cert *c, void *arg), void *arg)
{
    if (r->pg != NULL)
        return store_pg_foreach_cert(r->pg, cb, arg);
    if (!r->active)
        return -EINVAL;
    struct cert_walk w = { r, cb, arg };
    return db_walk(r, r->s->certs, NULL, cert_row, &w);
}

int store_foreach_subject(store_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                          int (*cb)(const store_cert *c, void *arg), void *arg)
{
    if (r->pg != NULL)
        return store_pg_foreach_subject(r->pg, subject_hash, cb, arg);
    if (!r->active)
        return -EINVAL;
    struct cert_walk w = { r, cb, arg };
    MDB_val key = { STORE_HASH_LEN, (void *)subject_hash };
    return db_walk(r, r->s->subject, &key, subject_row, &w);
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
    if (r->pg != NULL)
        return store_pg_count(r->pg, n);
    return db_count(r, r->s->certs, n);
}

int store_rev_in(store *s, MDB_txn *txn, const uint8_t *serial, store_revocation *out)
{
    MDB_val k = { STORE_SERIAL_LEN, (void *)serial }, v;
    int rc = mdb_get(txn, s->revoked, &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_NOTFOUND;
    if (rc != 0)
        return rc > 0 ? -rc : rc;
    return store_rev_decode(&k, &v, out);
}

int store_get_revocation(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                         store_revocation *out)
{
    if (r->pg != NULL)
        return store_pg_get_revocation(r->pg, serial, out);
    if (!r->active)
        return -EINVAL;
    store_revocation rv;
    int rc = store_rev_in(r->s, r->txn, serial, &rv);
    if (rc == 0)
        *out = rv;
    return rc;
}

struct rev_walk {
    int (*cb)(const store_revocation *rv, void *arg);
    void *arg;
};

static int rev_row(const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct rev_walk *w = ctx;
    store_revocation rv;
    int rc = store_rev_decode(k, v, &rv);
    return rc != 0 ? rc : w->cb(&rv, w->arg);
}

int store_foreach_revoked(store_reader *r, int (*cb)(const store_revocation *rv, void *arg),
                          void *arg)
{
    if (r->pg != NULL)
        return store_pg_foreach_revoked(r->pg, cb, arg);
    if (!r->active)
        return -EINVAL;
    struct rev_walk w = { cb, arg };
    return db_walk(r, r->s->revoked, NULL, rev_row, &w);
}

int store_count_revoked(store_reader *r, size_t *n)
{
    if (r->pg != NULL)
        return store_pg_count_revoked(r->pg, n);
    return db_count(r, r->s->revoked, n);
}

/* A meta u64 counter (absent: 0). */
int store_counter_get(store *s, MDB_txn *txn, const char *name, uint64_t *out)
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

int store_get_counters(store_reader *r, uint64_t *rev_gen, uint64_t *crl_number)
{
    if (r->pg != NULL)
        return store_pg_get_counters(r->pg, rev_gen, crl_number);
    if (!r->active)
        return -EINVAL;
    uint64_t g = 0, n = 0;
    int rc = store_counter_get(r->s, r->txn, "rev_gen", &g);
    if (rc == 0)
        rc = store_counter_get(r->s, r->txn, "crl_number", &n);
    if (rc == 0) {
        *rev_gen = g;
        *crl_number = n;
    }
    return rc;
}

bool store_aux_ok(int db, const void *key, size_t key_len)
{
    return db >= 0 && db < STORE_DB__COUNT && key != NULL && key_len > 0 &&
           key_len <= STORE_AUX_KEY_MAX;
}

int store_get_aux(store_reader *r, int db, const void *key, size_t key_len,
                  const uint8_t **val, size_t *val_len)
{
    if (r->pg != NULL)
        return store_pg_get_aux(r->pg, db, key, key_len, val, val_len);
    if (!r->active || !store_aux_ok(db, key, key_len))
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

struct aux_walk {
    int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len, void *arg);
    void *arg;
};

static int aux_row(const MDB_val *k, const MDB_val *v, void *ctx)
{
    struct aux_walk *w = ctx;
    return w->cb(k->mv_data, k->mv_size, v->mv_data, v->mv_size, w->arg);
}

int store_foreach_aux(store_reader *r, int db,
                      int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                size_t val_len, void *arg),
                      void *arg)
{
    if (r->pg != NULL)
        return store_pg_foreach_aux(r->pg, db, cb, arg);
    if (!r->active || db < 0 || db >= STORE_DB__COUNT)
        return -EINVAL;
    struct aux_walk w = { cb, arg };
    return db_walk(r, r->s->aux[db], NULL, aux_row, &w);
}

