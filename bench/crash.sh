#!/usr/bin/env bash
# Crash campaign (issue 14, docs/benchmarks.md "Crash and soak campaigns"): scepd is killed
# with SIGKILL at a random moment while clients enroll, restarted, and checked, N times over
# one state directory (SoftHSM keys by default), so the store lives through every crash.
#
#   bench/crash.sh [--cycles 100] [--clients 4] [--onetime 2] [--rate 30] [--run-min 0.3]
#                  [--run-max 2.5] [--keys pkcs11|file] [--seed N] [--json FILE] [--csv FILE]
#                  [--plant PEM] [--keep]
# Load of one cycle, all on 127.0.0.1 and bounded (each client stops at its first request
# without a certificate, at most 300 requests): --clients scep_req loops with the static
# challenge, --onetime loops that mint a one-time challenge (scepctl challenge new, profile
# "otp", challenge = onetime) and enroll with it, and scep-loadgen in open loop at --rate/s
# (0: none; its certificates count in the store, not in the checks below). After a delay
# drawn uniformly from [--run-min, --run-max] seconds scepd gets SIGKILL.
# After each restart, before new load:
#   - every certificate a client received (all cycles so far) is in the store (scepctl cert
#     list), and the ones of this cycle are there byte for byte (scepctl cert show) and verify
#     against the CA certificate;
#   - no serial appears twice, neither in the store nor among received certificates;
#   - no one-time challenge is consumed without its certificate: every one-time request cut
#     off by the crash is repeated as is (same key, transactionID, challenge) and must get its
#     certificate (replayed if it had been stored, issued if the challenge is still unused),
#     never "challenge already used"; and one challenge whose certificate arrived must still
#     be used (a new key presenting it is refused);
#   - the restarted server issues (one probe enrollment).
# --plant PEM: count that certificate as received in the first cycle (self-test of the
#   checks: a certificate the store never had must be reported missing, exit 1).
# Output: one line per cycle, a summary, --json (summary object) and --csv (one row a cycle).
# Everything lives in ${TMPDIR:-/tmp}/scepd-crash.*, removed on exit unless --keep or a check failed
# (then kept, with a copy of the store at each failing cycle under evidence/).
# Environment: BUILD (build dir, default ./build), LOADGEN (default $BUILD/scep-loadgen).
# Exit: 0 every cycle restarted and every check held; 1 otherwise; 2 usage/missing binaries.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
case "$BUILD" in /*) ;; *) BUILD="$SRC/$BUILD" ;; esac
LOADGEN=${LOADGEN:-$BUILD/scep-loadgen}
REQ=$BUILD/tests/scep_req
CTL=$BUILD/scepctl

CYCLES=100 CLIENTS=4 ONETIME=2 RATE=30 RUN_MIN=0.3 RUN_MAX=2.5 KEYS=pkcs11 SEED=""
JSON="" CSV="" PLANT="" KEEP=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --cycles) CYCLES=${2:?}; shift ;;
    --clients) CLIENTS=${2:?}; shift ;;
    --onetime) ONETIME=${2:?}; shift ;;
    --rate) RATE=${2:?}; shift ;;
    --run-min) RUN_MIN=${2:?}; shift ;;
    --run-max) RUN_MAX=${2:?}; shift ;;
    --keys) KEYS=${2:?}; shift ;;
    --seed) SEED=${2:?}; shift ;;
    --json) JSON=${2:?}; shift ;;
    --csv) CSV=${2:?}; shift ;;
    --plant) PLANT=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "crash: unknown argument $1" >&2; usage ;;
  esac
  shift
done
for b in "$BUILD/scepd" "$CTL" "$REQ"; do
  [ -x "$b" ] || { echo "crash: $b missing: build first" >&2; exit 2; }
done
[ "$RATE" = 0 ] || [ -x "$LOADGEN" ] || { echo "crash: $LOADGEN missing (or --rate 0)" >&2; exit 2; }
[ -z "$PLANT" ] || [ -s "$PLANT" ] || { echo "crash: --plant $PLANT: no such file" >&2; exit 2; }
command -v curl >/dev/null || { echo "crash: curl is needed" >&2; exit 2; }
# Milliseconds, for $RANDOM arithmetic.
ms_of() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000 }'; }
RUN_MIN_MS=$(ms_of "$RUN_MIN") RUN_MAX_MS=$(ms_of "$RUN_MAX")
[ "$RUN_MAX_MS" -ge "$RUN_MIN_MS" ] && [ "$RUN_MIN_MS" -ge 0 ] || { echo "crash: --run-max < --run-min" >&2; exit 2; }
: "${SEED:=$$}"
RANDOM=$SEED

T=$(mktemp -d "${TMPDIR:-/tmp}/scepd-crash.XXXXXX")
STATE=$T/state CONF=$T/state/scepd.conf
SCEPD_PID="" LG_PID="" CLIENT_PIDS=()
FAILED=0
T0=$SECONDS
log() { printf 'crash [%4ds]: %s\n' $((SECONDS - T0)) "$*" >&2; }
now_ms() { date +%s%3N; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${CLIENT_PIDS[@]}" $LG_PID; do kill -TERM "$p" 2>/dev/null || true; done
  if [ -n "$SCEPD_PID" ]; then kill -TERM "$SCEPD_PID" 2>/dev/null || true; wait "$SCEPD_PID" 2>/dev/null || true; fi
  if [ $KEEP = 1 ] || [ $FAILED -ne 0 ] || [ $rc -ne 0 ]; then log "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- state: one directory for the whole campaign, a one-time profile beside the defaults ---
CHALLENGE=$(openssl rand -hex 12)
LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" SHARDS=2 WORKERS=2 KEYS=$KEYS \
  CHALLENGE=$CHALLENGE "$SRC/scripts/init-state.sh" "$STATE" >"$T/init.log" 2>&1 ||
  { log "init-state failed:"; cat "$T/init.log" >&2; exit 1; }
printf 'challenge = onetime\n' > "$STATE/profiles/otp.conf"
mkdir -p "$T/got" "$T/otp" "$T/cycles" "$T/evidence" "$T/lgkeys"
: > "$T/ledger.tsv"     # name serial sha256(DER) cycle: one received certificate a line
: > "$T/reported.txt"   # serials already reported lost or different (counted once)
USED_TEXT=$(sed -n 's/^ *X(CHAL_USED, *[A-Z]*, *"[a-z_]*", *"\(.*\)") *\\\{0,1\}$/\1/p' "$SRC/engine/scep/reject.h")
[ -n "$USED_TEXT" ] || { log "cannot read the challenge_used text from engine/scep/reject.h"; exit 2; }

# start_scepd: starts it and waits until /healthz answers; sets PORT, URL, RESTART_MS.
start_scepd() {
  local t=$(now_ms)
  rm -f "$T/port"
  "$BUILD/scepd" -c "$CONF" --port-file "$T/port" >>"$T/scepd.log" 2>&1 &
  SCEPD_PID=$!
  for _ in $(seq 1 400); do
    if [ -s "$T/port" ]; then
      PORT=$(cat "$T/port")
      URL="http://127.0.0.1:$PORT/scep"
      if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; then
        RESTART_MS=$(($(now_ms) - t))
        return 0
      fi
    fi
    kill -0 "$SCEPD_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "scepd did not become healthy:"; tail -n 20 "$T/scepd.log" >&2
  return 1
}

# --- the load of one cycle ---
# static_client C ID: enrolls with the static challenge until a request gets no certificate.
static_client() {
  local c=$1 id=$2 i=0 n
  set +e
  while [ $i -lt 300 ]; do
    n=c$c-s$id-$i
    "$REQ" enroll --url "$URL" --challenge "$CHALLENGE" --cn "crash-$n" --key-type ec:P-256 \
      --cert-out "$T/got/$n.pem" >"$T/cycles/$c/$n.out" 2>&1
    [ -s "$T/got/$n.pem" ] || return 0
    i=$((i + 1))
  done
}
# onetime_client C ID: mints a one-time challenge, enrolls with it (its key kept for the
# repeat after the crash), until a request gets no certificate.
onetime_client() {
  local c=$1 id=$2 i=0 n v
  set +e
  while [ $i -lt 300 ]; do
    n=c$c-o$id-$i
    v=$("$CTL" -c "$CONF" challenge new --profile otp --ttl 24h 2>"$T/otp/$n.err") || return 0
    printf '%s\n' "$v" > "$T/otp/$n.chal"
    "$REQ" enroll --url "$URL/otp" --challenge "$v" --cn "crash-$n" --key-type ec:P-256 \
      --key "$T/otp/$n.key" --cert-out "$T/got/$n.pem" >"$T/otp/$n.out" 2>&1
    [ -s "$T/got/$n.pem" ] || return 0
    i=$((i + 1))
  done
}

# --- the checks after a restart ---
# norm_serial: hex serial on stdin -> lower case without leading zeros.
norm_serial() { tr 'A-F' 'a-f' | sed 's/^0*//'; }

