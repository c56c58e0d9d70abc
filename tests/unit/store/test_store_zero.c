/* Tests for the store's zeroed tail (engine/store/store_put.c, zero_ahead): the writer keeps
 * the data file written past LMDB's last page so that commits overwrite instead of growing
 * it. What must hold: the file is extended ahead of the used pages (and never past the map),
 * what is committed reads back after a reopen, and the tail is only zeros. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/store/store.h"

#define NCERTS 600

static char g_dir[64];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/scepd-zero.XXXXXX");
    return mkdtemp(g_dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static uint8_t g_der[1200];

static void fill_cert(store_put *p, unsigned i, char *txid, size_t txid_cap)
{
    memset(p, 0, sizeof(*p));
    p->kind = STORE_PUT_CERT;
    store_cert *c = &p->cert;
    for (int k = 0; k < STORE_SERIAL_LEN; k++)
        c->serial[k] = (uint8_t)((i * 2654435761u) >> (k % 4 * 8)) ^ (uint8_t)k;
    c->serial[0] = (uint8_t)(i >> 8);
    c->serial[1] = (uint8_t)i;
    memcpy(c->key_hash, c->serial, STORE_SERIAL_LEN);
    memcpy(c->subject_hash, c->serial, STORE_SERIAL_LEN);
    c->status = STORE_CERT_VALID;
    c->not_before = 1;
    c->not_after = 2;
    c->issued_at = 1;
    snprintf(txid, txid_cap, "zero-tx-%u", i);
    c->txid = txid;
    c->txid_len = strlen(txid);
    c->subject = "CN=zero";
    c->subject_len = 7;
    c->profile = "default";
    c->profile_len = 7;
    c->der = g_der;
    c->der_len = sizeof(g_der);
}

/* LMDB's own view of the file: the end of its last page, and the map size. */
static void lmdb_used(const char *path, off_t *used, size_t *mapsize)
{
    MDB_env *env = NULL;
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_env_info(env, &info), 0);
    assert_int_equal(mdb_env_stat(env, &st), 0);
    *used = (off_t)(info.me_last_pgno + 1) * (off_t)st.ms_psize;
    *mapsize = info.me_mapsize;
    mdb_env_close(env);
}

static off_t file_size(const char *path)
{
    char data[160];
    struct stat st;
    snprintf(data, sizeof(data), "%s/data.mdb", path);
    assert_int_equal(stat(data, &st), 0);
    return st.st_size;
}

/* Every byte of the data file from off to its end is zero. */
static int zeros_from(const char *path, off_t off)
{
    char data[160];
    snprintf(data, sizeof(data), "%s/data.mdb", path);
    FILE *f = fopen(data, "rb");
    assert_non_null(f);
    assert_int_equal(fseeko(f, off, SEEK_SET), 0);
    int c, ok = 1;
    while ((c = fgetc(f)) != EOF)
        if (c != 0)
            ok = 0;
    fclose(f);
    return ok;
}

/* Commits in batches of two; the map starts small so that it grows (the zeroed tail must
 * follow the map, never pass it). */
static void test_tail_zeroed_and_data_kept(void **state)
{
    (void)state;
    char path[96];
    snprintf(path, sizeof(path), "%s/env", g_dir);
    for (size_t i = 0; i < sizeof(g_der); i++)
        g_der[i] = (uint8_t)(i * 31 + 7);
    store *s = NULL;
    assert_int_equal(store_open(path, 256u << 10, &s), 0);
    static store_put puts[NCERTS];
    static char txids[NCERTS][32];
    for (unsigned i = 0; i < NCERTS; i += 2) {
        fill_cert(&puts[i], i, txids[i], sizeof(txids[i]));
        fill_cert(&puts[i + 1], i + 1, txids[i + 1], sizeof(txids[i + 1]));
        puts[i].next = &puts[i + 1];
        assert_int_equal(store_put_sync(s, &puts[i]), 0);
        assert_int_equal(puts[i].result, STORE_OK);
        assert_int_equal(puts[i + 1].result, STORE_OK);
    }
    store_close(s);

    off_t used = 0;
    size_t mapsize = 0;
    lmdb_used(path, &used, &mapsize);
    off_t size = file_size(path);
    assert_true(size > used);                     /* written ahead of the last page */
    assert_true(size <= (off_t)mapsize);          /* never past the map */
    assert_true(zeros_from(path, used));          /* the tail is zeros */

    /* Reopened, every certificate reads back. */
    assert_int_equal(store_open(path, 0, &s), 0);
    store_reader *r = NULL;
    assert_int_equal(store_reader_create(s, &r), 0);
    assert_int_equal(store_reader_begin(r), 0);
    for (unsigned i = 0; i < NCERTS; i++) {
        store_cert c;
        assert_int_equal(store_get_cert(r, puts[i].cert.serial, &c), 0);
        assert_int_equal(c.der_len, sizeof(g_der));
        assert_memory_equal(c.der, g_der, sizeof(g_der));
    }
    store_reader_destroy(r);
    /* More commits after the reopen go on from the file as it is. */
    static store_put more[2];
    static char mtx[2][32];
    fill_cert(&more[0], NCERTS, mtx[0], sizeof(mtx[0]));
    fill_cert(&more[1], NCERTS + 1, mtx[1], sizeof(mtx[1]));
    more[0].next = &more[1];
    assert_int_equal(store_put_sync(s, &more[0]), 0);
    store_close(s);
    lmdb_used(path, &used, &mapsize);
    assert_true(file_size(path) <= (off_t)mapsize);
    assert_true(zeros_from(path, used));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail_zeroed_and_data_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
