#!/usr/bin/env bash
# tests/intune-responder (tests/emulators/intune_responder.c, the C stand-in bench/mdm.sh
# runs by default): its answers checked with curl and raw sockets (the token endpoint with the
# right and a wrong secret, Graph discovery's shape, validateRequest held for at least the
# delay and many held at once, 400 / 413 / 431 on malformed input, keep-alive, pipelining and
# partial reads, 100-continue), then a scepd with a challenge = intune profile enrolling
# through it with the project's client (scep_req) and with scep-loadgen.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
RSP=$BUILD/tests/intune-responder
REQ=$BUILD/tests/scep_req
LG=$BUILD/scep-loadgen
need_cmd curl python3
for b in "$RSP" "$REQ" "$LG"; do [ -x "$b" ] || { log "FAIL - $b not built"; exit 1; }; done

# start_responder NAME ARGS...: the responder as a child; sets RSP_PORT once it printed it
# (mdm_lib.sh's wait_port: the port file is created before the child runs).
start_responder() {
  local name=$1
  shift
  : > "$T/$name.port"
  "$RSP" "$@" >> "$T/$name.port" 2>"$T/$name.err" &
  EMU_PIDS="$EMU_PIDS $!"
  wait_port "$name" $! intune-responder && RSP_PORT=$EMU_PORT
}

# raw PORT CHUNK...: sends the chunks (printf escapes) on one connection, 0.1 s apart, and
# prints everything answered until the responder closes.
raw() {
  python3 - "$@" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
for i, c in enumerate(sys.argv[2:]):
    if i:
        time.sleep(0.1)
    s.sendall(c.encode().decode("unicode_escape").encode("latin1"))
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
sys.stdout.write(data.decode("latin1"))
PY
}

SECRET='rsp s3cr&t=+%'            # every character form-encoding must carry
CID=11111111-2222-3333-4444-555555555555
start_responder rsp --secret "$SECRET" --validate-delay-ms 400
B="http://127.0.0.1:$RSP_PORT"
TOK="$B/contoso.onmicrosoft.com/oauth2/v2.0/token"
VAL="$B/ScepRequestValidationFEService/ScepActions/validateRequest"
DISC="$B/v1.0/servicePrincipals/appId=0000000a-0000-0000-c000-000000000000/endpoints"
# token SECRET SCOPE [URL]: "<status> <body>" of a client-credentials request.
token() {
  curl -sS -o "$T/tok.json" -w '%{http_code}' --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$CID" --data-urlencode "client_secret=$1" \
    --data-urlencode "scope=$2" "${3:-$TOK}"
  printf ' %s\n' "$(cat "$T/tok.json")"
}
code_of() { awk '{ print $(NF - 1) }' <<<"$1"; }    # the status in post's output
jfield() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

