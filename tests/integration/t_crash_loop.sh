#!/usr/bin/env bash
# The crash campaign in short (bench/crash.sh; docs/benchmarks.md "Crash and soak campaigns"):
# three SIGKILL-and-restart cycles under load over one store. After each restart every
# certificate a client received is in the store byte for byte, no serial appears twice, no
# one-time challenge cut off by the crash is burnt without its certificate, and the server
# issues again. Then the checker's own test: a certificate the store never had, planted among
# the received ones, must be reported lost (exit 1).
. "$(dirname "$0")/lib.sh"
need_cmd curl python3 mdb_dump timeout
cd "$T"
export TMPDIR=$T BUILD
CRASH=$SRC/bench/crash.sh

# field NAME FILE: a number of crash.sh's --json summary.
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$2"; }

rc=0
timeout 300 "$CRASH" --cycles 3 --run-min 0.5 --run-max 1.5 --json crash.json --csv crash.csv \
  >crash.out 2>crash.err || rc=$?
cat crash.out >&2
grep '^crash: ' crash.err >&2 || true
grep 'VIOLATION' crash.err >&2 || true
check "crash.sh --cycles 3 exits 0 (every cycle restarted, every check held)" test "$rc" -eq 0
check "three cycles ran" test "$(field cycles crash.json)" = 3
check "the csv has one row a cycle" test "$(wc -l < crash.csv)" -eq 4
check "clients received certificates across the crashes" test "$(field certificates_checked crash.json)" -gt 0
check "every received certificate is in the store (none lost)" test "$(field lost crash.json)" = 0
check "the store holds each of them byte for byte" test "$(field store_differs crash.json)" = 0
check "no serial appears twice (store)" test "$(field duplicate_serials_store crash.json)" = 0
check "no serial appears twice (received)" test "$(field duplicate_serials_received crash.json)" = 0
check "every received certificate verifies against the CA" test "$(field not_verifying crash.json)" = 0
check "one-time requests were cut off by the crashes" test "$(field onetime_cut crash.json)" -ge 3
check "no one-time challenge is consumed without its certificate" test "$(field onetime_burnt crash.json)" = 0
check "every cut one-time request got its certificate when repeated" \
  test "$(($(field onetime_replayed crash.json) + $(field onetime_issued crash.json)))" -eq "$(field onetime_cut crash.json)"
check "a challenge whose certificate arrived stays used after a crash (probed each cycle)" \
  test "$(field reuse_probes crash.json)" -ge 1
check "no violation" test "$(field violations crash.json)" = 0

# The checker finds a loss: one cycle, static load only, plus a self-signed certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=planted -days 1 \
  -keyout planted.key -out planted.pem 2>/dev/null
rc=0
timeout 120 "$CRASH" --cycles 1 --clients 1 --onetime 0 --rate 0 --plant planted.pem --json plant.json \
  >plant.out 2>plant.err || rc=$?
check "a planted certificate makes crash.sh fail (exit 1)" test "$rc" -eq 1
check "... reported lost, exactly once" test "$(field lost plant.json)" = 1
check "... and not verifying against the CA" test "$(field not_verifying plant.json)" = 1
check "... its serial named in the violation" \
  grep -q "lost-certificate.*serial $(openssl x509 -in planted.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f' | sed 's/^0*//')" plant.err

finish
