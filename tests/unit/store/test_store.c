/* Tests for engine/store/store.c against a real LMDB environment in a fresh temporary directory. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "engine/store/store.h"

#define DER_MAX 2048

struct tput {
    store_put put;
    int idx;
    int seen;           /* times the done callback saw it */
    int owner;          /* submitting thread */
    char txid[40];
    char subject[40];
    char profile[16];
    uint8_t der[DER_MAX];
};

/* ---- sync accounting ----
 * The test program defines fdatasync, fsync and msync itself, so liblmdb's calls land here
 * first (then go on to libc): each one that flushes the environment's data file (or, for
 * msync, any mapping: MDB_WRITEMAP) is counted. A reader in another process would see an
 * unsynced commit through the page cache, so only this count can tell that a commit was
 * made durable before the done callback ran (an environment opened with MDB_NOSYNC makes
 * test_durable_after_done fail). */
static atomic_int data_syncs;
static dev_t data_dev;
static ino_t data_ino;       /* 0: not watching */

static void note_sync(int fd)
{
    struct stat st;
    if (data_ino != 0 && fstat(fd, &st) == 0 && st.st_ino == data_ino && st.st_dev == data_dev)
        atomic_fetch_add(&data_syncs, 1);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    note_sync(fd);
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    note_sync(fd);
    return real(fd);
}

int msync(void *addr, size_t len, int flags)
{
    static int (*real)(void *, size_t, int);
    if (real == NULL)
        real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "msync");
    if (data_ino != 0 && (flags & MS_SYNC))
        atomic_fetch_add(&data_syncs, 1);
    return real(addr, len, flags);
}

static void watch_data_file(const char *env_path)
{
    char data[160];
    struct stat st;
    snprintf(data, sizeof(data), "%s/data.mdb", env_path);
    assert_int_equal(stat(data, &st), 0);
    data_dev = st.st_dev;
    data_ino = st.st_ino;
}

struct fixture {
    char dir[64];
    char path[96];      /* dir/env */
    store *s;
};

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/env", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->s);
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void serial_of(int i, uint8_t serial[STORE_SERIAL_LEN])
{
    memset(serial, 0, STORE_SERIAL_LEN);
    serial[0] = 0x40;                   /* positive, like real serials */
    for (int b = 0; b < 4; b++)
        serial[STORE_SERIAL_LEN - 1 - b] = (uint8_t)((unsigned)i >> (8 * b));
}

/* A put for certificate i: subject hash groups by i % groups, DER of der_len bytes. */
static struct tput *make_put(int i, int groups, size_t der_len)
{
    struct tput *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_true(der_len <= DER_MAX);
    t->idx = i;
    store_cert *c = &t->put.cert;
    serial_of(i, c->serial);
    c->status = STORE_CERT_VALID;
    c->not_before = 1700000000 + i;
    c->not_after = 1800000000 + i;
    c->issued_at = 1700000100 + i;
    memset(c->key_hash, 0xA0 + (i & 0xF), STORE_HASH_LEN);
    c->key_hash[0] = (uint8_t)i;
    memset(c->subject_hash, 0, STORE_HASH_LEN);
    c->subject_hash[0] = (uint8_t)(i % groups);
    c->subject_hash[31] = 0x5A;
    snprintf(t->txid, sizeof(t->txid), "txid-%08d", i);
    snprintf(t->subject, sizeof(t->subject), "CN=device-%d,O=test", i);
    snprintf(t->profile, sizeof(t->profile), "p%d", i % 3);
    for (size_t k = 0; k < der_len; k++)
        t->der[k] = (uint8_t)(k * 7 + (size_t)i);
    c->txid = t->txid;       c->txid_len = strlen(t->txid);
    c->subject = t->subject; c->subject_len = strlen(t->subject);
    c->profile = t->profile; c->profile_len = strlen(t->profile);
    c->der = t->der;         c->der_len = der_len;
    t->put.result = 12345;
    return t;
}

static void open_store(struct fixture *f, size_t map)
{
    assert_int_equal(store_open(f->path, map, &f->s), 0);
    assert_non_null(f->s);
}

static int put1(store *s, struct tput *t)
{
    t->put.next = NULL;
    assert_int_equal(store_put_sync(s, &t->put), 0);
    return t->put.result;
}

static void assert_cert_eq(const store_cert *got, const store_cert *want)
{
    assert_memory_equal(got->serial, want->serial, STORE_SERIAL_LEN);
    assert_int_equal(got->status, want->status);
    assert_int_equal(got->not_before, want->not_before);
    assert_int_equal(got->not_after, want->not_after);
    assert_int_equal(got->issued_at, want->issued_at);
    assert_memory_equal(got->key_hash, want->key_hash, STORE_HASH_LEN);
    assert_memory_equal(got->subject_hash, want->subject_hash, STORE_HASH_LEN);
    assert_int_equal(got->subject_len, want->subject_len);
    assert_memory_equal(got->subject, want->subject, want->subject_len);
    assert_int_equal(got->txid_len, want->txid_len);
    if (want->txid_len)
        assert_memory_equal(got->txid, want->txid, want->txid_len);
    assert_int_equal(got->profile_len, want->profile_len);
    if (want->profile_len)
        assert_memory_equal(got->profile, want->profile, want->profile_len);
    assert_int_equal(got->der_len, want->der_len);
    assert_memory_equal(got->der, want->der, want->der_len);
}

/* Number of certificates, through a fresh reader. */
static size_t count_of(store *s)
{
    store_reader *r = NULL;
    size_t n = 0;
    assert_int_equal(store_reader_create(s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_count(r, &n), 0);
    store_reader_destroy(r);
    return n;
}

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *t = make_put(7, 4, 777);
    t->put.cert.status = STORE_CERT_REVOKED;
    t->put.cert.not_before = -5;                /* negative times survive the encoding */
    t->put.cert.issued_at = INT64_MAX;
    assert_int_equal(put1(f->s, t), STORE_OK);

    struct tput *bare = make_put(8, 4, 1);      /* empty subject, txid, profile */
    bare->put.cert.txid_len = bare->put.cert.subject_len = bare->put.cert.profile_len = 0;
    assert_int_equal(put1(f->s, bare), STORE_OK);

    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    store_cert got;
    assert_int_equal(store_get_cert(r, t->put.cert.serial, &got), -EINVAL);  /* not begun */
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_cert(r, t->put.cert.serial, &got), 0);
    assert_cert_eq(&got, &t->put.cert);
    assert_int_equal(store_get_cert(r, bare->put.cert.serial, &got), 0);
    assert_cert_eq(&got, &bare->put.cert);

    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    assert_int_equal(store_get_txid(r, t->txid, strlen(t->txid), sn, kh), 0);
    assert_memory_equal(sn, t->put.cert.serial, STORE_SERIAL_LEN);
    assert_memory_equal(kh, t->put.cert.key_hash, STORE_HASH_LEN);
    assert_int_equal(store_get_txid(r, "nope", 4, sn, kh), STORE_NOTFOUND);
    assert_int_equal(store_get_txid(r, "", 0, sn, kh), -EINVAL);

    uint8_t missing[STORE_SERIAL_LEN];
    serial_of(999, missing);
    memset(&got, 0x77, sizeof(got));
    assert_int_equal(store_get_cert(r, missing, &got), STORE_NOTFOUND);
    assert_int_equal(got.status, 0x77777777);  /* untouched on failure */

    size_t n = 0;
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 2);

    /* begin on an open reader is allowed (it renews: test_snapshot_isolation) */
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 2);
    store_reader_end(r);
    store_reader_end(r);    /* ending twice is harmless */
    assert_int_equal(store_count(r, &n), -EINVAL);
    store_reader_destroy(r);
    store_reader_destroy(NULL);
    free(t);
    free(bare);
}

