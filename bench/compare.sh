#!/usr/bin/env bash
# Before/after comparison in one run (issue 13; docs/benchmarks.md "Performance: toward the
# crypto floor"): a baseline commit against the current tree, on the same machine, legs
# alternated so that drift of a shared machine falls on both sides alike.
#
#   bench/compare.sh [--full] [--pairs N] [--keys file,pkcs11] [--no-perf] [--keep]
# Builds BASE (default 43e256a, the commit issue 13 measured) in its own git worktree under
#   /tmp (reused when it is already built) and the current tree in $CUR_BUILD, both with
#   CMAKE_BUILD_TYPE=$BUILD_TYPE (default Release); only scepd/scepctl differ between the
#   sides: bench/ceiling and scep-loadgen are the current tree's for both.
# Then N pairs (default 3 quick, 2 full). In each pair, for each key kind: bench/ceiling on
#   each side's state (the floor: CPU ms of one RA decrypt + two signs), then every
#   concurrency point once on each side, the order A B in odd pairs and B A in even pairs
#   (ABBA: a linear drift cancels). A leg = a fresh scepd + scep-loadgen (closed loop, POST,
#   AES-128, SHA-256, RSA-2048 device keys, PKCSReq only) and the server's user+system CPU
#   time from /proc/PID/stat over the timed phase.
#   quick: concurrency 16, 6 s + 2 s warm-up (as `make bench`);
#   --full: concurrency 1 4 16 64 256, 10 s + 3 s each (as `make bench FULL=1`).
# Prints one line per leg, then a table of medians over the pairs: server CPU ms/enrollment
#   (the robust figure on a shared machine), its paired change B/A (median of the per-pair
#   ratios), enrollments/s, the ratio to the floor and % of the ceiling.
# Unless --no-perf: one more leg per side (file keys, concurrency 16) with scepd under
#   `perf record -e cpu-clock -F 499 --call-graph dwarf,16384` (libcrypto has no frame
#   pointers), reduced to shares by shared object, the top symbols (self time) and the top
#   named functions inclusive. Those legs' figures are not counted.
# Environment: BASE (commit), BASE_BUILD (use this build directory as side A instead of
#   building BASE), CUR_BUILD (default $SRC/build-compare), CUR_CMAKE_ARGS / BASE_CMAKE_ARGS
#   (extra cmake arguments, e.g. -DSCEPD_ALLOCATOR=jemalloc), BUILD_TYPE, JOBS (default 2),
#   CONC / DURATION / WARMUP (override the concurrency list and times), KEY_CACHE (the
#   loadgen's device keys, default /tmp/scepd-compare-keys: kept between runs, RSA-2048 keys
#   are slow to make).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$SRC/bench/lib.sh"
BASE=${BASE:-43e256a}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-2}
CUR_BUILD=${CUR_BUILD:-$SRC/build-compare}
FULL=0 PAIRS="" KEYLIST=file,pkcs11 PERF=1 KEEP=0
usage() { sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --full) FULL=1 ;;
    --pairs) PAIRS=${2:?}; shift ;;
    --keys) KEYLIST=${2:?}; shift ;;
    --no-perf) PERF=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage ;;
    *) echo "compare: unknown argument $1" >&2; usage ;;
  esac
  shift
done
if [ $FULL = 1 ]; then
  CONC=${CONC:-1 4 16 64 256} DURATION=${DURATION:-10} WARMUP=${WARMUP:-3} PAIRS=${PAIRS:-2}
else
  CONC=${CONC:-16} DURATION=${DURATION:-6} WARMUP=${WARMUP:-2} PAIRS=${PAIRS:-3}
fi
[ $PERF = 1 ] && ! command -v perf >/dev/null &&
  { echo "compare: perf not found (apt-get install linux-perf)" >&2; exit 2; }

log() { echo "compare: $*" >&2; }

# build DIR SRCDIR EXTRA_ARGS TARGETS...: a quiet cmake configure + build of the targets.
build() {
  local dir=$1 src=$2 extra=$3
  shift 3
  # shellcheck disable=SC2086
  mkdir -p "$dir"
  cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" $extra >"$dir/compare-cmake.log" 2>&1 ||
    { tail -n 30 "$dir/compare-cmake.log" >&2; exit 1; }
  cmake --build "$dir" -j"$JOBS" --target "$@" >"$dir/compare-build.log" 2>&1 ||
    { tail -n 30 "$dir/compare-build.log" >&2; exit 1; }
}

