#!/usr/bin/env bash
# Builds (once) and caches helm from the Go module helm.sh/helm/v3/cmd/helm at
# the version pinned below: helm is not a Debian package, and the tests render
# the chart in deploy/chart with it.
#
# The binary lands in $AGC_CACHE_DIR (default: .cache/ in the checkout,
# git-ignored) under a directory named after the version, so a second run is a
# no-op. Prints the path of the helm binary on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
helm_version=v3.21.4
out="$cache/helm/$helm_version"

say() { printf '[helm] %s\n' "$*" >&2; }
fail() { printf '[helm] ERROR: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$out/bin/helm" ]; then
  # shellcheck source=hack/go.sh
  source "$repo/hack/go.sh"
  use_go "$cache"
  say "building helm $helm_version from the Go module helm.sh/helm/v3 (cold: a few minutes on 2 cores)"
  started=$(date +%s)
  mkdir -p "$out/bin"
  # outside any module, so helm's own go.mod decides every dependency version
  (cd "$out" && GOFLAGS=-mod=mod GOBIN="$out/bin.tmp" go install -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
      "helm.sh/helm/v3/cmd/helm@$helm_version") \
    || fail "building helm failed (see the Go output above). Check the Go module proxy is reachable."
  mv "$out/bin.tmp/helm" "$out/bin/helm"
  rmdir "$out/bin.tmp"
  say "built helm in $(( $(date +%s) - started ))s"
fi
echo "$out/bin/helm"
