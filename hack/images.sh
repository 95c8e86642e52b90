#!/usr/bin/env bash
# Builds the controller and data-plane images (deploy/Dockerfile, targets
# controller and dataplane) with buildah, without a Docker daemon, for the
# tests' real node (devcluster/node.py), and exports each as an OCI archive that
# containerd imports directly (no registry).
#
# No registry is reachable from here, so the Dockerfile's public base is swapped
# (PYTHON_IMAGE) for one made locally: Debian bookworm with Python 3.11 from
# Debian's packages, made with debootstrap. The CA certificates this host adds
# (/usr/local/share/ca-certificates) are trusted in it too, so pip inside the
# build reaches PyPI the way the host does.
#
# Archives land in $AGC_CACHE_DIR/images, named after a digest of what goes into
# them (the Dockerfile, pyproject.toml, README.md, agc_controller/ and the base),
# so a second run with the same code is a no-op. Prints one line per image:
# "<image reference> <OCI archive>".
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
mirror=${AGC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
base_packages=python3,python3-venv,python-is-python3,ca-certificates

say() { printf '[images] %s\n' "$*" >&2; }
fail() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/packages.sh
source "$repo/hack/packages.sh"
ensure_packages buildah debootstrap
# shellcheck source=hack/buildah.sh
source "$repo/hack/buildah.sh"
mkdir -p "$cache/images"

host_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${host_cas[0]}" ] || host_cas=()
base_key=$( { echo "$base_packages"; cat "${host_cas[@]}" /dev/null; } | sha256sum | cut -c1-12)
base=localhost/agc-base:bookworm-$base_key
if ! bah inspect --type image "$base" >/dev/null 2>&1; then
  say "[1/3] making the base image: Debian bookworm with Python from Debian's packages (debootstrap; ~1 min cold)"
  started=$(date +%s)
  rootfs=$(mktemp -d "$cache/images/rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include="$base_packages" bookworm "$rootfs" "$mirror" \
      >"$cache/images/debootstrap.log" 2>&1 \
    || fail "debootstrap failed (log: $cache/images/debootstrap.log); check that $mirror is reachable."
  if [ ${#host_cas[@]} -gt 0 ]; then
    cp "${host_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  container=$(bah from scratch)
  bah copy "$container" "$rootfs/" / >/dev/null
  bah config --cmd /bin/bash "$container"
  bah commit -q "$container" "$base" >/dev/null
  bah rm "$container" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  say "[1/3] made $base in $(( $(date +%s) - started ))s"
fi

key=$( { (cd "$repo" && find deploy/Dockerfile deploy/Dockerfile.dockerignore pyproject.toml README.md agc_controller \
            -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum);
         bah inspect --type image --format '{{.FromImageID}}' "$base"; } | sha256sum | cut -c1-12)
step=2
for target in dataplane controller; do
  name=agc-$target
  ref=localhost/$name:$key
  archive=$cache/images/$name-$key.tar
  if [ ! -f "$archive" ]; then
    say "[$step/3] building $ref (deploy/Dockerfile, target $target; pip and apt inside: ~1 min cold)"
    started=$(date +%s)
    bah bud --layers --isolation chroot --build-arg "PYTHON_IMAGE=$base" --target "$target" \
        -f "$repo/deploy/Dockerfile" -t "$ref" "$repo" >"$cache/images/$name.log" 2>&1 \
      || fail "building $ref failed (log: $cache/images/$name.log)."
    push_archive "$ref" "$archive"
    # older builds of this image: their archives and tags go, their layers with them
    find "$cache/images" -maxdepth 1 -name "$name-*.tar" ! -name "$name-$key.tar" -delete
    for old in $(bah images --format '{{.Name}}:{{.Tag}}'); do
      case $old in
        "$ref") ;;
        "localhost/$name:"*) bah rmi -f "$old" >/dev/null ;;
      esac
    done
    # cleanup only: a container an interrupted build left behind holds what it used
    bah rmi --prune >/dev/null 2>&1 \
      || say "some unused layers stay: a container of an interrupted build holds them ('buildah --root $cache/images/store rm --all' frees them)"
    say "[$step/3] built $ref in $(( $(date +%s) - started ))s"
  fi
  echo "$ref $archive"
  step=$((step + 1))
done
