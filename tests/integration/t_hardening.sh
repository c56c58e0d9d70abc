#!/usr/bin/env bash
# Two holes of issue 9 outside single DES (t_legacy_des.sh):
# - transactionID: refused with FAILURE badRequest (bad_transaction_id) when it holds a NUL
#   or another byte outside printable ASCII, or is longer than 128 bytes, instead of being
#   cut at the first NUL; the CertRep echoes the bytes sent, the audit log shows them with '?'
#   for each unprintable byte (and "..." past the limit). 128 printable bytes are accepted.
# - subject_source = override: a configuration error unless challenge = onetime (scepd does
#   not start); and the profile's subject rules apply to the subject issued (the challenge's
#   binding), not to the CSR's that it replaces.
# And yield_to_workers: by default every thread but the crypto workers and the audit writer
# runs SCHED_BATCH (their wake-ups do not preempt a private-key operation); = no leaves every
# thread SCHED_OTHER.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd python3 curl openssl

init_state
P=$STATE/profiles
printf 'challenge = onetime\nsubject_source = override\nsubject_max_length = 12\n' > "$P/ov.conf"
start_scepd
cd "$T"
C=$CHALLENGE_VALUE
"$REQ" cacert --url "$URL" --out "$T/cadir" > cacert.out
pkimsg() { python3 "$SRC/tests/tools/pkimsg.py" "$@"; }
# wire NAME: "pkiStatus|failInfo|failInfoText|transactionID" of the CertRep NAME.rep, each
# value as the hex of its bytes (hex STRING gives the expected one).
wire() {
  pkimsg attrs "$T/$1.rep" | awk '
    function val(h,   l) { l = substr(h, 3, 2); return substr(h, l == "81" ? 7 : l == "82" ? 9 : 5) }
    $1 == "6086480186f845010903" { st = val($2) }
    $1 == "6086480186f845010904" { fi = val($2) }
    $1 == "2b06010505071801" { tx = val($2) }
    $1 == "6086480186f845010907" { id = val($2) }
    END { printf "%s|%s|%s|%s\n", st, fi, tx, id }'
}
hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; }

# --- transactionID ---
"$REQ" enroll --url "$URL" --challenge "$C" --cn ctl --txid "$(printf 'ctl\001id')" > ctl.out 2>&1 || true
check "transactionID with a control byte: FAILURE badRequest with bad_transaction_id's text (echo matched by scep_req)" \
  test "$(reply_of ctl)" = "FAILURE|badRequest|$(diag_text bad_transaction_id)"
check "transactionID with a control byte: audited 2000 bad_transaction_id badRequest, shown as ctl?id" \
  expect_refusal 'ctl?id' 2000 bad_transaction_id badRequest

# emit_txid NAME HEX: a PKCSReq scep_req emitted, its transactionID replaced by the bytes HEX
# and re-signed (tests/tools/pkimsg.py), POSTed; the CertRep in NAME.rep.
emit_txid() {
  "$REQ" enroll --ca-dir "$T/cadir" --challenge "$C" --cn "$1" --key "$T/$1.key" \
    --emit "$T/$1.der" > "$T/$1.emit" 2>&1
  pkimsg set-txid "$T/$1.der" "$T/$1-bad.der" "$2" "$T/$1.key" sha256
  curl -s -o "$T/$1.rep" -H 'Content-Type: application/x-pki-message' \
    --data-binary @"$T/$1-bad.der" "$URL?operation=PKIOperation" > /dev/null
}
T_NUL=$(hex nul)00$(hex id)
emit_txid nul "$T_NUL"
check "transactionID with a NUL: FAILURE badRequest, its text, the bytes sent echoed" \
  test "$(wire nul)" = "$(hex 2)|$(hex 2)|$(hex "$(diag_text bad_transaction_id)")|$T_NUL"
check "transactionID with a NUL: audited 2000 bad_transaction_id badRequest, shown as nul?id (not cut at the NUL)" \
  expect_refusal 'nul?id' 2000 bad_transaction_id badRequest
check "transactionID with a NUL: no transaction 'nul' anywhere in the audit log" \
  sh -c "! grep -q '\"txid\":\"nul\"' '$STATE/audit.log'"
LONG=long$(printf 'L%.0s' $(seq 1 125))       # 129 bytes
emit_txid long "$(hex "$LONG")"
check "transactionID of 129 bytes: FAILURE badRequest, its text, all 129 bytes echoed" \
  test "$(wire long)" = "$(hex 2)|$(hex 2)|$(hex "$(diag_text bad_transaction_id)")|$(hex "$LONG")"
