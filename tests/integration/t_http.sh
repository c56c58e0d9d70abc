#!/usr/bin/env bash
# HTTP surface of scepd: routes, NDES-compatible paths, limits (414/413/431), malformed input,
# health, and that the server survives all of it.
. "$(dirname "$0")/lib.sh"
need_cmd curl

init_state
start_scepd
B="http://127.0.0.1:$PORT"
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }

check "/healthz: 200 when token and store answer" test "$(code "$B/healthz")" = 200
for p in /scep /scep/ /scep/pkiclient.exe /cgi-bin/pkiclient.exe /certsrv/mscep/mscep.dll /CertSrv/mscep/mscep.dll; do
  check "GetCACaps at $p" sh -c "[ \"\$(curl -s -o '$T/caps' -w '%{http_code}' '$B$p?operation=GetCACaps')\" = 200 ] && grep -qx POSTPKIOperation '$T/caps'"
done
ct=$(curl -s -o "$T/ca.p7" -w '%{content_type}' "$B/scep?operation=GetCACert")
check "GetCACert: application/x-x509-ca-ra-cert" test "$ct" = "application/x-x509-ca-ra-cert"
check "GetCACert: degenerate PKCS#7 with 2 certificates" \
  test "$(openssl pkcs7 -inform DER -in "$T/ca.p7" -print_certs | grep -c 'BEGIN CERT')" = 2
check "GetNextCACert without a staged CA: 404" test "$(code "$B/scep?operation=GetNextCACert")" = 404
check "unknown path: 404" test "$(code "$B/nope")" = 404
check "unknown operation: 400" test "$(code "$B/scep?operation=Frobnicate")" = 400
check "missing operation: 400" test "$(code "$B/scep")" = 400
check "PUT: 405" test "$(code -X PUT "$B/scep?operation=GetCACaps")" = 405
check "PKIOperation GET without message: 400" test "$(code "$B/scep?operation=PKIOperation")" = 400
check "PKIOperation GET with non-base64 message: 400" test "$(code "$B/scep?operation=PKIOperation&message=%%%")" = 400
read -r st port < <(curl -s -o "$T/body" -w '%{http_code} %{local_port}\n' --data-binary $'\x30\x03\x02\x01\x01' \
  -H 'Content-Type: application/x-pki-message' "$B/scep?operation=PKIOperation")
check "PKIOperation POST of garbage DER: 400" test "$st" = 400
check "garbage DER: that connection's audit event is 2001 not_pkimessage, 400" \
  expect_http_refusal "$port" 400 not_pkimessage
check "PKIOperation POST of random bytes: 400" \
  test "$(head -c 3000 /dev/urandom | curl -s -o /dev/null -w '%{http_code}' --data-binary @- "$B/scep?operation=PKIOperation")" = 400

long=$(head -c 70000 /dev/zero | tr '\0' 'A')
check "URL over 65,534 bytes: 414" test "$(code "$B/scep?operation=PKIOperation&message=$long")" = 414
ok_len=$(head -c 60000 /dev/zero | tr '\0' 'A')
check "URL of 60,000 bytes is parsed (400 for the bad message, not 414)" \
  test "$(code "$B/scep?operation=PKIOperation&message=$ok_len")" = 400
head -c 300000 /dev/zero > "$T/big"
check "body over 256 KiB: 413" test "$(code --data-binary @"$T/big" "$B/scep?operation=PKIOperation")" = 413
hdr=$(head -c 20000 /dev/zero | tr '\0' 'h')
check "header block over the limit: 431" test "$(code -H "X-Big: $hdr" "$B/scep?operation=GetCACaps")" = 431
check "audit: router rejects are recorded (400)" audit_has '"http_status":400'
check_audit "audit: HTTP-layer rejects are recorded (414, 413, 431)" sh -c "grep -q '\"http_status\":414' \"$STATE/audit.log\" && grep -q '\"http_status\":413' \"$STATE/audit.log\" && grep -q '\"http_status\":431' \"$STATE/audit.log\""

# keep-alive: several requests on one connection. curl reports per transfer how many new
# connections it opened and its local port: 1, 0, 0 and one port means the one connection.
curl -s -w '%{num_connects} %{local_port}\n' -o "$T/ka1" -o "$T/ka2" -o "$T/ka3" \
  "$B/scep?operation=GetCACaps" "$B/scep?operation=GetCACaps" "$B/scep?operation=GetCACaps" > "$T/ka.txt"
check "keep-alive: 3 GetCACaps answers" \
  test "$(cat "$T/ka1" "$T/ka2" "$T/ka3" | grep -cx POSTPKIOperation)" = 3
check "keep-alive: one connection for the 3 answers (connects 1, 0, 0 from one local port)" \
  sh -c "[ \"\$(cut -d' ' -f1 '$T/ka.txt' | tr '\n' ' ')\" = '1 0 0 ' ] && [ \"\$(cut -d' ' -f2 '$T/ka.txt' | sort -u | wc -l)\" = 1 ]"
check "server still healthy after bad input" test "$(code "$B/healthz")" = 200
check "scepd process still alive" kill -0 "$SCEPD_PID"
finish
