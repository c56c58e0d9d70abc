/* store: issued certificates, their indexes and (later) revocation/CRL state, in LMDB.
 *
 * One environment (a directory), named databases:
 *   certs    serial(16)            -> record (status, times, key hash, subject, txid, DER)
 *   txid     transactionID bytes   -> serial(16) + key hash(32)
 *   subject  SHA-256(subject DER)  -> serial(16)        (MDB_DUPSORT: every cert of a subject)
 *   revoked  serial(16)            -> time, reason, invalidity date, who
 *   meta     name                  -> value             ("schema" = 1, "rev_gen", "crl_number")
 *   challenges  SHA-256/HMAC of a one-time challenge -> its record (engine/policy/challenge.h)
 *   requests    transactionID      -> a request waiting for manual approval (engine/enroll/enroll.h)
 * The last two are opaque to the store: it keeps bytes, the owners of the formats read and
 * update them through store_get_aux / STORE_PUT_UPDATE. They were added without a schema
 * bump: store_open creates them in an older environment (maxdbs leaves room), and an older
 * scepd never opens them.
 *
 * Exactly one thread writes: the writer started by store_writer_start() (or, when no writer
 * runs, a caller of store_put_sync(), e.g. scepctl). It commits every queued put of a batch in
 * one write transaction (group commit, synchronous: mdb_txn_commit returned == durable) and
 * then hands the whole batch to the done callback. Readers are any threads, each with its own
 * store_reader (environment opened with MDB_NOTLS). The map grows on MDB_MAP_FULL.
 *
 * Return convention: 0 success, STORE_* positive outcomes, negative -errno / -MDB error.
 */
#ifndef SCEPD_STORE_H
#define SCEPD_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_SERIAL_LEN 16
#define STORE_HASH_LEN   32
/* The Retry-After (seconds) of a 503 answered because the store did not answer: the longest
 * reconnect backoff of a lost database connection (store_pg.h), so the retry finds it back. */
#define STORE_RETRY_AFTER_S 2

enum store_outcome {
    STORE_OK = 0,
    STORE_NOTFOUND = 1,     /* lookup found nothing                                         */
    STORE_DUP_SERIAL = 2,   /* put: serial already present, nothing written for this put    */
    STORE_DUP_TXID = 3,     /* put: txid already mapped; existing serial/key hash returned  */
    STORE_ALREADY_REVOKED = 4, /* revoke: the certificate was revoked before; the first
                                  revocation is kept and returned in the put's rev       */
    STORE_CONFLICT = 5,     /* put: its condition refused it (cond_verdict), or the record
                               a STORE_PUT_INSERT adds exists; nothing written for this put */
};

/* Store-specific errors, outside both the -errno range and LMDB's MDB_* range. */
enum store_error {
    STORE_E_CORRUPT = -32000,   /* a record or index entry fails its length/format checks  */
    STORE_E_SCHEMA = -32001,    /* store_open: environment has another "schema" version    */
};

enum store_status { STORE_CERT_VALID = 0, STORE_CERT_REVOKED = 1 };

typedef struct store store;
typedef struct store_reader store_reader;

/* A certificate record. In results from a reader, every pointer points into the LMDB map:
 * valid until store_reader_end() on that reader; do not free. */
typedef struct store_cert {
    uint8_t  serial[STORE_SERIAL_LEN];
    int      status;                    /* enum store_status */
    int64_t  not_before, not_after;     /* seconds since the epoch */
    int64_t  issued_at;
    uint8_t  key_hash[STORE_HASH_LEN];  /* SHA-256 of the certificate's SubjectPublicKeyInfo DER */
    uint8_t  subject_hash[STORE_HASH_LEN]; /* SHA-256 of the subject Name DER */
    const char *subject;  size_t subject_len;  /* one-line text form, for listings */
    const char *txid;     size_t txid_len;     /* may be empty (scepctl-issued certs) */
    const char *profile;  size_t profile_len;
    const uint8_t *der;   size_t der_len;      /* the certificate */
} store_cert;

