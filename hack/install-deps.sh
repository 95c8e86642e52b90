#!/usr/bin/env bash
# Installs what agc-controller needs on a Debian 12 / Ubuntu 24.04 machine, only
# what is missing (a second run makes no network call): the Debian packages, then
# Go 1.26 from the Go module proxy when no Go that can fetch it is installed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}

# Python 3.11+ with venv (Debian ships python3 without it); CA certificates for
# the Go module proxy and PyPI; curl for the example requests `make run` suggests
# (and the tests that send them); etcd for the local control plane; NGINX with Lua
# for the local data plane, and its stream + njs modules (HTTP/1.1 and h2c gRPC on
# one plain port), and ModSecurity with the OWASP Core Rule Set (WebApplicationFirewallPolicy);
# iproute2 for the test backends' network namespaces; wrk for `make bench`
packages=(python3 python3-venv ca-certificates curl etcd-server nginx libnginx-mod-http-lua
  lua-resty-core lua-cjson libnginx-mod-stream libnginx-mod-stream-js
  libnginx-mod-http-modsecurity modsecurity-crs iproute2 wrk)

say() { printf '[deps] %s\n' "$*" >&2; }
fail() { printf '[deps] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/packages.sh
source "$repo/hack/packages.sh"
ensure_packages "${packages[@]}"
# The nginx package starts Debian's own NGINX on port 80, the port the local data
# plane's example Gateway listens on. Only one installed here, just now, is stopped.
if [[ " ${installed_now[*]} " == *" nginx "* ]]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  if [ -d /run/systemd/system ] && systemctl is-active --quiet nginx.service; then
    $sudo systemctl disable --now --quiet nginx.service
    say "stopped and disabled nginx.service (Debian's NGINX, installed just now, takes port 80)"
  elif [ -x /etc/init.d/nginx ] && [ -f /run/nginx.pid ]; then
    $sudo /etc/init.d/nginx stop >/dev/null
    $sudo update-rc.d nginx disable >/dev/null 2>&1 || say "could not keep it from starting at boot: run update-rc.d nginx disable"
    say "stopped and disabled Debian's NGINX service (installed just now, it takes port 80)"
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "Python 3.11 or newer is required (found $(python3 --version 2>&1))."

# shellcheck source=hack/go.sh
source "$repo/hack/go.sh"
use_go "$cache"
