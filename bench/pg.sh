#!/usr/bin/env bash
# PostgreSQL legs of the benchmark (issue 11; docs/benchmarks.md "PostgreSQL", docs/ha.md).
# Not a test: prints a table and writes JSON, asserts nothing.
#
# In one run, with one state directory (the same SoftHSM token and CA key, the same
# scep-loadgen settings and client keys):
#   lmdb       one scepd node on its embedded LMDB store
#   pg         one scepd node on PostgreSQL 15 (a private server started here, as the tests
#              do: tests/integration/pg.sh; unix socket, fsync and synchronous_commit on)
#   pg2-haproxy two nodes on that PostgreSQL behind HAProxy (round robin, /healthz checks)
# For each leg: enrollments/s and latency from scep-loadgen, and CPU time per enrollment
# split by process: the scepd node(s), the PostgreSQL server (postmaster and every backend,
# reaped children included), HAProxy. CPU is read from /proc around the whole loadgen run
# and divided by the certificates the store gained over it (warm-up included on both sides),
# so the split holds even though the nodes, the database and the load generator share the
# machine's cores.
#
#   bench/pg.sh [--count N] [--warmup S] [--concurrency C] [--legs "lmdb pg pg2-haproxy"]
#               [--rounds R] [--out DIR] [--keep]
# Defaults: 1500 enrollments (closed loop, a fixed count: a timed run can exhaust the
# loadgen's prebuilt requests when the rate calibration was low) + 2 s warm-up at
# concurrency 8, each leg once (--rounds 2: the legs twice, interleaved, to see the noise of
# a shared machine; the load average before each leg is in the JSON). Output: the table on stdout,
# DIR/<date>-<host>-pg.json (default DIR: bench/results). Environment: BUILD (default ./build).
# Exit: 0 when every leg ran without loadgen errors, 1 otherwise, 2 on usage/missing parts.
set -euo pipefail
BSRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COUNT=1500 ROUNDS=1 WARMUP=2 CONC=8 LEGS="lmdb pg pg2-haproxy" OUT=$BSRC/bench/results KEEP=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --count) COUNT=${2:?}; shift ;;
    --rounds) ROUNDS=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --concurrency) CONC=${2:?}; shift ;;
    --legs) LEGS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "bench/pg: unknown argument $1" >&2; usage ;;
  esac
  shift
