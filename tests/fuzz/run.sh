#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build (make fuzz) for a time budget each, one after
# another, and prints one row per target: executions, edges covered (libFuzzer's "cov:"),
# corpus size, new corpus entries, findings. Not part of CI (make fuzz-run).
#
# The seed corpora in tests/fuzz/corpus/ are read, never written: new entries and findings
# (crash-*, leak-*, timeout-*, oom-*) go to a scratch folder, printed at the end. A finding
# worth keeping is copied into tests/fuzz/corpus/<target>/ by hand, so ctest replays it.
#
# usage: tests/fuzz/run.sh [target...]        (default: every tests/fuzz/fuzz_*.c)
# environment: FUZZ_BUILD   fuzz build folder        (default build-fuzz)
#              FUZZ_SECONDS budget per target         (default 300)
#              FUZZ_OUT     scratch folder            (default a new /tmp/scepd-fuzz.XXXXXX)
# Exit status: 0 when no target has a finding, 1 when one has, 2 on a usage error.
set -u

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-300}
OUT=${FUZZ_OUT:-$(mktemp -d /tmp/scepd-fuzz.XXXXXX)}

case $SECONDS_EACH in
    ''|*[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$SRC"/tests/fuzz/fuzz_*.c; do
        t=$(basename "$f" .c)
        targets+=("$t")
    done
fi
mkdir -p "$OUT" || exit 2
# fuzz_store keeps an LMDB environment in TMPDIR: memory-backed when there is one.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

rows=()
found=0
for t in "${targets[@]}"; do
    bin=$BUILD/tests/$t
    seeds=$SRC/tests/fuzz/corpus/$t
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "run.sh: $t: no binary $bin or no corpus $seeds (make fuzz first)" >&2
        rows+=("$t|-|-|-|-|missing")
        found=1
        continue
    fi
    dir=$OUT/$t
    mkdir -p "$dir/corpus"
    echo "== $t: ${SECONDS_EACH}s, log $dir/log" >&2
    # New entries go to the first (scratch) folder; the seeds are only read.
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=25 -rss_limit_mb=2048 \
           -artifact_prefix="$dir/" "$dir/corpus" "$seeds" >"$dir/log" 2>&1
    rc=$?
    # A target that aborts leaves its temporary store (fuzz_store, fuzz_ocsp) behind.
    rm -rf "${TMPDIR:-/tmp}/$t".??????
    # The last status line ("#N DONE cov: E ft: F corp: C/S ...", or the last progress line
    # before a crash) has the edges and the corpus; the final stats have the executions.
    last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    [ -n "$execs" ] || execs=$(printf '%s' "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    edges=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p')
    new=$(find "$dir/corpus" -type f | wc -l)
    findings=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
               -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    if [ "$findings" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; }; then
        found=1
        [ "$findings" -gt 0 ] || findings="exit $rc"
    fi
    rows+=("$t|${execs:-?}|${edges:-?}|${corp:-?}|$new|$findings")
done

printf '\n%-16s %12s %8s %8s %8s  %s\n' target executions edges corpus new findings
for r in "${rows[@]}"; do
    IFS='|' read -r t e c n w f <<<"$r"
    printf '%-16s %12s %8s %8s %8s  %s\n' "$t" "$e" "$c" "$n" "$w" "$f"
done
printf '\nscratch: %s (new corpus entries in <target>/corpus, findings beside them)\n' "$OUT"
exit $found
