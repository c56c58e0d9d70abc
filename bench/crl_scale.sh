#!/usr/bin/env bash
# CRL at scale (docs/benchmarks.md, "CRL at scale"): a CRL of N revoked certificates built from
# the store by the running server, and issuance while such a CRL is rebuilt.
#
#   bench/crl_scale.sh [--n N] [--revoked R] [--concurrency C] [--duration S] [--warmup S]
#                      [--json FILE] [--keep]
# Defaults: N = 1,000,000 certificates, R = N (all revoked), C = 16, 10 s + 2 s warm-up.
# Steps, on loopback, in /tmp/scepd-crlscale.* (removed on exit, also on failure or Ctrl-C;
# --keep keeps it with every log):
#   1. a SoftHSM state directory (scripts/init-state.sh); bench/seed_store writes N synthetic
#      certificates into its store and revokes R of them (scepd not running);
#   2. scepd starts with no CRL: the publisher builds the first one at once. Measured: launch
#      until GET /crl/ca.crl answers 200, the audit log's STARTED -> CRL_PUBLISHED, the size,
#      the entry count and the signature (openssl crl -CAfile);
#   3. scep-loadgen with no CRL building (baseline);
#   4. the same loadgen run again; 1 s into its timed phase one more certificate (issued in
#      step 3) is revoked through POST /admin/revocations, so the rebuild ([crl] rebuild_delay
#      later) runs during the timed phase. Measured: the loadgen's numbers, revocation ->
#      CRL_PUBLISHED, and enrollments/s inside the build window from the audit log's ISSUED
#      times against the timed phase before it.
# Environment: BUILD (build dir, default /work/main/build or ./build), LOADGEN.
# Prints a summary and one JSON object (also written to --json FILE). Exit 0 when every step
# worked and the loadgen counted no errors, 1 otherwise, 2 on usage or missing binaries.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$SRC/bench/lib.sh"
if [ -z "${BUILD:-}" ]; then
  BUILD=/work/main/build; [ -x "$BUILD/scepd" ] || BUILD=$SRC/build
fi
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}

N=1000000 R="" CONC=16 DURATION=10 WARMUP=2 JSON="" KEEP=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --n) N=${2:?}; shift ;;
    --revoked) R=${2:?}; shift ;;
    --concurrency) CONC=${2:?}; shift ;;
    --duration) DURATION=${2:?}; shift ;;
    --warmup) WARMUP=${2:?}; shift ;;
    --json) JSON=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "crl_scale: unknown argument $1" >&2; usage ;;
  esac
  shift
done
: "${R:=$N}"
for v in "$N" "$R" "$CONC" "$DURATION" "$WARMUP"; do
  [[ $v =~ ^[0-9]+$ ]] || { echo "crl_scale: not a number: $v" >&2; exit 2; }
done
[ "$R" -le "$N" ] && [ "$N" -ge 1 ] && [ "$DURATION" -ge 4 ] ||
  { echo "crl_scale: need 1 <= N, R <= N, duration >= 4" >&2; exit 2; }
for b in scepd seed_store; do
  [ -x "$BUILD/$b" ] || { echo "crl_scale: $BUILD/$b missing: build first" >&2; exit 2; }
done
[ -x "$LOADGEN" ] || { echo "crl_scale: $LOADGEN missing: build first" >&2; exit 2; }
for c in curl openssl awk; do
  command -v $c >/dev/null || { echo "crl_scale: $c is needed" >&2; exit 2; }
done

