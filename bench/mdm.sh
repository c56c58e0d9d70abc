#!/usr/bin/env bash
# MDM validation benchmark (not a test; docs/benchmarks.md "MDM validation"): does waiting
# for Intune cost throughput? One scepd (SoftHSM keys, RSA-2048), two profiles served side by
# side, loaded in turn with identical scep-loadgen settings:
#   static  challenge = static (no MDM)
#   intune  challenge = intune, against an Intune emulator answering every validateRequest
#           after the delay (default 200 ms); successNotification answers at once (it is on
#           the path too: validate -> sign -> commit -> notify).
# Reports enrollments/s of each, the ratio intune/static (target >= 80 %), the concurrency
# (requests in flight from the load generator) and the most validations the emulator had
# waiting at once (requests parked in scepd's validation stage, holding no worker).
#
#   bench/mdm.sh [--concurrency C] [--duration S] [--warmup S] [--delay MS] [--rounds N]
#                [--emulator fast|python] [--json FILE] [--perf PROFILE]
# Defaults: C 256, 10 s + 3 s warm-up per profile, 200 ms, 1 round. Why 256: an Intune run
#   keeps rate x delay requests at the MDM (Little's law: about 400/s x 0.2 s = 80 here) on
#   top of those queued for the workers; at 256 more than 128 are left for the workers
#   whatever the rate, as many as the static run has at 128. With N rounds the two
#   profiles alternate (static, intune, static, ...) and the ratio is of the medians: on a
#   shared machine the load of others moves between runs. Environment: BUILD (./build),
#   LOADGEN ($BUILD/scep-loadgen).
# --emulator: which Intune emulator runs beside scepd (on the same cores: a real Intune never
#   does). fast (default): $BUILD/tests/intune-responder, a single-threaded epoll C server
#   (tests/emulators/intune_responder.c) whose CPU per enrollment is a small fraction of the
#   Python one's, so that the figure measures scepd. python: the contract emulator of the
#   tests, tests/emulators/intune_emulator.py (ThreadingHTTPServer, a thread per connection;
#   ~0.9 ms of CPU per enrollment, ~15 % of what the two cores give an enrollment). Both
#   answer the same calls with the same JSON; the one that ran, its CPU per enrollment and its
#   /_stats are reported.
# --perf PROFILE (static or intune): after the rounds, one more run of PROFILE with scepd
#   sampled by `perf record -e cpu-clock --call-graph fp` (CALLGRAPH=dwarf,16384 to see inside
#   libcrypto; not counted in the medians);
#   prints the top symbols (scepd's own and its libraries').
# The emulator accepts any challenge (it does not decrypt Intune's; t_intune.sh enrolls the
# same way), so loadgen sends a fixed one; each request still has its own transactionID.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}
CONC=256 DURATION=10 WARMUP=3 DELAY=200 JSON="" ROUNDS=1 PERF="" EMULATOR=fast
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --concurrency) CONC=${2:?}; shift ;;
    --duration) DURATION=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --delay) DELAY=${2:?}; shift ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --json) JSON=${2:?}; shift ;;
    --perf) PERF=${2:?}; shift ;;
    --emulator) EMULATOR=${2:?}; shift ;;
    -h|--help) usage ;;
    *) echo "bench/mdm: unknown argument $1" >&2; usage ;;
  esac
  shift
done
case $PERF in ""|static|intune) ;; *) echo "bench/mdm: --perf static|intune" >&2; exit 2 ;; esac
[ -z "$PERF" ] || command -v perf >/dev/null ||
  { echo "bench/mdm: perf not found (apt-get install linux-perf)" >&2; exit 2; }
case $EMULATOR in fast|python) ;; *) echo "bench/mdm: --emulator fast|python" >&2; exit 2 ;; esac
RESPONDER=$BUILD/tests/intune-responder
NEED="$BUILD/scepd $LOADGEN"
[ "$EMULATOR" = python ] || NEED="$NEED $RESPONDER"
for b in $NEED; do
  [ -x "$b" ] || { echo "bench/mdm: $b missing: build first" >&2; exit 2; }
done

