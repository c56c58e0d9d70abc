#!/usr/bin/env bash
# Installs the Debian 12 packages scepd needs to build, test and benchmark. Idempotent: does
# nothing when every package is already installed. Uses sudo when not root.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  libssl-dev openssl liblmdb-dev lmdb-utils liburing-dev libp11-kit-dev p11-kit
  softhsm2 libcmocka-dev
  scep certmonger            # peer server + real clients (micromdm scepclient, scep-submit)
  curl gnuplot-nox procps lintian
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
