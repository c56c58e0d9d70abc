#!/usr/bin/env bash
# bench/tls.sh: what native TLS costs per enrollment (docs/benchmarks.md, "TLS").
#
# One scepd (CA key in SoftHSM by default, KEYS=file for a file CA key) with its plain
# listener and a [tls] listener (a P-256 server key file by default; TLS_KEY=rsa for an
# RSA-2048 file; TLS_KEY=token for the P-256 key in the token, [tls] key_label, signing on the
# key threads: KEYS=pkcs11 only),
# the same prebuilt PKCSReq messages (distinct transactions, built offline by scep_req) sent
# over five legs:
#   plain-keepalive   HTTP, one connection for every request
#   plain-newconn     HTTP, a new TCP connection per request
#   tls-keepalive     HTTPS, one TLS connection for every request (one handshake in all)
#   tls-newconn       HTTPS, a full handshake per request (certificate + signature)
#   tls-resumed       HTTPS, a new connection per request resuming a TLS 1.3 ticket
# then the handshake alone: GetCACaps (4N each) on a new connection per request, plain, TLS
# full handshake, TLS resumed.
# Each leg runs C client threads (CONC, default 2) over N requests each leg (N, default 300);
# every answer must be 200 application/x-pki-message. Reported per leg: enrollments/s,
# client latency p50/p99, and the server's CPU time per enrollment (utime+stime of scepd
# from /proc, so the client's own TLS work is not counted). The TLS cost is the difference
# between a TLS leg and its plain twin; figures vary with the machine's load, compare legs of
# one run. Also reported: whether this kernel offers kTLS (scepd does not use it either way).
#
# usage: bench/tls.sh [BUILD_DIR]   (default: build)   env: N CONC KEYS TLS_KEY KEEP
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
N=${N:-300}
CONC=${CONC:-2}
TLS_KEY=${TLS_KEY:-ec}
W=$(mktemp -d /tmp/scepd-bench-tls.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  [ -n "${KEEP:-}" ] && { echo "kept $W" >&2; return; }
  rm -rf "$W"
}
trap cleanup EXIT

LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" SHARDS=${SHARDS:-2} WORKERS=${WORKERS:-2} \
  KEYS=${KEYS:-pkcs11} CHALLENGE=bench "$SRC/scripts/init-state.sh" "$W/state" >/dev/null
CONF=$W/state/scepd.conf

mkdir -p "$W/tls" && cd "$W/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -subj "/CN=bench TLS CA" -days 2 -addext basicConstraints=critical,CA:TRUE 2>/dev/null
case $TLS_KEY in
  ec|token)  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null ;;
  rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server.key 2>/dev/null ;;
  *)   echo "TLS_KEY must be ec, rsa or token" >&2; exit 2 ;;
esac
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
  -out server.pem 2>/dev/null
TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$TLS_KEY" = token ]; then
  # The same kind of key, imported into the token (a real one would generate it there).
  openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
  SOFTHSM2_CONF=$W/state/softhsm2.conf softhsm2-util --import server.p8 --token scepd \
    --label tls --id 7a01 --pin "$(cat "$W/state/pin")" >/dev/null
  printf '\n[tls]\nlisten = 127.0.0.1:%s\ncert = %s/server.pem\nkey_label = tls\n' \
    "$TLS_PORT" "$W/tls" >> "$CONF"
else
  printf '\n[tls]\nlisten = 127.0.0.1:%s\ncert = %s/server.pem\nkey = %s/server.key\n' \
    "$TLS_PORT" "$W/tls" "$W/tls" >> "$CONF"
fi

"$BUILD/scepd" -c "$CONF" --port-file "$W/port" >"$W/scepd.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do
  [ -s "$W/port" ] && curl -fsS "http://127.0.0.1:$(cat "$W/port")/healthz" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { cat "$W/scepd.log" >&2; exit 1; }
  sleep 0.05
done
PORT=$(cat "$W/port")

# The requests: one device key, one transaction each (5 legs x N, built before any timing).
cd "$W"
"$BUILD/tests/scep_req" cacert --url "http://127.0.0.1:$PORT/scep" --out "$W/ca" >/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dev.key 2>/dev/null
mkdir -p req
total=$((5 * N))
echo "building $total requests..." >&2
for i in $(seq 1 "$total"); do
  "$BUILD/tests/scep_req" enroll --ca-dir "$W/ca" --challenge bench --key dev.key \
    --cn "bench-$i" --txid "bench-tls-$i" --emit "req/$i.der" >/dev/null
done

python3 - "$PORT" "$TLS_PORT" "$W/tls/ca.pem" "$PID" "$N" "$CONC" "$W/req" <<'EOF'
import http.client, os, socket, ssl, sys, threading, time

