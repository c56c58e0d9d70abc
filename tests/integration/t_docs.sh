#!/usr/bin/env bash
# docs/events.md lists every audit event ID and every diagnostic code the code can emit.
set -euo pipefail
SRC=${SCEPD_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
doc=$SRC/docs/events.md
missing=0; n=0
for id in $(sed -n 's/^ *X([A-Z_]*, *\([0-9]*\),.*/\1/p' "$SRC/engine/common/audit.h"); do
  n=$((n + 1)); grep -q "^| $id |" "$doc" || { echo "events.md misses event $id"; missing=$((missing + 1)); }
done
for d in $(sed -n 's/^ *X([A-Z_]*, *[A-Z]*, *"\([a-z_]*\)".*/\1/p' "$SRC/engine/scep/reject.h"); do
  [ "$d" = ok ] && continue
  n=$((n + 1)); grep -q "\`$d\`" "$doc" || { echo "events.md misses diagnostic $d"; missing=$((missing + 1)); }
done
echo "$((n - missing)) passed, $missing failed"
[ "$missing" -eq 0 ] && [ "$n" -gt 20 ]
