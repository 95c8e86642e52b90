#!/usr/bin/env bash
# Images of the conformance suite's backends, for the in-cluster run
# (hack/conformance.py --in-cluster), where they run on a real node from images:
# every reference to echo-basic or coredns in the pinned suite's manifests
# (several tags of echo-basic) becomes an image of that exact name holding the
# binary hack/conformance-build.sh built, as its entrypoint, on an empty base.
# No registry is reachable here, so the node cannot pull the published ones;
# containerd imports these (devcluster/node.py) and the manifests'
# imagePullPolicy IfNotPresent finds them.
#
# Each image is an OCI archive in $AGC_CACHE_DIR/conformance/<version>/images,
# named after the reference and the binary's digest, so a second run is a
# no-op. Prints one line per image: "<image reference> <OCI archive>".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}

say() { printf '[conformance-images] %s\n' "$*" >&2; }
fail() { printf '[conformance-images] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/packages.sh
source "$repo/hack/packages.sh"
ensure_packages buildah
# shellcheck source=hack/buildah.sh
source "$repo/hack/buildah.sh"
# shellcheck source=hack/go.sh
source "$repo/hack/go.sh"
use_go "$cache"

built=$("$repo/hack/conformance-build.sh")
suite=$(cd "$repo/conformance" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api/conformance) \
  || fail "the suite's module is not in the Go module cache; run hack/conformance-build.sh."
out="$built/images"
mkdir -p "$out"

refs() {  # repository: the references to it in the suite's base and test manifests
  grep -rhoE "image: *\"?$1:[^\"[:space:]]+" "$suite/base" "$suite/tests" \
    | sed -E 's/^image: *"?//' | sort -u
}

made=0
for binary in echo-basic coredns; do
  case $binary in
    echo-basic) repository=registry.k8s.io/gateway-api/echo-basic ;;
    coredns) repository=registry.k8s.io/coredns/coredns ;;
  esac
  sum=$(sha256sum "$built/bin/$binary" | cut -c1-12)
  found=0
  for ref in $(refs "$repository"); do
    found=1
    archive="$out/$binary-${ref##*:}-$sum.tar"
    if [ ! -f "$archive" ]; then
      container=$(bah from scratch)
      bah copy "$container" "$built/bin/$binary" "/$binary" >/dev/null
      bah config --entrypoint "[\"/$binary\"]" "$container"
      bah commit -q "$container" "$ref" >/dev/null
      bah rm "$container" >/dev/null
      push_archive "$ref" "$archive"
      bah rmi -f "$ref" >/dev/null
      made=$((made + 1))
    fi
    echo "$ref $archive"
  done
  [ "$found" = 1 ] || fail "the suite's manifests ($suite) name no $repository image."
  # archives of other builds of this binary
  find "$out" -maxdepth 1 -name "$binary-*.tar" ! -name "*-$sum.tar" -delete
done
[ "$made" = 0 ] || say "made $made image(s) in $out"
