# Sourced by the scripts that build with Go (testenv.sh, helm.sh,
# conformance-build.sh, install-deps.sh): one pinned toolchain for every Go build.
#
# `use_go CACHE` leaves a Go on PATH that builds with $go_toolchain:
#   - a Go 1.21 or newer already installed switches toolchains itself
#     (GOTOOLCHAIN fetches the pinned one through the Go module proxy);
#   - with no Go, or an older one (Debian 12's golang-go is 1.19), the pinned
#     toolchain is installed into CACHE/go from the same proxy (install-go.py,
#     checksum verified) and put first on PATH.
# The caller defines `say` and `fail`.

go_toolchain=go1.26.8

# Go 1.21 and later switch toolchains through GOTOOLCHAIN
_go_switches_toolchains() {
  local version minor
  version=$(go env GOVERSION 2>/dev/null) || return 1
  minor=${version#go1.}
  minor=${minor%%[!0-9]*}
  [ -n "$minor" ] && [ "$minor" -ge 21 ]
}

use_go() {
  local bin="$1/go/$go_toolchain/bin"
  if [ -x "$bin/go" ]; then
    export PATH="$bin:$PATH"
  elif ! command -v go >/dev/null || ! _go_switches_toolchains; then
    python3 "$(dirname "${BASH_SOURCE[0]}")/install-go.py" "$go_toolchain" "$1/go" \
      || fail "could not install Go ($go_toolchain); see the [go] lines above."
    export PATH="$bin:$PATH"
  fi
  case "$(go env GOVERSION)" in
    go1.26.*) ;;
    *) say "local Go is $(go env GOVERSION); building with $go_toolchain (fetched through the Go module proxy)"
       export GOTOOLCHAIN=$go_toolchain ;;
  esac
}
