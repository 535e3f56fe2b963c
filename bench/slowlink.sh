#!/bin/sh
# bench/slowlink.sh: copies of 50 MiB to and from a builder over a slow
# link, offload (compress off, auto, on) against Nix's own hook
# (/usr/libexec/nix/build-remote) without and with ?compress=true
# (OpenSSH's zlib), all on one builder in one run. The builder's sshd runs
# in a network namespace of its own, reached through a veth pair (MTU
# 1500) whose both ends a tbf qdisc shapes to each rate, then without
# shaping. Three kinds of copy, each a new derivation per build:
#   bins: a 50 MiB output of real machine code (the first 50 MiB of this
#         machine's /usr/bin and shared libraries), copied back;
#   rand: a 50 MiB output read from a file made once from /dev/urandom
#         (incompressible), copied back;
#   up:   a 50 MiB input the builder lacks (a directory holding the same
#         machine code, added to the client's store with nix-store --add
#         under a new name for each build: a content-addressed path, as a
#         source is), used by a build that writes a line: the bytes go
#         client → builder;
#   upb:  the same, but the input is a path the client built (input-
#         addressed, as a locally built dependency is), before the timing.
# Then, on one rate (the first), the CPU time the hook itself spends per MiB it
# copies, for the amd64 offload natively and its arm64 build under
# qemu-aarch64-static (a stand-in for a board), compress auto and off:
# user + sys of the hook process alone (all its threads), read when it has
# exited and before it is reaped (benchtool cpu), divided by 50 MiB (what
# the copy carries, not what went on the wire); the local nix-store the
# hook waits for is counted apart, and the relay is off
# (OFFLOAD_CONNECT_PERSIST=0) so that no copy runs in another process.
#
# Each measurement is the median of REPS nix-build wall times, the
# hooks alternating within a repetition (the first one rotating). Before
# them each hook makes one build of the same kind on its new client,
# timed apart (the "first build" column): it starts the client's relay,
# warms its store and, under compress=auto, copies compressed to measure
# the link, as a client's first large copy to a builder does. The
# medians are of the builds after it: what every later build costs.
#
# Before each build the script syncs and waits SETTLE seconds: a build
# leaves 50 MiB in the builder's and the client's stores for the kernel
# to write back, and without the pause the next build in the rotation
# paid for it (offload auto, which follows offload off, came out
# 1.04-1.16 x off on the unshaped link; with it, 0.99, and 1.02 with off
# and auto alone in turn, ABBA).
#
# Each offload variant has a client store (and so a state-dir with its
# link measure for compress=auto) of its own for each link and kind, as
# a builder first used: what auto learnt of one kind (rand, which it then
# copies as is for 16 copies) or link does not decide another's. Writes
# Markdown tables on standard output and to SLOWLINK_OUT. Needs root, ip
# and tc (iproute2), qemu-user-static for the CPU rows, and what
# scripts/deps.sh installs.
#
#   bench/slowlink.sh
#
# Environment:
#   SLOWLINK_RATES="20mbit 100mbit"  link rates (tc's units); an unshaped
#                                    link follows them
#   SLOWLINK_KINDS="bins rand up upb" which copies
#   SLOWLINK_REPS=5                  repetitions of each measurement
#   SLOWLINK_PLAIN_REPS=REPS         repetitions of plain build-remote on
#                                    the first rate (its slowest column)
#   SLOWLINK_CPU_REPS=3              repetitions of each CPU-time row; 0
#                                    leaves them out
#   SLOWLINK_CPU_LINK=first rate     the rate of the CPU-time rows (auto
#                                    compresses below 50 MiB/s)
#   SLOWLINK_SETTLE=1                seconds to wait, after sync, before
#                                    each timed build
#   SLOWLINK_OUT=bench/slowlink.md   where the tables go too ("": nowhere)
#   SLOWLINK_KEEP=1                  keep the scratch directory (logs of
#                                    every build, at nix-build -v)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
RATES=${SLOWLINK_RATES:-20mbit 100mbit}
KINDS=${SLOWLINK_KINDS:-bins rand up upb}
REPS=${SLOWLINK_REPS:-5}
PLAIN_REPS=${SLOWLINK_PLAIN_REPS:-$REPS}
CPU_REPS=${SLOWLINK_CPU_REPS:-3}
OUT=${SLOWLINK_OUT-bench/slowlink.md}
CPU_LINK=${SLOWLINK_CPU_LINK:-${RATES%% *}}
SETTLE=${SLOWLINK_SETTLE:-1}
BR=/usr/libexec/nix/build-remote
QEMU=/usr/bin/qemu-aarch64-static
MIB=50
T0=$(date +%s)
say() { printf '[%4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() { echo "bench/slowlink.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespace, mount namespaces)"
command -v tc >/dev/null || die "tc not found (Debian package iproute2)"
[ -x "$BR" ] || die "$BR not found (Debian's nix-bin provides it)"
[ "$CPU_REPS" = 0 ] || [ -x "$QEMU" ] || die "$QEMU not found (Debian package qemu-user-static; or SLOWLINK_CPU_REPS=0)"
for n in "$REPS" "$PLAIN_REPS" "$CPU_REPS"; do
	case $n in '' | *[!0-9]*) die "repetitions: $n: want a whole number" ;; esac
