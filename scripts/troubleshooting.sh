#!/bin/sh
# troubleshooting.sh: write docs/troubleshooting.md with real output.
#
#   scripts/troubleshooting.sh [OUT]     (default OUT: docs/troubleshooting.md)
#
# The document answers the NixOS wiki's questions about distributed builds
# with offload commands. Every output in it comes from this run: the script
# starts test builders on 127.0.0.1 (scripts/test-builder.sh), puts each in
# the situation a question is about (a builder that lacks a system, one
# whose login prints a banner, one without nix-store on its PATH, one whose
# Nix does not trust the SSH user, one whose host key is unknown), runs the
# commands and writes their output between the prose below, which is the
# template. Temporary paths are replaced by the paths a real machine has
# (/etc/nix, /root, /usr/local/bin); ports, times, hashes and keys are left
# as they came, and internal/e2e's TestTroubleshootingDoc compares them
# normalised, so the document fails CI when what offload prints changes.
#
# Needs root, Nix, sshd (make deps). $OFFLOAD names the binary (default:
# one built from this tree). About 15 s.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${1:-docs/troubleshooting.md}
case $out in /*) ;; *) out="$repo/$out" ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (mount namespaces, sshd)" >&2; exit 2; }
# offload finds root's ~/.ssh through the user database, as ssh does, not
# through $HOME: the run has a private mount namespace in which a
# directory of its own is bound over /root.
if [ -z "${OFFLOAD_TS_NAMESPACE:-}" ]; then
	OFFLOAD_TS_NAMESPACE=1 exec unshare --mount --propagation private "$0" "$@"
fi

work=$(mktemp -d /tmp/offload-ts.XXXXXX)
bdirs="b1 b2 b3 b4 b5"
cleanup() {
	for b in $bdirs; do
		[ -f "$work/srv/$b/nix-daemon.pid" ] && kill "$(cat "$work/srv/$b/nix-daemon.pid")" 2>/dev/null
		scripts/test-builder.sh stop "$work/srv/$b" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

offload=${OFFLOAD:-}
if [ -z "$offload" ]; then
	CGO_ENABLED=0 go build -o "$work/offload.build" ./cmd/offload
	offload=$work/offload.build
fi
mkdir -p "$work/usr/local/bin" "$work/root/.ssh" "$work/c/etc" "$work/var/offload"
mount --bind "$work/root" /root
cp "$offload" "$work/usr/local/bin/offload"
hook=$work/usr/local/bin/offload

# The machine as a user has it: root's home, Nix's config dir (which the
# client's nix-build reads too: scripts/test-client.sh uses DIR/etc),
# offload's state.
export HOME="$work/root" NIX_CONF_DIR="$work/c/etc" NIX_USER_CONF_FILES="$work/none"
# Load-aware reads of the builders would show this machine's load, which
# changes from run to run.
export OFFLOAD_STATE_DIR="$work/var/offload" OFFLOAD_CONNECT_TIMEOUT=30s OFFLOAD_LOAD_AWARE=false
unset NIX_SSHOPTS NIX_REMOTE OFFLOAD_ONLY OFFLOAD_AVOID NIX_CONFIG 2>/dev/null || true

start() { # NAME: start builder NAME with $BUILDER_NIX_CONF, $BUILDER_ENV
	scripts/test-builder.sh start "$work/srv/$1" "$1" > "$work/srv.$1.env"
	cat "$work/srv/$1/ssh_config" >> "$work/root/.ssh/config"
	grep BUILDER_HOST_KEY_BASE64= "$work/srv.$1.env" | cut -d= -f2-
}
k1=$(start b1)
# b2 builds x86_64-linux only: no extra-platforms (Nix's default would
# depend on this machine's CPU).
k2=$(BUILDER_NIX_CONF="extra-platforms =
system-features = big-parallel" start b2)
# b3's login prints a greeting, as a shell start-up file that echoes does.
k3=$(BUILDER_ENV='GREETING=1; echo "Welcome to b3!"' start b3)
# b4 has no nix-store on the PATH of a non-interactive login.
k4=$(BUILDER_ENV='PATH=/nonexistent' start b4)
# b5's Nix runs as a daemon that trusts nobody: root logs in but is an
# ordinary user of the store there.
k5=$(BUILDER_NIX_CONF="trusted-users = nobody" BUILDER_ENV='NIX_REMOTE=daemon' start b5)
scripts/test-builder.sh exec "$work/srv/b5" sh -c 'nix-daemon >/dev/null 2>&1 </dev/null & echo $!' > "$work/srv/b5/nix-daemon.pid"
i=0
until [ -S "$work/srv/b5/nix/var/nix/daemon-socket/socket" ] || [ $i -gt 100 ]; do sleep 0.1; i=$((i + 1)); done

cat > "$work/c/etc/nix.conf" <<CONF
build-users-group =
sandbox = false
substituters =
max-jobs = 0
build-hook = $hook
CONF
cat > "$work/c/etc/machines" <<MACHINES
ssh://b1 x86_64-linux,aarch64-linux - 2 2 big-parallel - $k1
ssh://b2 x86_64-linux,aarch64-linux - 4 1 big-parallel - $k2
MACHINES
cat > "$work/hello.nix" <<'NIX'
derivation {
  name = "hello";
  system = "x86_64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo hello from the builder; echo hello > $out" ];
}
NIX
cat > "$work/riscv.nix" <<'NIX'
derivation {
  name = "hello-riscv";
  system = "riscv64-linux";
  builder = "/bin/sh";
  args = [ "-c" "echo hello > $out" ];
}
NIX

# Paths as a user's machine has them.
tidy() {
	sed -e "s#$work/c/etc#/etc/nix#g" -e "s#$work/c/nix#/nix#g" -e "s#$work/srv/\(b[0-9]\)/keys/client#/root/.ssh/id_\1#g" \
		-e "s#$work/srv/\(b[0-9]\)/known_hosts#/root/.ssh/known_hosts#g" -e "s#$work/var/offload#/nix/var/nix/offload#g" \
		-e "s#$work/hello.nix#hello.nix#g" -e "s#$work/riscv.nix#riscv.nix#g" -e "s#$work##g"
}

# show 'COMMAND' [ARGS...]: a console block with the command as a user
# types it and what it printed (stdout and stderr, in order). The command
# runs as given in ARGS, or as COMMAND itself.
show() {
	shown=$1
	shift
	[ $# -gt 0 ] || set -- sh -c "$shown"
	printf '```console\n$ %s\n' "$shown"
	"$@" 2>&1 | tidy || true
	printf '```\n'
}
client() { scripts/test-client.sh "$work/c" "$@"; }
PATH="$work/usr/local/bin:$PATH"

{
cat <<'EOF'
<!-- Written by scripts/troubleshooting.sh: edit the script, not this file. -->
# Troubleshooting

The NixOS wiki's page on distributed builds ends with questions people
keep asking. Here they are again, answered with offload. Every output
below is real: `scripts/troubleshooting.sh` starts test builders on
127.0.0.1, puts each in the situation the question is about, runs the
commands and writes this file, and CI fails when an output here no longer
matches what offload prints. Paths are shown as on a real machine
(`/etc/nix`, `/root/.ssh`); the builders are `b1` to `b5` in root's
`~/.ssh/config`, and `/etc/nix/machines` lists two of them:

EOF
show 'cat /etc/nix/machines' cat "$work/c/etc/machines"
cat <<'EOF'

and `/etc/nix/nix.conf` has `build-hook = /usr/local/bin/offload` and
`max-jobs = 0` (nothing builds locally).

## How do I know if I'm distributing my build at all?

Nix says where each build runs: `building '…' on 'ssh://b1'`. A build
without `on '…'` ran locally. offload adds what it did in between:

EOF
show 'nix-build hello.nix' client nix-build --no-out-link "$work/hello.nix"
cat <<'EOF'

`offload status` counts what every hook on this machine did, per builder
(and `offload status --log` shows the last decisions and why):

EOF
show 'offload status'
show 'offload status --log'
cat <<'EOF'

## Why aren't my builds distributed?

Ask offload what it would do with a derivation, without building
anything: `offload pick` goes through the same machines, load and rules
as the hook and gives every builder's reason.

EOF
show 'offload pick --system riscv64-linux'
cat <<'EOF'

No builder lists riscv64-linux, so the hook declines, and with
`max-jobs = 0` Nix has nowhere to build it. nix-build shows offload's
reason first:

EOF
show 'nix-build riscv.nix' client nix-build --no-out-link "$work/riscv.nix"
cat <<'EOF'

Other common reasons, each named by `offload pick`: the derivation needs a
feature (`requiredSystemFeatures`, e.g. `big-parallel` or `kvm`) that no
builder lists in its features field; every builder is busy (`max-jobs` of
its line reached: the hook tells Nix to postpone); the builder was drained
(`offload drain b1`) or is avoided after failed connections (`offload
status` shows `down`); `OFFLOAD_ONLY` or `OFFLOAD_AVOID` leaves it out;
and, under nix-daemon, a `--builders` passed by a user who is not in
`trusted-users` is ignored by the daemon (see [choosing builders](choosing-builders.md)).

## Ping works but the build doesn't distribute

`nix store ping` only logs in. `offload check` logs in as the hook would,
speaks the serve protocol, asks the builder's Nix what it builds, and
compares that with the machines line. Here b2's line claims aarch64-linux,
but b2 neither is aarch64 nor emulates it (its nix.conf has no
`extra-platforms`), so every aarch64 build sent there would fail:

EOF
show 'offload check'
cat <<'EOF'

Fix the machines line, or the builder: on an x86 builder with
qemu-user and binfmt_misc, `extra-platforms = aarch64-linux` (NixOS:
`boot.binfmt.emulatedSystems = [ "aarch64-linux" ];`).

## Broken pipe

Nix's own hook reports `error: writing to file: Broken pipe` (or `cannot
connect to 'b4'`) when the remote side of the SSH session ends at once,
most often because `nix-store` is not on the PATH of a non-interactive
login on the builder (a single-user install that sets PATH only in
`~/.profile`). offload says what the remote said:

EOF
show 'offload --builders "ssh://b4 x86_64-linux" check' offload --builders "ssh://b4 x86_64-linux - 1 1 - - $k4" check
cat <<'EOF'

Put Nix on the PATH for non-interactive sessions on the builder, or name
the program in the machines line: `ssh://b4?remote-program=/nix/var/nix/profiles/default/bin/nix-store`.

## serialised integer … is too big

`error: serialised integer 7022364302818028366 is too big for type
unsigned long` means Nix read text where it expected the protocol: the
builder's shell start-up files print something (a greeting, `fortune`,
a `set -x` trace) on every login, and the bytes of "Welcome …" were read as
a number. offload shows the text it got:

EOF
show 'offload --builders "ssh://b3 x86_64-linux" check' offload --builders "ssh://b3 x86_64-linux - 1 1 - - $k3" check
cat <<'EOF'

Make the start-up files quiet for non-interactive shells (`[ -z "$PS1" ] &&
return` at the top of `~/.bashrc`), or print to stderr.

## Host key verification failed

Under nix-daemon the hook runs as root, so it is root's `known_hosts`
that must know the builder, not yours; `ssh b1` as you proves nothing.
offload never asks: a builder whose key is unknown is refused, and the
message gives the key it offered, so you can compare it with the
builder's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` there):

EOF
cat "$work/srv/b1/ssh_config" | sed -e 's/^Host b1$/Host b1-new/' -e 's#UserKnownHostsFile .*#UserKnownHostsFile ~/.ssh/known_hosts#' >> "$work/root/.ssh/config"
touch "$work/root/.ssh/known_hosts"
show 'offload --builders "ssh://b1-new x86_64-linux" check' offload --builders "ssh://b1-new x86_64-linux" check
cat <<'EOF'

The fix that cannot go stale is to pin the key in the machines line, as
above: field 8 is `base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub` of the
builder; with it, known_hosts files are not read at all.

## Untrusted user (`lacks a valid signature`)

A build's inputs are copied to the builder unsigned. The builder's Nix
takes them only from a user it trusts: root when Nix runs without a
daemon there, otherwise a user in its `trusted-users` (or any user with
`require-sigs = false`). `offload setup` checks, per builder, by adding a
tiny unsigned path, and says which one does not trust you. b5's Nix
runs as a daemon with `trusted-users = nobody`:

EOF
show 'offload setup --builders "ssh://b5 x86_64-linux …"' offload setup --builders "ssh://b5 x86_64-linux - 1 1 - - $k5"
cat <<'EOF'

On b5, add the user the machines line logs in as to `trusted-users` in
`/etc/nix/nix.conf` (NixOS: `nix.settings.trusted-users = [ "root"
"builder" ];`) and restart its nix-daemon.

## More

- [Setting up](setup.md): `offload setup`, NixOS, other Linux with
  nix-daemon, single-user Nix.
- [Choosing builders](choosing-builders.md) at build time.
- [`offload status`](status.md) and [`offload pick`](pick.md), line by line.
EOF
} > "$work/doc.md"
mv "$work/doc.md" "$out"
echo "wrote $out" >&2
