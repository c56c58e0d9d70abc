#!/usr/bin/env bash
# Native TLS ([tls] listen): scepd with its CA key in SoftHSM and a separate TLS server key
# (a PEM file, issued by a test TLS CA made here) serves SCEP over HTTPS on the shards:
# curl (TLS 1.3 and 1.2) and micromdm's scepclient enroll over it, the certificate verifies,
# plain HTTP on the TLS port gets a clean 400, a failed handshake is audited, and scepd
# refuses a TLS key it must not use. Then the same with the TLS key in the token ([tls]
# key_label), through p11fault with a slow C_Sign: curl and scepclient still enroll, and a
# plain request answers while a handshake waits for the token.
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/p11fault/p11fault.sh"
need_cmd curl openssl scepclient python3 promtool softhsm2-util

init_state

# The TLS server identity: a P-256 key and a certificate for 127.0.0.1 from a test CA of its
# own. The SCEP CA (in the token) signs no TLS certificate, and its key never serves TLS.
mkdir -p "$T/tls" && cd "$T/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -subj "/CN=scepd TLS test CA" -days 2 -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
  -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf \
  -out server.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out /dev/null \
  -subj "/CN=other" 2>/dev/null
cd "$T"

# A port for the TLS listener (lib.sh free_port; the plain one is the kernel's choice, via
# --port-file).
TLS_PORT=$(free_port)
cp "$CONF" "$T/base.conf"
tls_conf() {  # tls_conf KEY [MIN_VERSION]: the configuration with a [tls] section
  cp "$T/base.conf" "$CONF"
  printf '\n[tls]\nlisten = 127.0.0.1:%s\ncert = %s\nkey = %s\nmin_version = %s\n' \
    "$TLS_PORT" "$T/tls/server.pem" "$1" "${2:-1.2}" >> "$CONF"
}

# Keys scepd must refuse: a token object as a path, a key that does not match the certificate.
tls_conf "pkcs11:token=scepd;object=ca"
check "a pkcs11: TLS key is refused at start" \
  sh -c "! timeout 20 '$BUILD/scepd' -c '$CONF' >'$T/refuse1.log' 2>&1 && grep -q 'key must be a PEM file' '$T/refuse1.log'"
tls_conf "$T/tls/other.key"
check "a TLS key that does not match the certificate is refused at start" \
  sh -c "! timeout 20 '$BUILD/scepd' -c '$CONF' >'$T/refuse2.log' 2>&1 && grep -qi 'mismatch\|does not match' '$T/refuse2.log'"

tls_conf "$T/tls/server.key"
awk -v p="$TLS_PORT" 'BEGIN{s=""} /^\[/{s=$0} { if (s=="[admin]" && $0 ~ /^listen *=/) print "listen = 127.0.0.1:" p; else print }' \
  "$CONF" > "$STATE/admin-on-tls.conf"
check "the admin listener on the HTTPS port is refused at start" \
  sh -c "! timeout 20 '$BUILD/scepd' -c '$STATE/admin-on-tls.conf' >'$T/refuse3.log' 2>&1 && grep -q 'uses a SCEP listener' '$T/refuse3.log'"

start_scepd
H="https://127.0.0.1:$TLS_PORT"
for _ in $(seq 1 100); do curl -s --cacert "$T/tls/ca.pem" "$H/healthz" >/dev/null && break; sleep 0.05; done

caps=$(curl -sS --cacert "$T/tls/ca.pem" "$H/scep?operation=GetCACaps" || true)
check "GetCACaps over HTTPS (curl --cacert)" grep -qx POSTPKIOperation <<<"$caps"
check "curl negotiates TLS 1.3 by default" \
  sh -c "curl -sS -v --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' -o /dev/null 2>&1 | grep -q 'SSL connection using TLSv1.3'"
check "TLS 1.2 when the client caps it" \
  sh -c "curl -sS -v --tls-max 1.2 --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' -o /dev/null 2>&1 | grep -q 'SSL connection using TLSv1.2'"
