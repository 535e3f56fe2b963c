#!/bin/sh
# test-client.sh: run a command as a Nix client with a store of its own.
#
#   test-client.sh DIR CMD...
#
# CMD runs in a private mount namespace in which DIR/nix is bind-mounted
# over /nix, with NIX_CONF_DIR=DIR/etc (created with a default nix.conf
# when missing). The machine's own /nix/store is never touched, so every
# run starts from what DIR holds. Needs root and unshare.
#
# With OFFLOAD_TEST_CLIENT=sid, CMD runs with current Nix instead, from the
# Debian unstable root (scripts/test-client-sid.sh, same DIR layout).
set -eu
[ $# -ge 2 ] || { echo "usage: $0 DIR CMD..." >&2; exit 2; }
case ${OFFLOAD_TEST_CLIENT:-} in
'' | host) ;;
sid) exec "$(dirname "$0")/test-client-sid.sh" "$@" ;;
*) echo "$0: OFFLOAD_TEST_CLIENT=$OFFLOAD_TEST_CLIENT: want host or sid" >&2; exit 2 ;;
esac
dir=$1
shift
mkdir -p "$dir/nix" "$dir/etc"
dir=$(cd "$dir" && pwd)
[ -f "$dir/etc/nix.conf" ] || cat > "$dir/etc/nix.conf" <<CONF
build-users-group =
sandbox = false
substituters =
CONF
export NIX_CONF_DIR="$dir/etc"
exec unshare --mount --propagation private sh -c 'mount --bind "$1/nix" /nix && shift && exec "$@"' sh "$dir" "$@"
