/* store: the LMDB environment (open, schema, close), the resize gate every transaction of the
 * process passes, and error texts. Record layout, durability and the resize protocol are
 * described in docs/store.md; the other pieces are listed in store_internal.h. */
#include "engine/store/store.h"
#include "engine/store/store_internal.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_SCHEMA        1u
#define STORE_DEFAULT_MAP   ((size_t)64 << 20)
#define STORE_MAX_READERS   1024

/* ---- resize gate ---- */

void store_gate_enter(store *s)
{
    pthread_mutex_lock(&s->gate_mu);
    while (s->gate_resizing)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    s->gate_active++;
    pthread_mutex_unlock(&s->gate_mu);
}

void store_gate_leave(store *s)
{
    pthread_mutex_lock(&s->gate_mu);
    s->gate_active--;
    if (s->gate_active == 0 && s->gate_resizing)
        pthread_cond_broadcast(&s->gate_cv);
    pthread_mutex_unlock(&s->gate_mu);
}

/* Sets the map size with no transaction active in this process (the caller holds none).
 * size 0 adopts a size grown by another process; otherwise the map is doubled from
 * the size seen when the caller failed (seen), unless someone already grew it. */
int store_gate_resize(store *s, size_t seen, bool adopt)
{
    int rc;
    pthread_mutex_lock(&s->gate_mu);
    while (s->gate_resizing)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    s->gate_resizing = true;
    while (s->gate_active > 0)
        pthread_cond_wait(&s->gate_cv, &s->gate_mu);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    if (adopt) {
        rc = mdb_env_set_mapsize(s->env, 0);
    } else if (info.me_mapsize > seen) {
        rc = 0;
    } else if (info.me_mapsize > SIZE_MAX / 2) {
        rc = MDB_MAP_FULL;
    } else {
        rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
    }
    s->gate_resizing = false;
    pthread_cond_broadcast(&s->gate_cv);
    pthread_mutex_unlock(&s->gate_mu);
    return rc > 0 ? -rc : rc;
}

size_t store_map_size(store *s)
{
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    return info.me_mapsize;
}

/* Begins a transaction inside the gate; adopts a map grown by another process. On success the
 * caller owns one gate share and must store_gate_leave after ending the transaction. */
int store_txn_begin(store *s, unsigned flags, MDB_txn **txn)
{
    int rc = 0;
    for (int i = 0; i < STORE_MAX_RETRIES; i++) {
        store_gate_enter(s);
        rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc == 0)
            return 0;
        store_gate_leave(s);
        if (rc != MDB_MAP_RESIZED)
            break;
        rc = store_gate_resize(s, 0, true);
        if (rc != 0)
            break;
    }
    return rc > 0 ? -rc : rc;
}

/* ---- environment ---- */

static int open_schema(store *s)
{
    MDB_txn *txn = NULL;
    int rc = store_txn_begin(s, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "certs", MDB_CREATE, &s->certs)) != 0
        || (rc = mdb_dbi_open(txn, "txid", MDB_CREATE, &s->txid)) != 0
        || (rc = mdb_dbi_open(txn, "subject", MDB_CREATE | MDB_DUPSORT, &s->subject)) != 0
        || (rc = mdb_dbi_open(txn, "revoked", MDB_CREATE, &s->revoked)) != 0
        || (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) != 0
        || (rc = mdb_dbi_open(txn, "challenges", MDB_CREATE, &s->aux[STORE_DB_CHALLENGES])) != 0
        || (rc = mdb_dbi_open(txn, "requests", MDB_CREATE, &s->aux[STORE_DB_REQUESTS])) != 0)
        goto out;
    MDB_val k = { 6, "schema" }, v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0) {
        rc = (v.mv_size == 4 && get_u32(v.mv_data) == STORE_SCHEMA) ? 0 : STORE_E_SCHEMA;
        goto out;
    }
    if (rc != MDB_NOTFOUND)
        goto out;
    uint8_t buf[4];
    put_u32(buf, STORE_SCHEMA);
    v.mv_size = sizeof(buf);
    v.mv_data = buf;
    rc = mdb_put(txn, s->meta, &k, &v, 0);
out:
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    store_gate_leave(s);
    return rc > 0 ? -rc : rc;
}

int store_open(const char *path, size_t map_size_bytes, store **out)
{
    int rc;
    store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->gate_mu, NULL);
    pthread_cond_init(&s->gate_cv, NULL);
    pthread_mutex_init(&s->q_mu, NULL);
    pthread_cond_init(&s->q_cv, NULL);

    if (store_pg_conninfo(path) != NULL) {
        rc = store_pg_open(store_pg_conninfo(path), &s->pg);
        goto out;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    if ((rc = mdb_env_create(&s->env)) != 0)
        goto out;
    if ((rc = mdb_env_set_maxdbs(s->env, 8)) != 0
        || (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) != 0
        || (rc = mdb_env_set_mapsize(s->env, map_size_bytes ? map_size_bytes
                                                            : STORE_DEFAULT_MAP)) != 0)
        goto out;
    /* MDB_NOTLS: a reader's slot belongs to its store_reader, not to the thread, so readers
     * can move between pooled threads. Default sync: a returned commit is on disk. */
    if ((rc = mdb_env_open(s->env, path, MDB_NOTLS, 0600)) != 0)
        goto out;
#ifdef SCEPD_MUTANT_NOSYNC   /* test-only breakage, docs/testing-mutants.md */
    mdb_env_set_flags(s->env, MDB_NOSYNC, 1);
#endif
    s->max_key = (unsigned)mdb_env_get_maxkeysize(s->env);
    rc = open_schema(s);
out:
    if (rc > 0)
        rc = -rc;
    if (rc == 0) {
        *out = s;
    } else {
        store_close(s);
    }
    return rc;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    store_writer_stop(s);
    store_pg_close(s->pg);
    if (s->env != NULL)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->gate_mu);
    pthread_cond_destroy(&s->gate_cv);
    pthread_mutex_destroy(&s->q_mu);
    pthread_cond_destroy(&s->q_cv);
    free(s);
}

int store_ping(store *s)
{
    if (s->pg != NULL)
        return store_pg_ping(s->pg);
    MDB_txn *txn = NULL;
    int rc = store_txn_begin(s, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    MDB_stat st;
    rc = mdb_stat(txn, s->meta, &st);
    mdb_txn_abort(txn);
    store_gate_leave(s);
    return rc > 0 ? -rc : rc;
}

const char *store_strerror(int rc)
{
    switch (rc) {
    case STORE_OK:          return "success";
    case STORE_NOTFOUND:    return "not found";
    case STORE_DUP_SERIAL:  return "serial already present";
    case STORE_DUP_TXID:    return "transactionID already mapped";
    case STORE_ALREADY_REVOKED: return "certificate already revoked";
    case STORE_CONFLICT:    return "refused by its condition, or the record exists";
    case STORE_E_CORRUPT:   return "corrupt store record";
    case STORE_E_SCHEMA:    return "store schema version not supported";
    default:                break;
    }
    if (rc < 0 && rc > -4096)
        return strerror(-rc);
    return mdb_strerror(rc);
}
