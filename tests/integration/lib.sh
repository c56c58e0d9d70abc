# Shared helpers for the integration tests: a fresh state directory (SoftHSM token, keys,
# store), a scepd on a loopback port chosen by the kernel, assertions, cleanup.
set -euo pipefail

SRC=${SCEPD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${SCEPD_BUILD:-$SRC/build}
T=$(mktemp -d /tmp/scepd-it.XXXXXX)
SCEPD_PID=""
PASSED=0
FAILED=0

log() { printf '%s\n' "$*" >&2; }

# Stops scepd with SIGTERM and checks how it ended: a clean shutdown exits 0, and under
# ASan/UBSan (make test-asan) a leak or error report makes the exit status non-zero.
stop_scepd() {
  local pid=$SCEPD_PID rc=0
  SCEPD_PID=""
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  if [ "$rc" -ne 0 ] || grep -q "Sanitizer" "$T/scepd.log" 2>/dev/null; then
    FAILED=$((FAILED + 1))
    log "FAIL - scepd did not shut down cleanly (exit $rc)"
    grep -A30 "Sanitizer" "$T/scepd.log" 2>/dev/null | head -40 >&2 || true
  fi
}

cleanup() {
  local rc=$?
  stop_scepd
  if [ $rc -ne 0 ] || [ $FAILED -ne 0 ]; then
    log "--- scepd log ---"; cat "$T/scepd.log" 2>/dev/null | tail -n 40 >&2 || true
    log "--- audit log (tail) ---"; tail -n 20 "$T/state/audit.log" 2>/dev/null >&2 || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

# init_state [KEYS=pkcs11|file]: a state directory at $T/state, audit log to a file.
init_state() {
  LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" SHARDS=2 WORKERS=2 \
    KEYS=${KEYS:-pkcs11} CHALLENGE=${CHALLENGE:-sesame} "$SRC/scripts/init-state.sh" "$T/state"
  STATE=$T/state
  CONF=$STATE/scepd.conf
  CHALLENGE_VALUE=$(cat "$STATE/challenge")
}

start_scepd() {
  rm -f "$T/port"
  "$BUILD/scepd" -c "$CONF" --port-file "$T/port" >"$T/scepd.log" 2>&1 &
  SCEPD_PID=$!
  for _ in $(seq 1 200); do
    if [ -s "$T/port" ]; then
      PORT=$(cat "$T/port")
      URL="http://127.0.0.1:$PORT/scep"
      if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
    fi
    kill -0 "$SCEPD_PID" 2>/dev/null || { cat "$T/scepd.log" >&2; return 1; }
    sleep 0.05
  done
  log "scepd did not become healthy"; return 1
}

ok()   { PASSED=$((PASSED + 1)); log "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

# audit_has DIAG_OR_NAME: the audit log has a line containing the given JSON fragment.
audit_has() { grep -q -- "$1" "$STATE/audit.log"; }

finish() {
  stop_scepd
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