check "transactionID of 129 bytes: audited 2000 bad_transaction_id badRequest, first 125 bytes and ..." \
  expect_refusal "${LONG:0:125}..." 2000 bad_transaction_id badRequest
MAX=max$(printf 'M%.0s' $(seq 1 125))         # 128 bytes: the limit
"$REQ" enroll --url "$URL" --challenge "$C" --cn max --txid "$MAX" > max.out 2>&1 || true
check "transactionID of 128 printable bytes: SUCCESS" grep -q '^status=SUCCESS' max.out
check "transactionID of 128 bytes: audit ISSUED under it" expect_event max 1000

# --- subject_source = override: the rules on the subject issued ---
new() { "$BUILD/scepctl" -c "$CONF" challenge new "$@"; }
VO=$(new --profile ov --ttl 10m --subject /CN=mdm-7)
"$REQ" enroll --url "$URL/ov" --challenge "$VO" --cn a-device-name-over-twelve --cert-out ov.pem > ov.out 2>&1 || true
check "override: a CSR subject over the limit is not what is issued: SUCCESS" grep -q '^status=SUCCESS' ov.out
check "override: the bound subject issued" \
  test "$(openssl x509 -in ov.pem -noout -subject -nameopt RFC2253)" = "subject=CN=mdm-7"
VL=$(new --profile ov --ttl 10m --subject /CN=a-bound-name-over-twelve)
"$REQ" enroll --url "$URL/ov" --challenge "$VL" --cn short > ovl.out 2>&1 || true
check "override: a bound subject over subject_max_length: FAILURE badRequest, profile_subject_length" \
  expect_failure ovl 2000 profile_subject_length badRequest
stop_scepd

# --- subject_source = override without challenge = onetime: scepd does not start ---
printf 'subject_source = override\n' > "$P/ov-static.conf"
rc=0; "$BUILD/scepd" -c "$CONF" > "$T/ov-static.log" 2>&1 || rc=$?
check "override under challenge = static: scepd refuses to start" test "$rc" -ne 0
check "override under challenge = static: the message names the file and the rule" \
  grep -q "ov-static.conf: subject_source = override needs challenge = onetime" "$T/ov-static.log"
printf 'subject_source = override\nchallenge = none\n' > "$P/ov-static.conf"
rc=0; "$BUILD/scepd" -c "$CONF" > "$T/ov-none.log" 2>&1 || rc=$?
check "override under challenge = none: scepd refuses to start, same message" \
  sh -c "test $rc -ne 0 && grep -q 'subject_source = override needs challenge = onetime' '$T/ov-none.log'"
rm "$P/ov-static.conf"
start_scepd
check "without that profile scepd starts again" curl -fsS "http://127.0.0.1:$PORT/healthz" -o /dev/null

# --- yield_to_workers: the scheduling policy of each thread kind (chrt, util-linux)
need_cmd chrt
# policies: "name policy" for each thread of the running scepd, sorted and counted.
policies() {
  local t
  for t in /proc/"$SCEPD_PID"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm")" "$(chrt -p "${t##*/}" | sed -n 's/.*scheduling policy: //p')"
  done | sort | uniq -c | awk '{ print $2, $3, $1 }'
}
policies > pol-default.txt
check "yield_to_workers (default): the crypto workers and the audit writer SCHED_OTHER" \
  sh -c "grep -q '^scepd-worker SCHED_OTHER ' pol-default.txt && grep -q '^scepd-audit SCHED_OTHER ' pol-default.txt && ! grep -qE '^scepd-(worker|audit) SCHED_BATCH' pol-default.txt"
check "yield_to_workers (default): shards, store writer and the rest SCHED_BATCH" \
  sh -c "grep -q '^scepd-shard SCHED_BATCH ' pol-default.txt && grep -q '^scepd-writer SCHED_BATCH ' pol-default.txt && ! grep -vE '^scepd-(worker|audit) ' pol-default.txt | grep -qv ' SCHED_BATCH '"
check "yield_to_workers: an enrollment still succeeds" \
  sh -c "'$REQ' enroll --url '$URL' --challenge '$C' --cn yield-1 --cert-out yield-1.pem >yield-1.out 2>&1 && openssl x509 -in yield-1.pem -noout -subject | grep -q yield-1"
stop_scepd
sed -i 's/^\[server\]$/[server]\nyield_to_workers = no/' "$CONF"
start_scepd
policies > pol-no.txt
check "yield_to_workers = no: every thread SCHED_OTHER" \
  sh -c "grep -q '^scepd-worker SCHED_OTHER ' pol-no.txt && grep -q '^scepd-shard SCHED_OTHER ' pol-no.txt && ! grep -qv ' SCHED_OTHER ' pol-no.txt"
finish
