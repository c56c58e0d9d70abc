/* store_pg_internal: what the files of the PostgreSQL backend share.
 *
 *   store_pg_conn.c   connections (reconnect with backoff), the statement table, parameter
 *                     and column helpers, schema creation and migration, open/close/ping
 *   store_pg_read.c   readers: one connection each, lookups and walks
 *   store_pg_put.c    a batch of puts in one transaction (the writer's group commit)
 *
 * Every value crosses libpq in binary: bytea as its bytes, integers as int8 (big-endian), so
 * nothing is escaped or parsed as text. Schema (docs/ha.md):
 *   scepd_meta    name text PK, value int8                ("schema", "rev_gen", "crl_number")
 *   scepd_certs   serial bytea PK, status, not_before, not_after, issued_at, key_hash,
 *                 subject_hash (indexed), subject, txid bytea UNIQUE (NULL: none), profile, der
 *   scepd_revoked serial bytea PK -> scepd_certs, reason, revoked_at, invalidity, who
 *   scepd_aux     (db int8, key bytea) PK, value bytea    (challenges, pending requests)
 */
#ifndef SCEPD_STORE_PG_INTERNAL_H
#define SCEPD_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/store/pg/store_pg.h"

#define PG_TXID_MAX     511     /* LMDB's key limit, so a store copies either way */
#define PG_WHO_MAX      255
#define PG_PARAMS_MAX   12
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 2000
#define PG_EVENT_GAP_MS   1000   /* at most one outage reported per second (store.h) */
/* The CRL build lock (pg_try_advisory_lock), one key for the cluster; the schema lock's
 * key + 1. */
#define PG_CRL_LOCK       "353553524517"

#define PG_CERT_COLS "serial, status, not_before, not_after, issued_at, key_hash, " \
                     "subject_hash, subject, txid, profile, der"
#define PG_REV_COLS  "serial, reason, revoked_at, invalidity, who"

/* Every statement, prepared on each connection when it is (re)established. */
#define PG_STATEMENTS(X) \
    X(GET_CERT,   "SELECT " PG_CERT_COLS " FROM scepd_certs WHERE serial = $1::bytea") \
    X(GET_TXID,   "SELECT serial, key_hash FROM scepd_certs WHERE txid = $1::bytea") \
    X(ALL_CERTS,  "SELECT " PG_CERT_COLS " FROM scepd_certs ORDER BY serial") \
    X(SUBJ_CERTS, "SELECT " PG_CERT_COLS " FROM scepd_certs WHERE subject_hash = $1::bytea " \
                  "ORDER BY serial") \
    X(COUNT_CERTS, "SELECT count(*) FROM scepd_certs") \
    X(GET_REV,    "SELECT " PG_REV_COLS " FROM scepd_revoked WHERE serial = $1::bytea") \
    X(ALL_REV,    "SELECT " PG_REV_COLS " FROM scepd_revoked ORDER BY serial") \
    X(COUNT_REV,  "SELECT count(*) FROM scepd_revoked") \
    X(COUNTERS,   "SELECT coalesce((SELECT value FROM scepd_meta WHERE name = 'rev_gen'), 0), " \
                  "coalesce((SELECT value FROM scepd_meta WHERE name = 'crl_number'), 0)") \
    X(GET_AUX,    "SELECT value FROM scepd_aux WHERE db = $1::int8 AND key = $2::bytea") \
    X(ALL_AUX,    "SELECT key, value FROM scepd_aux WHERE db = $1::int8 ORDER BY key") \
    X(INS_CERT,   "INSERT INTO scepd_certs (" PG_CERT_COLS ") VALUES ($1::bytea, $2::int8, " \
                  "$3::int8, $4::int8, $5::int8, $6::bytea, $7::bytea, $8::bytea, $9::bytea, " \
                  "$10::bytea, $11::bytea) ON CONFLICT DO NOTHING RETURNING 1") \
    X(HAS_SERIAL, "SELECT 1 FROM scepd_certs WHERE serial = $1::bytea") \
    X(LOCK_CERT,  "SELECT status FROM scepd_certs WHERE serial = $1::bytea FOR UPDATE") \
    X(REVOKE,     "WITH r AS (INSERT INTO scepd_revoked (" PG_REV_COLS ") VALUES ($1::bytea, " \
                  "$2::int8, $3::int8, $4::int8, $5::bytea)), " \
                  "c AS (UPDATE scepd_certs SET status = 1 WHERE serial = $1::bytea) " \
                  "UPDATE scepd_meta SET value = value + 1 WHERE name = 'rev_gen'") \
    X(SET_CRL,    "UPDATE scepd_meta SET value = $1::int8 WHERE name = 'crl_number' " \
                  "AND value < $1::int8 RETURNING 1") \
    X(LOCK_AUX,   "SELECT value FROM scepd_aux WHERE db = $1::int8 AND key = $2::bytea " \
                  "FOR UPDATE") \
    X(INS_AUX,    "INSERT INTO scepd_aux (db, key, value) VALUES ($1::int8, $2::bytea, " \
                  "$3::bytea) ON CONFLICT DO NOTHING RETURNING 1") \
    X(SET_AUX,    "UPDATE scepd_aux SET value = $3::bytea WHERE db = $1::int8 " \
                  "AND key = $2::bytea") \
    X(CRL_TRYLOCK, "SELECT pg_try_advisory_lock(" PG_CRL_LOCK ")") \
    X(CRL_UNLOCK, "SELECT pg_advisory_unlock(" PG_CRL_LOCK ")")

