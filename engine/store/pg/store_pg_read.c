/* store_pg: readers. Each reader is a connection of its own (a worker's, the publisher's,
 * scepctl's), connected at its first begin and re-established with backoff after a loss. A
 * getter runs one prepared statement; the result is kept until store_pg_reader_end so the
 * pointers handed out stay valid, as with LMDB's snapshots. */
#include "engine/store/pg/store_pg_internal.h"
#include "engine/store/store_internal.h"   /* store_aux_ok */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int store_pg_reader_create(store_pg *pg, store_pg_reader **out)
{
    store_pg_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->pg = pg;
    r->conn = (pgc){ .pg = pg, .conninfo = pg->conninfo, .role = "reader" };
    *out = r;
    return 0;
}

void store_pg_reader_destroy(store_pg_reader *r)
{
    if (r == NULL)
        return;
    store_pg_reader_end(r);
    pgc_close(&r->conn);
    free(r->res);
    free(r);
}

int store_pg_reader_begin(store_pg_reader *r)
{
    store_pg_reader_end(r);
    int rc = pgc_ready(&r->conn);
    if (rc == 0)
        r->active = true;
    return rc;
}

void store_pg_reader_end(store_pg_reader *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nres; i++)
        PQclear(r->res[i]);
    r->nres = 0;
    r->active = false;
}

/* Runs st and keeps its result in the reader: the result, or NULL with *rc set. */
static PGresult *query(store_pg_reader *r, enum pg_stmt st, const pgp *p, int *rc)
{
    if (!r->active) {
        *rc = -EINVAL;
        return NULL;
    }
    if (r->nres == r->capres) {
        size_t cap = r->capres ? r->capres * 2 : 8;
        PGresult **n = realloc(r->res, cap * sizeof(*n));
        if (n == NULL) {
            *rc = -ENOMEM;
            return NULL;
        }
        r->res = n;
        r->capres = cap;
    }
    PGresult *res = pgc_run(&r->conn, st, p, rc);
    if (res != NULL)
        r->res[r->nres++] = res;
    return res;
}