/* A writer on another thread, so that a write can commit while this thread holds a snapshot
 * (store_put_sync must not run on a thread with an open reader). */
struct bg_put {
    store *s;
    store_put *list;
    int rc;
};

static void *bg_put_main(void *arg)
{
    struct bg_put *b = arg;
    b->rc = store_put_sync(b->s, b->list);
    return NULL;
}

static void put_from_thread(store *s, store_put *list)
{
    struct bg_put b = { s, list, 1 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_put_main, &b), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(b.rc, 0);
}

/* A reader's snapshot does not see what commits after its begin (a new certificate, its
 * txid, a revocation of a certificate it already saw, the counters); a second reader begun
 * after the commit does, and so does the first one once it begins again. */
static void test_snapshot_isolation(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *a = make_put(1, 4, 100), *b = make_put(2, 4, 100);
    assert_int_equal(put1(f->s, a), STORE_OK);
    store_reader *r = NULL, *r2 = NULL;
    store_cert got;
    store_revocation rv;
    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    uint64_t gen = 99, num = 99;
    size_t n = 0;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_create(f->s, &r2), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 1);

    /* while r is open: b is added and a revoked, committed */
    b->put.next = NULL;
    put_from_thread(f->s, &b->put);
    assert_int_equal(b->put.result, STORE_OK);
    store_put rp;
    memset(&rp, 0, sizeof(rp));
    rp.kind = STORE_PUT_REVOKE;
    memcpy(rp.rev.serial, a->put.cert.serial, STORE_SERIAL_LEN);
    rp.rev.reason = 1;
    rp.rev.revoked_at = 1700000999;
    put_from_thread(f->s, &rp);
    assert_int_equal(rp.result, STORE_OK);

    /* r still reads its snapshot */
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_get_cert(r, b->put.cert.serial, &got), STORE_NOTFOUND);
    assert_int_equal(store_get_txid(r, b->txid, strlen(b->txid), sn, kh), STORE_NOTFOUND);
    assert_int_equal(store_get_cert(r, a->put.cert.serial, &got), 0);
    assert_int_equal(got.status, STORE_CERT_VALID);
    assert_int_equal(store_get_revocation(r, a->put.cert.serial, &rv), STORE_NOTFOUND);
    assert_int_equal(store_count_revoked(r, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_get_counters(r, &gen, &num), 0);
    assert_int_equal(gen, 0);

    /* a reader begun after the commits sees them (so the writes did happen) */
    assert_int_equal(store_reader_begin(r2), 0);
    assert_int_equal(store_count(r2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_get_cert(r2, b->put.cert.serial, &got), 0);
    assert_cert_eq(&got, &b->put.cert);
    assert_int_equal(store_get_cert(r2, a->put.cert.serial, &got), 0);
    assert_int_equal(got.status, STORE_CERT_REVOKED);
    assert_int_equal(store_get_counters(r2, &gen, &num), 0);
    assert_int_equal(gen, 1);
    store_reader_end(r2);

    /* begin on an open reader renews the snapshot: now r sees both writes too */
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(store_get_txid(r, b->txid, strlen(b->txid), sn, kh), 0);
    assert_memory_equal(sn, b->put.cert.serial, STORE_SERIAL_LEN);
    assert_int_equal(store_get_revocation(r, a->put.cert.serial, &rv), 0);
    assert_int_equal(rv.revoked_at, 1700000999);
    store_reader_destroy(r2);
    store_reader_destroy(r);   /* destroy with an open snapshot */
    free(a);
    free(b);
}

static void test_dup_serial(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *a = make_put(1, 4, 100), *b = make_put(2, 4, 100);
    memcpy(b->put.cert.serial, a->put.cert.serial, STORE_SERIAL_LEN);
    b->put.cert.subject_hash[0] = 0xEE;
    assert_int_equal(put1(f->s, a), STORE_OK);
    assert_int_equal(put1(f->s, b), STORE_DUP_SERIAL);

    /* nothing of b was written: not its txid, not its subject index entry, not its record */
    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    uint8_t sn[STORE_SERIAL_LEN], kh[STORE_HASH_LEN];
    assert_int_equal(store_get_txid(r, b->txid, strlen(b->txid), sn, kh), STORE_NOTFOUND);
    store_cert got;
    assert_int_equal(store_get_cert(r, a->put.cert.serial, &got), 0);
    assert_cert_eq(&got, &a->put.cert);
    store_reader_destroy(r);
    assert_int_equal(count_of(f->s), 1);
    free(a);
    free(b);
}

static int count_cb(const store_cert *c, void *arg)
{
    (void)c;
    (*(int *)arg)++;
    return 0;
}

static void test_dup_txid(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *a = make_put(1, 4, 100), *b = make_put(2, 4, 100);
    strcpy(b->txid, a->txid);
    b->put.cert.subject_hash[0] = 0xEE;
    assert_int_equal(put1(f->s, a), STORE_OK);
    memset(b->put.existing_serial, 0, STORE_SERIAL_LEN);
    assert_int_equal(put1(f->s, b), STORE_DUP_TXID);
    assert_memory_equal(b->put.existing_serial, a->put.cert.serial, STORE_SERIAL_LEN);
    assert_memory_equal(b->put.existing_key_hash, a->put.cert.key_hash, STORE_HASH_LEN);

    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    store_cert got;
    assert_int_equal(store_get_cert(r, b->put.cert.serial, &got), STORE_NOTFOUND);
    int n = 0;
    assert_int_equal(store_foreach_subject(r, b->put.cert.subject_hash, count_cb, &n), 0);
    assert_int_equal(n, 0);
    store_reader_destroy(r);
    assert_int_equal(count_of(f->s), 1);
    free(a);
    free(b);
}

static void test_dups_in_one_batch(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *a = make_put(1, 4, 100), *b = make_put(2, 4, 100), *c = make_put(3, 4, 100);
    struct tput *d = make_put(4, 4, 100), *bad = make_put(5, 4, 100);
    strcpy(b->txid, a->txid);                                        /* same txid as a   */
    memcpy(c->put.cert.serial, a->put.cert.serial, STORE_SERIAL_LEN); /* same serial as a */
    bad->put.cert.der_len = 0;                                       /* invalid input    */
    a->put.next = &b->put;
    b->put.next = &c->put;
    c->put.next = &bad->put;
    bad->put.next = &d->put;
    d->put.next = NULL;
    assert_int_equal(store_put_sync(f->s, &a->put), 0);
    assert_int_equal(a->put.result, STORE_OK);
    assert_int_equal(b->put.result, STORE_DUP_TXID);
    assert_memory_equal(b->put.existing_serial, a->put.cert.serial, STORE_SERIAL_LEN);
    assert_memory_equal(b->put.existing_key_hash, a->put.cert.key_hash, STORE_HASH_LEN);
    assert_int_equal(c->put.result, STORE_DUP_SERIAL);
    assert_int_equal(bad->put.result, -EINVAL);
    assert_int_equal(d->put.result, STORE_OK);
    assert_int_equal(count_of(f->s), 2);
    free(a); free(b); free(c); free(d); free(bad);
}

static void test_invalid_puts(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *t = make_put(1, 4, 100);
    t->put.cert.status = 7;
    assert_int_equal(put1(f->s, t), -EINVAL);
    t->put.cert.status = STORE_CERT_VALID;
    t->put.cert.der = NULL;
    assert_int_equal(put1(f->s, t), -EINVAL);
    t->put.cert.der = t->der;
    t->put.cert.subject = NULL;
    assert_int_equal(put1(f->s, t), -EINVAL);
    t->put.cert.subject = t->subject;
    char longtx[600];
    memset(longtx, 'x', sizeof(longtx));
    t->put.cert.txid = longtx;                 /* over LMDB's 511-byte key limit */
    t->put.cert.txid_len = sizeof(longtx);
    assert_int_equal(put1(f->s, t), -EINVAL);
    assert_int_equal(count_of(f->s), 0);
    t->put.cert.txid = t->txid;
    t->put.cert.txid_len = strlen(t->txid);
    assert_int_equal(put1(f->s, t), STORE_OK);
    assert_int_equal(count_of(f->s), 1);
    free(t);
}

struct collect {
    uint8_t serials[64][STORE_SERIAL_LEN];
    int n;
    int stop_at;
};

static int collect_cb(const store_cert *c, void *arg)
{
    struct collect *col = arg;
    if (col->n >= 64)
        return -1;
    memcpy(col->serials[col->n++], c->serial, STORE_SERIAL_LEN);
    return col->n == col->stop_at ? 42 : 0;
}

static void test_foreach(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    /* insert in a scrambled order: 0, 7, 14, ... mod 20 */
    struct tput *t[20];
    for (int i = 0; i < 20; i++) {
        t[i] = make_put((i * 7) % 20, 3, 50);
        t[i]->put.next = i > 0 ? NULL : NULL;
    }
    for (int i = 0; i < 19; i++)
        t[i]->put.next = &t[i + 1]->put;
    assert_int_equal(store_put_sync(f->s, &t[0]->put), 0);

    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    struct collect col = { .stop_at = -1 };
    assert_int_equal(store_foreach_cert(r, collect_cb, &col), 0);
    assert_int_equal(col.n, 20);
    for (int i = 0; i < 20; i++) {
        uint8_t want[STORE_SERIAL_LEN];
        serial_of(i, want);
        assert_memory_equal(col.serials[i], want, STORE_SERIAL_LEN);
    }
    /* early stop returns the callback's value */
    struct collect col2 = { .stop_at = 5 };
    assert_int_equal(store_foreach_cert(r, collect_cb, &col2), 42);
    assert_int_equal(col2.n, 5);

    /* subject group 1 = serials 1, 4, 7, 10, 13, 16, 19, in serial order */
    uint8_t h[STORE_HASH_LEN] = { 0 };
    h[0] = 1;
    h[31] = 0x5A;
    struct collect col3 = { .stop_at = -1 };
    assert_int_equal(store_foreach_subject(r, h, collect_cb, &col3), 0);
    assert_int_equal(col3.n, 7);
    for (int i = 0; i < 7; i++) {
        uint8_t want[STORE_SERIAL_LEN];
        serial_of(1 + 3 * i, want);
        assert_memory_equal(col3.serials[i], want, STORE_SERIAL_LEN);
    }
    struct collect col4 = { .stop_at = 2 };
    assert_int_equal(store_foreach_subject(r, h, collect_cb, &col4), 42);
    assert_int_equal(col4.n, 2);
    h[0] = 9;   /* no such subject */
    struct collect col5 = { .stop_at = -1 };
    assert_int_equal(store_foreach_subject(r, h, collect_cb, &col5), 0);
    assert_int_equal(col5.n, 0);

    size_t n = 0;
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 20);
    store_reader_end(r);
    assert_int_equal(store_foreach_cert(r, collect_cb, &col), -EINVAL);
    assert_int_equal(store_foreach_subject(r, h, collect_cb, &col), -EINVAL);
    store_reader_destroy(r);
    for (int i = 0; i < 20; i++)
        free(t[i]);
}

