/* Fuzz target for the record decoders of engine/store/store.c: certificate records, txid
 * entries, the subject index, revocation records and the meta counters.
 *
 * The decoders are static, so the harness reaches them the way a damaged or hostile
 * environment would: it writes the input's records straight into the named databases with
 * LMDB (the store's own environment layout, docs/store.md), closes that handle, opens the
 * directory with store_open and reads everything back through the public API, then revokes
 * every certificate (store_put_sync) so the writer's decode-and-rewrite path runs too.
 *
 * Input: a sequence of records, each
 *   u8 db (mod 5: certs, txid, subject, revoked, meta), u8 key length, u16 LE value length,
 *   key bytes, value bytes
 * A truncated last record is dropped. Each result is checked against a reference decoding of
 * the bytes the harness wrote (the layout below, from docs/store.md): a getter accepts a value
 * if and only if the reference does, and then returns exactly its fields. Violated invariants
 * abort(), so the replay driver and libFuzzer both flag them.
 *
 * The environment lives in a private temporary directory (TMPDIR, else /tmp), removed at exit. */
#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/store/store.h"

/* The record layouts as docs/store.md describes them (little-endian). */
#define CERT_HDR   108      /* ver, status, 2 reserved, 3 x i64, 2 x hash, 4 x u32 lengths */
#define REV_HDR    24       /* ver, reason, 2 reserved, u32 who length, 2 x i64 */
#define TXID_VAL   (STORE_SERIAL_LEN + STORE_HASH_LEN)

enum { DB_CERTS, DB_TXID, DB_SUBJECT, DB_REVOKED, DB_META, DB__COUNT };
static const char *const DB_NAME[DB__COUNT] = { "certs", "txid", "subject", "revoked", "meta" };

#define MAX_RECS 64

typedef struct rec {
    int db;
    const uint8_t *key, *val;
    size_t klen, vlen;
    int live;       /* written and not overwritten by a later record with the same key */
} rec;

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    char dir[256];
    rec r[MAX_RECS];
    size_t n;
} G;

static void cleanup(void)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/data.mdb", G.dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", G.dir);
    unlink(p);
    rmdir(G.dir);
}

static void init(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(G.dir, sizeof(G.dir), "%s/fuzz_store.XXXXXX", t != NULL && *t ? t : "/tmp");
    if (mkdtemp(G.dir) == NULL)
        abort();
    atexit(cleanup);
    G.ready = 1;
}

static uint32_t u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int64_t i64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* Splits the input into records; the last one with a given (db, key) wins, as in LMDB
 * (the subject database keeps duplicates, so every one of its records stays live). */
static void split(const uint8_t *in, size_t size)
{
    size_t off = 0;
    G.n = 0;
    while (G.n < MAX_RECS && size - off >= 4) {
        rec *r = &G.r[G.n];
        r->db = in[off] % DB__COUNT;
        r->klen = in[off + 1];
        r->vlen = (size_t)in[off + 2] | (size_t)in[off + 3] << 8;
        off += 4;
        if (size - off < r->klen + r->vlen)
            break;
        r->key = in + off;
        r->val = in + off + r->klen;
        off += r->klen + r->vlen;
        r->live = 0;
        G.n++;
    }
}

static int same_key(const rec *a, const rec *b)
{
    return a->db == b->db && a->klen == b->klen && memcmp(a->key, b->key, a->klen) == 0;
}