T=$(mktemp -d /tmp/scepd-bench-mdm.XXXXXX)
SERVER_PID="" EMU_PID=""
cleanup() {
  for p in $SERVER_PID $EMU_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && log "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
log() { printf 'bench/mdm: %s\n' "$*" >&2; }

CHALLENGE=$(openssl rand -hex 12)
LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" KEYS=pkcs11 CA_KEY=rsa:2048 \
  CHALLENGE=$CHALLENGE "$SRC/scripts/init-state.sh" "$T/s" >"$T/init.log" 2>&1 ||
  { cat "$T/init.log" >&2; exit 1; }
printf 'challenge = static\n' >"$T/s/profiles/static.conf"
printf 'challenge = intune\n' >"$T/s/profiles/intune.conf"

if [ "$EMULATOR" = python ]; then
  python3 "$SRC/tests/emulators/intune_emulator.py" --log "$T/calls.jsonl" --secret bench-secret --no-record \
    >"$T/emu.port" 2>"$T/emu.err" &
else
  "$RESPONDER" --secret bench-secret --validate-delay-ms "$DELAY" --max-connections $((CONC * 4 + 64)) \
    >"$T/emu.port" 2>"$T/emu.err" &
fi
EMU_PID=$!
for _ in $(seq 1 100); do EP=$(sed -n 's/^PORT //p' "$T/emu.port"); [ -n "$EP" ] && break; sleep 0.05; done
[ -n "${EP:-}" ] || { cat "$T/emu.err" >&2; exit 1; }
log "emulator: $EMULATOR on port $EP (validation delay $DELAY ms)"
[ "$EMULATOR" = fast ] ||
  curl -fsS -X POST -d "{\"validate_delay_ms\": $DELAY}" "http://127.0.0.1:$EP/_control" >/dev/null
printf 'bench-secret\n' >"$T/s/intune.secret"
cat >"$T/s/mdm.conf" <<CONF
[mdm]
max_in_flight = $((CONC * 2))
max_connections = $((CONC * 2))
timeout = 10s
[intune]
tenant = contoso.onmicrosoft.com
client_id = 11111111-2222-3333-4444-555555555555
client_secret_file = intune.secret
login_url = http://127.0.0.1:$EP
graph_url = http://127.0.0.1:$EP
CONF
# Admission must not be the bound: requests parked at the stage count as admitted.
sed -i "s/^\[server\]\$/[server]\nmdm_config = mdm.conf\nqueue_max = $((CONC * 4))/" "$T/s/scepd.conf"

"$BUILD/scepd" -c "$T/s/scepd.conf" --port-file "$T/port" --admin-port-file "$T/admin-port" \
  >"$T/scepd.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || { tail -n 20 "$T/scepd.log" >&2; exit 1; }
URL="http://127.0.0.1:$(cat "$T/port")/scep"
for _ in $(seq 1 200); do curl -fsS -o /dev/null "$URL?operation=GetCACaps" && break; sleep 0.05; done

# hsm_ops: scepd's private-key operations so far (/metrics on the admin listener).
hsm_ops() {
  curl -fsS -H "Authorization: Bearer $(cat "$T/s/admin-token")" \
    "http://127.0.0.1:$(cat "$T/admin-port")/metrics" | sed -n 's/^scepd_hsm_operations_total //p'
}

# cpu_ms PID: user + system CPU time of a process so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

# run PROFILE CHALLENGE: one loadgen run; prints enrollments/s, errors, p50 ms, and the CPU
# ms per enrollment of scepd and of the emulator over the run (warm-up included: both ends).
run() {
  local j="$T/lg-$1.json" rc=0 s0 e0 s1 e1 h0 h1
  s0=$(cpu_ms "$SERVER_PID") e0=$(cpu_ms "$EMU_PID") h0=$(hsm_ops)
  log "$1: $DURATION s at concurrency $CONC (+$WARMUP s warm-up)"
  "$LOADGEN" --url "$URL/$1" --challenge "$2" --concurrency "$CONC" --duration "$DURATION" \
    --warmup "$WARMUP" --method post --cipher aes128 --md sha256 --key-type rsa:2048 --quiet \
    --server-pid "$SERVER_PID" --json "$j" --label "mdm-$1" >"$T/lg-$1.out" 2>&1 || rc=$?
  [ -s "$j" ] || { log "$1: scep-loadgen failed (exit $rc)"; tail -n 20 "$T/lg-$1.out" >&2; exit 1; }
  [ $rc -eq 0 ] || log "$1: scep-loadgen reported errors (exit $rc; see errors below)"
  s1=$(cpu_ms "$SERVER_PID") e1=$(cpu_ms "$EMU_PID") h1=$(hsm_ops)
  python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
n = max(1, d['sent'] + d.get('setup_enrollments', 0))
print(d['enrollments_per_s'], d.get('errors', 0), d['p50_ms'],
      '%.2f' % ((int(sys.argv[3]) - int(sys.argv[2])) / n),
      '%.2f' % ((int(sys.argv[5]) - int(sys.argv[4])) / n),
      '%.2f' % ((int(sys.argv[7]) - int(sys.argv[6])) / n))" "$j" "$s0" "$s1" "$e0" "$e1" "$h0" "$h1"
}

ROWS=$T/rows
: >"$ROWS"
for r in $(seq 1 "$ROUNDS"); do
  echo "static $(run static "$CHALLENGE")" >>"$ROWS"
  echo "intune $(run intune "intune-bench-challenge")" >>"$ROWS"
done
if [ -n "$PERF" ]; then
  perf record -q -e cpu-clock -F 2000 --call-graph "${CALLGRAPH:-fp}" -p "$SERVER_PID" -o "$T/perf.data" \
    >"$T/perf.log" 2>&1 &
  PERF_PID=$!
  sleep 0.5
  if [ "$PERF" = static ]; then run static "$CHALLENGE"; else run intune "intune-bench-challenge"; fi \
    | awk '{ print "perf run (not counted): " $0 }' >&2
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  printf '\nperf, %s run: top symbols of scepd (self %%)\n' "$PERF"
  perf report -i "$T/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -v '^#' | grep '%' | head -n 45
fi
# median PROFILE COLUMN: the median of that column (1 = enrollments/s) over the rounds.
median() { awk -v p="$1" -v c="$2" '$1 == p { print $(c + 1) }' "$ROWS" | sort -g |
  awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
read -r S_RATE S_ERR S_P50 S_CPU S_ECPU S_HSM <<<"$(for c in 1 2 3 4 5 6; do median static $c; done | tr '\n' ' ')"
read -r I_RATE I_ERR I_P50 I_CPU I_ECPU I_HSM <<<"$(for c in 1 2 3 4 5 6; do median intune $c; done | tr '\n' ' ')"
if [ "$ROUNDS" -gt 1 ]; then
  printf '\nper run (profile enrollments/s errors p50_ms scepd_cpu_ms emu_cpu_ms hsm_ops):\n'
  cat "$ROWS"
  printf '\nmedians of %s rounds:' "$ROUNDS"
fi
STATS=$(curl -fsS "http://127.0.0.1:$EP/_stats")
read -r WAIT VALIDATIONS < <(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['max_waiting'], d['validations'])" "$STATS")
if [ "$EMULATOR" = fast ]; then EMU_NAME=tests/intune-responder; else EMU_NAME=intune_emulator.py; fi
NPROC=$(nproc)
RATIO=$(python3 -c "import sys; s,i=float(sys.argv[1]),float(sys.argv[2]); print('%.1f' % (100*i/s if s else 0))" "$S_RATE" "$I_RATE")
printf '\n%-8s %14s %7s %10s %17s %17s %12s\n' profile enrollments/s errors p50_ms scepd_cpu_ms/enr emu_cpu_ms/enr hsm_ops/enr
printf '%-8s %14s %7s %10s %17s %17s %12s\n' static "$S_RATE" "$S_ERR" "$S_P50" "$S_CPU" "$S_ECPU" "$S_HSM" \
  intune "$I_RATE" "$I_ERR" "$I_P50" "$I_CPU" "$I_ECPU" "$I_HSM"
printf '\nratio intune/static: %s %% (target >= 80 %%); concurrency %s; validation delay %s ms;\n' "$RATIO" "$CONC" "$DELAY"
printf 'most validations waiting at the emulator at once: %s; validateRequest calls: %s; %s CPUs\n' "$WAIT" "$VALIDATIONS" "$NPROC"
printf 'emulator: %s (%s); its /_stats: %s\n' "$EMULATOR" "$EMU_NAME" "$STATS"
if [ -n "$JSON" ]; then
  printf '{"concurrency":%s,"delay_ms":%s,"static_per_s":%s,"intune_per_s":%s,"ratio_pct":%s,"max_waiting":%s,"validations":%s,"static_errors":%s,"intune_errors":%s,"static_cpu_ms":%s,"intune_cpu_ms":%s,"emulator_cpu_ms":%s,"static_hsm_ops":%s,"intune_hsm_ops":%s,"cpus":%s,"emulator":"%s"}\n' \
    "$CONC" "$DELAY" "$S_RATE" "$I_RATE" "$RATIO" "$WAIT" "$VALIDATIONS" "$S_ERR" "$I_ERR" "$S_CPU" "$I_CPU" "$I_ECPU" "$S_HSM" "$I_HSM" "$NPROC" "$EMULATOR" >"$JSON"
fi
