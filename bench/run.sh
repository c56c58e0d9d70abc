#!/usr/bin/env bash
# The scepd benchmark (`make bench`, `make bench FULL=1`); method in docs/benchmarks.md.
#
# In one run on this machine: measures the crypto ceiling of the keys in use (bench/ceiling),
# then loads, in turn and with identical scep-loadgen settings and key sizes, scepd with
# SoftHSM keys, scepd with software (PEM) keys and micromdm's scepserver (software keys, CA
# RSA-2048). Prints one table, writes bench/results/<date>-<host>[-full].json and a PNG plot.
#
#   bench/run.sh [--full] [--duration S] [--warmup S] [--concurrency "1 4 16"] [--seed N]
#                [--servers "scepd-softhsm scepd-file micromdm"] [--out DIR] [--keep]
#                [--open "50 90"] [--nethsm-workers "4 8 16 32 48"] [--nethsm-latency MS]
#                [--nethsm-rate OPS]
# Quick (default): concurrency 16, 6 s + 2 s warm-up per server; then, for each scepd
#   server, an open loop (scep-loadgen --rate) at 50 % and 90 % of the peak it just reached;
#   then the emulated network HSM: SoftHSM behind tests/p11fault with 5 ms per private-key
#   operation and a rated 900 operations/s, crypto workers 4 8 16 32 48 (a few minutes in
#   all: the loadgen's untimed calibration, prebuilding and reply checks take longer than
#   each run).
# Full: concurrency 1 4 16 64 256 per server, 10 s + 3 s each, the same open-loop and network
#   HSM legs, then the store-size leg: scepd+SoftHSM at concurrency 16 on an empty store,
#   then on 1,000,000 seeded certificates.
# --open "": no open-loop leg; --nethsm-workers "": no network-HSM leg; --servers none: no
#   server sweep (e.g. the network-HSM leg alone at another rated speed).
# Environment: BUILD (build dir, default ./build), LOADGEN (default $BUILD/scep-loadgen),
#   SCEPSERVER (default: scepserver on PATH).
# Exit: 0 when every scepd run completed without errors (the peer's own failures are reported,
#   not fatal), 1 otherwise (results are written anyway), 2 on usage or missing binaries.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$SRC/bench/lib.sh"
BUILD=${BUILD:-$SRC/build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}
SCEPSERVER=${SCEPSERVER:-$(command -v scepserver || true)}

FULL=0 DURATION="" WARMUP="" CONCS="" SEED="" SERVERS="" KEEP=0
OPEN_PCTS="50 90" NH_WORKERS="4 8 16 32 48" NH_LAT_MS=5 NH_RATE=900
OPEN_CONC=64                        # connections of the open loop (spares while slow)
OUT=$SRC/bench/results
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --full) FULL=1 ;;
    --duration) DURATION=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --concurrency) CONCS=${2:?}; shift ;;
    --seed) SEED=${2:?}; shift ;;
    --servers) SERVERS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    --open) OPEN_PCTS=${2?}; shift ;;
    --nethsm-workers) NH_WORKERS=${2?}; shift ;;
    --nethsm-latency) NH_LAT_MS=${2:?}; shift ;;
    --nethsm-rate) NH_RATE=${2:?}; shift ;;
    -h|--help) usage ;;
    *) echo "bench: unknown argument $1" >&2; usage ;;
  esac
  shift
done
if [ $FULL = 1 ]; then
  : "${DURATION:=10}" "${WARMUP:=3}" "${CONCS:=1 4 16 64 256}" "${SEED:=1000000}"
  CEIL_SECS=3 SUFFIX=-full
else
  : "${DURATION:=6}" "${WARMUP:=2}" "${CONCS:=16}" "${SEED:=0}"
  CEIL_SECS=1 SUFFIX=""
fi
: "${SERVERS:=scepd-softhsm scepd-file micromdm}"
[ "$SERVERS" != none ] || SERVERS=""    # --servers none: only the network-HSM leg
STORE_CONC=16                       # concurrency of the store-size leg
# Identical for every server. micromdm additionally gets --legacy (it replies in single DES).
LG_COMMON=(--method post --cipher aes128 --md sha256 --key-type rsa:2048 --quiet)

for b in scepd scepctl ceiling seed_store; do
  [ -x "$BUILD/$b" ] || { echo "bench: $BUILD/$b missing: build first (make build)" >&2; exit 2; }