/* Writes the records into a fresh copy of the store's databases with a plain LMDB handle. */
static void write_raw(void)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi[DB__COUNT];

    if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
        mdb_env_set_mapsize(env, (size_t)64 << 20) != 0 ||
        mdb_env_open(env, G.dir, MDB_NOTLS | MDB_NOSYNC, 0600) != 0 ||
        mdb_txn_begin(env, NULL, 0, &txn) != 0)
        abort();
    for (int d = 0; d < DB__COUNT; d++) {
        unsigned flags = MDB_CREATE | (d == DB_SUBJECT ? MDB_DUPSORT : 0);
        if (mdb_dbi_open(txn, DB_NAME[d], flags, &dbi[d]) != 0 || mdb_drop(txn, dbi[d], 0) != 0)
            abort();
    }
    for (size_t i = 0; i < G.n; i++) {
        rec *r = &G.r[i];
        MDB_val k = { r->klen, (void *)r->key }, v = { r->vlen, (void *)r->val };
        if (mdb_put(txn, dbi[r->db], &k, &v, 0) != 0)
            continue;       /* empty or oversized key, oversized duplicate: not stored */
        r->live = 1;
        if (r->db != DB_SUBJECT)
            for (size_t j = 0; j < i; j++)
                if (same_key(&G.r[j], r))
                    G.r[j].live = 0;
    }
    if (mdb_txn_commit(txn) != 0)
        abort();
    mdb_env_close(env);
}

/* The live record of db under key, or NULL. */
static const rec *find(int db, const void *key, size_t klen)
{
    for (size_t i = 0; i < G.n; i++)
        if (G.r[i].live && G.r[i].db == db && G.r[i].klen == klen &&
            memcmp(G.r[i].key, key, klen) == 0)
            return &G.r[i];
    return NULL;
}

/* Reference decoding: 1 when a certs entry is well formed. */
static int cert_ok(const rec *r)
{
    if (r->klen != STORE_SERIAL_LEN || r->vlen < CERT_HDR || r->val[0] != 1 || r->val[1] > 1)
        return 0;
    uint64_t total = 0;
    for (int i = 0; i < 4; i++)
        total += u32le(r->val + 92 + 4 * i);
    return total == r->vlen - CERT_HDR;
}

static int rev_ok(const rec *r)
{
    if (r->klen != STORE_SERIAL_LEN || r->vlen < REV_HDR || r->val[0] != 1 ||
        !store_reason_ok(r->val[1]))
        return 0;
    return u32le(r->val + 4) == r->vlen - REV_HDR;
}

static void same_blob(const void *got, size_t got_len, const uint8_t *want, size_t want_len)
{
    if (got_len != want_len || (want_len > 0 && (got == NULL || memcmp(got, want, want_len) != 0)))
        abort();
}

/* c is what the store returned for r (cert_ok(r)): every field as the layout says. */
static void check_cert(const store_cert *c, const rec *r)
{
    const uint8_t *v = r->val, *q = v + CERT_HDR;
    size_t l[4];
    for (int i = 0; i < 4; i++)
        l[i] = u32le(v + 92 + 4 * i);
    if (memcmp(c->serial, r->key, STORE_SERIAL_LEN) != 0 || c->status != v[1] ||
        c->not_before != i64le(v + 4) || c->not_after != i64le(v + 12) ||
        c->issued_at != i64le(v + 20) || memcmp(c->key_hash, v + 28, STORE_HASH_LEN) != 0 ||
        memcmp(c->subject_hash, v + 60, STORE_HASH_LEN) != 0)
        abort();
    same_blob(c->subject, c->subject_len, q, l[0]);
    same_blob(c->txid, c->txid_len, q + l[0], l[1]);
    same_blob(c->profile, c->profile_len, q + l[0] + l[1], l[2]);
    same_blob(c->der, c->der_len, q + l[0] + l[1] + l[2], l[3]);
}

static void check_rev(const store_revocation *rv, const rec *r)
{
    if (memcmp(rv->serial, r->key, STORE_SERIAL_LEN) != 0 || rv->reason != r->val[1] ||
        rv->revoked_at != i64le(r->val + 8) || rv->invalidity != i64le(r->val + 16))
        abort();
    same_blob(rv->who, rv->who_len, r->val + REV_HDR, r->vlen - REV_HDR);
}

/* Walk callbacks: each visited record must be a live, well-formed one, returned exactly. */
static int on_cert(const store_cert *c, void *arg)
{
    const rec *r = find(DB_CERTS, c->serial, STORE_SERIAL_LEN);
    if (r == NULL || !cert_ok(r))
        abort();
    check_cert(c, r);
    ++*(size_t *)arg;
    return 0;
}

