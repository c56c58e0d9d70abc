/* store: applying a list of puts in one write transaction (certificate, revocation, CRL
 * number, read-modify-write or insert of an auxiliary record, a certificate or insert under a
 * condition), with map growth and retry, on the calling thread: the writer thread's batches
 * and store_put_sync both come here. */
#include "engine/store/store.h"
#include "engine/store/store_internal.h"

#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How far ahead of LMDB's last page the data file is kept written (zeros). */
#define STORE_ZERO_AHEAD ((off_t)1 << 20)

/* Applies one put inside txn. Both conflicts are checked before anything is written, so a
 * put that is refused leaves no trace; a failing mdb_put poisons the whole transaction and
 * is returned as a batch error (< 0, with *fatal set). */
static int put_cert(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    const store_cert *c = &p->cert;
    int rc;
    if (!store_cert_valid(s, c))
        return -EINVAL;
    MDB_val sk = { STORE_SERIAL_LEN, (void *)c->serial }, v;
    rc = mdb_get(txn, s->certs, &sk, &v);
    if (rc == 0)
        return STORE_DUP_SERIAL;
    if (rc != MDB_NOTFOUND)
        goto fail;
    if (c->txid_len > 0) {
        rc = store_txid_in(s, txn, c->txid, c->txid_len, p->existing_serial,
                         p->existing_key_hash);
        if (rc == 0)
            return STORE_DUP_TXID;
        if (rc != STORE_NOTFOUND)
            goto fail;
    }
    v.mv_size = store_cert_len(c);
    v.mv_data = NULL;
    if ((rc = mdb_put(txn, s->certs, &sk, &v, MDB_NOOVERWRITE | MDB_RESERVE)) != 0)
        goto fail;
    store_cert_encode(c, v.mv_data);
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

static int put_counter(store *s, MDB_txn *txn, const char *name, uint64_t value)
{
    uint8_t buf[8];
    put_i64(buf, (int64_t)value);
    MDB_val k = { strlen(name), (void *)name }, v = { sizeof(buf), buf };
    return mdb_put(txn, s->meta, &k, &v, 0);
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
    if (store_cert_decode(&sk, &v, &c) != 0)
        return STORE_E_CORRUPT;
    store_revocation old;
    rc = store_rev_in(s, txn, rv->serial, &old);
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
    MDB_val rvv = { store_rev_encode(rv, hdr), hdr };
    if ((rc = mdb_put(txn, s->revoked, &sk, &rvv, MDB_NOOVERWRITE)) != 0)
        goto fail;
    uint64_t gen = 0;
    if ((rc = store_counter_get(s, txn, "rev_gen", &gen)) != 0 ||
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
    int rc = store_counter_get(s, txn, "crl_number", &cur);
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

static int put_update(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    if (!store_aux_ok(p->aux_db, p->aux_key, p->aux_key_len) || p->update == NULL)
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

/* Adds an auxiliary record unless its key exists (then STORE_CONFLICT, nothing written). */
static int put_insert(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    if (!store_aux_ok(p->aux_db, p->aux_key, p->aux_key_len) || p->aux_val == NULL ||
        p->aux_val_len == 0)
        return -EINVAL;
    MDB_val k = { p->aux_key_len, (void *)p->aux_key }, v = { p->aux_val_len, (void *)p->aux_val };
    int rc = mdb_put(txn, s->aux[p->aux_db], &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return STORE_CONFLICT;
    if (rc == 0)
        return STORE_OK;
    *fatal = true;
    return rc > 0 ? -rc : rc;
}

/* Runs a put's condition (store.h): STORE_OK with the value to write along with the put
 * (*nv NULL: none), STORE_CONFLICT when it refuses, -EINVAL, or a fatal error. */
static int cond_check(store *s, MDB_txn *txn, store_put *p, const uint8_t **nv, size_t *nl,
                      bool *fatal)
{
    if ((p->kind != STORE_PUT_CERT && p->kind != STORE_PUT_INSERT) ||
        !store_aux_ok(p->cond_db, p->cond_key, p->cond_key_len))
        return -EINVAL;
    MDB_val k = { p->cond_key_len, (void *)p->cond_key }, v;
    int rc = mdb_get(txn, s->aux[p->cond_db], &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        *fatal = true;
        return rc > 0 ? -rc : rc;
    }
    p->cond_verdict = p->cond(rc == 0 ? v.mv_data : NULL, rc == 0 ? v.mv_size : 0,
                              p->cond_arg, nv, nl);
    return p->cond_verdict != 0 ? STORE_CONFLICT : STORE_OK;
}

/* One put, with its condition: the condition decides first, but its record is written only
 * after the put itself has written (every refusal of a put is decided before it writes). */
static int put_one(store *s, MDB_txn *txn, store_put *p, bool *fatal)
{
    const uint8_t *cv = NULL;
    size_t cl = 0;
    int rc;
    if (p->cond != NULL && (rc = cond_check(s, txn, p, &cv, &cl, fatal)) != STORE_OK)
        return rc;
    switch (p->kind) {
    case STORE_PUT_CERT:       rc = put_cert(s, txn, p, fatal); break;
    case STORE_PUT_REVOKE:     rc = put_revoke(s, txn, p, fatal); break;
    case STORE_PUT_CRL_NUMBER: rc = put_crl_number(s, txn, p, fatal); break;
    case STORE_PUT_UPDATE:     rc = put_update(s, txn, p, fatal); break;
    case STORE_PUT_INSERT:     rc = put_insert(s, txn, p, fatal); break;
    default:                   rc = -EINVAL; break;
    }
    if (rc == STORE_OK && cv != NULL) {
        MDB_val k = { p->cond_key_len, (void *)p->cond_key }, w = { cl, (void *)cv };
        int wr = mdb_put(txn, s->aux[p->cond_db], &k, &w, 0);
        if (wr != 0) {
            *fatal = true;
            rc = wr > 0 ? -wr : wr;
        }
    }
    return rc;
}

/* Keeps the data file written with zeros up to STORE_ZERO_AHEAD past LMDB's last page, so
 * that a commit overwrites allocated blocks instead of growing the file. On ext4 (here
 * without a journal) a commit that grows the file makes its fdatasync also write the inode
 * and wait for it: one more synchronous write for most commits (measured on commits of two
 * certificates: inode writes per commit 0.85 -> 0.51, the rest are timestamp updates; the
 * writer's CPU per commit -6 % in the median of 12 pairs, 10 of them lower, on a shared
 * machine; MDB_WRITEMAP instead costs +20 %, so LMDB keeps writing with pwrite). Zeros, not fallocate: writing into an
 * unwritten extent is a metadata change again.
 *
 * Safe because it runs inside a write transaction before any put: LMDB's writer lock is
 * held, so no commit of any process runs meanwhile; it writes only past the file's current
 * end, which no committed page reaches (a committed page was written); LMDB never reads a
 * page past its last committed one, and its own writes later overwrite these zeros. Nothing
 * here needs a sync: the extension is not referenced by any meta page, and the first commit
 * that writes into it has its fdatasync carry the file's new size along. A failure only
 * leaves the file shorter (the commit then grows it as before). Capped at the map size. */
static void zero_ahead(store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    int fd = -1;
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0 ||
        mdb_env_get_fd(s->env, &fd) != 0)
        return;
    off_t used = (off_t)(info.me_last_pgno + 1) * (off_t)st.ms_psize;
    off_t want = used + STORE_ZERO_AHEAD;
    if (want > (off_t)info.me_mapsize)
        want = (off_t)info.me_mapsize;
    if (s->zeroed_end >= used + STORE_ZERO_AHEAD / 2 || s->zeroed_end >= want)
        return;                  /* the common case: far enough ahead, no system call */
    struct stat fst;
    if (fstat(fd, &fst) != 0)
        return;
    static const uint8_t zeros[64 * 1024];
    off_t at = fst.st_size;
    while (at < want) {
        size_t n = want - at < (off_t)sizeof(zeros) ? (size_t)(want - at) : sizeof(zeros);
        ssize_t w = pwrite(fd, zeros, n, at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        at += w;
    }
    s->zeroed_end = at;
}

/* Writes a list in one transaction on the calling thread; grows the map and retries the whole
 * list on MDB_MAP_FULL. Returns 0 or the batch error (also stored in every ->result). */
int store_write_batch(store *s, store_put *list)
{
    int rc = 0;
    if (s->pg != NULL)
        return store_pg_write_batch(s->pg, list);
    for (int attempt = 0; attempt < STORE_MAX_RETRIES; attempt++) {
        MDB_txn *txn = NULL;
        bool fatal = false;
        rc = store_txn_begin(s, 0, &txn);
        if (rc != 0)
            break;
        size_t seen = store_map_size(s);   /* stable: no resize while we hold a gate share */
        zero_ahead(s);
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
        store_gate_leave(s);
        if (rc != MDB_MAP_FULL)
            break;
        if ((rc = store_gate_resize(s, seen, false)) != 0)
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
    return store_write_batch(s, list);
}