check "the server certificate is checked (no --cacert: refused by curl)" \
  sh -c "! curl -sS '$H/scep?operation=GetCACaps' -o /dev/null 2>/dev/null"
check "keep-alive: two requests on one TLS connection" \
  sh -c "curl -sS -v --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' '$H/scep?operation=GetCACaps' -o /dev/null -o /dev/null 2>&1 | grep -q 'Re-using existing connection'"
ct=$(curl -sS --cacert "$T/tls/ca.pem" -o "$T/ca.p7" -w '%{content_type}' "$H/scep?operation=GetCACert")
check "GetCACert over HTTPS: the RA/CA bundle" test "$ct" = "application/x-x509-ca-ra-cert"
check "the plain HTTP listener still serves" sh -c "curl -fsS '$URL?operation=GetCACaps' | grep -qx POSTPKIOperation"
# The HTTPS listener has the SCEP role: the admin API and /metrics are the admin listener's.
check "HTTPS listener: POST /admin/revocations -> 404" \
  test "$(curl -s --cacert "$T/tls/ca.pem" -o /dev/null -w '%{http_code}' -X POST -d serial=01 "$H/admin/revocations")" = 404
check "HTTPS listener: GET /metrics -> 404" \
  test "$(curl -s --cacert "$T/tls/ca.pem" -o /dev/null -w '%{http_code}' "$H/metrics")" = 404
check "admin listener beside the HTTPS one: GET /metrics -> 200" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN_URL/metrics")" = 200

# certmonger's scep-submit (C, libcurl) over HTTPS: -R is the CA it verifies the server with.
SUBMIT=/usr/lib/certmonger/scep-submit
need "certmonger's scep-submit" test -x "$SUBMIT"
"$SUBMIT" -u "$H/scep" -R "$T/tls/ca.pem" -c > "$T/cm-caps.txt" 2>"$T/cm-caps.err" || true
check "scep-submit over HTTPS: GetCACaps" grep -qx POSTPKIOperation "$T/cm-caps.txt"
"$SUBMIT" -u "$H/scep" -R "$STATE/ca.pem" -c > "$T/cm-bad.txt" 2>"$T/cm-bad.err" || true
check "scep-submit over HTTPS trusting another CA: refuses the server" \
  sh -c "! grep -qx POSTPKIOperation '$T/cm-bad.txt'"
"$SUBMIT" -u "$H/scep" -R "$T/tls/ca.pem" -C > "$T/cm-cacert.pem" 2>"$T/cm-cacert.err" || true
check "scep-submit over HTTPS: GetCACert gives the RA and CA certificates" \
  test "$(grep -c 'BEGIN CERTIFICATE' "$T/cm-cacert.pem")" -eq 2
# Its PKIOperation is not tried over HTTPS: scep-submit 0.79 passes -R to the GetCACaps it
# sends first but not to the PKIOperation after it (that handshake fails "unknown ca" with
# any -R/-I/-N given), so its enrollment is tested over plain HTTP (t_certmonger.sh).

# micromdm's scepclient (Go) trusts the CAs of SSL_CERT_FILE; without it the TLS CA is unknown.
# It encrypts with single DES: where the state has the legacy profile, it enrolls there.
SC_URL=$H/scep
[ -f "$STATE/profiles/legacy.conf" ] && SC_URL=$H/scep/legacy
mkdir -p "$T/dev" && cd "$T/dev"
scepclient -server-url "$SC_URL" -challenge "$CHALLENGE_VALUE" -private-key dev.key \
  -certificate dev.pem -cn tls-device >"$T/sc0.log" 2>&1 || true
check "scepclient without the TLS CA trusted: refuses the server" \
  sh -c "grep -q 'unknown authority' '$T/sc0.log' && test ! -s dev.pem"
