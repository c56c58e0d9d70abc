#!/usr/bin/env bash
# Soak campaign (issue 14, docs/benchmarks.md "Crash and soak campaigns"): scepd under a
# steady open-loop load at a share of the peak it first measures, for a given time, with its
# memory, descriptors and errors tracked over time.
#
#   bench/soak.sh [--minutes 30] [--share 0.5] [--peak-seconds 10] [--concurrency 16]
#                 [--segment 120] [--interval 10] [--keys pkcs11|file] [--json FILE]
#                 [--csv FILE] [--keep]
# 1. Peak: scep-loadgen closed loop at --concurrency for --peak-seconds (+2 s warm-up) against
#    a fresh scepd (state as scripts/init-state.sh makes it); its verified enrollments/s.
# 2. Soak: the same scepd, open loop (--rate) at --share of that peak for --minutes, as
#    consecutive scep-loadgen runs of --segment seconds (the loadgen prebuilds every request
#    of a run in memory; between runs it checks the replies and prebuilds the next, during
#    which the server idles: "load duty" says how much of the time was loaded).
# 3. Every --interval seconds: scepd's RSS (VmRSS, RssAnon, RssFile from /proc/PID/status),
#    high-water mark, open descriptors and threads; after each run its errors by kind.
# All requests go to 127.0.0.1; device keys ec:P-256, CA and RA keys rsa:2048 (SoftHSM by
# default), POST, AES-128, SHA-256. Output: a table of the samples and one per run, a summary,
# --json (summary, runs, samples) and --csv (the samples). Everything else lives in
# ${TMPDIR:-/tmp}/scepd-soak.*, removed on exit unless --keep.
# Environment: BUILD (build dir, default ./build), LOADGEN (default $BUILD/scep-loadgen).
# Exit: 0 the soak ran with no loadgen error and scepd still answering; 1 otherwise; 2 usage.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}

MINUTES=30 SHARE=0.5 PEAK_S=10 CONC=16 SEGMENT=120 INTERVAL=10 KEYS=pkcs11 JSON="" CSV="" KEEP=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=${2:?}; shift ;;
    --share) SHARE=${2:?}; shift ;;
    --peak-seconds) PEAK_S=${2:?}; shift ;;
    --concurrency) CONC=${2:?}; shift ;;
    --segment) SEGMENT=${2:?}; shift ;;
    --interval) INTERVAL=${2:?}; shift ;;
    --keys) KEYS=${2:?}; shift ;;
    --json) JSON=${2:?}; shift ;;
    --csv) CSV=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "soak: unknown argument $1" >&2; usage ;;
  esac
  shift
done
for b in "$BUILD/scepd" "$BUILD/scepctl" "$LOADGEN"; do
  [ -x "$b" ] || { echo "soak: $b missing: build first" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "soak: curl is needed" >&2; exit 2; }
SOAK_S=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
[ "$SOAK_S" -ge 1 ] || { echo "soak: --minutes must be positive" >&2; exit 2; }

T=$(mktemp -d "${TMPDIR:-/tmp}/scepd-soak.XXXXXX")
STATE=$T/state CONF=$T/state/scepd.conf
SCEPD_PID="" LG_PID="" SAMPLER_PID=""
T0=$SECONDS
log() { printf 'soak [%5ds]: %s\n' $((SECONDS - T0)) "$*" >&2; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$SAMPLER_PID" ] || { kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; }
  [ -z "$LG_PID" ] || { kill -INT "$LG_PID" 2>/dev/null || true; wait "$LG_PID" 2>/dev/null || true; }
  if [ -n "$SCEPD_PID" ]; then
    kill -TERM "$SCEPD_PID" 2>/dev/null || true
    wait "$SCEPD_PID" 2>/dev/null || true
  fi
  if [ $KEEP = 1 ] || [ $rc -ne 0 ]; then log "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CHALLENGE=$(openssl rand -hex 12)
LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" KEYS=$KEYS CHALLENGE=$CHALLENGE \
  "$SRC/scripts/init-state.sh" "$STATE" >"$T/init.log" 2>&1 ||
  { log "init-state failed:"; cat "$T/init.log" >&2; exit 1; }
"$BUILD/scepd" -c "$CONF" --port-file "$T/port" >"$T/scepd.log" 2>&1 &
SCEPD_PID=$!
for _ in $(seq 1 200); do
  if [ -s "$T/port" ] && curl -fsS -o /dev/null "http://127.0.0.1:$(cat "$T/port")/healthz" 2>/dev/null; then break; fi
  kill -0 "$SCEPD_PID" 2>/dev/null || { log "scepd exited:"; cat "$T/scepd.log" >&2; exit 1; }
  sleep 0.05
done
PORT=$(cat "$T/port")
URL="http://127.0.0.1:$PORT/scep"
LG_COMMON=(--url "$URL" --challenge "$CHALLENGE" --key-type ec:P-256 --method post --cipher aes128
           --md sha256 --key-cache "$T/lgkeys" --server-pid "$SCEPD_PID" --quiet)

# proc_sample: "rss_kb anon_kb file_kb hwm_kb fds threads" of scepd now.
proc_sample() {
  local st
  st=$(cat "/proc/$SCEPD_PID/status" 2>/dev/null) || return 1
  awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } /^VmHWM:/ { h = $2 }
       /^Threads:/ { t = $2 } END { printf "%d %d %d %d ", r, a, f, h; print t }' <<<"$st" |
    { read -r r a f h t; echo "$r $a $f $h $(ls "/proc/$SCEPD_PID/fd" 2>/dev/null | wc -l) $t"; }
}
RSS_BOOT=$(proc_sample | cut -d' ' -f1)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)   # the machine is shared: other work shows here

