#!/usr/bin/env bash
# Invariant 2, at the system-call level: a CertRep carrying a certificate reaches the kernel
# only after the LMDB commit holding that certificate is synced to the data file. scepd runs
# under tests/synctrace (LD_PRELOAD), which logs in one order the commits, the data-file
# writes and syncs, and the bytes handed to the kernel on sockets (io_uring SQEs included);
# tests/synctrace/check.awk ties each reply to its commit by the transactionID. Unlike
# t_crash, this fails when the store skips its sync (the NOSYNC mutant, docs/testing-mutants.md):
# a kill cannot, since the page cache survives it.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
TRACE_LIB=$BUILD/tests/libsynctrace.so
CHECK=$(realpath "$SRC/tests/synctrace/check.awk")

[ -f "$TRACE_LIB" ] || { log "FAIL - $TRACE_LIB is not built"; exit 1; }
init_state
DATA=$(realpath "$STATE/store")/data.mdb

# scepd under the tracer; an ASan build wants its runtime first, which LD_PRELOAD breaks.
rm -f "$T/port"
SYNCTRACE_LOG=$T/sync.trace LD_PRELOAD=$TRACE_LIB \
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
  "$BUILD/scepd" -c "$CONF" --port-file "$T/port" >"$T/scepd.log" 2>&1 &
SCEPD_PID=$!
for _ in $(seq 1 200); do
  [ -s "$T/port" ] && curl -fsS "http://127.0.0.1:$(cat "$T/port")/healthz" >/dev/null 2>&1 && break
  kill -0 "$SCEPD_PID" 2>/dev/null || break
  sleep 0.05
done
PORT=$(cat "$T/port" 2>/dev/null || true)
URL="http://127.0.0.1:$PORT/scep"
cd "$T"

enroll() {  # name: one enrollment; its output in out/<name>
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "durable-$1" \
    --key-type ec:P-256 --txid "durable-$1-$RANDOM$RANDOM" --cert-out "out/$1.pem" \
    >"out/$1" 2>&1 || true
}
mkdir -p out
for i in 1 2 3 4; do enroll "seq$i"; done         # one commit each
pids=""
for i in 1 2 3 4 5 6; do enroll "par$i" & pids="$pids $!"; done   # several in one group commit
wait $pids

txids=""
issued=0
for f in out/seq? out/par?; do
  grep -q "status=SUCCESS" "$f" || { log "no certificate for $f: $(tail -n 3 "$f")"; continue; }
  issued=$((issued + 1))
  t=$(sed -n 's/^txid=//p' "$f" | head -n 1)
  txids="$txids $(printf '%s' "$t" | od -An -tx1 | tr -d ' \n')"
done
check "all 10 enrollments got a certificate" test "$issued" -eq 10
stop_scepd

check "the tracer saw LMDB commits" grep -q ' commit_leave ' sync.trace
check "the tracer saw replies handed to io_uring" grep -q ' send via=uring ' sync.trace
check "the tracer saw writes to the data file" grep -q " fwrite .* path=$DATA " sync.trace
if awk -f "$CHECK" -v data="$DATA" -v txids="$txids" sync.trace >check.out; then
  ok "every SUCCESS CertRep left after a sync of the data file covering its commit"
else
  fail "a SUCCESS CertRep left before its commit was synced"
fi
cat check.out >&2

# The check can fail: the same trace without its syncs must be refused for every reply.
grep -v ' sync call=' sync.trace >nosync.trace
awk -f "$CHECK" -v data="$DATA" -v txids="$txids" nosync.trace >nosync.out || true
check "the check refuses every reply of the trace without its syncs" \
  grep -q "$issued replies checked, $issued not covered" nosync.out
[ -z "${SYNCTRACE_KEEP:-}" ] || cp sync.trace "$SYNCTRACE_KEEP"
finish
