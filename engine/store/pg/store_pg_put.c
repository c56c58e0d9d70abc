/* store_pg: a list of puts in one transaction, the writer's group commit (certificate,
 * revocation, CRL number, read-modify-write or insert of an auxiliary record, a certificate
 * or insert under a condition). Every refusal of a put is decided without a failing statement (ON CONFLICT DO NOTHING, row locks, conditional
 * UPDATE), so one refused put never aborts its batch; a statement that fails does (the batch
 * error), and a deadlock or serialization failure against another node rolls the batch back
 * and runs it again. done (store_writer.c) runs only after COMMIT returned. */
#include "engine/store/pg/store_pg_internal.h"
#include "engine/store/store_internal.h"   /* store_aux_ok */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_BATCH_ATTEMPTS 8
#define PG_INSERT_RACES   4     /* an absent aux record inserted by another node meanwhile */

static bool cert_ok(const store_cert *c)
{
    return (c->status == STORE_CERT_VALID || c->status == STORE_CERT_REVOKED) &&
           c->der != NULL && c->der_len > 0 && c->der_len <= INT32_MAX &&
           (c->subject_len == 0 || c->subject != NULL) && c->subject_len <= INT32_MAX &&
           (c->profile_len == 0 || c->profile != NULL) && c->profile_len <= INT32_MAX &&
           (c->txid_len == 0 || c->txid != NULL) && c->txid_len <= PG_TXID_MAX;
}

/* Runs a statement inside the batch: the result, or NULL with *rc set and *fatal. */
static PGresult *run(pgc *w, enum pg_stmt st, const pgp *p, int *rc, bool *fatal)
{
    PGresult *r = pgc_run(w, st, p, rc);
    if (r == NULL)
        *fatal = true;
    return r;
}

/* The insert settles both conflicts at once (waiting for another node's transaction that
 * holds the same serial or txid); which one it was is read afterwards, serial first as in
 * the LMDB backend. */
static int put_cert(pgc *w, store_put *p, bool *fatal)
{
    const store_cert *c = &p->cert;
    int rc;
    if (!cert_ok(c))
        return -EINVAL;
    pgp a = {0};
    pgp_bytes(&a, c->serial, STORE_SERIAL_LEN);
    pgp_i64(&a, c->status);
    pgp_i64(&a, c->not_before);
    pgp_i64(&a, c->not_after);
    pgp_i64(&a, c->issued_at);
    pgp_bytes(&a, c->key_hash, STORE_HASH_LEN);
    pgp_bytes(&a, c->subject_hash, STORE_HASH_LEN);
    pgp_bytes(&a, c->subject, c->subject_len);
    if (c->txid_len > 0)
        pgp_bytes(&a, c->txid, c->txid_len);
    else
        pgp_null(&a);
    pgp_bytes(&a, c->profile, c->profile_len);
    pgp_bytes(&a, c->der, c->der_len);
    PGresult *r = run(w, PG_INS_CERT, &a, &rc, fatal);
    if (r == NULL)
        return rc;
    int inserted = PQntuples(r) == 1;
    PQclear(r);
    if (inserted)
        return STORE_OK;
    pgp s = {0};
    pgp_bytes(&s, c->serial, STORE_SERIAL_LEN);
    if ((r = run(w, PG_HAS_SERIAL, &s, &rc, fatal)) == NULL)
        return rc;
    int dup_serial = PQntuples(r) > 0;
    PQclear(r);
    if (dup_serial)
        return STORE_DUP_SERIAL;
    pgp t = {0};
    pgp_bytes(&t, c->txid, c->txid_len);
    if (c->txid_len == 0 || (r = run(w, PG_GET_TXID, &t, &rc, fatal)) == NULL) {
        *fatal = true;
        return c->txid_len == 0 ? -EAGAIN : rc;
    }
    rc = PQntuples(r) == 1 &&
         pg_col_fixed(r, 0, 0, p->existing_serial, STORE_SERIAL_LEN) == 0 &&
         pg_col_fixed(r, 0, 1, p->existing_key_hash, STORE_HASH_LEN) == 0 ? STORE_DUP_TXID
                                                                             : STORE_E_CORRUPT;
    PQclear(r);
    return rc;
}

/* The certificate's row lock orders concurrent revocations of one serial (on any node):
 * the second sees the first's entry and keeps it. */
