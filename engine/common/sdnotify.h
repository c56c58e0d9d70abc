/* sdnotify: telling systemd how the service is doing (sd_notify(3)'s protocol) without
 * linking libsystemd. systemd passes the address of a unix datagram socket in NOTIFY_SOCKET
 * to a Type=notify service; one datagram of "KEY=VALUE\n" lines is one state change. Outside
 * systemd (NOTIFY_SOCKET unset) every call does nothing and succeeds. */
#ifndef SCEPD_SDNOTIFY_H
#define SCEPD_SDNOTIFY_H

/* Sends state (e.g. "READY=1" or "STOPPING=1\nSTATUS=shutting down"; copied, not kept) to
 * the socket named by NOTIFY_SOCKET: a path ("/run/systemd/notify") or an abstract name
 * ("@..."). Returns 0 when sent or when NOTIFY_SOCKET is unset or empty; -EINVAL for an
 * address that is not one of those forms or too long, or -errno of socket/sendto. Safe from
 * any thread; not async-signal-safe (reads the environment). */
int sdnotify(const char *state);

#endif
