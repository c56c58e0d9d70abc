/* Tests for engine/store/pg (the PostgreSQL backend) through store.h, against a real
 * PostgreSQL 15 server. Without SCEPD_PG_CONNINFO the program re-executes itself under
 * tests/integration/pg.sh run, which starts a server in a temporary directory and stops it
 * afterwards; each test works in a fresh schema (search_path in the conninfo options).
 * Two store handles in one process stand for two scepd nodes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "engine/store/store.h"

static char base_conninfo[2048];
static int schema_seq;

typedef struct fix {
    char loc[2400];             /* "postgresql:" conninfo with this test's schema */
    char schema[32];
    store *s1, *s2;             /* two nodes */
    store_reader *r1, *r2;
} fix;

static PGconn *admin(void)
{
    PGconn *c = PQconnectdb(base_conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static void admin_sql(const char *sql)
{
    PGconn *c = admin();
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static int setup(void **state)
{
    fix *f = calloc(1, sizeof(*f));
    char sql[128];
    snprintf(f->schema, sizeof(f->schema), "t%d_%d", (int)getpid(), ++schema_seq);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
    admin_sql(sql);
    snprintf(f->loc, sizeof(f->loc), "postgresql:%s options='-c search_path=%s'", base_conninfo,
             f->schema);
    assert_int_equal(store_open(f->loc, 0, &f->s1), 0);
    assert_int_equal(store_open(f->loc, 0, &f->s2), 0);
    assert_int_equal(store_reader_create(f->s1, &f->r1), 0);
    assert_int_equal(store_reader_create(f->s2, &f->r2), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    store_reader_destroy(f->r1);
    store_reader_destroy(f->r2);
    store_close(f->s1);
    store_close(f->s2);
    free(f);
    return 0;
}

struct tcert {
    store_put put;
    char txid[40], subject[40];
    uint8_t der[64];
};

static void make_cert(struct tcert *t, int serial, const char *txid, int subject)
{
    memset(t, 0, sizeof(*t));
    t->put.kind = STORE_PUT_CERT;
    store_cert *c = &t->put.cert;
    c->serial[0] = 0x40;
    c->serial[15] = (uint8_t)serial;
    c->serial[14] = (uint8_t)(serial >> 8);
    c->not_before = 1000 + serial;
    c->not_after = 2000 + serial;
    c->issued_at = 1500;
    memset(c->key_hash, serial & 0xff, STORE_HASH_LEN);
    memset(c->subject_hash, subject, STORE_HASH_LEN);
    snprintf(t->subject, sizeof(t->subject), "CN=subject-%d", subject);
    c->subject = t->subject;
    c->subject_len = strlen(t->subject);
    if (txid != NULL) {
        snprintf(t->txid, sizeof(t->txid), "%s", txid);
        c->txid = t->txid;
        c->txid_len = strlen(t->txid);
    }
    c->profile = "default";
    c->profile_len = 7;
    for (size_t i = 0; i < sizeof(t->der); i++)
        t->der[i] = (uint8_t)(serial + i);
    c->der = t->der;
    c->der_len = sizeof(t->der);
}

static int count_cb(const store_cert *c, void *arg)
{
    (void)c;
    (*(int *)arg)++;
    return 0;
}

/* A certificate written by one node is read by the other: every field, the txid index, the
 * subject walk, the count; a refused put in a batch does not abort the others. */
static void test_cert_roundtrip(void **state)
{
    fix *f = *state;
    struct tcert a, b, dup_serial, dup_txid;
    make_cert(&a, 1, "tx-1", 7);
    make_cert(&b, 2, NULL, 7);
    a.put.next = &b.put;
    assert_int_equal(store_put_sync(f->s1, &a.put), 0);
    assert_int_equal(a.put.result, STORE_OK);
    assert_int_equal(b.put.result, STORE_OK);

    make_cert(&dup_serial, 1, "tx-other", 9);
    make_cert(&dup_txid, 3, "tx-1", 9);
    struct tcert fresh;
    make_cert(&fresh, 4, "tx-4", 9);
    dup_serial.put.next = &dup_txid.put;
    dup_txid.put.next = &fresh.put;
    assert_int_equal(store_put_sync(f->s2, &dup_serial.put), 0);
    assert_int_equal(dup_serial.put.result, STORE_DUP_SERIAL);
    assert_int_equal(dup_txid.put.result, STORE_DUP_TXID);
    assert_memory_equal(dup_txid.put.existing_serial, a.put.cert.serial, STORE_SERIAL_LEN);
    assert_memory_equal(dup_txid.put.existing_key_hash, a.put.cert.key_hash, STORE_HASH_LEN);
    assert_int_equal(fresh.put.result, STORE_OK);

    store_cert c, c2;
    assert_int_equal(store_reader_begin(f->r2), 0);
    assert_int_equal(store_get_cert(f->r2, a.put.cert.serial, &c), 0);
    assert_int_equal(store_get_cert(f->r2, b.put.cert.serial, &c2), 0);
    /* both results stay valid until the end of the read */
    assert_int_equal(c.not_before, 1001);
    assert_int_equal(c.not_after, 2001);
    assert_int_equal(c.issued_at, 1500);
    assert_int_equal(c.status, STORE_CERT_VALID);
    assert_memory_equal(c.key_hash, a.put.cert.key_hash, STORE_HASH_LEN);
    assert_memory_equal(c.subject_hash, a.put.cert.subject_hash, STORE_HASH_LEN);
    assert_int_equal(c.txid_len, 4);
    assert_memory_equal(c.txid, "tx-1", 4);
    assert_int_equal(c.subject_len, strlen("CN=subject-7"));
    assert_memory_equal(c.subject, "CN=subject-7", c.subject_len);
    assert_int_equal(c.der_len, sizeof(a.der));
    assert_memory_equal(c.der, a.der, c.der_len);
    assert_int_equal(c2.txid_len, 0);
    assert_memory_equal(c2.der, b.der, sizeof(b.der));

    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    assert_int_equal(store_get_txid(f->r2, "tx-1", 4, sn, kh), 0);
    assert_memory_equal(sn, a.put.cert.serial, STORE_SERIAL_LEN);
    assert_int_equal(store_get_txid(f->r2, "tx-none", 7, sn, kh), STORE_NOTFOUND);
    uint8_t other[STORE_SERIAL_LEN] = { 0x41 };
    assert_int_equal(store_get_cert(f->r2, other, &c), STORE_NOTFOUND);
    size_t n = 0;
    assert_int_equal(store_count(f->r2, &n), 0);
    assert_int_equal(n, 3);
    int seen = 0;
    assert_int_equal(store_foreach_subject(f->r2, a.put.cert.subject_hash, count_cb, &seen), 0);
    assert_int_equal(seen, 2);
    seen = 0;
    assert_int_equal(store_foreach_cert(f->r2, count_cb, &seen), 0);
    assert_int_equal(seen, 3);
    store_reader_end(f->r2);
    assert_int_equal(store_get_cert(f->r2, a.put.cert.serial, &c), -EINVAL);
}

static void revoke_put(store_put *p, const uint8_t *serial, int reason, const char *who)
{
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_REVOKE;
    memcpy(p->rev.serial, serial, STORE_SERIAL_LEN);
    p->rev.reason = reason;
    p->rev.revoked_at = 5000;
    p->rev.who = who;
    p->rev.who_len = strlen(who);
}

/* A revocation on one node: the other sees the status, the entry and rev_gen at once; a
 * second revocation keeps the first; unknown serials are not found. */
static void test_revoke(void **state)
{
    fix *f = *state;
    struct tcert a;
    make_cert(&a, 1, "tx-r", 1);
    assert_int_equal(store_put_sync(f->s1, &a.put), 0);
    store_put p;
    revoke_put(&p, a.put.cert.serial, 1, "node-a");
    assert_int_equal(store_put_sync(f->s1, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    revoke_put(&p, a.put.cert.serial, 4, "node-b");
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, STORE_ALREADY_REVOKED);
    assert_int_equal(p.rev.reason, 1);
    uint8_t none[STORE_SERIAL_LEN] = { 0x42 };
    revoke_put(&p, none, 1, "x");
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, STORE_NOTFOUND);
    revoke_put(&p, a.put.cert.serial, 7, "x");
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, -EINVAL);

    store_revocation rv;
    store_cert c;
    uint64_t gen, num;
    size_t n;
    assert_int_equal(store_reader_begin(f->r2), 0);
    assert_int_equal(store_get_revocation(f->r2, a.put.cert.serial, &rv), 0);
    assert_int_equal(rv.reason, 1);
    assert_int_equal(rv.revoked_at, 5000);
    assert_int_equal(rv.who_len, 6);
    assert_memory_equal(rv.who, "node-a", 6);
    assert_int_equal(store_get_cert(f->r2, a.put.cert.serial, &c), 0);
    assert_int_equal(c.status, STORE_CERT_REVOKED);
    assert_int_equal(store_get_counters(f->r2, &gen, &num), 0);
    assert_int_equal(gen, 1);
    assert_int_equal(num, 0);
    assert_int_equal(store_count_revoked(f->r2, &n), 0);
    assert_int_equal(n, 1);
    store_reader_end(f->r2);
}

/* The CRL number only goes up, cluster-wide: a number one node committed is refused on the
 * other, as is any smaller one. */
static void test_crl_number(void **state)
{
    fix *f = *state;
    store_put p = { .kind = STORE_PUT_CRL_NUMBER, .crl_number = 5 };
    assert_int_equal(store_put_sync(f->s1, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    p = (store_put){ .kind = STORE_PUT_CRL_NUMBER, .crl_number = 5 };
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, -ERANGE);
    p = (store_put){ .kind = STORE_PUT_CRL_NUMBER, .crl_number = 4 };
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, -ERANGE);
    p = (store_put){ .kind = STORE_PUT_CRL_NUMBER, .crl_number = 6 };
    assert_int_equal(store_put_sync(f->s2, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    uint64_t gen, num;
    assert_int_equal(store_reader_begin(f->r1), 0);
    assert_int_equal(store_get_counters(f->r1, &gen, &num), 0);
    assert_int_equal(num, 6);
    store_reader_end(f->r1);
}

/* ---- concurrent read-modify-write from two nodes ---- */

/* "fresh" -> "used" with verdict 0; anything else: verdict 1, nothing written. When absent:
 * create (verdict 0) if the argument says so, else verdict 2. */
static int consume(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                   size_t *nl)
{
    if (cur == NULL) {
        if (arg == NULL)
            return 2;
        *nv = (const uint8_t *)"used";
        *nl = 4;
        return 0;
    }
    if (cur_len == 5 && memcmp(cur, "fresh", 5) == 0) {
        *nv = (const uint8_t *)"used";
        *nl = 4;
        return 0;
    }
    return 1;
}

struct racer {
    store *s;
    const char *key;
    void *arg;
    pthread_barrier_t *go;
    int verdict, result;
};

static void *race(void *p)
{
    struct racer *r = p;
    store_put put = { .kind = STORE_PUT_UPDATE, .aux_db = STORE_DB_CHALLENGES,
                      .aux_key = r->key, .aux_key_len = strlen(r->key), .update = consume,
                      .update_arg = r->arg };
    pthread_barrier_wait(r->go);
    store_put_sync(r->s, &put);
    r->verdict = put.verdict;
    r->result = put.result;
    return NULL;
}

static void run_race(fix *f, const char *key, void *arg, int *zeros)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    struct racer a = { f->s1, key, arg, &go, -1, -1 }, b = { f->s2, key, arg, &go, -1, -1 };
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&go);
    assert_int_equal(a.result, STORE_OK);
    assert_int_equal(b.result, STORE_OK);
    *zeros = (a.verdict == 0) + (b.verdict == 0);
}

/* One challenge, consumed from two nodes at the same moment: exactly one succeeds. */
static void test_consume_once(void **state)
{
    fix *f = *state;
    for (int i = 0; i < 20; i++) {
        char key[32], sql[256];
        snprintf(key, sizeof(key), "chal-%d", i);
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s.scepd_aux VALUES (%d, convert_to('%s', 'UTF8'), "
                 "convert_to('fresh', 'UTF8'))", f->schema, STORE_DB_CHALLENGES, key);
        admin_sql(sql);
        int zeros = 0;
        run_race(f, key, NULL, &zeros);
        assert_int_equal(zeros, 1);
    }
}

/* A record created by two nodes at once (absent before): one creation wins, the other's
 * update runs again on the winner's value. */
static void test_create_once(void **state)
{
    fix *f = *state;
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "new-%d", i);
        int zeros = 0;
        run_race(f, key, (void *)1, &zeros);
        assert_int_equal(zeros, 1);
    }
    const uint8_t *v;
    size_t vl;
    assert_int_equal(store_reader_begin(f->r1), 0);
    assert_int_equal(store_get_aux(f->r1, STORE_DB_CHALLENGES, "new-3", 5, &v, &vl), 0);
    assert_int_equal(vl, 4);
    assert_memory_equal(v, "used", 4);
    assert_int_equal(store_get_aux(f->r1, STORE_DB_CHALLENGES, "none", 4, &v, &vl),
                     STORE_NOTFOUND);
    assert_int_equal(store_get_aux(f->r1, STORE_DB_REQUESTS, "new-3", 5, &v, &vl),
                     STORE_NOTFOUND);
    store_reader_end(f->r1);
}

/* ---- conditions: a one-time challenge pays for one certificate, cluster-wide ---- */

struct condrace {
    store *s;
    int serial;
    char txid[16];
    pthread_barrier_t *go;
    int result, cond_verdict;
};

static void *cond_race(void *arg)
{
    struct condrace *r = arg;
    struct tcert t;
    make_cert(&t, r->serial, r->txid, 3);
    t.put.cond_db = STORE_DB_CHALLENGES;
    t.put.cond_key = "otp";
    t.put.cond_key_len = 3;
    t.put.cond = consume;
    pthread_barrier_wait(r->go);
    store_put_sync(r->s, &t.put);
    r->result = t.put.result;
    r->cond_verdict = t.put.cond_verdict;
    return NULL;
}

static void set_challenge(fix *f, const char *value)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "INSERT INTO %s.scepd_aux VALUES (%d, convert_to('otp', 'UTF8'), "
             "convert_to('%s', 'UTF8')) ON CONFLICT (db, key) DO UPDATE SET value = "
             "EXCLUDED.value", f->schema, STORE_DB_CHALLENGES, value);
    admin_sql(sql);
}

