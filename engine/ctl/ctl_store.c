/* scepctl store: the store itself, whichever backend holds it (docs/ha.md).
 *
 *   scepctl -c CONF store migrate
 *       creates or upgrades the configured store's schema (PostgreSQL: in one transaction
 *       under an advisory lock, safe while other nodes start); prints the versions
 *   scepctl -c CONF store copy --from LOCATION --to LOCATION
 *       copies every record (certificates, revocations, CRL number, one-time challenges,
 *       pending requests) into an empty store; LOCATION is lmdb:PATH, postgresql:CONNINFO,
 *       or a bare path (LMDB). Stop scepd first: the source is read in one pass.
 *
 * Everything goes through store.h, so the copy works in both directions. */
#include "engine/ctl/ctl_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/store/pg/store_pg.h"

#define COPY_CHUNK 256      /* puts per destination transaction */

static void store_usage(void)
{
    fprintf(stderr,
            "usage: scepctl -c CONF store migrate\n"
            "       scepctl -c CONF store copy --from LOCATION --to LOCATION\n"
            "  LOCATION: lmdb:PATH | postgresql:CONNINFO | PATH (an LMDB directory)\n");
}

/* The location store_open takes: "lmdb:" is dropped, the rest is passed as it is. */
static const char *open_location(const char *loc)
{
    return strncmp(loc, "lmdb:", 5) == 0 ? loc + 5 : loc;
}

static int cmd_migrate(const config *cfg)
{
    const char *ci = store_pg_conninfo(cfg->store_path);
    int from = 0, e;
    if (ci != NULL) {
        e = store_pg_migrate(ci, &from);
        if (e != 0) {
            fprintf(stderr, "scepctl: store migrate: %s\n", store_strerror(e));
            return 1;
        }
        printf("postgresql schema %d (%s)\n", STORE_PG_SCHEMA,
               from == 0 ? "created" : from == STORE_PG_SCHEMA ? "already current" : "migrated");
        return 0;
    }
    store *s = NULL;
    e = ctl_store_open(cfg, &s, NULL);   /* LMDB creates and checks its schema on open */
    store_close(s);
    if (e != 0)
        return 1;
    printf("lmdb store %s: schema current\n", cfg->store_path);
    return 0;
}

/* ---- copy ---- */

typedef struct copier {
    store *dst;
    store_put puts[COPY_CHUNK];
    struct { const uint8_t *v; size_t len; } vals[COPY_CHUNK];
    int n;
    size_t copied, refused;
    int err;
} copier;

static int flush(copier *c)
{
    if (c->n == 0)
        return 0;
    for (int i = 0; i < c->n; i++)
        c->puts[i].next = i + 1 < c->n ? &c->puts[i + 1] : NULL;
    int e = store_put_sync(c->dst, &c->puts[0]);
    if (e != 0) {
        fprintf(stderr, "scepctl: store copy: writing: %s\n", store_strerror(e));
        c->err = e;
        return e;
    }
    for (int i = 0; i < c->n; i++) {
        if (c->puts[i].result == STORE_OK) {
            c->copied++;
        } else {
            c->refused++;
            fprintf(stderr, "scepctl: store copy: a record was refused: %s\n",
                    store_strerror(c->puts[i].result));
        }
    }
    c->n = 0;
    return 0;
}

static store_put *next_put(copier *c)
{
    if (c->n == COPY_CHUNK && flush(c) != 0)
        return NULL;
    store_put *p = &c->puts[c->n++];
    memset(p, 0, sizeof(*p));
    return p;
}

static int copy_cert(const store_cert *cert, void *arg)
{
    store_put *p = next_put(arg);
    if (p == NULL)
        return -EIO;
    p->kind = STORE_PUT_CERT;
    p->cert = *cert;
    return 0;
}

static int copy_rev(const store_revocation *rv, void *arg)
{
    store_put *p = next_put(arg);
    if (p == NULL)
        return -EIO;
    p->kind = STORE_PUT_REVOKE;
    p->rev = *rv;
    return 0;
}

/* The destination record becomes the source's value (the destination is empty). */
static int set_value(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                     size_t *nl)
{
    const struct { const uint8_t *v; size_t len; } *src = arg;
    *nv = src->v;
    *nl = src->len;
    return 0;
}

struct aux_copy {
    copier *c;
    int db;
};

static int copy_aux(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                    void *arg)
{
    struct aux_copy *a = arg;
    store_put *p = next_put(a->c);
    if (p == NULL)
        return -EIO;
    int i = a->c->n - 1;
    a->c->vals[i].v = val;
    a->c->vals[i].len = val_len;
    p->kind = STORE_PUT_UPDATE;
    p->aux_db = a->db;
    p->aux_key = key;
    p->aux_key_len = key_len;
    p->update = set_value;
    p->update_arg = &a->c->vals[i];
    return 0;
}