BASE_SHA=$(git -C "$SRC" rev-parse --short "$BASE^{commit}")
KEY_CACHE=${KEY_CACHE:-/tmp/scepd-compare-keys}
if [ -z "${BASE_BUILD:-}" ]; then
  BASE_TREE=/tmp/scepd-compare-$BASE_SHA
  if [ ! -d "$BASE_TREE" ]; then
    git -C "$SRC" worktree add --detach "$BASE_TREE" "$BASE_SHA" >/dev/null 2>&1 ||
      { log "cannot create a worktree of $BASE_SHA at $BASE_TREE"; exit 1; }
  fi
  BASE_BUILD=$BASE_TREE/build-$BUILD_TYPE
  log "building $BASE_SHA in $BASE_BUILD"
  mkdir -p "$BASE_BUILD"
  build "$BASE_BUILD" "$BASE_TREE" "${BASE_CMAKE_ARGS:-}" scepd scepctl
  BASE_SRC=$BASE_TREE
else
  BASE_SRC=$(cd "$BASE_BUILD" && sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' CMakeCache.txt)
  BASE_SRC=${BASE_SRC:-$SRC}
  BASE_SHA="build $BASE_BUILD"
fi
log "building the current tree in $CUR_BUILD"
mkdir -p "$CUR_BUILD"
# The tree's own malloc unless CUR_CMAKE_ARGS names one (a build directory keeps the value it
# was first configured with: glibc in one made before tcmalloc became the default).
case "${CUR_CMAKE_ARGS:-}" in *SCEPD_ALLOCATOR*) CUR_ALLOC="" ;; *) CUR_ALLOC="-DSCEPD_ALLOCATOR=default" ;; esac
build "$CUR_BUILD" "$SRC" "${CUR_CMAKE_ARGS:-} $CUR_ALLOC" scepd scepctl ceiling scep-loadgen
CEILING=$CUR_BUILD/ceiling LOADGEN=$CUR_BUILD/scep-loadgen

T=$(mktemp -d /tmp/scepd-compare.XXXXXX)
SERVER_PID="" PERF_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$PERF_PID" INT
  stop_pid "$SERVER_PID"
  if [ $KEEP = 1 ]; then log "kept $T"; else rm -rf "$T"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

