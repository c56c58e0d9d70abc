#!/usr/bin/env bash
# The audit target blocks (issue 14, DESIGN.md invariant 1): audit_log is a FIFO that this
# script holds open and does not read. Thousands of audited refusals (404) fill the pipe and
# then the audit rings; the shards go on answering (GetCACaps, /healthz, the refusals
# themselves), lines beyond the rings are dropped and counted, and once the FIFO is read the
# drop count arrives as LOG_DROPPED (3100): the 404 lines kept plus the lines counted as
# dropped are exactly the 404s sent. Every wait is bounded; nothing asserts a time.
. "$(dirname "$0")/lib.sh"
need_cmd python3 curl

init_state
FIFO=$T/audit.fifo
mkfifo "$FIFO"
exec 3<>"$FIFO"            # a reader that never reads (read-write: open does not block)
sed -i "s|^audit_log = .*|audit_log = $FIFO|" "$CONF"
start_scepd
cd "$T"

is() { [ "$1" = "$2" ] || { log "  got '$1', want '$2'"; return 1; }; }

# pipeline.py PORT N: N pipelined GET /nope on one keep-alive connection, every answer read;
# prints how many were 404.
cat > pipeline.py <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
req = b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
got, buf, sent = 0, b"", 0
while sent < n:
    k = min(200, n - sent)
    s.sendall(req * k)
    sent += k
    while got < sent:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while True:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = buf[:i].decode("latin-1")
            clen = 0
            for h in head.split("\r\n")[1:]:
                if h.lower().startswith("content-length:"):
                    clen = int(h.split(":", 1)[1])
            if len(buf) < i + 4 + clen:
                break
            if head.split()[1] == "404":
                got += 1
            buf = buf[i + 4 + clen:]
    if got < sent:
        break
print(got)
PY

# drain.py: reads the FIFO (stdin) until LOG_DROPPED lines account for every line lost, or 60 s.
cat > drain.py <<'PY'
import os, re, select, sys, time
want = int(sys.argv[1]); out = open(sys.argv[2], "wb"); data = b""
end = time.monotonic() + 60
while time.monotonic() < end:
    r, _, _ = select.select([0], [], [], 0.5)
    if r:
        chunk = os.read(0, 1 << 16)
        data += chunk
        out.write(chunk); out.flush()
        continue
    kept = data.count(b'"event":2001,')
    lost = sum(int(m) for m in re.findall(rb'"name":"LOG_DROPPED","count":(\d+)', data))
    if lost > 0 and kept + lost >= want:
        break
PY

N=8000
sent=$(python3 pipeline.py "$PORT" "$N")
check "with the audit pipe full: every one of $N refusals answered 404" is "$sent" "$N"
check "with the audit pipe full: GetCACaps 200" \
  is "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$URL?operation=GetCACaps")" 200
check "with the audit pipe full: /healthz 200" \
  is "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" 200

python3 drain.py "$N" audit.out <&3
kept=$(grep -c '"event":2001,' audit.out || true)
lost=$(sed -n 's/.*"name":"LOG_DROPPED","count":\([0-9]*\).*/\1/p' audit.out | awk '{ s += $1 } END { print s + 0 }')
log "  404 lines kept $kept, dropped $lost"
check "lines were dropped while the pipe was full" test "$lost" -ge 1
check "once drained: LOG_DROPPED (3100) counts every line that was lost" is "$((kept + lost))" "$N"
check "after draining: GetCACaps 200" \
  is "$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$URL?operation=GetCACaps")" 200
# scepd's last lines (STOPPED) go to the pipe: keep reading while it stops.
cat <&3 > /dev/null &
reader=$!
finish_rc=0
finish || finish_rc=$?
kill "$reader" 2>/dev/null || true
exit $finish_rc