SSL_CERT_FILE=$T/tls/ca.pem scepclient -server-url "$SC_URL" -challenge "$CHALLENGE_VALUE" \
  -private-key dev.key -certificate dev.pem -cn tls-device >"$T/sc1.log" 2>&1 || { cat "$T/sc1.log" >&2; fail "scepclient over HTTPS"; }
check "scepclient over HTTPS: certificate written" test -s dev.pem
check "scepclient over HTTPS: certificate verifies against the served chain" verify_cert dev.pem
check "scepclient over HTTPS: openssl verify against the SCEP CA" \
  sh -c "openssl verify -CAfile '$STATE/ca.pem' dev.pem | grep -q ': OK$'"
serial=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "scepclient over HTTPS: the certificate is in the store" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert list | grep -q '^$serial '"
cd "$T"

# Plain HTTP on the TLS port: a plain-text 400 that says so, audited for that connection.
read -r st port < <(curl -s -o "$T/plain.body" -w '%{http_code} %{local_port}\n' \
  "http://127.0.0.1:$TLS_PORT/scep?operation=GetCACaps")
check "plain HTTP on the TLS port: 400" test "$st" = 400
check "plain HTTP on the TLS port: the body says to use HTTPS" grep -q "speaks HTTPS" "$T/plain.body"
check "plain HTTP on the TLS port: audited 2001 http 400 for that connection" \
  expect_http_refusal "$port" 400 http

# Garbage instead of a ClientHello: closed, audited.
m=$(audit_mark)
python3 - "$TLS_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"\x7f" + bytes(range(200)))
try:
    while s.recv(4096):
        pass
except OSError:
    pass
EOF
check_audit "garbage ClientHello: audited as a failed handshake" \
  sh -c "tail -n +$((m + 1)) '$STATE/audit.log' | grep '\"event\":2001,' | grep -q 'tls: handshake failed'"
check "scepd still serves HTTPS after all that" \
  sh -c "curl -fsS --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' | grep -qx POSTPKIOperation"
stop_scepd

# min_version = 1.3: a TLS 1.2 client is refused.
tls_conf "$T/tls/server.key" 1.3
start_scepd
for _ in $(seq 1 100); do curl -s --cacert "$T/tls/ca.pem" "$H/healthz" >/dev/null && break; sleep 0.05; done
check "min_version 1.3: TLS 1.3 served" \
  sh -c "curl -fsS --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' | grep -qx POSTPKIOperation"
check "min_version 1.3: a TLS 1.2 client is refused" \
  sh -c "! curl -sS --tls-max 1.2 --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' -o /dev/null 2>/dev/null"
stop_scepd

# --- The TLS key in the token ([tls] key_label). The server key of the certificate above is
# imported into the token (softhsm2-util; a real token would generate it and export a CSR).
openssl pkcs8 -topk8 -nocrypt -in "$T/tls/server.key" -out "$T/tls/server.p8"
SOFTHSM2_CONF=$STATE/softhsm2.conf softhsm2-util --import "$T/tls/server.p8" --token scepd \
  --label tls --id 7a01 --pin "$(cat "$STATE/pin")" >/dev/null 2>&1 || fail "softhsm2-util --import"
# The module becomes p11fault in front of SoftHSM: C_Sign can be made slow while scepd runs.
conf_saved=$CONF; CONF=$T/base.conf; p11fault_use; CONF=$conf_saved
token_conf() {  # token_conf KEY_LABEL: [tls] with key_label, the keys through p11fault
  # One shard: the plain requests below are served by the very shard the handshake is on.
  sed 's/^shards *=.*/shards = 1/' "$T/base.conf" > "$CONF"
  printf '\n[tls]\nlisten = 127.0.0.1:%s\ncert = %s\nkey_label = %s\n' \
    "$TLS_PORT" "$T/tls/server.pem" "$1" >> "$CONF"
}
token_conf ca
check "an RSA token key for TLS is refused at start (TLS 1.3 would need RSA-PSS)" \
  sh -c "! timeout 20 '$BUILD/scepd' -c '$CONF' >'$T/refuse4.log' 2>&1 && grep -q 'must name an EC key' '$T/refuse4.log'"