/* ---- writer ---- */

#define W_THREADS 4
#define W_LISTS   10
#define W_PER     25
#define W_BATCH   16

struct wctx {
    store *s;
    struct tput *puts[W_THREADS * W_LISTS * W_PER];
    int batches, max_batch, bad_result, total;
    int syncs_at_done;      /* data_syncs when the last batch was handed to done */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void done_cb(store_put *batch, void *arg)
{
    struct wctx *w = arg;
    int n = 0;
    for (store_put *p = batch; p != NULL; p = p->next) {
        struct tput *t = (struct tput *)((char *)p - offsetof(struct tput, put));
        t->seen++;
        if (p->result != STORE_OK)
            w->bad_result++;
        n++;
    }
    pthread_mutex_lock(&w->mu);
    w->syncs_at_done = atomic_load(&data_syncs);
    w->batches++;
    if (n > w->max_batch)
        w->max_batch = n;
    w->total += n;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

struct submitter {
    struct wctx *w;
    int id;
};

static void *submit_main(void *arg)
{
    struct submitter *sb = arg;
    for (int l = 0; l < W_LISTS; l++) {
        store_put *head = NULL, **tail = &head;
        for (int k = 0; k < W_PER; k++) {
            struct tput *t = sb->w->puts[(sb->id * W_LISTS + l) * W_PER + k];
            t->owner = sb->id;
            *tail = &t->put;
            tail = &t->put.next;
        }
        *tail = NULL;
        store_submit(sb->w->s, head);
    }
    return NULL;
}

static void wait_total(struct wctx *w, int want)
{
    pthread_mutex_lock(&w->mu);
    while (w->total < want)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void test_writer_concurrent(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    static struct wctx w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    w.s = f->s;
    int nputs = W_THREADS * W_LISTS * W_PER;
    for (int i = 0; i < nputs; i++)
        w.puts[i] = make_put(i, 10, 200);

    assert_int_equal(store_writer_start(f->s, W_BATCH, done_cb, &w), 0);
    assert_int_equal(store_writer_start(f->s, W_BATCH, done_cb, &w), -EBUSY);
    struct tput *extra = make_put(5000, 10, 10);
    extra->put.next = NULL;
    assert_int_equal(store_put_sync(f->s, &extra->put), -EBUSY);
    assert_int_equal(extra->put.result, -EBUSY);

    pthread_t th[W_THREADS];
    struct submitter sb[W_THREADS];
    for (int i = 0; i < W_THREADS; i++) {
        sb[i] = (struct submitter){ &w, i };
        assert_int_equal(pthread_create(&th[i], NULL, submit_main, &sb[i]), 0);
    }
    for (int i = 0; i < W_THREADS; i++)
        pthread_join(th[i], NULL);
    wait_total(&w, nputs);
    store_writer_stop(f->s);
    store_writer_stop(f->s);    /* stopping twice is harmless */

    assert_int_equal(w.total, nputs);
    assert_int_equal(w.bad_result, 0);
    assert_true(w.max_batch <= W_BATCH);
    assert_true(w.batches >= nputs / W_BATCH);
    for (int i = 0; i < nputs; i++)
        assert_int_equal(w.puts[i]->seen, 1);
    assert_int_equal(count_of(f->s), (size_t)nputs);

    /* the writer can be restarted after a stop */
    assert_int_equal(store_writer_start(f->s, W_BATCH, done_cb, &w), 0);
    extra->put.next = NULL;
    store_submit(f->s, &extra->put);
    store_submit(f->s, NULL);
    wait_total(&w, nputs + 1);
    store_writer_stop(f->s);
    assert_int_equal(extra->put.result, STORE_OK);
    assert_int_equal(count_of(f->s), (size_t)nputs + 1);

    assert_int_equal(store_writer_start(f->s, 0, done_cb, &w), -EINVAL);
    assert_int_equal(store_writer_start(f->s, 4, NULL, &w), -EINVAL);

    for (int i = 0; i < nputs; i++)
        free(w.puts[i]);
    free(extra);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
}

/* Children report with exit codes; cmocka asserts stay in the parent. */
static int child_status(pid_t pid)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_durable_after_done(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    static struct wctx w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct tput *t = make_put(77, 4, 900);
    t->put.next = NULL;
    watch_data_file(f->path);
    assert_int_equal(store_writer_start(f->s, 8, done_cb, &w), 0);
    int before = atomic_load(&data_syncs);
    store_submit(f->s, &t->put);
    wait_total(&w, 1);
    assert_int_equal(t->put.result, STORE_OK);
    store_writer_stop(f->s);
    /* the data file was flushed after the submit and before done saw the batch */
    assert_true(w.syncs_at_done > before);

    /* the same for store_put_sync (scepctl): synced before it returns */
    struct tput *t2 = make_put(78, 4, 900);
    before = atomic_load(&data_syncs);
    assert_int_equal(put1(f->s, t2), STORE_OK);
    assert_true(atomic_load(&data_syncs) > before);
    data_ino = 0;
    free(t2);

    /* Another process opens the environment (the parent keeps it open) and finds it. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store *s2 = NULL;
        store_reader *r = NULL;
        store_cert got;
        int code = 1;
        if (store_open(f->path, 0, &s2) == 0 && store_reader_create(s2, &r) == 0
            && store_reader_begin(r) == 0 && store_get_cert(r, t->put.cert.serial, &got) == 0
            && got.der_len == 900 && memcmp(got.der, t->der, 900) == 0)
            code = 0;
        store_reader_destroy(r);
        store_close(s2);
        _exit(code);
    }
    assert_int_equal(child_status(pid), 0);
    free(t);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
}

/* A commit that fails (file size limit: pwrite gets EFBIG) still calls done, with the error
 * in every put, and writes nothing. Runs in a child so the limit stays there. */
static void test_commit_error(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static struct wctx w;
        store *s = NULL;
        int code = 10;
        pthread_mutex_init(&w.mu, NULL);
        pthread_cond_init(&w.cv, NULL);
        signal(SIGXFSZ, SIG_IGN);
        if (store_open(f->path, 0, &s) != 0)
            _exit(code);
        struct rlimit rl = { 1 << 20, 1 << 20 };   /* the data file may not pass 1 MiB */
        setrlimit(RLIMIT_FSIZE, &rl);
        store_put *head = NULL, **tail = &head;
        struct tput *t[800];
        for (int i = 0; i < 800; i++) {
            t[i] = make_put(i, 4, 2000);
            *tail = &t[i]->put;
            tail = &t[i]->put.next;
        }
        code = 11;
        if (store_writer_start(s, 1000, done_cb, &w) != 0)
            _exit(code);
        store_submit(s, head);
        wait_total(&w, 800);
        store_writer_stop(s);
        code = 12;
        if (w.batches != 1 || w.bad_result != 800)
            _exit(code);
        code = 13;
        for (int i = 0; i < 800; i++)
            if (t[i]->put.result != t[0]->put.result || t[i]->seen != 1)
                _exit(code);
        /* a short write past the limit shows as EIO, a refused one as EFBIG */
        code = 14;
        if (t[0]->put.result != -EIO && t[0]->put.result != -EFBIG)
            _exit(code);
        /* the environment is still usable: a small put succeeds, nothing else was kept */
        struct tput *small = make_put(9000, 4, 10);
        small->put.next = NULL;
        code = 15;
        if (store_put_sync(s, &small->put) != 0 || small->put.result != STORE_OK)
            _exit(code);
        store_reader *r = NULL;
        size_t n = 0;
        code = 16;
        if (store_reader_create(s, &r) != 0 || store_reader_begin(r) != 0
            || store_count(r, &n) != 0 || n != 1)
            _exit(code);
        store_reader_destroy(r);
        store_close(s);
        _exit(0);
    }
    assert_int_equal(child_status(pid), 0);
}

/* ---- map growth ---- */

struct rthread {
    store *s;
    volatile int stop;
    int reads, errors;
};

static void *reader_main(void *arg)
{
    struct rthread *rt = arg;
    store_reader *r = NULL;
    if (store_reader_create(rt->s, &r) != 0) {
        rt->errors++;
        return NULL;
    }
    while (!__atomic_load_n(&rt->stop, __ATOMIC_ACQUIRE)) {
        size_t n = 0;
        if (store_reader_begin(r) != 0 || store_count(r, &n) != 0) {
            rt->errors++;
            break;
        }
        if (n > 0) {
            uint8_t sn[STORE_SERIAL_LEN];
            store_cert c;
            serial_of((int)(n / 2), sn);
            int rc = store_get_cert(r, sn, &c);
            /* touch the whole record: a stale map would fault here */
            unsigned sum = 0;
            for (size_t k = 0; rc == 0 && k < c.der_len; k++)
                sum += c.der[k];
            if (rc != 0 && rc != STORE_NOTFOUND)
                rt->errors++;
            (void)sum;
        }
        usleep(500);     /* hold the snapshot so that resizes have to wait for it */
        store_reader_end(r);
        rt->reads++;
    }
    store_reader_destroy(r);
    return NULL;
}

static void test_map_growth(void **state)
{
    struct fixture *f = *state;
    open_store(f, 256 * 1024);
    enum { N = 5000, LIST = 100 };
    static struct wctx w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct tput **t = calloc(N, sizeof(*t));
    assert_non_null(t);
    for (int i = 0; i < N; i++)
        t[i] = make_put(i, 50, 1024);

    struct rthread rt = { .s = f->s };
    pthread_t rth;
    assert_int_equal(pthread_create(&rth, NULL, reader_main, &rt), 0);
    assert_int_equal(store_writer_start(f->s, 256, done_cb, &w), 0);
    for (int l = 0; l < N / LIST; l++) {
        for (int k = 0; k < LIST; k++)
            t[l * LIST + k]->put.next = k + 1 < LIST ? &t[l * LIST + k + 1]->put : NULL;
        store_submit(f->s, &t[l * LIST]->put);
    }
    wait_total(&w, N);
    store_writer_stop(f->s);
    __atomic_store_n(&rt.stop, 1, __ATOMIC_RELEASE);
    pthread_join(rth, NULL);

    assert_int_equal(w.bad_result, 0);
    assert_int_equal(rt.errors, 0);
    assert_true(rt.reads > 0);
    assert_int_equal(count_of(f->s), N);

    char data[160];
    struct stat st;
    snprintf(data, sizeof(data), "%s/data.mdb", f->path);
    assert_int_equal(stat(data, &st), 0);
    assert_true(st.st_size > 5 * 1024 * 1024);   /* far beyond the initial 256 KiB map */

    /* every record reads back intact */
    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    for (int i = 0; i < N; i += 97) {
        store_cert c;
        assert_int_equal(store_get_cert(r, t[i]->put.cert.serial, &c), 0);
        assert_cert_eq(&c, &t[i]->put.cert);
    }
    store_reader_destroy(r);
    for (int i = 0; i < N; i++)
        free(t[i]);
    free(t);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
}

/* Writes certificates first..first+count-1 (1 KiB DER) from a child process with its own
 * environment handle and a small map, so the environment grows beyond our mapping. */
static void grow_in_child(const char *path, int first, int count)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store *s2 = NULL;
        if (store_open(path, 256 * 1024, &s2) != 0)
            _exit(1);
        for (int b = 0; b < count / 200; b++) {
            store_put *head = NULL, **tail = &head;
            struct tput *t[200];
            for (int i = 0; i < 200; i++) {
                t[i] = make_put(first + b * 200 + i, 4, 1024);
                *tail = &t[i]->put;
                tail = &t[i]->put.next;
            }
            if (store_put_sync(s2, head) != 0 || t[199]->put.result != STORE_OK)
                _exit(2);
            for (int i = 0; i < 200; i++)
                free(t[i]);
        }
        store_close(s2);
        _exit(0);
    }
    assert_int_equal(child_status(pid), 0);
}

/* Another process grows the map beyond ours: our next transaction adopts the new size,
 * whether it is a reader's (renew) or the writer's. */
static void test_map_grown_elsewhere(void **state)
{
    struct fixture *f = *state;
    open_store(f, 256 * 1024);
    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);     /* the reader has a slot and a txn */
    store_reader_end(r);