static void assert_challenge(fix *f, const char *value)
{
    const uint8_t *v;
    size_t vl;
    assert_int_equal(store_reader_begin(f->r1), 0);
    assert_int_equal(store_get_aux(f->r1, STORE_DB_CHALLENGES, "otp", 3, &v, &vl), 0);
    assert_int_equal(vl, strlen(value));
    assert_memory_equal(v, value, vl);
    store_reader_end(f->r1);
}

/* Two certificates under one challenge on two nodes at once: one is recorded, the other is
 * refused (STORE_CONFLICT, its cond saw the challenge used). */
static void test_condition_race(void **state)
{
    fix *f = *state;
    for (int i = 0; i < 20; i++) {
        set_challenge(f, "fresh");
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct condrace a = { f->s1, 100 + 2 * i, "", &go, -1, -1 };
        struct condrace b = { f->s2, 101 + 2 * i, "", &go, -1, -1 };
        snprintf(a.txid, sizeof(a.txid), "ca-%d", i);
        snprintf(b.txid, sizeof(b.txid), "cb-%d", i);
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, cond_race, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, cond_race, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        assert_int_equal((a.result == STORE_OK) + (b.result == STORE_OK), 1);
        assert_int_equal((a.result == STORE_CONFLICT) + (b.result == STORE_CONFLICT), 1);
        assert_int_equal(a.result == STORE_OK ? b.cond_verdict : a.cond_verdict, 1);
        assert_challenge(f, "used");
    }
}