token_conf tls
start_scepd
for _ in $(seq 1 100); do curl -s --cacert "$T/tls/ca.pem" "$H/healthz" >/dev/null && break; sleep 0.05; done
before=$(p11fault_mark)
check "token key: GetCACaps over HTTPS, TLS 1.3" \
  sh -c "curl -sS -v --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' 2>&1 | grep -q 'SSL connection using TLSv1.3'"
check "token key: TLS 1.2" \
  sh -c "curl -fsS --tls-max 1.2 --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' | grep -qx POSTPKIOperation"
check "token key: each full handshake is one C_Sign in the token" test "$(p11fault_count "$before" 'C_Sign CKR_OK real')" -ge 2
curl -fsS "$ADMIN_URL/metrics" > "$T/m-tls.txt"
check "token key: /metrics counts the key threads' signatures" \
  sh -c "awk '\$1 == \"scepd_tls_key_operations_total\" && \$2 >= 2 { f = 1 } END { exit !f }' '$T/m-tls.txt'"
check "token key: the scrape passes promtool check metrics" promtool check metrics < "$T/m-tls.txt"
mkdir -p "$T/dev2" && cd "$T/dev2"
SSL_CERT_FILE=$T/tls/ca.pem scepclient -server-url "$SC_URL" -challenge "$CHALLENGE_VALUE" \
  -private-key dev.key -certificate dev.pem -cn tls-token-device >"$T/sc2.log" 2>&1 || { cat "$T/sc2.log" >&2; fail "scepclient over HTTPS (token key)"; }
check "token key: scepclient over HTTPS enrolls" verify_cert dev.pem
cd "$T"
# A slow token: every C_Sign takes 6 s (under the 10 s header timeout that bounds a
# handshake). A handshake waits for it on a key thread while the shards go on serving: five
# plain GetCACaps answer before that handshake completes.
p11fault_set "latency C_Sign 6000"
curl -sS --cacert "$T/tls/ca.pem" "$H/scep?operation=GetCACaps" -o "$T/slow.body" &
slow=$!
for _ in $(seq 1 200); do [ "$(grep -c ' reload ' "$P11FAULT_LOG")" -ge 1 ] && break; sleep 0.05; done
ok_plain=0
for _ in $(seq 1 5); do
  curl -fsS -m 10 "$URL?operation=GetCACaps" | grep -qx POSTPKIOperation && { ok_plain=$((ok_plain + 1)); }
done
kill -0 "$slow" 2>/dev/null && still=1 || still=0
check "slow token: 5 plain requests answered while a TLS handshake waits for C_Sign" \
  test "$ok_plain" = 5 -a "$still" = 1
wait "$slow"
check "slow token: that handshake completes after the slow C_Sign" grep -qx POSTPKIOperation "$T/slow.body"
p11fault_set
# Every session lost (a network HSM that dropped them): the key thread recovers its own and
# signs, so the next handshake still completes.
m=$(p11fault_mark)
p11fault_set "invalidate_sessions"
check "sessions lost: a new HTTPS handshake still completes (the key thread recovers)" \
  sh -c "curl -fsS --cacert '$T/tls/ca.pem' '$H/scep?operation=GetCACaps' | grep -qx POSTPKIOperation"
check "sessions lost: the key thread's first try was refused, then it signed" \
  sh -c "test \"\$(tail -n +$((m + 1)) '$P11FAULT_LOG' | grep -cE ' C_Sign(Init)? [A-Z_]+ dead')\" -ge 1 && tail -n +$((m + 1)) '$P11FAULT_LOG' | grep -q ' C_Sign CKR_OK real'"
stop_scepd
finish
