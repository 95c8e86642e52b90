#!/usr/bin/env bash
# Builds (once) and caches istiod (`pilot-discovery`) for the mesh tests
# (tests/mesh, docs/mesh.md): the Istio control plane whose CA issues the
# gateway's and the test backends' workload certificates. Built with Go 1.26
# from the istio.io/istio Go module at the pseudo-version pinned below (Istio
# publishes no tagged Go module versions); cold, about five minutes on 2 cores.
#
# Lands in $AGC_CACHE_DIR (default: .cache/ in the checkout) under a directory
# named after the version, so a second run is a no-op. Prints the binary's path
# on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
istio_version=v0.0.0-20260827124520-eed52ebb66ad
out="$cache/istiod/$istio_version"

say() { printf '[istiod] %s\n' "$*" >&2; }
fail() { printf '[istiod] ERROR: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$out/pilot-discovery" ]; then
  # shellcheck source=hack/go.sh
  source "$repo/hack/go.sh"
  use_go "$cache"
  say "building istiod (pilot-discovery) from istio.io/istio@$istio_version (cold: about five minutes on 2 cores; later runs reuse it)"
  started=$(date +%s)
  rm -rf "$out/bin.tmp" && mkdir -p "$out"
  # outside any module, so Istio's own go.mod decides its dependencies
  (cd "$out" && GOFLAGS=-mod=mod GOBIN="$out/bin.tmp" go install -trimpath -ldflags "-s -w" \
      "istio.io/istio/pilot/cmd/pilot-discovery@$istio_version") \
    || fail "building istiod failed (see the Go output above). Check the Go module proxy is reachable and there is ~4 GB of free memory."
  mv "$out/bin.tmp/pilot-discovery" "$out/pilot-discovery" && rmdir "$out/bin.tmp"
  say "built istiod in $(( $(date +%s) - started ))s"
fi
echo "$out/pilot-discovery"
