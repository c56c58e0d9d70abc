#!/usr/bin/env bash
# A renewal stays in its lane (docs/profiles.md "Renewal"): a RenewalReq, or a PKCSReq signed
# by a certificate this CA issued, is accepted only under the profile of the certificate it
# renews (or one whose renew_from names it), for that certificate's subject and SANs. Into
# another profile, with another subject or other SANs: FAILURE badRequest with its own
# diagnostic (renewal_profile, renewal_subject, renewal_san); with a valid challenge of the
# target profile it is an initial enrollment there. A renewal held for approval
# (approve_renewals = no) is answered PENDING and its CertPoll finds it.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
P=$STATE/profiles
printf 'renewal_threshold_percent = 100\n' > "$P/lane-a.conf"
printf 'renewal_threshold_percent = 100\nrenew_from = lane-a\n' > "$P/lane-b.conf"
printf 'renewal_threshold_percent = 100\n' > "$P/lane-c.conf"
printf 'renewal_threshold_percent = 100\nrenew_from = lane-a\nrenew_may_change = subject, san\n' > "$P/lane-free.conf"
printf 'approval = manual\napprove_renewals = no\nrenewal_threshold_percent = 100\nrenew_from = lane-a\n' > "$P/manual-renew.conf"
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep"
C=$CHALLENGE_VALUE

