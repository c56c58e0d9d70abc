#!/usr/bin/env bash
# Intune revocation sync against tests/emulators/intune_emulator.py: with [intune]
# revocation_poll_interval set, scepd downloads Intune's revocation requests for this CA,
# revokes each serial through the store writer and uploads one result per request:
# succeeded, CertificateNotFoundError (unknown serial), ConflictError (already revoked).
# Each round is audited (INTUNE_REVOCATION_SYNC, 1603), a failed download too (1604).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl python3 openssl

init_state
printf 'challenge = intune\n' > "$STATE/profiles/intune.conf"
start_emulator intune intune_emulator.py --secret emulator-secret
EP=$EMU_PORT
CTL="http://127.0.0.1:$EP/_control"
printf 'emulator-secret\n' > "$STATE/intune.secret"
intune_conf "$EP" "timeout = 5s
retries = 1
retry_backoff = 50ms" "client_secret_file = intune.secret
revocation_poll_interval = 300ms"
use_mdm_config
start_scepd
cd "$T"
knob() { curl -fsS -X POST -d "$1" "$CTL" >/dev/null; }
uploads() { calls_where "$T/intune.calls" "c['path'].endswith('/uploadRevocationResults') and c['status'] == 200"; }
# wait_for CMD...: polls CMD for up to 60 s.
wait_for() { local i; for i in $(seq 1 600); do "$@" && return 0; sleep 0.1; done; return 1; }
upload_names() { uploads | grep -qF "\"$1\""; }
# result CTX: the last uploaded result for CTX as "succeeded errorCode".
result() {
  uploads | python3 -c "
import json, sys
last = ''
for line in sys.stdin:
    for r in json.loads(line)['body']['results']:
        if r['requestContext'] == sys.argv[1]:
            last = '%s %s' % (r['succeeded'], r.get('errorCode'))
print(last)" "$1"
}

"$REQ" enroll --url "$URL/intune" --challenge "intune-blob-1" --cn dev-r1 --key r1.key \
  --cert-out r1.pem > r1.out 2>r1.err || true
check "enrolled under challenge = intune" grep -q 'status=SUCCESS' r1.out
serial=$(openssl x509 -in r1.pem -noout -serial | cut -d= -f2)
issuer=$(openssl x509 -in r1.pem -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')
check "the certificate is valid before the sync" \
  sh -c "! '$BUILD/scepctl' -c '$CONF' cert list 2>/dev/null | grep -i '$serial' | grep -qi revoked"

# --- one round: one serial of ours, one unknown serial
knob "{\"revocations\": [{\"requestContext\": \"ctx-ours\", \"serialNumber\": \"$serial\", \"issuerName\": \"$issuer\", \"caConfiguration\": \"scepd\"}, {\"requestContext\": \"ctx-unknown\", \"serialNumber\": \"0DEADBEEF0\"}]}"
check "the results were uploaded" wait_for upload_names ctx-unknown
check "download asked for this CA (issuerName = the CA's subject) at most 500" \
  sh -c "python3 -c \"
import json,sys
for l in open('$T/intune.calls'):
    c=json.loads(l)
    if c['path'].endswith('/downloadRevocationRequests'):
        p=c['body']['downloadParameters']; sys.exit(0 if p['issuerName']==sys.argv[1] and p['maxRequests']==500 else 1)
sys.exit(1)\" '$issuer'"
check "upload: ctx-ours succeeded (errorCode None)" test "$(result ctx-ours)" = "True None"
check "upload: ctx-unknown CertificateNotFoundError" test "$(result ctx-unknown)" = "False CertificateNotFoundError"
check "the store holds the certificate revoked (scepctl cert list)" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert list 2>/dev/null | grep -i '$serial' | grep -qi revoked"
check "audit REVOKED (1100) for the serial, naming the request" \
  sh -c "grep '\"event\":1100,' '$STATE/audit.log' | grep -i '$serial' | grep -q 'intune revocation request ctx-ours'"
sync_event() { grep '"event":1603,' "$STATE/audit.log" | grep -qF "$1"; }
check "audit INTUNE_REVOCATION_SYNC (1603) with the counts" \
  wait_for sync_event 'requests=2 revoked=1 already_revoked=0 not_found=1 refused=0'

# --- Intune asks again for a serial already revoked
knob "{\"revocations\": [{\"requestContext\": \"ctx-again\", \"serialNumber\": \"$serial\"}]}"
check "a second request for it is uploaded" wait_for upload_names ctx-again
check "upload: ctx-again ConflictError (already revoked)" test "$(result ctx-again)" = "False ConflictError"
check "audit 1603: already_revoked=1" wait_for sync_event 'requests=1 revoked=0 already_revoked=1'

# --- the download fails (503 on both attempts): INTUNE_REVOCATION_SYNC_FAILED
knob '{"revocations": [], "fail_5xx": 2}'
failed_event() { grep '"event":1604,' "$STATE/audit.log" | grep -q 'downloadRevocationRequests'; }
check "audit INTUNE_REVOCATION_SYNC_FAILED (1604) for a failing download" wait_for failed_event
check "1604 carries diag mdm_unavailable" \
  sh -c "grep '\"event\":1604,' '$STATE/audit.log' | grep -q '\"diag\":\"mdm_unavailable\"'"

finish