# --- 1. the peak ---
log "scepd pid $SCEPD_PID on $URL ($KEYS keys), RSS after start ${RSS_BOOT} kB; peak: closed loop c$CONC, ${PEAK_S} s"
"$LOADGEN" "${LG_COMMON[@]}" --concurrency "$CONC" --duration "$PEAK_S" --warmup 2 --label peak \
  --json "$T/peak.json" >"$T/peak.out" 2>&1 || { log "peak run failed:"; tail -n 8 "$T/peak.out" >&2; exit 1; }
jnum() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$2" | head -n1; }
PEAK=$(jnum enrollments_per_s "$T/peak.json")
PEAK_P99=$(jnum p99_ms "$T/peak.json")
RATE=$(awk -v p="$PEAK" -v s="$SHARE" 'BEGIN { r = p * s; printf "%d", (r < 1 ? 1 : r) }')
log "peak $PEAK enrollments/s (p99 $PEAK_P99 ms); soak at $RATE/s ($SHARE of it) for $MINUTES min in runs of ${SEGMENT} s"

# --- 2./3. the soak, sampled ---
echo "t_s,rss_kb,rss_anon_kb,rss_file_kb,hwm_kb,fds,threads" > "$T/samples.csv"
sampler() {
  local t0=$(date +%s) s
  while :; do
    s=$(proc_sample) || return 0
    echo "$(($(date +%s) - t0)),${s// /,}" >> "$T/samples.csv"
    sleep "$INTERVAL"
  done
}
sampler &
SAMPLER_PID=$!
SOAK_T0=$(date +%s)
echo "run,start_s,duration_s,rate,enrolled,enroll_per_s,p50_ms,p99_ms,p999_ms,max_ms,errors,errors_by_kind,cpu_ms_per_enr" > "$T/runs.csv"
printf '%4s %8s %8s %6s %9s %8s %8s %8s %9s %8s %7s %10s\n' run start_s dur_s rate enrolled enr/s p50_ms p99_ms p99.9_ms max_ms errors rss_kB
run=0 ERRORS=0 ENROLLED=0 LOADED_S=0 FAILED=0
: > "$T/kinds.txt"
while :; do
  left=$((SOAK_T0 + SOAK_S - $(date +%s)))
  [ "$left" -ge 2 ] || break
  run=$((run + 1))
  dur=$((left < SEGMENT ? left : SEGMENT))
  start=$(($(date +%s) - SOAK_T0))
  warm=(); [ $run -gt 1 ] || warm=(--warmup 2)
  rc=0
  "$LOADGEN" "${LG_COMMON[@]}" --rate "$RATE" --duration "$dur" "${warm[@]}" --label "soak-$run" \
    --json "$T/run-$run.json" >"$T/run-$run.out" 2>&1 &
  LG_PID=$!
  wait "$LG_PID" || rc=$?
  LG_PID=""
  j=$T/run-$run.json
  if [ ! -s "$j" ]; then
    log "run $run: no report (exit $rc):"; tail -n 5 "$T/run-$run.out" >&2
    FAILED=$((FAILED + 1)); break
  fi
  kinds=$(sed -n 's/.*"errors_by_kind":\({[^}]*}\).*/\1/p' "$j")
  tr -d '{}"' <<<"$kinds" | tr ',' '\n' | grep : >> "$T/kinds.txt" || true
  e=$(jnum errors "$j"); n=$(jnum completed "$j"); d=$(jnum duration_s "$j")
  ERRORS=$((ERRORS + e)); ENROLLED=$((ENROLLED + n))
  LOADED_S=$(awk -v a="$LOADED_S" -v b="$d" 'BEGIN { printf "%.3f", a + b }')
  [ "$rc" -eq 0 ] || [ "$e" -gt 0 ] || FAILED=$((FAILED + 1))   # exit 1 without errors: a warm-up error
  rss=$(proc_sample | cut -d' ' -f1) || rss=0
  printf '%4d %8d %8.1f %6d %9d %8.1f %8.2f %8.2f %9.2f %8.2f %7d %10d\n' "$run" "$start" "$d" "$RATE" "$n" \
    "$(jnum enrollments_per_s "$j")" "$(jnum p50_ms "$j")" "$(jnum p99_ms "$j")" "$(jnum p999_ms "$j")" \
    "$(jnum max_ms "$j")" "$e" "${rss:-0}"
  echo "$run,$start,$d,$RATE,$n,$(jnum enrollments_per_s "$j"),$(jnum p50_ms "$j"),$(jnum p99_ms "$j"),$(jnum p999_ms "$j"),$(jnum max_ms "$j"),$e,$(tr -d '{}"' <<<"$kinds" | tr ',' ';'),$(jnum server_cpu_ms_per_enrollment "$j")" >> "$T/runs.csv"
  kill -0 "$SCEPD_PID" 2>/dev/null || { log "scepd died"; FAILED=$((FAILED + 1)); break; }