done
[ -x "$LOADGEN" ] || { echo "bench: $LOADGEN missing: build first (make build)" >&2; exit 2; }
if [[ " $SERVERS " == *" micromdm "* ]] && [ -z "$SCEPSERVER" ]; then
  echo "bench: scepserver (Debian package scep) not found: skipping the peer" >&2
  SERVERS=${SERVERS//micromdm/}
fi
command -v curl >/dev/null || { echo "bench: curl is needed" >&2; exit 2; }
P11FAULT_SO=$BUILD/tests/p11fault/libp11fault.so
if [ -n "$NH_WORKERS" ] && [ ! -f "$P11FAULT_SO" ]; then
  echo "bench: $P11FAULT_SO missing: build first (make build)" >&2; exit 2
fi

T=$(mktemp -d /tmp/scepd-bench.XXXXXX)
SERVER_PID="" LG_PID="" METRICS_URL=""
T0=$SECONDS
log() { printf 'bench [%3ds]: %s\n' $((SECONDS - T0)) "$*" >&2; }

stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$LG_PID" ]; then kill -TERM "$LG_PID" 2>/dev/null || true; wait "$LG_PID" 2>/dev/null || true; fi
  stop_server
  if [ $KEEP = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nobody listens on (scepserver cannot be asked for an ephemeral one).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# wait_http URL PID LOG: until URL answers 200, or the process dies (10 s at most).
wait_http() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { log "server exited:"; tail -n 20 "$3" >&2; return 1; }
    sleep 0.05
  done
  log "server did not answer at $1"; tail -n 20 "$3" >&2; return 1
}

CHALLENGE=$(openssl rand -hex 12 2>/dev/null)

# init_scepd NAME KEYS: a state directory for scepd with key storage KEYS (pkcs11|file).
init_scepd() {
  LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" KEYS=$2 CA_KEY=rsa:2048 \
    CHALLENGE=$CHALLENGE "$SRC/scripts/init-state.sh" "$T/$1" >"$T/$1-init.log" 2>&1 ||
    { log "init-state ($1) failed:"; cat "$T/$1-init.log" >&2; return 1; }
  room_for_all "$T/$1/scepd.conf"   # the full sweep's c = 256 is above the default bound
}

# start_scepd NAME: sets SERVER_PID and URL.
start_scepd() {
  rm -f "$T/$1.port" "$T/$1.aport"
  "$BUILD/scepd" -c "$T/$1/scepd.conf" --port-file "$T/$1.port" --admin-port-file "$T/$1.aport" \
    >"$T/$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do [ -s "$T/$1.port" ] && break; kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
  [ -s "$T/$1.port" ] || { log "scepd ($1) did not start"; tail -n 20 "$T/$1.log" >&2; return 1; }
  URL="http://127.0.0.1:$(cat "$T/$1.port")/scep"
  # the private-key CPU counters (docs/benchmarks.md: "in-situ")
  METRICS_URL="http://127.0.0.1:$(cat "$T/$1.aport")/metrics"
  wait_http "$URL?operation=GetCACaps" "$SERVER_PID" "$T/$1.log"
}

start_micromdm() {
  local port
  if [ ! -d "$T/micromdm/depot" ]; then
    mkdir -p "$T/micromdm"
    (cd "$T/micromdm" && "$SCEPSERVER" ca -init -depot depot -keySize 2048 -organization bench >/dev/null 2>&1)
  fi
  port=$(free_port) || { log "no free port"; return 1; }
  # it logs one line per request to stderr: that is its normal operation, kept in a file
  (cd "$T/micromdm" && exec "$SCEPSERVER" -depot depot -port "$port" -challenge "$CHALLENGE") \
    >"$T/micromdm.log" 2>&1 &
  SERVER_PID=$!
  URL="http://127.0.0.1:$port/scep" METRICS_URL=""
  wait_http "$URL?operation=GetCACaps" "$SERVER_PID" "$T/micromdm.log"
}

ROWS=$T/rows.jsonl
: >"$ROWS"
FAILED=0

# measure SERVER KEYS CONC STORE_CERTS [extra loadgen args]: one loadgen run against $URL,
# appended to $ROWS as the loadgen's JSON plus the bench's own fields. MEASURE_LABEL (default
# SERVER-KEYS-cCONC), MEASURE_LEG (closed, open, nethsm: which table of report.sh) and
# MEASURE_FIELDS (',"k":v...' added to the row) describe the other legs.
measure() {
  local server=$1 keys=$2 conc=$3 certs=$4; shift 4
  local label=${MEASURE_LABEL:-$server-$keys-c$conc} rc=0
  local j="$T/lg-$label-s$certs.json"
  log "$label: $DURATION s at concurrency $conc${*:+ ($*)} (+$WARMUP s warm-up)"
  rm -f "$j"
  # in the background so that a signal interrupts `wait` at once and cleanup stops it
  timeout --kill-after=5 $((DURATION + WARMUP + 300)) "$LOADGEN" --url "$URL" \
    --challenge "$CHALLENGE" --concurrency "$conc" --duration "$DURATION" --warmup "$WARMUP" \
    --server-pid "$SERVER_PID" ${METRICS_URL:+--metrics-url "$METRICS_URL"} \
    --json "$j" --label "$label" "${LG_COMMON[@]}" "$@" \
    >"$T/lg-$label-s$certs.out" 2>&1 &
  LG_PID=$!
  wait "$LG_PID" || rc=$?
  LG_PID=""
  if [ ! -s "$j" ]; then
    log "$label: scep-loadgen failed (exit $rc):"; tail -n 20 "$T/lg-$label-s$certs.out" >&2
    FAILED=1
    printf '{"label":"%s","concurrency":%s,"enrollments_per_s":0,"errors":-1,"failed":true' "$label" "$conc" >"$j"
  else
    if [ $rc -ne 0 ] && [ "$server" = micromdm ]; then
      # the peer's own failures are a result, not a failure of the benchmark
      log "$label: the peer failed some enrollments (see the table)"
    elif [ $rc -ne 0 ]; then
      log "$label: scep-loadgen reported errors (exit $rc)"; FAILED=1
    fi
    tr -d '\n' <"$j" | sed 's/}[[:space:]]*$//' >"$j.tmp" && mv "$j.tmp" "$j"
  fi
  printf ',"server":"%s","keys":"%s","store_certs":%s,"loadgen_exit":%s,"leg":"%s"%s}\n' \
    "$server" "$keys" "$certs" "$rc" "${MEASURE_LEG:-closed}" "${MEASURE_FIELDS:-}" >>"$j"
  tr -d '\n' <"$j" >>"$ROWS"; echo >>"$ROWS"
}

# peak SERVER KEYS: the best closed-loop enrollments/s of that server on the empty store.
peak() {
  grep -F "\"server\":\"$1\",\"keys\":\"$2\",\"store_certs\":0," "$ROWS" |
    grep -F '"leg":"closed"' | grep -o '"enrollments_per_s":[0-9.]*' | cut -d: -f2 |
    sort -g | tail -n 1
}

# open_loop SERVER KEYS: open-loop runs at OPEN_PCTS % of the peak just measured (latency
# from the intended send time: a server that falls behind shows it as latency).
open_loop() {
  local p rate pk
  pk=$(peak "$1" "$2")
  [ -n "$pk" ] || { log "$1-$2: no closed-loop peak: no open loop"; return 0; }
  for p in $OPEN_PCTS; do
    rate=$(awk -v r="$pk" -v p="$p" 'BEGIN { printf "%.1f", r * p / 100 }')
    MEASURE_LABEL="$1-$2-open$p" MEASURE_LEG=open \
      MEASURE_FIELDS=",\"pct_of_peak\":$p,\"peak_enrollments_per_s\":$pk" \
      measure "$1" "$2" "$OPEN_CONC" 0 --rate "$rate"
  done
}

# nethsm: scepd with SoftHSM behind the fault-injecting module (tests/p11fault) made into a
# network HSM: NH_LAT_MS per private-key operation, at most NH_RATE of them per second. A
# closed loop at twice the workers (16 at least) for each crypto worker count of NH_WORKERS.
nethsm() {
  local w c real
  init_scepd nethsm pkcs11
  real=$(sed -n 's/^pkcs11_module = //p' "$T/nethsm/scepd.conf")
  printf 'latency private %s\nrate %s\n' "$NH_LAT_MS" "$NH_RATE" >"$T/nethsm/p11fault.ctl"
  sed -i "s|^pkcs11_module = .*|pkcs11_module = $P11FAULT_SO|" "$T/nethsm/scepd.conf"
  for w in $NH_WORKERS; do
    sed -i "s/^crypto_workers = .*/crypto_workers = $w/" "$T/nethsm/scepd.conf"
    c=$((2 * w)); [ $c -ge 16 ] || c=16
    export P11FAULT_MODULE=$real P11FAULT_CONTROL=$T/nethsm/p11fault.ctl
    if start_scepd nethsm; then
      MEASURE_LABEL="scepd-nethsm-w$w" MEASURE_LEG=nethsm \
        MEASURE_FIELDS=",\"workers\":$w,\"op_latency_ms\":$NH_LAT_MS,\"rated_ops_per_s\":$NH_RATE" \
        measure scepd nethsm "$c" 0
    else
      FAILED=1
    fi
    stop_server
  done
  unset P11FAULT_MODULE P11FAULT_CONTROL
}

# ---- 1. crypto ceiling: same key types and thread count as scepd's crypto workers ----
log "state directories"
init_scepd softhsm pkcs11
init_scepd file file
log "crypto ceiling (${CEIL_SECS} s per operation)"
"$BUILD/ceiling" -c "$T/softhsm/scepd.conf" --seconds "$CEIL_SECS" --json "$T/ceiling.json"
CEIL=$(cat "$T/ceiling.json")

# ---- 2. the servers, in turn ----
for s in $SERVERS; do
  case $s in
    scepd-softhsm) start=(start_scepd softhsm) name=scepd keys=softhsm extra=() ;;
    scepd-file)    start=(start_scepd file)    name=scepd keys=software extra=() ;;
    micromdm)      start=(start_micromdm)      name=micromdm keys=software extra=(--legacy) ;;
    *) log "unknown server $s"; exit 2 ;;
  esac
  if "${start[@]}"; then
    for c in $CONCS; do measure "$name" "$keys" "$c" 0 "${extra[@]}"; done
    if [ "$name" = scepd ]; then open_loop "$name" "$keys"; fi
  else
    log "$s: not measured"; FAILED=1
  fi
  stop_server
