#!/bin/sh
# test-builder.sh: a Nix remote builder on this machine, for tests, the demo
# and the benchmarks.
#
# It runs OpenSSH's sshd on 127.0.0.1 inside a private mount namespace in
# which a directory of its own is bind-mounted over /nix, so the builder has
# its own ordinary /nix/store, separate from the client's. Every session runs
# a forced command that executes the requested command with the builder's
# nix.conf, as a real builder's sshd would run it, without root's shell rc
# files. Needs root, sshd, ssh-keygen, unshare and nsenter.
#
#   test-builder.sh start DIR NAME [PORT]   start a builder; prints DIR/env
#   test-builder.sh stop DIR                stop it (its store stays in DIR)
#   test-builder.sh exec DIR CMD...         run CMD inside the builder's view
#
# Extra nix.conf lines for the builder can be given in $BUILDER_NIX_CONF
# (default: extra-platforms for aarch64/riscv64/armv7l, so it acts like an
# x86 builder that emulates them, and the features kvm and big-parallel).
# $BUILDER_ENV adds one VAR=value line to every session's environment.
# $BUILDER_MAX_SESSIONS is sshd's MaxSessions (default 100; OpenSSH's own
# default is 10) and $BUILDER_LOG_LEVEL its LogLevel (default ERROR;
# VERBOSE logs each connection to DIR/sshd.log).
# With BUILDER_SID=1 every session (and exec) runs current Nix instead: it
# enters the Debian unstable root with the builder's own /nix through
# scripts/test-client-sid.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

# put FILE [MODE]: FILE gets stdin in one step (a restart rewrites files
# that sessions still running, or starting, read).
put() {
	cat > "$1.new.$$" && chmod "${2:-644}" "$1.new.$$" && mv -f "$1.new.$$" "$1"
}

usage() { echo "usage: $0 start DIR NAME [PORT] | stop DIR | exec DIR CMD..." >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1 dir=$2
shift 2

case $cmd in
start)
	[ $# -ge 1 ] || usage
	name=$1 port=${2:-}
	case $name in localhost) echo "$0: a builder must not be called localhost: Nix runs it without SSH" >&2; exit 2 ;; esac
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	mkdir -p "$dir/nix" "$dir/etc" "$dir/home" "$dir/keys" /run/sshd
	chmod 700 "$dir/keys"
	[ -f "$dir/keys/host" ] || ssh-keygen -q -t ed25519 -N '' -C "$name-host" -f "$dir/keys/host"
	[ -f "$dir/keys/client" ] || ssh-keygen -q -t ed25519 -N '' -C "$name-client" -f "$dir/keys/client"
	cp "$dir/keys/client.pub" "$dir/authorized_keys"
	chmod 600 "$dir/authorized_keys"
	conf=${BUILDER_NIX_CONF:-"extra-platforms = aarch64-linux riscv64-linux armv7l-linux
system-features = kvm big-parallel nixos-test benchmark"}
	put "$dir/etc/nix.conf" <<CONF
build-users-group =
sandbox = false
substituters =
max-jobs = 8
$conf
CONF
	enter=
	if [ "${BUILDER_SID:-}" = 1 ]; then
		sid=$("$here/unstable-root.sh")
		echo "$sid" | put "$dir/sid"
		enter="'$here/test-client-sid.sh' '$dir'"
	fi
	[ "${BUILDER_SID:-}" = 1 ] || rm -f "$dir/sid"
	put "$dir/session" 755 <<SESSION
#!/bin/sh
# The builder's login: what a real builder's sshd would run, minus the
# user's shell rc files.
export HOME='$dir/home' NIX_CONF_DIR='$dir/etc' PATH=/usr/local/bin:/usr/bin:/bin
${BUILDER_ENV:+export $BUILDER_ENV}
exec $enter /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
SESSION
	# A random port can be taken (by another builder, or as the local
	# end of some connection): try others, unless the port was given.
	given=$port
	attempt=0
	while :; do
	attempt=$((attempt + 1))
	if [ -z "$given" ]; then
		port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000 ))
	fi
	cat > "$dir/sshd_config" <<SSHD
