#!/usr/bin/env bash
# PostgreSQL's own HA under scepd (issue 11): a Patroni (Debian package patroni) cluster of
# two PostgreSQL 15 instances, a primary and a synchronous standby (synchronous_mode), with
# a one-member etcd (etcd-server) as its DCS, all on loopback. One scepd node uses a
# multi-host conninfo (host=A,B target_session_attrs=read-write). The primary is killed with
# SIGKILL (Patroni and PostgreSQL both, as when its machine dies):
#   - Patroni promotes the standby (leader key ttl 10 s);
#   - scepd reconnects to the new primary by itself (multi-host conninfo): enrollments are
#     answered 503 meanwhile (the client retries), then SUCCESS again; the outage is audited
#     STORE_UNAVAILABLE then STORE_RECOVERED;
#   - every certificate a client received before the failover is on the new primary (the
#     COMMIT returned only once the synchronous standby had it), no serial twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need "Patroni (Debian package patroni)" command -v patroni
need "etcd (Debian package etcd-server)" command -v etcd
need "postgresql-15 (Debian package postgresql-15)" test -x "$PG_BIN/initdb"
need_cmd curl openssl python3 psql

init_state
cd "$T"
mkdir -p got
D=$(mktemp -d /tmp/scepd-patroni.XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then
  u=postgres
  id -u "$u" >/dev/null 2>&1 || { u=scepd-pgtest; id -u "$u" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$u"; }
  chown "$u" "$D"
  # setpriv execs (runuser would stay as Patroni's parent: killing it would not kill Patroni)
  RUN=(setpriv --reuid "$u" --regid "$(id -g "$u")" --init-groups --)
fi
chmod 700 "$D"
EP=$(free_port); EPP=$(free_port)
declare -A PGP REST PPID_OF
for m in m1 m2; do PGP[$m]=$(free_port); REST[$m]=$(free_port); done
ETCD_PID="" 
stop_all() {  # Patroni first (it would restart its PostgreSQL), then PostgreSQL, etcd
  local m p pids=()
  for m in m1 m2; do
    p=${PPID_OF[$m]:-}
    [ -n "$p" ] && { kill -KILL "$p" 2>/dev/null || true; pids+=("$p"); }
  done
  for m in m1 m2; do
    [ -f "$D/$m/postmaster.pid" ] && kill -KILL "$(head -n1 "$D/$m/postmaster.pid")" 2>/dev/null || true
  done
  [ -n "$ETCD_PID" ] && { kill -KILL "$ETCD_PID" 2>/dev/null || true; pids+=("$ETCD_PID"); }
  [ ${#pids[@]} = 0 ] || wait "${pids[@]}" 2>/dev/null || true
}
trap 'rc=$?; stop_all; if [ $rc -ne 0 ] || [ "$FAILED" -ne 0 ]; then for m in m1 m2; do log "--- patroni $m (tail) ---"; tail -n 15 "$D/$m.log" >&2 2>/dev/null || true; done; fi; [ -z "${KEEP_T:-}" ] && rm -rf "$D"; (exit $rc); pg_cleanup' EXIT

etcd --name t --data-dir "$D/etcd" --listen-client-urls "http://127.0.0.1:$EP" \
  --advertise-client-urls "http://127.0.0.1:$EP" --listen-peer-urls "http://127.0.0.1:$EPP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$EPP" --initial-cluster "t=http://127.0.0.1:$EPP" \
  > "$T/etcd.log" 2>&1 &
ETCD_PID=$!
until_ok() { local n=$1 i; shift; for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.2; done; return 1; }
check "etcd answers" until_ok 150 curl -fsS -o /dev/null "http://127.0.0.1:$EP/health"

patroni_conf() {  # MEMBER
  local m=$1
  cat <<YML
scope: scepd-test
namespace: /scepd/
name: $m
restapi:
  listen: 127.0.0.1:${REST[$m]}
  connect_address: 127.0.0.1:${REST[$m]}
etcd3:
  hosts: 127.0.0.1:$EP
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    synchronous_mode: true
    postgresql:
      use_pg_rewind: false
      parameters:
        max_connections: 60
        shared_buffers: 16MB
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        synchronous_commit: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - auth: trust
postgresql:
  listen: 127.0.0.1:${PGP[$m]}
  connect_address: 127.0.0.1:${PGP[$m]}
  data_dir: $D/$m
  bin_dir: $PG_BIN
  pgpass: $D/pgpass-$m
  pg_hba:
    - local all all trust
    - local replication all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  authentication:
    superuser: {username: scepd, password: unused}
    replication: {username: scepd, password: unused}
  parameters:
    unix_socket_directories: '$D'
YML
}
start_member() {
  local m=$1
  patroni_conf "$m" > "$D/$m.yml"
  # from a directory its user may enter (it spawns helpers that chdir to the cwd)
  (cd "$D" && exec "${RUN[@]}" patroni "$D/$m.yml") > "$D/$m.log" 2>&1 &
  PPID_OF[$m]=$!
}
role_is() { curl -fsS -o /dev/null "http://127.0.0.1:${REST[$1]}/$2" 2>/dev/null; }

start_member m1
check "Patroni m1 bootstraps the primary" until_ok 600 role_is m1 primary
start_member m2
check "Patroni m2 becomes a replica" until_ok 600 role_is m2 replica
check "m2 is the synchronous standby" until_ok 600 role_is m2 sync

PG_CONNINFO="host=127.0.0.1,127.0.0.1 port=${PGP[m1]},${PGP[m2]} dbname=postgres user=scepd target_session_attrs=read-write connect_timeout=2"
pg_node_conf "$STATE/node-a.conf" a
node_start a "$STATE/node-a.conf"
URL=${NODE_URL[a]}
AUDIT=$STATE/audit-a.log

enroll() {  # NAME: SUCCESS, or anything else (no retry)
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "$1" --key-type ec:P-256 \
    --cert-out "got/$1.pem" > "got/$1.out" 2>&1 || true
}
for i in 1 2 3 4 5; do enroll before-$i; done
check "5 enrollments on the first primary" test "$(grep -l status=SUCCESS got/before-*.out | wc -l)" = 5

# the primary's machine dies: Patroni and PostgreSQL killed at once
m1_patroni=${PPID_OF[m1]}
kill -KILL "$m1_patroni" "$(head -n1 "$D/m1/postmaster.pid")"
wait "$m1_patroni" 2>/dev/null || true
PPID_OF[m1]=""
t0=$SECONDS
# a client that retries on 503 until it gets an answer (bounded)
ok=0 n503=0 other=0
for i in $(seq 1 120); do
  enroll during-$i
  if grep -q status=SUCCESS "got/during-$i.out"; then ok=1; break; fi
  if grep -q http=503 "got/during-$i.out"; then n503=$((n503 + 1)); else other=$((other + 1)); log "  got/during-$i.out: $(tr '\n' ' ' < "got/during-$i.out")"; fi
  sleep 0.5
done
log "  failover seen by the client after $((SECONDS - t0)) s: $n503 answers 503 first"
check "Patroni promoted m2" until_ok 150 role_is m2 primary
check "m1's Patroni is gone (no one to restart the old primary)" sh -c "! kill -0 $m1_patroni 2>/dev/null"
check "scepd issues again through the multi-host conninfo (new primary m2)" test $ok = 1
check "while the primary was away the client got only 503s (it retries)" test $other = 0
check_audit "the outage was audited STORE_UNAVAILABLE then STORE_RECOVERED" \
  sh -c "grep -F -e '\"event\":3003,' -e '\"event\":3004,' '$AUDIT' | tail -n1 | grep -qF '\"event\":3004,' && grep -qF '\"event\":3003,' '$AUDIT'"
# the node's other connections reconnect at their next use (no backoff once one is back);
# a client still retries a 503 as it should
after() {
  local i
  for i in $(seq 1 10); do
    enroll "after-$1"
    grep -q status=SUCCESS "got/after-$1.out" && return 0
    grep -q http=503 "got/after-$1.out" || return 1
    log "  after-$1: 503, retried"; sleep 0.3
  done
  return 1
}
for i in 1 2 3 4; do after $i || true; done
check "4 more enrollments on the new primary" test "$(grep -l status=SUCCESS got/after-*.out | wc -l)" = 4
on_m2() { psql "host=127.0.0.1 port=${PGP[m2]} dbname=postgres user=scepd" -XAtq -c "$1"; }
missing=0
: > serials.txt
for f in got/*.pem; do
  [ -s "$f" ] || continue
  s=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  echo "$s" >> serials.txt
  [ "$(on_m2 "SELECT count(*) FROM scepd_certs WHERE serial = '\\x$s'::bytea")" = 1 ] ||
    { missing=$((missing + 1)); log "not on the new primary: $f ($s)"; }
done
check "every certificate a client received is on the new primary ($(wc -l < serials.txt))" test "$missing" -eq 0
check "no serial twice" test "$(sort serials.txt | uniq -d | wc -l)" = 0
node_stop a
finish