static int put_revoke(pgc *w, store_put *p, bool *fatal)
{
    store_revocation *rv = &p->rev;
    int rc;
    if (!store_reason_ok(rv->reason) || rv->who_len > PG_WHO_MAX ||
        (rv->who_len > 0 && rv->who == NULL))
        return -EINVAL;
    pgp s = {0};
    pgp_bytes(&s, rv->serial, STORE_SERIAL_LEN);
    PGresult *r = run(w, PG_LOCK_CERT, &s, &rc, fatal);
    if (r == NULL)
        return rc;
    int exists = PQntuples(r) == 1;
    PQclear(r);
    if (!exists)
        return STORE_NOTFOUND;
    if ((r = run(w, PG_GET_REV, &s, &rc, fatal)) == NULL)
        return rc;
    if (PQntuples(r) == 1) {
        store_revocation old;
        rc = pg_row_rev(r, 0, &old);
        PQclear(r);
        if (rc != 0)
            return rc;
        old.who = NULL;
        old.who_len = 0;
        *rv = old;
        return STORE_ALREADY_REVOKED;
    }
    PQclear(r);
    pgp a = {0};
    pgp_bytes(&a, rv->serial, STORE_SERIAL_LEN);
    pgp_i64(&a, rv->reason);
    pgp_i64(&a, rv->revoked_at);
    pgp_i64(&a, rv->invalidity);
    pgp_bytes(&a, rv->who, rv->who_len);
    if ((r = run(w, PG_REVOKE, &a, &rc, fatal)) == NULL)
        return rc;
    PQclear(r);
    return STORE_OK;
}

/* Only a number above the stored one is written, under the row's lock: cluster-wide, no two
 * CRLs are committed with one number and the number never goes back. */
static int put_crl_number(pgc *w, store_put *p, bool *fatal)
{
    int rc;
    if (p->crl_number > INT64_MAX)
        return -ERANGE;
    pgp a = {0};
    pgp_i64(&a, (int64_t)p->crl_number);
    PGresult *r = run(w, PG_SET_CRL, &a, &rc, fatal);
    if (r == NULL)
        return rc;
    rc = PQntuples(r) == 1 ? STORE_OK : -ERANGE;
    PQclear(r);
    return rc;
}

/* Read-modify-write under the record's row lock (SELECT ... FOR UPDATE): a second node's
 * update of the same record waits and then sees the first one's value, so a one-time
 * challenge is consumed once. An absent record cannot be locked: its insert is conditional,
 * and when another node inserted it meanwhile the update runs again on that value. */
static int put_update(pgc *w, store_put *p, bool *fatal)
{
    int rc;
    if (!store_aux_ok(p->aux_db, p->aux_key, p->aux_key_len) || p->update == NULL)
        return -EINVAL;
    for (int i = 0; i < PG_INSERT_RACES; i++) {
        pgp k = {0};
        pgp_i64(&k, p->aux_db);
        pgp_bytes(&k, p->aux_key, p->aux_key_len);
        PGresult *r = run(w, PG_LOCK_AUX, &k, &rc, fatal);
        if (r == NULL)
            return rc;
        const uint8_t *cur = NULL, *nv = NULL;
        size_t cl = 0, nl = 0;
        int have = PQntuples(r) == 1;
        if (have)
            pg_col_bytes(r, 0, 0, &cur, &cl);
        p->verdict = p->update(cur, cl, p->update_arg, &nv, &nl);
        PQclear(r);
        if (nv == NULL)
            return STORE_OK;
        pgp_bytes(&k, nv, nl);
        if ((r = run(w, have ? PG_SET_AUX : PG_INS_AUX, &k, &rc, fatal)) == NULL)
            return rc;
        int written = have || PQntuples(r) == 1;
        PQclear(r);
        if (written)
            return STORE_OK;
    }
    *fatal = true;
    return -EAGAIN;
}

/* Adds an auxiliary record unless its key exists (STORE_CONFLICT, nothing written); a
 * concurrent insert of the same key on another node waits for that node's commit. */
static int put_insert(pgc *w, store_put *p, bool *fatal)
{
    int rc;
    if (!store_aux_ok(p->aux_db, p->aux_key, p->aux_key_len) || p->aux_val == NULL ||
        p->aux_val_len == 0)
        return -EINVAL;
    pgp a = {0};
    pgp_i64(&a, p->aux_db);
    pgp_bytes(&a, p->aux_key, p->aux_key_len);
    pgp_bytes(&a, p->aux_val, p->aux_val_len);
    PGresult *r = run(w, PG_INS_AUX, &a, &rc, fatal);
    if (r == NULL)
        return rc;
    rc = PQntuples(r) == 1 ? STORE_OK : STORE_CONFLICT;
    PQclear(r);
    return rc;
}

