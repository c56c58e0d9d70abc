/* intune-responder: a small, cheap stand-in for the Intune services on the path that
 * bench/mdm.sh measures (--emulator fast). A real Intune never runs on the CA's machine; the
 * Python contract emulator (intune_emulator.py, which the tests keep using) costs about 0.9 ms
 * of CPU per enrollment on the CA's cores, ~15 % of the budget. This answers the same JSON
 * shapes for what scepd's client (engine/mdm/intune.c, intune_auth.c) calls: the
 * client-credentials token endpoint, Graph service discovery, ScepActions validateRequest,
 * successNotification and failureNotification, the revocation download (always empty) and
 * upload, and GET /_stats. No knobs, no call log.
 *
 *   intune-responder [--port N] [--secret S] [--tenant T] [--client-id ID]
 *                    [--validate-delay-ms MS] [--token-expires-in S]
 *                    [--max-connections N] [--max-body BYTES]
 *
 * One thread, one level-triggered epoll set, HTTP/1.1 keep-alive with pipelining: answers go
 * out in request order, so a connection whose answer waits parses nothing more until it has
 * been sent. validateRequest is answered --validate-delay-ms after it arrived, from a min-heap
 * of deadlines that sets epoll_wait's timeout: nothing sleeps, any number wait at once.
 * Prints "PORT n" on stdout once listening on 127.0.0.1. SIGTERM / SIGINT: exits 0.
 * Memory: each connection slot owns its two buffers (kept for the next connection in the
 * slot, freed at exit); the responder owns the slots and the heap. This file: the event loop,
 * connections, deadlines and setup; intune_responder_http.c parses the requests and queues
 * the answers, intune_responder_calls.c answers the Intune calls. */
#include "intune_responder.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- deadlines: a binary min-heap on due ----------------------------------------------- */

int rsp_heap_push(rsp *R, uint64_t due, uint32_t slot, uint32_t gen, uint32_t linger)
{
    if (R->nheap == R->heap_cap) {
        size_t cap = R->heap_cap ? R->heap_cap * 2 : 256;
        deadline *h = realloc(R->heap, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        R->heap = h;
        R->heap_cap = cap;
    }
    size_t i = R->nheap++;
    deadline d = { due, slot, gen, linger };
    while (i > 0 && R->heap[(i - 1) / 2].due > due) {
        R->heap[i] = R->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    R->heap[i] = d;
    return 0;
}

static void heap_pop(rsp *R)
{
    deadline last = R->heap[--R->nheap];
    size_t i = 0, n = R->nheap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n)
            break;
        if (k + 1 < n && R->heap[k + 1].due < R->heap[k].due)
            k++;
        if (R->heap[k].due >= last.due)
            break;
        R->heap[i] = R->heap[k];
        i = k;
    }
    if (n > 0)
        R->heap[i] = last;
}

/* ---- connections ----------------------------------------------------------------------- */

static size_t in_limit(const rsp *R) { return HEAD_MAX + R->max_body; }

static void conn_close(rsp *R, conn *c)
{
    if (c->held)
        R->st.waiting--;
    close(c->fd);                          /* also leaves the epoll set */
    c->fd = -1;
    c->gen++;
    R->free_slots[R->nfree++] = (uint32_t)(c - R->conns);
    R->st.open--;
    if (R->accept_off) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTEN_KEY };
        if (epoll_ctl(R->ep, EPOLL_CTL_MOD, R->lfd, &ev) == 0)
            R->accept_off = 0;
    }
}

/* epoll watches input while there is room for it (always, while lingering) and output
 * while some is queued; it is told only of changes. */
