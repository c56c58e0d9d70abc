/* store_pg: connections with reconnect and backoff, the prepared statements, binary parameter
 * and column helpers, the schema (creation, version check, migration), and the store-wide
 * open / close / ping. */
#include "engine/store/pg/store_pg_internal.h"
#include "engine/store/store_internal.h"   /* store's pg handle: store_set_event_cb */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Serialises schema creation between nodes that start at once. ASCII "SCEPD". */
#define PG_SCHEMA_LOCK "353553524516"

static const struct { const char *name, *sql; } pg_sql[PG__COUNT] = {
#define PG_ROW(n, s) { #n, s },
    PG_STATEMENTS(PG_ROW)
#undef PG_ROW
};

/* Version 1 of the schema (docs/ha.md). Run inside the schema lock's transaction. */
static const char pg_schema_v1[] =
    "CREATE TABLE scepd_meta (name text PRIMARY KEY, value int8 NOT NULL);"
    "CREATE TABLE scepd_certs (serial bytea PRIMARY KEY CHECK (length(serial) = 16),"
    " status int8 NOT NULL, not_before int8 NOT NULL, not_after int8 NOT NULL,"
    " issued_at int8 NOT NULL, key_hash bytea NOT NULL, subject_hash bytea NOT NULL,"
    " subject bytea NOT NULL, txid bytea UNIQUE, profile bytea NOT NULL, der bytea NOT NULL);"
    "CREATE INDEX scepd_certs_subject ON scepd_certs (subject_hash, serial);"
    "CREATE TABLE scepd_revoked (serial bytea PRIMARY KEY REFERENCES scepd_certs,"
    " reason int8 NOT NULL, revoked_at int8 NOT NULL, invalidity int8 NOT NULL,"
    " who bytea NOT NULL);"
    "CREATE TABLE scepd_aux (db int8 NOT NULL, key bytea NOT NULL, value bytea NOT NULL,"
    " PRIMARY KEY (db, key));"
    "INSERT INTO scepd_meta VALUES ('schema', 1), ('rev_gen', 0), ('crl_number', 0);";

const char *store_pg_conninfo(const char *location)
{
    size_t n = strlen(STORE_PG_PREFIX);
    return location != NULL && strncmp(location, STORE_PG_PREFIX, n) == 0 ? location + n : NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- parameters and columns ---- */

void pgp_bytes(pgp *p, const void *v, size_t len)
{
    p->val[p->n] = len > 0 ? v : "";
    p->len[p->n] = (int)len;
    p->fmt[p->n] = 1;
    p->n++;
}

void pgp_null(pgp *p)
{
    p->val[p->n] = NULL;
    p->len[p->n] = 0;
    p->fmt[p->n] = 1;
    p->n++;
}

void pgp_i64(pgp *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p->num[p->n][i] = (uint8_t)(u >> (56 - 8 * i));
    p->val[p->n] = (const char *)p->num[p->n];
    p->len[p->n] = 8;
    p->fmt[p->n] = 1;
    p->n++;
}

int pg_col_i64(const PGresult *r, int row, int col, int64_t *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return STORE_E_CORRUPT;
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | b[i];
    *out = (int64_t)u;
    return 0;
}

int pg_col_fixed(const PGresult *r, int row, int col, uint8_t *out, size_t len)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != len)
        return STORE_E_CORRUPT;
    memcpy(out, PQgetvalue(r, row, col), len);
    return 0;
}

void pg_col_bytes(const PGresult *r, int row, int col, const uint8_t **p, size_t *len)
{
    *p = (const uint8_t *)PQgetvalue(r, row, col);
    *len = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
}

