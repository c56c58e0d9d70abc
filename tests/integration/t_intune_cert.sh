#!/usr/bin/env bash
# Intune with an Entra certificate credential instead of a client secret: scepd signs a
# client_assertion JWT (Microsoft identity platform "certificate credentials") with the app's
# key, from a PEM file (PS256, x5t#S256) or from scepd's PKCS#11 token through the scepd-hsm
# provider (RS256, x5t). The emulator verifies the signature against the certificate it has
# registered; an assertion signed by another certificate's key is refused (401), which is the
# documented authentication failure: FAILURE badRequest mdm_unavailable, audit MDM_DENIED
# (1601) with diag mdm_auth_failed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl python3 openssl softhsm2-util

init_state
printf 'challenge = intune\n' > "$STATE/profiles/intune.conf"
cd "$T"
for n in app other; do
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.pem" -days 30 \
    -subj "/CN=scepd-intune-$n" 2>/dev/null
done
start_emulator intune intune_emulator.py --secret not-used-here --client-cert "$T/app.pem"
EP=$EMU_PORT
# mdm_conf CREDENTIAL-LINES: the stage's file with these credential keys.
mdm_conf() { intune_conf "$EP" "timeout = 5s
retries = 1
retry_backoff = 50ms" "$1"; }
use_mdm_config
req() { "$REQ" enroll --url "$URL/intune" --challenge "intune-blob-$1" --cn "dev-$1" > "$T/$1.out" 2>"$T/$1.err" || true; }
# last_token FIELD: that field of the last token request the emulator recorded.
last_token() {
  calls_where "$T/intune.calls" "c['path'].endswith('/oauth2/v2.0/token')" | tail -n1 |
    python3 -c "import json,sys; b=json.loads(sys.stdin.read())['body']; v=b; 
for k in sys.argv[1].split('.'): v = v.get(k) if isinstance(v, dict) else None
print(v)" "$1"
}
thumb() { openssl x509 -in "$1" -outform DER | openssl dgst "-$2" -binary | basenc --base64url | tr -d '='; }

# --- a PEM key file, PS256
mdm_conf "client_certificate = $T/app.pem
client_key = $T/app.key"
start_scepd
req file
check "file key: enrolled (SUCCESS)" grep -q 'status=SUCCESS' file.out
check "file key: the emulator verified the assertion" test "$(last_token client_assertion_ok)" = True
check "file key: alg PS256" test "$(last_token assertion_header.alg)" = PS256
check "file key: x5t#S256 is the certificate's SHA-256 thumbprint" \
  test "$(last_token 'assertion_header.x5t#S256')" = "$(thumb app.pem sha256)"
check "file key: iss = sub = client_id" \
  test "$(last_token assertion_claims.iss) $(last_token assertion_claims.sub)" = "11111111-2222-3333-4444-555555555555 11111111-2222-3333-4444-555555555555"
check "file key: aud is the token endpoint" \
  test "$(last_token assertion_claims.aud)" = "http://127.0.0.1:$EP/contoso.onmicrosoft.com/oauth2/v2.0/token"
check "file key: no client_secret sent" test "$(last_token client_secret_ok)" = None
stop_scepd

# --- the key on scepd's token (imported, non-extractable from then on), RS256
SOFTHSM2_CONF=$STATE/softhsm2.conf softhsm2-util --import "$T/app.key" --token scepd \
  --label intune-app --id 1a7e --pin "$(cat "$STATE/pin")" >/dev/null 2>"$T/import.err" ||
  { cat "$T/import.err" >&2; fail "softhsm2-util --import"; }
mdm_conf "client_certificate = $T/app.pem
client_key_label = intune-app
client_assertion_alg = RS256"
start_scepd
req token
check "token key: enrolled (SUCCESS)" grep -q 'status=SUCCESS' token.out
check "token key: the emulator verified the assertion" test "$(last_token client_assertion_ok)" = True
check "token key: alg RS256 with x5t (SHA-1 thumbprint)" \
  test "$(last_token assertion_header.alg) $(last_token assertion_header.x5t)" = "RS256 $(thumb app.pem sha1)"
stop_scepd

# --- PS256 cannot be made by the token: refused at start
mdm_conf "client_certificate = $T/app.pem
client_key_label = intune-app"
timeout 60 "$BUILD/scepd" -c "$CONF" > "$T/ps256.log" 2>&1 && rc=0 || rc=$?
check "token key with PS256: scepd refuses to start" test "$rc" -ne 0 -a "$rc" -ne 124
check "token key with PS256: the message says RS256" grep -q 'client_assertion_alg = RS256' "$T/ps256.log"

# --- a certificate Entra does not know: the assertion is refused
mdm_conf "client_certificate = $T/other.pem
client_key = $T/other.key"
start_scepd
req other
check "unknown certificate: FAILURE badRequest, mdm_unavailable (2000)" expect_failure other 2000 mdm_unavailable badRequest
check "unknown certificate: the emulator refused the assertion" test "$(last_token client_assertion_ok)" = False
check "unknown certificate: audit MDM_DENIED (1601) diag mdm_auth_failed" \
  sh -c "grep -F '\"txid\":\"$(txid_of other)\"' '$STATE/audit.log' | grep '\"event\":1601,' | grep -q '\"diag\":\"mdm_auth_failed\"'"

# --- the emulator really checks the signature: the right x5t#S256, signed by another key
forged=$(python3 - "$T" "$EP" <<'PY'
import base64, hashlib, json, ssl, subprocess, sys, time, uuid
t, port = sys.argv[1], sys.argv[2]
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
der = ssl.PEM_cert_to_DER_cert(open(t + "/app.pem").read())
h = b(json.dumps({"alg": "PS256", "typ": "JWT", "x5t#S256": b(hashlib.sha256(der).digest())}).encode())
now = int(time.time())
cid = "11111111-2222-3333-4444-555555555555"
c = b(json.dumps({"aud": "http://127.0.0.1:%s/contoso.onmicrosoft.com/oauth2/v2.0/token" % port,
                  "iss": cid, "sub": cid, "jti": str(uuid.uuid4()), "nbf": now, "exp": now + 600}).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", t + "/other.key", "-sigopt",
                      "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"],
                     input=(h + "." + c).encode(), capture_output=True, check=True).stdout
print(h + "." + c + "." + b(sig))
PY
)
code=$(curl -s -o "$T/forged.json" -w '%{http_code}' \
  --data-urlencode grant_type=client_credentials \
  --data-urlencode client_id=11111111-2222-3333-4444-555555555555 \
  --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
  --data-urlencode "client_assertion=$forged" \
  --data-urlencode 'scope=https://api.manage.microsoft.com//.default' \
  "http://127.0.0.1:$EP/contoso.onmicrosoft.com/oauth2/v2.0/token")
check "emulator: a forged signature is refused (401)" test "$code" = 401
check "emulator: because the signature does not verify" \
  test "$(last_token assertion_error)" = "signature does not verify"

finish