    grow_in_child(f->path, 0, 2000);
    assert_int_equal(store_reader_begin(r), 0);     /* renew meets MDB_MAP_RESIZED */
    size_t n = 0;
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 2000);
    uint8_t sn[STORE_SERIAL_LEN];
    serial_of(1999, sn);
    store_cert c;
    assert_int_equal(store_get_cert(r, sn, &c), 0);
    assert_int_equal(c.der_len, 1024);
    assert_int_equal(c.der[1023], (uint8_t)(1023 * 7 + 1999));
    store_reader_end(r);

    grow_in_child(f->path, 2000, 2000);
    struct tput *t = make_put(5000, 4, 100);
    assert_int_equal(put1(f->s, t), STORE_OK);      /* the write txn meets it first */
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_count(r, &n), 0);
    assert_int_equal(n, 4001);
    store_reader_end(r);

    grow_in_child(f->path, 6000, 2000);
    assert_int_equal(store_ping(f->s), 0);          /* and a plain read txn */
    assert_int_equal(count_of(f->s), 6001);
    store_reader_destroy(r);
    free(t);
}

/* ---- corruption and schema ---- */

/* Writes key/value pairs straight into a named database with plain LMDB. */
static void raw_put(const char *path, const char *db, const void *k, size_t kl, const void *v,
                    size_t vl)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    unsigned flags = strcmp(db, "subject") == 0 ? MDB_DUPSORT : 0;
    assert_int_equal(mdb_dbi_open(txn, db, flags, &dbi), 0);
    MDB_val key = { kl, (void *)k }, val = { vl, (void *)v };
    assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Reads a record's raw bytes (to build corrupt variants of it). */