# violation CYCLE KIND TEXT: one broken invariant; the store is copied once per cycle.
violation() {
  FAILED=$((FAILED + 1))
  printf 'cycle %s %s: %s\n' "$1" "$2" "$3" >> "$T/violations.txt"
  log "VIOLATION cycle $1 $2: $3"
  if [ ! -d "$T/evidence/cycle-$1" ]; then
    mkdir -p "$T/evidence/cycle-$1"
    mdb_copy "$STATE/store" "$T/evidence/cycle-$1" 2>/dev/null ||
      cp -a "$STATE/store/." "$T/evidence/cycle-$1/"
    cp "$STATE/audit.log" "$T/evidence/cycle-$1/audit.log"
  fi
}

# repeat_onetime C: every one-time request of cycle C without a certificate, repeated as is.
repeat_onetime() {
  local c=$1 f n out st
  for f in "$T/otp/c$c-"*.chal; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .chal)
    OTP_ATTEMPTS=$((OTP_ATTEMPTS + 1))
    [ -s "$T/got/$n.pem" ] && continue
    OTP_CUT=$((OTP_CUT + 1))
    out=$T/otp/$n.repeat.out
    "$REQ" enroll --url "$URL/otp" --challenge "$(cat "$f")" --cn "crash-$n" --key-type ec:P-256 \
      --key "$T/otp/$n.key" --cert-out "$T/got/$n.pem" >"$out" 2>&1 || true
    st=$(sed -n 's/^status=\([A-Z]*\).*/\1/p' "$out" | tail -n1)
    if [ "$st" = SUCCESS ] && [ -s "$T/got/$n.pem" ]; then
      local txid=$(sed -n 's/^txid=//p' "$out" | head -n1)
      if grep -F "\"txid\":\"$txid\"" "$STATE/audit.log" | grep -q '"event":1002,'; then
        OTP_REPLAYED=$((OTP_REPLAYED + 1))
      else
        OTP_ISSUED=$((OTP_ISSUED + 1))
      fi
      printf '%s\n' "$n" >> "$T/cycles/$c/repeated"
    elif grep -qF "failinfotext=$USED_TEXT" "$out"; then
      OTP_BURNT=$((OTP_BURNT + 1))
      local txid=$(sed -n 's/^txid=//p' "$out" | head -n1)
      violation "$c" challenge-burnt "one-time request $n (txid $txid): challenge consumed, no certificate stored; its audit lines: $(grep -F "\"txid\":\"$txid" "$STATE/audit.log" | sed 's/.*"event":\([0-9]*\).*/\1/' | tr '\n' ' ')"
      cp "$f" "$out" "$T/otp/$n.out" "$T/evidence/cycle-$c/" 2>/dev/null || true
    else
      OTP_OTHER=$((OTP_OTHER + 1))
      violation "$c" onetime-repeat "one-time request $n repeated: $(grep -E 'status=|failinfotext=|http=' "$out" | tr '\n' ' ' || tail -n1 "$out")"
    fi
  done
}