/* A put refused for its own reason leaves its condition's record untouched; a refused
 * condition writes nothing; an insert of an existing key is a conflict. */
static void test_condition_all_or_nothing(void **state)
{
    fix *f = *state;
    struct tcert first, dup;
    make_cert(&first, 1, "tx-c1", 1);
    assert_int_equal(store_put_sync(f->s1, &first.put), 0);
    set_challenge(f, "fresh");
    make_cert(&dup, 1, "tx-c2", 1);
    dup.put.cond_db = STORE_DB_CHALLENGES;
    dup.put.cond_key = "otp";
    dup.put.cond_key_len = 3;
    dup.put.cond = consume;
    assert_int_equal(store_put_sync(f->s2, &dup.put), 0);
    assert_int_equal(dup.put.result, STORE_DUP_SERIAL);
    assert_challenge(f, "fresh");

    store_put ins = { .kind = STORE_PUT_INSERT, .aux_db = STORE_DB_REQUESTS, .aux_key = "rq",
                      .aux_key_len = 2, .aux_val = "v1", .aux_val_len = 2,
                      .cond_db = STORE_DB_CHALLENGES, .cond_key = "otp", .cond_key_len = 3,
                      .cond = consume };
    assert_int_equal(store_put_sync(f->s1, &ins), 0);
    assert_int_equal(ins.result, STORE_OK);
    assert_challenge(f, "used");
    store_put again = { .kind = STORE_PUT_INSERT, .aux_db = STORE_DB_REQUESTS, .aux_key = "rq",
                        .aux_key_len = 2, .aux_val = "v2", .aux_val_len = 2 };
    assert_int_equal(store_put_sync(f->s2, &again), 0);
    assert_int_equal(again.result, STORE_CONFLICT);
    store_put refused = { .kind = STORE_PUT_INSERT, .aux_db = STORE_DB_REQUESTS,
                          .aux_key = "rq2", .aux_key_len = 3, .aux_val = "v", .aux_val_len = 1,
                          .cond_db = STORE_DB_CHALLENGES, .cond_key = "otp",
                          .cond_key_len = 3, .cond = consume };
    assert_int_equal(store_put_sync(f->s2, &refused), 0);
    assert_int_equal(refused.result, STORE_CONFLICT);
    assert_int_equal(refused.cond_verdict, 1);
    store_put revoke_cond = { .kind = STORE_PUT_REVOKE, .cond = consume, .cond_db = 0,
                              .cond_key = "otp", .cond_key_len = 3 };
    assert_int_equal(store_put_sync(f->s2, &revoke_cond), 0);
    assert_int_equal(revoke_cond.result, -EINVAL);
    const uint8_t *v;
    size_t vl;
    assert_int_equal(store_reader_begin(f->r2), 0);
    assert_int_equal(store_get_aux(f->r2, STORE_DB_REQUESTS, "rq", 2, &v, &vl), 0);
    assert_memory_equal(v, "v1", 2);
    assert_int_equal(store_get_aux(f->r2, STORE_DB_REQUESTS, "rq2", 3, &v, &vl), STORE_NOTFOUND);
    store_reader_end(f->r2);
}