static size_t raw_get(const char *path, const uint8_t *serial, uint8_t *buf, size_t buflen)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "certs", 0, &dbi), 0);
    MDB_val key = { STORE_SERIAL_LEN, (void *)serial }, val;
    assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
    assert_true(val.mv_size <= buflen);
    memcpy(buf, val.mv_data, val.mv_size);
    size_t n = val.mv_size;
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

static int corrupt_get(struct fixture *f, const uint8_t *serial)
{
    store_reader *r = NULL;
    store_cert c;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    int rc = store_get_cert(r, serial, &c);
    store_reader_destroy(r);
    return rc;
}

static void test_corrupt_records(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    struct tput *good = make_put(1, 4, 300);
    assert_int_equal(put1(f->s, good), STORE_OK);
    store_close(f->s);
    f->s = NULL;

    uint8_t rec[1024];
    size_t len = raw_get(f->path, good->put.cert.serial, rec, sizeof(rec));
    uint8_t sn[STORE_SERIAL_LEN];

    /* 1: truncated header; 2: truncated body; 3: a length field pointing past the end;
     * 4: bad version; 5: bad status; 6: key of the wrong length is checked by foreach */
    serial_of(101, sn);
    raw_put(f->path, "certs", sn, sizeof(sn), rec, 50);
    serial_of(102, sn);
    raw_put(f->path, "certs", sn, sizeof(sn), rec, len - 10);
    uint8_t bad[1024];
    memcpy(bad, rec, len);
    bad[92] = 0xFF;                      /* subject_len low byte */
    bad[95] = 0x7F;                      /* subject_len huge */
    serial_of(103, sn);
    raw_put(f->path, "certs", sn, sizeof(sn), bad, len);
    memcpy(bad, rec, len);
    bad[0] = 9;
    serial_of(104, sn);
    raw_put(f->path, "certs", sn, sizeof(sn), bad, len);
    memcpy(bad, rec, len);
    bad[1] = 5;
    serial_of(105, sn);
    raw_put(f->path, "certs", sn, sizeof(sn), bad, len);
    /* txid entry of the wrong size; subject entry whose certificate is missing */
    raw_put(f->path, "txid", "badtx", 5, "short", 5);
    uint8_t h[STORE_HASH_LEN];
    memset(h, 0xCC, sizeof(h));
    serial_of(555, sn);
    raw_put(f->path, "subject", h, sizeof(h), sn, sizeof(sn));
    uint8_t h2[STORE_HASH_LEN];
    memset(h2, 0xDD, sizeof(h2));
    raw_put(f->path, "subject", h2, sizeof(h2), "abc", 3);

    open_store(f, 0);
    assert_int_equal(corrupt_get(f, good->put.cert.serial), 0);
    for (int i = 101; i <= 105; i++) {
        serial_of(i, sn);
        assert_int_equal(corrupt_get(f, sn), STORE_E_CORRUPT);
    }
    store_reader *r = NULL;
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    int n = 0;
    assert_int_equal(store_foreach_cert(r, count_cb, &n), STORE_E_CORRUPT);
    assert_int_equal(n, 1);     /* the good record (serial 1) comes first */
    uint8_t kh[STORE_HASH_LEN];
    assert_int_equal(store_get_txid(r, "badtx", 5, sn, kh), STORE_E_CORRUPT);
    assert_int_equal(store_foreach_subject(r, h, count_cb, &n), STORE_E_CORRUPT);
    assert_int_equal(store_foreach_subject(r, h2, count_cb, &n), STORE_E_CORRUPT);
    store_reader_destroy(r);

    /* a new put over a corrupt serial is still refused as a duplicate, not overwritten */
    struct tput *again = make_put(101, 4, 10);
    assert_int_equal(put1(f->s, again), STORE_DUP_SERIAL);
    assert_string_equal(store_strerror(STORE_E_CORRUPT), "corrupt store record");
    free(good);
    free(again);
}

