#!/usr/bin/env bash
# Server CPU per enrollment against the crypto floor, measured in one run, optionally with a
# CPU profile of scepd (issue 13; docs/benchmarks.md "Performance: toward the crypto floor").
#
#   bench/profile.sh [--keys file|pkcs11] [--runs N] [--duration S] [--concurrency C]
#                    [--perf] [--threads] [--keep]
# For each of N runs (default 3): bench/ceiling on the state (1 s per operation), then a fresh
#   scepd, scep-loadgen (closed loop, POST, AES-128, SHA-256, RSA-2048 device keys, PKCSReq
#   only, 2 s warm-up) and the server's user+system CPU time from /proc/PID/stat over the
#   timed phase. Prints one line per run and the medians: server CPU ms per enrollment, the
#   floor (CPU ms of one RA decrypt + two RSA signs, measured by bench/ceiling in thread CPU
#   time) and their ratio, and "in-situ": the server CPU / the CPU its workers spent inside
#   the private-key operations over the same seconds (scepd_private_key_* counters). The line
#   also gives "public": bench/ceiling's CPU for the public-key operations every SCEP server
#   makes with the device key (2 verifies + 1 encrypt), and "over floor+public", the server's
#   CPU over the private floor plus that.
# --threads: per run, scepd's CPU and context switches by thread kind (/proc/PID/task) per
#   certificate issued (scepd_enrollments_total), over the whole scep-loadgen run (its
#   calibration and warm-up included, so the sum is a little above the timed phase's figure).
# --perf: one more run with scepd sampled by `perf record -e cpu-clock --call-graph fp`
#   (Debian package linux-perf); prints the split by shared object and the top symbols
#   (self time). Perf's own overhead makes that run's CPU figure unusable: it is not counted.
# Environment: BUILD (default ./build), LOADGEN (default $BUILD/scep-loadgen), SCEPD_PRELOAD
#   (a shared object to preload into scepd only, e.g. an allocator:
#   /usr/lib/x86_64-linux-gnu/libjemalloc.so.2), CALLGRAPH (perf's --call-graph, default fp;
#   dwarf,16384 attributes time inside libcrypto, which has no frame pointers), SERVER_CONF
#   (lines added to scepd.conf's [server] section, e.g. "yield_to_workers = no").
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$SRC/bench/lib.sh"
BUILD=${BUILD:-$SRC/build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}
KEYS=file RUNS=3 DURATION=6 CONC=16 PERF=0 KEEP=0 THREADS=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --keys) KEYS=${2:?}; shift ;;
    --runs) RUNS=${2:?}; shift ;;
    --duration) DURATION=${2:?}; shift ;;
    --concurrency) CONC=${2:?}; shift ;;
    --perf) PERF=1 ;;
    --threads) THREADS=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "profile: unknown argument $1" >&2; usage ;;
  esac
  shift
done
case $KEYS in file|pkcs11) ;; *) usage ;; esac
for b in scepd scepctl ceiling; do
  [ -x "$BUILD/$b" ] || { echo "profile: $BUILD/$b missing: build first" >&2; exit 2; }
done
[ -x "$LOADGEN" ] || { echo "profile: $LOADGEN missing: build first" >&2; exit 2; }
if [ $PERF = 1 ] && ! command -v perf >/dev/null; then
  echo "profile: perf not found (apt-get install linux-perf)" >&2; exit 2
fi

T=$(mktemp -d /tmp/scepd-profile.XXXXXX)
SERVER_PID="" PERF_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PERF_PID" INT
  stop_pid "$SERVER_PID"
  if [ $KEEP = 1 ]; then echo "profile: kept $T" >&2; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CHALLENGE=$(openssl rand -hex 12)
LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" KEYS=$KEYS CA_KEY=rsa:2048 \
  CHALLENGE=$CHALLENGE "$SRC/scripts/init-state.sh" "$T/state" >"$T/init.log" 2>&1 ||
  { cat "$T/init.log" >&2; exit 1; }
room_for_all "$T/state/scepd.conf"
if [ -n "${SERVER_CONF:-}" ]; then
  printf '%s\n' "$SERVER_CONF" >"$T/server.conf"
  sed -i "/^\[server\]\$/r $T/server.conf" "$T/state/scepd.conf"
fi
mkdir -p "$T/keys"
FLOOR_FIELD=sw_floor_cpu_ms_per_enrollment
[ "$KEYS" = pkcs11 ] && FLOOR_FIELD=hsm_floor_cpu_ms_per_enrollment

jnum() { grep -o "\"$1\":[0-9.eE+-]*" "$2" | head -n1 | cut -d: -f2; }