# req NAME PROFILE ARGS...: scep_req enroll at /scep/PROFILE ("" : /scep), output NAME.out.
req() {
  local n=$1 p=$2; shift 2
  "$REQ" enroll --url "$B${p:+/$p}" "$@" > "$T/$n.out" 2> "$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
statuses() { grep -o 'status=[A-Z]* failinfo=[A-Za-z-]*' "$T/$1.out" | tr '\n' ' '; }
refused() { expect_failure "$1" 2000 "$2" badRequest; }
# A renewal signed by the lane-a certificate, and that certificate's subject and SAN.
RENEW=(--renew-with old.pem --renew-key old.key)
ID=(--subject /CN=dev-lane/O=corp --san dns:dev-lane.corp.example)

req old lane-a --challenge "$C" "${ID[@]}" --key old.key --cert-out old.pem
check "lane-a: initial enrollment SUCCESS" status_is old SUCCESS -
check "store: the certificate is recorded under profile lane-a" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert show \$(openssl x509 -in '$T/old.pem' -noout -serial | cut -d= -f2) | grep -q '^profile: lane-a'"

# --- out of its lane ---
req into-c lane-c "${RENEW[@]}" "${ID[@]}"
check "RenewalReq into another profile: FAILURE badRequest, renewal_profile (2000)" refused into-c renewal_profile
check_audit "renewal_profile: the audit event names the target profile" \
  sh -c "grep -F '\"txid\":\"$(txid_of into-c)' '$STATE/audit.log' | tail -n1 | grep -q '\"profile\":\"lane-c\"'"
req into-c-pkcs lane-c --pkcsreq-signed-by old.pem --renew-key old.key "${ID[@]}"
check "PKCSReq signed by our certificate into another profile: renewal_profile" refused into-c-pkcs renewal_profile
req into-c-wrong lane-c "${RENEW[@]}" "${ID[@]}" --challenge wrong-challenge
check "into another profile with a wrong challenge: still renewal_profile" refused into-c-wrong renewal_profile
req subject lane-a "${RENEW[@]}" --subject /CN=someone-else/O=corp --san dns:dev-lane.corp.example
check "renewal with another subject: FAILURE badRequest, renewal_subject (2000)" refused subject renewal_subject
req san lane-a "${RENEW[@]}" --subject /CN=dev-lane/O=corp --san dns:dev-lane.corp.example --san dns:evil.example
check "renewal with an added SAN: FAILURE badRequest, renewal_san (2000)" refused san renewal_san
req san-gone lane-a "${RENEW[@]}" --subject /CN=dev-lane/O=corp
check "renewal without the old SAN: renewal_san" refused san-gone renewal_san
req default-path "" "${RENEW[@]}" --subject /CN=someone-else/O=corp
check "on /scep too (kept under lane-a): renewal_subject" refused default-path renewal_subject
check "nothing was issued for the refused renewals" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = 1

# --- with the target profile's challenge: an initial enrollment there ---
req initial lane-c "${RENEW[@]}" --challenge "$C" --subject /CN=new-identity/O=corp --key initial.key --cert-out initial.pem
check "into another profile with its challenge: SUCCESS" status_is initial SUCCESS -
check "... the certificate verifies" verify_cert initial.pem
check "... audited as ISSUED (1000), not RENEWED" expect_event initial 1000
check_audit "... under profile lane-c, with the requested subject" \
  sh -c "grep -F '\"txid\":\"$(txid_of initial)\"' '$STATE/audit.log' | grep '\"event\":1000' | grep -q '\"profile\":\"lane-c\"' && [ \"\$(openssl x509 -in '$T/initial.pem' -noout -subject -nameopt RFC2253)\" = 'subject=O=corp,CN=new-identity' ]"

# --- in its lane ---
req same lane-a "${RENEW[@]}" "${ID[@]}" --cert-out same.pem
check "renewal in its own profile, same subject and SAN: SUCCESS" status_is same SUCCESS -
check "... RENEWED (1001)" expect_event same 1001
req from lane-b "${RENEW[@]}" "${ID[@]}" --cert-out from.pem
check "renewal into a profile whose renew_from names lane-a: SUCCESS" status_is from SUCCESS -
check "... RENEWED (1001) under lane-b" expect_event from 1001
req path "" "${RENEW[@]}" "${ID[@]}" --cert-out path.pem
check_audit "renewal on /scep: SUCCESS, under lane-a" \
  sh -c "grep -q 'status=SUCCESS failinfo=- ' '$T/path.out' && grep -F '\"txid\":\"$(txid_of path)@' '$STATE/audit.log' | grep '\"event\":1001' | grep -q '\"profile\":\"lane-a\"'"
req free lane-free "${RENEW[@]}" --subject /CN=renamed/O=corp --san dns:renamed.corp.example --cert-out free.pem
check "renew_may_change = subject, san: a renamed renewal is accepted" status_is free SUCCESS -
check "... with the new subject" \
  test "$(openssl x509 -in free.pem -noout -subject -nameopt RFC2253)" = "subject=O=corp,CN=renamed"

# --- a renewal held for approval: PENDING, and its CertPoll finds it ---
req held manual-renew "${RENEW[@]}" "${ID[@]}" --key held.key --poll
TX=$(txid_of held)
check "approve_renewals = no: RenewalReq PENDING, its CertPoll PENDING (not badCertId)" \
  test "$(statuses held)" = "status=PENDING failinfo=- status=PENDING failinfo=- "
check "the pending renewal is listed under its transaction key" \
  sh -c "'$BUILD/scepctl' -c '$CONF' request list | grep -F -- '$TX@' | grep -q pending"
id=$("$BUILD/scepctl" -c "$CONF" request list | awk -v t="$TX@" 'index($0, t) { for (i = 1; i <= NF; i++) if (index($i, t) == 1) print $i }' | head -n1)
check "scepctl request approve of the renewal" sh -c "'$BUILD/scepctl' -c '$CONF' request approve '$id' | grep -q 'approved serial='"
req held2 manual-renew "${RENEW[@]}" "${ID[@]}" --key held.key --txid "$TX" --poll --cert-out held.pem
check "after approval: the repeated renewal and its CertPoll get the certificate" \
  test "$(statuses held2)" = "status=SUCCESS failinfo=- status=SUCCESS failinfo=- "
check "... CertPoll audited CERT_RETURNED (1003) with the serial" expect_event held2 1003
check "... the certificate verifies" verify_cert held.pem
finish