/* ---- revocations ---- */

static int revoke1(store *s, int i, int reason, int64_t at, const char *who, store_revocation *out)
{
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_REVOKE;
    serial_of(i, p.rev.serial);
    p.rev.reason = reason;
    p.rev.revoked_at = at;
    p.rev.invalidity = at - 100;
    p.rev.who = who;
    p.rev.who_len = who != NULL ? strlen(who) : 0;
    assert_int_equal(store_put_sync(s, &p), 0);
    if (out != NULL)
        *out = p.rev;
    return p.result;
}

static int rev_collect(const store_revocation *rv, void *arg)
{
    int *n = arg;
    uint8_t want[STORE_SERIAL_LEN];
    serial_of(n[0] == 0 ? 2 : 5, want);       /* serial order: 2 then 5 */
    assert_memory_equal(rv->serial, want, STORE_SERIAL_LEN);
    n[0]++;
    return 0;
}

static void test_revocations(void **state)
{
    struct fixture *f = *state;
    store_reader *r = NULL;
    store_cert c;
    store_revocation rv;
    uint64_t gen = 99, num = 99;
    uint8_t serial[STORE_SERIAL_LEN];
    open_store(f, 0);
    for (int i = 1; i <= 6; i++) {
        struct tput *t = make_put(i, 3, 64);
        assert_int_equal(put1(f->s, t), STORE_OK);
        free(t);
    }
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_counters(r, &gen, &num), 0);
    assert_int_equal(gen, 0);
    assert_int_equal(num, 0);
    store_reader_end(r);

    assert_int_equal(revoke1(f->s, 5, 1, 1700000500, "admin", NULL), STORE_OK);
    assert_int_equal(revoke1(f->s, 2, 0, 1700000200, NULL, NULL), STORE_OK);
    assert_int_equal(revoke1(f->s, 77, 1, 1, "x", NULL), STORE_NOTFOUND);   /* unknown serial */
    assert_int_equal(revoke1(f->s, 3, 6, 1, "x", NULL), -EINVAL);           /* certificateHold */
    assert_int_equal(revoke1(f->s, 3, 11, 1, "x", NULL), -EINVAL);
    /* idempotent: the first revocation stands and is returned */
    assert_int_equal(revoke1(f->s, 5, 4, 1800000000, "later", &rv), STORE_ALREADY_REVOKED);
    assert_int_equal(rv.reason, 1);
    assert_int_equal(rv.revoked_at, 1700000500);
    assert_null(rv.who);

    assert_int_equal(store_reader_begin(r), 0);
    serial_of(5, serial);
    assert_int_equal(store_get_cert(r, serial, &c), STORE_OK);
    assert_int_equal(c.status, STORE_CERT_REVOKED);
    assert_int_equal(c.der_len, 64);                       /* the rest of the record kept */
    assert_int_equal(store_get_revocation(r, serial, &rv), STORE_OK);
    assert_int_equal(rv.reason, 1);
    assert_int_equal(rv.revoked_at, 1700000500);
    assert_int_equal(rv.invalidity, 1700000400);
    assert_int_equal(rv.who_len, 5);
    assert_memory_equal(rv.who, "admin", 5);
    serial_of(4, serial);
    assert_int_equal(store_get_cert(r, serial, &c), STORE_OK);
    assert_int_equal(c.status, STORE_CERT_VALID);
    assert_int_equal(store_get_revocation(r, serial, &rv), STORE_NOTFOUND);
    size_t n = 0;
    assert_int_equal(store_count_revoked(r, &n), 0);
    assert_int_equal(n, 2);
    int seen[1] = {0};
    assert_int_equal(store_foreach_revoked(r, rev_collect, seen), 0);
    assert_int_equal(seen[0], 2);
    assert_int_equal(store_get_counters(r, &gen, &num), 0);
    assert_int_equal(gen, 2);                              /* two new revocations */
    store_reader_end(r);
    assert_int_equal(store_get_revocation(r, serial, &rv), -EINVAL);   /* not begun */

    /* CRL numbers only go forward */
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_CRL_NUMBER;
    p.crl_number = 5;
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    p.crl_number = 5;
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, -ERANGE);
    p.crl_number = 6;
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    p.kind = 42;
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, -EINVAL);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_counters(r, &gen, &num), 0);
    assert_int_equal(num, 6);
    store_reader_end(r);
    store_reader_destroy(r);
    assert_int_equal(store_reason_ok(10), 1);
    assert_int_equal(store_reason_ok(8), 0);
    assert_string_equal(store_strerror(STORE_ALREADY_REVOKED), "certificate already revoked");
}

/* A corrupt revoked record is reported, never over-read. */
static void test_corrupt_revocation(void **state)
{
    struct fixture *f = *state;
    store_reader *r = NULL;
    store_revocation rv;
    uint8_t serial[STORE_SERIAL_LEN];
    serial_of(9, serial);
    open_store(f, 0);
    store_close(f->s);
    f->s = NULL;
    uint8_t bad[24] = {1, 1};
    bad[4] = 200;                                           /* who length beyond the value */
    raw_put(f->path, "revoked", serial, STORE_SERIAL_LEN, bad, sizeof(bad));
    open_store(f, 0);
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_revocation(r, serial, &rv), STORE_E_CORRUPT);
    store_reader_destroy(r);
}