static int on_rev(const store_revocation *rv, void *arg)
{
    const rec *r = find(DB_REVOKED, rv->serial, STORE_SERIAL_LEN);
    if (r == NULL || !rev_ok(r))
        abort();
    check_rev(rv, r);
    ++*(size_t *)arg;
    return 0;
}

static int on_subject(const store_cert *c, void *arg)
{
    return on_cert(c, arg);
}

/* What a walk over db must return: 0 when every live record passes ok(), else CORRUPT. */
static int expect_walk(int db, int (*ok)(const rec *))
{
    for (size_t i = 0; i < G.n; i++)
        if (G.r[i].live && G.r[i].db == db && !ok(&G.r[i]))
            return STORE_E_CORRUPT;
    return 0;
}

static size_t live_count(int db)
{
    size_t n = 0;
    for (size_t i = 0; i < G.n; i++)
        n += G.r[i].live && G.r[i].db == db;
    return n;
}

/* A subject index entry is good when it names a well-formed certificate. */
static int subject_entry_ok(const rec *r)
{
    if (r->vlen != STORE_SERIAL_LEN)
        return 0;
    const rec *c = find(DB_CERTS, r->val, STORE_SERIAL_LEN);
    return c != NULL && cert_ok(c);
}

/* The meta counter name as the store must report it: 0 absent, -1 corrupt, 1 with *v. */
static int expect_counter(const char *name, uint64_t *v)
{
    const rec *r = find(DB_META, name, strlen(name));
    if (r == NULL) {
        *v = 0;
        return 1;
    }
    if (r->vlen != 8)
        return -1;
    *v = (uint64_t)i64le(r->val);
    return 1;
}

static void read_back(store *s)
{
    store_reader *rd = NULL;
    size_t n, seen;

    if (store_reader_create(s, &rd) != 0 || store_reader_begin(rd) != 0)
        abort();
    for (size_t i = 0; i < G.n; i++) {
        const rec *r = &G.r[i];
        if (!r->live)
            continue;
        if (r->db == DB_CERTS && r->klen == STORE_SERIAL_LEN) {
            store_cert c;
            int rc = store_get_cert(rd, r->key, &c);
            if (rc != (cert_ok(r) ? 0 : STORE_E_CORRUPT))
                abort();
            if (rc == 0)
                check_cert(&c, r);
        } else if (r->db == DB_REVOKED && r->klen == STORE_SERIAL_LEN) {
            store_revocation rv;
            int rc = store_get_revocation(rd, r->key, &rv);
            if (rc != (rev_ok(r) ? 0 : STORE_E_CORRUPT))
                abort();
            if (rc == 0)
                check_rev(&rv, r);
        } else if (r->db == DB_TXID) {
            uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
            int rc = store_get_txid(rd, (const char *)r->key, r->klen, sn, kh);
            if (rc != (r->vlen == TXID_VAL ? 0 : STORE_E_CORRUPT))
                abort();
            if (rc == 0 && (memcmp(sn, r->val, sizeof(sn)) != 0 ||
                            memcmp(kh, r->val + sizeof(sn), sizeof(kh)) != 0))
                abort();
        } else if (r->db == DB_SUBJECT && r->klen == STORE_HASH_LEN) {
            /* every duplicate of this key decides the walk's result */
            int want = 0;
            for (size_t j = 0; j < G.n; j++)
                if (G.r[j].live && same_key(&G.r[j], r) && !subject_entry_ok(&G.r[j]))
                    want = STORE_E_CORRUPT;
            seen = 0;
            if (store_foreach_subject(rd, r->key, on_subject, &seen) != want)
                abort();
        }
    }

    seen = 0;
    int rc = store_foreach_cert(rd, on_cert, &seen);
    if (rc != expect_walk(DB_CERTS, cert_ok) || (rc == 0 && seen != live_count(DB_CERTS)))
        abort();
    seen = 0;
    rc = store_foreach_revoked(rd, on_rev, &seen);
    if (rc != expect_walk(DB_REVOKED, rev_ok) || (rc == 0 && seen != live_count(DB_REVOKED)))
        abort();
    if (store_count(rd, &n) != 0 || n != live_count(DB_CERTS) ||
        store_count_revoked(rd, &n) != 0 || n != live_count(DB_REVOKED))
        abort();

    uint64_t gen, num, want_gen, want_num;
    int g = expect_counter("rev_gen", &want_gen), c = expect_counter("crl_number", &want_num);
    rc = store_get_counters(rd, &gen, &num);
    if (g < 0 || c < 0) {
        if (rc != STORE_E_CORRUPT)
            abort();
    } else if (rc != 0 || gen != want_gen || num != want_num) {
        abort();
    }
    store_reader_destroy(rd);
}

