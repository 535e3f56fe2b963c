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
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
offload="$root/offload"
[ -x "$offload" ] || { echo "demo.sh: build offload first (make build)" >&2; exit 1; }

work=$(mktemp -d /tmp/offload-demo.XXXXXX)
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

say "offload status (the client's view of its builders)"
scripts/test-client.sh "$work/client" "$offload" status -v --builders "$machines" || true

say "Done; removing the builder and both stores"