static void test_schema(void **state)
{
    struct fixture *f = *state;
    open_store(f, 0);
    assert_int_equal(store_ping(f->s), 0);
    store_close(f->s);
    f->s = NULL;
    open_store(f, 0);           /* reopening the same schema works */
    store_close(f->s);
    f->s = NULL;

    uint8_t two[4] = { 2, 0, 0, 0 };
    raw_put(f->path, "meta", "schema", 6, two, sizeof(two));
    store *s = (store *)0x1;
    assert_int_equal(store_open(f->path, 0, &s), STORE_E_SCHEMA);
    assert_ptr_equal(s, (store *)0x1);          /* out-parameter untouched */
    raw_put(f->path, "meta", "schema", 6, "1", 1);   /* wrong width */
    assert_int_equal(store_open(f->path, 0, &s), STORE_E_SCHEMA);
    assert_string_equal(store_strerror(STORE_E_SCHEMA), "store schema version not supported");
}

static void test_open_errors(void **state)
{
    struct fixture *f = *state;
    store *s = NULL;
    char p[160];
    snprintf(p, sizeof(p), "%s/missing/deeper", f->dir);
    assert_int_equal(store_open(p, 0, &s), -ENOENT);
    assert_null(s);
    snprintf(p, sizeof(p), "%s/file", f->dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_true(store_open(p, 0, &s) < 0);    /* a file where the directory should be */
    assert_null(s);
    store_close(NULL);

    /* the directory is created when missing */
    open_store(f, 0);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(store_ping(f->s), 0);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(store_strerror(STORE_OK), "success");
    assert_string_equal(store_strerror(STORE_NOTFOUND), "not found");
    assert_string_equal(store_strerror(STORE_DUP_SERIAL), "serial already present");
    assert_string_equal(store_strerror(STORE_DUP_TXID), "transactionID already mapped");
    assert_string_equal(store_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(store_strerror(MDB_MAP_FULL), mdb_strerror(MDB_MAP_FULL));
}

/* ---- auxiliary databases: read-modify-write through STORE_PUT_UPDATE ---- */

struct upd {
    int calls;
    int verdict;            /* returned */
    const char *write;      /* value to write, or NULL */
    char seen[64];          /* the value found, "" when absent */
};

static int upd_fn(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv, size_t *nl)
{
    struct upd *u = arg;
    u->calls++;
    snprintf(u->seen, sizeof(u->seen), "%.*s", cur != NULL ? (int)cur_len : 0,
             cur != NULL ? (const char *)cur : "");
    if (u->write != NULL) {
        *nv = (const uint8_t *)u->write;
        *nl = strlen(u->write);
    }
    return u->verdict;
}

static void aux_put(store_put *p, int db, const char *key, struct upd *u)
{
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_UPDATE;
    p->aux_db = db;
    p->aux_key = key;
    p->aux_key_len = strlen(key);
    p->update = upd_fn;
    p->update_arg = u;
}

static int aux_count_cb(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *arg)
{
    (void)k; (void)kl; (void)v; (void)vl;
    (*(int *)arg)++;
    return 0;
}

static int stop_cb(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, void *arg)
{
    (void)k; (void)kl; (void)v; (void)vl; (void)arg;
    return 7;
}

static void test_aux_update(void **state)
{
    struct fixture *f = *state;
    store_reader *r = NULL;
    store_put p[2];
    const uint8_t *v = NULL;
    size_t vl = 0;

    assert_int_equal(store_open(f->path, 0, &f->s), 0);
    assert_int_equal(store_reader_create(f->s, &r), 0);

    /* absent: the function sees nothing, writes; its verdict comes back */
    struct upd a = {.verdict = 5, .write = "first"};
    aux_put(&p[0], STORE_DB_CHALLENGES, "k1", &a);
    assert_int_equal(store_put_sync(f->s, &p[0]), 0);
    assert_int_equal(p[0].result, STORE_OK);
    assert_int_equal(p[0].verdict, 5);
    assert_string_equal(a.seen, "");

    /* two updates of one key in one transaction: the second sees the first's write */
    struct upd b = {.verdict = 0, .write = "second"}, c = {.verdict = 1, .write = NULL};
    aux_put(&p[0], STORE_DB_CHALLENGES, "k1", &b);
    aux_put(&p[1], STORE_DB_CHALLENGES, "k1", &c);
    p[0].next = &p[1];
    assert_int_equal(store_put_sync(f->s, &p[0]), 0);
    assert_string_equal(b.seen, "first");
    assert_string_equal(c.seen, "second");
    assert_int_equal(p[1].verdict, 1);

    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_aux(r, STORE_DB_CHALLENGES, "k1", 2, &v, &vl), 0);
    assert_int_equal(vl, 6);
    assert_memory_equal(v, "second", 6);
    /* the dbs are separate */
    assert_int_equal(store_get_aux(r, STORE_DB_REQUESTS, "k1", 2, &v, &vl), STORE_NOTFOUND);
    assert_int_equal(store_get_aux(r, 9, "k1", 2, &v, &vl), -EINVAL);
    assert_int_equal(store_get_aux(r, STORE_DB_CHALLENGES, "", 0, &v, &vl), -EINVAL);
    store_reader_end(r);
    assert_int_equal(store_get_aux(r, STORE_DB_CHALLENGES, "k1", 2, &v, &vl), -EINVAL);

    /* bad input: -EINVAL for that put only */
    struct upd d = {.write = "x"}, e = {.write = "y"};
    aux_put(&p[0], 42, "k2", &d);
    aux_put(&p[1], STORE_DB_REQUESTS, "k2", &e);
    p[0].next = &p[1];
    assert_int_equal(store_put_sync(f->s, &p[0]), 0);
    assert_int_equal(p[0].result, -EINVAL);
    assert_int_equal(d.calls, 0);
    assert_int_equal(p[1].result, STORE_OK);
    p[0].next = NULL;
    p[0].aux_db = STORE_DB_REQUESTS;
    p[0].update = NULL;
    assert_int_equal(store_put_sync(f->s, &p[0]), 0);
    assert_int_equal(p[0].result, -EINVAL);

    int n = 0;
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_foreach_aux(r, STORE_DB_REQUESTS, aux_count_cb, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_foreach_aux(r, STORE_DB_CHALLENGES, stop_cb, NULL), 7);
    assert_int_equal(store_foreach_aux(r, -1, aux_count_cb, &n), -EINVAL);
    store_reader_end(r);
    store_reader_destroy(r);
    store_close(f->s);

    /* durable across a reopen */
    assert_int_equal(store_open(f->path, 0, &f->s), 0);
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_aux(r, STORE_DB_REQUESTS, "k2", 2, &v, &vl), 0);
    assert_memory_equal(v, "y", 1);
    store_reader_end(r);
    store_reader_destroy(r);
}

/* Through the writer thread: the done callback sees the verdict. */
static int aux_done_calls;
static void aux_done(store_put *batch, void *arg)
{
    (void)arg;
    for (store_put *p = batch; p != NULL; p = p->next)
        if (p->result == STORE_OK && p->verdict == 3)
            aux_done_calls++;
}

static void test_aux_writer(void **state)
{
    struct fixture *f = *state;
    store_put p;
    struct upd u = {.verdict = 3, .write = "w"};
    assert_int_equal(store_open(f->path, 0, &f->s), 0);
    aux_done_calls = 0;
    assert_int_equal(store_writer_start(f->s, 8, aux_done, NULL), 0);
    aux_put(&p, STORE_DB_CHALLENGES, "kw", &u);
    store_submit(f->s, &p);
    store_writer_stop(f->s);
    assert_int_equal(aux_done_calls, 1);
    assert_int_equal(u.calls, 1);
}