ListenAddress 127.0.0.1
Port $port
HostKey $dir/keys/host
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
ForceCommand $dir/session
# sshd runs the forced command with the login shell, and bash started by
# sshd reads ~/.bashrc: point HOME away from root's rc files.
SetEnv HOME=$dir/home
PidFile $dir/sshd.pid
MaxStartups 100:30:200
MaxSessions ${BUILDER_MAX_SESSIONS:-100}
LogLevel ${BUILDER_LOG_LEVEL:-ERROR}
SSHD
	[ -f "$dir/sshd.pid" ] && "$0" stop "$dir" 2>/dev/null || true
	# sshd -D stays in the foreground; unshare without --fork execs it, so
	# $! is sshd itself and the mount lives exactly as long as it does.
	unshare --mount --propagation private sh -c \
		'mount --bind "$1/nix" /nix && exec /usr/sbin/sshd -D -e -f "$1/sshd_config"' sh "$dir" \
		>>"$dir/sshd.log" 2>&1 </dev/null &
	pid=$!
	echo "$pid" > "$dir/sshd.pid"
	i=0
	until ssh-keyscan -T 1 -p "$port" -t ed25519 127.0.0.1 >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 50 ] || ! kill -0 "$pid" 2>/dev/null; then
			if [ -z "$given" ] && [ $attempt -lt 5 ] && grep -q 'Address already in use' "$dir/sshd.log"; then
				kill "$pid" 2>/dev/null || true
				: > "$dir/sshd.log"
				continue 2
			fi
			echo "$0: sshd for $name did not start on port $port:" >&2
			cat "$dir/sshd.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	# Another sshd may answer on the port ours failed to bind.
	sleep 0.1
	if kill -0 "$pid" 2>/dev/null; then
		break
	fi
	if [ -z "$given" ] && [ $attempt -lt 5 ]; then
		: > "$dir/sshd.log"
		continue
	fi
	echo "$0: sshd for $name exited after starting on port $port:" >&2
	cat "$dir/sshd.log" >&2
	exit 1
	done
	# Create the builder's store database now, so that the first session
	# does not pay for it.
	"$0" exec "$dir" nix-store --check-validity /nix/store/00000000000000000000000000000000-warm-up 2>/dev/null || true
	hostkey=$(cat "$dir/keys/host.pub")
	{
		echo "[127.0.0.1]:$port $hostkey"
		echo "$name $hostkey"
	} | put "$dir/known_hosts"
	put "$dir/ssh_config" <<SSHC
Host $name
	HostName 127.0.0.1
	Port $port
	User root
	IdentityFile $dir/keys/client
	IdentitiesOnly yes
	UserKnownHostsFile $dir/known_hosts
	StrictHostKeyChecking yes
	BatchMode yes
SSHC
	put "$dir/env" <<ENV
BUILDER_NAME=$name
BUILDER_DIR=$dir
BUILDER_PORT=$port
BUILDER_PID=$pid
BUILDER_KEY=$dir/keys/client
BUILDER_HOST_KEY_BASE64=$(base64 -w0 "$dir/keys/host.pub")
BUILDER_SSH_CONFIG=$dir/ssh_config
BUILDER_KNOWN_HOSTS=$dir/known_hosts
ENV
	cat "$dir/env"
	;;
stop)
	[ -f "$dir/sshd.pid" ] || exit 0
	pid=$(cat "$dir/sshd.pid")
	kill "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$dir/sshd.pid"
	;;
exec)
	[ $# -ge 1 ] || usage
	pid=$(cat "$dir/sshd.pid")
	dir=$(cd "$dir" && pwd)
	[ -f "$dir/sid" ] && exec "$here/test-client-sid.sh" "$dir" "$@"
	exec nsenter -t "$pid" -m -- env HOME="$dir/home" NIX_CONF_DIR="$dir/etc" "$@"
	;;
*) usage ;;
esac
