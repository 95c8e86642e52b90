#!/usr/bin/env bash
# Builds (once) and caches what a real test node runs (devcluster/node.py):
#   - kubelet and kube-proxy, and kube-scheduler for the control plane, at the
#     control plane's Kubernetes version (hack/testenv.sh node);
#   - containerd, its runc shim and ctr, runc (with seccomp), and crictl (the
#     node's teardown stops its pods through the CRI with it), from their Go
#     modules at the versions pinned below: Debian 12's runc 1.1.5 cannot start
#     CRI sandboxes on this kind of host, and its containerd 1.6 is too old for
#     kubelet 1.36;
#   - the pods' sandbox ("pause") image: hack/node/pause.go in an image of its
#     own, an OCI archive that containerd imports (no registry is reachable);
#   - and the Debian packages they need: CNI plugins (bridge, host-local,
#     portmap), iptables and conntrack for kube-proxy, libseccomp, gcc and the C
#     library's headers for runc (cgo; apt installs no recommended packages, so
#     gcc comes without them, and every Go build after it uses cgo), buildah for
#     the image.
#
# Everything lands in $AGC_CACHE_DIR (default: .cache/ in the checkout) under a
# directory named after the versions, so a second run is a no-op. Prints three
# lines at the end: the testenv directory, the node's bin directory, and the
# pause image's OCI archive.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
containerd_version=v2.4.2
runc_version=v1.5.3
cri_tools_version=v1.37.0
out="$cache/node/containerd-$containerd_version-runc-$runc_version-crictl-$cri_tools_version"

say() { printf '[node] %s\n' "$*" >&2; }
fail() { printf '[node] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/packages.sh
source "$repo/hack/packages.sh"
ensure_packages containernetworking-plugins iptables conntrack libseccomp-dev pkg-config gcc libc6-dev buildah
# shellcheck source=hack/buildah.sh
source "$repo/hack/buildah.sh"

testenv=$("$repo/hack/testenv.sh" node | tail -1)

# shellcheck source=hack/go.sh
source "$repo/hack/go.sh"
use_go "$cache"

go_install() {  # label, what it is, then `go install` arguments
  local label=$1 what=$2 started
  shift 2
  say "$label building $what from its Go module (cold: a minute or two on 2 cores)"
  started=$(date +%s)
  # outside any module, so each module's own go.mod decides its dependencies
  (cd "$out" && GOFLAGS=-mod=mod GOBIN="$out/bin.tmp" go install -trimpath -ldflags "-s -w" "$@") \
    || fail "building $what failed (see the Go output above). Check the Go module proxy is reachable."
  say "$label built $what in $(( $(date +%s) - started ))s"
}

mkdir -p "$out/bin"
if [ ! -x "$out/bin/containerd" ]; then
  rm -rf "$out/bin.tmp"
  go_install "[1/4]" "containerd $containerd_version" \
    "github.com/containerd/containerd/v2/cmd/containerd@$containerd_version" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version" \
    "github.com/containerd/containerd/v2/cmd/ctr@$containerd_version"
  mv "$out/bin.tmp"/* "$out/bin/" && rmdir "$out/bin.tmp"
fi
if [ ! -x "$out/bin/runc" ]; then
  rm -rf "$out/bin.tmp"
  CGO_ENABLED=1 go_install "[2/4]" "runc $runc_version" -tags seccomp \
    "github.com/opencontainers/runc@$runc_version"
  mv "$out/bin.tmp/runc" "$out/bin/runc" && rmdir "$out/bin.tmp"
fi
if [ ! -x "$out/bin/crictl" ]; then
  rm -rf "$out/bin.tmp"
  go_install "[3/4]" "crictl $cri_tools_version" "sigs.k8s.io/cri-tools/cmd/crictl@$cri_tools_version"
  mv "$out/bin.tmp/crictl" "$out/bin/crictl" && rmdir "$out/bin.tmp"
fi
pause_src="$repo/hack/node/pause.go"
pause_sum=$(sha256sum "$pause_src" | cut -c1-12)
if [ ! -x "$out/bin/pause-$pause_sum" ]; then
  say "[4/4] building the sandbox (pause) program"
  (cd "$out" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/bin/pause-$pause_sum.tmp" "$pause_src") \
    || fail "building $pause_src failed (see the Go output above)."
  mv "$out/bin/pause-$pause_sum.tmp" "$out/bin/pause-$pause_sum"
fi
pause_archive="$out/pause-$pause_sum.tar"
if [ ! -f "$pause_archive" ]; then
  container=$(bah from scratch)
  bah copy "$container" "$out/bin/pause-$pause_sum" /pause >/dev/null
  bah config --entrypoint '["/pause"]' --user 65535:65535 "$container"
  bah commit -q "$container" "localhost/agc-pause:$pause_sum" >/dev/null
  bah rm "$container" >/dev/null
  push_archive "localhost/agc-pause:$pause_sum" "$pause_archive"
fi
echo "$testenv"
echo "$out/bin"
echo "$pause_archive"