/* ---- conditional puts: a certificate or an insert that also consumes a token ---- */

/* Condition: the token must read "fresh"; it is then rewritten "used". */
static int once_fn(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                   size_t *nl)
{
    int *calls = arg;
    (*calls)++;
    if (cur == NULL || cur_len != 5 || memcmp(cur, "fresh", 5) != 0)
        return 9;
    *nv = (const uint8_t *)"used";
    *nl = 4;
    return 0;
}

static void guard(store_put *p, const char *token, int *calls)
{
    p->cond_db = STORE_DB_CHALLENGES;
    p->cond_key = token;
    p->cond_key_len = strlen(token);
    p->cond = once_fn;
    p->cond_arg = calls;
}

static void insert_put(store_put *p, int db, const char *key, const char *val)
{
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_INSERT;
    p->aux_db = db;
    p->aux_key = key;
    p->aux_key_len = strlen(key);
    p->aux_val = val;
    p->aux_val_len = strlen(val);
}

/* The value of an auxiliary record as text ("" when absent). */
static void aux_text(store *s, int db, const char *key, char *out, size_t cap)
{
    store_reader *r = NULL;
    const uint8_t *v = NULL;
    size_t vl = 0;
    assert_int_equal(store_reader_create(s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    int rc = store_get_aux(r, db, key, strlen(key), &v, &vl);
    snprintf(out, cap, "%.*s", rc == 0 ? (int)vl : 0, rc == 0 ? (const char *)v : "");
    store_reader_destroy(r);
}

static void test_insert_and_conditions(void **state)
{
    struct fixture *f = *state;
    store_put p, q;
    char got[64];
    int calls = 0;
    open_store(f, 0);

    insert_put(&p, STORE_DB_CHALLENGES, "tok1", "fresh");
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    insert_put(&p, STORE_DB_CHALLENGES, "tok1", "other");
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, STORE_CONFLICT);
    aux_text(f->s, STORE_DB_CHALLENGES, "tok1", got, sizeof(got));
    assert_string_equal(got, "fresh");
    insert_put(&p, STORE_DB_CHALLENGES, "tok2", "fresh");
    assert_int_equal(store_put_sync(f->s, &p), 0);
    insert_put(&p, STORE_DB_CHALLENGES, "tok3", "fresh");
    assert_int_equal(store_put_sync(f->s, &p), 0);
    insert_put(&p, STORE_DB_REQUESTS, "", "x");
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, -EINVAL);

    /* two certificates paid by one token in one batch, and one without a condition: the
     * first takes the token, the second is refused alone, the third is unaffected */
    struct tput *t1 = make_put(1, 4, 64), *t2 = make_put(2, 4, 64), *t3 = make_put(3, 4, 64);
    guard(&t1->put, "tok1", &calls);
    guard(&t2->put, "tok1", &calls);
    t1->put.next = &t2->put;
    t2->put.next = &t3->put;
    t3->put.next = NULL;
    assert_int_equal(store_put_sync(f->s, &t1->put), 0);
    assert_int_equal(t1->put.result, STORE_OK);
    assert_int_equal(t1->put.cond_verdict, 0);
    assert_int_equal(t2->put.result, STORE_CONFLICT);
    assert_int_equal(t2->put.cond_verdict, 9);
    assert_int_equal(t3->put.result, STORE_OK);
    assert_int_equal(calls, 2);
    assert_int_equal(count_of(f->s), 2);
    aux_text(f->s, STORE_DB_CHALLENGES, "tok1", got, sizeof(got));
    assert_string_equal(got, "used");

    /* refused for its own reason (serial, then transactionID, already there): the token
     * stays as it was */
    struct tput *dup = make_put(1, 4, 64);
    guard(&dup->put, "tok2", &calls);
    assert_int_equal(put1(f->s, dup), STORE_DUP_SERIAL);
    struct tput *dtx = make_put(4, 4, 64);
    snprintf(dtx->txid, sizeof(dtx->txid), "txid-%08d", 3);
    guard(&dtx->put, "tok2", &calls);
    assert_int_equal(put1(f->s, dtx), STORE_DUP_TXID);
    aux_text(f->s, STORE_DB_CHALLENGES, "tok2", got, sizeof(got));
    assert_string_equal(got, "fresh");

    /* an insert paid by a token: both, or (the record exists) neither */
    insert_put(&p, STORE_DB_REQUESTS, "req1", "pending");
    guard(&p, "tok2", &calls);
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, STORE_OK);
    aux_text(f->s, STORE_DB_CHALLENGES, "tok2", got, sizeof(got));
    assert_string_equal(got, "used");
    insert_put(&q, STORE_DB_REQUESTS, "req1", "second");
    guard(&q, "tok3", &calls);
    assert_int_equal(store_put_sync(f->s, &q), 0);
    assert_int_equal(q.result, STORE_CONFLICT);
    assert_int_equal(q.cond_verdict, 0);
    aux_text(f->s, STORE_DB_CHALLENGES, "tok3", got, sizeof(got));
    assert_string_equal(got, "fresh");
    aux_text(f->s, STORE_DB_REQUESTS, "req1", got, sizeof(got));
    assert_string_equal(got, "pending");

    /* a condition on another kind of put, or with a bad key: -EINVAL, nothing run */
    int before = calls;
    struct upd u = {.write = "z"};
    aux_put(&p, STORE_DB_REQUESTS, "req2", &u);
    guard(&p, "tok3", &calls);
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, -EINVAL);
    insert_put(&p, STORE_DB_REQUESTS, "req2", "x");
    guard(&p, "", &calls);
    assert_int_equal(store_put_sync(f->s, &p), 0);
    assert_int_equal(p.result, -EINVAL);
    assert_int_equal(calls, before);
    assert_int_equal(u.calls, 0);
    assert_string_equal(store_strerror(STORE_CONFLICT),
                        "refused by its condition, or the record exists");
    free(t1);
    free(t2);
    free(t3);
    free(dup);
    free(dtx);
}

/* A record without a profile (as written before records named theirs) reads back without
 * one: the enrollment layer counts it as the default profile (engine/policy/profile.h). */
static void test_record_without_profile(void **state)
{
    struct fixture *f = *state;
    store_reader *r = NULL;
    store_cert c;
    open_store(f, 0);
    struct tput *t = make_put(7, 4, 80);
    t->put.cert.profile = NULL;
    t->put.cert.profile_len = 0;
    assert_int_equal(put1(f->s, t), STORE_OK);
    assert_int_equal(store_reader_create(f->s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    assert_int_equal(store_get_cert(r, t->put.cert.serial, &c), 0);
    assert_cert_eq(&c, &t->put.cert);
    assert_int_equal(c.profile_len, 0);
    store_reader_destroy(r);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_and_conditions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_without_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dup_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dup_txid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dups_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_after_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grown_elsewhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test_setup_teardown(test_aux_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aux_writer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
