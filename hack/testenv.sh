#!/usr/bin/env bash
# Builds (once) and caches the test control plane:
#   - kube-apiserver, kube-controller-manager and kubectl from the Kubernetes Go modules
#     pinned in hack/testenv/go.mod, built with Go 1.26 (Go 1.27's JSON default
#     breaks the apiserver's /openapi/v2 and so `kubectl apply`);
#   - the Gateway API CRDs (standard and experimental) from the
#     sigs.k8s.io/gateway-api Go module;
#   - with the argument `node`, also kube-scheduler, kubelet and kube-proxy from
#     the same modules, for a real node (hack/node.sh asks for them).
# etcd is Debian's etcd-server package (hack/install-deps.sh installs it).
#
# Everything lands in $AGC_CACHE_DIR (default: .cache/ in the checkout, git-ignored),
# under a directory named after the pinned versions, so a second run is a no-op.
# Prints the directory holding bin/ and crds/ on its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$repo/hack/testenv/go.mod")
gwapi_version=$(cat "$repo/hack/gateway-api-version")
out="$cache/testenv/k8s-$k8s_version-gwapi-$gwapi_version"

say() { printf '[testenv] %s\n' "$*" >&2; }
fail() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/go.sh
source "$repo/hack/go.sh"
use_go "$cache"

build_binary() {  # name, step label
  local name=$1 label=$2 started pkg=k8s.io/kubernetes/cmd/$1
  [ -x "$out/bin/$name" ] && return 0
  say "$label building $name $k8s_version from the Kubernetes Go modules (cold: several minutes on 2 cores; later runs reuse the Go build cache)"
  started=$(date +%s)
  local vpkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version" ldflags="-s -w"
  local minor=${k8s_version#v1.}; minor=${minor%%.*}
  for p in $vpkgs; do
    ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$repo/hack/testenv" && go build -trimpath -ldflags "$ldflags" -o "$out/bin/$name.tmp" "$pkg") \
    || fail "building $name failed (see the Go output above). Check the Go module proxy is reachable and there is ~3 GB of free memory."
  mv "$out/bin/$name.tmp" "$out/bin/$name"
  say "$label built $name in $(( $(date +%s) - started ))s"
}

fetch_crds() {
  [ -f "$out/crds/standard/.done" ] && [ -f "$out/crds/experimental/.done" ] && return 0
  say "[4/$steps] fetching Gateway API $gwapi_version CRDs from the sigs.k8s.io/gateway-api Go module"
  local dir
  dir=$(cd "$repo/hack/testenv" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$gwapi_version" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') \
    || fail "could not download sigs.k8s.io/gateway-api@$gwapi_version from the Go module proxy."
  for channel in standard experimental; do
    rm -rf "$out/crds/$channel"; mkdir -p "$out/crds/$channel"
    cp "$dir"/config/crd/"$channel"/*.yaml "$out/crds/$channel/"
    chmod u+w "$out/crds/$channel"/*.yaml
    touch "$out/crds/$channel/.done"
  done
}

steps=4
if [ "${1:-}" = node ]; then steps=7; fi
mkdir -p "$out/bin"
build_binary kube-apiserver "[1/$steps]"
build_binary kube-controller-manager "[2/$steps]"
build_binary kubectl "[3/$steps]"
fetch_crds
if [ "$steps" = 7 ]; then
  build_binary kube-scheduler "[5/7]"
  build_binary kubelet "[6/7]"
  build_binary kube-proxy "[7/7]"
fi
echo "$out"
