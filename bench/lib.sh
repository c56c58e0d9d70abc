# Shell pieces the bench scripts share (sourced; defines functions only).

# stop_pid PID [SIGNAL]: sends SIGNAL (default TERM), waits up to 5 s for the process to go,
# then KILLs it and reaps it. Nothing happens for an empty PID or one already gone.
stop_pid() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill -"${2:-TERM}" "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
