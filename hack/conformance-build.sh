#!/usr/bin/env bash
# Builds (once) and caches what the Gateway API conformance run needs:
#   - conformance.test: the suite (sigs.k8s.io/gateway-api/conformance) compiled
#     from conformance/ with `go test -c`;
#   - echo-basic: the suite's echo backend, from the same module;
#   - coredns: the suite's DNS backend, from conformance/coredns/.
# The two backends are static (no cgo): the node agent runs them as processes,
# and hack/conformance-images.sh puts them into images of their own.
# With Go 1.26, as hack/testenv.sh builds the control plane (same pinned
# toolchain, read from that script).
#
# Everything lands in $AGC_CACHE_DIR/conformance/<gateway-api version>/bin.
# Each binary is rebuilt only when its inputs (go.mod, go.sum, the module's own
# Go files) or the Go version change
# (a stamp beside it holds their digest), so a second run is a no-op.
# Prints the directory holding bin/ on stdout; progress goes to stderr.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${AGC_CACHE_DIR:-$repo/.cache}
gwapi_version=$(cat "$repo/hack/gateway-api-version")
src="$repo/conformance"
out="$cache/conformance/$gwapi_version"

say() { printf '[conformance] %s\n' "$*" >&2; }
fail() { printf '[conformance] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/go.sh
source "$repo/hack/go.sh"
use_go "$cache"

# `require M V` or a line `M V` inside a require block
suite_version=$(awk '{ for (i = 1; i < NF; i++) if ($i == "sigs.k8s.io/gateway-api/conformance") { print $(i + 1); exit } }' "$src/go.mod")
[ "$suite_version" = "$gwapi_version" ] \
  || fail "conformance/go.mod requires sigs.k8s.io/gateway-api/conformance ${suite_version:-(nothing)}, but hack/gateway-api-version says $gwapi_version. Update conformance/go.mod (go get sigs.k8s.io/gateway-api/conformance@$gwapi_version sigs.k8s.io/gateway-api@$gwapi_version && go mod tidy)."

go_version=$(go env GOVERSION)

inputs_digest() {  # dir, name patterns...: digest of the Go version and the matching files in dir
  local dir=$1; shift
  local patterns=() p
  for p in "$@"; do patterns+=(-o -name "$p"); done
  {
    echo "$go_version static"
    find "$dir" -maxdepth 1 -type f \( -false "${patterns[@]}" \) -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}

build() {  # name, step label, module dir, inputs digest, command (runs in the module dir)
  local name=$1 label=$2 dir=$3 digest=$4; shift 4
  local target="$out/bin/$name" stamp="$out/bin/.$name.inputs" started tmp
  if [ -x "$target" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    return 0
  fi
  say "building $name ($label) with $go_version (cold: 1-2 minutes on 2 cores; later runs reuse the Go build cache)"
  started=$(date +%s)
  tmp="$target.tmp"
  (cd "$dir" && "$@") \
    || fail "building $name failed (see the Go output above). Check that the Go module proxy is reachable; if go.sum is stale, run \`go mod tidy\` in ${dir#"$repo"/}."
  mv "$tmp" "$target"
  echo "$digest" >"$stamp"
  say "built $name in $(( $(date +%s) - started ))s"
}

mkdir -p "$out/bin"
build echo-basic 1/3 "$src" "$(inputs_digest "$src" go.mod go.sum)" \
  env CGO_ENABLED=0 go build -trimpath -o "$out/bin/echo-basic.tmp" sigs.k8s.io/gateway-api/conformance/echo-basic
build coredns 2/3 "$src/coredns" "$(inputs_digest "$src/coredns" go.mod go.sum '*.go')" \
  env CGO_ENABLED=0 go build -trimpath -o "$out/bin/coredns.tmp" github.com/coredns/coredns
build conformance.test 3/3 "$src" "$(inputs_digest "$src" go.mod go.sum '*.go')" \
  go test -c -trimpath -o "$out/bin/conformance.test.tmp" .
echo "$out"
