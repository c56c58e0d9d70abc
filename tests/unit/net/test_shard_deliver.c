/* Tests for shard_deliver's wake-ups (engine/net/shard.c): the eventfd is written only when
 * a delivery makes the pending list non-empty while the shard's loop is about to sleep, so
 * a mistake there strands replies. Two shards on one port (SO_REUSEPORT), every request
 * deferred and answered by deliverer threads that race the loops going to sleep (lists of
 * one to three replies, yields in between), lock-step and pipelined clients: every request
 * must get its own answer, in order, and every reply must be released exactly once.
 *
 * A stranded reply would be taken by the loop at its next wake-up of any kind (the shard's
 * tick at the latest), and with many clients another connection's traffic soon wakes it.
 * So the second test is one client in lock step on one shard with no timeouts configured
 * (the tick is then a second): a wake-up missed systematically costs up to a second per
 * request and the test runs into its ctest timeout (LOCKSTEP_N requests; a correct shard
 * answers them in well under a second). Lost or doubled replies fail either test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/common/config.h"
#include "engine/net/shard.h"

#define NSHARDS     2
#define NDELIVER    4
#define NCLIENTS    16
#define PER_CLIENT  300
#define PIPELINE    3             /* odd clients send this many requests before reading */
#define LOCKSTEP_N  1000          /* requests of the lone lock-step client */

/* For the threads the test starts: cmocka's asserts may only run on the test's own thread. */
#define CHECK(x)                                                                 \
    do {                                                                         \
        if (!(x)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                             \
        }                                                                        \
    } while (0)

typedef struct pending {
    struct pending *next;
    conn_ref        ref;
    unsigned        seq;
} pending;

typedef struct my_reply {
    shard_reply r;
    char        body[32];
} my_reply;

typedef struct rig {
    shard          *s[NSHARDS];
    pthread_t       run[NSHARDS];
    pthread_t       del[NDELIVER];
    uint16_t        port;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    pending        *head, *tail;
    int             stop;
    atomic_uint     deferred, delivered, released;
} rig;

static rig g;

static void reply_release(shard_reply *r)
{
    atomic_fetch_add(&g.released, 1);
    free(r);
}

/* Defers every request "GET /r/<seq>": the deliverers answer "r<seq>". */
static int handler(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                   conn_ref ref, const char *peer, http_response *resp)
{
    (void)ctx;
    (void)body;
    (void)body_len;
    (void)peer;
    (void)resp;
    pending *p = calloc(1, sizeof(*p));
    CHECK(p != NULL);
    p->ref = ref;
    p->seq = (unsigned)strtoul(req->path.p + 3, NULL, 10);
    pthread_mutex_lock(&g.mu);
    if (g.tail != NULL)
        g.tail->next = p;
    else
        g.head = p;
    g.tail = p;
    pthread_cond_signal(&g.cv);
    pthread_mutex_unlock(&g.mu);
    atomic_fetch_add(&g.deferred, 1);
    return APP_DEFER;
}

/* Takes one to three pending requests, answers them as one list per shard. */
static void *deliverer(void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg, round = 0;
    for (;;) {
        pending *take[3];
        int k = 0;
        pthread_mutex_lock(&g.mu);
        while (g.head == NULL && !g.stop)
            pthread_cond_wait(&g.cv, &g.mu);
        int want = 1 + (int)((n + round++) % 3);
        while (g.head != NULL && k < want) {
            take[k++] = g.head;
            g.head = g.head->next;
            if (g.head == NULL)
                g.tail = NULL;
        }
        int stop = g.stop && k == 0;
        pthread_mutex_unlock(&g.mu);
        if (stop)
            break;
        shard_reply *lists[NSHARDS] = {0};
        for (int i = 0; i < k; i++) {
            my_reply *r = calloc(1, sizeof(*r));
            CHECK(r != NULL);
            int len = snprintf(r->body, sizeof(r->body), "r%u", take[i]->seq);
            r->r.ref = take[i]->ref;
            r->r.resp.status = 200;
            r->r.resp.content_type = "text/plain";
            r->r.resp.body = (const uint8_t *)r->body;
            r->r.resp.body_len = (size_t)len;
            r->r.release = reply_release;
            uint32_t si = take[i]->ref.shard;
            CHECK(si < NSHARDS);
            r->r.next = lists[si];
            lists[si] = &r->r;
            free(take[i]);
        }
        /* Yield sometimes so that deliveries land on either side of a loop's sleep. */
        if (round % 2 == 0)
            sched_yield();
        for (int i = 0; i < NSHARDS; i++) {
            if (lists[i] != NULL) {
                unsigned cnt = 0;
                for (shard_reply *r = lists[i]; r != NULL; r = r->next)
                    cnt++;
                atomic_fetch_add(&g.delivered, cnt);
                shard_deliver(g.s[i], lists[i]);
            }
        }
    }
    return NULL;
}

static void *run_shard(void *arg)
{
    shard *s = arg;
    CHECK(shard_run(s) == 0);
    return NULL;
}

/* --- client ------------------------------------------------------------------------- */

typedef struct client {
    int    fd;
    char   buf[8192];
    size_t len;
} client;

