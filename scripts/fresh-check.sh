#!/bin/sh
# fresh-check.sh: run the README's two commands, `make demo` and
# `make test`, on a pristine Debian 12 machine: a new copy of a minimal
# Debian 12 root for every run, with nothing in it but what a fresh server
# has (debootstrap's minbase, make, git, ca-certificates, Go in
# /usr/local/go). A step the README or scripts/deps.sh forgot fails here,
# where on a developer's machine a leftover would have hidden it.
#
#   fresh-check.sh [COMMAND]   default: make demo && make test
#
# What it does:
#   1. builds the root once with debootstrap and keeps it as a tarball,
#      $OFFLOAD_FRESH_CACHE/debian12-minbase.tar (default /var/cache/offload);
#   2. unpacks a new copy for this run under /var/tmp, clones the commit
#      under test (HEAD of this repository) into /root/offload in it;
#   3. carries in what every machine of this kind has from its image and
#      a Debian install does not: the apt sources and Acquire settings,
#      the CA certificates (package registries may be reached through a
#      proxy with a CA of its own), resolv.conf, Go's environment file;
#   4. in private mount and PID namespaces, binds the copy onto itself and
#      makes it the root with pivot_root (a plain chroot would leave the
#      test builders' nsenter and unshare --propagation on the machine's
#      own root), binds /usr/local/go and the cached Debian unstable root
#      with current Nix (a test fixture, scripts/unstable-root.sh)
#      read-only, and runs COMMAND as root in /root/offload;
#   5. removes the copy.
#
# Needs root, unshare, pivot_root (util-linux) and git on the machine;
# installs debootstrap when missing. The Go build, module and fuzz caches start empty every run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${OFFLOAD_FRESH_CACHE:-/var/cache/offload}
tarball=$cache/debian12-minbase.tar
suite=bookworm
packages=make,git,ca-certificates
command=${1:-make demo && make test}

die() { echo "fresh-check: $*" >&2; exit 1; }
say() { echo "fresh-check: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, namespaces)"
[ -x /usr/local/go/bin/go ] || die "no Go in /usr/local/go (a fresh machine of this kind has it there)"
if ! command -v debootstrap >/dev/null 2>&1; then
	say "installing debootstrap"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
		die "could not install debootstrap"
fi
for tool in unshare pivot_root git; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done

# 1. The pristine root, once.
mkdir -p "$cache"
exec 9>"$tarball.lock"
flock 9
if [ ! -f "$tarball" ]; then
	mirror=${OFFLOAD_DEBIAN_MIRROR:-$("$here/debian-mirror.sh" "$suite" || true)}
	[ -n "$mirror" ] || die "no Debian archive serving $suite in the apt configuration (set OFFLOAD_DEBIAN_MIRROR)"
	tmp=$(mktemp -d "$cache/debian12.XXXXXX")
	trap 'rm -rf --one-file-system "$tmp"' EXIT
	say "building a Debian 12 minbase root from $mirror (once)"
	start=$(date +%s)
	unshare --mount --propagation private \
		debootstrap --variant=minbase --include="$packages" "$suite" "$tmp/root" "$mirror" \
		>"$tarball.log" 2>&1 || die "debootstrap failed (log: $tarball.log)"
	rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*
	tar -C "$tmp/root" -cf "$tmp/root.tar" . || die "could not pack the root"
	mv "$tmp/root.tar" "$tarball"
	rm -rf --one-file-system "$tmp"
	trap - EXIT
	say "built $tarball ($(du -h "$tarball" | cut -f1)) in $(($(date +%s) - start)) s"
fi
exec 9>&-

# The cached root with current Nix: a fixture the tests bind, built on
# the machine (it takes minutes and is not an install step).
sid=$("$here/unstable-root.sh")

# 2. A new copy, and the commit under test.
commit=$(git -C "$repo" rev-parse HEAD)
[ -z "$(git -C "$repo" status --porcelain)" ] || say "the work tree has changes that are not committed: checking $commit as committed"
mkdir -p /var/tmp/offload-fresh
# Copies of runs that were killed before they could remove theirs.
for old in /var/tmp/offload-fresh/run.*; do
	[ -d "$old" ] && ! kill -0 "${old##*.}" 2>/dev/null && rm -rf --one-file-system "$old"
done
run=/var/tmp/offload-fresh/run.$$
rm -rf --one-file-system "$run"
mkdir "$run"
trap 'rm -rf --one-file-system "$run"' EXIT
trap 'exit 1' HUP INT TERM
r=$run/root
mkdir "$r"
tar -C "$r" -xf "$tarball"
git clone -q --no-local "$repo" "$r/root/offload"
git -C "$r/root/offload" checkout -q --detach "$commit"

# 3. What the machine's image has beside Debian.
rm -f "$r/etc/apt/sources.list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
	[ -f "$f" ] && cp "$f" "$r$f"
done
for f in /etc/apt/apt.conf.d/*; do
	[ -f "$f" ] && grep -q '^[[:space:]]*Acquire' "$f" && cp "$f" "$r$f"
done
for f in /usr/local/share/ca-certificates/*; do
	[ -f "$f" ] && mkdir -p "$r/usr/local/share/ca-certificates" && cp "$f" "$r$f"
done
cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$r/etc/resolv.conf"
goenv=$(/usr/local/go/bin/go env GOENV)
if [ -f "$goenv" ]; then
	mkdir -p "$r/root/.config/go"
	cp "$goenv" "$r/root/.config/go/env"
fi
mkdir -p "$r/usr/local/go" "$r$sid"

# The environment a CI run or a person's root shell has: no Go on PATH
# (the Makefile finds /usr/local/go), proxies and CI passed on when set.
envs="HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=${TERM:-dumb} LANG=C.UTF-8"
for v in CI OFFLOAD_REQUIRE_SID http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY GOPROXY GONOSUMDB GOPRIVATE FUZZTIME; do
	eval "val=\${$v-}"
	# shellcheck disable=SC2154 # set by eval
	[ -n "$val" ] && envs="$envs $v=$val"
done

# 4. The copy as the root of private mount and PID namespaces.
say "running '$command' in a pristine Debian 12 root at $commit"
start=$(date +%s)
status=0
# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --pid --fork --propagation private sh -eu -c '
	r=$1 sid=$2 envs=$3 command=$4
	mount --bind "$r" "$r"
	mount -t proc proc "$r/proc"
	mount --rbind /dev "$r/dev"
	mount --rbind /sys "$r/sys"
	mount -t tmpfs -o mode=755 tmpfs "$r/run"
	mount --bind /usr/local/go "$r/usr/local/go"
	mount -o remount,bind,ro "$r/usr/local/go"
	mount --bind "$sid" "$r$sid"
	mount -o remount,bind,ro "$r$sid"
	cd "$r"
	mkdir -p .oldroot
	pivot_root . .oldroot
	cd /
	umount -l /.oldroot
	rmdir /.oldroot
	cd /root/offload
	# shellcheck disable=SC2086 # one word a variable
	exec env -i $envs sh -c "$command"
' sh "$r" "$sid" "$envs" "$command" || status=$?
took=$(($(date +%s) - start))
if [ "$status" -ne 0 ]; then
	die "'$command' failed in a pristine Debian 12 root (exit $status, after $took s)"
fi
say "'$command' passed in a pristine Debian 12 root in $took s"