/* The server ends every connection of both nodes (as a restart does while they are idle):
 * each connection is found dead at its next use and replaced at once, so the calls succeed
 * (a statement inside a batch transaction is not run again: that batch fails instead). */
static void test_reconnect(void **state)
{
    fix *f = *state;
    struct tcert a, b;
    make_cert(&a, 9, "tx-9", 1);
    assert_int_equal(store_put_sync(f->s1, &a.put), 0);
    assert_int_equal(store_reader_begin(f->r1), 0);
    store_reader_end(f->r1);
    assert_int_equal(store_ping(f->s1), 0);
    admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'");
    usleep(100000);     /* the backends are gone */
    store_cert c;
    assert_int_equal(store_reader_begin(f->r1), 0);
    assert_int_equal(store_get_cert(f->r1, a.put.cert.serial, &c), 0);
    store_reader_end(f->r1);
    make_cert(&b, 10, "tx-10", 1);
    assert_int_equal(store_put_sync(f->s1, &b.put), 0);
    assert_int_equal(b.put.result, STORE_OK);
    assert_int_equal(store_ping(f->s1), 0);
    assert_int_equal(store_reader_begin(f->r2), 0);
    assert_int_equal(store_get_cert(f->r2, b.put.cert.serial, &c), 0);
    store_reader_end(f->r2);
}

