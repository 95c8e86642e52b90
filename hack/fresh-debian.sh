#!/usr/bin/env bash
# Proves the README's two commands on a stock Debian 12: bootstraps a minimal
# root filesystem (Debian's base system plus git and make, nothing else: no Go,
# no Python venv, no NGINX), clones this repository into it, and runs inside it
#   1. `make run`, until its banner says the examples answer as their curl
#      lines say, then stops it with Ctrl-C;
#   2. `make test`.
# Everything is built cold in there (Go toolchain, control plane, kubectl, helm,
# the conformance binaries, the Python dependencies): expect 30-40 minutes on 2
# cores. Not part of CI; one command:
#
#   hack/fresh-debian.sh [WORKDIR]     (root; default WORKDIR /var/tmp/agc-fresh-debian)
#
# Needs Debian's package mirror ($DEBIAN_MIRROR, default http://deb.debian.org/debian),
# the Go module proxy and PyPI. The host's DNS settings, local CA certificates and
# /etc/pip.conf are copied in. The root filesystem shares this host's network (the
# tests use loopback and their own network namespaces); it is removed at the end
# unless KEEP=1; the logs stay in WORKDIR.logs. Prints the time each step took.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/var/tmp/agc-fresh-debian}
root="$work/rootfs"
# the logs outlive the root filesystem
logs="$work.logs"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '[fresh-debian] %s\n' "$*" >&2; }
fail() { printf '[fresh-debian] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, chroot and the tests' network namespaces need it)."
[ -e "$root" ] && fail "$root exists; remove it (rm -rf $work) or pass another WORKDIR."
rm -rf "$logs" && mkdir -p "$logs"
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || fail "apt-get install debootstrap failed; run it by hand to see why."
fi

mkdir -p "$work"
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -lR "${mounted[i]}" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then
    say "kept $root"
  elif findmnt -rn -o TARGET | grep -q "^$root"; then
    # never rm -rf through a bind mount of the host's /dev
    say "something is still mounted under $root: not removing $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
bind() {  # mount $1 at $root$1: a bind mount of the host's ("bind") or a new one of type $2
  mkdir -p "$root$1"
  if [ "$2" = bind ]; then mount --rbind "$1" "$root$1"; else mount -t "$2" "$2" "$root$1"; fi
  mounted+=("$root$1")
}
step() {  # label, command...
  local label=$1 started
  shift
  started=$(date +%s)
  say "$label"
  "$@"
  say "$label: done in $(( $(date +%s) - started ))s"
}
inside() {  # a command line run in the clone, in the root filesystem, with a clean environment
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/agc-controller && $1"
}

bootstrap() {
  debootstrap --include=git,make,ca-certificates bookworm "$root" "$mirror" \
    >"$logs/debootstrap.log" 2>&1 || fail "debootstrap failed (log: $logs/debootstrap.log)."
  # the root filesystem as a mount of its own: `ip netns exec` re-marks / inside
  # a chroot, which fails when / is not a mount point
  mount --bind "$root" "$root"
  mounted+=("$root")
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # This host's own TLS trust goes in too (a machine whose egress goes through a
  # TLS-intercepting proxy trusts that proxy's CA; on a plain network there is none)
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$root/etc/pip.conf"; fi
  bind /proc proc
  bind /sys sysfs
  # a new sysfs has no cgroup hierarchies mounted: the tests' kubelet needs the host's
  bind /sys/fs/cgroup bind
  bind /dev bind
  bind /run tmpfs
  git clone -q "$repo" "$root/root/agc-controller"
}

make_run() {
  # its own process group, so that Ctrl-C (SIGINT to the group) can be sent as a user would
  setsid bash -c "$(declare -f inside); root=$root; inside 'make run'" >"$logs/make-run.log" 2>&1 &
  local group=$! waited=0
  # the banner ("Try:") comes once every curl line was tried
  until grep -q '^Try:' "$logs/make-run.log"; do
    kill -0 "$group" 2>/dev/null || { tail -30 "$logs/make-run.log" >&2; fail "make run exited before its banner."; }
    (( waited++ < 2400 )) || { tail -30 "$logs/make-run.log" >&2; fail "no banner after 40 minutes."; }
    sleep 1
  done
  sleep 2
  grep -q '^WARNING: .* not answered' "$logs/make-run.log" \
    && { tail -30 "$logs/make-run.log" >&2; fail "make run's examples did not answer as their curl lines say."; }
  sed -n '/^Gateway /,/export KUBECONFIG/p' "$logs/make-run.log" >&2
  kill -INT -- "-$group"
  wait "$group" || true  # make reports the interrupt in its status, as in a terminal
  local left=() proc
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$root" ] && left+=("${proc#/proc/}")
  done
  [ ${#left[@]} -eq 0 ] || fail "make run left processes behind after Ctrl-C: ${left[*]}"
}

make_test() {
  inside "make test" >"$logs/make-test.log" 2>&1 \
    || { tail -40 "$logs/make-test.log" >&2; fail "make test failed (log: $logs/make-test.log)."; }
  grep -E '^\[(test|conformance)\]|passed|PASS$' "$logs/make-test.log" | tail -8 >&2
}

step "debootstrap Debian 12 (base system, git, make) from $mirror" bootstrap
step "make run (cold: installs the Debian packages and Go, builds the control plane)" make_run
step "make test" make_test
say "both README commands work on a fresh Debian 12"
