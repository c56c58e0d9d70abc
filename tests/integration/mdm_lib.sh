# Helpers of the MDM integration tests (t_intune.sh, t_webhook.sh, t_ndes.sh), sourced after
# lib.sh: an emulator of tests/emulators/ as a child on 127.0.0.1 (kernel-chosen port), the
# stage's configuration file, and the calls the emulator recorded.
EMU_PIDS=""

# start_emulator NAME SCRIPT ARGS...: runs python3 tests/emulators/SCRIPT ARGS... (its calls
# in $T/NAME.calls), waits for its "PORT n" line (wait_port); sets EMU_PORT.
start_emulator() {
  local name=$1 script=$2
  shift 2
  : > "$T/$name.calls"
  # The port file exists before the child does: the child's own "> file" runs only once the
  # child is scheduled, and on a loaded machine the first read below came before it (sed on
  # a missing file: set -e ended the test at once, with no message of its own).
  : > "$T/$name.port"
  python3 "$SRC/tests/emulators/$script" --log "$T/$name.calls" "$@" >> "$T/$name.port" 2>"$T/$name.err" &
  EMU_PIDS="$EMU_PIDS $!"
  wait_port "$name" $! "emulator $script"
}

# wait_port NAME PID WHAT: waits (up to 60 s: Python's start on two loaded cores under an
# ASan suite) for the child PID, whose stdout is $T/NAME.port (created before the child
# started), to print its "PORT n" line; sets EMU_PORT. Only a whole line counts: read fails
# on a line whose newline is not there yet. A child that died fails with its stderr.
wait_port() {
  local name=$1 pid=$2 what=$3 line end=$((SECONDS + 60))
  EMU_PORT=""
  while [ "$SECONDS" -lt "$end" ]; do
    line=""
    if IFS= read -r line 2>/dev/null < "$T/$name.port"; then
      case $line in
        "PORT "*[!0-9]*|"PORT ") ;;
        "PORT "*) EMU_PORT=${line#PORT }; return 0 ;;
      esac
    fi
    kill -0 "$pid" 2>/dev/null || { log "$what exited before printing its port:"; cat "$T/$name.err" >&2; return 1; }
    sleep 0.05
  done
  log "$what did not print its port within 60 s"; cat "$T/$name.err" >&2; return 1
}
stop_emulators() { local p; for p in $EMU_PIDS; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; EMU_PIDS=""; }
trap 'rc=$?; set +e; stop_emulators; (exit $rc); cleanup' EXIT

# intune_conf PORT MDM_LINES INTUNE_LINES: $STATE/mdm.conf for the Intune emulator on PORT
# (its default tenant and client ID), with MDM_LINES in [mdm] and INTUNE_LINES (the
# credential, ...) in [intune].
intune_conf() {
  printf '[mdm]\n%s\n[intune]\ntenant = contoso.onmicrosoft.com\nclient_id = 11111111-2222-3333-4444-555555555555\nlogin_url = http://127.0.0.1:%s\ngraph_url = http://127.0.0.1:%s\n%s\n' \
    "$2" "$1" "$1" "$3" > "$STATE/mdm.conf"
}

# use_mdm_config: scepd.conf names $STATE/mdm.conf ([server] mdm_config).
use_mdm_config() { sed -i 's/^\[server\]$/[server]\nmdm_config = mdm.conf/' "$CONF"; }

# calls_where FILE PYEXPR: the recorded calls (JSON lines, c = one call) for which PYEXPR
# holds, one JSON line each.
calls_where() {
  python3 - "$1" "$2" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    c = json.loads(line)
    if eval(sys.argv[2], {}, {"c": c}):
        print(json.dumps(c))
PY
}