/* The CRL build lock: one holder across nodes; released, the other node gets it. */
static void test_crl_lock(void **state)
{
    fix *f = *state;
    assert_int_equal(store_crl_lock(f->r1), 0);
    assert_int_equal(store_crl_lock(f->r2), STORE_CONFLICT);
    store_crl_unlock(f->r1);
    assert_int_equal(store_crl_lock(f->r2), 0);
    assert_int_equal(store_crl_lock(f->r1), STORE_CONFLICT);
    store_crl_unlock(f->r2);
    assert_int_equal(store_crl_lock(f->r1), 0);
    store_crl_unlock(f->r1);
}

typedef struct evlog {
    int n;
    store_event ev[8];
    char conn[8][16], err[8][256];
} evlog;

static void on_event(void *arg, const store_event *ev)
{
    evlog *l = arg;
    if (l->n >= 8)
        return;
    l->ev[l->n] = *ev;
    snprintf(l->conn[l->n], sizeof(l->conn[0]), "%s", ev->conn);
    snprintf(l->err[l->n], sizeof(l->err[0]), "%s", ev->error);
    l->n++;
}

/* Ends every client backend, then uses r1 (found dead, replaced at once). */
static void outage(fix *f)
{
    store_cert c;
    uint8_t serial[STORE_SERIAL_LEN] = {1};
    admin_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'");
    usleep(100000);     /* the backends are gone */
    assert_int_equal(store_reader_begin(f->r1), 0);
    assert_int_equal(store_get_cert(f->r1, serial, &c), STORE_NOTFOUND);
    store_reader_end(f->r1);
}

