#!/usr/bin/env bash
# HSM recovery (issue 14): SoftHSM behind the fault-injecting PKCS#11 module (tests/p11fault),
# two crypto workers. The workers lose their sessions, login or token and get them back
# (engine/server/recover.h, docs/hsm.md "The server side"):
#  (a) under load (two loops of enrollments in the background), every session is invalidated
#      and the login dropped: every client gets a verified CertRep SUCCESS or an HTTP 503 (no
#      FAILURE, no 500), each 503 is audited (HSM_FAILURE, http_status 503, the CKR), the
#      workers audit HSM_FAILURE then HSM_RECOVERED with CKR_SESSION_HANDLE_INVALID, and a
#      fresh enrollment succeeds right after;
#  (b) sessions lost and none can be opened again: once no worker has a session /healthz
#      answers 503 while GetCACaps and GetCACert answer 200; the HSM answers again: /healthz
#      200, enrollment works;
#  (c) the token is removed (every call fails with CKR_TOKEN_NOT_PRESENT, slot list and
#      C_OpenSession included): /healthz and PKIOperation 503 with Retry-After, GetCACaps and
#      GetCACert 200; the token comes back: the workers recover, /healthz 200, enrollment works;
#  (d) retry once: a session lost on the first C_Decrypt of a request is retried
#      transparently (SUCCESS, one real decryption, no HSM_FAILURE for the transaction); lost
#      on the CA's C_Sign, after the decryption completed, it is not (503: a request is never
#      run again once one of its private-key operations completed) and the same transaction
#      enrolls afterwards;
#  (e) a hung HSM (p11fault `hang C_Sign`, request_timeout 2 s): while both workers are inside
#      C_Sign the shards keep answering GetCACaps; three PKIOperations sent together (two on
#      the workers, one queued) are each answered 503 with Retry-After by their shard past
#      request_timeout + grace, audited REQUEST_DROPPED (reply_deadline), while the HSM still
#      hangs; once it answers, the two on the workers commit (their replies are released
#      unsent) and a retry of each transaction gets its certificate as a replay, the third is
#      issued afresh.
# Every wait is a bounded loop; nothing asserts a time.
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/p11fault/p11fault.sh"
need_cmd openssl curl
REQ=$BUILD/tests/scep_req

init_state
p11fault_use
sed -i 's/^crypto_workers = .*/crypto_workers = 2\nrequest_timeout = 2s/' "$CONF"
start_scepd
cd "$T"