static void client_open(client *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(c->fd >= 0);
    /* Generous: a stranded reply waits for the next tick, a loaded CI machine for longer. */
    struct timeval tv = { 60, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(g.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc;
    while ((rc = connect(c->fd, (struct sockaddr *)&a, sizeof(a))) != 0 && errno == EINTR)
        ;
    CHECK(rc == 0);
}

static int client_send_req(client *c, unsigned seq)
{
    char req[64];
    int n = snprintf(req, sizeof(req), "GET /r/%u HTTP/1.1\r\nHost: t\r\n\r\n", seq);
    const char *p = req;
    while (n > 0) {
        ssize_t w = send(c->fd, p, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (int)w;
    }
    return 0;
}

/* Reads one response; 0 when it is 200 with body "r<seq>", -1 otherwise. */
static int client_expect(client *c, unsigned seq)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e != NULL) {
            size_t hlen = (size_t)(e + 4 - c->buf);
            const char *cl = memmem(c->buf, hlen, "Content-Length: ", 16);
            if (cl == NULL)
                return -1;
            size_t blen = strtoul(cl + 16, NULL, 10);
            if (c->len >= hlen + blen) {
                char want[32];
                int wl = snprintf(want, sizeof(want), "r%u", seq);
                int ok = strncmp(c->buf, "HTTP/1.1 200 ", 13) == 0 && blen == (size_t)wl &&
                         memcmp(c->buf + hlen, want, blen) == 0;
                memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
                c->len -= hlen + blen;
                return ok ? 0 : -1;
            }
        }
        if (c->len == sizeof(c->buf))
            return -1;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c->len += (size_t)n;
    }
}

typedef struct client_arg {
    unsigned id, count, depth;
} client_arg;

static void *client_main(void *arg)
{
    const client_arg *ca = arg;
    unsigned id = ca->id, depth = ca->depth, count = ca->count;
    uintptr_t failures = 0;
    client c;
    client_open(&c);
    for (unsigned i = 0; i < count; i += depth) {
        unsigned n = count - i < depth ? count - i : depth;
        for (unsigned k = 0; k < n; k++)
            if (client_send_req(&c, id * 100000u + i + k) != 0)
                failures++;
        for (unsigned k = 0; k < n; k++)
            if (client_expect(&c, id * 100000u + i + k) != 0)
                failures++;
        if (failures != 0)
            break;
    }
    close(c.fd);
    return (void *)failures;
}

static void rig_start(const config *base, uint32_t nshards)
{
    config cfg = *base;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    for (uint32_t i = 0; i < nshards; i++) {
        assert_int_equal(shard_create(&cfg, i, handler, NULL, &g.s[i]), 0);
        if (i == 0) {
            g.port = shard_port(g.s[0]);
            cfg.listen_port = g.port;      /* the others share it (SO_REUSEPORT) */
        }
    }
    for (uint32_t i = 0; i < nshards; i++)
        assert_int_equal(pthread_create(&g.run[i], NULL, run_shard, g.s[i]), 0);
    for (uintptr_t i = 0; i < NDELIVER; i++)
        assert_int_equal(pthread_create(&g.del[i], NULL, deliverer, (void *)i), 0);
}

/* Stops everything; every reply was sent and released once (a sent reply is released
 * after its send completed, at the latest by shard_destroy). */
static void rig_stop(uint32_t nshards, unsigned total)
{
    pthread_mutex_lock(&g.mu);
    g.stop = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < NDELIVER; i++)
        pthread_join(g.del[i], NULL);
    for (uint32_t i = 0; i < nshards; i++) {
        shard_stop(g.s[i]);
        pthread_join(g.run[i], NULL);
        shard_destroy(g.s[i]);
    }
    assert_int_equal(atomic_load(&g.released), total);
    pthread_mutex_destroy(&g.mu);
    pthread_cond_destroy(&g.cv);
}

static void run_clients(client_arg *ca, unsigned n)
{
    pthread_t cl[NCLIENTS];
    unsigned total = 0;
    assert_true(n <= NCLIENTS);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(pthread_create(&cl[i], NULL, client_main, &ca[i]), 0);
        total += ca[i].count;
    }
    uintptr_t failures = 0;
    for (unsigned i = 0; i < n; i++) {
        void *r = NULL;
        pthread_join(cl[i], &r);
        failures += (uintptr_t)r;
    }
    assert_int_equal(failures, 0);
    assert_int_equal(atomic_load(&g.deferred), total);
    assert_int_equal(atomic_load(&g.delivered), total);
}

static void base_config(config *cfg)
{
    config_defaults(cfg);
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 0;
    cfg->max_conns = 64;
}

static void test_every_reply_delivered(void **state)
{
    (void)state;
    config cfg;
    base_config(&cfg);
    rig_start(&cfg, NSHARDS);
    client_arg ca[NCLIENTS];
    for (unsigned i = 0; i < NCLIENTS; i++)
        ca[i] = (client_arg){ i, PER_CLIENT, i % 2 ? PIPELINE : 1 };
    run_clients(ca, NCLIENTS);
    rig_stop(NSHARDS, NCLIENTS * PER_CLIENT);
}

static void test_lockstep_no_stranded_reply(void **state)
{
    (void)state;
    config cfg;
    base_config(&cfg);
    cfg.header_timeout_ms = 0;         /* no timeouts: the shard ticks once a second */
    cfg.idle_timeout_ms = 0;
    cfg.request_timeout_ms = 0;
    rig_start(&cfg, 1);
    client_arg ca = { 0, LOCKSTEP_N, 1 };
    run_clients(&ca, 1);
    rig_stop(1, LOCKSTEP_N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_reply_delivered),
        cmocka_unit_test(test_lockstep_no_stranded_reply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