# reuse_probe C: a challenge whose certificate a client received in cycle C is still used.
reuse_probe() {
  local c=$1 f n out
  for f in "$T/otp/c$c-"*.chal; do
    n=$(basename "$f" .chal)
    [ -s "$T/got/$n.pem" ] && ! grep -qx "$n" "$T/cycles/$c/repeated" 2>/dev/null || continue
    out=$T/otp/$n.reuse.out
    "$REQ" enroll --url "$URL/otp" --challenge "$(cat "$f")" --cn "crash-$n-reuse" --key-type ec:P-256 \
      --cert-out "$T/otp/$n.reuse.pem" >"$out" 2>&1 || true
    REUSE_PROBES=$((REUSE_PROBES + 1))
    grep -qF "failinfotext=$USED_TEXT" "$out" ||
      violation "$c" challenge-reusable "challenge of $n (certificate received) accepted again after the crash: $(grep status= "$out" || tail -n1 "$out")"
    return 0
  done
}

# ledger_check C: the received certificates against the store. New files in got/ enter the
# ledger (name, serial, SHA-256 of the DER, cycle); then every ledger entry, of all cycles,
# must be in scepctl's list ($T/stored.txt) and in the certs database (mdb_dump, record
# layout of docs/store.md) with the same DER; one serial, one DER among received ones.
# Prints "new N", "checked N", "missing N", "differs N", "gotdups N" and "V KIND TEXT" lines
# (a serial is reported once: $T/reported.txt); the new files' paths go to $T/new.txt.
ledger_check() {
  mdb_dump -s certs "$STATE/store" > "$T/certs.dump"
  python3 - "$T" "$1" <<'PY'
import base64, hashlib, os, struct, sys
T, cycle = sys.argv[1], sys.argv[2]

def der_len(b, i):  # (content length, header length) of the DER element at i
    n = b[i + 1]
    if n < 0x80:
        return n, 2
    k = n & 0x7F
    return int.from_bytes(b[i + 2:i + 2 + k], "big"), 2 + k

def serial_of(der):  # Certificate -> tbsCertificate -> [0] version? -> INTEGER
    _, h = der_len(der, 0)
    i = h
    _, h = der_len(der, i)
    i += h
    if der[i] == 0xA0:
        l, h = der_len(der, i)
        i += h + l
    if der[i] != 0x02:
        raise ValueError("no serial INTEGER")
    l, h = der_len(der, i)
    return der[i + h:i + h + l].hex().lstrip("0")

ledger = os.path.join(T, "ledger.tsv")
entries = [l.split() for l in open(ledger)]
known = {e[0] for e in entries}
new = []
for f in sorted(os.listdir(os.path.join(T, "got"))):
    name, ext = os.path.splitext(f)
    path = os.path.join(T, "got", f)
    if ext != ".pem" or name in known or os.path.getsize(path) == 0:
        continue
    text = open(path).read()
    body = text.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    der = base64.b64decode("".join(body.split()))
    e = [name, serial_of(der), hashlib.sha256(der).hexdigest(), cycle]
    entries.append(e)
    new.append(path)
with open(ledger, "w") as out:
    for e in entries:
        out.write(" ".join(e) + "\n")
with open(os.path.join(T, "new.txt"), "w") as out:
    out.write("".join(p + "\n" for p in new))

listed = {l.strip() for l in open(os.path.join(T, "stored.txt"))}
store = {}
lines = open(os.path.join(T, "certs.dump")).read().split("HEADER=END\n", 1)[1].split("\n")
for k, v in zip(lines[0::2], lines[1::2]):
    if k.strip() == "DATA=END":
        break
    val = bytes.fromhex(v.strip())
    lens = struct.unpack_from("<4I", val, 92)
    if val[0] != 1 or len(val) != 108 + sum(lens):
        print("V corrupt-record serial %s: record does not decode (docs/store.md)" % k.strip())
        continue
    store[k.strip().lstrip("0")] = hashlib.sha256(val[len(val) - lens[3]:]).hexdigest()

reported_path = os.path.join(T, "reported.txt")
reported = {l.strip() for l in open(reported_path)}
missing = differs = 0
by_serial = {}
for name, serial, sha, c in entries:
    by_serial.setdefault(serial, set()).add(sha)
    if serial in reported:
        continue
    where = [w for w, ok in (("scepctl cert list", serial in listed), ("the certs database", serial in store)) if not ok]
    if where:
        missing += 1
        print("V lost-certificate serial %s received by %s (cycle %s) is missing from %s" % (serial, name, c, " and ".join(where)))
    elif store[serial] != sha:
        differs += 1
        print("V store-differs serial %s: the store holds another certificate than %s received (cycle %s)" % (serial, name, c))
    else:
        continue
    reported.add(serial)
with open(reported_path, "w") as out:
    out.write("".join(s + "\n" for s in sorted(reported)))
gotdups = [s for s, h in by_serial.items() if len(h) > 1 and s + "/dup" not in reported]
if gotdups:
    with open(reported_path, "a") as out:
        out.write("".join(s + "/dup\n" for s in gotdups))
for s in gotdups:
    print("V duplicate-serial serial %s was received on %d different certificates" % (s, len(by_serial[s])))
print("new %d\nchecked %d\nmissing %d\ndiffers %d\ngotdups %d" % (len(new), len(entries), missing, differs, len(gotdups)))
PY
}

