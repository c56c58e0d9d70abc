# PostgreSQL 15 for the t_pg_*.sh tests, and several scepd nodes on it. Source after lib.sh.
#
#   pg_start            initdb in a temporary directory and start the server: unix socket
#                       in that directory only (no TCP port), trust authentication, run as
#                       the postgres user (or scepd-pgtest, created if missing) when the
#                       test runs as root, as the caller otherwise. Sets PG_CONNINFO.
#   pg_stop / pg_restart / pg_kill (SIGKILL of the postmaster) / pg_up (start again)
#   pg_sql SQL          one statement through psql; unaligned tuples on stdout
#   pg_node_conf OUT [NAME]  a copy of $CONF for node NAME on the shared store: backend =
#                       postgresql, its own audit log and CRL file; OUT is its path
#   node_start NAME CONF / node_stop NAME / node_kill NAME: scepd nodes; NODE_PORT[NAME],
#                       NODE_URL[NAME], NODE_PID[NAME]; logs in $T/scepd-NAME.log
# Everything is stopped by the EXIT trap (then lib.sh's cleanup runs).
#
# Run as a program, `bash pg.sh run CMD ARGS...` starts a server, runs CMD with
# SCEPD_PG_CONNINFO set, stops the server and exits with CMD's status (the unit test
# tests/unit/store/test_store_pg.c re-executes itself this way).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=""
PG_CONNINFO=""
PG_RUN=()
declare -A NODE_PORT NODE_URL NODE_PID NODE_ADMIN

pg_start() {
  need "postgresql-15 (Debian package postgresql-15)" test -x "$PG_BIN/initdb"
  need_cmd psql
  PG_DIR=$(mktemp -d /tmp/scepd-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    local u=postgres
    if ! id -u "$u" >/dev/null 2>&1; then
      u=scepd-pgtest
      id -u "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u"
    fi
    chown "$u" "$PG_DIR"
    PG_RUN=(runuser -u "$u" --)
  fi
  chmod 700 "$PG_DIR"
  "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U scepd --auth=trust -E UTF8 --locale=C \
    >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  cat >> "$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$PG_DIR'
port = 5432
max_connections = 60
shared_buffers = 16MB
fsync = on
synchronous_commit = on
CONF
  PG_CONNINFO="host=$PG_DIR port=5432 dbname=postgres user=scepd connect_timeout=2"
  pg_up
}

pg_up() {
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
    >/dev/null || { tail -n 20 "$PG_DIR/server.log" >&2; return 1; }
}

pg_stop() {
  [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 0
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -w -m fast stop >/dev/null 2>&1 || true
}

pg_restart() { pg_stop; pg_up; }

pg_kill() {
  local pid
  pid=$(head -n1 "$PG_DIR/data/postmaster.pid")
  kill -KILL "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  # the backends notice their postmaster is gone and exit; wait for the socket to go
  for _ in $(seq 1 100); do [ -e "$PG_DIR/.s.PGSQL.5432" ] || break; sleep 0.05; done
  rm -f "$PG_DIR/.s.PGSQL.5432" "$PG_DIR/.s.PGSQL.5432.lock"
}

pg_sql() { psql "$PG_CONNINFO" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

pg_node_conf() {
  local out=$1 name=${2:-a}
  awk -v ci="$PG_CONNINFO" -v name="$name" '
    /^\[/ { sec = $0 }
    sec == "[store]" && /^path *=/ { print "backend = postgresql"; print "conninfo = \"" ci "\""; next }
    sec == "[server]" && /^audit_log *=/ { print "audit_log = audit-" name ".log"; next }
    sec == "[crl]" && /^file *=/ { print "file = crl-" name "/ca.crl"; next }
    { print }' "$CONF" > "$out"
}

node_start() {
  local name=$1 conf=$2
  rm -f "$T/port.$name" "$T/admin-port.$name"
  "$BUILD/scepd" -c "$conf" --port-file "$T/port.$name" --admin-port-file "$T/admin-port.$name" \
    >"$T/scepd-$name.log" 2>&1 &
  NODE_PID[$name]=$!
  for _ in $(seq 1 300); do
    if [ -s "$T/port.$name" ]; then
      NODE_PORT[$name]=$(cat "$T/port.$name")
      NODE_URL[$name]="http://127.0.0.1:${NODE_PORT[$name]}/scep"
      NODE_ADMIN[$name]="http://127.0.0.1:$(cat "$T/admin-port.$name" 2>/dev/null)"
      curl -fsS "http://127.0.0.1:${NODE_PORT[$name]}/healthz" >/dev/null 2>&1 && return 0
    fi
    kill -0 "${NODE_PID[$name]}" 2>/dev/null || { cat "$T/scepd-$name.log" >&2; return 1; }
    sleep 0.05
  done
  log "node $name did not become healthy"; return 1
}

# node_stop NAME: SIGTERM; a clean shutdown exits 0 (under ASan: no report).
node_stop() {
  local name=$1 pid=${NODE_PID[$1]:-} rc=0
  [ -n "$pid" ] || return 0
  NODE_PID[$name]=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  if [ "$rc" -ne 0 ] || grep -q Sanitizer "$T/scepd-$name.log" 2>/dev/null; then
    fail "node $name did not shut down cleanly (exit $rc)"
    tail -n 30 "$T/scepd-$name.log" >&2 || true
  fi
}

node_kill() {
  local pid=${NODE_PID[$1]:-}
  NODE_PID[$1]=""
  [ -n "$pid" ] || return 0
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

pg_cleanup() {
  local rc=$? n
  for n in "${!NODE_PID[@]}"; do
    [ -n "${NODE_PID[$n]}" ] && kill -KILL "${NODE_PID[$n]}" 2>/dev/null || true
  done
  if [ $rc -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    for n in "${!NODE_PID[@]}"; do
      log "--- node $n log (tail) ---"; tail -n 30 "$T/scepd-$n.log" >&2 2>/dev/null || true
    done
    [ -n "$PG_DIR" ] && { log "--- postgresql log (tail) ---"; tail -n 20 "$PG_DIR/server.log" >&2 2>/dev/null || true; }
  fi
  pg_stop
  [ -n "$PG_DIR" ] && [ -z "${KEEP_T:-}" ] && rm -rf "$PG_DIR"
  (exit $rc)
  cleanup
}
trap pg_cleanup EXIT

if [ "${BASH_SOURCE[0]}" = "$0" ] && [ "${1:-}" = run ]; then
  shift
  . "$(dirname "$0")/lib.sh"
  trap pg_cleanup EXIT
  pg_start
  rc=0
  SCEPD_PG_CONNINFO=$PG_CONNINFO "$@" || rc=$?
  [ $rc = 0 ] || FAILED=$((FAILED + 1))
  exit $rc
fi
