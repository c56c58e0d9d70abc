/* audit: the line format, the synchronous and the asynchronous mode, and a target that does
 * not read: producers never wait, drops are counted and reported once the target drains. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/common/audit.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 1 << 20);
    if (f != NULL && buf != NULL)
        buf[fread(buf, 1, (1 << 20) - 1, f)] = '\0';
    if (f != NULL)
        fclose(f);
    return buf;
}

static size_t count_of(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void tmp_path(char *out, size_t len)
{
    snprintf(out, len, "/tmp/test_audit.%ld.log", (long)getpid());
    unlink(out);
}

static void test_sync_line(void **state)
{
    (void)state;
    char path[64];
    audit *a = NULL;
    tmp_path(path, sizeof(path));
    assert_int_equal(audit_open(path, &a), 0);
    audit_fields f = {.diag = "queue_full", .peer = "127.0.0.1:1", .failinfo = -1,
                      .http_status = 503, .count = 3, .detail = "a \"quoted\"\n"};
    audit_emit(a, AUDIT_OVERLOADED, &f);
    audit_close(a);
    char *s = slurp(path);
    assert_non_null(strstr(s, "\"event\":2003,\"name\":\"OVERLOADED\",\"diag\":\"queue_full\","
                              "\"http_status\":503,\"count\":3,\"peer\":\"127.0.0.1:1\","
                              "\"detail\":\"a \\\"quoted\\\"\\u000a\"}\n"));
    free(s);
    unlink(path);
}

typedef struct producer {
    audit *a;
    unsigned ring;
    int lines;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    audit_bind_thread(p->a, p->ring);
    for (int i = 0; i < p->lines; i++) {
        audit_fields f = {.detail = p->ring == 1 ? "from ring one" : "from ring two",
                          .failinfo = -1};
        audit_emit(p->a, AUDIT_HTTP_REJECTED, &f);
    }
    return NULL;
}

/* Three producers (two bound rings, one on the shared ring): every line arrives, whole. */
static void test_async_all_lines(void **state)
{
    (void)state;
    char path[64];
    audit *a = NULL;
    pthread_t th[2];
    tmp_path(path, sizeof(path));
    assert_int_equal(audit_open(path, &a), 0);
    assert_int_equal(audit_start(a, 3, 1 << 20), 0);
    producer p1 = {a, 1, 500}, p2 = {a, 2, 500};
    assert_int_equal(pthread_create(&th[0], NULL, produce, &p1), 0);
    assert_int_equal(pthread_create(&th[1], NULL, produce, &p2), 0);
    for (int i = 0; i < 500; i++) {
        audit_fields f = {.detail = "from ring zero", .failinfo = -1};
        audit_emit(a, AUDIT_STARTED, &f);
    }
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    audit_close(a);
    char *s = slurp(path);
    assert_int_equal(count_of(s, "\"detail\":\"from ring one\"}\n"), 500);
    assert_int_equal(count_of(s, "\"detail\":\"from ring two\"}\n"), 500);
    assert_int_equal(count_of(s, "\"detail\":\"from ring zero\"}\n"), 500);
    assert_int_equal(count_of(s, "\n"), 1500);
    assert_int_equal(count_of(s, "LOG_DROPPED"), 0);
    free(s);
    unlink(path);
}

/* A pipe nobody reads: audit_emit returns every time (the test would hang otherwise), lines
 * are dropped and counted; once the pipe is read, a LOG_DROPPED line carries the count. */
static void test_blocked_target(void **state)
{
    (void)state;
    int fds[2];
    char path[64];
    audit *a = NULL;
    assert_int_equal(pipe(fds), 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
    assert_int_equal(audit_open(path, &a), 0);
    assert_int_equal(audit_start(a, 2, 16 << 10), 0);
    char detail[200];
    memset(detail, 'x', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    for (int i = 0; i < 3000; i++) {     /* ~750 KB: far more than the pipe and the ring */
        audit_fields f = {.detail = detail, .failinfo = -1};
        audit_emit(a, AUDIT_HTTP_REJECTED, &f);
    }
    unsigned long long dropped = audit_dropped(a);
    assert_true(dropped > 0);
    assert_true(dropped < 3000);

    /* Drain until the report shows up (bounded: 20 s of one-second polls). */
    assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    size_t cap = 4 << 20, got = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    unsigned long long reported = 0;
    size_t reports = 0;
    for (int tries = 0; tries < 20 && reported < dropped; tries++) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        poll(&p, 1, 1000);
        ssize_t n;
        while (got < cap && (n = read(fds[0], buf + got, cap - got)) > 0)
            got += (size_t)n;
        buf[got] = '\0';
        /* The writer may report in several lines (drops while it was still writing). */
        reported = 0;
        reports = 0;
        const char *key = "\"name\":\"LOG_DROPPED\",\"count\":";
        for (const char *q = buf; (q = strstr(q, key)) != NULL; q += strlen(key)) {
            reported += strtoull(q + strlen(key), NULL, 10);
            reports++;
        }
    }
    assert_true(reports >= 1);
    assert_int_equal(reported, dropped);
    assert_int_equal(count_of(buf, "\n"), 3000 - dropped + reports);   /* kept + reports */
    audit_close(a);
    free(buf);
    close(fds[0]);
    close(fds[1]);
}

/* audit_stop with the target still blocked returns (after its wait) and counts the rest. */
static void test_stop_while_blocked(void **state)
{
    (void)state;
    int fds[2];
    char path[64];
    audit *a = NULL;
    assert_int_equal(pipe(fds), 0);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[1]);
    assert_int_equal(audit_open(path, &a), 0);
    assert_int_equal(audit_start(a, 1, 64 << 10), 0);
    char detail[200];
    memset(detail, 'y', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    for (int i = 0; i < 1000; i++) {
        audit_fields f = {.detail = detail, .failinfo = -1};
        audit_emit(a, AUDIT_HTTP_REJECTED, &f);
    }
    audit_stop(a, 100);
    assert_true(audit_dropped(a) > 0);
    audit_close(a);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_line),
        cmocka_unit_test(test_async_all_lines),
        cmocka_unit_test(test_blocked_target),
        cmocka_unit_test(test_stop_while_blocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