/* Opens (creating if needed) the environment in directory path (created if missing, one
 * level). map_size is the initial map size in bytes (0: 64 MiB). Returns 0, STORE_E_SCHEMA
 * when the environment was written by another schema version, or a negative error.
 * Open an environment at most once per process (an LMDB rule). */
int store_open(const char *path, size_t map_size, store **out);
/* Stops the writer if running, closes the environment. Accepts NULL. */
void store_close(store *s);

/* ---- reading (any thread, one reader per thread) ----
 * A reader owns an LMDB reader slot from its first begin until destroy; destroy every reader
 * before store_close. Between begin and end the reader holds a share of the resize gate, so
 * a map resize (writer, MDB_MAP_FULL) waits until end: keep snapshots short, never hold one
 * while waiting for the writer, and never hold two on one thread. begin on an open reader
 * ends it first. Getters on a reader that is not begun return -EINVAL.
 * Getters return 0, STORE_NOTFOUND, STORE_E_CORRUPT (record fails its checks) or < 0. */
int  store_reader_create(store *s, store_reader **out);
void store_reader_destroy(store_reader *r);      /* accepts NULL; ends an open read */
int  store_reader_begin(store_reader *r);        /* starts (renews) a read snapshot */
void store_reader_end(store_reader *r);          /* ends it (reset); results become invalid */

int store_get_cert(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN], store_cert *out);
int store_get_txid(store_reader *r, const char *txid, size_t txid_len,
                   uint8_t serial[STORE_SERIAL_LEN], uint8_t key_hash[STORE_HASH_LEN]);
/* Calls cb for every certificate in serial order; stops early when cb returns non-zero
 * (that value is returned). */
int store_foreach_cert(store_reader *r, int (*cb)(const store_cert *c, void *arg), void *arg);
/* Every certificate of a subject, newest first is not guaranteed: serial order. */
int store_foreach_subject(store_reader *r, const uint8_t subject_hash[STORE_HASH_LEN],
                          int (*cb)(const store_cert *c, void *arg), void *arg);
int store_count(store_reader *r, size_t *n);

/* ---- revocations ----
 * revoked: serial(16) -> revocation record (docs/store.md). Revoking also sets the
 * certificate record's status to STORE_CERT_REVOKED and bumps meta "rev_gen" in the same
 * transaction, so CRL/OCSP caches can tell whether anything changed. */

/* RFC 5280 CRLReason values accepted for a revocation (certificateHold and removeFromCRL
 * are not: a revocation here is final). */
#define STORE_REASON_MAX 10

typedef struct store_revocation {
    uint8_t  serial[STORE_SERIAL_LEN];
    int      reason;          /* RFC 5280 CRLReason: 0..10 except 6 and 7 and 8          */
    int64_t  revoked_at;      /* seconds since the epoch                                  */
    int64_t  invalidity;      /* invalidityDate, seconds; 0: none given                   */
    const char *who;  size_t who_len;   /* who revoked (free text, <= 255 bytes). In reader
                                           results: points into the map (see store_cert) */
} store_revocation;

/* 1 if reason is a CRLReason a revocation may carry. */
int store_reason_ok(int reason);

int store_get_revocation(store_reader *r, const uint8_t serial[STORE_SERIAL_LEN],
                         store_revocation *out);
/* Every revocation in serial order; stops early when cb returns non-zero (returned). */
int store_foreach_revoked(store_reader *r, int (*cb)(const store_revocation *rv, void *arg),
                          void *arg);
int store_count_revoked(store_reader *r, size_t *n);
/* meta counters: "rev_gen" (incremented by every new revocation) and "crl_number" (the last
 * CRL number committed). Both 0 when never written. */
int store_get_counters(store_reader *r, uint64_t *rev_gen, uint64_t *crl_number);

