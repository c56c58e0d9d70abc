/* Tests of engine/mdm/validate.c and mdm_config.c that need no emulator: the configuration
 * file (keys, limits, secrets, URL rule, cross checks), the diagnostic table, the refusals
 * of mdm_submit / mdm_notify_* (missing facts, integration not configured), and the stage's
 * event loop against a small HTTP server of this file that holds every request until a
 * whole batch is parked (many transfers at once, connections closed and reopened, stop while
 * parked). Bound, retries, timeouts and token reuse are exercised in test_intune.c and
 * test_webhook.c against the emulators. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/mdm/mdm_config.h"
#include "engine/mdm/mdm_internal.h"          /* the loop's wake-up counter */
#include "engine/mdm/validate.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/scepd-mdmcfg-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char p[128];
    snprintf(p, sizeof(p), "%s/intune.secret", dir);
    FILE *f = fopen(p, "w");
    fputs("s3cret\r\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int parse(mdm_config *c, const char *text, char *err)
{
    mdm_config_defaults(c);
    return mdm_config_parse(c, text, strlen(text), dir, err, 256);
}

static void test_config_good(void **state)
{
    (void)state;
    mdm_config c;
    char err[256] = "";
    const char *text =
        "[mdm]\nmax_in_flight = 512\ntimeout = 2s\nretries = 3 # comment\nretry_backoff = 50ms\n"
        "[intune]\ntenant = contoso.onmicrosoft.com\nclient_id = abc\n"
        "client_secret_file = intune.secret\nlogin_url = http://127.0.0.1:9/\n"
        "validation_url = https://scep.manage.microsoft.com/svc\n"
        "[ndes]\nttl = 30m\nencoding = utf-8\nca_name = \"Corp CA\"\n";
    assert_int_equal(parse(&c, text, err), 0);
    assert_int_equal(c.max_in_flight, 512);
    assert_int_equal(c.timeout_ms, 2000);
    assert_int_equal(c.retries, 3);
    assert_int_equal(c.retry_backoff_ms, 50);
    assert_string_equal(c.client_secret, "s3cret");
    assert_int_equal(c.client_secret_len, 6);
    assert_true(mdm_config_intune_enabled(&c));
    assert_false(mdm_config_webhook_enabled(&c));
    assert_int_equal(c.ndes_ttl_s, 1800);
    assert_int_equal(c.ndes_encoding, MDM_NDES_UTF8);
    assert_string_equal(c.ndes_ca_name, "Corp CA");
    assert_string_equal(c.resource, "https://api.manage.microsoft.com/");
    mdm_config_cleanse(&c);
    assert_int_equal(c.client_secret[0], 0);
}

static void test_config_refusals(void **state)
{
    (void)state;
    static const struct { const char *text, *msg; } bad[] = {
        { "[mdm]\nnope = 1\n", "line 2: unknown key" },
        { "[other]\n", "line 1: unknown section" },
        { "key = 1\n", "line 1: key outside a section" },
        { "[mdm]\nretries = 11\n", "line 2: retries" },
        { "[mdm]\ntimeout = 10\"\n", "line 2: quote inside" },
        { "[webhook]\nurl = http://mdm.example/check\n", "line 2: url: https://" },
        { "[webhook]\nurl = https://mdm.example/check\n", "[webhook] needs secret_file" },
        { "[intune]\ntenant = t\n", "[intune] needs tenant" },
        { "[intune]\nclient_secret_file = missing\n", "line 2: " },
        { "[ndes]\nencoding = latin1\n", "line 2: encoding" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mdm_config c;
        char err[256] = "";
        mdm_config_defaults(&c);
        c.max_in_flight = 7;
        assert_int_equal(mdm_config_parse(&c, bad[i].text, strlen(bad[i].text), dir, err,
                                          sizeof(err)), -1);
        assert_non_null(strstr(err, bad[i].msg));
        assert_int_equal(c.max_in_flight, 7);          /* unchanged on failure */
    }
}

static void test_url_rule(void **state)
{
    (void)state;
    assert_true(mdm_url_allowed("https://login.microsoftonline.com"));
    assert_true(mdm_url_allowed("http://127.0.0.1:8080/x"));
    assert_true(mdm_url_allowed("http://[::1]:1"));
    assert_true(mdm_url_allowed("http://localhost/"));
    assert_false(mdm_url_allowed("http://127.0.0.1.evil.example/"));
    assert_false(mdm_url_allowed("http://example.com/"));
    assert_false(mdm_url_allowed("ftp://127.0.0.1/"));
    assert_false(mdm_url_allowed("https://"));
}

static void test_diag_table(void **state)
{
    (void)state;
    assert_string_equal(mdm_diag_code(MDM_DIAG_OK), "ok");
    assert_string_equal(mdm_diag_code(MDM_DIAG_DENIED), "mdm_denied");
    assert_string_equal(mdm_diag_code(-1), "unknown");
    assert_string_equal(mdm_diag_code(MDM_DIAG__COUNT), "unknown");
    assert_int_equal(mdm_diag_hresult(MDM_DIAG_OK), 0);
    for (int d = 1; d < MDM_DIAG__COUNT; d++)          /* every failure has a failing HRESULT */
        assert_true((mdm_diag_hresult(d) & 0x80000000u) != 0);
}

static void no_call(void *arg, const mdm_verdict *v)
{
    (void)arg;
    (void)v;
    fail_msg("callback after a refused call");
}

static void test_submit_refusals(void **state)
{
    (void)state;
    mdm_config c;
    mdm_stage *s = NULL;
    mdm_config_defaults(&c);
    assert_int_equal(mdm_stage_create(&c, NULL, &s), 0);
    const uint8_t csr[] = { 0x30, 0x00 };
    mdm_request r = { .kind = MDM_INTUNE, .txid = "t", .csr_der = csr, .csr_len = sizeof(csr) };
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -ENOTSUP);
    r.kind = MDM_WEBHOOK;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -ENOTSUP);
    r.kind = 99;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    r.kind = MDM_INTUNE;
    r.txid = NULL;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    r.txid = "t";
    r.csr_len = 0;
    assert_int_equal(mdm_submit(s, &r, no_call, NULL), -EINVAL);
    assert_int_equal(mdm_submit(s, &r, NULL, NULL), -EINVAL);
    assert_int_equal(mdm_notify_failure(s, "t", csr, sizeof(csr), 1, "x", NULL, NULL), -ENOTSUP);
    assert_int_equal(mdm_revocations_download(s, 0, NULL, NULL, NULL), -EINVAL);
    mdm_stats st;
    mdm_stage_stats(s, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.http_attempts, 0);
    mdm_stage_destroy(s);
    mdm_stage_destroy(NULL);
}