static void conn_watch(rsp *R, conn *c)
{
    uint32_t want = 0;
    if (!c->eof && (c->lingering || c->in_len < in_limit(R)))
        want |= EPOLLIN;
    if (c->out_off < c->out_len)
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    struct epoll_event ev = { .events = want, .data.u64 = (uint64_t)c->gen << 32 |
                                                          (uint64_t)(c - R->conns) };
    if (epoll_ctl(R->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
        conn_close(R, c);
        return;
    }
    c->events = want;
}

static void consume(conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Answers the complete requests at the head of the input, in order, until one is held. */
static void conn_serve(rsp *R, conn *c)
{
    while (!c->held && !c->closing && !c->lingering) {
        size_t skip = 0;                    /* RFC 9112 2.2: empty lines before a request */
        while (skip < c->in_len && (c->in[skip] == '\r' || c->in[skip] == '\n'))
            skip++;
        consume(c, skip);
        if (c->in_len == 0)
            break;
        req r;
        int st = rsp_parse_head(c->in, c->in_len, R->max_body, &r);
        if (st == 1) {
            c->closing = c->eof;            /* a request cut short by the peer's FIN */
            break;
        }
        if (st != 0) {
            R->st.bad++;
            REPLY(c, st, "{\"error\":\"malformed request\"}", 1);
            break;
        }
        size_t need = r.head_len + r.body_len;
        if (c->in_len < need) {
            if (c->eof) {
                c->closing = 1;
            } else if (rsp_grow(&c->in, &c->in_cap, need, in_limit(R)) != 0) {
                REPLY(c, 500, "{\"error\":\"out of memory\"}", 1);
            } else if (r.expect && !c->continued) {
                rsp_out(c, LIT("HTTP/1.1 100 Continue\r\n\r\n"));
                c->continued = 1;
                R->st.continues++;
            }
            break;
        }
        rsp_dispatch(R, c, &r, c->in + r.head_len);
        consume(c, need);
        c->continued = 0;
    }
}

/* Sends what is queued; then ends the connection if it is done, else updates the watch. */
static void conn_flush(rsp *R, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n >= 0) {
            c->out_off += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            conn_close(R, c);
            return;
        }
    }
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len == 0 && !c->held && !c->lingering && (c->closing || c->eof)) {
        if (c->eof) {
            conn_close(R, c);
            return;
        }
        /* Shut the write side, then read until the peer closes, so that unread input does
         * not turn the close into a reset that could destroy the answer just sent. */
        shutdown(c->fd, SHUT_WR);
        c->lingering = 1;
        c->in_len = 0;
        if (rsp_heap_push(R, R->now + LINGER_NS, (uint32_t)(c - R->conns), c->gen, 1) != 0) {
            conn_close(R, c);
            return;
        }
    }
    conn_watch(R, c);
}

static void conn_read(rsp *R, conn *c)
{
    char sink[4096];
    if (c->in_len == c->in_cap && !c->lingering &&
        rsp_grow(&c->in, &c->in_cap, c->in_cap + 1, in_limit(R)) != 0) {
        conn_watch(R, c);                   /* full while an answer is held: wait */
        return;
    }
    char *dst = c->lingering ? sink : c->in + c->in_len;
    size_t room = c->lingering ? sizeof(sink) : c->in_cap - c->in_len;
    ssize_t n = recv(c->fd, dst, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0 || (n == 0 && c->lingering)) {
        conn_close(R, c);
        return;
    }
    if (c->lingering)
        return;
    if (n == 0)
        c->eof = 1;
    c->in_len += (size_t)n;
    conn_serve(R, c);
    conn_flush(R, c);
}

