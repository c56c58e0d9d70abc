#!/usr/bin/env bash
# scep-loadgen against a scepd with SoftHSM keys (closed loop, GET + DES3, renewals, open loop,
# duration with warm-up, a wrong challenge, usage errors) and against micromdm's scepserver.
# Every run is bounded by --count or --duration. No throughput figure is asserted: only exit
# codes, counts, error kinds and the JSON contract bench/ reads.
. "$(dirname "$0")/lib.sh"

LG=$BUILD/scep-loadgen
[ -x "$LG" ] || { log "scep-loadgen not built"; exit 1; }
# The peer runs need micromdm's scepserver (Debian package scep, scripts/install-deps.sh).
need_cmd scepserver curl
init_state
start_scepd
cd "$T"
C=$CHALLENGE_VALUE
KEYS=$T/keys
MDM_PID=""
stop_mdm() { if [ -n "$MDM_PID" ]; then kill "$MDM_PID" 2>/dev/null || true; wait "$MDM_PID" 2>/dev/null || true; MDM_PID=""; fi; }
trap 'rc=$?; stop_mdm; (exit $rc); cleanup' EXIT

# lg NAME ARGS...: one run, JSON in $T/NAME.json, output in NAME.out/.err, exit code in $RC.
lg() { local n=$1; shift; RC=0; "$LG" --key-cache "$KEYS" --pool 16 --json "$T/$n.json" --label "$n" "$@" >"$T/$n.out" 2>"$T/$n.err" || RC=$?; }
# jf NAME KEY: a scalar field of NAME.json (the keys are unique in the object).
jf() { grep -o "\"$2\":[^,}]*" "$T/$1.json" | head -n1 | cut -d: -f2- | tr -d '"'; }
rc_is() { [ "$RC" -eq "$1" ] || { echo "  exit $RC, want $1: $(tail -n 3 "$T/$2.err")" >&2; return 1; }; }
no_validation_errors() { ! grep -q '"validation_' "$T/$1.json"; }
all_fields() {
  local k
  for k in label url mode concurrency rate duration_s completed enrollments_per_s p50_ms p90_ms \
           p99_ms p999_ms max_ms errors errors_by_kind server_cpu_s server_cpu_ms_per_enrollment \
           key_type cipher md method renewal_share exhausted; do
    grep -q "\"$k\":" "$T/$1.json" || { echo "  missing $k" >&2; return 1; }
  done
  if command -v jq >/dev/null; then jq -e . "$T/$1.json" >/dev/null; fi
}
# Certificates a run put in the store: measured + warm-up successes + untimed setup ones.
issued_by() { echo $(( $(jf "$1" completed) + $(jf "$1" setup_enrollments) + $(jf "$1" sent) - $(jf "$1" measured_sent) - $(jf "$1" warmup_errors) )); }

# --- scepd ---
lg closed --url "$URL" --challenge "$C" --count 300 --concurrency 8 --server-pid "$SCEPD_PID" \
  --metrics-url "$ADMIN_URL/metrics"
check "closed loop 300 x 8: exit 0" rc_is 0 closed
check "closed loop: completed == 300" test "$(jf closed completed)" = 300
check "closed loop: zero errors" test "$(jf closed errors)" = 0
check "closed loop: zero validation errors" no_validation_errors closed
check "closed loop: every JSON field present, valid JSON" all_fields closed
check "closed loop: mode closed, rate null, label" sh -c "[ '$(jf closed mode)' = closed ] && [ '$(jf closed rate)' = null ] && [ '$(jf closed label)' = closed ]"
check "closed loop: server CPU measured with --server-pid" sh -c "[ '$(jf closed server_cpu_s)' != null ] && [ '$(jf closed server_cpu_ms_per_enrollment)' != null ]"
check "closed loop: percentiles ordered" awk -v a="$(jf closed p50_ms)" -v b="$(jf closed p99_ms)" -v c="$(jf closed max_ms)" 'BEGIN { exit !(a > 0 && a <= b && b <= c) }'
# --metrics-url: scepd's private-key counters over the same phase (keyclock.h): three
# operations per enrollment, and the server's CPU above what they took.
check "closed loop: 3 private-key operations per enrollment" \
  awk -v n="$(jf closed server_keyop_ops_per_enrollment)" 'BEGIN { exit !(n >= 2.9 && n <= 3.1) }'
check "closed loop: server CPU / private-key CPU between 1 and 10" \
  awk -v r="$(jf closed server_cpu_over_keyop)" 'BEGIN { exit !(r > 1 && r < 10) }'
check "closed loop: private-key CPU on stdout" grep -q "server CPU / private-key CPU" "$T/closed.out"
check "report on stdout: enrollments/s and latency" sh -c "grep -q 'enrollments/s' '$T/closed.out' && grep -q 'p99.9' '$T/closed.out'"
check "key pool generated and cached" test "$(ls "$KEYS"/rsa-2048/*.pem | wc -l)" = 16
total=$(issued_by closed)

