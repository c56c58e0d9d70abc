/* store_pg without libpq: a "postgresql:" location is recognised and refused (ENOTSUP), so
 * the message says what is missing instead of trying to open it as an LMDB directory. No
 * reader or batch can exist, as no store_pg is ever returned. */
#include "engine/store/pg/store_pg.h"

#include <errno.h>
#include <string.h>

const char *store_pg_conninfo(const char *location)
{
    size_t n = strlen(STORE_PG_PREFIX);
    return location != NULL && strncmp(location, STORE_PG_PREFIX, n) == 0 ? location + n : NULL;
}

int store_pg_open(const char *conninfo, store_pg **out) { return -ENOTSUP; }
void store_pg_close(store_pg *pg) { }
int store_pg_ping(store_pg *pg) { return -ENOTSUP; }
int store_pg_write_batch(store_pg *pg, store_put *list) { return -ENOTSUP; }
int store_pg_migrate(const char *conninfo, int *from) { return -ENOTSUP; }
int store_pg_reader_create(store_pg *pg, store_pg_reader **out) { return -ENOTSUP; }
void store_pg_reader_destroy(store_pg_reader *r) { }
int store_pg_reader_begin(store_pg_reader *r) { return -ENOTSUP; }
void store_pg_reader_end(store_pg_reader *r) { }
int store_pg_get_cert(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                      store_cert *out) { return -ENOTSUP; }
int store_pg_get_txid(store_pg_reader *r, const char *txid, size_t txid_len,
                      uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN])
{ return -ENOTSUP; }
int store_pg_foreach_cert(store_pg_reader *r, int (*cb)(const store_cert *c, void *arg),
                          void *arg) { return -ENOTSUP; }
int store_pg_foreach_subject(store_pg_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                             int (*cb)(const store_cert *c, void *arg), void *arg)
{ return -ENOTSUP; }
int store_pg_count(store_pg_reader *r, size_t *n) { return -ENOTSUP; }
int store_pg_get_revocation(store_pg_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                            store_revocation *out) { return -ENOTSUP; }
int store_pg_foreach_revoked(store_pg_reader *r,
                             int (*cb)(const store_revocation *rv, void *arg), void *arg)
{ return -ENOTSUP; }
int store_pg_count_revoked(store_pg_reader *r, size_t *n) { return -ENOTSUP; }
int store_pg_get_counters(store_pg_reader *r, uint64_t *rev_gen, uint64_t *crl_number)
{ return -ENOTSUP; }
int store_pg_get_aux(store_pg_reader *r, int db, const void *key, size_t key_len,
                     const uint8_t **val, size_t *val_len) { return -ENOTSUP; }
int store_pg_foreach_aux(store_pg_reader *r, int db,
                         int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                   size_t val_len, void *arg),
                         void *arg) { return -ENOTSUP; }

/* store.h calls implemented by the backend: without libpq no store has a connection. */
void store_set_event_cb(store *s, store_event_fn fn, void *arg) { (void)s; (void)fn; (void)arg; }
int  store_crl_lock(store_reader *r) { (void)r; return 0; }
void store_crl_unlock(store_reader *r) { (void)r; }