# check_cycle C: the checks after the restart that followed the crash of cycle C.
check_cycle() {
  local c=$1 k v rest
  repeat_onetime "$c"
  reuse_probe "$c"
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE" --cn "crash-c$c-probe" --key-type ec:P-256 \
    --cert-out "$T/got/c$c-probe.pem" >"$T/cycles/$c/probe.out" 2>&1 || true
  [ -s "$T/got/c$c-probe.pem" ] || violation "$c" no-issue "the restarted server issued nothing: $(tail -n2 "$T/cycles/$c/probe.out" | tr '\n' ' ')"
  "$CTL" -c "$CONF" cert list | awk '{ print $1 }' | norm_serial | sort > "$T/stored.txt"
  STORED=$(wc -l < "$T/stored.txt")
  local dups=$(uniq -d "$T/stored.txt" | wc -l)
  [ "$dups" -eq 0 ] || violation "$c" duplicate-serial "scepctl cert list shows $dups serials twice: $(uniq -d "$T/stored.txt" | head -n5 | tr '\n' ' ')"
  DUP_STORE=$((DUP_STORE + dups))
  CYCLE_GOT=0 CYCLE_MISMATCH=0
  ledger_check "$c" > "$T/check.out" || violation "$c" checker "the ledger check failed: $(tail -n1 "$T/check.out")"
  while read -r k v rest; do
    case $k in
      V) violation "$c" "$v" "$rest" ;;
      new) CYCLE_GOT=$v ;;
      checked) CHECKS=$((CHECKS + v)) ;;
      missing) MISSING=$((MISSING + v)) ;;
      differs) CYCLE_MISMATCH=$v; MISMATCH=$((MISMATCH + v)) ;;
      gotdups) DUP_GOT=$((DUP_GOT + v)) ;;
    esac
  done < "$T/check.out"
  if [ -s "$T/new.txt" ]; then
    local ok bad
    ok=$(xargs openssl verify -CAfile "$STATE/ca.pem" < "$T/new.txt" 2>/dev/null | grep -c ': OK$' || true)
    bad=$(($(wc -l < "$T/new.txt") - ok))
    [ "$bad" -eq 0 ] || violation "$c" verify "$bad certificates received in this cycle do not verify against the CA"
    UNVERIFIED=$((UNVERIFIED + bad))
  fi
}

