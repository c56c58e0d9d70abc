#!/usr/bin/env bash
# /metrics on the admin listener: `promtool check metrics` accepts a scrape taken after some
# enrollments, and the values move as the enrollments did: issued == enrollments done, one
# replay, one refusal by its diagnostic, PKIOperation requests by status, queue-wait and
# phase histograms counted, HSM operations, store batches, open connections, build info.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl promtool

init_state
start_scepd
cd "$T"
scrape() { curl -fsS -o "$1" "$ADMIN_URL/metrics"; }
# val FILE SERIES: the value of the series named exactly (name and labels as rendered).
val() { awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "absent" }' "$1"; }

scrape m0.txt
check "scrape before any enrollment: promtool check metrics" promtool check metrics < m0.txt
check "before: nothing issued under default" \
  test "$(val m0.txt 'scepd_enrollments_total{profile="default",outcome="issued"}')" = 0

N=3
for i in $(seq 1 $N); do
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "m-$i" --key "m-$i.key" \
    --cert-out "m-$i.pem" > "m-$i.out" 2>&1
done
check "$N enrollments: SUCCESS" sh -c "grep -l status=SUCCESS m-*.out | wc -l | grep -qx $N"
# The same transaction again: answered from the store (a replay).
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn m-1 --key m-1.key \
  --txid "$(txid_of "$T/m-1.out")" --cert-out m-1b.pem > m-1b.out 2>&1
check "the repeated transaction: SUCCESS" grep -q status=SUCCESS m-1b.out
"$REQ" enroll --url "$URL" --challenge wrong --cn m-bad > bad.out 2>&1 || true
check "a wrong challenge: FAILURE" grep -q status=FAILURE bad.out

scrape m1.txt
check "scrape after enrollments: promtool check metrics" promtool check metrics < m1.txt
check "issued == enrollments done ($N)" \
  test "$(val m1.txt 'scepd_enrollments_total{profile="default",outcome="issued"}')" = $N
check "one replay" test "$(val m1.txt 'scepd_enrollments_total{profile="default",outcome="replayed"}')" = 1
check "one refusal" test "$(val m1.txt 'scepd_enrollments_total{profile="default",outcome="refused"}')" = 1
check "the refusal by its diagnostic (bad_challenge)" \
  test "$(val m1.txt 'scepd_enrollments_refused_total{profile="default",diag="bad_challenge"}')" = 1
check "PKIOperation answered 200: $((N + 2)) times" \
  test "$(val m1.txt 'scepd_http_requests_total{operation="PKIOperation",status="200"}')" = $((N + 2))
check "the request histogram counted them" \
  test "$(val m1.txt 'scepd_request_duration_seconds_count{operation="PKIOperation"}')" = $((N + 2))
check "queue wait observed for every job (>= $((N + 2)))" \
  test "$(val m1.txt scepd_queue_wait_seconds_count)" -ge $((N + 2))
check "envelope phase timed for every PKCSReq" \
  test "$(val m1.txt 'scepd_enroll_phase_seconds_count{phase="envelope"}')" -ge $((N + 1))
check "issue phase timed once per issued certificate" \
  test "$(val m1.txt 'scepd_enroll_phase_seconds_count{phase="issue"}')" = $N
# Each issued certificate costs an RA decryption, a CA signature and a CertRep signature.
check "HSM operations moved (>= 3 per issued certificate)" \
  test "$(val m1.txt scepd_hsm_operations_total)" -ge $((3 * N))
# The same three operations are counted by the workers, and one in 8 timed on their CPU clock
# (keyclock.h): each worker's first is one of them.
check "private-key operations counted (>= 3 per issued certificate)" \
  test "$(val m1.txt scepd_private_key_operations_total)" -ge $((3 * N))
check "some of them sampled (at least one in 8 of each worker's, not all)" \
  sh -c "s=\$(awk '\$1==\"scepd_private_key_sampled_operations_total\"{print \$2}' m1.txt); [ \"\$s\" -ge \$(( $(val m1.txt scepd_private_key_operations_total) / 8 )) ] && [ \"\$s\" -ge 1 ] && [ \"\$s\" -lt \"$(val m1.txt scepd_private_key_operations_total)\" ]"
check "their CPU time is counted (> 0 s)" \
  awk '$1 == "scepd_private_key_sampled_cpu_seconds_total" { found = 1; if ($2 > 0) ok = 1 } END { exit !(found && ok) }' m1.txt
check "store: every certificate went through a commit (batches counted, puts >= $N)" \
  sh -c "[ \"\$(awk '\$1==\"scepd_store_batch_size_sum\"{print \$2}' m1.txt)\" -ge $N ] && [ \"\$(awk '\$1==\"scepd_store_commit_seconds_count\"{print \$2}' m1.txt)\" -ge $N ]"
check "open connections per shard (2 shards)" \
  test "$(grep -c '^scepd_open_connections{shard=' m1.txt)" = 2
check "build info" grep -q '^scepd_build_info{.*} 1$' m1.txt
check "GetCACert counted by operation and status" \
  sh -c "curl -fsS -o /dev/null '$URL?operation=GetCACert' && curl -fsS -o m2.txt '$ADMIN_URL/metrics' && [ \"\$(awk '\$1==\"scepd_http_requests_total{operation=\\\"GetCACert\\\",status=\\\"200\\\"}\"{print \$2}' m2.txt)\" -ge 1 ]"
check "the scrapes themselves are counted" \
  test "$(val m2.txt 'scepd_http_requests_total{operation="metrics",status="200"}')" -ge 2
check "the CRL gauges once a CRL is published" \
  sh -c "for i in \$(seq 1 50); do curl -fsS -o m3.txt '$ADMIN_URL/metrics'; grep -q '^scepd_crl_bytes [1-9]' m3.txt && exit 0; sleep 0.1; done; exit 1"
check "the last scrape passes promtool too" promtool check metrics < m3.txt
finish