# --- the token endpoint
r=$(token "$SECRET" https://api.manage.microsoft.com//.default)
check "token: 200 for the right secret" test "${r%% *}" = 200
API=$(jfield "${r#* }" access_token)
check "token: a Bearer token with expires_in" \
  test "$(jfield "${r#* }" token_type)/$(jfield "${r#* }" expires_in)" = "Bearer/3599"
r=$(token "$SECRET" https://graph.microsoft.com/.default)
GRAPH=$(jfield "${r#* }" access_token)
check "token: Graph's scope gets another token" test -n "$GRAPH" -a "$GRAPH" != "$API"
r=$(token "wrong secret" https://api.manage.microsoft.com//.default)
check "token: 401 invalid_client for a wrong secret" test "$r" = '401 {"error":"invalid_client"}'
r=$(token "$SECRET" https://api.manage.microsoft.com//.default "$B/other.tenant/oauth2/v2.0/token")
check "token: 401 for another tenant" test "${r%% *}" = 401
r=$(token "$SECRET" https://example.com/.default)
check "token: 400 invalid_scope for an unknown scope" test "$r" = '400 {"error":"invalid_scope"}'

# --- Graph discovery
curl -sS -H "Authorization: Bearer $GRAPH" "$DISC" > "$T/disc.json"
check "discovery: both services, their URLs pointing back at the responder" python3 - "$T/disc.json" "$B" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = {e["providerName"]: e for e in d["value"]}
for n in ("ScepRequestValidationFEService", "PkiConnectorFEService"):
    e = v[n]
    assert e["uri"] == sys.argv[2] + "/" + n and e["capability"] == "Intune", e
    assert e["providerId"] and e["providerResourceId"], e
PY
check "discovery: 401 with the API token" \
  test "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $API" "$DISC")" = 401
check "discovery: 401 without a token" test "$(curl -sS -o /dev/null -w '%{http_code}' "$DISC")" = 401

# --- validateRequest and the notifications
BODY='{"request":{"transactionId":"tx-1","certificateRequest":"TUlJQw==","callerInfo":"t"}}'
post() { curl -sS -w ' %{http_code} %{time_total}' -H "Authorization: Bearer ${3:-$API}" \
           -H 'Content-Type: application/json' -d "$2" "$1"; }
r=$(post "$VAL" "$BODY")
check "validateRequest: 200 Success" test "${r% *}" = '{"code":"Success","errorDescription":""} 200'
check "validateRequest: answered no sooner than the 400 ms delay (took ${r##* } s)" \
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.4 else 1)" "${r##* }"
N='{"notification":{"transactionId":"tx-1","certificateRequest":"TUlJQw=="}}'
r=$(post "$B/ScepRequestValidationFEService/ScepActions/successNotification" "$N")
check "successNotification: 200 Success" test "${r% *}" = '{"code":"Success","errorDescription":""} 200'
r=$(post "$B/ScepRequestValidationFEService/ScepActions/failureNotification" "$N")
check "failureNotification: 200 Success" test "${r% *}" = '{"code":"Success","errorDescription":""} 200'
r=$(post "$B/PkiConnectorFEService/CertificateAuthorityRequests/downloadRevocationRequests" \
      '{"downloadParameters":{"maxRequests":10}}')
check "downloadRevocationRequests: an empty list" test "${r% *}" = '{"value":[]} 200'
r=$(post "$VAL" "$BODY" "$GRAPH")
check "validateRequest: 401 with Graph's token" test "$(code_of "$r")" = 401
r=$(post "$VAL" '{"request":{"certificateRequest":"TUlJQw=="}}')
check "validateRequest: 400 BadRequest without a transactionId" \
  test "${r% *}" = '{"code":"BadRequest"} 400'
r=$(post "$VAL" '{"request":{"transactionId":"  "}}')
check "validateRequest: 400 for a blank transactionId" test "$(code_of "$r")" = 400
r=$(post "$VAL" 'transactionId=tx-1')
check "validateRequest: 400 for a body that is not JSON" test "$(code_of "$r")" = 400

# --- malformed HTTP: an error status, then the connection is closed
status_of() { raw "$RSP_PORT" "$1" | head -n1 | tr -d '\r'; }
check "malformed request line: 400" test "$(status_of 'GARBAGE\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "space before a header's colon: 400" \
  test "$(status_of 'GET /_stats HTTP/1.1\r\nHost : x\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "HTTP/1.1 without Host: 400" \
  test "$(status_of 'GET /_stats HTTP/1.1\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "a Content-Length that is not a number: 400" \
  test "$(status_of 'POST /_stats HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "two different Content-Lengths: 400" \
  test "$(status_of 'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab')" = "HTTP/1.1 400 Bad Request"
check "a body over the cap: 413" \
  test "$(status_of 'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n')" = "HTTP/1.1 413 Content Too Large"
check "chunked bodies: 501" \
  test "$(status_of 'POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')" = "HTTP/1.1 501 Not Implemented"
check "HTTP/2.0 on this port: 505" \
  test "$(status_of 'GET /_stats HTTP/2.0\r\nHost: x\r\n\r\n')" = "HTTP/1.1 505 HTTP Version Not Supported"
big=$(head -c 20000 /dev/zero | tr '\0' a)
check "a head over 16 KiB: 431" \
  test "$(status_of "GET /_stats HTTP/1.1\\r\\nHost: x\\r\\nX-Big: $big\\r\\n\\r\\n")" = "HTTP/1.1 431 Request Header Fields Too Large"
check "an unknown path: 404" test "$(curl -sS -o /dev/null -w '%{http_code}' "$B/nothing")" = 404
check "GET on validateRequest: 405" test "$(curl -sS -o /dev/null -w '%{http_code}' "$VAL")" = 405

# --- keep-alive, pipelining, partial reads, 100-continue
stat() { curl -fsS "$B/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
c0=$(stat connections)
curl -sS -o /dev/null -o /dev/null -w '%{num_connects}\n' "$B/_stats" "$B/_stats" > "$T/ka.out"
check "keep-alive: curl's second request reused the connection" test "$(sed -n 2p "$T/ka.out")" = 0
check "keep-alive: one connection for the two (and one for this look)" test "$(stat connections)" = $((c0 + 2))
len=${#BODY}
raw "$RSP_PORT" "POST /ScepRequestValidationFEService/ScepActions/validateRequest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $API\r\nContent-Length: $len\r\n\r\n$BODY""GET /_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" > "$T/pipe.out"
check "pipelining: two answers on one connection, the delayed one first" python3 - "$T/pipe.out" <<'PY'
import sys
d = open(sys.argv[1], encoding="latin1").read()
i, j = d.find('{"code":"Success"'), d.find('"max_waiting"')
sys.exit(0 if d.count("HTTP/1.1 200 OK") == 2 and 0 <= i < j else 1)
PY
raw "$RSP_PORT" "POST /ScepRequestValidationFEService/ScepActions/successNotification HT" \
  "TP/1.1\r\nHost: x\r\nAuthorization: Bearer $API\r\nConte" "nt-Length: ${#N}\r\nConnection: close\r\n\r" \
  "\n${N:0:20}" "${N:20}" > "$T/partial.out"
check "partial reads: a request in five pieces is answered once" \
  test "$(grep -c '^HTTP/1.1 200 OK' "$T/partial.out")/$(grep -c '"Success"' "$T/partial.out")" = 1/1
curl -sS -v -H 'Expect: 100-continue' -H "Authorization: Bearer $API" -d "$N" \
  "$B/ScepRequestValidationFEService/ScepActions/successNotification" > "$T/cont.out" 2>"$T/cont.err"
check "Expect: 100-continue gets 100 Continue, then the answer" \
  sh -c "grep -q '< HTTP/1.1 100 Continue' '$T/cont.err' && grep -q Success '$T/cont.out'"

# --- many validations held at once (nothing sleeps): 8 clients against an 8 s delay
start_responder slow --secret "$SECRET" --validate-delay-ms 8000
SB="http://127.0.0.1:$RSP_PORT"
SAPI=$(curl -sS --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CID" \
  --data-urlencode "client_secret=$SECRET" --data-urlencode "scope=https://api.manage.microsoft.com//.default" \
  "$SB/contoso.onmicrosoft.com/oauth2/v2.0/token" | python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
CURLS=""
for i in 1 2 3 4 5 6 7 8; do
  post "$SB/ScepRequestValidationFEService/ScepActions/validateRequest" "$BODY" "$SAPI" > "$T/slow-$i.out" &
  CURLS="$CURLS $!"
done
waiting_is() { test "$(curl -fsS "$SB/_stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['waiting'])")" = "$1"; }
held=0
for _ in $(seq 1 150); do waiting_is 8 && { held=1; break; }; sleep 0.05; done
check "8 validations held at once by the one thread" test $held = 1
for p in $CURLS; do wait "$p" || true; done
check "all 8 answered Success after the delay" test "$(cat "$T"/slow-*.out | grep -o '"Success"[^}]*} 200 ' | wc -l)" = 8

# --- scepd enrolling through the responder
init_state
printf 'challenge = intune\n' > "$STATE/profiles/intune.conf"
printf '%s\n' "$SECRET" > "$STATE/intune.secret"
start_responder scepd-rsp --secret "$SECRET" --validate-delay-ms 50
intune_conf "$RSP_PORT" "timeout = 10s" "client_secret_file = intune.secret"
use_mdm_config
start_scepd
cd "$T"
"$REQ" enroll --url "$URL/intune" --challenge intune-challenge-blob --cn rsp-1 --key rsp-1.key \
  --cert-out rsp-1.pem > "$T/e1.out" 2>"$T/e1.err" || true
check "scep_req through the responder: SUCCESS" grep -q 'status=SUCCESS failinfo=- ' "$T/e1.out"
check "scep_req through the responder: the certificate verifies" verify_cert "$T/rsp-1.pem"
check "scep_req through the responder: audit ISSUED (1000)" expect_event e1 1000
"$LG" --url "$URL/intune" --challenge intune-challenge-blob --concurrency 4 --count 20 --pool 4 \
  --key-cache "$T/lg-keys" --method post --key-type rsa:2048 --quiet --json "$T/lg.json" > "$T/lg.out" 2>&1 || true
check "scep-loadgen through the responder: enrollments and no errors" python3 - "$T/lg.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["sent"] > 0 and d.get("errors", 0) == 0 else 1)
PY
curl -fsS "http://127.0.0.1:$RSP_PORT/_stats" > "$T/stats.json"
check "the responder saw every validation and success notification" python3 - "$T/stats.json" "$T/lg.json" <<'PY'
import json, sys
s, d = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
n = d["sent"] + d.get("setup_enrollments", 0) + 1
sys.exit(0 if s["validations"] >= n and s["success_notifications"] >= n and s["bad_requests"] == 0 else 1)
PY

finish