T=$(mktemp -d /tmp/scepd-crlscale.XXXXXX)
S=$T/state
SERVER_PID="" LG_PID="" FAILED=0
T0=$SECONDS
log() { printf 'crl_scale [%3ds]: %s\n' $((SECONDS - T0)) "$*" >&2; }
die() { log "$*"; exit 1; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$LG_PID"
  stop_pid "$SERVER_PID"
  if [ $KEEP = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# ISO audit time <-> epoch seconds (ms); audit times compare as strings (fixed format, UTC)
iso2s() { date -u -d "$1" +%s.%3N; }
s2iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.%3NZ; }
# audit_field EVENT FIELD [NTH]: the FIELD of the NTH (default last) audit record of EVENT
audit_field() {
  awk -v ev="\"event\":$1," -v f="\"$2\":\"" -v nth="${3:-0}" '
    index($0, ev) { n++; i = index($0, f); if (i) { s = substr($0, i + length(f));
                    v[n] = substr(s, 1, index(s, "\"") - 1) } }
    END { print (nth > 0 ? v[nth] : v[n]) }' "$S/audit.log"
}
count_event() { awk -v ev="\"event\":$1," 'index($0, ev) { n++ } END { print n + 0 }' "$S/audit.log"; }
# issued_between ISO_FROM ISO_TO: ISSUED events with from <= ts < to
issued_between() {
  awk -v a="$1" -v b="$2" 'index($0, "\"event\":1000,") {
      t = substr($0, 8, 24); if (t >= a && t < b) n++ } END { print n + 0 }' "$S/audit.log"
}
# crl_info FILE: "bytes entries" (entries: revokedCertificates items, counted by openssl)
crl_info() {
  local n
  n=$(openssl crl -inform DER -noout -text -in "$1" | grep -c 'Serial Number:' || true)
  echo "$(stat -c %s "$1") $n"
}
json_num() { sed -n "s/.*\"$2\":[[:space:]]*\\([-0-9.e+]*\\).*/\\1/p" "$1" | head -n 1; }

# ---- 1. state directory and seeded store ----
log "state directory (SoftHSM keys)"
KEYS=pkcs11 LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" \
  "$SRC/scripts/init-state.sh" "$S" >"$T/init.log" 2>&1 ||
  { cat "$T/init.log" >&2; die "init-state failed"; }
CHALLENGE=$(cat "$S/challenge")
TOKEN=$(cat "$S/admin-token")
DELAY_S=$(awk -F= '/^\[crl\]/ { c = 1 } c && $1 ~ /^rebuild_delay/ { gsub(/[ s]/, "", $2); print $2; exit }' "$S/scepd.conf")
DELAY_S=${DELAY_S:-2}
log "seeding $N certificates, $R revoked"
ts=$(now)
"$BUILD/seed_store" -c "$S/scepd.conf" -n "$N" --revoked "$R" --quiet >"$T/seed.json" ||
  die "seed_store failed"
SEED_S=$(elapsed "$ts" "$(now)")
[ "$(json_num "$T/seed.json" revoked)" = "$R" ] || die "seed_store revoked $(json_num "$T/seed.json" revoked), not $R"
log "seeded in $SEED_S s: $(cat "$T/seed.json")"

# ---- 2. first CRL ----
t_launch=$(now)
"$BUILD/scepd" -c "$S/scepd.conf" --port-file "$T/port" --admin-port-file "$T/admin-port" \
  >"$T/scepd.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do [ -s "$T/port" ] && break; kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
