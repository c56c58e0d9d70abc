#!/usr/bin/env bash
# SIGHUP (docs/operations.md "Reload"): profiles and static challenges are replaced at once
# for the requests that follow (event 102); a profile that does not parse, or a change to a
# key that needs a restart, is refused with the reason (event 103) and the running set
# stays; the audit log is reopened by its path, so a log moved away (logrotate) is created
# again and receives the next events. Every wait is a bounded poll of the audit log.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl promtool

init_state
P=$STATE/profiles
printf 'challenge = static\nchallenge_password_file = rl-challenge\nvalidity_days = 30\nallow_shorter = no\n' \
  > "$P/rl.conf"
echo one > "$P/rl-challenge"
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT"

# req NAME URL CHALLENGE ARGS...: scep_req enroll, output in $T/NAME.out.
req() {
  local n=$1 u=$2 c=$3; shift 3
  "$REQ" enroll --url "$u" --challenge "$c" --cn "$n" --cert-out "$T/$n.pem" "$@" \
    > "$T/$n.out" 2>"$T/$n.err" || true
}
ok_cert() { grep -q "status=SUCCESS failinfo=- " "$T/$1.out" && verify_cert "$T/$1.pem" || { log "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")"; return 1; }; }
days_left() { echo $(( ($(date -d "$(openssl x509 -in "$T/$1.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 )); }
days_about() { local d; d=$(days_left "$1"); [ "$d" -ge $(($2 - 1)) ] && [ "$d" -le "$2" ] || { log "  got $d days"; return 1; }; }
# hup EVENT: SIGHUP, then waits (bounded) for the reload's event 102 or 103 after the
# current end of the audit log (the one at $STATE/audit.log once the signal is handled);
# its line in $T/hup.line.
hup() {
  local mark
  mark=$( [ -f "$STATE/audit.log" ] && wc -l < "$STATE/audit.log" || echo 0)
  [ -f "$STATE/audit.log" ] || mark=0
  kill -HUP "$SCEPD_PID"
  for _ in $(seq 1 200); do
    if [ -f "$STATE/audit.log" ] &&
       tail -n +"$((mark + 1))" "$STATE/audit.log" | grep -E '"event":10[23],' > "$T/hup.line"; then
      break
    fi
    sleep 0.05
  done
  grep -q "\"event\":$1," "$T/hup.line" 2>/dev/null || { log "  want event $1 after HUP; got: $(cat "$T/hup.line" 2>/dev/null)"; return 1; }
}
detail_has() { grep -qF -- "$1" "$T/hup.line" || { log "  detail lacks '$1': $(cat "$T/hup.line")"; return 1; }; }
alive() { kill -0 "$SCEPD_PID" && curl -fsS "$B/healthz" >/dev/null; }

# --- before: the profile as started ---
req a1 "$B/scep/rl" one
check "before reload: /scep/rl with its challenge: SUCCESS" ok_cert a1
check "before reload: validity 30 days" days_about a1 30
check "before reload: /scep/fresh is not a profile (404)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$B/scep/fresh?operation=GetCACaps")" = 404

# --- a new profile set and new static challenges ---
printf 'challenge = static\nchallenge_password_file = rl-challenge\nvalidity_days = 60\nallow_shorter = no\nkey_types = ec\n' \
  > "$P/rl.conf"
echo two > "$P/rl-challenge"
echo sesame2 > "$STATE/challenge"
printf 'challenge = static\nvalidity_days = 10\n' > "$P/fresh.conf"
check "SIGHUP: event 102 CONFIG_RELOADED" hup 102
check "event 102 names the profiles now served" detail_has "fresh, legacy"
req b-old "$B/scep/rl" one --key-type ec:P-256
check "after reload: the old profile challenge is refused (bad_challenge)" \
  expect_failure b-old 2000 bad_challenge badRequest
req b-rsa "$B/scep/rl" two
check "after reload: an RSA key under the now EC-only profile is refused (key_not_allowed)" \
  expect_failure b-rsa 2000 key_not_allowed badAlg
req b-new "$B/scep/rl" two --key-type ec:P-256
check "after reload: the new challenge and an EC key: SUCCESS" ok_cert b-new
check "after reload: the new validity, 60 days" days_about b-new 60
req d-old "$B/scep" sesame
check "after reload: the old [issue] challenge (state dir file) is refused on /scep" \
  expect_failure d-old 2000 bad_challenge badRequest
req d-new "$B/scep" sesame2
check "after reload: the new [issue] challenge: SUCCESS on /scep" ok_cert d-new
req f1 "$B/scep/fresh" sesame2
check "after reload: the new profile is served at /scep/fresh" ok_cert f1
check "after reload: /scep/fresh has its validity, 10 days" days_about f1 10
# The metrics follow the live profile set: the profile the reload added is counted under its
# own label, not "other" (profile=""), and the scrape still passes promtool.
curl -fsS "$ADMIN_URL/metrics" > "$T/m-reload.txt"
mval() { awk -v k="$1" '$1 == k { print $2 }' "$T/m-reload.txt"; }
check "after reload: metrics count the added profile under its name" \
  test "$(mval 'scepd_enrollments_total{profile="fresh",outcome="issued"}')" = 1
check "after reload: nothing counted as the unknown profile" \
  test -z "$(mval 'scepd_enrollments_total{profile="",outcome="issued"}')"
check "after reload: the scrape passes promtool check metrics" promtool check metrics < "$T/m-reload.txt"

# --- a profile that does not parse: everything kept ---
printf 'validity_days = 60\nfrobnicate = yes\n' > "$P/broken.conf"
echo three > "$P/rl-challenge"
check "SIGHUP with a broken profile: event 103 CONFIG_RELOAD_FAILED" hup 103
check "event 103 names the file and the line" detail_has "broken.conf:2"
check "event 103 says the running set is kept" detail_has "are kept"
req c-keep "$B/scep/rl" two --key-type ec:P-256
check "broken reload: the running challenge still works (the new one was not taken)" ok_cert c-keep
check "broken reload: the running validity, 60 days" days_about c-keep 60
req c-three "$B/scep/rl" three --key-type ec:P-256
check "broken reload: the challenge of the refused set is refused" \
  expect_failure c-three 2000 bad_challenge badRequest
rm -f "$P/broken.conf"

# --- logrotate: the log moved away, then HUP ---
mv "$STATE/audit.log" "$STATE/audit.log.1"
check "after mv + SIGHUP: a new audit.log with the reload's event 102" hup 102
check "the moved log did not receive that event" \
  bash -c '! grep -qF -- "$(cat "$1")" "$2"' _ "$T/hup.line" "$STATE/audit.log.1"
req g1 "$B/scep/rl" three --key-type ec:P-256
check "after the reopen: enrollment under the reloaded challenge: SUCCESS" ok_cert g1
check_audit "after the reopen: its ISSUED event is in the new audit.log" expect_event g1 1000
check_audit "the moved log kept the earlier events" grep -q '"event":102,' "$STATE/audit.log.1"

# --- keys that need a restart: refused, nothing applied, the server unchanged ---
cp "$CONF" "$T/scepd.conf.orig"
sed -i -e 's/^listen = .*/listen = 127.0.0.1:1/' -e 's/^token_label = .*/token_label = other/' "$CONF"
printf 'challenge = static\nchallenge_password_file = rl-challenge\nvalidity_days = 90\n' > "$P/rl.conf"
check "SIGHUP after a listen/token_label change: event 103" hup 103
check "event 103 names [server] listen and [keys] token_label" \
  detail_has "changed keys need a restart: [server] listen, [keys] token_label"
check "event 103 says nothing was reloaded" detail_has "nothing was reloaded"
check "the server still answers on the port it was started with" alive
req h1 "$B/scep/rl" three --key-type ec:P-256
check "restart-only refusal: enrollment works" ok_cert h1
check "restart-only refusal: the profile change beside it was not applied (60 days, not 90)" \
  days_about h1 60
cp "$T/scepd.conf.orig" "$CONF"
check "SIGHUP with the keys put back: event 102" hup 102
req h2 "$B/scep/rl" three --key-type ec:P-256
check "then the profile change applies (90 days)" days_about h2 90

# --- reloads while requests run: each request finishes under one set, none fails ---
( for i in $(seq 1 12); do req "k$i" "$B/scep/rl" three --key-type ec:P-256; done ) &
bg=$!
for i in $(seq 1 8); do check "SIGHUP $i of 8 while requests run: event 102" hup 102; done
wait "$bg"
check "every request sent across the 8 reloads: SUCCESS" \
  bash -c 'for i in $(seq 1 12); do grep -q "status=SUCCESS failinfo=- " "$1/k$i.out" || exit 1; done' _ "$T"

# --- a profile removed by a reload keeps its (frozen) series until a restart ---
rm -f "$P/fresh.conf"
check "SIGHUP with /scep/fresh removed: event 102" hup 102
check "the removed profile is no longer served (404)" \
  test "$(curl -s -o /dev/null -w '%{http_code}' "$B/scep/fresh?operation=GetCACaps")" = 404
curl -fsS "$ADMIN_URL/metrics" > "$T/m-reload.txt"
check "the removed profile's counter stays in the scrape" \
  test "$(mval 'scepd_enrollments_total{profile="fresh",outcome="issued"}')" = 1

# --- a configuration file that does not parse ---
echo 'bogus line' >> "$CONF"
check "SIGHUP with a scepd.conf that does not parse: event 103" hup 103
check "event 103 names the configuration file" detail_has "scepd.conf: line"
check "the server keeps running" alive
cp "$T/scepd.conf.orig" "$CONF"

finish
