#!/usr/bin/env bash
# make test-mutants: builds scepd once per mutant of mutants.list (build-mutant-<name>/, with
# -DSCEPD_MUTANT_<NAME>), runs the suite against each and prints a table of which tests kill
# it. A mutant is killed when a test fails that passes on the unmutated build (run first, in
# build-mutant-none/). Exit 0 only if every mutant is killed.
#   tests/mutants/run.sh [NAME...]      default: every mutant of the list
# Environment:
#   MUTANT_LABELS   ctest labels to run (default 'unit|integration')
#   MUTANT_TESTS    optional ctest -R regex narrowing the tests
#   MUTANT_JOBS     ctest and build parallelism (default 2)
#   MUTANT_BASELINE build directory of the unmutated reference to reuse (default: build and
#                   run build-mutant-none/); "skip" trusts that every test passes unmutated
#   MUTANT_REPORT   also write the Markdown table to this file
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LIST=$ROOT/tests/mutants/mutants.list
LABELS=${MUTANT_LABELS:-unit|integration}
JOBS=${MUTANT_JOBS:-2}
cd "$ROOT"

all=$(awk '!/^#/ && NF { print $1 }' "$LIST")
names=${*:-$all}
for n in $names; do
  grep -qx "$n" <<<"$all" || { echo "unknown mutant '$n' (see $LIST)" >&2; exit 1; }
done

# build_and_test DIR CFLAGS: prints the failing tests (one per line), or BUILD-FAILED.
build_and_test() {
  local dir=$1 flags=$2
  if ! { cmake -S . -B "$dir" -DCMAKE_C_FLAGS="$flags" >/dev/null &&
         cmake --build "$dir" -j "$JOBS" >"$dir/mutant-build.log" 2>&1; }; then
    echo BUILD-FAILED
    return
  fi
  rm -f "$dir/Testing/Temporary/LastTestsFailed.log"
  (cd "$dir" && ctest -j "$JOBS" --timeout 600 -L "$LABELS" ${MUTANT_TESTS:+-R "$MUTANT_TESTS"} \
     >mutant-ctest.log 2>&1)
  [ -f "$dir/Testing/Temporary/LastTestsFailed.log" ] &&
    cut -d: -f2- "$dir/Testing/Temporary/LastTestsFailed.log" | sort
}

base_fail=""
case ${MUTANT_BASELINE:-} in
  skip) ;;
  "")  echo "== unmutated reference (build-mutant-none)" >&2
       base_fail=$(build_and_test build-mutant-none "") ;;
  *)   echo "== unmutated reference (reusing $MUTANT_BASELINE)" >&2
       rm -f "$MUTANT_BASELINE/Testing/Temporary/LastTestsFailed.log"
       (cd "$MUTANT_BASELINE" && ctest -j "$JOBS" --timeout 600 -L "$LABELS" \
          ${MUTANT_TESTS:+-R "$MUTANT_TESTS"} >/dev/null 2>&1)
       f=$MUTANT_BASELINE/Testing/Temporary/LastTestsFailed.log
       [ -f "$f" ] && base_fail=$(cut -d: -f2- "$f" | sort) ;;
esac
if [ "$base_fail" = BUILD-FAILED ]; then echo "the unmutated build fails" >&2; exit 1; fi
[ -z "$base_fail" ] || echo "failing unmutated (not counted as kills): $(echo $base_fail)" >&2

table="| mutant | killed | failing tests |"$'\n'"|---|---|---|"
survivors=0
for n in $names; do
  lower=$(tr 'A-Z_' 'a-z-' <<<"$n")
  echo "== $n (build-mutant-$lower)" >&2
  failed=$(build_and_test "build-mutant-$lower" "-DSCEPD_MUTANT_$n")
  if [ "$failed" = BUILD-FAILED ]; then
    killed="build failed (see build-mutant-$lower/mutant-build.log)"; tests=""; survivors=$((survivors + 1))
  else
    tests=$(comm -23 <(echo "$failed" | sed '/^$/d') <(echo "$base_fail" | sed '/^$/d') | paste -sd' ')
    if [ -n "$tests" ]; then killed=yes; else killed=NO; survivors=$((survivors + 1)); fi
  fi
  row="| $n | $killed | ${tests:--} |"
  echo "$row" >&2
  table+=$'\n'"$row"
done
echo "$table"
[ -z "${MUTANT_REPORT:-}" ] || echo "$table" >"$MUTANT_REPORT"
[ "$survivors" -eq 0 ]
