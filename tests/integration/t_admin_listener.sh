#!/usr/bin/env bash
# The admin API on its own listener ([admin] listen): /admin/*, /metrics answered there and
# 404 on the SCEP listener (as every route the SCEP listener does not serve); failed bearer
# tokens rate-limited per address (429 with Retry-After, the token not even compared while
# refused) and audited once per window with the count; [admin] listen = none; a
# configuration that puts the admin listener on the SCEP port refused.
. "$(dirname "$0")/lib.sh"
need_cmd curl

init_state
# A short window so that the test sees it end; 3 failures allowed.
sed -i 's/^\[admin\]$/[admin]\nauth_fail_max = 3\nauth_fail_window = 3s/' "$CONF"
start_scepd
cd "$T"
TOKEN=$(cat "$STATE/admin-token")
code() { curl -s -o body -D head -w '%{http_code}' "$@"; }
S="http://127.0.0.1:$PORT"

check "two listeners: the admin port is its own" sh -c "[ '$ADMIN_PORT' -gt 0 ] && [ '$ADMIN_PORT' != '$PORT' ]"
check "SCEP listener serves SCEP" test "$(code "$URL?operation=GetCACaps")" = 200
for p in /admin/revocations /admin/challenges /admin /admin/anything /metrics; do
  check "SCEP listener: POST $p -> 404" \
    test "$(code -X POST -H "Authorization: Bearer $TOKEN" -d 'serial=01' "$S$p")" = 404
done
check "SCEP listener: GET /metrics -> 404" test "$(code "$S/metrics")" = 404
check "admin listener: GET /metrics -> 200" test "$(code "$ADMIN_URL/metrics")" = 200
check "admin listener: /metrics in the text format 0.0.4" grep -qi '^Content-Type: text/plain; version=0.0.4' head
check "admin listener: /healthz -> 200" test "$(code "$ADMIN_URL/healthz")" = 200
check "admin listener does not serve SCEP: 404" \
  test "$(code "$ADMIN_URL/scep?operation=GetCACaps")" = 404
check "admin listener does not serve the CRL: 404" test "$(code "$ADMIN_URL/crl/ca.crl")" = 404
check "admin listener: a revocation with the token works (unknown serial: 404 JSON)" \
  sh -c "test \"\$(curl -s -o b.json -w '%{http_code}' -H 'Authorization: Bearer $TOKEN' -d serial=40000000000000000000000000000001 '$ADMIN_URL/admin/revocations')\" = 404 && grep -q unknown_serial b.json"

# --- failed authentications: 3 allowed per 3 s window, then 429 ---
for i in 1 2 3; do
  check "wrong token $i -> 401" \
    test "$(code -H 'Authorization: Bearer wrong-token-wrong-token' -d serial=01 "$ADMIN_URL/admin/revocations")" = 401
done
check "4th try -> 429" \
  test "$(code -H 'Authorization: Bearer wrong-token-wrong-token' -d serial=01 "$ADMIN_URL/admin/revocations")" = 429
check "429 carries Retry-After of 1..3 s" sh -c "tr -d '\r' < head | grep -Eqi '^Retry-After: [123]$'"
check "while refused even the right token gets 429 (not compared)" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"nope"}' "$ADMIN_URL/admin/challenges")" = 429
check "/metrics is not an authenticated route: still 200" test "$(code "$ADMIN_URL/metrics")" = 200
check "metrics count the failures and the refusals" \
  sh -c "grep -qx 'scepd_admin_auth_failures_total 3' body && grep -qx 'scepd_admin_rate_limited_total 2' body"
check "nothing audited per try (event 2005 only when the window ends)" \
  sh -c "! grep -q '\"event\":2005' '$STATE/audit.log'"
# The window ends 3 s after the first failure; then the right token works again and the
# window's one event is written (by shard 0's next batch: its tick runs at least every second).
sleep 3.5
check "after the window: the right token works again" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"nope"}' "$ADMIN_URL/admin/challenges")" = 400
for _ in $(seq 1 40); do grep -q '"event":2005' "$STATE/audit.log" && break; sleep 0.1; done
check "one audit event for the window" test "$(grep -c '"event":2005' "$STATE/audit.log")" = 1
check_audit "it has the count (3 failed + 2 refused), diag rate_limited, 429, the address" \
  sh -c "grep '\"event\":2005' '$STATE/audit.log' | grep '\"count\":5' | grep '\"diag\":\"rate_limited\"' | grep '\"http_status\":429' | grep -q '\"peer\":\"127.0.0.1\"'"
stop_scepd

# --- [admin] listen = none: no admin listener at all ---
awk 'BEGIN{s=""} /^\[/{s=$0} { if (s=="[admin]" && $0 ~ /^listen *=/) print "listen = none"; else print }' "$CONF" > conf.none
cp "$CONF" conf.orig; cp conf.none "$CONF"
start_scepd
check "listen = none: the admin port file says 0" test "$ADMIN_PORT" = 0
check "listen = none: SCEP still served, /admin still 404" \
  sh -c "test \"\$(curl -s -o /dev/null -w '%{http_code}' '$URL?operation=GetCACaps')\" = 200 && test \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST 'http://127.0.0.1:$PORT/admin/revocations')\" = 404"
stop_scepd

# --- the admin listener on the SCEP port is a configuration error ---
awk 'BEGIN{s=""} /^\[/{s=$0} { if (s=="[server]" && $0 ~ /^listen *=/) print "listen = 127.0.0.1:18080";
     else if (s=="[admin]" && $0 ~ /^listen *=/) print "listen = 127.0.0.1:18080"; else print }' conf.orig > "$CONF"
rc=0; "$BUILD/scepd" -c "$CONF" > same.log 2>&1 || rc=$?
check "admin listen on the SCEP port: scepd refuses to start" test "$rc" -ne 0
check "with a message naming [admin] listen" grep -q "\[admin\] listen 127.0.0.1:18080 uses a SCEP listener's port" same.log
cp conf.orig "$CONF"

finish
