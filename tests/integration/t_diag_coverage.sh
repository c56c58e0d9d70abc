#!/usr/bin/env bash
# Every diagnostic of the rejection table (engine/scep/reject.h, except ok) is asserted by a
# test: as the third argument of expect_refusal / expect_failure / expect_http_refusal (or of
# the scripts' wrappers refused / sc_refused, which pass it on) in tests/integration/*.sh,
# or on a line with EXPECT_REFUSAL in tests/unit/enroll/test_enroll.c (the refusals that
# cannot be produced from outside). Prints the uncovered diagnostics and fails if any is left.
set -euo pipefail
SRC=${SCEPD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
unit=$SRC/tests/unit/enroll/test_enroll.c
covered=$(
  {
    # expect_refusal TXID EVENT DIAG ... / expect_failure NAME EVENT DIAG ...: the word after
    # the event ID; expect_http_refusal PORT STATUS DIAG: the word after the status;
    # refused NAME DIAG ... (t_profiles, t_challenges) and sc_refused NAME EVENT DIAG ...
    cat "$SRC"/tests/integration/t_*.sh \
      | grep -oE '(expect_refusal|expect_failure|expect_http_refusal|sc_refused)( +("[^"]*"|[^ ]+)){2} +[a-z_]+|(^|[ ;])refused +[^ ]+ +[a-z_]+' \
      | awk '{ print $NF }'
    if [ -f "$unit" ]; then
      grep 'EXPECT_REFUSAL' "$unit" | grep -oE '"[a-z_]+"' | tr -d '"'
    fi
  } | sort -u
)
n=0; missing=0; list=""
for d in $(sed -n 's/^ *X([A-Z_]*, *[A-Z]*, *"\([a-z_]*\)".*/\1/p' "$SRC/engine/scep/reject.h"); do
  [ "$d" = ok ] && continue
  n=$((n + 1))
  if grep -qx -- "$d" <<<"$covered"; then
    echo "ok   - $d"
  else
    missing=$((missing + 1)); list="$list $d"
    echo "FAIL - $d: no test asserts it (expect_refusal/expect_failure or EXPECT_REFUSAL)"
  fi
done
[ -f "$unit" ] || echo "note: $unit does not exist yet"
[ "$missing" -eq 0 ] || echo "uncovered:$list"
echo "$((n - missing)) passed, $missing failed"
[ "$missing" -eq 0 ] && [ "$n" -gt 40 ]