done
SOAK_WALL=$(($(date +%s) - SOAK_T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
kill -TERM "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
s=$(proc_sample) && echo "$SOAK_WALL,${s// /,}" >> "$T/samples.csv"

# --- after: does it still answer, what did it log, what does the store hold ---
HEALTHY=0
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && HEALTHY=1
[ $HEALTHY = 1 ] || FAILED=$((FAILED + 1))
STORED=$("$BUILD/scepctl" -c "$CONF" cert count 2>/dev/null || echo -1)
REFUSALS=$(grep -c '"event":2[0-9][0-9][0-9],' "$STATE/audit.log" || true)
HSM_EVENTS=$(grep -c '"name":"HSM_' "$STATE/audit.log" || true)
LOG_LINES=$(grep -vc '^scepd: listening' "$T/scepd.log" || true)
KINDS=$(awk -F: '{ n[$1] += $2 } END { s = ""; for (k in n) s = s sprintf("%s\"%s\":%d", s == "" ? "" : ",", k, n[k]); print "{" s "}" }' "$T/kinds.txt")

echo
echo "samples (every ${INTERVAL} s):"
awk -F, 'NR == 1 { printf "%7s %10s %10s %10s %10s %5s %7s\n", "t_s", "rss_kB", "anon_kB", "file_kB", "hwm_kB", "fds", "threads"; next }
         { printf "%7d %10d %10d %10d %10d %5d %7d\n", $1, $2, $3, $4, $5, $6, $7 }' "$T/samples.csv"
# RSS: first and last sample, max, and the least-squares slope over the soak (kB per hour).
read -r RSS_START RSS_END RSS_MAX ANON_START ANON_END ANON_MAX FILE_END SLOPE ANON_SLOPE FDS_START FDS_END FDS_MAX < <(
  awk -F, 'NR > 1 { n++; t[n] = $1; r[n] = $2; a[n] = $3; if ($2 > rm) rm = $2; if ($3 > am) am = $3; if ($6 > fm) fm = $6; f[n] = $6; fl[n] = $4 }
    END {
      for (i = 1; i <= n; i++) { st += t[i]; sr += r[i]; sa += a[i] }
      mt = st / n; mr = sr / n; ma = sa / n
      for (i = 1; i <= n; i++) { d = t[i] - mt; v += d * d; c += d * (r[i] - mr); ca += d * (a[i] - ma) }
      printf "%d %d %d %d %d %d %d %.0f %.0f %d %d %d\n", r[1], r[n], rm, a[1], a[n], am, fl[n],
        (v > 0 ? c / v * 3600 : 0), (v > 0 ? ca / v * 3600 : 0), f[1], f[n], fm
    }' "$T/samples.csv")
DUTY=$(awk -v l="$LOADED_S" -v w="$SOAK_WALL" 'BEGIN { printf "%.1f", (w > 0 ? 100 * l / w : 0) }')
cat >&2 <<EOF
soak: peak $PEAK/s (closed loop c$CONC, ${PEAK_S} s, p99 $PEAK_P99 ms); soak at $RATE/s for ${SOAK_WALL} s in $run runs, load duty $DUTY %
soak: enrolled $ENROLLED, loadgen errors $ERRORS $KINDS; audit refusals $REFUSALS, HSM events $HSM_EVENTS, scepd log lines $LOG_LINES; store $STORED; healthy after: $HEALTHY
soak: RSS kB boot $RSS_BOOT, soak start $RSS_START, end $RSS_END, max $RSS_MAX, growth $((RSS_END - RSS_START)) (slope $SLOPE kB/h); anon start $ANON_START end $ANON_END max $ANON_MAX (slope $ANON_SLOPE kB/h); file-backed at end $FILE_END
soak: open descriptors start $FDS_START end $FDS_END max $FDS_MAX
soak: load average before $LOAD_BEFORE, after $LOAD_AFTER ($(nproc) CPUs)
EOF
if [ -n "$JSON" ]; then
  {
    printf '{"minutes":%s,"share":%s,"peak_enrollments_per_s":%s,"peak_p99_ms":%s,"peak_concurrency":%d,"rate":%d,' \
      "$MINUTES" "$SHARE" "$PEAK" "$PEAK_P99" "$CONC" "$RATE"
    printf '"soak_s":%d,"runs":%d,"loaded_s":%s,"load_duty_pct":%s,"enrolled":%d,"errors":%d,"errors_by_kind":%s,' \
      "$SOAK_WALL" "$run" "$LOADED_S" "$DUTY" "$ENROLLED" "$ERRORS" "$KINDS"
    printf '"audit_refusals":%d,"hsm_events":%d,"scepd_log_lines":%d,"stored":%d,"healthy_after":%s,' \
      "$REFUSALS" "$HSM_EVENTS" "$LOG_LINES" "$STORED" "$([ $HEALTHY = 1 ] && echo true || echo false)"
    printf '"rss_kb":{"boot":%d,"start":%d,"end":%d,"max":%d,"growth":%d,"slope_per_h":%s},' \
      "$RSS_BOOT" "$RSS_START" "$RSS_END" "$RSS_MAX" "$((RSS_END - RSS_START))" "$SLOPE"
    printf '"rss_anon_kb":{"start":%d,"end":%d,"max":%d,"growth":%d,"slope_per_h":%s},"rss_file_kb_end":%d,' \
      "$ANON_START" "$ANON_END" "$ANON_MAX" "$((ANON_END - ANON_START))" "$ANON_SLOPE" "$FILE_END"
    printf '"fds":{"start":%d,"end":%d,"max":%d},"keys":"%s","loadavg_before":"%s","loadavg_after":"%s",' \
      "$FDS_START" "$FDS_END" "$FDS_MAX" "$KEYS" "$LOAD_BEFORE" "$LOAD_AFTER"
    printf '"run_table":['
    awk -F, 'NR > 1 { printf "%s{\"run\":%d,\"start_s\":%d,\"duration_s\":%s,\"enrolled\":%d,\"enrollments_per_s\":%s,\"p50_ms\":%s,\"p99_ms\":%s,\"p999_ms\":%s,\"max_ms\":%s,\"errors\":%d}", (NR > 2 ? "," : ""), $1, $2, $3, $5, $6, $7, $8, $9, $10, $11 }' "$T/runs.csv"
    printf '],"samples":['
    awk -F, 'NR > 1 { printf "%s[%d,%d,%d,%d,%d,%d,%d]", (NR > 2 ? "," : ""), $1, $2, $3, $4, $5, $6, $7 }' "$T/samples.csv"
    printf '],"sample_fields":["t_s","rss_kb","rss_anon_kb","rss_file_kb","hwm_kb","fds","threads"]}\n'
  } > "$JSON"
fi
[ -z "$CSV" ] || cp "$T/samples.csv" "$CSV"
[ "$FAILED" -eq 0 ] && [ "$ERRORS" -eq 0 ]
