# Sourced by the scripts that need Debian packages (install-deps.sh, node.sh,
# images.sh): `ensure_packages PKG...` installs those not installed yet (a second
# run makes no network call) and leaves their names in `installed_now`.
# The caller defines `say` and `fail`.

installed_now=()

ensure_packages() {
  local p sudo=""
  installed_now=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || installed_now+=("$p")
  done
  [ ${#installed_now[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing ${installed_now[*]} needs root; run as root or install sudo."
    sudo=sudo
  fi
  say "installing Debian packages: ${installed_now[*]}"
  $sudo apt-get update -qq || fail "apt-get update failed; check that Debian's package mirror is reachable."
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${installed_now[@]}" >/dev/null \
    || fail "apt-get install ${installed_now[*]} failed; run it by hand to see why."
}
