/* See file.h. */
#include "engine/common/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

int file_read(const char *path, size_t max, char **out, size_t *outlen)
{
    int rc = 0;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        rc = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
        goto out;
    }
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* Read to EOF, not to st_size: the file may have grown or shrunk since fstat. */
    for (;;) {
        if (len == cap - 1) {
            char probe;
            ssize_t n = read(fd, &probe, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                rc = -errno;
                goto out;
            }
            if (n > 0) {
                rc = -EFBIG;
                goto out;
            }
            break;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
out:
    close(fd);
    if (rc == 0) {
        *out = buf;
        *outlen = len;
        buf = NULL;
    }
    if (buf != NULL) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
    }
    return rc;
}

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
