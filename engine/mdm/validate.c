/* validate: the stage thread, its libcurl multi handle, transfers with timeouts and retries,
 * and the dispatch of mdm_submit (validate.h). The thread owns every op once it has left the
 * inbox; other threads only push to the inbox under the lock and wake the thread. */
#include "engine/mdm/validate.h"
#include "engine/mdm/mdm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const struct { const char *code, *text; uint32_t hr; } diags[] = {
#define X(name, code, hr, text) { code, text, hr },
    MDM_DIAGS(X)
#undef X
};

const char *mdm_diag_code(int d)
{
    return d >= 0 && d < MDM_DIAG__COUNT ? diags[d].code : "unknown";
}

const char *mdm_diag_text(int d)
{
    return d >= 0 && d < MDM_DIAG__COUNT ? diags[d].text : "unknown";
}

uint32_t mdm_diag_hresult(int d)
{
    return d >= 0 && d < MDM_DIAG__COUNT ? diags[d].hr : 0x80004005u;
}

int64_t mdm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keeps printable ASCII only: the reason goes into a JSON audit line and a log. */
static void copy_printable(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    for (; src != NULL && *src != '\0' && n + 1 < size; src++)
        dst[n++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
    dst[n] = '\0';
}

void mdm_verdict_set(mdm_verdict *v, int result, int diag, const char *code, const char *reason)
{
    v->result = result;
    v->diag = diag;
    v->hresult = result == MDM_ALLOW ? 0 : mdm_diag_hresult(diag);
    copy_printable(v->code, sizeof(v->code), code);
    copy_printable(v->reason, sizeof(v->reason), reason != NULL ? reason : mdm_diag_text(diag));
}

char *mdm_base64(const uint8_t *b, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, b, (int)n);
    return out;
}

/* ---- transfers ---------------------------------------------------------------------------- */

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    mdm_xfer *x = arg;
    size_t n = size * nmemb;
    if (x->resp_len + n + 1 > MDM_RESPONSE_MAX)
        return 0;                             /* libcurl fails the transfer: CURLE_WRITE_ERROR */
    if (x->resp_len + n + 1 > x->resp_cap) {
        /* 960: a typical answer fits below glibc's large-block size (1 KiB), whose malloc
         * consolidates the arena's small free blocks first. */
        size_t cap = x->resp_cap == 0 ? 960 : x->resp_cap;
        while (cap < x->resp_len + n + 1)
            cap *= 2;
        char *r = realloc(x->resp, cap);
        if (r == NULL)
            return 0;
        x->resp = r;
        x->resp_cap = cap;
    }
    memcpy(x->resp + x->resp_len, p, n);
    x->resp_len += n;
    x->resp[x->resp_len] = '\0';
    return n;
}

mdm_xfer *mdm_xfer_new(mdm_stage *s, const char *url, struct curl_slist *headers, char *body,
                       size_t body_len, const char *ca_file, void (*done)(mdm_xfer *x),
                       void *owner)
{
    mdm_xfer *x = calloc(1, sizeof(*x));
    char *u = strdup(url);
    if (x == NULL || u == NULL) {
        free(x);
        free(u);
        curl_slist_free_all(headers);
        free(body);
        return NULL;
    }
    x->stage = s;
    x->url = u;
    x->headers = headers;
    x->body = body;
    x->body_len = body_len;
    x->ca_file = ca_file;
    x->done = done;
    x->owner = owner;
    return x;
}

/* A finished handle goes back to the idle list: curl_easy_init allocates the handle and, at
 * its first transfer, its receive buffer (large blocks, each a malloc_consolidate of the
 * stage thread's arena); curl_easy_reset keeps both. Connections live in the multi handle's
 * pool either way. */
