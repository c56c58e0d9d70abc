/* store_internal: what the files of the store share. Not a public API: callers see store.h
 * only, and never an LMDB type.
 *
 *   store.c         environment, schema, resize gate, error texts
 *   store_codec.c   certificate-record and revocation-entry byte layouts
 *   store_read.c    reader snapshots, lookups, walks, counts
 *   store_put.c     applying a list of puts in one write transaction (map growth, retry)
 *   store_writer.c  the writer thread and its queue (group commit)
 *
 * Return conventions are store.h's: 0 / STORE_* outcome (> 0), or -errno / -MDB code (< 0).
 */
#ifndef SCEPD_STORE_INTERNAL_H
#define SCEPD_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/store/store.h"
#include "engine/store/pg/store_pg.h"

#define STORE_MAX_RETRIES   48      /* map doublings/resizes per batch before giving up */

/* certs value: fixed little-endian header, then subject, txid, profile, DER. */
#define REC_VERSION     1
#define REC_OFF_STATUS  1
#define REC_OFF_NB      4
#define REC_OFF_NA      12
#define REC_OFF_ISSUED  20
#define REC_OFF_KEYH    28
#define REC_OFF_SUBJH   (REC_OFF_KEYH + STORE_HASH_LEN)
#define REC_OFF_LENS    (REC_OFF_SUBJH + STORE_HASH_LEN)
#define REC_HDR_LEN     (REC_OFF_LENS + 4 * 4)
#define TXID_VAL_LEN    (STORE_SERIAL_LEN + STORE_HASH_LEN)

/* revoked value: version, reason, 2 reserved, who length (u32), revoked_at, invalidity, who. */
#define REV_VERSION     1
#define REV_OFF_WHOLEN  4
#define REV_OFF_AT      8
#define REV_OFF_INV     16
#define REV_HDR_LEN     24
#define REV_WHO_MAX     255

struct store {
    store_pg *pg;               /* set: the PostgreSQL backend serves every call (env NULL) */
    MDB_env *env;
    MDB_dbi certs, txid, subject, revoked, meta;
    MDB_dbi aux[STORE_DB__COUNT];
    unsigned max_key;
    /* The writing thread only (store_put.c, zero_ahead: the writer, or store_put_sync's
     * caller while there is none): how far the data file is known to be written, so that
     * commits overwrite instead of growing it (0: not known yet). */
    off_t zeroed_end;

    /* Resize gate: every transaction of this process (read or write) is "active" between
     * store_gate_enter and store_gate_leave; mdb_env_set_mapsize runs only with none active. */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    unsigned gate_active;
    bool gate_resizing;

    /* Writer queue. */
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    store_put *q_head, *q_tail;
    bool q_stop;
    bool writer_running;
    pthread_t writer;
    int batch_max;
    store_done_fn done;
    void *done_arg;
};

struct store_reader {
    store_pg_reader *pg;        /* the PostgreSQL backend's reader, when s->pg is set */
    store *s;
    MDB_txn *txn;
    bool active;
};

/* ---- little-endian helpers (record and meta values) ---- */

static inline void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void put_i64(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

static inline int64_t get_i64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
        u = u << 8 | p[i];
    return (int64_t)u;
}

/* ---- resize gate (store.c) ---- */

/* Every transaction of this process holds one gate share from begin to end. */
void store_gate_enter(store *s);
void store_gate_leave(store *s);
/* Sets the map size with no transaction active in this process (the caller holds no share).
 * adopt: take the size another process grew the map to; otherwise double the map from seen
 * (the size when the caller failed), unless someone already grew it. */
int store_gate_resize(store *s, size_t seen, bool adopt);
/* The current map size; stable while the caller holds a gate share. */
size_t store_map_size(store *s);
/* Begins a transaction inside the gate; adopts a map grown by another process. On success the
 * caller owns one gate share and must store_gate_leave after ending the transaction. */
int store_txn_begin(store *s, unsigned flags, MDB_txn **txn);

/* ---- record codecs (store_codec.c) ---- */

/* Decodes a certs entry; c's pointers point into val (valid while the transaction lives).
 * STORE_E_CORRUPT if the layout does not hold. */
int store_cert_decode(const MDB_val *key, const MDB_val *val, store_cert *c);
/* Encoded size of c, and its encoding into p (store_cert_len bytes). */
size_t store_cert_len(const store_cert *c);
void store_cert_encode(const store_cert *c, uint8_t *p);
/* c may be encoded: known status, DER present, every length in range. */
bool store_cert_valid(const store *s, const store_cert *c);
/* Decodes a revoked entry; rv->who points into val. STORE_E_CORRUPT if it does not hold. */
int store_rev_decode(const MDB_val *key, const MDB_val *val, store_revocation *rv);
/* Encodes rv's value into out (REV_HDR_LEN + REV_WHO_MAX bytes); returns its length.
 * rv->who_len must be <= REV_WHO_MAX. */
size_t store_rev_encode(const store_revocation *rv, uint8_t *out);

/* ---- lookups inside a transaction (store_read.c) ---- */

/* The serial and key hash a transactionID maps to: 0, STORE_NOTFOUND, STORE_E_CORRUPT or < 0. */
int store_txid_in(store *s, MDB_txn *txn, const char *txid, size_t txid_len, uint8_t *serial,
                  uint8_t *key_hash);
/* The revocation entry of a serial: 0, STORE_NOTFOUND, STORE_E_CORRUPT or < 0. */
int store_rev_in(store *s, MDB_txn *txn, const uint8_t *serial, store_revocation *out);
/* A meta u64 counter (absent: 0). */
int store_counter_get(store *s, MDB_txn *txn, const char *name, uint64_t *out);
/* An auxiliary database index and key store_get_aux and STORE_PUT_UPDATE accept. */
bool store_aux_ok(int db, const void *key, size_t key_len);

/* ---- writing (store_put.c) ---- */

/* Writes a list in one transaction on the calling thread; grows the map and retries the whole
 * list on MDB_MAP_FULL. Returns 0 or the batch error (also stored in every ->result). */
int store_write_batch(store *s, store_put *list);

#endif