port, tls_port, cafile, pid, n, conc, reqdir = sys.argv[1:8]
port, tls_port, pid, n, conc = int(port), int(tls_port), int(pid), int(n), int(conc)
tick = os.sysconf("SC_CLK_TCK")

def server_cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick     # utime + stime

ctx = ssl.create_default_context(cafile=cafile)
def connect(tls, session=None):
    if not tls:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    return http.client.HTTPSConnection("127.0.0.1", tls_port, context=ctx, timeout=60)

def post(c, body):
    if body is None:        # the handshake legs: GetCACaps, next to nothing for the server
        c.request("GET", "/scep?operation=GetCACaps")
        want = "text/plain"
    else:
        c.request("POST", "/scep?operation=PKIOperation", body,
                  {"Content-Type": "application/x-pki-message"})
        want = "application/x-pki-message"
    r = c.getresponse()
    data = r.read()
    if r.status != 200 or not (r.getheader("Content-Type") or "").startswith(want):
        raise RuntimeError(f"HTTP {r.status} {r.getheader('Content-Type')}")
    return data

class Resuming(http.client.HTTPSConnection):
    """A new connection per request that offers the last TLS session (ticket)."""
    session = None
    def connect(self):
        socket_ = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(socket_, server_hostname=self.host,
                                              session=Resuming.session)

def leg(name, tls, keepalive, resume, bodies):
    lat, errors = [], []
    lock = threading.Lock()
    parts = [bodies[i::conc] for i in range(conc)]
    reused = [0]
    def worker(mine):
        c = None
        for b in mine:
            t0 = time.perf_counter()
            try:
                if c is None or not keepalive:
                    if c is not None:
                        c.close()
                    if resume:
                        c = Resuming("127.0.0.1", tls_port, context=ctx, timeout=60)
                    else:
                        c = connect(tls)
                post(c, b)
                if resume:
                    if c.sock.session_reused:
                        reused[0] += 1
                    Resuming.session = c.sock.session
            except Exception as e:
                with lock:
                    errors.append(repr(e))
                c = None
                continue
            with lock:
                lat.append(time.perf_counter() - t0)
        if c is not None:
            c.close()
    cpu0, t0 = server_cpu(), time.perf_counter()
    th = [threading.Thread(target=worker, args=(p,)) for p in parts]
    for t in th: t.start()
    for t in th: t.join()
    wall, cpu = time.perf_counter() - t0, server_cpu() - cpu0
    lat.sort()
    ok = len(lat)
    p = lambda q: lat[min(ok - 1, int(q * ok))] * 1000 if ok else float("nan")
    extra = f"  (resumed {reused[0]}/{ok})" if resume else ""
    print(f"{name:17} {ok:5d} ok {len(errors):3d} err  {ok / wall:7.1f}/s  p50 {p(0.5):6.2f} ms  "
          f"p99 {p(0.99):6.2f} ms  server CPU {cpu * 1000 / max(ok, 1):6.3f} ms/enrollment{extra}")
    if errors:
        print("   first error:", errors[0])
    return cpu * 1000 / max(ok, 1)

bodies = [open(os.path.join(reqdir, f"{i}.der"), "rb").read() for i in range(1, 5 * n + 1)]
legs = [("plain-keepalive", False, True, False), ("plain-newconn", False, False, False),
        ("tls-keepalive", True, True, False), ("tls-newconn", True, False, False),
        ("tls-resumed", True, False, True)]
print(f"{n} enrollments per leg, {conc} client threads; server pid {pid}")
res = {}
for i, (name, tls, ka, resume) in enumerate(legs):
    res[name] = leg(name, tls, ka, resume, bodies[i * n:(i + 1) * n])
# The handshake alone: GetCACaps on a new connection each, plain vs TLS (full, resumed).
for name, tls, resume in [("caps-plain-new", False, False), ("caps-tls-new", True, False),
                          ("caps-tls-resumed", True, True)]:
    res[name] = leg(name, tls, False, resume, [None] * (4 * n))
print(f"TLS handshake (server CPU per connection): full {res['caps-tls-new'] - res['caps-plain-new']:+.3f} ms, "
      f"resumed {res['caps-tls-resumed'] - res['caps-plain-new']:+.3f} ms")
print(f"TLS cost per enrollment (server CPU): keep-alive {res['tls-keepalive'] - res['plain-keepalive']:+.3f} ms, "
      f"new connection {res['tls-newconn'] - res['plain-newconn']:+.3f} ms, "
      f"resumed {res['tls-resumed'] - res['plain-newconn']:+.3f} ms")
EOF
ktls=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
c = socket.create_connection(s.getsockname())
try:
    c.setsockopt(socket.IPPROTO_TCP, 31, b"tls"); print("yes")
except OSError as e:
    print("no (setsockopt TCP_ULP tls: %s)" % e.strerror)')
echo "kernel $(uname -r), kTLS offered: $ktls; server TLS key: $TLS_KEY; $(openssl version)"