is() { [ "$1" = "$2" ] || { log "  got '$1', want '$2'"; return 1; }; }
ge() { [ "$1" -ge "$2" ] || { log "  $1 < $2"; return 1; }; }
enroll() { local n=$1; shift; "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --key "$T/$n.key" --cert-out "$T/$n.pem" "$@" > "$T/$n.out" 2> "$T/$n.err" || true; }
succeeded() { grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" || { log "  got: $(cat "$T/$1.out" "$T/$1.err")"; return 1; }; }
verifies() { openssl verify -CAfile "$STATE/ca.pem" "$T/$1.pem" >/dev/null; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$PORT/healthz"; }
# since MARK: the audit lines written after MARK (audit_mark).
since() { tail -n +$(($1 + 1)) "$STATE/audit.log"; }
# worker_events MARK EVENT: the workers' own lines of EVENT after MARK (no txid).
worker_events() { since "$1" | grep -F "\"event\":$2," | grep -vF '"txid":' || true; }
# in_order MARK CKR: a worker's HSM_FAILURE naming CKR, then an HSM_RECOVERED naming it.
in_order() {
  since "$1" | grep -nF "\"diag\":\"$2\"" | grep -vF '"txid":' |
    awk -F: '/"event":3000,/ && !f { f = $1 } /"event":3002,/ && f && $1 > f { ok = 1 }
             END { exit !ok }' ||
    { log "  no worker HSM_FAILURE then HSM_RECOVERED with $2 after line $1"; return 1; }
}
# enroll_until NAME TRIES: enrolls NAME until SUCCESS, at most TRIES times, 0.1 s apart.
enroll_until() {
  local i
  for i in $(seq 1 "$2"); do
    enroll "$1" --cn "$1"
    grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" && { log "  $1: SUCCESS at try $i"; return 0; }
    sleep 0.1
  done
  return 1
}
# healthz_until CODE TRIES: polls /healthz until it answers CODE, at most TRIES times.
healthz_until() {
  local i
  for i in $(seq 1 "$2"); do [ "$(healthz)" = "$1" ] && return 0; sleep 0.1; done
  log "  /healthz never answered $1"; return 1
}
# refused_503 NAME: scep_req got HTTP 503 for NAME's PKIOperation (its GetCACert worked).
refused_503() { grep -q '^http=503$' "$T/$1.out" || { log "  got: $(cat "$T/$1.out")"; return 1; }; }

enroll warm --cn warm
check "before any fault: enrollment through the fault module SUCCESS" succeeded warm

# --- (a) every session invalidated (and the login dropped) under load ---
LOOPS=2 PER_LOOP=20
for l in $(seq 1 $LOOPS); do
  ( for i in $(seq 1 $PER_LOOP); do enroll "load$l-$i" --cn "load$l-$i"; done ) &
  eval "loop_pid$l=$!"
done
# Invalidate once the load is under way (bounded wait for a few finished enrollments).
for _ in $(seq 1 300); do [ "$(ls "$T"/load*.pem 2>/dev/null | wc -l)" -ge 4 ] && break; sleep 0.05; done
am=$(audit_mark)
m=$(p11fault_mark)
p11fault_set "invalidate_sessions logout"
for l in $(seq 1 $LOOPS); do eval "wait \$loop_pid$l" || true; done
n_ok=0 n_503=0 bad=""
for f in "$T"/load*.out; do
  n=$(basename "$f" .out)
  if grep -q '^status=SUCCESS failinfo=- ' "$f" && verifies "$n"; then n_ok=$((n_ok + 1))
  elif grep -q '^http=503$' "$f"; then n_503=$((n_503 + 1))
  else bad="$bad $n:$(tr '\n' ' ' < "$f")"; fi
done
log "  under load: $n_ok SUCCESS, $n_503 HTTP 503 of $((LOOPS * PER_LOOP))"
check "load: every client got a verified CertRep SUCCESS or HTTP 503 (no FAILURE, no 500)" is "$bad" ""
check "load: every enrollment answered" is "$((n_ok + n_503))" "$((LOOPS * PER_LOOP))"
check "load: the invalidation hit the workers (invalidated-session calls in the call log)" \
  ge "$(p11fault_count "$m" '[A-Za-z_]+ CKR_SESSION_HANDLE_INVALID dead')" 1
check "load: a worker audited HSM_FAILURE then HSM_RECOVERED with CKR_SESSION_HANDLE_INVALID" \
  in_order "$am" CKR_SESSION_HANDLE_INVALID
check "load: each HTTP 503 has its HSM_FAILURE event (txid, http_status 503, a CKR)" \
  is "$(since "$am" | grep -F '"event":3000,' | grep -F '"txid":' | grep -F '"http_status":503' | grep -cF '"diag":"CKR_' || true)" "$n_503"
check "load: no FAILURE or rejection audited" is "$(since "$am" | grep -cE '"event":(2000|2002),' || true)" 0
log "  $(worker_events "$am" 3002 | sed -n 's/.*"detail":"\([^"]*\)".*/\1/p' | tr '\n' ';')"
check "after the invalidation: a fresh enrollment succeeds (bounded retries)" enroll_until fresh 10
check "after the invalidation: /healthz 200" is "$(healthz)" 200

# --- (b) sessions lost, and the HSM lets no session be opened again ---
am=$(audit_mark)
p11fault_set "invalidate_sessions logout" "fail C_OpenSession always CKR_DEVICE_ERROR"
# Each /healthz lands on some worker, which finds its own session dead; once both are down:
# 503 (bounded).
check "no session can be opened: /healthz turns 503 once no worker has a session" healthz_until 503 100
check "no worker has a session: GetCACaps still 200" is "$(http_get operation=GetCACaps | cut -d' ' -f1)" 200
check "no worker has a session: GetCACert still 200 with the CA/RA chain" \
  is "$(http_get operation=GetCACert)" "200 application/x-x509-ca-ra-cert"
check "no worker has a session: /healthz still 503" is "$(healthz)" 503
enroll nosess --cn nosess
check "no worker has a session: PKIOperation HTTP 503" refused_503 nosess
p11fault_set
check "sessions can be opened again: /healthz 200 (bounded)" healthz_until 200 200
check "sessions again: enrollment SUCCESS" enroll_until backb 10
check "sessions again: HSM_FAILURE then HSM_RECOVERED audited (CKR_SESSION_HANDLE_INVALID)" \
  in_order "$am" CKR_SESSION_HANDLE_INVALID

# --- (c) the token is removed, then put back ---
am=$(audit_mark)
p11fault_set "fail * always CKR_TOKEN_NOT_PRESENT"
check "token removed: /healthz 503" healthz_until 503 20
enroll_emit gone --challenge "$CHALLENGE_VALUE" --cn gone
tx_gone=$TXID
code=$(curl -s -D gone.hdr -o gone.body -w '%{http_code}' -H 'Content-Type: application/x-pki-message' \
  --data-binary @gone.msg "$URL?operation=PKIOperation")
check "token removed: PKIOperation HTTP 503" is "$code" 503
check "token removed: the 503 has Retry-After" grep -qi '^Retry-After: [0-9]' gone.hdr
check "token removed: the 503 is audited HSM_FAILURE with its txid and CKR_TOKEN_NOT_PRESENT" \
  test -n "$(since "$am" | grep -F "\"txid\":\"$tx_gone\"" | grep -F '"event":3000,' | grep -F '"http_status":503' | grep -F '"diag":"CKR_TOKEN_NOT_PRESENT"')"
enroll gone2 --cn gone2
check "token removed: a second PKIOperation HTTP 503" refused_503 gone2
check "token removed: GetCACaps still 200" is "$(http_get operation=GetCACaps | cut -d' ' -f1)" 200
check "token removed: GetCACert still 200" is "$(http_get operation=GetCACert)" "200 application/x-x509-ca-ra-cert"
check "token removed: a worker audited HSM_FAILURE with CKR_TOKEN_NOT_PRESENT" \
  test -n "$(worker_events "$am" 3000 | grep -F '"diag":"CKR_TOKEN_NOT_PRESENT"')"
p11fault_set
check "token back: /healthz 200 (bounded)" healthz_until 200 200
check "token back: enrollment SUCCESS" enroll_until backc 10
enroll gone --cn gone
check "token back: the refused transaction SUCCESS" succeeded gone
check "token back: a worker audited HSM_RECOVERED with CKR_TOKEN_NOT_PRESENT" in_order "$am" CKR_TOKEN_NOT_PRESENT

# --- (d) retry once, only when no private-key operation of the request completed ---
am=$(audit_mark)
m=$(p11fault_mark)
p11fault_set "fail C_Decrypt 1 CKR_SESSION_HANDLE_INVALID"
enroll retry --cn retry
tx_retry=$(sed -n 's/^txid=//p' retry.out | head -n1)
check "session lost on C_Decrypt: the client gets SUCCESS (retried after recovery)" succeeded retry
check "session lost on C_Decrypt: certificate verifies" verifies retry
check "call log: one injected C_Decrypt failure" is "$(p11fault_count "$m" 'C_Decrypt CKR_SESSION_HANDLE_INVALID fault')" 1
check "call log: one real decryption (the retry)" is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" 1
check "call log: CA and RA signatures once each (2 x C_Sign)" is "$(p11fault_count "$m" 'C_Sign CKR_OK real')" 2
check "call log: a new session was opened" ge "$(p11fault_count "$m" 'C_OpenSession CKR_OK real')" 1
check "retried: no HSM_FAILURE for the transaction" \
  is "$(since "$am" | grep -F "\"txid\":\"$tx_retry\"" | grep -cF '"event":3000,' || true)" 0
check "retried: ISSUED (1000) once for the transaction" \
  is "$(since "$am" | grep -F "\"txid\":\"$tx_retry\"" | grep -cF '"event":1000,' || true)" 1
check "retried: the worker audited HSM_FAILURE then HSM_RECOVERED" in_order "$am" CKR_SESSION_HANDLE_INVALID

am=$(audit_mark)
m=$(p11fault_mark)
p11fault_set "fail C_Sign 1 CKR_SESSION_HANDLE_INVALID"
enroll_emit late --challenge "$CHALLENGE_VALUE" --cn late
tx_late=$TXID
check "session lost on the CA signature: HTTP 503 (not retried)" is "$(pki_post late)" "503 text/plain"
check "not retried: one decryption only" is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" 1
check "not retried: no signature completed" is "$(p11fault_count "$m" 'C_Sign CKR_OK real')" 0
check "not retried: HSM_FAILURE for the transaction (http_status 503, CKR_SESSION_HANDLE_INVALID)" \
  test -n "$(since "$am" | grep -F "\"txid\":\"$tx_late\"" | grep -F '"event":3000,' | grep -F '"http_status":503' | grep -F '"diag":"CKR_SESSION_HANDLE_INVALID"')"
p11fault_set
enroll late --cn late
check "not retried: then SUCCESS" succeeded late

# --- (e) a hung HSM: workers blocked inside C_Sign, shards still answering ---
# p11fault's `hang C_Sign` blocks every C_Sign until the test lifts it. The shards answer each
# waiting request 503 with Retry-After once request_timeout (2 s) + the grace have passed;
# curl's --max-time (2 s + 20 s of margin for a loaded machine) is a bound for a broken
# server, far shorter than the hang, which lasts until lifted below.
for n in hang1 hang2 hang3; do enroll_emit "$n" --challenge "$CHALLENGE_VALUE" --cn "$n"; eval "tx_$n=\$TXID"; done
am=$(audit_mark)
m=$(p11fault_mark)
p11fault_set "hang C_Sign"
pids=""
for n in hang1 hang2 hang3; do
  ( curl -s -D "$n.hdr" -o "$n.body" -w '%{http_code} %{content_type}' --max-time 22 \
      -H 'Content-Type: application/x-pki-message' --data-binary @"$n.msg" \
      "$URL?operation=PKIOperation" > "$n.code" ) &
  pids="$pids $!"
done
# Once both workers are inside a C_Sign (bounded wait on the call log)...
for _ in $(seq 1 200); do [ "$(p11fault_count "$m" 'C_Sign hang')" -ge 2 ] && break; sleep 0.05; done
check "hung HSM: both workers blocked in C_Sign" ge "$(p11fault_count "$m" 'C_Sign hang')" 2
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL?operation=GetCACaps" || true)
check "hung HSM: GetCACaps answered while both workers wait in C_Sign" is "$code" 200
for p in $pids; do wait "$p" || true; done
got=$(for n in hang1 hang2 hang3; do cat "$n.code"; echo; done | sort | tr '\n' ',')
check "hung HSM: all three answered 503 within request_timeout + margin (two were on the hung workers)" \
  is "$got" "503 text/plain,503 text/plain,503 text/plain,"
check "hung HSM: answered while the HSM still hung (no C_Sign completed)" \
  is "$(p11fault_count "$m" 'C_Sign CKR_OK real')" 0
check "hung HSM: every 503 has Retry-After" \
  is "$(grep -li '^Retry-After: [0-9]' hang1.hdr hang2.hdr hang3.hdr | wc -l)" 3
# dropped_count MARK DIAG: the sum of the counts of REQUEST_DROPPED events with DIAG.
dropped_count() {
  since "$1" | grep -F '"event":2004,' | grep -F "\"diag\":\"$2\"" |
    sed -n 's/.*"count":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'
}
# The first is audited at once, the rest within a second or two (bounded wait).
for _ in $(seq 1 200); do [ "$(dropped_count "$am" reply_deadline)" -ge 3 ] && break; sleep 0.05; done
check "hung HSM: the three audited REQUEST_DROPPED, diag reply_deadline (count 3)" \
  is "$(dropped_count "$am" reply_deadline)" 3
check "hung HSM: the reply_deadline events carry http_status 503" \
  test -z "$(since "$am" | grep -F '"diag":"reply_deadline"' | grep -vF '"http_status":503')"
p11fault_set
# The two jobs on the workers go on once the HSM answers: past their last phase boundary,
# they sign and commit; their replies find the connections gone and are released unsent.
issued_hang() { for n in hang1 hang2 hang3; do eval "t=\$tx_$n"; since "$am" | grep -F "\"txid\":\"$t\"" | grep -qF '"event":1000,' && echo "$n"; done; true; }
for _ in $(seq 1 400); do [ "$(issued_hang | wc -l)" -ge 2 ] && break; sleep 0.05; done
committed=$(issued_hang | tr '\n' ' ')
check "hung HSM lifted: the two jobs that were on the workers committed their certificates" \
  is "$(issued_hang | wc -l)" 2
am2=$(audit_mark)
for n in hang1 hang2 hang3; do
  enroll "$n" --cn "$n"
  check "hung HSM: retry of $n (same transaction) SUCCESS" succeeded "$n"
  check "hung HSM: retry of $n verifies" verifies "$n"
  eval "t=\$tx_$n"
  case " $committed " in
    *" $n "*) check "hung HSM: $n was committed while its client had its 503: the retry is a replay (REPLAYED)" \
                test -n "$(since "$am2" | grep -F "\"txid\":\"$t\"" | grep -F '"event":1002,')" ;;
    *) check "hung HSM: $n was dropped unsigned: the retry issues it (ISSUED)" \
                test -n "$(since "$am2" | grep -F "\"txid\":\"$t\"" | grep -F '"event":1000,')" ;;
  esac
done
check "hung HSM: afterwards an enrollment SUCCESS" enroll_until aftere 10
finish