int pg_row_cert(const PGresult *r, int row, store_cert *c)
{
    int64_t status;
    const uint8_t *p;
    memset(c, 0, sizeof(*c));
    if (PQnfields(r) != 11 || pg_col_fixed(r, row, 0, c->serial, STORE_SERIAL_LEN) != 0 ||
        pg_col_i64(r, row, 1, &status) != 0 || pg_col_i64(r, row, 2, &c->not_before) != 0 ||
        pg_col_i64(r, row, 3, &c->not_after) != 0 || pg_col_i64(r, row, 4, &c->issued_at) != 0 ||
        pg_col_fixed(r, row, 5, c->key_hash, STORE_HASH_LEN) != 0 ||
        pg_col_fixed(r, row, 6, c->subject_hash, STORE_HASH_LEN) != 0 ||
        (status != STORE_CERT_VALID && status != STORE_CERT_REVOKED))
        return STORE_E_CORRUPT;
    c->status = (int)status;
    pg_col_bytes(r, row, 7, &p, &c->subject_len);
    c->subject = (const char *)p;
    pg_col_bytes(r, row, 8, &p, &c->txid_len);
    c->txid = (const char *)p;
    pg_col_bytes(r, row, 9, &p, &c->profile_len);
    c->profile = (const char *)p;
    pg_col_bytes(r, row, 10, &c->der, &c->der_len);
    return c->der_len > 0 ? 0 : STORE_E_CORRUPT;
}

int pg_row_rev(const PGresult *r, int row, store_revocation *rv)
{
    int64_t reason;
    const uint8_t *p;
    memset(rv, 0, sizeof(*rv));
    if (PQnfields(r) != 5 || pg_col_fixed(r, row, 0, rv->serial, STORE_SERIAL_LEN) != 0 ||
        pg_col_i64(r, row, 1, &reason) != 0 || pg_col_i64(r, row, 2, &rv->revoked_at) != 0 ||
        pg_col_i64(r, row, 3, &rv->invalidity) != 0 || reason < 0 || reason > STORE_REASON_MAX ||
        !store_reason_ok((int)reason))
        return STORE_E_CORRUPT;
    rv->reason = (int)reason;
    pg_col_bytes(r, row, 4, &p, &rv->who_len);
    rv->who = (const char *)p;
    return rv->who_len <= PG_WHO_MAX ? 0 : STORE_E_CORRUPT;
}

/* ---- connections ---- */

static void pgc_log(pgc *pc, const char *what)
{
    const char *msg = pc->c != NULL ? PQerrorMessage(pc->c) : "out of memory";
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    fprintf(stderr, "scepd: store (postgresql, %s connection): %s: %.*s\n", pc->role, what,
            (int)n, msg);
}

/* A failure (up false: a connection lost or not established, msg: libpq's) or a connection
 * established (up true) of pc, for the outage events (store.h). */
static void pg_note(pgc *pc, bool up, const char *msg)
{
    store_pg *pg = pc->pg;
    if (pg == NULL)
        return;
    store_event ev = {0};
    char err[256];
    pthread_mutex_lock(&pg->ev_mu);
    int64_t now = mono_ms();
    if (!up) {
        pc->up_gen = pg->up_gen;
        pg->ev_fails++;
        if (!pg->outage) {
            pg->outage = true;
            pg->outage_ms = now;
        }
        if (!pg->reported && now - pg->ev_last_ms >= PG_EVENT_GAP_MS) {
            size_t n = strlen(msg);
            while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                n--;
            snprintf(err, sizeof(err), "%.*s", (int)n, msg);
            ev = (store_event){ .kind = STORE_EV_UNAVAILABLE, .conn = pc->role, .error = err,
                                .count = pg->ev_fails };
            pg->reported = true;
        }
    } else if (pg->outage) {
        pg->outage = false;
        pg->up_gen++;
        if (pg->reported) {
            ev = (store_event){ .kind = STORE_EV_RECOVERED, .conn = pc->role, .error = "",
                                .down_ms = now - pg->outage_ms, .count = pg->ev_fails };
            pg->reported = false;
        }
    }
    if (ev.kind != 0) {
        pg->ev_last_ms = now;
        pg->ev_fails = 0;
    }
    store_event_fn fn = pg->ev_fn;
    void *arg = pg->ev_arg;
    pthread_mutex_unlock(&pg->ev_mu);
    if (ev.kind != 0 && fn != NULL)
        fn(arg, &ev);
}

/* A connection failed: drop it; the next pgc_ready tries again at once, later ones back off. */
static void pgc_lost(pgc *pc)
{
    pg_note(pc, false, pc->c != NULL ? PQerrorMessage(pc->c) : "out of memory");
    if (!pc->down)
        pgc_log(pc, "connection lost");
    pc->down = true;
    PQfinish(pc->c);
    pc->c = NULL;
}