static void xfer_detach(mdm_xfer *x)
{
    mdm_stage *s = x->stage;
    if (x->easy != NULL) {
        curl_multi_remove_handle(s->multi, x->easy);
        if (s->nidle < MDM_IDLE_EASY)
            s->idle[s->nidle++] = x->easy;
        else
            curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
}

static CURL *easy_get(mdm_stage *s)
{
    if (s->nidle == 0)
        return curl_easy_init();
    CURL *e = s->idle[--s->nidle];
    curl_easy_reset(e);                   /* every option back to its default */
    return e;
}

/* Each attempt sets every option, on a new handle or a reset one. */
void mdm_xfer_start(mdm_xfer *x)
{
    mdm_stage *s = x->stage;
    xfer_detach(x);
    x->attempts++;
    x->status = 0;
    x->resp_len = 0;
    if (x->resp != NULL)
        x->resp[0] = '\0';
    atomic_fetch_add(&s->http_attempts, 1);
    CURL *e = easy_get(s);
    if (e == NULL) {
        x->cc = CURLE_OUT_OF_MEMORY;
        x->done(x);
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, s->cfg.provider);
    if (x->ca_file != NULL && x->ca_file[0] != '\0')
        curl_easy_setopt(e, CURLOPT_CAINFO, x->ca_file);
    if (x->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    }
    x->easy = e;
    if (curl_multi_add_handle(s->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        x->easy = NULL;
        x->cc = CURLE_FAILED_INIT;
        x->done(x);
    }
}

void mdm_xfer_free(mdm_xfer *x)
{
    if (x == NULL)
        return;
    if (x->retry_wait) {
        mdm_xfer **pp = &x->stage->retry_list;
        while (*pp != NULL && *pp != x)
            pp = &(*pp)->wait_next;
        if (*pp == x)
            *pp = x->wait_next;
    }
    xfer_detach(x);
    curl_slist_free_all(x->headers);
    if (x->body != NULL) {
        OPENSSL_cleanse(x->body, x->body_len);   /* token requests carry the secret */
        free(x->body);
    }
    free(x->url);
    free(x->resp);
    free(x);
}

static int tls_failure(CURLcode cc)
{
    return cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE ||
           cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_SSL_CERTPROBLEM;
}

int mdm_xfer_ok(const mdm_xfer *x)
{
    return x->cc == CURLE_OK && x->status >= 200 && x->status < 300;
}

void mdm_verdict_from_xfer(const mdm_xfer *x, mdm_verdict *v)
{
    char why[256];
    int diag;
    if (x->cc == CURLE_OPERATION_TIMEDOUT)
        diag = MDM_DIAG_TIMEOUT;
    else if (tls_failure(x->cc))
        diag = MDM_DIAG_TLS;
    else if (x->cc != CURLE_OK)
        diag = MDM_DIAG_UNAVAILABLE;
    else if (x->status >= 500 || x->status == 429)
        diag = MDM_DIAG_UNAVAILABLE;
    else if (x->status == 401 || x->status == 403)
        diag = MDM_DIAG_AUTH;
    else
        diag = MDM_DIAG_BAD_ANSWER;
    if (x->cc != CURLE_OK)
        snprintf(why, sizeof(why), "%s after %d attempt(s): %s", mdm_diag_text(diag), x->attempts,
                 curl_easy_strerror(x->cc));
    else
        snprintf(why, sizeof(why), "%s: HTTP %ld after %d attempt(s)", mdm_diag_text(diag),
                 x->status, x->attempts);
    mdm_verdict_set(v, MDM_ERROR, diag, "", why);
    v->http_status = (int)x->status;
    v->attempts = x->attempts;
}

/* Transport errors (but a certificate that does not verify), 5xx and 429 are retried. */
static int retryable(const mdm_xfer *x)
{
    if (x->cc != CURLE_OK)
        return !tls_failure(x->cc) && x->cc != CURLE_WRITE_ERROR &&
               x->cc != CURLE_OUT_OF_MEMORY && x->cc != CURLE_FAILED_INIT;
    return x->status >= 500 || x->status == 429;
}

static int64_t backoff_ms(const mdm_stage *s, int attempts)
{
    int64_t d = s->cfg.retry_backoff_ms;
    for (int i = 1; i < attempts && d < 60000; i++)
        d *= 2;
    uint16_t r = 0;
    if (d > 0 && RAND_bytes((unsigned char *)&r, sizeof(r)) == 1)
        d = d * 3 / 4 + (int64_t)(r % (unsigned)(d / 2 + 1));
    return d;
}

static void xfer_finished(mdm_xfer *x, CURLcode cc)
{
    mdm_stage *s = x->stage;
    long st = 0, conns = 0;
    x->cc = cc;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &conns);
    x->status = st;
    atomic_fetch_add(&s->connects, conns);
    xfer_detach(x);
    if (retryable(x) && x->attempts <= s->cfg.retries) {
        x->due_ms = mdm_now_ms() + backoff_ms(s, x->attempts);
        x->retry_wait = 1;
        x->wait_next = s->retry_list;
        s->retry_list = x;
        return;
    }
    x->done(x);
}

/* ---- ops and the stage thread ------------------------------------------------------------- */

/* Any thread. The stage reads wake_fd before it takes the inbox under the lock, so a push
 * that finds the inbox non-empty is covered by the wake-up of the push that filled it. */
static void stage_wake(mdm_stage *s)
{
    uint64_t one = 1;
    while (write(s->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

int mdm_stage_post(mdm_stage *s, mdm_op *op, int counted)
{
    if (counted && atomic_fetch_add(&s->in_flight, 1) >= s->cfg.max_in_flight) {
        atomic_fetch_sub(&s->in_flight, 1);
        return -EAGAIN;
    }
    op->stage = s;
    op->counted = counted;
    op->next = NULL;
    pthread_mutex_lock(&s->lock);
    int stopping = s->stopping, was_empty = s->inbox_head == NULL;
    if (!stopping) {
        if (s->inbox_tail != NULL)
            s->inbox_tail->next = op;
        else
            s->inbox_head = op;
        s->inbox_tail = op;
    }
    pthread_mutex_unlock(&s->lock);
    if (stopping) {
        if (counted)
            atomic_fetch_sub(&s->in_flight, 1);
        return -ESHUTDOWN;
    }
    if (was_empty)          /* else the push that filled it woke the stage, not yet served */
        stage_wake(s);
    return 0;
}

void mdm_op_complete(mdm_op *op, const mdm_verdict *v)
{
    mdm_stage *s = op->stage;
    int counted = op->counted;
    if (op->prev != NULL) {                 /* in the live list */
        op->prev->next = op->next;
        op->next->prev = op->prev;
        op->prev = op->next = NULL;
    }
    mdm_xfer_free(op->xfer);
    op->xfer = NULL;
    if (counted)                            /* first: the callback may submit again */
        atomic_fetch_sub(&s->in_flight, 1);
    op->finish(op, v);                      /* frees op */
}

/* Starts the retries that are due; returns the next due time of the rest (-1: none). */
static int64_t run_retries(mdm_stage *s, int64_t now_ms)
{
    int64_t next = -1;
    mdm_xfer **pp = &s->retry_list;
    while (*pp != NULL) {
        mdm_xfer *x = *pp;
        if (x->due_ms <= now_ms) {
            *pp = x->wait_next;
            x->retry_wait = 0;
            x->wait_next = NULL;
            mdm_xfer_start(x);
            continue;
        }
        if (next < 0 || x->due_ms < next)
            next = x->due_ms;
        pp = &x->wait_next;
    }
    return next;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CURLMOPT_SOCKETFUNCTION: curl says what to watch on a socket. socketp (curl_multi_assign)
 * marks a socket registered in the epoll set. A socket curl already closed is gone from the
 * set (EBADF / ENOENT on DEL); a reused descriptor number is re-added (EEXIST / ENOENT). */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    mdm_stage *s = userp;
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        if (socketp != NULL) {
            epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, fd, NULL);   /* EBADF, ENOENT: already gone */
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    struct epoll_event ev = { .events = 0, .data.fd = fd };
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    int op = socketp != NULL ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int rc = epoll_ctl(s->epoll_fd, op, fd, &ev);
    if (rc != 0 && (errno == EEXIST || errno == ENOENT))
        rc = epoll_ctl(s->epoll_fd, errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0)
        return -1;                         /* curl fails the transfers on this socket */
    if (socketp == NULL)
        curl_multi_assign(s->multi, fd, s);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's one deadline. Called from inside curl (add_handle too):
 * only recorded here; the loop runs the timeout action. */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    mdm_stage *s = userp;
    (void)m;
    s->timer_calls++;
    s->curl_due_us = timeout_ms < 0 ? -1 : now_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

/* Delivers the finished transfers. Their done callbacks may start or free transfers: they
 * run here, never inside a curl callback. */
static void read_done(mdm_stage *s)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        mdm_xfer *x = NULL;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        xfer_finished(x, cc);
    }
}

/* Runs curl's timeout action when its deadline has passed. A deadline reached a little
 * early (rounding) leaves curl's timer unchanged, and curl does not call on_timer again for
 * an unchanged timer: then its deadline is asked for. */
static void run_curl_timer(mdm_stage *s, int64_t now)
{
    int running;
    if (s->curl_due_us < 0 || s->curl_due_us > now)
        return;
    unsigned calls = s->timer_calls;
    s->curl_due_us = -1;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (s->timer_calls == calls) {
        long ms = -1;
        if (curl_multi_timeout(s->multi, &ms) == CURLM_OK && ms >= 0)
            s->curl_due_us = now_us() + (int64_t)ms * 1000;
    }
}

/* Takes the inbox and starts its ops. Returns 1 when the stage is stopping: the batch is put
 * back so destroy fails it with the rest. */
static int take_inbox(mdm_stage *s)
{
    uint64_t n;
    while (read(s->wake_fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&s->lock);
    int stop = s->stopping;
    mdm_op *in = stop ? NULL : s->inbox_head;
    if (!stop)
        s->inbox_head = s->inbox_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (in != NULL) {
        mdm_op *op = in;
        in = in->next;
        op->next = s->live.next;           /* link first: start may complete it */
        op->prev = &s->live;
        s->live.next->prev = op;
        s->live.next = op;
        op->start(op);
    }
    return stop;
}

/* How long epoll_wait may sleep: until curl's deadline or the next retry, rounded up. */
static int wait_ms(const mdm_stage *s, int64_t now, int64_t retry_due_ms)
{
    int64_t due = s->curl_due_us;
    if (retry_due_ms >= 0 && (due < 0 || retry_due_ms * 1000 < due))
        due = retry_due_ms * 1000;
    if (due < 0)
        return -1;
    if (due <= now)
        return 0;
    int64_t ms = (due - now + 999) / 1000;
    return ms > 60000 ? 60000 : (int)ms;
}

static void *stage_main(void *arg)
{
    mdm_stage *s = arg;
    struct epoll_event ev[64];
    int64_t retry_due = -1;
    for (;;) {
        int n = epoll_wait(s->epoll_fd, ev, 64, wait_ms(s, now_us(), retry_due));
        atomic_fetch_add_explicit(&s->wakeups, 1, memory_order_relaxed);
        int wake = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.fd == s->wake_fd) {
                wake = 1;
                continue;
            }
            int bits = 0, running;
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                bits |= CURL_CSELECT_IN;
            if (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                bits |= CURL_CSELECT_OUT;
            curl_multi_socket_action(s->multi, ev[i].data.fd, bits, &running);
        }
        if (wake && take_inbox(s))
            break;
        int64_t now = now_us();
        run_retries(s, now / 1000);
        run_curl_timer(s, now);
        read_done(s);
        retry_due = run_retries(s, now / 1000);    /* the list is short: retries only */
    }
    return NULL;
}

static void verdict_shutdown(mdm_verdict *v)
{
    memset(v, 0, sizeof(*v));
    mdm_verdict_set(v, MDM_ERROR, MDM_DIAG_SHUTDOWN, "", NULL);
}

void mdm_stage_destroy(mdm_stage *s)
{
    if (s == NULL)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stopping = 1;
        pthread_mutex_unlock(&s->lock);
        stage_wake(s);
        pthread_join(s->thread, NULL);
    }
    mdm_verdict v;
    verdict_shutdown(&v);
    while (s->live.next != NULL && s->live.next != &s->live)
        mdm_op_complete(s->live.next, &v);
    mdm_op *op = s->inbox_head;
    s->inbox_head = s->inbox_tail = NULL;
    while (op != NULL) {
        mdm_op *n = op->next;
        op->prev = op->next = NULL;
        mdm_op_complete(op, &v);
        op = n;
    }
    intune_state_free(s->intune);
    while (s->retry_list != NULL)          /* only token / discovery transfers remain */
        mdm_xfer_free(s->retry_list);
    while (s->nidle > 0)
        curl_easy_cleanup(s->idle[--s->nidle]);
    if (s->multi != NULL)
        curl_multi_cleanup(s->multi);      /* may still call on_socket: epoll_fd is open */
    if (s->epoll_fd >= 0)
        close(s->epoll_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    pthread_mutex_destroy(&s->lock);
    mdm_config_cleanse(&s->cfg);
    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

/* libcurl's global state, once per process, before any of its threads exists. */
static void init_curl(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int mdm_stage_create(const mdm_config *cfg, audit *a, mdm_stage **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    int rc = -ENOMEM;
    mdm_stage *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    s->audit = a;
    s->live.next = s->live.prev = &s->live;
    s->curl_due_us = -1;
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_once(&once, init_curl);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->wake_fd };
    if (s->wake_fd < 0 || s->epoll_fd < 0 ||
        epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0) {
        rc = -errno;
        goto out;
    }
    s->multi = curl_multi_init();
    if (s->multi == NULL)
        goto out;
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_connections);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    if (mdm_config_intune_enabled(cfg) && (rc = intune_state_create(s, &s->intune)) != 0)
        goto out;
    if ((rc = -pthread_create(&s->thread, NULL, stage_main, s)) != 0)
        goto out;
    s->thread_started = 1;
    pthread_setname_np(s->thread, "scepd-mdm");      /* top -H, perf --sort comm */
    rc = 0;
out:
    if (rc == 0)
        *out = s;
    else
        mdm_stage_destroy(s);
    return rc;
}

int mdm_submit(mdm_stage *s, const mdm_request *f, mdm_done_fn done, void *arg)
{
    if (s == NULL || f == NULL || done == NULL || f->txid == NULL || f->txid[0] == '\0' ||
        f->csr_der == NULL || f->csr_len == 0)
        return -EINVAL;
    switch (f->kind) {
    case MDM_INTUNE:
        return s->intune != NULL ? intune_validate(s, f, done, arg) : -ENOTSUP;
    case MDM_WEBHOOK:
        return mdm_config_webhook_enabled(&s->cfg) ? webhook_validate(s, f, done, arg) : -ENOTSUP;
    default:
        return -EINVAL;
    }
}

void mdm_stage_stats(mdm_stage *s, mdm_stats *o)
{
    o->in_flight = atomic_load(&s->in_flight);
    o->http_attempts = atomic_load(&s->http_attempts);
    o->token_fetches = atomic_load(&s->token_fetches);
    o->discoveries = atomic_load(&s->discoveries);
    o->connects = atomic_load(&s->connects);
}