# --- the campaign ---
OTP_ATTEMPTS=0 OTP_CUT=0 OTP_REPLAYED=0 OTP_ISSUED=0 OTP_BURNT=0 OTP_OTHER=0 REUSE_PROBES=0
CHECKS=0 MISSING=0 MISMATCH=0 DUP_STORE=0 DUP_GOT=0 UNVERIFIED=0 STORED=0 LG_OK=0 LG_ERR=0
LOAD_REFUSED=0 RESTART_MAX=0 RESTART_SUM=0
echo "cycle,run_ms,received,received_total,stored,missing,store_differs,dup_serials,otp_attempts,otp_cut,otp_repeat_ok,otp_burnt,loadgen_ok_total,loadgen_errors_total,restart_ms" > "$T/cycles.csv"
log "state $STATE ($KEYS keys), $CYCLES cycles, $CLIENTS static + $ONETIME one-time clients, loadgen ${RATE}/s, kill after ${RUN_MIN}-${RUN_MAX} s, seed $SEED"
printf '%5s %7s %8s %8s %8s %7s %6s %5s %8s %8s %8s %8s %9s\n' cycle run_ms received total stored missing differ dups otp_try otp_cut otp_rep otp_burnt restart_ms
start_scepd
LG_ARGS=(--challenge "$CHALLENGE" --rate "$RATE" --concurrency 8 --key-type ec:P-256 --pool 16
         --key-cache "$T/lgkeys" --timeout 5 --quiet)
