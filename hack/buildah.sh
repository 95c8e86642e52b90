# Sourced by images.sh and node.sh: `bah ARGS...` runs buildah (no Docker daemon)
# on the project's own image store in $cache/images/store, so nothing touches the
# host's containers/storage. Run as root (the tests' node needs root anyway).
bah() {
  buildah --root "$cache/images/store" --runroot "$cache/images/run" --storage-driver overlay "$@"
}

# `push_archive REF ARCHIVE`: the image as an OCI archive (what containerd imports),
# written whole or not at all
push_archive() {
  bah push -q "$1" "oci-archive:$2.tmp:$1" >/dev/null || fail "buildah could not export $1."
  mv "$2.tmp" "$2"
}
