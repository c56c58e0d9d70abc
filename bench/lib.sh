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

# room_for_all CONF: [server] queue_max = 4096 in scepd.conf CONF, above any concurrency the
# benchmarks use. The default bound (100 per crypto worker) answers 503 queue_full at once
# beyond it; a closed-loop client above it then spends its prebuilt requests on 503s in the
# warm-up and has no timed phase. The bound is the resilience issue's (t_overload), not what
# these scripts measure.
room_for_all() {
  sed -i "s/^\[server\]\$/[server]\nqueue_max = 4096/" "$1"
}