/* Outage events: a lost connection is STORE_EV_UNAVAILABLE (which connection, libpq's
 * message), the reconnection STORE_EV_RECOVERED; a second outage within a second of the
 * last event is not reported, and its failure is counted in the next event. */
static void test_outage_events(void **state)
{
    fix *f = *state;
    evlog l = {0};
    store_set_event_cb(f->s1, on_event, &l);
    assert_int_equal(store_reader_begin(f->r1), 0);     /* r1 connected */
    store_reader_end(f->r1);
    outage(f);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.ev[0].kind, STORE_EV_UNAVAILABLE);
    assert_string_equal(l.conn[0], "reader");
    assert_true(strlen(l.err[0]) > 0);
    assert_int_equal(l.ev[0].count, 1);
    assert_int_equal(l.ev[1].kind, STORE_EV_RECOVERED);
    assert_true(l.ev[1].down_ms >= 0);
    outage(f);                                          /* within the second: not reported */
    assert_int_equal(l.n, 2);
    usleep(1100000);                                    /* past the one-second bound */
    outage(f);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.ev[2].kind, STORE_EV_UNAVAILABLE);
    assert_int_equal(l.ev[2].count, 2);                 /* the unreported one counted */
    assert_int_equal(l.ev[3].kind, STORE_EV_RECOVERED);
    store_set_event_cb(f->s1, NULL, NULL);
}

/* A database whose schema version is not ours is refused. */
static void test_schema_version(void **state)
{
    fix *f = *state;
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE %s.scepd_meta SET value = 99 WHERE name = 'schema'",
             f->schema);
    admin_sql(sql);
    store *s = NULL;
    assert_int_equal(store_open(f->loc, 0, &s), STORE_E_SCHEMA);
    assert_null(s);
}

int main(int argc, char **argv)
{
    const char *ci = getenv("SCEPD_PG_CONNINFO");
    if (ci == NULL || ci[0] == '\0') {
        /* start a server for this run (tests/integration/pg.sh) */
        const char *src = getenv("SCEPD_SRC");
        char helper[4096];
        snprintf(helper, sizeof(helper), "%s/tests/integration/pg.sh", src ? src : ".");
        execl("/bin/bash", "bash", helper, "run", argv[0], (char *)NULL);
        perror("test_store_pg: exec bash pg.sh run");
        return 1;
    }
    (void)argc;
    snprintf(base_conninfo, sizeof(base_conninfo), "%s", ci);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cert_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condition_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condition_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_events, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