# task_snap FILE: "name utime stime voluntary nonvoluntary" per thread of scepd (clock ticks),
# then "issued N" (certificates issued so far, from the metrics).
task_snap() {
  local t
  for t in /proc/"$SERVER_PID"/task/*; do
    printf '%s %s %s %s\n' "$(cat "$t/comm")" "$(sed 's/.*) //' "$t/stat" | cut -d' ' -f12,13)" \
      "$(awk '/^voluntary_ctxt/ {print $2}' "$t/status")" "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")"
  done 2>/dev/null >"$1"
  curl -s "$MURL" | awk '/^scepd_enrollments_total\{.*outcome="issued"/ { n += $2 } END { print "issued", n + 0 }' >>"$1"
}

# task_report BEFORE AFTER: by thread name, CPU ms, voluntary and involuntary switches per issued
# certificate (threads that exited in between are not counted).
task_report() {
  awk -v tck="$(getconf CLK_TCK)" 'FNR == 1 { f++ }
    $1 == "issued" { iss[f] = $2; next }
    { k = $1; c[f, k] += $2 + $3; v[f, k] += $4; nv[f, k] += $5; names[k] = 1 }
    END { n = iss[2] - iss[1]; if (n <= 0) { print "threads: nothing issued"; exit }
      printf "--- by thread, per certificate issued (%d issued)\n", n
      for (k in names) { cpu = (c[2, k] - c[1, k]) * 1000 / tck / n; tc += cpu
        printf "  %-14s CPU %.3f ms  voluntary switches %.2f  involuntary %.2f\n", k, cpu,
          (v[2, k] - v[1, k]) / n, (nv[2, k] - nv[1, k]) / n }
      printf "  %-14s CPU %.3f ms\n", "all", tc }' "$1" "$2"
}

start_scepd() {
  rm -f "$T/port" "$T/aport"
  LD_PRELOAD=${SCEPD_PRELOAD:-} "$BUILD/scepd" -c "$T/state/scepd.conf" --port-file "$T/port" \
    --admin-port-file "$T/aport" >"$T/scepd.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do [ -s "$T/port" ] && break; kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
  [ -s "$T/port" ] || { echo "profile: scepd did not start" >&2; tail -n 20 "$T/scepd.log" >&2; exit 1; }
  URL="http://127.0.0.1:$(cat "$T/port")/scep"
  MURL="http://127.0.0.1:$(cat "$T/aport")/metrics"
}

# one_run N: ceiling, then a fresh scepd under load; appends "cpu floor ratio enr/s" to $T/runs.
one_run() {
  "$BUILD/ceiling" -c "$T/state/scepd.conf" --seconds 1 --json "$T/ceil$1.json"
  start_scepd
  if [ "$2" = perf ]; then
    perf record -q -e cpu-clock -F 2000 --call-graph "${CALLGRAPH:-fp}" -p "$SERVER_PID" -o "$T/perf.data" \
      >"$T/perf.log" 2>&1 &
    PERF_PID=$!
  fi
  [ $THREADS = 1 ] && [ "$2" = plain ] && task_snap "$T/tasks0"
  "$LOADGEN" --url "$URL" --challenge "$CHALLENGE" --concurrency "$CONC" --duration "$DURATION" \
    --warmup 2 --method post --cipher aes128 --md sha256 --key-type rsa:2048 --quiet \
    --key-cache "$T/keys" --server-pid "$SERVER_PID" --metrics-url "$MURL" --json "$T/lg$1.json" \
    >"$T/lg$1.out" 2>&1 ||
    { echo "profile: scep-loadgen failed:" >&2; tail -n 20 "$T/lg$1.out" >&2; exit 1; }
  if [ $THREADS = 1 ] && [ "$2" = plain ]; then
    task_snap "$T/tasks1"
    task_report "$T/tasks0" "$T/tasks1" >&2
  fi
  if [ -n "$PERF_PID" ]; then stop_pid "$PERF_PID" INT; PERF_PID=""; fi
  stop_pid "$SERVER_PID"; SERVER_PID=""
  local cpu floor eps ins pub p99
  cpu=$(jnum server_cpu_ms_per_enrollment "$T/lg$1.json")
  ins=$(jnum server_cpu_over_keyop "$T/lg$1.json"); ins=${ins:-0}
  floor=$(jnum "$FLOOR_FIELD" "$T/ceil$1.json")
  eps=$(jnum enrollments_per_s "$T/lg$1.json")
  pub=$(jnum public_cpu_ms_per_enrollment "$T/ceil$1.json"); pub=${pub:-0}
  p99=$(jnum p99_ms "$T/lg$1.json")
  awk -v c="$cpu" -v f="$floor" -v e="$eps" -v n="$1" -v tag="$2" -v i="$ins" -v p="$pub" -v q="$p99" 'BEGIN {
    printf "run %s%s: server %.3f ms CPU/enrollment, floor %.3f ms, ratio %.2f, in-situ %.3f, public %.3f ms, over floor+public %.2f, %.1f enrollments/s, p99 %.1f ms\n",
      n, tag == "perf" ? " (under perf, not counted)" : "", c, f, c / f, i, p, c / (f + p), e, q }' >&2
  [ "$2" = perf ] || echo "$cpu $floor $eps $ins $pub" >>"$T/runs"
}

: >"$T/runs"
echo "profile: keys=$KEYS concurrency=$CONC duration=${DURATION}s runs=$RUNS preload=${SCEPD_PRELOAD:-none} load=$(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq 1 "$RUNS"); do one_run "$i" plain; done
sort -n -k1 "$T/runs" | awk '{ c[NR] = $1; f[NR] = $2; r[NR] = $1 / $2; e[NR] = $3; s[NR] = $4; p[NR] = $5; q[NR] = $1 / ($2 + $5) }
  function med(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END { n = NR; lo = r[1]; hi = r[1]
    for (i = 1; i <= n; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
    printf "median of %d: server %.3f ms CPU/enrollment, floor %.3f ms, ratio %.2f (range %.2f-%.2f), in-situ %.3f, public %.3f ms, over floor+public %.2f, %.1f enrollments/s\n",
      n, med(c, n), med(f, n), med(r, n), lo, hi, med(s, n), med(p, n), med(q, n), med(e, n) }'

if [ $PERF = 1 ]; then
  one_run perf perf
  echo "--- by shared object (self, % of scepd samples)"
  perf report -i "$T/perf.data" --no-children --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 12
  echo "--- top symbols (self)"
  perf report -i "$T/perf.data" --no-children --sort dso,sym --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 30
fi
