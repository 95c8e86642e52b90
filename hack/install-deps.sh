#!/usr/bin/env bash
# Installs the Debian packages agc-controller needs, only those missing
# (a second run makes no network call), then checks Python and Go.
set -euo pipefail

# etcd for the local control plane; NGINX with Lua for the local data plane, and
# its stream + njs modules (HTTP/1.1 and h2c gRPC on one plain port); iproute2
# for the test backends' network namespaces; wrk for `make bench`
packages=(etcd-server nginx libnginx-mod-http-lua lua-resty-core lua-cjson libnginx-mod-stream
  libnginx-mod-stream-js iproute2 wrk)

say() { printf '[deps] %s\n' "$*" >&2; }
fail() { printf '[deps] ERROR: %s\n' "$*" >&2; exit 1; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing ${missing[*]} needs root; run as root or install sudo."
    sudo=sudo
  fi
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq || fail "apt-get update failed; check that Debian's package mirror is reachable."
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed; run it by hand to see why."
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "Python 3.11 or newer is required (found $(python3 --version 2>&1))."
command -v go >/dev/null || fail "Go 1.26 is required to build the test control plane (https://go.dev/dl)."
