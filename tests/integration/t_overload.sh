#!/usr/bin/env bash
# Overload: bounded admission and dropped work (issue 14). SoftHSM behind the fault-injecting
# PKCS#11 module (tests/p11fault), one crypto worker, queue_max = 2.
#  (a) A flood of valid PKIOperations whose clients close as soon as they have sent: scepd's
#      peak RSS stays within the bound docs/architecture.md gives ("Bounded admission":
#      queue_max x (max_body + 16 KiB) + 24 MiB of slack for threads' arenas and connection
#      buffers), most of the flood never reaches the token (dropped as client_gone or refused
#      as queue_full), and afterwards the server enrolls normally.
#  (b) The token is slow (p11fault latency), so the queue is full while a burst arrives:
#      refused PKIOperations and OCSP requests get HTTP 503 with Retry-After, and the token's
#      call log shows private-key operations only for the admitted requests.
# Every wait is bounded; nothing asserts a time.
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/p11fault/p11fault.sh"
need_cmd python3 openssl curl
REQ=$BUILD/tests/scep_req

# Under ASan (make test-asan) freed memory waits in a quarantine before reuse: keep it small
# and allow it, and the shadow memory, on top of the bound.
asan_slack=0
if ldd "$BUILD/scepd" 2>/dev/null | grep -q libasan; then
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
  asan_slack=$((64 * 1024))
fi

init_state
p11fault_use
sed -i 's/^crypto_workers = .*/crypto_workers = 1\nqueue_max = 2\nrequest_timeout = 60s/' "$CONF"
start_scepd
cd "$T"

