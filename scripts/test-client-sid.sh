#!/bin/sh
# test-client-sid.sh: run a command with current Nix (the Debian unstable
# root of scripts/unstable-root.sh) and a store of its own.
#
#   test-client-sid.sh DIR CMD...
#
# CMD runs chrooted into the unstable root, in a private mount namespace in
# which:
#   - the root itself is read-only, so no run changes the cached root;
#   - DIR/nix is bind-mounted over the root's /nix;
#   - /proc is mounted, /dev and /tmp are bound from the machine (test
#     files and the offload binary live under /tmp), /run is DIR/run, so
#     that every command run with DIR sees the same /run, as on one
#     machine (offload's relay socket lives there);
#   - DIR, $TMPDIR and every directory in $OFFLOAD_SID_BINDS
#     (space-separated) are bound at their own paths when they are not
#     under /tmp already.
# NIX_CONF_DIR is DIR/etc (created with a default nix.conf when missing)
# and HOME is DIR/home. The mounts live and die with the namespace: none
# reaches the machine's own mount table. Builders use it too
# (scripts/test-builder.sh with BUILDER_SID=1), with their own DIR.
#
# The root is the one scripts/unstable-root.sh prints (built when missing;
# $OFFLOAD_SID_ROOT says where it lives).
# Needs root, unshare and chroot.
set -eu
# Builders' sessions run this with a PATH that lacks chroot's directory.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
[ $# -ge 2 ] || { echo "usage: $0 DIR CMD..." >&2; exit 2; }
dir=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$("$here/unstable-root.sh")
mkdir -p "$dir/nix" "$dir/etc" "$dir/home" "$dir/run"
dir=$(cd "$dir" && pwd)
[ -f "$dir/etc/nix.conf" ] || cat > "$dir/etc/nix.conf" <<CONF
build-users-group =
sandbox = false
substituters =
CONF

# The mount points of directories outside /tmp must exist before the root
# turns read-only; creating an empty directory is the only change a run
# makes to the cached root.
binds=
for d in "$dir" ${TMPDIR:-} ${OFFLOAD_SID_BINDS:-}; do
	case $d in /tmp | /tmp/*) continue ;; /*) ;; *) echo "$0: $d: not an absolute path" >&2; exit 2 ;; esac
	mkdir -p "$root$d"
	binds="$binds $d"
done

# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare --mount --propagation private sh -eu -c '
	root=$1 dir=$2 binds=$3
	shift 3
	mount --bind "$root" "$root"
	mount -o remount,bind,ro "$root"
	mount --bind "$dir/nix" "$root/nix"
	mount -t proc proc "$root/proc"
	mount --rbind /dev "$root/dev"
	mount --rbind /tmp "$root/tmp"
	mount --bind "$dir/run" "$root/run"
	for d in $binds; do mount --rbind "$d" "$root$d"; done
	exec chroot "$root" /usr/bin/env \
		HOME="$dir/home" NIX_CONF_DIR="$dir/etc" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		"$@"
' sh "$root" "$dir" "$binds" "$@"