done

# ---- 3. the emulated network HSM ----
if [ -n "$NH_WORKERS" ]; then nethsm; fi

# ---- 4. store size (full run): empty store against SEED certificates already stored ----
if [ "$SEED" -gt 0 ]; then
  init_scepd store pkcs11
  if start_scepd store; then measure scepd softhsm $STORE_CONC 0; else FAILED=1; fi
  stop_server
  log "seeding $SEED certificates"
  "$BUILD/seed_store" -c "$T/store/scepd.conf" -n "$SEED" --quiet >"$T/seed.json"
  log "seeded: $(cat "$T/seed.json")"
  if start_scepd store; then measure scepd softhsm $STORE_CONC "$SEED"; else FAILED=1; fi
  stop_server
fi

# ---- 5. table, results, plot ----
mkdir -p "$OUT"
base="$OUT/$(date +%F)-$(hostname -s)$SUFFIX"
ncpu=$(nproc)
"$SRC/bench/report.sh" "$ROWS" "$CEIL" "$base.json" "$T/plot" "$ncpu" | tee "$base.txt"
if [ ! -s "$T/plot/series" ]; then
  log "no closed-loop series: no plot"
elif command -v gnuplot >/dev/null; then
  term=png
  gnuplot -e 'set terminal' 2>/dev/null | grep -q pngcairo && term=pngcairo
  series=$(cat "$T/plot/series" 2>/dev/null || true)
  sw=$(grep -o '"sw_ceiling_enrollments_per_s":[0-9.]*' "$T/ceiling.json" | cut -d: -f2)
  hw=$(grep -o '"hsm_ceiling_enrollments_per_s":[0-9.]*' "$T/ceiling.json" | cut -d: -f2)
  gnuplot -e "dir='$T/plot'; out='$base.png'; term='$term'; series='$series'; sw=${sw:-0}; hw=${hw:-0}" \
    "$SRC/bench/plot.gp" 2>"$T/gnuplot.err" || { log "gnuplot failed:"; cat "$T/gnuplot.err" >&2; }
  [ -s "$base.png" ] && log "plot: $base.png"
else
  log "gnuplot not installed: no plot"
fi
log "results: $base.json"
[ $FAILED = 0 ]