static int prepare_all(PGconn *c)
{
    for (int i = 0; i < PG__COUNT; i++) {
        PGresult *r = PQprepare(c, pg_sql[i].name, pg_sql[i].sql, 0, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return -1;
    }
    /* A CertRep leaves only after COMMIT returned: the commit must be durable by then,
     * whatever the server's default. */
    PGresult *r = PQexec(c, "SET synchronous_commit = on");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

/* 1 when another connection of pc's store was established since pc's last failure: the
 * database is back (a restart, a failover), no reason to wait out pc's backoff. */
static bool pg_back_since(pgc *pc)
{
    if (pc->pg == NULL)
        return false;
    pthread_mutex_lock(&pc->pg->ev_mu);
    bool back = pc->pg->up_gen != pc->up_gen;
    pthread_mutex_unlock(&pc->pg->ev_mu);
    return back;
}

int pgc_ready(pgc *pc)
{
    if (pc->c != NULL && PQstatus(pc->c) == CONNECTION_OK)
        return 0;
    int64_t now = mono_ms();
    if (pc->c != NULL)
        pgc_lost(pc);
    if (now < pc->retry_at_ms && !pg_back_since(pc))
        return -ENOTCONN;
    pc->c = PQconnectdb(pc->conninfo);
    if (pc->c == NULL || PQstatus(pc->c) != CONNECTION_OK || prepare_all(pc->c) != 0) {
        pg_note(pc, false, pc->c != NULL ? PQerrorMessage(pc->c) : "out of memory");
        if (!pc->down)
            pgc_log(pc, "cannot connect");
        pc->down = true;
        PQfinish(pc->c);
        pc->c = NULL;
        pc->backoff_ms = pc->backoff_ms == 0 ? PG_BACKOFF_MIN_MS
                       : pc->backoff_ms * 2 > PG_BACKOFF_MAX_MS ? PG_BACKOFF_MAX_MS
                       : pc->backoff_ms * 2;
        pc->retry_at_ms = now + pc->backoff_ms;
        return -ENOTCONN;
    }
    pg_note(pc, true, NULL);
    if (pc->down)
        fprintf(stderr, "scepd: store (postgresql, %s connection): connected again\n", pc->role);
    pc->down = false;
    pc->backoff_ms = 0;
    pc->retry_at_ms = 0;
    return 0;
}

void pgc_close(pgc *pc)
{
    PQfinish(pc->c);
    pc->c = NULL;
}

/* Maps a failed result to store.h's codes and notices a dead connection. */
static int pgc_fail(pgc *pc, PGresult *r)
{
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int rc;
    if (PQstatus(pc->c) != CONNECTION_OK) {
        rc = -ENOTCONN;
    } else if (state != NULL && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)) {
        rc = -EAGAIN;
    } else if (state != NULL && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                                 strcmp(state, "25006") == 0)) {
        /* connection exception, admin shutdown, or a read-only standby (a failover left us
         * on the old primary): reconnect, libpq's target_session_attrs finds the new one. */
        rc = -ENOTCONN;
    } else {
        pgc_log(pc, "statement refused");
        rc = -EIO;
    }
    PQclear(r);
    if (rc == -ENOTCONN)
        pgc_lost(pc);
    return rc;
}

/* Runs a prepared statement (sql NULL) or plain SQL; see pgc_run for the retry. */
static PGresult *pgc_do(pgc *pc, enum pg_stmt st, const char *sql, const pgp *p, int *rc)
{
    static const pgp none;
    if (p == NULL)
        p = &none;
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((*rc = pgc_ready(pc)) != 0)
            return NULL;
        PGresult *r = sql != NULL ? PQexec(pc->c, sql)
                    : PQexecPrepared(pc->c, pg_sql[st].name, p->n, p->val, p->len, p->fmt, 1);
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK) {
            *rc = 0;
            return r;
        }
        *rc = pgc_fail(pc, r);
        if (*rc != -ENOTCONN || pc->in_txn)
            break;
    }
    return NULL;
}

PGresult *pgc_run(pgc *pc, enum pg_stmt st, const pgp *p, int *rc)
{
    return pgc_do(pc, st, NULL, p, rc);
}

int pgc_exec(pgc *pc, const char *sql)
{
    int rc;
    PQclear(pgc_do(pc, 0, sql, NULL, &rc));
    return rc;
}