done
export SCEPD_SRC=$BSRC
export SCEPD_BUILD=${BUILD:-$BSRC/build}
case $SCEPD_BUILD in /*) ;; *) SCEPD_BUILD=$BSRC/$SCEPD_BUILD ;; esac
[ -n "${KEEP:-}" ] && [ "$KEEP" = 1 ] && export KEEP_T=1
# The tests' helpers: state directory, private PostgreSQL, nodes (they set T and the traps).
. "$BSRC/tests/integration/lib.sh"
. "$BSRC/tests/integration/pg.sh"
LG=$BUILD/scep-loadgen
for b in scepd scep-loadgen; do
  [ -x "$BUILD/$b" ] || { echo "bench/pg: $BUILD/$b missing: build first" >&2; exit 2; }
done
[[ " $LEGS " != *" pg2-haproxy "* ]] || command -v haproxy >/dev/null ||
  { echo "bench/pg: haproxy (Debian package haproxy) missing" >&2; exit 2; }
LG_COMMON=(--method post --cipher aes128 --md sha256 --key-type rsa:2048 --quiet
           --key-cache "$T/keys" --pool 64)
TCK=$(getconf CLK_TCK)
HAPROXY_PID=""
stop_haproxy() { [ -n "$HAPROXY_PID" ] && { kill "$HAPROXY_PID" 2>/dev/null || true; wait "$HAPROXY_PID" 2>/dev/null || true; }; HAPROXY_PID=""; }
trap 'rc=$?; stop_haproxy; (exit $rc); pg_cleanup' EXIT
blog() { printf 'bench/pg: %s\n' "$*" >&2; }

# cpu_ticks PID...: user+system ticks of the processes, their reaped children included
cpu_ticks() {
  local p sum=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    # fields after the command (which may hold spaces): utime stime cutime cstime are 12-15
    sum=$(( sum + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 + $14 + $15 }') ))
  done
  echo "$sum"
}
pg_pids() {
  local pm
  pm=$(head -n1 "$PG_DIR/data/postmaster.pid")
  echo "$pm" $(pgrep -P "$pm" || true)
}
stored() {
  case $1 in
    lmdb) "$BUILD/scepctl" -c "$CONF" cert list 2>/dev/null | wc -l ;;
    *) pg_sql 'SELECT count(*) FROM scepd_certs' ;;
  esac
}

ROWS=$T/rows.jsonl
: > "$ROWS"
RC=0
# leg NAME URL STOREKIND NODEPIDS...: one loadgen run, CPU split, one JSON row
leg() {
  local name=$1 url=$2 kind=$3; shift 3
  local nodes=("$@") j="$T/lg-$name.json" lrc=0 c0 c1 d0 d1 h0=0 h1=0 s0 s1
  s0=$(stored "$kind")
  c0=$(cpu_ticks "${nodes[@]}")
  d0=0; [ "$kind" = lmdb ] || d0=$(cpu_ticks $(pg_pids))
  [ -z "$HAPROXY_PID" ] || h0=$(cpu_ticks "$HAPROXY_PID")
  local load
  load=$(cut -d' ' -f1 /proc/loadavg)
  blog "$name: $COUNT enrollments at concurrency $CONC (+$WARMUP s warm-up), load average $load"
  "$LG" --url "$url" --challenge "$CHALLENGE_VALUE" --concurrency "$CONC" --count "$COUNT" \
    --warmup "$WARMUP" --json "$j" --label "$name" "${LG_COMMON[@]}" \
    $([ ${#nodes[@]} = 1 ] && echo --server-pid "${nodes[0]}") > "$T/lg-$name.out" 2>&1 || lrc=$?
  c1=$(cpu_ticks "${nodes[@]}")
  d1=0; [ "$kind" = lmdb ] || d1=$(cpu_ticks $(pg_pids))
  [ -z "$HAPROXY_PID" ] || h1=$(cpu_ticks "$HAPROXY_PID")
  s1=$(stored "$kind")
  [ $lrc = 0 ] || { blog "$name: scep-loadgen exit $lrc"; tail -n 5 "$T/lg-$name.out" >&2; RC=1; }
  [ -s "$j" ] || { blog "$name: no loadgen report"; RC=1; return 0; }
  awk -v name="$name" -v load="$load" -v nodes=${#nodes[@]} -v n=$((s1 - s0)) -v tck="$TCK" \
      -v cs=$((c1 - c0)) -v cd=$((d1 - d0)) -v ch=$((h1 - h0)) -v lrc=$lrc '
    { buf = buf $0 }
    END {
      sub(/}[[:space:]]*$/, "", buf)
      n = n > 0 ? n : 1
      printf "%s,\"leg\":\"%s\",\"loadavg_before\":%s,\"nodes\":%d,\"stored_during_run\":%d,", buf, name, load, nodes, n
      printf "\"scepd_cpu_ms_per_enrollment\":%.3f,\"postgres_cpu_ms_per_enrollment\":%.3f,", cs * 1000 / tck / n, cd * 1000 / tck / n
      printf "\"haproxy_cpu_ms_per_enrollment\":%.3f,\"loadgen_exit\":%d}\n", ch * 1000 / tck / n, lrc
    }' "$j" >> "$ROWS"
}

init_state
cd "$T"
for l in $(for _ in $(seq 1 "$ROUNDS"); do echo $LEGS; done); do
  case $l in
    lmdb)
      node_start lmdb "$CONF"
      leg lmdb "${NODE_URL[lmdb]}" lmdb "${NODE_PID[lmdb]}"
      node_stop lmdb ;;
    pg)
      [ -n "$PG_DIR" ] || pg_start
      pg_node_conf "$STATE/node-a.conf" a
      node_start a "$STATE/node-a.conf"
      leg pg "${NODE_URL[a]}" pg "${NODE_PID[a]}"
      node_stop a ;;
    pg2-haproxy)
      [ -n "$PG_DIR" ] || pg_start
      for n in a b; do pg_node_conf "$STATE/node-$n.conf" $n; node_start $n "$STATE/node-$n.conf"; done
      hp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
      cat > haproxy.cfg <<CFG
global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option redispatch
    option http-buffer-request
    retry-on conn-failure empty-response junk-response
frontend scep
    bind 127.0.0.1:$hp
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server a 127.0.0.1:${NODE_PORT[a]} check
    server b 127.0.0.1:${NODE_PORT[b]} check
CFG
      haproxy -f haproxy.cfg -db > haproxy.log 2>&1 &
      HAPROXY_PID=$!
      for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$hp/healthz" 2>/dev/null && break; sleep 0.1; done
      leg pg2-haproxy "http://127.0.0.1:$hp/scep" pg "${NODE_PID[a]}" "${NODE_PID[b]}"
      stop_haproxy
      node_stop a; node_stop b ;;
    *) blog "unknown leg $l"; exit 2 ;;
  esac
done

# ---- table and JSON ----
f() { grep -o "\"$2\":[^,}]*" <<<"$1" | head -n1 | cut -d: -f2- | tr -d '"'; }
printf '%-12s %5s %5s %9s %8s %8s %7s %12s %14s %11s %8s\n' leg load nodes enroll/s p50_ms p99_ms errors \
  scepd_ms/enr postgres_ms/enr haproxy_ms db_share
while read -r row; do
  sc=$(f "$row" scepd_cpu_ms_per_enrollment); pc=$(f "$row" postgres_cpu_ms_per_enrollment)
  hc=$(f "$row" haproxy_cpu_ms_per_enrollment)
  share=$(awk -v s="$sc" -v p="$pc" -v h="$hc" 'BEGIN { t = s + p + h; printf "%.1f%%", (t > 0 ? 100 * p / t : 0) }')
  printf '%-12s %5s %5s %9.1f %8.1f %8.1f %7s %12s %14s %11s %8s\n' "$(f "$row" leg)" "$(f "$row" loadavg_before)" "$(f "$row" nodes)" \
    "$(f "$row" enrollments_per_s)" "$(f "$row" p50_ms)" "$(f "$row" p99_ms)" "$(f "$row" errors)" \
    "$sc" "$pc" "$hc" "$share"
done < "$ROWS"
mkdir -p "$OUT"
res="$OUT/$(date -u +%Y-%m-%d)-$(hostname -s)-pg.json"
{ echo "{\"date\":\"$(date -u +%FT%TZ)\",\"host\":\"$(hostname -s)\",\"cpus\":$(nproc),\"count\":$COUNT,\"warmup_s\":$WARMUP,\"concurrency\":$CONC,\"rows\":["
  sed '$!s/$/,/' "$ROWS"; echo "]}"; } > "$res"
blog "wrote $res"
FAILED=0
exit $RC
