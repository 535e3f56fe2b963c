#!/bin/sh
# unstable-root.sh: a minimal Debian unstable (sid) root with current Nix
# (nix-bin, 2.34 at the time of writing) and openssh-client, for running
# the end-to-end tests against current Nix on a machine whose own Nix is
# older. Prints the root's path.
#
#   unstable-root.sh            build the root when missing, print its path
#
# The root is built once with debootstrap and then reused. It is built in
# a temporary directory next to its final place and renamed when complete,
# so an interrupted build is never mistaken for a finished one; a lock
# file keeps two builds from running at once. debootstrap runs in a
# private mount namespace, so the /proc and /sys it mounts inside the
# root vanish with it even when it is killed.
#
# Variables:
#   OFFLOAD_SID_ROOT       where the root lives (default /var/cache/offload/sid-root)
#   OFFLOAD_DEBIAN_MIRROR  the Debian mirror to use (default: the first Debian
#                          archive in the machine's apt configuration)
#
# Needs root, debootstrap (installed with apt-get when missing), unshare
# and flock (util-linux).
set -eu

root=${OFFLOAD_SID_ROOT:-/var/cache/offload/sid-root}
suite=sid
# debootstrap does not resolve virtual packages: libdbd-sqlite3-perl (which
# nix-bin depends on) needs perl-dbdabi-94, which only libdbi-perl provides.
packages=nix-bin,openssh-client,libdbi-perl

die() { echo "$0: $*" >&2; exit 1; }

# A finished root: renamed into place only when complete.
ready() { [ -x "$root/usr/bin/nix-build" ] && [ -f "$root/.offload-sid-root" ]; }

# The tests of a chrooted nix-daemon bind the root at its own path inside
# itself (see internal/e2e/setup_test.go); the mount point must exist
# before a run binds the root read-only.
finish() {
	[ -d "$root$root" ] || mkdir -p "$root$root"
	echo "$root"
	exit 0
}

if ready; then
	finish
fi
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap)"

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
# Another run may have finished it while this one waited for the lock.
if ready; then
	finish
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	echo "$0: installing debootstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 ||
		die "could not install debootstrap"
fi

mirror=${OFFLOAD_DEBIAN_MIRROR:-$("$(dirname "$0")/debian-mirror.sh" "$suite" || true)}
[ -n "$mirror" ] || die "no Debian archive serving $suite in /etc/apt/sources.list or /etc/apt/sources.list.d (set OFFLOAD_DEBIAN_MIRROR)"

# Leftovers of interrupted builds: nothing is mounted in them (their
# mounts lived in debootstrap's namespace), but stay on this file system.
for old in "$root".tmp.*; do
	[ -d "$old" ] && rm -rf --one-file-system "$old"
done
tmp=$root.tmp.$$
trap 'rm -rf --one-file-system "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

start=$(date +%s)
echo "$0: building a Debian $suite root with $packages from $mirror in $root (once; takes a few minutes)" >&2
unshare --mount --propagation private \
	debootstrap --variant=minbase --include="$packages" \
	"$suite" "$tmp" "$mirror" >"$root.log" 2>&1 ||
	{
		cat "$tmp/debootstrap/debootstrap.log" >>"$root.log" 2>/dev/null || true
		grep -E '^(E|W):|dpkg: (error|dependency)' "$root.log" | tail -n 20 >&2
		die "debootstrap failed (log: $root.log)"
	}

# Keep it small: no package lists, no downloaded .debs, no docs.
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* \
	"$tmp/usr/share/doc/"* "$tmp/usr/share/man/"* "$tmp/usr/share/locale/"*
# The tests bind a store of their own over /nix.
mkdir -p "$tmp/nix"
# Nix needs /proc (it reads /proc/self/exe), mounted only in a namespace.
unshare --mount --propagation private sh -c \
	'mount -t proc proc "$1/proc" && exec chroot "$1" nix-build --version' sh "$tmp" \
	>"$tmp/.offload-sid-root" || die "nix-build does not run in the new root"
mv "$tmp" "$root"
trap - EXIT
echo "$0: built $root ($(cat "$root/.offload-sid-root"), $(du -sh "$root" | cut -f1)) in $(($(date +%s) - start)) s" >&2
finish
