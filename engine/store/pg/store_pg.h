/* store_pg: the PostgreSQL backend of engine/store/store.h (libpq), for several scepd nodes
 * sharing one set of records. Not a public API: store.c, store_read.c and store_put.c hand a
 * call here when the store was opened with a location "postgresql:CONNINFO" (store_open's
 * path argument; [store] backend = postgresql, conninfo = ... in the configuration). Callers
 * keep seeing store.h only.
 *
 * Where store.h's LMDB wording does not fit, the rules are:
 *   - A reader is one PostgreSQL connection of its own (per worker), connected at its first
 *     begin, not a snapshot: every getter reads the latest committed state (READ COMMITTED).
 *     Results stay valid until store_reader_end (the reader keeps the PGresults).
 *   - The writer thread (store_writer.c, shared with LMDB) commits each batch in one
 *     transaction with synchronous_commit = on; done runs after COMMIT returned.
 *   - Conflicts between nodes are settled by the database: serial primary key, txid unique,
 *     SELECT ... FOR UPDATE on a challenge or request record, a conditional UPDATE of the CRL
 *     number. A batch that loses a deadlock or serialization race is rolled back and retried
 *     whole (update callbacks may run again, as store.h allows).
 *   - A lost connection fails the call (-ENOTCONN; the batch's puts get it, the server answers
 *     503) and is re-established on a later call with exponential backoff (100 ms .. 2 s).
 *
 * Return values follow store.h: 0 / STORE_* outcome, or a negative -errno (-ENOTCONN: no
 * connection, -EIO: the server refused a statement, -EAGAIN: a batch kept losing races,
 * -ENOTSUP: built without libpq). */
#ifndef SCEPD_STORE_PG_H
#define SCEPD_STORE_PG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/store/store.h"

#define STORE_PG_PREFIX "postgresql:"
#define STORE_PG_SCHEMA 1       /* scepd_meta "schema" this code reads and writes */

typedef struct store_pg store_pg;
typedef struct store_pg_reader store_pg_reader;

/* The conninfo of a store location "postgresql:CONNINFO", or NULL for any other location
 * (an LMDB directory). Points into location. */
const char *store_pg_conninfo(const char *location);

/* Connects, creates the schema in an empty database (as store_open does for LMDB) and checks
 * its version: 0, STORE_E_SCHEMA, -ENOTCONN or < 0. conninfo is copied. */
int  store_pg_open(const char *conninfo, store_pg **out);
void store_pg_close(store_pg *pg);                  /* accepts NULL */
int  store_pg_ping(store_pg *pg);                   /* any thread: SELECT 1 */
/* Applies a list of puts in one transaction (the writer thread or store_put_sync); sets
 * every ->result; returns 0 or the batch error. */
int  store_pg_write_batch(store_pg *pg, store_put *list);

/* Schema management (scepctl store migrate): brings the database to STORE_PG_SCHEMA.
 * *from gets the version found (0: empty database). 0, STORE_E_SCHEMA (newer than this
 * code) or < 0. */
int  store_pg_migrate(const char *conninfo, int *from);

/* ---- readers: the same contracts as store.h's functions of the same name ---- */
int  store_pg_reader_create(store_pg *pg, store_pg_reader **out);
void store_pg_reader_destroy(store_pg_reader *r);
int  store_pg_reader_begin(store_pg_reader *r);
void store_pg_reader_end(store_pg_reader *r);
int  store_pg_get_cert(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                       store_cert *out);
int  store_pg_get_txid(store_pg_reader *r, const char *txid, size_t txid_len,
                       uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN]);
int  store_pg_foreach_cert(store_pg_reader *r, int (*cb)(const store_cert *c, void *arg),
                           void *arg);
int  store_pg_foreach_subject(store_pg_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                              int (*cb)(const store_cert *c, void *arg), void *arg);
int  store_pg_count(store_pg_reader *r, size_t *n);
int  store_pg_get_revocation(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                             store_revocation *out);
int  store_pg_foreach_revoked(store_pg_reader *r,
                              int (*cb)(const store_revocation *rv, void *arg), void *arg);
int  store_pg_count_revoked(store_pg_reader *r, size_t *n);
int  store_pg_get_counters(store_pg_reader *r, uint64_t *rev_gen, uint64_t *crl_number);
int  store_pg_get_aux(store_pg_reader *r, int db, const void *key, size_t key_len,
                      const uint8_t **val, size_t *val_len);
int  store_pg_foreach_aux(store_pg_reader *r, int db,
                          int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                    size_t val_len, void *arg),
                          void *arg);

#endif