static int count_aux(const uint8_t *key, size_t key_len, const uint8_t *val, size_t val_len,
                     void *arg)
{
    (*(size_t *)arg)++;
    return 0;
}

/* Records of every kind in a store (one read), for the emptiness check and the summary. */
static int tally(store_reader *r, size_t *certs, size_t *revoked, size_t *aux)
{
    int e = store_reader_begin(r);
    *aux = 0;
    if (e == 0)
        e = store_count(r, certs);
    if (e == 0)
        e = store_count_revoked(r, revoked);
    for (int db = 0; e == 0 && db < STORE_DB__COUNT; db++)
        e = store_foreach_aux(r, db, count_aux, aux);
    store_reader_end(r);
    return e;
}

static int cmd_copy(const char *from, const char *to)
{
    store *src = NULL;
    store_reader *sr = NULL, *dr = NULL;
    copier *c = calloc(1, sizeof(*c));
    size_t nc = 0, nr = 0, na = 0, dc = 0, drv = 0, da = 0;
    uint64_t gen = 0, crl = 0;
    int rc = 1, e;

    if (c == NULL)
        goto out;
    if ((e = store_open(open_location(from), 0, &src)) != 0 ||
        (e = store_reader_create(src, &sr)) != 0) {
        fprintf(stderr, "scepctl: store copy: source %s: %s\n", from, store_strerror(e));
        goto out;
    }
    if ((e = store_open(open_location(to), 0, &c->dst)) != 0 ||
        (e = store_reader_create(c->dst, &dr)) != 0) {
        fprintf(stderr, "scepctl: store copy: destination %s: %s\n", to, store_strerror(e));
        goto out;
    }
    if ((e = tally(dr, &dc, &drv, &da)) != 0) {
        fprintf(stderr, "scepctl: store copy: destination: %s\n", store_strerror(e));
        goto out;
    }
    if (dc + drv + da > 0) {
        fprintf(stderr, "scepctl: store copy: the destination is not empty (%zu certificates, "
                "%zu revocations, %zu other records)\n", dc, drv, da);
        goto out;
    }
    /* One read of the source: every pointer the puts carry stays valid until its end. */
    if ((e = store_reader_begin(sr)) != 0 || (e = store_get_counters(sr, &gen, &crl)) != 0 ||
        (e = store_foreach_cert(sr, copy_cert, c)) != 0 || (e = flush(c)) != 0 ||
        (e = store_foreach_revoked(sr, copy_rev, c)) != 0 || (e = flush(c)) != 0) {
        store_reader_end(sr);
        fprintf(stderr, "scepctl: store copy: %s\n", store_strerror(c->err ? c->err : e));
        goto out;
    }
    for (int db = 0; db < STORE_DB__COUNT; db++) {
        struct aux_copy a = { c, db };
        if ((e = store_foreach_aux(sr, db, copy_aux, &a)) != 0 || (e = flush(c)) != 0) {
            store_reader_end(sr);
            fprintf(stderr, "scepctl: store copy: %s\n", store_strerror(c->err ? c->err : e));
            goto out;
        }
    }
    store_reader_end(sr);
    if (crl > 0) {
        store_put p = { .kind = STORE_PUT_CRL_NUMBER, .crl_number = crl };
        if ((e = store_put_sync(c->dst, &p)) != 0 || p.result != STORE_OK) {
            fprintf(stderr, "scepctl: store copy: CRL number: %s\n",
                    store_strerror(e ? e : p.result));
            goto out;
        }
    }
    if ((e = tally(sr, &nc, &nr, &na)) != 0 || (e = tally(dr, &dc, &drv, &da)) != 0) {
        fprintf(stderr, "scepctl: store copy: counting: %s\n", store_strerror(e));
        goto out;
    }
    printf("copied %zu certificates, %zu revocations, %zu other records; crl_number %llu\n",
           dc, drv, da, (unsigned long long)crl);
    if (c->refused > 0 || dc != nc || drv != nr || da != na) {
        fprintf(stderr, "scepctl: store copy: the destination differs from the source "
                "(source: %zu, %zu, %zu)\n", nc, nr, na);
        goto out;
    }
    rc = 0;
out:
    store_reader_destroy(sr);
    store_reader_destroy(dr);
    if (c != NULL)
        store_close(c->dst);
    store_close(src);
    free(c);
    return rc;
}

int ctl_cmd_store(const config *cfg, int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    if (argc == 1 && strcmp(argv[0], "migrate") == 0)
        return cmd_migrate(cfg);
    if (argc >= 1 && strcmp(argv[0], "copy") == 0) {
        for (int i = 1; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--from") == 0)
                from = argv[i + 1];
            else if (strcmp(argv[i], "--to") == 0)
                to = argv[i + 1];
            else
                from = to = NULL, i = argc;
        }
        if (from != NULL && to != NULL && argc == 5)
            return cmd_copy(from, to);
    }
    store_usage();
    return 2;
}