lg getdes3 --url "$URL" --challenge "$C" --count 100 --concurrency 4 --method get --cipher des3 --md sha512
check "GET + DES3 + SHA-512: exit 0, completed 100" sh -c "[ $RC -eq 0 ] && [ '$(jf getdes3 completed)' = 100 ]"
check "GET + DES3: zero validation errors" no_validation_errors getdes3
check "second run reuses the cached keys" grep -q "(0 generated" "$T/getdes3.err"
total=$((total + $(issued_by getdes3)))

lg renew --url "$URL" --challenge "$C" --count 100 --concurrency 4 --renewal-share 0.3
check "renewal share 0.3: exit 0, completed 100" sh -c "[ $RC -eq 0 ] && [ '$(jf renew completed)' = 100 ]"
check "renewal share 0.3: 30 RenewalReqs, 30 setup enrollments" sh -c "[ '$(jf renew renewals)' = 30 ] && [ '$(jf renew setup_enrollments)' = 30 ]"
check "renewals: zero validation errors" no_validation_errors renew
total=$((total + $(issued_by renew)))

lg open --url "$URL" --challenge "$C" --rate 100 --duration 2 --metrics-url "$ADMIN_URL/metrics"
check "open loop 100/s for 2 s: exit 0" rc_is 0 open
check "open loop: the 200 scheduled requests enrolled" test "$(jf open completed)" = 200
check "open loop: mode open, rate 100, not exhausted" sh -c "[ '$(jf open mode)' = open ] && [ '$(jf open rate)' = 100 ] && [ '$(jf open exhausted)' = false ]"
check "open loop: no server CPU without --server-pid" test "$(jf open server_cpu_s)" = null
check "open loop: private-key CPU measured, no ratio without --server-pid" \
  sh -c "[ '$(jf open server_keyop_cpu_s)' != null ] && [ '$(jf open server_cpu_over_keyop)' = null ]"
total=$((total + $(issued_by open)))

# --metrics-url where nothing answers: reported as unavailable, not an error of the run.
lg timed --url "$URL" --challenge "$C" --duration 1 --warmup 0.5 --concurrency 4 --key-type ec:P-256 \
  --metrics-url "http://127.0.0.1:1/metrics"
check "unreachable --metrics-url: reported unavailable, fields null" \
  sh -c "grep -q 'private-key CPU unavailable' '$T/timed.out' && [ '$(jf timed server_keyop_cpu_s)' = null ]"
check "duration 1 s + warm-up, EC P-256: exit 0, zero errors" sh -c "[ $RC -eq 0 ] && [ '$(jf timed errors)' = 0 ] && [ '$(jf timed completed)' -gt 0 ]"
# Whether the calibrated prebuild ran out depends on how fast the machine is at that moment
# (it is reported, not an error): only its presence is checked.
check "duration: exhausted reported as a boolean" sh -c "[ '$(jf timed exhausted)' = false ] || [ '$(jf timed exhausted)' = true ]"
check "duration: warm-up requests excluded from the statistics" test "$(jf timed sent)" -gt "$(jf timed measured_sent)"
total=$((total + $(issued_by timed)))

check "the store holds every certificate the runs got ($total)" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = "$total"

lg badchal --url "$URL" --challenge wrong --count 20 --concurrency 2
check "wrong challenge: exit 1" rc_is 1 badchal
check "wrong challenge: 20 errors, all failinfo_badRequest" sh -c "[ '$(jf badchal errors)' = 20 ] && [ '$(jf badchal failinfo_badRequest)' = 20 ] && [ '$(jf badchal completed)' = 0 ]"
check "wrong challenge: errors by kind on stdout" grep -q "failinfo_badRequest 20" "$T/badchal.out"
check "wrong challenge: nothing issued" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = "$total"

RC=0; "$LG" --count 3 >/dev/null 2>&1 || RC=$?
check "no --url: exit 2" test "$RC" = 2
RC=0; "$LG" --url "$URL" --count 3 --duration 1 >/dev/null 2>&1 || RC=$?
check "--count with --duration: exit 2" test "$RC" = 2
RC=0; "$LG" --url "$URL" --count 3 --cipher rc4 >/dev/null 2>&1 || RC=$?
check "unknown cipher: exit 2" test "$RC" = 2
stop_scepd
RC=0; "$LG" --url "$URL" --count 3 --key-cache "$KEYS" >/dev/null 2>&1 || RC=$?
check "server down (GetCACaps fails): exit 2" test "$RC" = 2