/* A put's condition (store.h): the record is locked (SELECT ... FOR UPDATE) and cond decides
 * on its committed value, so the same one-time challenge paying for two certificates on two
 * nodes is consumed by one of them; the other's cond sees it consumed. *held keeps the
 * result cond's input came from; *had says whether the record exists. */
static int cond_check(pgc *w, store_put *p, PGresult **held, bool *had, const uint8_t **nv,
                      size_t *nl, bool *fatal)
{
    int rc;
    if ((p->kind != STORE_PUT_CERT && p->kind != STORE_PUT_INSERT) ||
        !store_aux_ok(p->cond_db, p->cond_key, p->cond_key_len))
        return -EINVAL;
    pgp k = {0};
    pgp_i64(&k, p->cond_db);
    pgp_bytes(&k, p->cond_key, p->cond_key_len);
    PGresult *r = run(w, PG_LOCK_AUX, &k, &rc, fatal);
    if (r == NULL)
        return rc;
    const uint8_t *cur = NULL;
    size_t cl = 0;
    *had = PQntuples(r) == 1;
    if (*had)
        pg_col_bytes(r, 0, 0, &cur, &cl);
    *held = r;
    p->cond_verdict = p->cond(cur, cl, p->cond_arg, nv, nl);
    return p->cond_verdict != 0 ? STORE_CONFLICT : STORE_OK;
}

/* Writes the condition's new value after its put wrote. */
static int cond_write(pgc *w, store_put *p, bool had, const uint8_t *nv, size_t nl,
                      bool *fatal)
{
    int rc;
    pgp a = {0};
    pgp_i64(&a, p->cond_db);
    pgp_bytes(&a, p->cond_key, p->cond_key_len);
    pgp_bytes(&a, nv, nl);
    PGresult *r = run(w, had ? PG_SET_AUX : PG_INS_AUX, &a, &rc, fatal);
    if (r == NULL)
        return rc;
    int written = had || PQntuples(r) == 1;
    PQclear(r);
    if (!written) {         /* created meanwhile by another node: run the batch again */
        *fatal = true;
        return -EAGAIN;
    }
    return STORE_OK;
}

static int put_one(pgc *w, store_put *p, bool *fatal)
{
    PGresult *held = NULL;
    const uint8_t *cv = NULL;
    size_t cl = 0;
    bool had = false;
    int rc;
    if (p->cond != NULL &&
        (rc = cond_check(w, p, &held, &had, &cv, &cl, fatal)) != STORE_OK)
        goto out;
    switch (p->kind) {
    case STORE_PUT_CERT:       rc = put_cert(w, p, fatal); break;
    case STORE_PUT_REVOKE:     rc = put_revoke(w, p, fatal); break;
    case STORE_PUT_CRL_NUMBER: rc = put_crl_number(w, p, fatal); break;
    case STORE_PUT_UPDATE:     rc = put_update(w, p, fatal); break;
    case STORE_PUT_INSERT:     rc = put_insert(w, p, fatal); break;
    default:                   rc = -EINVAL; break;
    }
    if (rc == STORE_OK && cv != NULL)
        rc = cond_write(w, p, had, cv, cl, fatal);
out:
    PQclear(held);
    return rc;
}

static int batch_once(pgc *w, store_put *list)
{
    bool fatal = false;
    w->in_txn = false;
    int rc = pgc_exec(w, "BEGIN");
    if (rc != 0)
        return rc;
    w->in_txn = true;
    for (store_put *p = list; p != NULL && !fatal; p = p->next) {
        int r = put_one(w, p, &fatal);
        if (fatal)
            rc = r;
        else
            p->result = r;
    }
    if (fatal) {
        if (rc != -ENOTCONN)
            pgc_exec(w, "ROLLBACK");
        w->in_txn = false;
        return rc;
    }
    /* A COMMIT whose answer is lost may have committed: the batch still fails (503), the
     * client retries, and the transactionID finds what was stored. */
    rc = pgc_exec(w, "COMMIT");
    w->in_txn = false;
    return rc;
}

int store_pg_write_batch(store_pg *pg, store_put *list)
{
    int rc = 0;
    for (int attempt = 0; attempt < PG_BATCH_ATTEMPTS; attempt++) {
        rc = batch_once(&pg->writer, list);
        if (rc != -EAGAIN)
            break;
        /* lost a race with another node: back off a little, differently each time */
        struct timespec ts = { 0, (long)(1 + rand() % (4 << attempt)) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (rc != 0) {
        for (store_put *p = list; p != NULL; p = p->next)
            p->result = rc;
    }
    return rc;
}