static void accept_all(rsp *R)
{
    for (;;) {
        int fd = R->nfree > 0 ? accept4(R->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC) : -1;
        if (fd < 0 && R->nfree > 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (fd < 0) {
            /* Out of slots or descriptors: stop accepting until a connection closes (a
             * level-triggered listener would otherwise wake us in a loop). */
            if ((R->nfree == 0 || errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                 errno == ENOMEM) && R->st.open > 0) {
                struct epoll_event ev = { .events = 0, .data.u64 = LISTEN_KEY };
                if (epoll_ctl(R->ep, EPOLL_CTL_MOD, R->lfd, &ev) == 0)
                    R->accept_off = 1;
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        uint32_t slot = R->free_slots[--R->nfree];
        conn *c = &R->conns[slot];
        uint32_t gen = c->gen;
        char *in = c->in, *out = c->out;
        size_t in_cap = c->in_cap, out_cap = c->out_cap;
        *c = (conn){ .fd = fd, .gen = gen, .events = EPOLLIN, .in = in, .in_cap = in_cap,
                     .out = out, .out_cap = out_cap };
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)gen << 32 | slot };
        R->st.open++;
        R->st.connections++;
        if (rsp_grow(&c->in, &c->in_cap, 4096, in_limit(R)) != 0 ||
            rsp_grow(&c->out, &c->out_cap, 1024, SIZE_MAX / 2) != 0 ||
            epoll_ctl(R->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            conn_close(R, c);
    }
}

/* Answers the held validations whose time has come, and ends lingering connections. */
static void fire(rsp *R)
{
    while (R->nheap > 0 && R->heap[0].due <= R->now) {
        deadline d = R->heap[0];
        heap_pop(R);
        conn *c = &R->conns[d.slot];
        if (c->fd < 0 || c->gen != d.gen)
            continue;                       /* closed since */
        if (d.linger || !c->held) {
            conn_close(R, c);
            continue;
        }
        c->held = 0;
        R->st.waiting--;
        R->st.validations++;
        rsp_reply(c, 200, rsp_validate_ok, rsp_validate_ok_len, c->held_close);
        conn_serve(R, c);                   /* requests pipelined behind it */
        conn_flush(R, c);
    }
}

static void on_event(rsp *R, const struct epoll_event *ev)
{
    if (ev->data.u64 == LISTEN_KEY) {
        accept_all(R);
        return;
    }
    conn *c = &R->conns[(uint32_t)ev->data.u64];
    if (c->fd < 0 || c->gen != (uint32_t)(ev->data.u64 >> 32))
        return;                             /* closed earlier in this batch */
    if (ev->events & (EPOLLERR | EPOLLHUP)) {
        conn_close(R, c);
        return;
    }
    if (ev->events & EPOLLOUT)
        conn_flush(R, c);
    if ((ev->events & EPOLLIN) && c->fd >= 0 && c->gen == (uint32_t)(ev->data.u64 >> 32))
        conn_read(R, c);
}

/* ---- setup ----------------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: intune-responder [--port N] [--secret S] [--tenant T] "
                    "[--client-id ID]\n  [--validate-delay-ms MS] [--token-expires-in S] "
                    "[--max-connections N] [--max-body BYTES]\n");
    return 2;
}

static int number(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int options(rsp *R, int argc, char **argv)
{
    static const struct option opts[] = {
        { "port", 1, NULL, 'p' }, { "secret", 1, NULL, 's' }, { "tenant", 1, NULL, 't' },
        { "client-id", 1, NULL, 'c' }, { "validate-delay-ms", 1, NULL, 'd' },
        { "token-expires-in", 1, NULL, 'e' }, { "max-connections", 1, NULL, 'm' },
        { "max-body", 1, NULL, 'b' }, { "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    long v;
    int o;
    R->secret = "emulator-secret";
    R->tenant = "contoso.onmicrosoft.com";
    R->client_id = "11111111-2222-3333-4444-555555555555";
    R->token_life = 3599;
    R->max_conns = 4096;
    R->max_body = 1 << 20;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': R->secret = optarg; break;
        case 't': R->tenant = optarg; break;
        case 'c': R->client_id = optarg; break;
#define NUM(min, max, dst) if (number(optarg, min, max, &v) != 0) return usage(); dst = v; break
        case 'p': NUM(0, 65535, R->port);
        case 'd': NUM(0, 3600000, R->delay_ms);
        case 'e': NUM(1, 86400 * 365, R->token_life);
        case 'm': NUM(1, 1 << 20, R->max_conns);
        case 'b': NUM(0, 1 << 30, R->max_body);
#undef NUM
        default: return usage();
        }
    }
    if (optind != argc || strlen(R->tenant) > 256)
        return usage();
    return 0;
}

static int listen_on(rsp *R)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)R->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int one = 1;
    R->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (R->lfd < 0 || setsockopt(R->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(R->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(R->lfd, 1024) != 0 ||
        getsockname(R->lfd, (struct sockaddr *)&a, &al) != 0) {
        perror("intune-responder: listen");
        return -1;
    }
    R->port = ntohs(a.sin_port);
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTEN_KEY };
    if ((R->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        epoll_ctl(R->ep, EPOLL_CTL_ADD, R->lfd, &ev) != 0) {
        perror("intune-responder: epoll");
        return -1;
    }
    return 0;
}

/* The answers that never change: tokens' values, the token path, Graph's discovery (both
 * services and one other, pointing back here, as intune_emulator.py lists them). */
static int prepare(rsp *R)
{
    unsigned char rnd[32];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return -1;
    for (int k = 0; k < 2; k++) {
        int n = snprintf(R->tok[k], sizeof(R->tok[k]), "tok-%s-", k == 0 ? "api" : "graph");
        for (int i = 0; i < 16; i++)
            n += snprintf(R->tok[k] + n, sizeof(R->tok[k]) - (size_t)n, "%02x", rnd[16 * k + i]);
    }
    snprintf(R->tok_path, sizeof(R->tok_path), "/%s/oauth2/v2.0/token", R->tenant);
    static const char *const names[] = { SVC_VAL, SVC_PKI, "IntuneOtherService" };
    size_t n = (size_t)snprintf(R->disc, sizeof(R->disc), "{\"@odata.context\":\"responder\","
                                "\"value\":[");
    for (int i = 0; i < 3; i++)
        n += (size_t)snprintf(R->disc + n, sizeof(R->disc) - n,
                              "%s{\"capability\":\"Intune\",\"providerId\":\"p-%s\","
                              "\"providerName\":\"%s\",\"providerResourceId\":\"r-%s\","
                              "\"uri\":\"http://127.0.0.1:%d/%s\"}", i ? "," : "", names[i],
                              names[i], names[i], R->port, names[i]);
    n += (size_t)snprintf(R->disc + n, sizeof(R->disc) - n, "]}");
    R->disc_len = n;
    R->conns = calloc(R->max_conns, sizeof(*R->conns));
    R->free_slots = calloc(R->max_conns, sizeof(*R->free_slots));
    if (n >= sizeof(R->disc) || R->conns == NULL || R->free_slots == NULL)
        return -1;
    for (uint32_t i = 0; i < R->max_conns; i++) {
        R->conns[i].fd = -1;
        R->free_slots[R->nfree++] = R->max_conns - 1 - i;
    }
    return 0;
}

static void run(rsp *R)
{
    struct epoll_event evs[256];
    while (!stop) {
        int timeout = -1;
        if (R->nheap > 0) {
            uint64_t now = now_ns(), due = R->heap[0].due;
            uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        int n = epoll_wait(R->ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
        if (n < 0 && errno != EINTR) {
            perror("intune-responder: epoll_wait");
            break;
        }
        R->now = now_ns();
        for (int i = 0; i < n; i++)
            on_event(R, &evs[i]);
        fire(R);
    }
}

int main(int argc, char **argv)
{
    rsp R;
    int rc = 1;
    memset(&R, 0, sizeof(R));
    R.ep = R.lfd = -1;
    struct sigaction sa = { .sa_handler = on_signal };     /* no SA_RESTART: wakes epoll */
    sigemptyset(&sa.sa_mask);
    signal(SIGPIPE, SIG_IGN);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        goto out;
    if ((rc = options(&R, argc, argv)) != 0)
        goto out;
    rc = 1;
    if (listen_on(&R) != 0 || prepare(&R) != 0)
        goto out;
    printf("PORT %d\n", R.port);
    fflush(stdout);
    run(&R);
    rc = 0;
out:
    for (uint32_t i = 0; R.conns != NULL && i < R.max_conns; i++) {
        if (R.conns[i].fd >= 0)
            close(R.conns[i].fd);
        free(R.conns[i].in);
        free(R.conns[i].out);
    }
    free(R.conns);
    free(R.free_slots);
    free(R.heap);
    if (R.ep >= 0)
        close(R.ep);
    if (R.lfd >= 0)
        close(R.lfd);
    return rc;
}