/* Revokes every certificate key in one batch: each put ends in a documented outcome, and the
 * batch fails as a whole (STORE_E_CORRUPT) only when the rev_gen counter it bumps is corrupt. */
static void revoke_all(store *s)
{
    store_put puts[MAX_RECS], *head = NULL, **tail = &head;
    size_t np = 0;
    uint64_t gen;

    for (size_t i = 0; i < G.n; i++) {
        const rec *r = &G.r[i];
        if (!r->live || r->db != DB_CERTS || r->klen != STORE_SERIAL_LEN)
            continue;
        store_put *p = &puts[np++];
        memset(p, 0, sizeof(*p));
        p->kind = STORE_PUT_REVOKE;
        memcpy(p->rev.serial, r->key, STORE_SERIAL_LEN);
        p->rev.reason = 1;
        p->rev.revoked_at = 1700000000;
        p->rev.who = "fuzz";
        p->rev.who_len = 4;
        *tail = p;
        tail = &p->next;
    }
    if (np == 0)
        return;
    int batch = store_put_sync(s, head);
    int gen_bad = expect_counter("rev_gen", &gen) < 0, reaches_counter = 0;
    int want[MAX_RECS];
    for (size_t i = 0; i < np; i++) {
        const rec *c = find(DB_CERTS, puts[i].rev.serial, STORE_SERIAL_LEN);
        const rec *rv = find(DB_REVOKED, puts[i].rev.serial, STORE_SERIAL_LEN);
        want[i] = !cert_ok(c) ? STORE_E_CORRUPT
                : rv == NULL ? STORE_OK
                : rev_ok(rv) ? STORE_ALREADY_REVOKED : STORE_E_CORRUPT;
        reaches_counter |= want[i] == STORE_OK;
    }
    /* the batch fails as a whole exactly when a revocation reaches a corrupt counter */
    if (batch != (gen_bad && reaches_counter ? STORE_E_CORRUPT : 0))
        abort();
    for (size_t i = 0; i < np; i++)
        if (puts[i].result != (batch != 0 ? batch : want[i]))
            abort();
    if (batch != 0)
        return;

    store_reader *rd = NULL;
    if (store_reader_create(s, &rd) != 0 || store_reader_begin(rd) != 0)
        abort();
    for (size_t i = 0; i < np; i++) {
        store_cert c;
        store_revocation rv;
        if (puts[i].result != STORE_OK)
            continue;
        if (store_get_cert(rd, puts[i].rev.serial, &c) != 0 || c.status != STORE_CERT_REVOKED ||
            store_get_revocation(rd, puts[i].rev.serial, &rv) != 0 || rv.reason != 1 ||
            rv.who_len != 4 || memcmp(rv.who, "fuzz", 4) != 0)
            abort();
    }
    store_reader_destroy(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    store *s = NULL;

    if (!G.ready)
        init();
    split(data, size);
    write_raw();

    const rec *schema = find(DB_META, "schema", 6);
    int schema_ok = schema == NULL || (schema->vlen == 4 && u32le(schema->val) == 1);
    int rc = store_open(G.dir, 0, &s);
    if (rc != (schema_ok ? 0 : STORE_E_SCHEMA))
        abort();
    if (rc == 0) {
        read_back(s);
        revoke_all(s);
    }
    store_close(s);
    return 0;
}
