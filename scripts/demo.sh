#!/bin/sh
# demo.sh: offload a real build to a local builder and bring the result home.
#
# It starts an OpenSSH builder on 127.0.0.1 with a Nix store of its own
# (scripts/test-builder.sh), then runs nix-build as a client with another
# store of its own (scripts/test-client.sh), with offload as the build hook
# and no local builds allowed. The derivation is for aarch64-linux, which
# the builder "emulates" (its nix.conf lists it in extra-platforms), as an
# x86 server with qemu-user does for a Raspberry Pi. Everything it creates
# is removed at the end. Needs root; `make demo` installs the rest.
#
#   scripts/demo.sh [--nix 2.8|2.34]     (or NIX=2.34 make demo)
#
# The client's Nix is the machine's (Debian 12: 2.8) by default; with 2.34
# (or "current") it is Debian unstable's, run from the cached root of
# scripts/unstable-root.sh (built when missing, which takes minutes once)
# through scripts/test-client-sid.sh.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
nix=${NIX:-2.8}
while [ $# -gt 0 ]; do
	case $1 in
	--nix) [ $# -ge 2 ] || { echo "demo.sh: --nix needs a version" >&2; exit 2; }; nix=$2; shift 2 ;;
	--nix=*) nix=${1#--nix=}; shift ;;
	*) echo "usage: $0 [--nix 2.8|2.34]" >&2; exit 2 ;;
	esac
done
case $nix in
2.8 | host) unset OFFLOAD_TEST_CLIENT ;;
2.34 | current | sid) export OFFLOAD_TEST_CLIENT=sid ;;
*) echo "demo.sh: --nix $nix: want 2.8 (this machine's) or 2.34 (Debian unstable's)" >&2; exit 2 ;;
esac
[ -x "$root/offload" ] || { echo "demo.sh: build offload first (make build)" >&2; exit 1; }

work=$(mktemp -d /tmp/offload-demo.XXXXXX)
# The hook must be reachable from the client's root too, which for current
# Nix is the unstable root, where /tmp is the machine's.
offload="$work/offload"
cp "$root/offload" "$offload"
cleanup() {
	scripts/test-builder.sh stop "$work/builder" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting a builder (sshd on 127.0.0.1, its own /nix/store)"
scripts/test-builder.sh start "$work/builder" builder1 > "$work/builder.env"
. "$work/builder.env"
echo "builder1 listens on 127.0.0.1:$BUILDER_PORT; host key pinned from the machines line"

# The client finds builder1 through an ssh_config file, as a board's root
# would through ~/.ssh/config. The host key is pinned in the machines line
# (field 8), so no known_hosts entry is needed.
grep -v -e UserKnownHostsFile -e StrictHostKeyChecking "$BUILDER_SSH_CONFIG" > "$work/ssh_config"
export NIX_SSHOPTS="-F $work/ssh_config"
# builder1 runs on this machine, so its load is the demo's own (and that
# of whatever else runs here): reading it would postpone the build for as
# long as the machine is busy. A real builder's load is its own.
export OFFLOAD_LOAD_AWARE=false
machines="ssh://builder1 aarch64-linux,x86_64-linux - 2 1 big-parallel - $BUILDER_HOST_KEY_BASE64"

cat > "$work/demo.nix" <<NIX
derivation {
  name = "hello-from-builder1";
  system = "aarch64-linux";
  builder = "/bin/sh";
  args = [ "-c" ''
    echo "compiling for aarch64-linux on \$(/bin/uname -n) (\$(/bin/uname -m))"
    echo "built for aarch64-linux on \$(/bin/uname -n), at \$(/bin/date -u)" > \$out
  '' ];
  demo = "$(date +%s)";
}
NIX

say "The client's Nix"
scripts/test-client.sh "$work/client" nix-build --version

say "offload machines"
"$offload" machines --builders "$machines"

say "nix-build --max-jobs 0 (nothing may build locally), build-hook = offload"
scripts/test-client.sh "$work/client" nix-build --no-out-link "$work/demo.nix" \
	--max-jobs 0 --option build-hook "$offload" --builders "$machines" > "$work/out"
out=$(cat "$work/out")

say "The result, in the client's own store"
echo "$out"
scripts/test-client.sh "$work/client" sh -c "cat '$out'; nix-store -q --deriver '$out'; nix-store --verify-path '$out' && echo 'valid, contents verified'"

say "It was built in builder1's store, not the client's"
scripts/test-builder.sh exec "$work/builder" nix-store --check-validity "$out" && echo "builder1 has $out"

say "How builder1 runs its systems (probed beside the build)"
scripts/test-client.sh "$work/client" "$offload" machines --builders "$machines" | sed -n '/^BUILDER/,$p'

say "offload status (the client's view of its builders)"
scripts/test-client.sh "$work/client" "$offload" status -v --builders "$machines" || true

say "Done; removing the builder and both stores"