# --- micromdm scepserver (single-DES replies, RSA only; its file depot races on its serial
# file under concurrent requests, so one connection) ---
{
  mkdir -p "$T/mdm"
  scepserver ca -init -depot "$T/mdm/depot" -keySize 2048 >"$T/mdm/init.log" 2>&1
  MDM_URL=""
  for _ in 1 2 3 4 5; do
    p=$(shuf -i 20000-60000 -n1)
    scepserver -depot "$T/mdm/depot" -port "$p" -challenge secret >"$T/mdm/log" 2>&1 &
    MDM_PID=$!
    for _ in $(seq 1 100); do
      kill -0 "$MDM_PID" 2>/dev/null || break
      if curl -fsS "http://127.0.0.1:$p/scep?operation=GetCACaps" >/dev/null 2>&1; then MDM_URL="http://127.0.0.1:$p/scep"; break; fi
      sleep 0.05
    done
    [ -n "$MDM_URL" ] && break
    stop_mdm                                 # the port was taken: try another
  done
  check "scepserver started" test -n "$MDM_URL"
  if [ -n "$MDM_URL" ]; then
    lg mdm --url "$MDM_URL" --challenge secret --count 100 --concurrency 1 --server-pid "$MDM_PID"
    check "scepserver: exit 0, completed 100" sh -c "[ $RC -eq 0 ] && [ '$(jf mdm completed)' = 100 ]"
    check "scepserver: zero validation errors" no_validation_errors mdm
    check "scepserver: single-DES replies made us load the legacy provider" grep -q "legacy provider" "$T/mdm.err"
    lg mdm2 --url "$MDM_URL" --challenge secret --count 50 --concurrency 1 --method get --cipher des3 --renewal-share 0.2 --legacy
    check "scepserver GET + DES3 + renewals with --legacy: exit 0, completed 50" sh -c "[ $RC -eq 0 ] && [ '$(jf mdm2 completed)' = 50 ] && [ '$(jf mdm2 renewals)' = 10 ]"
    check "scepserver GET + DES3: zero validation errors" no_validation_errors mdm2
    lg mdmbad --url "$MDM_URL" --challenge wrong --count 10 --concurrency 1
    check "scepserver wrong challenge: exit 1, failinfo_badRequest" sh -c "[ $RC -eq 1 ] && [ '$(jf mdmbad failinfo_badRequest)' = 10 ]"
  fi
  stop_mdm
}
# --- bench/ceiling: the JSON bench/profile.sh reads (private floor, the device's public ops) ---
CEIL=$BUILD/ceiling
cj() { grep -o "\"$2\":[^,}]*" "$T/$1.json" | head -n1 | cut -d: -f2- | tr -d '"'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }
RC=0; "$CEIL" -c "$STATE/scepd.conf" --seconds 0.2 --json "$T/ceil.json" 2>"$T/ceil.err" || RC=$?
check "ceiling: exit 0" rc_is 0 ceil
check "ceiling: a software and a token floor" sh -c "$(declare -f gt); gt '$(cj ceil sw_floor_cpu_ms_per_enrollment)' 0 && gt '$(cj ceil hsm_floor_cpu_ms_per_enrollment)' 0"
check "ceiling: device key rsa:2048 by default, verify and encrypt measured" sh -c "[ '$(cj ceil device_key)' = rsa:2048 ] && $(declare -f gt); gt '$(cj ceil sw_verify_per_s)' 0 && gt '$(cj ceil sw_encrypt_per_s)' 0"
check "ceiling: a public operation is faster than a private one" sh -c "$(declare -f gt); gt '$(cj ceil sw_verify_per_s)' '$(cj ceil sw_sign_per_s)'"
check "ceiling: public CPU per enrollment above 0 and below the private floor" sh -c "$(declare -f gt); gt '$(cj ceil public_cpu_ms_per_enrollment)' 0 && gt '$(cj ceil sw_floor_cpu_ms_per_enrollment)' '$(cj ceil public_cpu_ms_per_enrollment)'"
RC=0; "$CEIL" -c "$STATE/scepd.conf" --seconds 0.2 --device-key ec:P-256 --json "$T/ceilec.json" 2>"$T/ceilec.err" || RC=$?
check "ceiling --device-key ec:P-256: exit 0, verifies only (no key transport to an EC key)" sh -c "[ $RC -eq 0 ] && [ '$(cj ceilec device_key)' = ec:P-256 ] && [ '$(cj ceilec sw_encrypt_per_s)' = 0.0 ] && $(declare -f gt); gt '$(cj ceilec public_cpu_ms_per_enrollment)' 0"
RC=0; "$CEIL" -c "$STATE/scepd.conf" --seconds 0.2 --device-key dsa:1024 --json "$T/ceilbad.json" 2>"$T/ceilbad.err" || RC=$?
check "ceiling --device-key dsa:1024: exit 1, said why" sh -c "[ $RC -eq 1 ] && grep -q 'cannot generate a device key dsa:1024' '$T/ceilbad.err'"
finish
