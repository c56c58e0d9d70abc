#!/usr/bin/env bash
# NDES-style dynamic challenges: GET /certsrv/mscep_admin/ with HTTP Basic returns NDES's
# page (UTF-16LE, charset=utf-16) carrying a fresh one-time challenge, scraped the way NDES
# scrapers do (the "password is: <B> ... </B>" phrase, 16 hex digits), then used by micromdm's
# scepclient to enroll once; reuse fails (challenge_used), expiry fails (challenge_expired),
# wrong credentials get 401 with WWW-Authenticate. Also: a profile "onetime, static" takes
# either kind, and the static one consumes nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
need_cmd curl scepclient iconv

init_state
P=$STATE/profiles
# scepclient encrypts with single DES whatever GetCACaps says: allow_des (docs/profiles.md).
printf 'challenge = onetime\nallow_des = yes\n' > "$P/ndes.conf"
printf 'challenge = onetime, static\nallow_des = yes\n' > "$P/either.conf"
printf '# NDES page users\nmdm-connector:s3cret-pass\n' > "$STATE/ndes.users"
ndes_conf() {
  cat > "$STATE/mdm.conf" <<CONF
[ndes]
users_file = ndes.users
profile = ndes
ttl = $1
CONF
}
ndes_conf 60m
use_mdm_config
start_scepd
cd "$T"
A="http://127.0.0.1:$PORT/certsrv/mscep_admin/"
# page NAME [curl args]: fetches the page into $T/NAME.page (+ .hdr), prints the status.
page() { local n=$1; shift; curl -s -o "$T/$n.page" -D "$T/$n.hdr" -w '%{http_code}' "$@" "$A"; }
# scrape NAME: the challenge, as NDES scrapers read it (decode UTF-16, match the phrase).
scrape() {
  iconv -f UTF-16 -t UTF-8 "$T/$1.page" | tr -d '\r' \
    | sed -n 's/.*The enrollment challenge password is: <B> *\([0-9A-F]\{16\}\) *<\/B>.*/\1/p' | head -n1
}
sc() {
  mkdir -p "$T/sc-$1" && (cd "$T/sc-$1" && timeout 120 scepclient -server-url "$2" \
    -challenge "$3" -private-key dev.key -certificate dev.pem -cn "$1" >"$T/sc-$1.log" 2>&1) || true
}

check "wrong credentials: 401" test "$(page bad -u mdm-connector:wrong)" = 401
check "wrong credentials: WWW-Authenticate: Basic" grep -qi '^WWW-Authenticate: Basic realm="scepd"' "$T/bad.hdr"
check "no credentials: 401" test "$(page none)" = 401
check "wrong credentials: audited 2001 unauthorized" audit_has '"diag":"unauthorized"'

check "Basic auth: 200" test "$(page p1 -u mdm-connector:s3cret-pass)" = 200
check "the page is UTF-16 (charset=utf-16, byte order mark)" \
  sh -c "grep -qi '^Content-Type: text/html; charset=utf-16' '$T/p1.hdr' && [ \"\$(head -c2 '$T/p1.page' | od -An -tx1 | tr -d ' ')\" = fffe ]"
check "the page says valid 60 minutes, used once" \
  sh -c "iconv -f UTF-16 -t UTF-8 '$T/p1.page' | grep -q 'This password can be used only once and will expire within 60 minutes'"
check "the page carries the CA thumbprint (MD5 of the CA certificate)" \
  sh -c "iconv -f UTF-16 -t UTF-8 '$T/p1.page' | tr -d ' ' | grep -qi \"\$(openssl x509 -in '$STATE/ca.pem' -noout -fingerprint -md5 | cut -d= -f2 | tr -d :)\""
C1=$(scrape p1)
check "the challenge scrapes as 16 hex digits" grep -Eqx '[0-9A-F]{16}' <<<"$C1"
check "audit CHALLENGE_CREATED (1400) naming the NDES user" audit_has '"detail":"ndes mdm-connector'
page p2 -u mdm-connector:s3cret-pass >/dev/null
check "each fetch mints a fresh challenge" test "$(scrape p2)" != "$C1"

m=$(audit_mark)
sc once "$URL/ndes" "$C1"
check "scepclient with the scraped challenge: certificate verifies" verify_cert "$T/sc-once/dev.pem"
tx=$(new_txid "$m") || true
check_audit "scepclient: CHALLENGE_CONSUMED then ISSUED under profile ndes" \
  sh -c "grep -F '\"txid\":\"$tx\"' '$STATE/audit.log' | grep -q '\"event\":1401,' && grep -F '\"txid\":\"$tx\"' '$STATE/audit.log' | grep '\"event\":1000,' | grep -q '\"profile\":\"ndes\"'"
m=$(audit_mark)
sc reuse "$URL/ndes" "$C1"
check "reuse: no certificate" test ! -s "$T/sc-reuse/dev.pem"
check "reuse: failInfo badRequest" grep -q "failInfo: badRequest" "$T/sc-reuse.log"
check "reuse: audited 2002 challenge_used badRequest" expect_refusal "$(new_txid "$m")" 2002 challenge_used badRequest

# "onetime, static": the static challenge works and consumes nothing; a one-time one too.
m=$(audit_mark)
sc st "$URL/either" "$CHALLENGE_VALUE"
check "onetime, static: the static challenge issues" verify_cert "$T/sc-st/dev.pem"
tx=$(new_txid "$m") || true
check "onetime, static: nothing consumed for the static one" \
  sh -c "! grep -F '\"txid\":\"$tx\"' '$STATE/audit.log' | grep -q '\"event\":1401,'"
C3=$("$BUILD/scepctl" -c "$CONF" challenge new --profile either --ttl 60m)
sc ot "$URL/either" "$C3"
check "onetime, static: a one-time challenge issues" verify_cert "$T/sc-ot/dev.pem"
m=$(audit_mark)
sc ot2 "$URL/either" "$C3"
check "onetime, static: the used one-time challenge is refused (challenge_used)" \
  expect_refusal "$(new_txid "$m")" 2002 challenge_used badRequest

# Expiry: a page minted with ttl 2s, used after it.
stop_scepd
ndes_conf 2s
start_scepd
A="http://127.0.0.1:$PORT/certsrv/mscep_admin/"
page p3 -u mdm-connector:s3cret-pass >/dev/null
C2=$(scrape p3)
sleep 3
m=$(audit_mark)
sc late "$URL/ndes" "$C2"
check "expired: no certificate" test ! -s "$T/sc-late/dev.pem"
check "expired: audited 2002 challenge_expired badRequest" expect_refusal "$(new_txid "$m")" 2002 challenge_expired badRequest

finish