if [ "$RATE" != 0 ]; then   # the device keys, once, outside the cycles
  "$LOADGEN" "${LG_ARGS[@]}" --url "$URL" --count 4 --label warm >"$T/lg-warm.out" 2>&1 ||
    { log "scep-loadgen warm-up failed:"; tail -n 5 "$T/lg-warm.out" >&2; exit 1; }
fi
for c in $(seq 1 "$CYCLES"); do
  mkdir -p "$T/cycles/$c"
  burnt0=$OTP_BURNT att0=$OTP_ATTEMPTS cut0=$OTP_CUT rep0=$((OTP_REPLAYED + OTP_ISSUED)) miss0=$MISSING dup0=$((DUP_STORE + DUP_GOT))
  CLIENT_PIDS=() LG_PID=""
  run_ms=$((RUN_MIN_MS + (RANDOM * 32768 + RANDOM) % (RUN_MAX_MS - RUN_MIN_MS + 1)))
  if [ "$RATE" != 0 ]; then
    # Its head start covers its setup (GetCACert, prebuilding), so that it is sending when
    # the kill comes; SIGINT then ends its run (before its timed phase SIGINT is ignored, as
    # for any background job, and it runs its --duration against the dead port).
    "$LOADGEN" "${LG_ARGS[@]}" --url "$URL" --duration $(((RUN_MAX_MS + 999) / 1000 + 1)) \
      --label "c$c" --json "$T/cycles/$c/lg.json" >"$T/cycles/$c/lg.out" 2>&1 &
    LG_PID=$!
    sleep 0.4
  fi
  for id in $(seq 1 "$CLIENTS"); do static_client "$c" "$id" & CLIENT_PIDS+=($!); done
  for id in $(seq 1 "$ONETIME"); do onetime_client "$c" "$id" & CLIENT_PIDS+=($!); done
  sleep "$(awk -v m="$run_ms" 'BEGIN { printf "%.3f", m / 1000 }')"
  kill -KILL "$SCEPD_PID"
  wait "$SCEPD_PID" 2>/dev/null || true
  SCEPD_PID=""
  [ -z "$LG_PID" ] || kill -INT "$LG_PID" 2>/dev/null || true
  for p in "${CLIENT_PIDS[@]}" $LG_PID; do wait "$p" 2>/dev/null || true; done
  CLIENT_PIDS=() LG_PID=""
  if [ -s "$T/cycles/$c/lg.json" ]; then
    LG_OK=$((LG_OK + $(sed -n 's/.*"completed":\([0-9]*\).*/\1/p' "$T/cycles/$c/lg.json")))
    LG_ERR=$((LG_ERR + $(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' "$T/cycles/$c/lg.json")))
  fi
  # A CertRep other than SUCCESS during the load (before the kill nothing is refused).
  LOAD_REFUSED=$((LOAD_REFUSED + $(cat "$T/cycles/$c/"*.out "$T/otp/c$c-"*.out 2>/dev/null | grep -c '^status=\(FAILURE\|PENDING\)' || true)))
  if [ "$c" = 1 ] && [ -n "$PLANT" ]; then cp "$PLANT" "$T/got/c1-planted.pem"; fi
  start_scepd || { violation "$c" restart "scepd did not restart"; break; }
  [ "$RESTART_MS" -le "$RESTART_MAX" ] || RESTART_MAX=$RESTART_MS
  RESTART_SUM=$((RESTART_SUM + RESTART_MS))
  check_cycle "$c"
  TOTAL=$(wc -l < "$T/ledger.tsv")
  printf '%5d %7d %8d %8d %8d %7d %6d %5d %8d %8d %8d %8d %9d\n' "$c" "$run_ms" "$CYCLE_GOT" "$TOTAL" \
    "$STORED" "$((MISSING - miss0))" "$CYCLE_MISMATCH" "$((DUP_STORE + DUP_GOT - dup0))" \
    "$((OTP_ATTEMPTS - att0))" "$((OTP_CUT - cut0))" "$((OTP_REPLAYED + OTP_ISSUED - rep0))" \
    "$((OTP_BURNT - burnt0))" "$RESTART_MS"
  echo "$c,$run_ms,$CYCLE_GOT,$TOTAL,$STORED,$((MISSING - miss0)),$CYCLE_MISMATCH,$((DUP_STORE + DUP_GOT - dup0)),$((OTP_ATTEMPTS - att0)),$((OTP_CUT - cut0)),$((OTP_REPLAYED + OTP_ISSUED - rep0)),$((OTP_BURNT - burnt0)),$LG_OK,$LG_ERR,$RESTART_MS" >> "$T/cycles.csv"
  DONE=$c
done
kill -TERM "$SCEPD_PID" 2>/dev/null || true
rc=0; wait "$SCEPD_PID" 2>/dev/null || rc=$?
SCEPD_PID=""
[ "$rc" -eq 0 ] || violation "${DONE:-0}" shutdown "scepd exited $rc on SIGTERM after the campaign"

TOTAL=$(wc -l < "$T/ledger.tsv")
SERIALS=$(awk '{ print $2 }' "$T/ledger.tsv" | sort -u | wc -l)
cat >&2 <<EOF
crash: ${DONE:-0}/$CYCLES cycles (seed $SEED, $KEYS keys); received certificates: $TOTAL ($SERIALS serials), each checked after every later restart too ($CHECKS checks); store $STORED
crash: lost $MISSING, store differs $MISMATCH, duplicate serials $DUP_STORE in the store / $DUP_GOT received, not verifying $UNVERIFIED
crash: one-time requests $OTP_ATTEMPTS, cut off by a crash $OTP_CUT: repeated -> replayed $OTP_REPLAYED, issued $OTP_ISSUED, challenge burnt $OTP_BURNT, other $OTP_OTHER; reuse probes $REUSE_PROBES
crash: loadgen verified $LG_OK, errors $LG_ERR (around the kills); refusals during load $LOAD_REFUSED; restart ms mean $((RESTART_SUM / ${DONE:-1})) max $RESTART_MAX
crash: load average at the end $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)
crash: violations $FAILED$( [ $FAILED -eq 0 ] || echo " (see $T/violations.txt, evidence in $T/evidence)")
EOF
summary=$(printf '{"cycles":%d,"cycles_requested":%d,"seed":%s,"keys":"%s","clients":%d,"onetime_clients":%d,"loadgen_rate":%s,"run_min_s":%s,"run_max_s":%s,"certificates_checked":%d,"serials_checked":%d,"certificate_checks":%d,"stored":%d,"lost":%d,"store_differs":%d,"duplicate_serials_store":%d,"duplicate_serials_received":%d,"not_verifying":%d,"onetime_requests":%d,"onetime_cut":%d,"onetime_replayed":%d,"onetime_issued":%d,"onetime_burnt":%d,"onetime_other":%d,"reuse_probes":%d,"loadgen_verified":%d,"loadgen_errors":%d,"refusals_during_load":%d,"restart_ms_mean":%d,"restart_ms_max":%d,"violations":%d}' \
  "${DONE:-0}" "$CYCLES" "$SEED" "$KEYS" "$CLIENTS" "$ONETIME" "$RATE" "$RUN_MIN" "$RUN_MAX" "$TOTAL" "$SERIALS" "$CHECKS" "$STORED" \
  "$MISSING" "$MISMATCH" "$DUP_STORE" "$DUP_GOT" "$UNVERIFIED" "$OTP_ATTEMPTS" "$OTP_CUT" "$OTP_REPLAYED" "$OTP_ISSUED" \
  "$OTP_BURNT" "$OTP_OTHER" "$REUSE_PROBES" "$LG_OK" "$LG_ERR" "$LOAD_REFUSED" "$((RESTART_SUM / ${DONE:-1}))" "$RESTART_MAX" "$FAILED")
[ -z "$JSON" ] || printf '%s\n' "$summary" > "$JSON"
[ -z "$CSV" ] || cp "$T/cycles.csv" "$CSV"
[ "$FAILED" -eq 0 ] && [ "${DONE:-0}" -eq "$CYCLES" ]
