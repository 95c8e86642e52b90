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
go_toolchain=go1.26.8
out="$cache/helm/$helm_version"

say() { printf '[helm] %s\n' "$*" >&2; }
fail() { printf '[helm] ERROR: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$out/bin/helm" ]; then
  command -v go >/dev/null || fail "Go is not installed. Install Go 1.26 (https://go.dev/dl) or run hack/install-deps.sh."
  case "$(go env GOVERSION)" in
    go1.26.*) ;;
    *) say "local Go is $(go env GOVERSION); building with $go_toolchain (fetched through the Go module proxy)"
       export GOTOOLCHAIN=$go_toolchain ;;
  esac
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