side_build() { [ "$1" = A ] && echo "$BASE_BUILD" || echo "$CUR_BUILD"; }
side_src() { [ "$1" = A ] && echo "$BASE_SRC" || echo "$SRC"; }
CHALLENGE=$(openssl rand -hex 12)
KEYS_LIST=${KEYLIST//,/ }
for side in A B; do
  for k in $KEYS_LIST; do
    LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$(side_build $side)" KEYS=$k CA_KEY=rsa:2048 \
      CHALLENGE=$CHALLENGE "$(side_src $side)/scripts/init-state.sh" "$T/$side-$k" \
      >"$T/init-$side-$k.log" 2>&1 || { cat "$T/init-$side-$k.log" >&2; exit 1; }
    # Trees since 696a13b bound their queue (queue_max); 43e256a has none and refuses the
    # key. Raised on every side that knows it, so that both answer every request (a baseline
    # with the bound and without this had no timed phase at c = 256).
    if grep -rqs --include='*.c' '"queue_max"' "$(side_src $side)/engine" "$(side_src $side)/src"; then
      room_for_all "$T/$side-$k/scepd.conf"
    fi
  done
done
mkdir -p "$KEY_CACHE"

jnum() { grep -o "\"$1\":[0-9.eE+-]*" "$2" | head -n1 | cut -d: -f2; }

# floor_of SIDE KEYS: sets FL to "floor_ms ceiling_per_s" (current bench/ceiling on the current
# side's state for both sides: the keys are the same kinds and the older configuration may not
# parse; run just before each leg, so each leg has the floor of its own moment). Not run in a
# subshell: an exit here must reach the cleanup trap.
# bench/ceiling). Not run in a subshell: an exit here must reach the cleanup trap.
floor_of() {
  local j=$T/ceil-$1-$2.json
  "$CEILING" -c "$T/B-$2/scepd.conf" --seconds 1 --json "$j" >"$T/ceil.log" 2>&1 ||
    { cat "$T/ceil.log" >&2; exit 1; }
  if [ "$2" = pkcs11 ]; then
    FL="$(jnum hsm_floor_cpu_ms_per_enrollment "$j") $(jnum hsm_ceiling_enrollments_per_s "$j")"
  else
    FL="$(jnum sw_floor_cpu_ms_per_enrollment "$j") $(jnum sw_ceiling_enrollments_per_s "$j")"
  fi
}

# leg SIDE KEYS CONC TAG: one fresh scepd under load; sets R to "cpu_ms eps errors p50 p99".
leg() {
  local side=$1 k=$2 c=$3 tag=$4 st=$T/$1-$2
  rm -f "$T/port" "$T/aport"
  local bin ap=()
  bin="$(side_build "$side")/scepd"
  # A side that writes its admin port (and so may have the private-key CPU counters).
  case "$("$bin" 2>&1 || true)" in *--admin-port-file*) ap=(--admin-port-file "$T/aport") ;; esac
  "$bin" -c "$st/scepd.conf" --port-file "$T/port" "${ap[@]}" >"$T/scepd-$side.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do [ -s "$T/port" ] && break; kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
  [ -s "$T/port" ] || { log "scepd ($side) did not start"; tail -n 20 "$T/scepd-$side.log" >&2; exit 1; }
  # The private-key CPU counters (keyclock.h): a side without them reports "-".
  local mu=""
  [ -s "$T/aport" ] && mu="http://127.0.0.1:$(cat "$T/aport")/metrics"
  if [ "$tag" = perf ]; then
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" -o "$T/perf-$side.data" \
      >"$T/perf-$side.log" 2>&1 &
    PERF_PID=$!
  fi
  "$LOADGEN" --url "http://127.0.0.1:$(cat "$T/port")/scep" --challenge "$CHALLENGE" \
    --concurrency "$c" --duration "$DURATION" --warmup "$WARMUP" --method post --cipher aes128 \
    --md sha256 --key-type rsa:2048 --quiet --key-cache "$KEY_CACHE" --server-pid "$SERVER_PID" \
    ${mu:+--metrics-url "$mu"} --json "$T/lg.json" >"$T/lg.out" 2>&1 || true
  if [ -n "$PERF_PID" ]; then stop_pid "$PERF_PID" INT; PERF_PID=""; fi
  stop_pid "$SERVER_PID"; SERVER_PID=""
  [ -s "$T/lg.json" ] || { log "scep-loadgen failed ($side $k c=$c):"; tail -n 20 "$T/lg.out" >&2; exit 1; }
  R="$(jnum server_cpu_ms_per_enrollment "$T/lg.json") $(jnum enrollments_per_s "$T/lg.json")"
  R="$R $(jnum errors "$T/lg.json") $(jnum p50_ms "$T/lg.json") $(jnum p99_ms "$T/lg.json")"
  INSITU=$(jnum server_cpu_over_keyop "$T/lg.json"); INSITU=${INSITU:--}
  rm -f "$T/lg.json"
}

log "A = $BASE_SHA ($BASE_BUILD), B = current tree ($(git -C "$SRC" rev-parse --short HEAD)$(git -C "$SRC" diff --quiet HEAD -- engine hsm || echo '+dirty'), $CUR_BUILD)"
log "keys: $KEYS_LIST; concurrency: $CONC; ${DURATION}s + ${WARMUP}s warm-up; $PAIRS pairs; load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$T/legs"
for p in $(seq 1 "$PAIRS"); do
  order="A B"; [ $((p % 2)) = 0 ] && order="B A"
  for k in $KEYS_LIST; do
    declare -A FLOOR=()
    for side in $order; do floor_of "$side" "$k"; FLOOR[$side]=$FL; done
    for c in $CONC; do
      for side in $order; do
        leg "$side" "$k" "$c" plain
        r=$R
        # No timed phase (e.g. every request refused with 503 by admission control): reported,
        # left out of the table.
        case $r in [0-9]*) ;; *) log "pair $p $k c=$c $side: no timed phase, not counted:"
                                 sed -n '3p;7,9p' "$T/lg.out" >&2; continue ;; esac
        echo "$p $k $c $side $r ${FLOOR[$side]} $INSITU" >>"$T/legs"
        awk -v p="$p" -v k="$k" -v c="$c" -v s="$side" -v r="$r ${FLOOR[$side]}" -v i="$INSITU" 'BEGIN {
          split(r, v, " "); printf "pair %d %-6s c=%-3d %s: %.3f ms CPU/enr, floor %.3f, ratio %.2f, in-situ %s, %.1f enr/s, errors %d\n",
            p, k, c, s, v[1], v[6], v[1] / v[6], i, v[2], v[3] }' >&2
      done
    done
  done
done

