#!/usr/bin/env bash
# The challenge webhook end to end, against tests/emulators/webhook_server.py over TLS under
# the test's own CA: a profile with challenge = webhook POSTs the request's facts, signed
# with HMAC-SHA256, and issues only on {"allow": true}; a denial is FAILURE badRequest
# mdm_denied with the webhook's reason in the audit event; a webhook whose certificate does
# not chain to ca_file refuses the request (mdm_unavailable, audit diag mdm_tls_failed). A
# profile "static, webhook" issues on its static challenge without asking the webhook.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl python3 openssl

init_state
P=$STATE/profiles
printf 'challenge = webhook\n' > "$P/hook.conf"
printf 'challenge = static, webhook\n' > "$P/hook-or-static.conf"
cd "$T"
# A test CA, the webhook's certificate for 127.0.0.1 under it, and one under another CA.
mkca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.pem" -subj "/CN=$1" -days 2 >/dev/null 2>&1
}
mkleaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" \
    -subj "/CN=127.0.0.1" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.pem" >/dev/null 2>&1
}
mkca testca; mkca otherca
mkleaf hook testca; mkleaf rogue otherca
printf 'webhook-shared-secret-0123456789\n' > "$STATE/webhook.secret"
start_emulator hook webhook_server.py --secret-file "$STATE/webhook.secret" --cert hook.pem --key hook.key
HOOK=$EMU_PORT
start_emulator rogue webhook_server.py --secret-file "$STATE/webhook.secret" --cert rogue.pem --key rogue.key
ROGUE=$EMU_PORT
# timeout: generous, no check here is about it (an ASan scepd and the Python server share two
# loaded cores in CI); test_intune (test_slow_answer_times_out) covers the timeout itself.
mdm_conf() {
  cat > "$STATE/mdm.conf" <<CONF
[mdm]
timeout = 10s
retries = 1
retry_backoff = 50ms
[webhook]
url = https://127.0.0.1:$1/scep-check
secret_file = webhook.secret
ca_file = $T/testca.pem
CONF
}
mdm_conf "$HOOK"
use_mdm_config
start_scepd
B="http://127.0.0.1:$PORT/scep"
req() {
  local n=$1 p=$2; shift 2
  "$REQ" enroll --url "$B/$p" "$@" > "$T/$n.out" 2>"$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
has_event() { grep -F "\"txid\":\"$(txid_of "$1")" "$STATE/audit.log" | grep -F "\"event\":$2," | grep -qF -- "$3"; }
hook_calls() { calls_where "$T/$1.calls" "(c.get('body') or {}).get('transactionId') == '$(txid_of "$2")'"; }

req ok hook --challenge "device-secret-1" --cn hook-1 --san dns:hook-1.example --cert-out ok.pem
check "allowed: SUCCESS" status_is ok SUCCESS -
check "allowed: the certificate verifies" verify_cert "$T/ok.pem"
check "allowed: audit ISSUED" expect_event ok 1000
check_audit "allowed: audit MDM_ALLOWED naming the webhook" has_event ok 1600 '"detail":"webhook'
call=$(hook_calls hook ok)
check "the webhook got one call for the transaction, with a valid signature" \
  python3 -c "import json,sys; c=json.loads(sys.argv[1]); sys.exit(0 if c['sig_ok'] and c['status'] == 200 else 1)" "$call"
check "the call carried profile, challenge, CSR, subject, SANs and peer" \
  python3 -c "
import json, sys, base64
b = json.loads(sys.argv[1])['body']
base64.b64decode(b['csr'])
ok = (b['version'] == 1 and b['profile'] == 'hook' and b['challenge'] == 'device-secret-1'
      and b['subject'] == 'CN=hook-1' and b['subjectAltNames'] == ['dns:hook-1.example']
      and b['peer'].startswith('127.0.0.1:') and len(b['id']) == 32)
sys.exit(0 if ok else 1)" "$call"

req deny hook --challenge deny --cn hook-2
check "denied: FAILURE badRequest, mdm_denied (2000)" expect_failure deny 2000 mdm_denied badRequest
check_audit "denied: the webhook's reason and code in MDM_DENIED (1601)" \
  has_event deny 1601 'unknown_challenge: challenge not known'

req junk hook --challenge junk --cn hook-3
check "an unreadable answer: FAILURE badRequest, mdm_unavailable" expect_failure junk 2000 mdm_unavailable badRequest
check_audit "an unreadable answer: MDM_DENIED diag mdm_bad_answer" has_event junk 1601 '"diag":"mdm_bad_answer"'

req st hook-or-static --challenge "$CHALLENGE_VALUE" --cn hook-4 --cert-out st.pem
check "static, webhook: the static challenge issues" status_is st SUCCESS -
check "static, webhook: without asking the webhook" test -z "$(hook_calls hook st)"
req st2 hook-or-static --challenge "device-secret-5" --cn hook-5
check "static, webhook: another challenge goes to the webhook, which allows it" status_is st2 SUCCESS -
check "static, webhook: one webhook call for it" test "$(hook_calls hook st2 | wc -l)" = 1
req st3 hook-or-static --challenge deny --cn hook-6
check "static, webhook: the webhook's denial stands" expect_failure st3 2000 mdm_denied badRequest

# A webhook whose certificate does not chain to ca_file: refused, never asked.
stop_scepd
mdm_conf "$ROGUE"
start_scepd
B="http://127.0.0.1:$PORT/scep"
req tls hook --challenge "device-secret-7" --cn hook-7
check "bad webhook certificate: FAILURE badRequest, mdm_unavailable" expect_failure tls 2000 mdm_unavailable badRequest
check_audit "bad webhook certificate: MDM_DENIED diag mdm_tls_failed" has_event tls 1601 '"diag":"mdm_tls_failed"'
check "bad webhook certificate: no request reached it" test -z "$(hook_calls rogue tls)"

finish
