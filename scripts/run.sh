#!/usr/bin/env bash
# `make run`: creates the state directory on first run, then runs scepd in the foreground.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
STATE_DIR=${STATE_DIR:-./var}
LISTEN=${LISTEN:-127.0.0.1:8080}
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$here/$BUILD" ;; esac

if [ ! -f "$STATE_DIR/scepd.conf" ]; then
  echo "scepd: creating state directory $STATE_DIR (SoftHSM2 token, CA and RA keys, store)" >&2
  LISTEN="$LISTEN" CHALLENGE="${CHALLENGE:-}" BUILD="$BUILD" "$here/scripts/init-state.sh" "$STATE_DIR"
  # This development state only: micromdm's scepclient (the enrollment shown below) encrypts
  # with single DES, so its one-time profile accepts it (the shipped profile does not).
  printf '# make run: for scepclient (single DES)\nallow_des = yes\n' >> "$STATE_DIR/profiles/onetime.conf"
fi
S=$(cd "$STATE_DIR" && pwd)
listen=$(sed -n 's/^listen *= *//p' "$S/scepd.conf" | head -n1)
url="http://$listen/scep"
challenge=$(cat "$S/challenge")
profiles=$(cd "$S/profiles" 2>/dev/null && ls *.conf 2>/dev/null | sed 's/\.conf$//' | tr '\n' ' ')

cat <<MSG

  SCEP URL:   $url
  Challenge:  $challenge
  CA cert:    $S/ca.pem   (RA: $S/ra.pem)
  Config:     $S/scepd.conf
  Enroll (scepclient keeps its transient signer in ./self.pem: use an empty directory per device;
  it encrypts with single DES, which only the legacy profile accepts, hence $url/legacy):
    mkdir -p /tmp/device-1 && cd /tmp/device-1 && scepclient -server-url $url/legacy -challenge $challenge -private-key device.key -certificate device.pem -cn device-1
  Verify:     openssl verify -CAfile $S/ca.pem /tmp/device-1/device.pem
  Issued:     $BUILD/scepctl -c $S/scepd.conf cert list
  Profiles:   $url/<name> for: $profiles(files in $S/profiles)
  One-time challenge, approved automatically (profile onetime): mint one, enroll once with it:
    otp=\$($BUILD/scepctl -c $S/scepd.conf challenge new --profile onetime --ttl 60m)
    mkdir -p /tmp/device-2 && cd /tmp/device-2 && scepclient -server-url $url/onetime -challenge "\$otp" -private-key device.key -certificate device.pem -cn device-2
  Manual:     the same with --profile manual: the request waits for scepctl request approve
  CRL, OCSP:  http://$listen/crl/ca.crl   http://$listen/ocsp
  Admin API:  bearer token in $S/admin-token (POST /admin/revocations, /admin/challenges)

MSG
exec "$BUILD/scepd" -c "$S/scepd.conf"