/* ---- auxiliary databases (records whose format the store does not know) ---- */
enum store_aux_db { STORE_DB_CHALLENGES = 0, STORE_DB_REQUESTS = 1, STORE_DB__COUNT };
#define STORE_AUX_KEY_MAX 256   /* bytes of an auxiliary key (below LMDB's 511) */

/* The value stored under key in db; *val points into the map (valid until
 * store_reader_end). 0, STORE_NOTFOUND, -EINVAL (bad db or key) or < 0. */
int store_get_aux(store_reader *r, int db, const void *key, size_t key_len,
                  const uint8_t **val, size_t *val_len);
/* Every record of db in key order; stops early when cb returns non-zero (returned). */
int store_foreach_aux(store_reader *r, int db,
                      int (*cb)(const uint8_t *key, size_t key_len, const uint8_t *val,
                                size_t val_len, void *arg),
                      void *arg);

/* Read-modify-write of one auxiliary record inside the batch's write transaction (the writer
 * thread, or store_put_sync). cur is the stored value (NULL, 0 when absent; valid only during
 * the call). The function returns a verdict of its own (stored in put->verdict, not read by
 * the store) and sets *new_val (memory it owns, valid until done returns) to write a new
 * value, or leaves it NULL to write nothing. It may run more than once for one put (a batch
 * retried after a map resize), so it must derive everything from cur. */
typedef int (*store_update_fn)(const uint8_t *cur, size_t cur_len, void *arg,
                               const uint8_t **new_val, size_t *new_len);

/* ---- writing ---- */
enum store_put_kind {
    STORE_PUT_CERT = 0,         /* insert cert (the default: a zeroed put is a cert put)     */
    STORE_PUT_REVOKE = 1,       /* revoke rev.serial: STORE_OK, STORE_NOTFOUND (no such
                                   certificate), STORE_ALREADY_REVOKED (rev is overwritten
                                   with the stored revocation, who = NULL), -EINVAL        */
    STORE_PUT_CRL_NUMBER = 2,   /* meta crl_number = crl_number if greater than the stored
                                   one: STORE_OK, else -ERANGE (never goes backwards)      */
    STORE_PUT_UPDATE = 3,       /* aux_db/aux_key: update() decides (store_update_fn):
                                   STORE_OK (verdict in ->verdict), -EINVAL               */
    STORE_PUT_INSERT = 4,       /* aux_db/aux_key = aux_val if the key is absent: STORE_OK,
                                   STORE_CONFLICT (it exists: left as it is), -EINVAL      */
};

/* A condition (cond != NULL) makes a STORE_PUT_CERT or STORE_PUT_INSERT put all-or-nothing
 * with a read-modify-write of another auxiliary record (cond_db / cond_key), in the same
 * transaction: cond runs first (a store_update_fn; its return value lands in cond_verdict);
 * non-zero refuses the put (STORE_CONFLICT, nothing written). Its new value is written only
 * when the put itself writes: a put refused for its own reasons (STORE_DUP_SERIAL,
 * STORE_DUP_TXID, STORE_CONFLICT) leaves the condition's record as it was too. Only that put
 * is refused, never the rest of its batch. This is how a one-time challenge is consumed
 * exactly when the certificate (or pending request) it pays for is recorded. A condition on
 * another kind of put is -EINVAL. */