/* ---- schema ---- */

/* Under the schema lock: the version found (0: no scepd tables) and, when create is set and
 * the database is empty, the current schema created. */
static int schema_ensure(PGconn *c, bool create, int *found)
{
    PGresult *r = NULL;
    int rc = -EIO, version = 0;
    r = PQexec(c, "BEGIN; SELECT pg_advisory_xact_lock(" PG_SCHEMA_LOCK ")");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        goto out;
    PQclear(r);
    r = PQexec(c, "SELECT to_regclass('scepd_meta') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        goto out;
    if (strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
        PQclear(r);
        r = PQexec(c, "SELECT value FROM scepd_meta WHERE name = 'schema'");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            goto out;
        version = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    }
    PQclear(r);
    r = NULL;
    if (version == 0 && create) {
        r = PQexec(c, pg_schema_v1);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            goto out;
        PQclear(r);
        r = NULL;
    }
    r = PQexec(c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto out;
    *found = version;
    rc = version == STORE_PG_SCHEMA || (version == 0 && create) ? 0 : STORE_E_SCHEMA;
out:
    if (rc == -EIO) {
        fprintf(stderr, "scepd: store (postgresql): schema: %s", PQerrorMessage(c));
        PQclear(r);
        r = PQexec(c, "ROLLBACK");
    }
    PQclear(r);
    return rc;
}

int store_pg_migrate(const char *conninfo, int *from)
{
    PGconn *c = PQconnectdb(conninfo);
    int rc, found = 0;
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "scepd: store (postgresql): %s", c != NULL ? PQerrorMessage(c) : "oom\n");
        rc = -ENOTCONN;
        goto out;
    }
    /* Version 1 is the first: migrating means creating it. A later version adds its steps
     * here, from the version found up, each in the lock's transaction. */
    rc = schema_ensure(c, true, &found);
    if (rc == 0)
        *from = found;
out:
    PQfinish(c);
    return rc;
}

/* ---- the store ---- */

int store_pg_open(const char *conninfo, store_pg **out)
{
    int rc = -ENOMEM, found = 0;
    store_pg *pg = calloc(1, sizeof(*pg));
    if (pg == NULL || (pg->conninfo = strdup(conninfo)) == NULL) {
        free(pg);
        return -ENOMEM;
    }
    pthread_mutex_init(&pg->ping_mu, NULL);
    pthread_mutex_init(&pg->ev_mu, NULL);
    pg->ev_last_ms = mono_ms() - PG_EVENT_GAP_MS;
    pg->writer = (pgc){ .pg = pg, .conninfo = pg->conninfo, .role = "writer" };
    pg->ping = (pgc){ .pg = pg, .conninfo = pg->conninfo, .role = "health" };
    PGconn *c = PQconnectdb(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "scepd: store (postgresql): %s", c != NULL ? PQerrorMessage(c) : "oom\n");
        rc = -ENOTCONN;
    } else {
        rc = schema_ensure(c, true, &found);
    }
    PQfinish(c);
    if (rc == 0)
        rc = pgc_ready(&pg->writer);
    if (rc == 0) {
        *out = pg;
    } else {
        store_pg_close(pg);
    }
    return rc;
}

void store_pg_close(store_pg *pg)
{
    if (pg == NULL)
        return;
    pgc_close(&pg->writer);
    pgc_close(&pg->ping);
    pthread_mutex_destroy(&pg->ping_mu);
    pthread_mutex_destroy(&pg->ev_mu);
    free(pg->conninfo);
    free(pg);
}

int store_pg_ping(store_pg *pg)
{
    pthread_mutex_lock(&pg->ping_mu);
    int rc = pgc_exec(&pg->ping, "SELECT 1");
    pthread_mutex_unlock(&pg->ping_mu);
    return rc;
}

void store_set_event_cb(store *s, store_event_fn fn, void *arg)
{
    if (s == NULL || s->pg == NULL)
        return;             /* LMDB: no connection, no events */
    pthread_mutex_lock(&s->pg->ev_mu);
    s->pg->ev_fn = fn;
    s->pg->ev_arg = arg;
    pthread_mutex_unlock(&s->pg->ev_mu);
}
