/* sdnotify: one datagram per state change to systemd's notification socket. The protocol is
 * small enough (sd_notify(3), "KEY=VALUE" lines over AF_UNIX/SOCK_DGRAM) that linking
 * libsystemd for it would add a run-time dependency and a library on every start path for
 * nothing; no credentials or file descriptors are passed. */
#include "engine/common/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify(const char *state)
{
    const char *addr = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun;
    int fd = -1, rc = 0;

    if (addr == NULL || addr[0] == '\0' || state == NULL)
        goto out;
    size_t alen = strlen(addr);
    if ((addr[0] != '/' && addr[0] != '@') || alen < 2 || alen >= sizeof(sun.sun_path)) {
        rc = -EINVAL;
        goto out;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, addr, alen);
    /* An abstract address starts with a NUL byte and its length is exact (no terminator);
     * a path's length includes the terminating NUL. */
    socklen_t slen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
    if (addr[0] == '@')
        sun.sun_path[0] = '\0';
    else
        slen++;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    ssize_t n;
    do
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, slen);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}