echo "A = $BASE_SHA, B = current tree; host $(hostname), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ); medians of $PAIRS pairs"
echo "CPU ms/enr: server user+system CPU per verified enrollment (the robust figure on a shared machine)"
echo "B/A: median of the per-pair ratios of CPU ms/enr; ratio: CPU ms/enr / floor (same leg's state)"
echo "in-situ: the side's CPU / the CPU its workers spent inside the private-key operations (same seconds)"
echo
# fields of $T/legs: pair keys conc side cpu eps errors p50 p99 floor ceiling insitu
awk '
  function med(s,   n, a, i, j, t) { n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  { key = $2 " " $3; if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
    cpu[key, $4] = cpu[key, $4] " " $5; eps[key, $4] = eps[key, $4] " " $6
    rat[key, $4] = rat[key, $4] " " ($5 / $10); pct[key, $4] = pct[key, $4] " " (100 * $6 / $11)
    if ($12 != "-") ins[key, $4] = ins[key, $4] " " $12
    err[key, $4] += $7; p99[key, $4] = p99[key, $4] " " $9; c1[key, $1, $4] = $5; pairs[key] = pairs[key] " " $1 }
  END {
    printf "%-7s %5s | %9s %9s %7s | %8s %8s | %6s %6s | %7s %7s | %7s %7s | %s | %s\n", "keys", "conc",
      "CPU A", "CPU B", "B/A", "enr/s A", "enr/s B", "rat A", "rat B", "%ceil A", "%ceil B", "p99 A", "p99 B", "errors A/B", "in-situ A/B"
    for (i = 1; i <= nk; i++) { key = order[i]; split(key, kc, " "); d = ""
      n = split(pairs[key], pp, " "); delete done
      for (j = 1; j <= n; j++) if (!(pp[j] in done)) { done[pp[j]] = 1
        if ((key SUBSEP pp[j] SUBSEP "A") in c1 && (key SUBSEP pp[j] SUBSEP "B") in c1)
          d = d " " (c1[key, pp[j], "B"] / c1[key, pp[j], "A"]) }
      printf "%-7s %5d | %9.3f %9.3f %6.1f%% | %8.1f %8.1f | %6.2f %6.2f | %6.1f%% %6.1f%% | %7.1f %7.1f | %d/%d | %s\n",
        kc[1], kc[2], med(cpu[key, "A"]), med(cpu[key, "B"]), 100 * (med(d) - 1),
        med(eps[key, "A"]), med(eps[key, "B"]), med(rat[key, "A"]), med(rat[key, "B"]),
        med(pct[key, "A"]), med(pct[key, "B"]), med(p99[key, "A"]), med(p99[key, "B"]),
        err[key, "A"], err[key, "B"],
        (((key, "A") in ins) ? sprintf("%.3f", med(ins[key, "A"])) : "-") "/" (((key, "B") in ins) ? sprintf("%.3f", med(ins[key, "B"])) : "-") } }' "$T/legs"

# reduce_perf FILE: shares by shared object, then the top symbols (self time); addresses
# without a name (libcrypto's internal functions: Debian strips them) are summed per object.
reduce_perf() {
  echo "--- by shared object (self, % of scepd samples)"
  perf report -i "$1" --no-children -g none --sort dso --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ && n++ < 8'
  echo "--- top symbols (self; unnamed addresses summed per object)"
  perf report -i "$1" --no-children -g none --sort dso,sym --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ { pct = $1; sub(/%/, "", pct); dso = $2
           if ($4 ~ /^0x/) { unnamed[dso] += pct; next }
           if (n++ < 20) printf "  %6.2f%%  %-22s %s\n", pct, dso, $4 }
         END { for (d in unnamed) if (unnamed[d] >= 0.1)
                 printf "  %6.2f%%  %-22s (unnamed internal functions, all together)\n", unnamed[d], d }'
  echo "--- top named functions, inclusive (time on the stack below them; DWARF stacks)"
  perf report -i "$1" --children -g none --sort sym --stdio 2>/dev/null |
    awk '/^ +[0-9.]+%/ && $4 !~ /^0x/ && $4 !~ /^(clone3|start_thread|worker_main|run_job)$/ && n++ < 28 {
           printf "  %6.2f%%  %s\n", $1, $4 }'
}

if [ $PERF = 1 ]; then
  for side in A B; do leg "$side" file 16 perf; done
  for side in A B; do
    echo
    echo "=== side $side ($([ $side = A ] && echo "$BASE_SHA" || echo current)), file keys, concurrency 16, perf -e cpu-clock"
    reduce_perf "$T/perf-$side.data"
  done
fi
errs=$(awk '{ e += $7 } END { print e + 0 }' "$T/legs")
[ "$errs" = 0 ] || { log "$errs failed enrollments in the timed phases"; exit 1; }