int store_pg_get_cert(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                      store_cert *out)
{
    pgp p = {0};
    int rc;
    pgp_bytes(&p, serial, STORE_SERIAL_LEN);
    PGresult *res = query(r, PG_GET_CERT, &p, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        return STORE_NOTFOUND;
    store_cert c;
    rc = pg_row_cert(res, 0, &c);
    if (rc == 0)
        *out = c;
    return rc;
}

int store_pg_get_txid(store_pg_reader *r, const char *txid, size_t txid_len,
                      uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN])
{
    if (txid == NULL || txid_len == 0)
        return -EINVAL;
    if (txid_len > PG_TXID_MAX)
        return STORE_NOTFOUND;
    pgp p = {0};
    int rc;
    pgp_bytes(&p, txid, txid_len);
    PGresult *res = query(r, PG_GET_TXID, &p, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        return STORE_NOTFOUND;
    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    if (pg_col_fixed(res, 0, 0, sn, sizeof(sn)) != 0 || pg_col_fixed(res, 0, 1, kh, sizeof(kh)) != 0)
        return STORE_E_CORRUPT;
    memcpy(serial, sn, sizeof(sn));
    memcpy(key_hash, kh, sizeof(kh));
    return 0;
}

static int cert_rows(PGresult *res, int (*cb)(const store_cert *c, void *arg), void *arg)
{
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        store_cert c;
        int rc = pg_row_cert(res, i, &c);
        if (rc == 0)
            rc = cb(&c, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int store_pg_foreach_cert(store_pg_reader *r, int (*cb)(const store_cert *c, void *arg),
                          void *arg)
{
    int rc;
    PGresult *res = query(r, PG_ALL_CERTS, NULL, &rc);
    return res == NULL ? rc : cert_rows(res, cb, arg);
}

int store_pg_foreach_subject(store_pg_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                             int (*cb)(const store_cert *c, void *arg), void *arg)
{
    pgp p = {0};
    int rc;
    pgp_bytes(&p, subject_hash, STORE_HASH_LEN);
    PGresult *res = query(r, PG_SUBJ_CERTS, &p, &rc);
    return res == NULL ? rc : cert_rows(res, cb, arg);
}

static int count(store_pg_reader *r, enum pg_stmt st, size_t *n)
{
    int rc;
    int64_t v;
    PGresult *res = query(r, st, NULL, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) != 1 || pg_col_i64(res, 0, 0, &v) != 0 || v < 0)
        return STORE_E_CORRUPT;
    *n = (size_t)v;
    return 0;
}

int store_pg_count(store_pg_reader *r, size_t *n)
{
    return count(r, PG_COUNT_CERTS, n);
}

int store_pg_count_revoked(store_pg_reader *r, size_t *n)
{
    return count(r, PG_COUNT_REV, n);
}

int store_pg_get_revocation(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                            store_revocation *out)
{
    pgp p = {0};
    int rc;
    pgp_bytes(&p, serial, STORE_SERIAL_LEN);
    PGresult *res = query(r, PG_GET_REV, &p, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        return STORE_NOTFOUND;
    store_revocation rv;
    rc = pg_row_rev(res, 0, &rv);
    if (rc == 0)
        *out = rv;
    return rc;
}

int store_pg_foreach_revoked(store_pg_reader *r,
                             int (*cb)(const store_revocation *rv, void *arg), void *arg)
{
    int rc;
    PGresult *res = query(r, PG_ALL_REV, NULL, &rc);
    if (res == NULL)
        return rc;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        store_revocation rv;
        rc = pg_row_rev(res, i, &rv);
        if (rc == 0)
            rc = cb(&rv, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int store_pg_get_counters(store_pg_reader *r, uint64_t *rev_gen, uint64_t *crl_number)
{
    int rc;
    int64_t g, n;
    PGresult *res = query(r, PG_COUNTERS, NULL, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) != 1 || pg_col_i64(res, 0, 0, &g) != 0 || pg_col_i64(res, 0, 1, &n) != 0)
        return STORE_E_CORRUPT;
    *rev_gen = (uint64_t)g;
    *crl_number = (uint64_t)n;
    return 0;
}

int store_pg_get_aux(store_pg_reader *r, int db, const void *key, size_t key_len,
                     const uint8_t **val, size_t *val_len)
{
    if (!r->active || !store_aux_ok(db, key, key_len))
        return -EINVAL;
    pgp p = {0};
    int rc;
    pgp_i64(&p, db);
    pgp_bytes(&p, key, key_len);
    PGresult *res = query(r, PG_GET_AUX, &p, &rc);
    if (res == NULL)
        return rc;
    if (PQntuples(res) == 0)
        return STORE_NOTFOUND;
    pg_col_bytes(res, 0, 0, val, val_len);
    return 0;
}

int store_pg_foreach_aux(store_pg_reader *r, int db,
                         int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                   size_t val_len, void *arg),
                         void *arg)
{
    if (!r->active || db < 0 || db >= STORE_DB__COUNT)
        return -EINVAL;
    pgp p = {0};
    int rc;
    pgp_i64(&p, db);
    PGresult *res = query(r, PG_ALL_AUX, &p, &rc);
    if (res == NULL)
        return rc;
    int n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        const uint8_t *k, *v;
        size_t kl, vl;
        pg_col_bytes(res, i, 0, &k, &kl);
        pg_col_bytes(res, i, 1, &v, &vl);
        if ((rc = cb(k, kl, v, vl, arg)) != 0)
            return rc;
    }
    return 0;
}

/* ---- the CRL build lock (store.h; here because only PostgreSQL has one to take) ---- */

int store_crl_lock(store_reader *sr)
{
    if (sr->pg == NULL)
        return 0;           /* LMDB: one process, its publisher is the only builder */
    int rc;
    PGresult *res = pgc_run(&sr->pg->conn, PG_CRL_TRYLOCK, NULL, &rc);
    if (res == NULL)
        return rc;
    rc = PQntuples(res) == 1 && PQgetlength(res, 0, 0) == 1 && PQgetvalue(res, 0, 0)[0] == 1
       ? 0 : STORE_CONFLICT;
    PQclear(res);
    return rc;
}

void store_crl_unlock(store_reader *sr)
{
    if (sr->pg == NULL || sr->pg->conn.c == NULL)
        return;             /* no connection: the server dropped the lock with it */
    int rc;
    PQclear(pgc_run(&sr->pg->conn, PG_CRL_UNLOCK, NULL, &rc));
}