enum pg_stmt {
#define PG_ENUM(name, sql) PG_##name,
    PG_STATEMENTS(PG_ENUM)
#undef PG_ENUM
    PG__COUNT
};

/* One connection and its reconnect state; used by one thread at a time. */
typedef struct pgc {
    struct store_pg *pg;        /* whose outage events it reports (NULL: none) */
    const char *conninfo;       /* owned by the store_pg */
    const char *role;           /* "writer", "reader", "ping": for the log lines */
    PGconn *c;
    int64_t retry_at_ms;        /* monotonic; no attempt before this */
    int backoff_ms;             /* next wait after a failed attempt; 0: none yet */
    bool down;                  /* a loss was logged and no reconnect since */
    bool in_txn;                /* inside BEGIN..COMMIT: a lost statement is not run again */
    uint64_t up_gen;            /* pg->up_gen at this connection's last failure */
} pgc;

struct store_pg {
    char *conninfo;
    pgc writer;                 /* the writer thread, or store_put_sync's caller */
    pthread_mutex_t ping_mu;
    pgc ping;                   /* /healthz, from any worker */
    /* Outage events (store.h store_set_event_cb), shared by every connection: ev_mu. */
    pthread_mutex_t ev_mu;
    store_event_fn ev_fn;
    void *ev_arg;
    bool outage;                /* a failure since the last connection established */
    bool reported;              /* its STORE_EV_UNAVAILABLE was sent */
    int64_t outage_ms;          /* monotonic: when it began */
    int64_t ev_last_ms;         /* monotonic: the last event sent */
    unsigned long long ev_fails;    /* failures not yet counted in an event */
    uint64_t up_gen;            /* +1 at each outage's end: a connection in its backoff
                                   whose failure is older tries again at once */
};

struct store_pg_reader {
    store_pg *pg;
    pgc conn;
    PGresult **res;             /* results kept until store_pg_reader_end */
    size_t nres, capres;
    bool active;
};

/* Binary parameters of one statement. */
typedef struct pgp {
    const char *val[PG_PARAMS_MAX];
    int len[PG_PARAMS_MAX];
    int fmt[PG_PARAMS_MAX];
    uint8_t num[PG_PARAMS_MAX][8];
    int n;
} pgp;

void pgp_bytes(pgp *p, const void *v, size_t len);     /* bytea; len 0 is '' (not NULL) */
void pgp_null(pgp *p);
void pgp_i64(pgp *p, int64_t v);

/* Connects (or reconnects, at most once per backoff step) and prepares the statements:
 * 0 or -ENOTCONN. */
int  pgc_ready(pgc *pc);
void pgc_close(pgc *pc);
/* Runs a prepared statement. Returns the result (tuples or command OK; the caller clears it)
 * or NULL with *rc set: -ENOTCONN (connection lost; reconnects later), -EAGAIN (deadlock or
 * serialization failure: retry the transaction), -EIO (any other refusal). Outside a
 * transaction (!in_txn) a connection found dead at its first use (the server restarted
 * while it was idle) is re-established and the statement run once more. */
PGresult *pgc_run(pgc *pc, enum pg_stmt st, const pgp *p, int *rc);
/* Runs plain SQL without parameters (BEGIN, COMMIT, schema): 0 or as pgc_run. */
int  pgc_exec(pgc *pc, const char *sql);

/* Column helpers on binary results: 0 or STORE_E_CORRUPT (NULL, wrong length). */
int  pg_col_i64(const PGresult *r, int row, int col, int64_t *out);
int  pg_col_fixed(const PGresult *r, int row, int col, uint8_t *out, size_t len);
void pg_col_bytes(const PGresult *r, int row, int col, const uint8_t **p, size_t *len);
/* A row of PG_CERT_COLS / PG_REV_COLS into c / rv (pointers into r). */
int  pg_row_cert(const PGresult *r, int row, store_cert *c);
int  pg_row_rev(const PGresult *r, int row, store_revocation *rv);

#endif