done
case $SETTLE in '' | *[!0-9.]*) die "SLOWLINK_SETTLE: $SETTLE: want seconds" ;; esac
export PATH="$PATH:/usr/local/go/bin"

work=$(mktemp -d /tmp/offload-slowlink.XXXXXX)
ns=offload-slow$$
hif=osh$$ nif=osn$$
hip=10.213.7.1 nip=10.213.7.2
cleanup() {
	for c in "$work"/c-*; do
		[ -d "$c" ] && "$repo/scripts/test-client.sh" "$c" "$work/offload" relay stop >/dev/null 2>&1 || true
	done
	for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
	ip link del "$hif" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	if [ "${SLOWLINK_KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building offload (amd64, arm64) and bench/benchtool"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
for arch in amd64 arm64; do
	CGO_ENABLED=0 GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X github.com/offload-nix/offload/internal/cli.Version=$version" \
		-o "$work/offload-$arch" ./cmd/offload
done
cp "$work/offload-amd64" "$work/offload"
CGO_ENABLED=0 go build -o "$work/benchtool" ./bench/benchtool
# Build hooks for the CPU rows: the hook process is the child of benchtool
# cpu, natively or under qemu (called directly, not through binfmt_misc).
printf '#!/bin/sh\nexec %s cpu "$SLOWLINK_CPU" %s "$@"\n' "$work/benchtool" "$work/offload-amd64" > "$work/hook-amd64"
printf '#!/bin/sh\nexec %s cpu "$SLOWLINK_CPU" %s %s "$@"\n' "$work/benchtool" "$QEMU" "$work/offload-arm64" > "$work/hook-arm64"
chmod +x "$work/hook-amd64" "$work/hook-arm64"

# 50 MiB of real binaries and 50 MiB of random bytes, where the builder
# (which sees this machine's files but its own /nix) reads them.
for f in /usr/bin/* /usr/lib/x86_64-linux-gnu/*.so*; do
	[ -f "$f" ] && cat "$f"
done 2>/dev/null | head -c $((MIB << 20)) > "$work/bins"
head -c $((MIB << 20)) /dev/urandom > "$work/rand"
cat > "$work/slow.nix" <<NIX
{ u, kind, big ? "" }:
let
  mk = script: extra: derivation ({
    name = "slow-\${kind}";
    inherit u;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // extra);
in
if kind == "bins" || kind == "rand" then
  mk "/usr/bin/head -c $((MIB << 20)) $work/\${kind} > \$out; echo \$u >> \$out" { }
else if kind == "up" || kind == "upb" then mk "echo \$src \$u > \$out" { src = builtins.storePath big; }
else if kind == "upsrc" then mk "/bin/mkdir \$out && /bin/cp $work/bins \$out/bins" { }
else throw "unknown kind \${kind}"
NIX

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
mkdir -p "$work/logs"

shape() { # RATE, or "unshaped": both directions
	if [ "$1" = unshaped ]; then
		tc qdisc del dev "$hif" root 2>/dev/null || true
		ip netns exec "$ns" tc qdisc del dev "$nif" root 2>/dev/null || true
		return
	fi
	tc qdisc replace dev "$hif" root tbf rate "$1" burst 64kb latency 50ms
	ip netns exec "$ns" tc qdisc replace dev "$nif" root tbf rate "$1" burst 64kb latency 50ms
}

# run LINK KIND VARIANT REP: one nix-build of a new derivation of KIND
# with the hook of VARIANT; prints its wall time in ms.
run() {
	link=$1 kind=$2 var=$3 rep=$4
	c=$work/c-$link-$kind-$var
	u="$link-$kind-$var-$rep-$(date +%s%N)"
	envs= hook=$work/offload uri="ssh://b1"
	# The first build (REP 0) writes what it did and its CPU time apart.
	pre=
	[ "$rep" != 0 ] || pre=first-
	case $var in
	off | auto | on) envs="OFFLOAD_COMPRESS=$var" ;;
	cpu-*)
		envs="OFFLOAD_COMPRESS=${var##*-} OFFLOAD_CONNECT_PERSIST=0 SLOWLINK_CPU=$work/${pre}cpu.$var.$kind"
		hook=$work/hook-$(echo "$var" | cut -d- -f2)
		;;
	br) hook=$BR ;;
	brc) hook=$BR uri="ssh://b1?compress=true" ;;
	esac
	big=
	if [ "$kind" = up ]; then
		d=$work/up/up-$(echo "$u" | tr -c 'a-zA-Z0-9\n' -)
		mkdir -p "$d"
		ln "$work/bins" "$d/bins"
		big=$("$repo/scripts/test-client.sh" "$c" nix-store --add "$d") || die "nix-store --add $d failed"
		rm -rf "$d"
	elif [ "$kind" = upb ]; then
		big=$("$repo/scripts/test-client.sh" "$c" nix-build --no-out-link "$work/slow.nix" --argstr u "$u" \
			--argstr kind upsrc --max-jobs 1 --builders '' 2>"$work/last.err") ||
			{ tail -n 5 "$work/last.err" >&2; die "building the input for $u failed"; }
	fi
	log=$work/logs/$u.err
	sync
	sleep "$SETTLE"
	t0=$(date +%s%N)
	# shellcheck disable=SC2086 # envs: words without spaces
	"$repo/scripts/test-client.sh" "$c" env $envs nix-build -v --no-out-link "$work/slow.nix" \
		--argstr u "$u" --argstr kind "$kind" --argstr big "$big" --max-jobs 0 \
		--option build-hook "$hook" --builders "$uri x86_64-linux" >"$work/last.out" 2>"$log" ||
		{ tail -n 5 "$log" >&2; die "$u failed"; }
	t1=$(date +%s%N)
	# What offload did with the copy (at -v it says when it compresses).
	if [ "$var" = auto ]; then
		if p=$(grep -o "with [a-z]*: [0-9]* bytes for [a-z]* [0-9]* ([0-9]*%)" "$log" | tail -n 1 | grep .); then
			echo "$p" | sed 's/with \([a-z]*\):.*(\([0-9]*%\))/\1 to \2/' >> "$work/${pre}did.$link.$kind"
		else
			echo "not compressed" >> "$work/${pre}did.$link.$kind"
		fi
	fi
	echo $(((t1 - t0) / 1000000))
}

# done_with LINK KIND: drop the block's client stores (their relays
# first) and the builder's store paths, so that disk use stays small.
done_with() {
	for c in "$work/c-$1-$2-"*; do
		[ -d "$c" ] || continue
		"$repo/scripts/test-client.sh" "$c" "$work/offload" relay stop >/dev/null 2>&1 || true
		rm -rf "$c"
	done
	NIX_CONF_DIR=$work/b1/etc unshare --mount --propagation private sh -c \
		'mount --bind "$1/nix" /nix && nix-store --gc' sh "$work/b1" >/dev/null 2>&1 ||
		say "warning: the builder's nix-store --gc failed"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
secs() { awk -v m="$1" 'BEGIN { if (m == "n/a") print m; else printf "%.2f", m / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# target RATIO LIMIT: whether RATIO ≤ LIMIT, and by how much not.
target() {
	awk -v r="$1" -v l="$2" 'BEGIN {
		if (r == "n/a") print "n/a"
		else if (r <= l) printf "met (%s ≤ %s)", r, l
		else printf "**not met**: %s > %s (%.0f %% over)", r, l, (r / l - 1) * 100 }'
}

kind_name() {
	case $1 in
	bins) echo "50 MiB output, real binaries" ;;
	rand) echo "50 MiB output, incompressible" ;;
	up) echo "50 MiB upload, real binaries, nix-store --add (content-addressed)" ;;
	upb) echo "50 MiB upload, real binaries, built locally (input-addressed)" ;;
	esac
}

VARS="off auto on br brc"
first=${RATES%% *}
: > "$work/table"
for link in $RATES unshaped; do
	shape "$link"
	for kind in $KINDS; do
		for v in $VARS; do : > "$work/t.$v"; done
		: > "$work/did.$link.$kind"
		: > "$work/first-did.$link.$kind"
		for v in $VARS; do
			t=$(run "$link" "$kind" "$v" 0)
			say "$link $kind $v, first build: $t ms"
			eval "f_$v=\$t"
		done
		rep=1
		while [ $rep -le "$REPS" ]; do
			# Rotate which hook goes first.
			vs=$(echo $VARS $VARS | cut -d' ' -f$((1 + (rep - 1) % 5))-$((5 + (rep - 1) % 5)))
			for v in $vs; do
				if [ "$v" = br ] && [ "$link" = "$first" ] && [ $rep -gt "$PLAIN_REPS" ]; then continue; fi
				t=$(run "$link" "$kind" "$v" "$rep")
				say "$link $kind $v #$rep: $t ms"
				echo "$t" >> "$work/t.$v"
			done
			rep=$((rep + 1))
		done
		for v in $VARS; do eval "m_$v=\$(median < \"\$work/t.$v\")"; done
		did=$(sort "$work/did.$link.$kind" | uniq -c | awk '{ n = $1; $1 = ""; printf "%s%d×%s", s, n, $0; s = ", " }')
		did="first: $(cat "$work/first-did.$link.$kind"); then $did"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$link" "$kind" "$m_off" "$m_auto" "$m_on" "$m_br" "$m_brc" \
			"$(ratio "$m_auto" "$m_brc")" "$(ratio "$m_auto" "$m_br")" "$(ratio "$m_auto" "$m_off")" "$f_off" "$f_auto" "$did" >> "$work/table"
		done_with "$link" "$kind"
	done
done

# CPU rows: each kind, native and under qemu, auto and off.
: > "$work/cputable"
if [ "$CPU_REPS" -gt 0 ]; then
	shape "$CPU_LINK"
	for kind in $KINDS; do
		for v in cpu-amd64-auto cpu-arm64-auto cpu-amd64-off cpu-arm64-off; do
			t=$(run "$CPU_LINK" "$kind" "$v" 0)
			say "$CPU_LINK $kind $v, first build: $t ms"
		done
		rep=1
		while [ $rep -le "$CPU_REPS" ]; do
			for v in cpu-amd64-auto cpu-arm64-auto cpu-amd64-off cpu-arm64-off; do
				t=$(run "$CPU_LINK" "$kind" "$v" "$rep")
				say "$CPU_LINK $kind $v #$rep: $t ms ($(tail -n 1 "$work/cpu.$v.$kind"))"
				echo "$t" >> "$work/w.$v.$kind"
			done
			rep=$((rep + 1))
		done
		for v in cpu-amd64-auto cpu-arm64-auto cpu-amd64-off cpu-arm64-off; do
			own=$(awk '{ print $1 + $2 }' "$work/cpu.$v.$kind" | median)
			kids=$(awk '{ print $3 + $4 }' "$work/cpu.$v.$kind" | median)
			printf '%s\t%s\t%s\t%s\t%s\n' "$kind" "$v" "$own" "$kids" "$(median < "$work/w.$v.$kind")" >> "$work/cputable"
		done
		done_with "$CPU_LINK" "$kind"
	done
fi

# --- report ---------------------------------------------------------------
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
{
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'), $(($(date +%s) - T0)) s in all"
	echo "- Machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r); load average $load_end at the end"
	echo "- Nix: $(nix-store --version); offload $version, $(go env GOVERSION); $($QEMU --version 2>/dev/null | head -n 1)"
	echo "- Repetitions: $REPS of each measurement (plain build-remote on $first: $PLAIN_REPS), $CPU_REPS of each CPU row; medians, after a first build on each client (timed apart); sync and $SETTLE s before each build"
	echo
	echo "Wall time of nix-build (s), median. Ratios: offload auto ÷ build-remote"
	echo "?compress=true, ÷ plain build-remote, ÷ offload off. \"auto did\" is what"
	echo "offload's hook said at -v about each copy under compress=auto (zstd and"
	echo "the compressed size, or not compressed). \"first build\" is the wall time"
	echo "of each client's first build, before the timed ones, for offload off and"
	echo "auto (auto measures the link with it)."
	echo
	echo "| link | copy | offload off | offload auto | offload on | build-remote | build-remote ?compress=true | auto ÷ ?compress=true | auto ÷ build-remote | auto ÷ off | first build, off / auto | auto did |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
	while IFS='	' read -r link kind off auto on br brc r1 r2 r3 foff fauto did; do
		echo "| $link | $(kind_name "$kind") | $(secs "$off") | $(secs "$auto") | $(secs "$on") | $(secs "$br") | $(secs "$brc") | $r1 | $r2 | $r3 | $(secs "$foff") / $(secs "$fauto") | $did |"
	done < "$work/table"
	echo
	echo "Targets:"
	echo
	echo "| target | ratio | result |"
	echo "|---|--:|---|"
	while IFS='	' read -r link kind off auto on br brc r1 r2 r3 foff fauto did; do
		case $link/$kind in
		20mbit/bins)
			echo "| real binaries at 20 Mbit: auto ≤ 0.8 × build-remote ?compress=true | $r1 | $(target "$r1" 0.8) |"
			echo "| real binaries at 20 Mbit: auto ≤ 0.4 × plain build-remote | $r2 | $(target "$r2" 0.4) |" ;;
		100mbit/bins)
			echo "| real binaries at 100 Mbit: auto ≤ 0.85 × build-remote ?compress=true | $r1 | $(target "$r1" 0.85) |" ;;
		*/rand | unshaped/*)
			echo "| $(kind_name "$kind"), $link: auto ≤ 1.05 × offload off | $r3 | $(target "$r3" 1.05) |" ;;
		esac
	done < "$work/table"
	if [ -s "$work/cputable" ]; then
		echo
		echo "CPU time of the hook per MiB copied, on the $CPU_LINK link with the relay"
		echo "off: user + sys of the hook process alone (for arm64: the qemu process"
		echo "running it, translation included) ÷ $MIB MiB; the local nix-store it"
		echo "waits for (native either way) apart; median of $CPU_REPS."
		echo
		echo "| copy | offload | compress | hook CPU (ms/MiB) | hook CPU (s) | its local nix-store (s) | wall (s) |"
		echo "|---|---|---|--:|--:|--:|--:|"
		while IFS='	' read -r kind v own kids wall; do
			arch=$(echo "$v" | cut -d- -f2)
			case $arch in amd64) runs="amd64, native" ;; *) runs="arm64 under qemu-aarch64" ;; esac
			echo "| $(kind_name "$kind") | $runs | ${v##*-} | $(awk -v s="$own" -v m=$MIB 'BEGIN { printf "%.1f", s * 1000 / m }') | $own | $kids | $(secs "$wall") |"
		done < "$work/cputable"
	fi
} > "$work/report.md"
cat "$work/report.md"
if [ -n "$OUT" ]; then
	{
		echo "# Copies over a slow link: offload against build-remote"
		echo
		echo "Written by \`bench/slowlink.sh\` (as root, from the repository's top"
		echo "directory; see its header for what it measures and its settings);"
		echo "a rerun replaces this file."
		echo
		cat "$work/report.md"
	} > "$OUT"
	say "wrote $OUT"
fi
