#!/usr/bin/env bash
# The serial rule (engine/pki/serial.h) at both front ends: `scepctl revoke SERIAL` and
# POST /admin/revocations accept and refuse the same spellings. Accepted: 1 to 32 hex digits
# in either case, run together or in colon pairs, leading zeros beyond 32 (openssl's
# "00:8f:.." form); accepted spellings of an issued certificate revoke that one certificate,
# others are "not found". Refused (scepctl exit 2, admin 400): empty, non-hex, 33 significant
# digits, misplaced colons.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT"
TOKEN=$(cat "$STATE/admin-token")

"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn serial-a --cert-out a.pem \
  --key a.key > a.out 2>&1 || true
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn serial-b --cert-out b.pem \
  --key b.key > b.out 2>&1 || true
check "two certificates issued" sh -c "grep -q status=SUCCESS a.out && grep -q status=SUCCESS b.out"
# 32 lower-case digits (scepd's serials have the top byte in 0x40..0x7f: never shorter)
SA=$(openssl x509 -in a.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
SB=$(openssl x509 -in b.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "serials are 32 hex digits" sh -c "echo '$SA$SB' | grep -Eq '^[0-9a-f]{64}$'"
pairs() { echo "$1" | sed 's/../&:/g; s/:$//'; }
upper() { echo "$1" | tr 'a-f' 'A-F'; }
mixed() { echo "$1" | sed 's/\(.\)\(.\)/\1\U\2/g'; }

# ctl SPELLING: scepctl's exit status (0 revoked, 1 not found, 2 refused spelling)
ctl() { local rc=0; "$BUILD/scepctl" -c "$CONF" revoke "$1" >ctl.out 2>&1 || rc=$?; echo $rc; }
# api SPELLING: the admin API's HTTP status (200 revoked, 404 not found, 400 refused)
api() {
  curl -s -o api.json -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d "{\"serial\":\"$1\"}" "$ADMIN_URL/admin/revocations"
}
# same SPELLING CTL_RC API_STATUS: both front ends answer it as expected
same() {
  local c a
  c=$(ctl "$1"); a=$(api "$1")
  if [ "$c" = "$2" ] && [ "$a" = "$3" ]; then return 0; fi
  log "  '$1': scepctl exit $c (want $2), admin API $a (want $3)"
  return 1
}

# --- spellings of an issued certificate: both revoke it (again: idempotent) ---
check "32 digits, lower case: revoked by both" same "$SA" 0 200
check "32 digits, upper case: accepted by both" same "$(upper "$SA")" 0 200
check "colon pairs, lower case: accepted by both" same "$(pairs "$SA")" 0 200
check "colon pairs, mixed case: accepted by both" same "$(mixed "$(pairs "$SA")")" 0 200
check "leading zero pair (openssl -text form): accepted by both" same "00:$(pairs "$SA")" 0 200
check "leading zeros over 32 digits: accepted by both" same "0000$SA" 0 200
check "scepctl: the last answer was already-revoked" grep -q already-revoked ctl.out
"$BUILD/scepctl" -c "$CONF" cert list --revoked > revoked.txt
check "all spellings revoked the one certificate" \
  sh -c "test \$(wc -l < revoked.txt) -eq 1 && grep -q '^$SA ' revoked.txt"
check "the other certificate is untouched" sh -c "! grep -q '$SB' revoked.txt"
check "scepctl cert show takes the same spellings" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert show '$(pairs "$(upper "$SB")")' | grep -q '^status: valid'"

# --- well-formed serials of no certificate: not found at both ---
check "1 digit: not found at both" same "1" 1 404
check "colon pairs 0a:1B: not found at both" same "0a:1B" 1 404
check "lone first digit a:bc: not found at both" same "a:bc" 1 404
check "32 zeros: not found at both" same "00000000000000000000000000000000" 1 404

# --- refused spellings: the same at both ---
check "empty: refused by both" same "" 2 400
check "non-hex: refused by both" same "xyz" 2 400
check "0x prefix: refused by both" same "0x1b" 2 400
check "33 significant digits: refused by both" same "1$SA" 2 400
check "17 significant pairs: refused by both" same "01:$(pairs "$SA")" 2 400
check "leading colon: refused by both" same ":0a:1b" 2 400
check "trailing colon: refused by both" same "0a:1b:" 2 400
check "doubled colon: refused by both" same "0a::1b" 2 400
check "group of three digits: refused by both" same "0a1:b2" 2 400
check "lone digit after the first group: refused by both" same "0a:b" 2 400
check "scepctl says the rule" grep -q "1 to 32 hex digits" ctl.out
"$BUILD/scepctl" -c "$CONF" cert list --revoked > revoked2.txt
check "refused and unknown spellings revoked nothing" cmp -s revoked.txt revoked2.txt

finish
