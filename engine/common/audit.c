/* JSON-lines audit log. See audit.h. */
#include "engine/common/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct audit {
    int fd;
    int owns_fd;
    atomic_ulong write_errors;
};

const char *audit_event_name(int event)
{
    switch (event) {
#define X(name, id, text) case id: return #name;
    AUDIT_EVENTS(X)
#undef X
    default: return "UNKNOWN";
    }
}

int audit_open(const char *path, audit **out)
{
    audit *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    if (path == NULL || strcmp(path, "-") == 0 || path[0] == '\0') {
        a->fd = STDOUT_FILENO;
    } else {
        a->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (a->fd < 0) {
            int e = errno;
            free(a);
            return -e;
        }
        a->owns_fd = 1;
    }
    *out = a;
    return 0;
}

void audit_close(audit *a)
{
    if (a == NULL)
        return;
    if (a->owns_fd)
        close(a->fd);
    free(a);
}

/* Appends s as a JSON string body (escaped) to buf; returns the new length (bounded). */
static size_t json_str(char *buf, size_t len, size_t cap, const char *s)
{
    for (; s != NULL && *s != '\0' && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

static size_t json_field(char *buf, size_t len, size_t cap, const char *key, const char *val)
{
    if (val == NULL || val[0] == '\0' || len + strlen(key) + 8 >= cap)
        return len;
    len += (size_t)snprintf(buf + len, cap - len, ",\"%s\":\"", key);
    len = json_str(buf, len, cap, val);
    if (len + 2 < cap)
        buf[len++] = '"';
    return len;
}

void audit_emit(audit *a, int event, const audit_fields *f)
{
    char buf[4096];
    size_t len = 0, cap = sizeof(buf) - 2;
    struct timeval tv;
    struct tm tm;

    if (a == NULL)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len += strftime(buf, cap, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(buf + len, cap - len, ".%03ldZ\",\"event\":%d,\"name\":\"%s\"",
                            (long)(tv.tv_usec / 1000), event, audit_event_name(event));
    if (f != NULL) {
        len = json_field(buf, len, cap, "diag", f->diag);
        if (f->failinfo >= 0 && len + 24 < cap)
            len += (size_t)snprintf(buf + len, cap - len, ",\"failinfo\":%d", f->failinfo);
        if (f->http_status > 0 && len + 24 < cap)
            len += (size_t)snprintf(buf + len, cap - len, ",\"http_status\":%d", f->http_status);
        len = json_field(buf, len, cap, "txid", f->txid);
        len = json_field(buf, len, cap, "profile", f->profile);
        len = json_field(buf, len, cap, "subject", f->subject);
        len = json_field(buf, len, cap, "serial", f->serial);
        len = json_field(buf, len, cap, "peer", f->peer);
        len = json_field(buf, len, cap, "detail", f->detail);
    }
    if (len > cap)
        len = cap;
    buf[len++] = '}';
    buf[len++] = '\n';
    if (write(a->fd, buf, len) != (ssize_t)len)
        atomic_fetch_add(&a->write_errors, 1);
}
