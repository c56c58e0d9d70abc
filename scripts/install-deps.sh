#!/usr/bin/env bash
# Installs the Debian 12 packages scepd needs to build, test and benchmark. Idempotent: does
# nothing when every package is already installed. Uses sudo when not root.
#
# Afterwards it leaves a marker, $BUILD/.deps-installed (BUILD as in the Makefile, default
# build), that tells tests/integration/lib.sh every client the suite drives is installed:
# with it, an integration test whose client is missing fails instead of being skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MARKER_DIR=${BUILD:-build}
case $MARKER_DIR in /*) ;; *) MARKER_DIR=$ROOT/$MARKER_DIR ;; esac

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libssl-dev openssl liblmdb-dev lmdb-utils liburing-dev libp11-kit-dev p11-kit
  softhsm2 libcmocka-dev
  libgoogle-perftools-dev               # tcmalloc-minimal: scepd's malloc (SCEPD_ALLOCATOR)
  libcurl4-openssl-dev libjansson-dev   # engine/mdm (outbound HTTPS, JSON)
  libpq-dev postgresql-15               # engine/store/pg, and the t_pg_* tests' own server
  haproxy                               # t_pg_haproxy, bench/pg.sh: two nodes behind HAProxy
  patroni etcd-server                   # t_pg_patroni: a PostgreSQL failover under scepd
  scep certmonger            # micromdm's scepclient and scepserver (t_loadgen's peer), scep-submit
  curl gnuplot-nox procps
  python3                    # t_wire_refusals' DER editor, test emulators
  lintian systemd man-db groff-base dpkg-dev   # t_package, t_manpages
  prometheus                 # promtool: t_metrics checks the /metrics text format
)
mark() { mkdir -p "$MARKER_DIR" && : > "$MARKER_DIR/.deps-installed"; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { mark; exit 0; }

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for bin in scepclient scepserver curl python3 promtool /usr/lib/certmonger/scep-submit; do
  command -v "$bin" >/dev/null || { echo "install-deps: $bin still missing" >&2; exit 1; }
done
mark