is() { [ "$1" = "$2" ] || { log "  got '$1', want '$2'"; return 1; }; }
le() { [ "$1" -le "$2" ] || { log "  $1 > $2"; return 1; }; }
kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$SCEPD_PID/status"; }
enroll() { local n=$1; shift; "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --key "$T/$n.key" --cert-out "$T/$n.pem" "$@" > "$T/$n.out" 2> "$T/$n.err" || true; }
succeeded() { grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" || { log "  got: $(cat "$T/$1.out" "$T/$1.err")"; return 1; }; }
# count_sum EVENT DIAG: the sum of "count" over the audit lines of EVENT with DIAG.
count_sum() {
  grep -F "\"event\":$1," "$STATE/audit.log" | grep -F "\"diag\":\"$2\"" |
    sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}

# burst.py: sends requests on their own connections, from a list of "KIND FILE" lines.
#  flood N THREADS FILE: N POSTs of FILE, each connection closed right after sending.
#  burst LIST OUT: opens one connection per line first, then sends all, then reads each
#  answer; OUT gets "INDEX STATUS RETRY-AFTER" lines (- when absent).
cat > burst.py <<'PY'
import socket, sys, threading, time
port = int(sys.argv[1]); mode = sys.argv[2]
def request(path, ctype, body):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
PKI = "/scep?operation=PKIOperation"
if mode == "flood":
    n, nthreads, body = int(sys.argv[3]), int(sys.argv[4]), open(sys.argv[5], "rb").read()
    req = request(PKI, "application/x-pki-message", body)
    deadline = time.monotonic() + 120
    sent = [0] * nthreads
    def run(k):
        for _ in range(n // nthreads):
            if time.monotonic() > deadline:
                break
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(req)
            s.close()
            sent[k] += 1
    ts = [threading.Thread(target=run, args=(k,)) for k in range(nthreads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(sum(sent))
else:
    items = [l.split() for l in open(sys.argv[3]) if l.strip()]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in items]
    for s, (kind, f) in zip(socks, items):
        body = open(f, "rb").read()
        if kind == "pki":
            s.sendall(request(PKI, "application/x-pki-message", body))
        else:
            s.sendall(request("/ocsp", "application/ocsp-request", body))
    with open(sys.argv[4], "w") as out:
        for i, s in enumerate(socks):
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            status = head[0].split()[1] if head and len(head[0].split()) > 1 else "none"
            retry = "-"
            for h in head[1:]:
                if h.lower().startswith("retry-after:"):
                    retry = h.split(":", 1)[1].strip()
            out.write(f"{i} {items[i][0]} {status} {retry}\n")
            s.close()
PY

# --- (a) a flood of PKIOperations whose clients close at once ---
FLOOD=3000
enroll warm --cn warm
check "before the flood: an enrollment SUCCESS" succeeded warm
enroll_emit flood --challenge "$CHALLENGE_VALUE" --cn flood
p11fault_set "latency private 20"
rss0=$(kib VmRSS)
m=$(p11fault_mark)
sent=$(python3 burst.py "$PORT" flood "$FLOOD" 4 flood.msg)
check "flood: every request sent" is "$sent" "$FLOOD"
# The server is answering again once /healthz does (bounded: 60 s).
for _ in $(seq 1 120); do curl -fsS --max-time 5 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.5; done
p11fault_set
hwm=$(kib VmHWM)
max_body=$((256 * 1024))
bound=$(( (2 * (max_body + 16384) + 24 * 1024 * 1024) / 1024 + asan_slack ))
log "  RSS before the flood ${rss0} KiB, peak ${hwm} KiB, bound ${bound} KiB above the start"
check "flood: peak RSS within queue_max x (max_body + 16 KiB) + 24 MiB of the start" le "$((hwm - rss0))" "$bound"
dec=$(p11fault_count "$m" 'C_Decrypt CKR_OK real')
log "  flood: $dec of $FLOOD requests reached the token"
check "flood: fewer than a tenth of the requests reached the token (C_Decrypt)" le "$dec" "$((FLOOD / 10))"
enroll after --cn after
check "after the flood: an enrollment SUCCESS" succeeded after
check "after the flood: GetCACaps 200" is "$(curl -s -o /dev/null -w '%{http_code}' "$URL?operation=GetCACaps")" 200

# --- (b) the queue is full: 503 with Retry-After, no private-key operation ---
: > burst.list
for i in 1 2 3 4 5 6 7 8; do
  enroll_emit "b$i" --challenge "$CHALLENGE_VALUE" --cn "burst$i"
  echo "pki $T/b$i.msg" >> burst.list
done
serial=$(openssl x509 -in after.pem -noout -serial | cut -d= -f2)
openssl ocsp -issuer "$STATE/ca.pem" -serial "0x$serial" -reqout ocsp.der -no_nonce >/dev/null 2>&1
check "an OCSP request to send" test -s ocsp.der
echo "ocsp $T/ocsp.der" >> burst.list
echo "ocsp $T/ocsp.der" >> burst.list
p11fault_set "latency private 1000"
m=$(p11fault_mark)
python3 burst.py "$PORT" burst burst.list burst.out
p11fault_set
cat burst.out >&2
ok_pki=$(awk '$2 == "pki" && $3 == 200' burst.out | wc -l)
ok_ocsp=$(awk '$2 == "ocsp" && $3 == 200' burst.out | wc -l)
busy=$(awk '$3 == 503' burst.out | wc -l)
check "burst: every request answered 200 or 503" is "$((ok_pki + ok_ocsp + busy))" 10
check "burst: the queue filled (some 503)" test "$busy" -ge 1
check "burst: each 503 carries Retry-After (seconds >= 1)" \
  is "$(awk '$3 == 503 && !($4 ~ /^[0-9]+$/ && $4 >= 1)' burst.out | wc -l)" 0
check "burst: the refused OCSP requests got 503 too" test "$(awk '$2 == "ocsp" && $3 == 503' burst.out | wc -l)" -ge 1
check "burst: one C_Decrypt per admitted PKIOperation, none for the refused" \
  is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" "$ok_pki"
check "burst: C_Sign only for the admitted (2 per PKIOperation, 1 per OCSP)" \
  is "$(p11fault_count "$m" 'C_Sign CKR_OK real')" "$((2 * ok_pki + ok_ocsp))"
enroll final --cn final
check "after the burst: an enrollment SUCCESS" succeeded final

# Counts left in the rate limiter are written at shutdown.
stop_scepd
refused=$(count_sum 2003 queue_full)
gone=$(count_sum 2004 client_gone)
log "  audited: $refused refused (queue_full), $gone dropped (client_gone)"
check "audit OVERLOADED (2003) counts at least the burst's 503s" test "$refused" -ge "$busy"
check "audit: every flood request refused, dropped or processed" \
  test "$((refused + gone + dec))" -ge "$FLOOD"
check "audit REQUEST_DROPPED (2004) client_gone for the flood" test "$gone" -ge 1
finish