[ -s "$T/port" ] || { tail -n 20 "$T/scepd.log" >&2; die "scepd did not start"; }
BASE=http://127.0.0.1:$(cat "$T/port")
# The admin API has its own listener ([admin] listen; init-state.sh: port 0 here).
ADMIN_BASE=http://127.0.0.1:$(cat "$T/admin-port")
code=000
for _ in $(seq 1 3000); do   # 300 s at most
  code=$(curl -s -o "$T/crl1.der" -w '%{http_code}' "$BASE/crl/ca.crl" || true)
  [ "$code" = 200 ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$T/scepd.log" >&2; die "scepd exited"; }
  sleep 0.1
done
[ "$code" = 200 ] || die "no CRL after 300 s (last HTTP $code)"
FIRST_SERVED_S=$(elapsed "$t_launch" "$(now)")
FIRST_DETAIL=$(audit_field 1200 detail 1)
FIRST_AUDIT_S=$(elapsed "$(iso2s "$(audit_field 100 ts 1)")" "$(iso2s "$(audit_field 1200 ts 1)")")
log "first CRL served $FIRST_SERVED_S s after launch (STARTED -> CRL_PUBLISHED $FIRST_AUDIT_S s; $FIRST_DETAIL)"
read -r CRL1_BYTES CRL1_ENTRIES < <(crl_info "$T/crl1.der")
openssl crl -inform DER -in "$T/crl1.der" -CAfile "$S/ca.pem" -noout 2>&1 | grep -q 'verify OK' ||
  { log "first CRL: signature does not verify"; FAILED=1; }
[ "$CRL1_ENTRIES" = "$R" ] || { log "first CRL has $CRL1_ENTRIES entries, not $R"; FAILED=1; }
log "first CRL: $CRL1_BYTES bytes, $CRL1_ENTRIES entries"

# run_loadgen NAME [--quiet]: in the background, sets LG_PID; JSON in $T/NAME.json
run_loadgen() {
  local name=$1; shift
  timeout --kill-after=5 $((DURATION + WARMUP + 300)) "$LOADGEN" --url "$BASE/scep" \
    --challenge "$CHALLENGE" --concurrency "$CONC" --duration "$DURATION" --warmup "$WARMUP" \
    --server-pid "$SERVER_PID" --json "$T/$name.json" --label "$name" "$@" \
    >"$T/$name.out" 2>&1 &
  LG_PID=$!
}
wait_loadgen() {
  local rc=0
  wait "$LG_PID" || rc=$?
  LG_PID=""
  [ -s "$T/$1.json" ] || { tail -n 20 "$T/$1.out" >&2; die "$1: scep-loadgen failed (exit $rc)"; }
  [ $rc = 0 ] || { log "$1: scep-loadgen reported errors (exit $rc)"; FAILED=1; }
}

# ---- 3. baseline: no CRL building ----
log "baseline: $DURATION s at concurrency $CONC (+$WARMUP s warm-up), no CRL building"
run_loadgen idle --quiet
wait_loadgen idle
log "baseline: $(json_num "$T/idle.json" enrollments_per_s) enrollments/s, p99 $(json_num "$T/idle.json" p99_ms) ms"

# ---- 4. the same while the CRL is rebuilt ----
SERIAL=$(audit_field 1000 serial)
[ -n "$SERIAL" ] || die "no ISSUED event with a serial in the audit log"
log "under rebuild: same run; revoking $SERIAL 1 s into the timed phase"
run_loadgen build
for _ in $(seq 1 6000); do   # the loadgen's calibration and prebuilding come first
  grep -q 'prebuilt' "$T/build.out" 2>/dev/null && break
  kill -0 "$LG_PID" 2>/dev/null || break
  sleep 0.05
done
grep -q 'prebuilt' "$T/build.out" || { tail -n 20 "$T/build.out" >&2; die "the loadgen never started its run"; }
t_timed=$(awk -v a="$(now)" -v w="$WARMUP" 'BEGIN { printf "%.3f", a + w }')
sleep $((WARMUP + 1))
code=$(curl -s -o "$T/revoke.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -d "{\"serial\":\"$SERIAL\",\"reason\":\"keyCompromise\"}" "$ADMIN_BASE/admin/revocations" || true)
[ "$code" = 200 ] || { cat "$T/revoke.json" >&2; die "revocation: HTTP $code"; }
wait_loadgen build
log "under rebuild: $(json_num "$T/build.json" enrollments_per_s) enrollments/s, p99 $(json_num "$T/build.json" p99_ms) ms"
for _ in $(seq 1 1200); do   # 120 s at most
  [ "$(count_event 1200)" -ge 2 ] && break
  sleep 0.1
done
[ "$(count_event 1200)" -ge 2 ] || die "no second CRL within 120 s of the revocation"
REV_ISO=$(audit_field 1100 ts)
PUB_ISO=$(audit_field 1200 ts 2)
REBUILD_DETAIL=$(audit_field 1200 detail 2)
rev_s=$(iso2s "$REV_ISO") pub_s=$(iso2s "$PUB_ISO")
REV_TO_PUB_S=$(elapsed "$rev_s" "$pub_s")
bstart_s=$(awk -v a="$rev_s" -v d="$DELAY_S" 'BEGIN { printf "%.3f", a + d }')
BUILD_S=$(elapsed "$bstart_s" "$pub_s")
# enrollments/s from the audit log: in the build window, and in the timed phase before it
tend_s=$(awk -v a="$t_timed" -v d="$DURATION" 'BEGIN { printf "%.3f", a + d }')
wend_s=$(awk -v p="$pub_s" -v e="$tend_s" 'BEGIN { printf "%.3f", (p < e ? p : e) }')
in_build=$(issued_between "$(s2iso "$bstart_s")" "$(s2iso "$wend_s")")
before=$(issued_between "$(s2iso "$t_timed")" "$(s2iso "$bstart_s")")
RATE_BUILD=$(awk -v n="$in_build" -v a="$bstart_s" -v b="$wend_s" 'BEGIN { printf "%.1f", (b > a ? n / (b - a) : 0) }')
RATE_BEFORE=$(awk -v n="$before" -v a="$t_timed" -v b="$bstart_s" 'BEGIN { printf "%.1f", (b > a ? n / (b - a) : 0) }')
OVERLAP_S=$(elapsed "$bstart_s" "$wend_s")
log "rebuild: revocation -> CRL_PUBLISHED $REV_TO_PUB_S s (build ~$BUILD_S s after the $DELAY_S s delay; $REBUILD_DETAIL)"
log "audit log: $RATE_BUILD enrollments/s during the build ($OVERLAP_S s in the timed phase), $RATE_BEFORE/s before it"
curl -s -o "$T/crl2.der" "$BASE/crl/ca.crl"
read -r CRL2_BYTES CRL2_ENTRIES < <(crl_info "$T/crl2.der")
[ "$CRL2_ENTRIES" = $((R + 1)) ] || { log "second CRL has $CRL2_ENTRIES entries, not $((R + 1))"; FAILED=1; }

lg() { json_num "$T/$1.json" "$2"; }
RESULT=$(printf '{"host":"%s","date":"%s","cpus":%s,"certs":%s,"revoked":%s,"seed_s":%s,'\
'"first_crl_served_s":%s,"first_crl_audit_s":%s,"crl_bytes":%s,"crl_entries":%s,'\
'"rebuild_delay_s":%s,"revoke_to_publish_s":%s,"rebuild_s":%s,"rebuild_crl_bytes":%s,"rebuild_crl_entries":%s,'\
'"idle":{"enrollments_per_s":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"errors":%s},'\
'"during_rebuild":{"enrollments_per_s":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"errors":%s,'\
'"audit_rate_in_build_window":%s,"audit_rate_before_build":%s,"build_overlap_s":%s},'\
'"concurrency":%s,"duration_s":%s}' \
  "$(hostname -s)" "$(date -u +%F)" "$(nproc)" "$N" "$R" "$SEED_S" \
  "$FIRST_SERVED_S" "$FIRST_AUDIT_S" "$CRL1_BYTES" "$CRL1_ENTRIES" \
  "$DELAY_S" "$REV_TO_PUB_S" "$BUILD_S" "$CRL2_BYTES" "$CRL2_ENTRIES" \
  "$(lg idle enrollments_per_s)" "$(lg idle p50_ms)" "$(lg idle p99_ms)" "$(lg idle max_ms)" "$(lg idle errors)" \
  "$(lg build enrollments_per_s)" "$(lg build p50_ms)" "$(lg build p99_ms)" "$(lg build max_ms)" "$(lg build errors)" \
  "$RATE_BUILD" "$RATE_BEFORE" "$OVERLAP_S" "$CONC" "$DURATION")
echo "$RESULT"
[ -z "$JSON" ] || echo "$RESULT" >"$JSON"
log "done in $((SECONDS - T0)) s$([ $FAILED = 0 ] || echo ' (with failures, see above)')"
exit $FAILED
