#!/bin/sh
# bench/slowlink.sh: copying a 50 MiB output of real machine code back
# over a slow link, offload (compress off, auto, on) against Nix's own
# hook (/usr/libexec/nix/build-remote) without and with ?compress=true
# (OpenSSH's zlib). The builder's sshd runs in a network namespace of its
# own, reached through a veth pair whose both ends a tbf qdisc shapes to
# RATE; the output is the first 50 MiB of this machine's /usr/bin and
# shared libraries. Writes a table of wall times (median of REPS) on
# standard output. Needs root, ip and tc (iproute2), and what
# scripts/deps.sh installs.
#
#   bench/slowlink.sh
#
# Environment:
#   SLOWLINK_RATES="20mbit 100mbit"   link rates (tc's units)
#   SLOWLINK_REPS=3                   repetitions of each measurement
#   SLOWLINK_KEEP=1                   keep the scratch directory
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
RATES=${SLOWLINK_RATES:-20mbit 100mbit}
REPS=${SLOWLINK_REPS:-3}
BR=/usr/libexec/nix/build-remote
T0=$(date +%s)
say() { printf '[%3ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() { echo "bench/slowlink.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespace, mount namespaces)"
command -v tc >/dev/null || die "tc not found (Debian package iproute2)"
[ -x "$BR" ] || die "$BR not found (Debian's nix-bin provides it)"
export PATH="$PATH:/usr/local/go/bin"

work=$(mktemp -d /tmp/offload-slowlink.XXXXXX)
ns=offload-slow$$
hif=osh$$ nif=osn$$
hip=10.213.7.1 nip=10.213.7.2
cleanup() {
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	ip link del "$hif" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	if [ "${SLOWLINK_KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building offload"
CGO_ENABLED=0 go build -trimpath -o "$work/offload" ./cmd/offload

# 50 MiB of real binaries, where the builder (which sees this machine's
# files but its own /nix) reads them.
for f in /usr/bin/* /usr/lib/x86_64-linux-gnu/*.so*; do
	[ -f "$f" ] && cat "$f"
done 2>/dev/null | head -c 52428800 > "$work/bins"

say "starting the builder in network namespace $ns"
"$repo/scripts/test-builder.sh" start "$work/b1" b1 > "$work/b1.env"
"$repo/scripts/test-builder.sh" stop "$work/b1"
port=$(sed -n 's/^BUILDER_PORT=//p' "$work/b1.env")
ip netns add "$ns"
ip link add "$hif" type veth peer name "$nif"
ip link set "$nif" netns "$ns"
ip addr add "$hip/30" dev "$hif"
ip link set "$hif" up
ip -n "$ns" addr add "$nip/30" dev "$nif"
ip -n "$ns" link set "$nif" up
ip -n "$ns" link set lo up
sed "s/^ListenAddress 127.0.0.1/ListenAddress $nip/" "$work/b1/sshd_config" > "$work/b1/sshd_config.ns"
ip netns exec "$ns" unshare --mount --propagation private sh -c \
	'mount --bind "$1/nix" /nix && exec /usr/sbin/sshd -D -e -f "$2"' sh "$work/b1" "$work/b1/sshd_config.ns" \
	>> "$work/b1/sshd.log" 2>&1 </dev/null &
i=0
until ssh-keyscan -T 1 -p "$port" "$nip" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 50 ] || { cat "$work/b1/sshd.log" >&2; die "sshd in $ns did not start"; }
	sleep 0.1
done
printf '[%s]:%s %s\n' "$nip" "$port" "$(cat "$work/b1/keys/host.pub")" > "$work/known_hosts"
cat > "$work/ssh_config" <<SSHC
Host b1
	HostName $nip
	Port $port
	User root
	IdentityFile $work/b1/keys/client
	IdentitiesOnly yes
	UserKnownHostsFile $work/known_hosts
	BatchMode yes
SSHC
export NIX_SSHOPTS="-F $work/ssh_config"
echo "load-aware = false" > "$work/offload.conf"
export OFFLOAD_CONF="$work/offload.conf"

shape() { # RATE: both directions
	tc qdisc replace dev "$hif" root tbf rate "$1" burst 64kb latency 50ms
	ip netns exec "$ns" tc qdisc replace dev "$nif" root tbf rate "$1" burst 64kb latency 50ms
}

# run NAME HOOK URI [ENV...]: one build of a new 50 MiB output; prints ms.
run() {
	name=$1 hook=$2 uri=$3
	shift 3
	u="$name-$(date +%s%N)"
	expr="derivation { name = \"slow\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; args = [ \"-c\" \"/usr/bin/head -c 52428800 $work/bins > \$out; echo $u >> \$out\" ]; }"
	t0=$(date +%s%N)
	env "$@" "$repo/scripts/test-client.sh" "$work/c-$name" nix-build --no-out-link -E "$expr" \
		--max-jobs 0 --option build-hook "$hook" --builders "$uri x86_64-linux" >"$work/last.out" 2>"$work/last.err" ||
		{ tail -n 5 "$work/last.err" >&2; die "$name failed"; }
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-10s %-34s %10s\n' rate variant "median ms"
for rate in $RATES; do
	shape "$rate"
	for v in "offload compress=off" "offload compress=auto" "offload compress=on (level 3)" \
		"build-remote" "build-remote ?compress=true"; do
		: > "$work/times"
		rep=1
		while [ $rep -le "$REPS" ]; do
			case $v in
			"offload compress=off") t=$(run off "$work/offload" ssh://b1 OFFLOAD_COMPRESS=off) ;;
			"offload compress=auto") t=$(run auto "$work/offload" ssh://b1 OFFLOAD_COMPRESS=auto) ;;
			"offload compress=on (level 3)") t=$(run on "$work/offload" ssh://b1 OFFLOAD_COMPRESS=on) ;;
			"build-remote") t=$(run br "$BR" ssh://b1) ;;
			"build-remote ?compress=true") t=$(run brc "$BR" "ssh://b1?compress=true") ;;
			esac
			say "$rate $v #$rep: $t ms"
			echo "$t" >> "$work/times"
			rep=$((rep + 1))
		done
		printf '%-10s %-34s %10s\n' "$rate" "$v" "$(median < "$work/times")"
	done
done
