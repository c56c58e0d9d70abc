#!/usr/bin/env bash
# Builds the Debian package: configures BUILD_DIR for the package (prefix /usr, Debian's
# hardening flags from dpkg-buildflags), builds the three programs and the man pages only,
# and runs CPack. Prints the path of the .deb. `make deb` and tests/integration/t_package.sh
# both use it.
#
#   packaging/build-deb.sh BUILD_DIR [JOBS]
set -euo pipefail
B=${1:?usage: build-deb.sh BUILD_DIR [JOBS]}
JOBS=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)

# hardening=+all: PIE, stack protector, fortify, -z relro and -z now (lintian's checks).
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
ldflags=$(dpkg-buildflags --get LDFLAGS)

# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY: cpack installs without building every target first
# (tests, fuzzers, benchmarks); the package's targets are built just before.
cmake -S "$here" -B "$B" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
  -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON >/dev/null
cmake --build "$B" -j "$JOBS" --target scepd scepctl scep-loadgen scepd_package_files >&2
(cd "$B" && cpack -G DEB >&2)
ls "$B"/scepd_*.deb