/* ---- the stage's event loop against a holding server ----------------------------------- */

/* A loopback HTTP/1.1 server on a thread: reads requests (Content-Length bodies), holds them
 * until `hold` wait at once, then answers the whole batch {"allow":true}; every close_every-th
 * answer closes its connection, so the stage sees sockets closed and descriptor numbers
 * reused. A client that gives up (EOF) is forgotten. */
#define HS_CONNS 128

typedef struct hs_conn {
    int    fd;
    int    waiting;
    size_t len;
    char   buf[8192];
} hs_conn;

typedef struct hold_srv {
    int             lfd, port, wake[2];
    pthread_t       th;
    pthread_mutex_t m;
    pthread_cond_t  c;
    int             hold, close_every;   /* set before start */
    int             waiting, accepted, answered, close_idle;   /* under m */
    hs_conn        *conn;
    int             nconn;
} hold_srv;

/* 1 when buf holds a whole request. */
static int hs_complete(const hs_conn *c)
{
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    const char *cl = strcasestr(c->buf, "\r\nContent-Length:");
    if (cl != NULL && cl < end)
        body = strtoul(cl + 17, NULL, 10);
    return c->len >= head + body;
}

static void hs_answer_batch(hold_srv *h)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 14\r\n%s\r\n{\"allow\":true}";
    for (int i = 0; i < h->nconn; i++) {
        hs_conn *c = &h->conn[i];
        if (c->fd < 0 || !c->waiting)
            continue;
        int last = h->close_every > 0 && (h->answered + 1) % h->close_every == 0;
        char out[256];
        int n = snprintf(out, sizeof(out), ok, last ? "Connection: close\r\n" : "");
        if (send(c->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
            last = 1;
        c->waiting = 0;
        h->waiting--;
        h->answered++;
        if (last) {
            close(c->fd);
            c->fd = -1;
        }
    }
}

static void hs_read(hold_srv *h, hs_conn *c)
{
    ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (r < 0 && errno == EINTR)
        return;
    pthread_mutex_lock(&h->m);
    if (r <= 0) {
        h->waiting -= c->waiting;
        close(c->fd);
        c->fd = -1;
    } else {
        c->len += (size_t)r;
        c->buf[c->len] = '\0';
        if (!c->waiting && hs_complete(c)) {
            c->waiting = 1;
            c->len = 0;
            h->waiting++;
        }
    }
    if (h->waiting >= h->hold)
        hs_answer_batch(h);
    pthread_cond_broadcast(&h->c);
    pthread_mutex_unlock(&h->m);
}

static void *hs_main(void *arg)
{
    hold_srv *h = arg;
    struct pollfd p[HS_CONNS + 2];
    for (;;) {
        int n = 0;
        for (int i = 0; i < h->nconn; i++)        /* drop the closed ones */
            if (h->conn[i].fd >= 0)
                h->conn[n++] = h->conn[i];
        h->nconn = n;
        p[0] = (struct pollfd){ .fd = h->wake[0], .events = POLLIN };
        p[1] = (struct pollfd){ .fd = h->lfd, .events = h->nconn < HS_CONNS ? POLLIN : 0 };
        for (int i = 0; i < h->nconn; i++)
            p[i + 2] = (struct pollfd){ .fd = h->conn[i].fd, .events = POLLIN };
        if (poll(p, (nfds_t)h->nconn + 2, -1) < 0)
            continue;                              /* EINTR */
        if (p[0].revents != 0) {
            char cmd = 'x';
            if (read(h->wake[0], &cmd, 1) == 1 && cmd == 'c') {
                pthread_mutex_lock(&h->m);
                for (int i = 0; i < h->nconn; i++)
                    if (!h->conn[i].waiting) {
                        close(h->conn[i].fd);
                        h->conn[i].fd = -1;
                    }
                h->close_idle = 0;
                pthread_cond_broadcast(&h->c);
                pthread_mutex_unlock(&h->m);
                continue;
            }
            break;
        }
        for (int i = 0; i < n; i++)
            if (p[i + 2].revents != 0)
                hs_read(h, &h->conn[i]);
        if (p[1].revents & POLLIN) {
            int fd = accept(h->lfd, NULL, NULL);
            if (fd >= 0) {
                h->conn[h->nconn++] = (hs_conn){ .fd = fd };
                pthread_mutex_lock(&h->m);
                h->accepted++;
                pthread_mutex_unlock(&h->m);
            }
        }
    }
    for (int i = 0; i < h->nconn; i++)
        if (h->conn[i].fd >= 0)
            close(h->conn[i].fd);
    return NULL;
}

static void hs_start(hold_srv *h, int hold, int close_every)
{
    memset(h, 0, sizeof(*h));
    h->hold = hold;
    h->close_every = close_every;
    pthread_mutex_init(&h->m, NULL);
    pthread_cond_init(&h->c, NULL);
    h->conn = calloc(HS_CONNS, sizeof(*h->conn));
    assert_non_null(h->conn);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(h->lfd >= 0);
    assert_int_equal(bind(h->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(h->lfd, 256), 0);
    assert_int_equal(getsockname(h->lfd, (struct sockaddr *)&a, &al), 0);
    h->port = ntohs(a.sin_port);
    assert_int_equal(pipe(h->wake), 0);
    assert_int_equal(pthread_create(&h->th, NULL, hs_main, h), 0);
}

static void hs_stop(hold_srv *h)
{
    assert_int_equal(write(h->wake[1], "x", 1), 1);
    pthread_join(h->th, NULL);
    close(h->wake[0]);
    close(h->wake[1]);
    close(h->lfd);
    free(h->conn);
}

/* The server closes every connection not holding a request (as servers drop idle
 * keep-alive connections); returns once done. */
static void hs_close_idle(hold_srv *h)
{
    pthread_mutex_lock(&h->m);
    h->close_idle = 1;
    pthread_mutex_unlock(&h->m);
    assert_int_equal(write(h->wake[1], "c", 1), 1);
    pthread_mutex_lock(&h->m);
    while (h->close_idle)
        pthread_cond_wait(&h->c, &h->m);
    pthread_mutex_unlock(&h->m);
}

static int hs_get(hold_srv *h, const int *field)
{
    pthread_mutex_lock(&h->m);
    int v = *field;
    pthread_mutex_unlock(&h->m);
    return v;
}

/* Waits until n requests are held (a generous bound: a hang is a failure). */
static int hs_wait_held(hold_srv *h, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&h->m);
    while (h->waiting < n && pthread_cond_timedwait(&h->c, &h->m, &ts) != ETIMEDOUT)
        ;
    int ok = h->waiting >= n;
    pthread_mutex_unlock(&h->m);
    return ok ? 0 : -1;
}

/* Verdicts counted by kind. */
typedef struct tally {
    pthread_mutex_t m;
    pthread_cond_t  c;
    int             done, allowed, shutdown, timeout, attempts2;
} tally;

static void on_tally(void *arg, const mdm_verdict *v)
{
    tally *t = arg;
    pthread_mutex_lock(&t->m);
    t->done++;
    t->allowed += v->result == MDM_ALLOW;
    t->shutdown += v->result == MDM_ERROR && v->diag == MDM_DIAG_SHUTDOWN;
    t->timeout += v->result == MDM_ERROR && v->diag == MDM_DIAG_TIMEOUT;
    t->attempts2 += v->attempts == 2;
    pthread_cond_broadcast(&t->c);
    pthread_mutex_unlock(&t->m);
}

static int tally_wait(tally *t, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&t->m);
    while (t->done < n && pthread_cond_timedwait(&t->c, &t->m, &ts) != ETIMEDOUT)
        ;
    int ok = t->done >= n;
    pthread_mutex_unlock(&t->m);
    return ok ? 0 : -1;
}

static mdm_stage *hook_stage(const hold_srv *h, int timeout_ms, int retries)
{
    mdm_config c;
    mdm_stage *s = NULL;
    mdm_config_defaults(&c);
    snprintf(c.webhook_url, sizeof(c.webhook_url), "http://127.0.0.1:%d/check", h->port);
    c.webhook_secret_len = (size_t)snprintf((char *)c.webhook_secret, sizeof(c.webhook_secret),
                                            "k");
    c.max_connections = 64;
    c.timeout_ms = timeout_ms;
    c.retries = retries;
    c.retry_backoff_ms = 10;
    assert_int_equal(mdm_stage_create(&c, NULL, &s), 0);
    return s;
}

static void submit_n(mdm_stage *s, tally *t, int n)
{
    static const uint8_t csr[] = { 0x30, 0x00 };
    mdm_request r = { .kind = MDM_WEBHOOK, .txid = "tx-loop", .csr_der = csr,
                      .csr_len = sizeof(csr) };
    for (int i = 0; i < n; i++)
        assert_int_equal(mdm_submit(s, &r, on_tally, t), 0);
}

/* Rounds of 40 transfers that the server answers only once all 40 are parked: the loop must
 * carry them at once (a loop that serves one at a time never completes a round). A quarter
 * of the connections close after their answer: the next round reopens them. Then the server
 * drops the idle connections: the stage, which no longer watches them, must not wake up
 * (a socket left in the epoll set would make it spin), and the last round reconnects. */
static void test_loop_many_parked(void **state)
{
    (void)state;
    enum { N = 40, ROUNDS = 3 };
    hold_srv h;
    tally t = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
    hs_start(&h, N, 4);
    mdm_stage *s = hook_stage(&h, 60000, 0);
    for (int r = 1; r <= ROUNDS; r++) {
        if (r == ROUNDS) {
            hs_close_idle(&h);
            long w0 = atomic_load(&s->wakeups);
            struct timespec pause = { 0, 200 * 1000000L };
            while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
                ;
            assert_true(atomic_load(&s->wakeups) - w0 < 5);     /* idle: no curl timer */
        }
        submit_n(s, &t, N);
        assert_int_equal(tally_wait(&t, r * N), 0);
    }
    assert_int_equal(t.allowed, N * ROUNDS);
    mdm_stats st;
    mdm_stage_stats(s, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.http_attempts, N * ROUNDS);
    assert_int_equal(st.connects, hs_get(&h, &h.accepted));
    assert_true(st.connects < st.http_attempts);          /* kept connections were reused */
    assert_true(st.connects > N);                          /* closed ones were reopened */
    mdm_stage_destroy(s);
    hs_stop(&h);
}

/* Destroy while 30 transfers are parked and more are in the inbox: every one is answered
 * mdm_shutdown, once, before destroy returns. */
static void test_loop_stop_while_parked(void **state)
{
    (void)state;
    hold_srv h;
    tally t = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
    hs_start(&h, 1000, 0);
    mdm_stage *s = hook_stage(&h, 60000, 0);
    submit_n(s, &t, 30);
    assert_int_equal(hs_wait_held(&h, 30), 0);
    submit_n(s, &t, 5);
    mdm_stage_destroy(s);
    assert_int_equal(t.done, 35);
    assert_int_equal(t.shutdown, 35);
    hs_stop(&h);
}

/* Nothing is answered: curl's timer ends each attempt, the retry list restarts it once, then
 * the verdict is mdm_timeout after 2 attempts. */
static void test_loop_timeouts_and_retries(void **state)
{
    (void)state;
    hold_srv h;
    tally t = { .m = PTHREAD_MUTEX_INITIALIZER, .c = PTHREAD_COND_INITIALIZER };
    hs_start(&h, 1000, 0);
    mdm_stage *s = hook_stage(&h, 300, 1);
    submit_n(s, &t, 10);
    assert_int_equal(tally_wait(&t, 10), 0);
    assert_int_equal(t.timeout, 10);
    assert_int_equal(t.attempts2, 10);
    mdm_stats st;
    mdm_stage_stats(s, &st);
    assert_int_equal(st.http_attempts, 20);
    assert_int_equal(st.in_flight, 0);
    mdm_stage_destroy(s);
    hs_stop(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_url_rule),
        cmocka_unit_test(test_diag_table),
        cmocka_unit_test(test_submit_refusals),
        cmocka_unit_test(test_loop_many_parked),
        cmocka_unit_test(test_loop_stop_while_parked),
        cmocka_unit_test(test_loop_timeouts_and_retries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