typedef struct store_put {
    struct store_put *next;     /* intrusive list link, owned by whoever holds the put */
    int kind;                   /* enum store_put_kind */
    store_cert cert;            /* STORE_PUT_CERT input: pointers valid until done returns */
    store_revocation rev;       /* STORE_PUT_REVOKE input (who valid until done returns)  */
    uint64_t crl_number;        /* STORE_PUT_CRL_NUMBER input                              */
    int aux_db;                 /* STORE_PUT_UPDATE input: enum store_aux_db               */
    const void *aux_key;        /* ... key (valid until done returns), 1..STORE_AUX_KEY_MAX */
    size_t aux_key_len;
    store_update_fn update;
    void *update_arg;
    int verdict;                /* STORE_PUT_UPDATE output: update()'s return value        */
    const void *aux_val;        /* STORE_PUT_INSERT input (valid until done returns)       */
    size_t aux_val_len;
    int cond_db;                /* condition (see above): enum store_aux_db                */
    const void *cond_key;       /* ... key (valid until done returns), 1..STORE_AUX_KEY_MAX */
    size_t cond_key_len;
    store_update_fn cond;       /* NULL: no condition                                      */
    void *cond_arg;
    int cond_verdict;           /* output: cond()'s return value (0 when it allowed the put) */
    int result;                 /* output: STORE_OK, STORE_DUP_SERIAL, STORE_DUP_TXID,
                                   STORE_CONFLICT, <0                                      */
    uint8_t existing_serial[STORE_SERIAL_LEN];   /* output for STORE_DUP_TXID */
    uint8_t existing_key_hash[STORE_HASH_LEN];   /* output for STORE_DUP_TXID */
} store_put;

/* Called on the writer thread once per committed batch (list linked by ->next, in submit
 * order), after the transaction is durable. A put whose result is not STORE_OK wrote nothing.
 * If the commit itself failed, every put carries the negative error. */
typedef void (*store_done_fn)(store_put *batch, void *arg);

/* Starts the writer thread; batches hold at most batch_max puts. -EBUSY if one runs. */
int  store_writer_start(store *s, int batch_max, store_done_fn done, void *arg);
void store_writer_stop(store *s);                 /* drains the queue, joins */
/* Queues a list of puts (any thread): one lock and one wake-up per call. Puts submitted
 * while no writer runs wait for the next store_writer_start (store_close drops them
 * without calling done). A put with invalid input (no DER, bad status, txid longer than
 * LMDB's key limit) gets -EINVAL and does not affect the others of its batch. */
void store_submit(store *s, store_put *list);

/* Writes a list of puts in one transaction on the calling thread (no writer may be
 * running: -EBUSY; the thread must not hold an open reader). Sets each ->result.
 * Returns 0 or the negative commit error. */
int store_put_sync(store *s, store_put *list);

/* Cheap liveness check for /healthz (a read transaction). 0 when the store answers. */
int store_ping(store *s);

/* ---- the database connection's events (PostgreSQL; an LMDB store has none) ----
 * An outage begins when a connection of this store is lost or cannot be (re)established
 * while none was reported down, and ends at the next connection established: one
 * STORE_EV_UNAVAILABLE then one STORE_EV_RECOVERED, at most one outage reported per second
 * (a later one within that second is reported at its next failure after it, or not at all
 * when it ended first: its failures are counted in the next event). fn runs on the thread
 * that noticed (a worker, the writer, the publisher), outside the store's locks; it must not
 * call the store. Set before the threads start. */
enum store_event_kind { STORE_EV_UNAVAILABLE = 1, STORE_EV_RECOVERED = 2 };
typedef struct store_event {
    int         kind;
    const char *conn;             /* which connection noticed: writer, reader, health     */
    const char *error;            /* the database client's message ("" for RECOVERED)     */
    int64_t     down_ms;          /* RECOVERED: how long the outage lasted                */
    unsigned long long count;     /* failures noticed (lost connections, failed attempts)
                                     since the previous event                             */
} store_event;
typedef void (*store_event_fn)(void *arg, const store_event *ev);
void store_set_event_cb(store *s, store_event_fn fn, void *arg);

/* The CRL build lock: one node of the cluster builds and publishes a CRL at a time (a
 * PostgreSQL session advisory lock on r's connection, held until store_crl_unlock or the
 * connection's end). 0: held (LMDB: always, one process), STORE_CONFLICT: another node holds
 * it, or < 0 (the store did not answer). r need not be begun; the caller's thread keeps it
 * for the whole build (the number is committed by the writer meanwhile). */
int  store_crl_lock(store_reader *r);
void store_crl_unlock(store_reader *r);

/* Message for any value returned here (outcomes, store errors, -errno, MDB errors);
 * static storage. */
const char *store_strerror(int rc);

#endif
