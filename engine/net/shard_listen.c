/* shard: the listening sockets of a shard (SO_REUSEPORT, so every shard binds the same
 * addresses and the kernel spreads connections over them). What a listener speaks (plain,
 * TLS) is the shard's business (shard_add_listener); opening one is the same for all. */
#include "engine/net/shard.h"
#include "engine/net/shard_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int resolve_host(const char *host, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    char h[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof(h))
        return -EINVAL;
    memcpy(h, host, n);
    h[n] = '\0';
    if (n == 0 || strcmp(h, "*") == 0)
        strcpy(h, "0.0.0.0");
    else if (strcmp(h, "localhost") == 0)
        strcpy(h, "127.0.0.1");

    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return 0;
    }
    return -EINVAL;
}

int shard_open_listener(const char *host, uint16_t port, int *fd_out, uint16_t *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = -1, one = 1;
    int rc = resolve_host(host, port, &ss, &len);
    if (rc != 0)
        goto out;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        goto out;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
        goto out;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
out:
    if (rc == 0) {
        *fd_out = fd;
        fd = -1;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}
