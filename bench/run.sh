#!/bin/sh
# bench/run.sh: offload against Nix's own build hook
# (/usr/libexec/nix/build-remote) on the same local sshd builder, the same
# work, alternately, several times each; writes bench/results.md (medians and
# offload/build-remote ratios), bench/results.svg (a chart of the ratios),
# bench/results.tsv (every record) and bench/results.meta (the machine).
# Needs root. Run from anywhere:
#
#   bench/run.sh
#
# Three hooks take part: offload (its relay keeps connections warm between
# hooks, connect-persist), build-remote as Nix runs it (a new SSH connection
# per hook), and build-remote with OpenSSH's connection sharing in
# NIX_SSHOPTS (ControlMaster=auto, ControlPersist=60, a ControlPath in the
# scratch directory) for the trivial build, the first build of a burst and
# the 8 hooks at once. Rows:
#   - warm: after a warm-up, so offload's relay and ssh's control master run;
#   - first build of a burst: the same trivial build with nothing warm
#     (offload's relay stopped with `offload relay stop`, the control master
#     stopped with `ssh -O exit`) before it;
#   - new SSH connections for 8 hooks at once: a second builder with
#     OpenSSH's default MaxSessions (10) and LogLevel VERBOSE; after one
#     warm build, 8 nix-build processes (one trivial derivation each, on one
#     client store, builder with 8 slots) start together, and the row counts
#     the "Accepted publickey" lines its sshd logged meanwhile.
#
# Environment:
#   BENCH_REPS=5         repetitions of each measurement, per hook
#   BENCH_FANOUT_REPS=1  repetitions of each fan-out run (20 × 1 s builds;
#                        build-remote takes about a minute per pair)
#   BENCH_BURST_REPS=2   repetitions of the 8-hooks-at-once run
#   BENCH_QEMU_RUNS=20   runs of each start-up command under qemu-user
#   BENCH_OUT=bench      where the results go
#   BENCH_DIR=...        scratch directory (default: a new one under /tmp)
#   BENCH_KEEP=1         keep the scratch directory (stores, logs)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
REPS=${BENCH_REPS:-5}
FANOUT_REPS=${BENCH_FANOUT_REPS:-1}
BURST_REPS=${BENCH_BURST_REPS:-2}
QEMU_RUNS=${BENCH_QEMU_RUNS:-20}
OUT=${BENCH_OUT:-bench}
BR=/usr/libexec/nix/build-remote
T0=$(date +%s)

say() { printf '[%3ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
die() { echo "bench/run.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (a builder in its own mount namespace, client stores over /nix)"
scripts/deps.sh
[ -x "$BR" ] || die "$BR not found (Debian's nix-bin provides it)"
export PATH="$PATH:/usr/local/go/bin"

work=${BENCH_DIR:-$(mktemp -d /tmp/offload-bench.XXXXXX)}
mkdir -p "$work" "$OUT"
work=$(cd "$work" && pwd)
cut -d' ' -f1-3 /proc/loadavg > "$work/load_start"
cleanup() {
	"$repo/scripts/test-builder.sh" stop "$work/b1" 2>/dev/null || true
	"$repo/scripts/test-builder.sh" stop "$work/b2" 2>/dev/null || true
	for b in b1 b2; do # ssh's control masters, if any
		[ -n "${cmopts:-}" ] && [ -f "$work/$b/ssh_config" ] &&
			ssh -F "$work/$b/ssh_config" $cmopts -O exit $b 2>/dev/null || true
	done
	if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries -------------------------------------------------------------
say "building offload (amd64, arm64, riscv64) and bench/benchtool"
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
export CGO_ENABLED=0
for arch in amd64 arm64 riscv64; do
	GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X github.com/offload-nix/offload/internal/cli.Version=$version" \
		-o "$work/offload-$arch" ./cmd/offload
done
cp "$work/offload-amd64" "$work/offload"
go build -o "$work/benchtool" ./bench/benchtool
tool=$work/benchtool
raw=$work/raw.tsv
: > "$raw"

# --- builder and clients --------------------------------------------------
say "starting a local sshd builder with its own store"
"$repo/scripts/test-builder.sh" start "$work/b1" b1 > "$work/b1.env"
export NIX_SSHOPTS="-F $work/b1/ssh_config"
# build-remote-cm: build-remote with OpenSSH's connection sharing.
mkdir -p "$work/cm"
cmopts="-o ControlMaster=auto -o ControlPersist=60 -o ControlPath=$work/cm/%C"
b1opts=$NIX_SSHOPTS
sshopts=$b1opts # the builder's, for nixbuild
# offload's own settings: none from /etc/nix/offload.conf, and no load
# awareness: this builder's load is the client's own (and that of whatever
# else runs on the machine), which would turn it away as busy elsewhere.
echo "load-aware = false" > "$work/offload.conf"
# Warm connections through the relay (connect-persist; 1m by default).
export OFFLOAD_CONNECT_PERSIST=${OFFLOAD_CONNECT_PERSIST:-30s}
export OFFLOAD_CONF="$work/offload.conf"

cat > "$work/bench.nix" <<'NIX'
{ u, kind, big ? "" }:
let
  mk = name: script: extra: derivation ({
    inherit name u;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" script ];
  } // extra);
in
if kind == "trivial" then mk "bench-trivial" "echo $u > $out" { }
else if kind == "local" then mk "bench-trivial" "echo $u > $out" { preferLocalBuild = true; }
else if kind == "copy50" then mk "bench-copy50" "/usr/bin/head -c 52428800 /dev/urandom > $out" { }
else if kind == "up200" then mk "bench-up200" "echo $src > $out" { src = builtins.storePath big; }
else if kind == "fanout" then builtins.genList (i: mk "bench-sleep-${toString i}" "/bin/sleep 1; echo $u > $out" { }) 20
else throw "unknown kind ${kind}"
NIX
head -c $((200 * 1024 * 1024)) /dev/urandom > "$work/base200"

client() { # hook CMD...: run CMD as the hook's client, with its own store
	c=$work/c-$1
	shift
	"$repo/scripts/test-client.sh" "$c" "$@"
}

# nixbuild HOOK SCENARIO REP KIND NIX-BUILD-ARGS...: one timed nix-build,
# recorded as "SCENARIO HOOK REP wall_ms" and "... status".
nixbuild() {
	hook=$1 scen=$2 rep=$3 kind=$4
	shift 4
	opts=$sshopts
	case $hook in
	offload) set -- --option build-hook "$tool" "$@"; real=$work/offload ;;
	build-remote) set -- --option build-hook "$tool" "$@"; real=$BR ;;
	build-remote-cm) set -- --option build-hook "$tool" "$@"; real=$BR opts="$sshopts $cmopts" ;;
	local) real= ;; # preferLocalBuild: Nix does not start a hook
	esac
	tag=$(printf '%s\t%s\t%s' "$scen" "$hook" "$rep")
	u="$scen-$hook-$rep-$(date +%s%N)"
	t0=$(date +%s%N)
	st=0
	NIX_SSHOPTS=$opts BENCH_HOOK=$real BENCH_TAG=$tag BENCH_RAW=$raw \
		client "$hook" nix-build --no-out-link "$work/bench.nix" --argstr u "$u" --argstr kind "$kind" "$@" \
		> "$work/last.out" 2> "$work/last.err" || st=$?
	t1=$(date +%s%N)
	wall=$(awk "BEGIN { printf \"%.2f\", ($t1 - $t0) / 1e6 }")
	printf '%s\twall_ms\t%s\t\n%s\tstatus\t%s\t\n' "$tag" "$wall" "$tag" "$st" >> "$raw"
	if [ "$st" != 0 ]; then
		cp "$work/last.err" "$work/failed-$scen-$hook-$rep.err"
		say "  $scen $hook #$rep FAILED (exit $st), last lines:"
		tail -n 5 "$work/last.err" | sed 's/^/      /' >&2
	else
		say "  $scen $hook #$rep: $wall ms"
	fi
}

remote="ssh://b1 x86_64-linux"

# cold HOOK: stop what keeps HOOK's connections warm: offload's relay (as
# the hooks run it: root, the same environment) or ssh's control master.
cold() {
	case $1 in
	offload)
		# The relay exits once its sessions end: wait until none answers.
		i=0
		until client offload "$work/offload" relay stop 2>&1 | grep -q '^no relay runs'; do
			i=$((i + 1))
			[ $i -lt 50 ] || die "offload's relay does not stop"
			sleep 0.1
		done
		;;
	build-remote-cm)
		# shellcheck disable=SC2086
		ssh $sshopts $cmopts -O exit "$2" 2>/dev/null || true
		;;
	esac
}

# rotate WORD...: the words, the first moved to the end.
rotate() { first=$1; shift; echo "$@" "$first"; }

# Warm both clients' stores and the builder (database creation, first
# connection) so that the first measured repetition is like the others.
say "warm-up"
for h in offload build-remote build-remote-cm; do
	nixbuild "$h" warmup 0 trivial --max-jobs 0 --builders "$remote"
done
nixbuild local warmup 0 local --max-jobs 1 --builders ""
sed -i '/^warmup\t/d' "$raw"

# --- alternating repetitions ----------------------------------------------
rep=1
while [ "$rep" -le "$REPS" ]; do
	# The first hook alternates, so neither always runs on a colder cache.
	if [ $((rep % 2)) = 1 ]; then order="offload build-remote"; else order="build-remote offload"; fi
	say "repetition $rep of $REPS ($order)"
	nixbuild local local "$rep" local --max-jobs 1 --builders ""
	# Nothing warm: the first build of a burst. It warms what the
	# trivial build below then finds.
	order3="offload build-remote build-remote-cm"
	r=$rep
	while [ "$r" -gt 1 ]; do order3=$(rotate $order3); r=$((r - 1)); done
	for h in $order3; do
		cold "$h" b1
		nixbuild "$h" first "$rep" trivial --max-jobs 0 --builders "$remote"
	done
	for h in $order; do
		nixbuild "$h" decline "$rep" trivial --max-jobs 1 --builders "ssh://b1 aarch64-linux"
	done
	for h in $order3; do
		nixbuild "$h" trivial "$rep" trivial --max-jobs 0 --builders "$remote"
	done
	for h in $order; do
		nixbuild "$h" copy50 "$rep" copy50 --max-jobs 0 --builders "$remote"
	done
	for h in $order; do
		# A new 200 MiB path in the client's store, not on the builder.
		{ echo "$h $rep $(date +%s%N)"; cat "$work/base200"; } > "$work/big"
		big=$(client "$h" nix-store --add "$work/big")
		nixbuild "$h" up200 "$rep" up200 --max-jobs 0 --builders "$remote" --argstr big "$big"
		client "$h" nix-store --delete "$big" >/dev/null 2>&1 || true
	done
	rep=$((rep + 1))
done

rep=1
while [ "$rep" -le "$FANOUT_REPS" ]; do
	# Not build-remote-cm: a minute more per pair, and once its max-jobs 4
	# run did not end in 10 minutes.
	if [ $((rep % 2)) = 1 ]; then order="offload build-remote"; else order="build-remote offload"; fi
	for jobs in 2 4; do
		say "fan-out: 20 × 1 s, max-jobs $jobs, repetition $rep of $FANOUT_REPS"
		for h in $order; do
			nixbuild "$h" "fanout$jobs" "$rep" fanout --max-jobs 0 --builders "ssh://b1 x86_64-linux - $jobs"
		done
	done
	rep=$((rep + 1))
done

# --- 8 hooks at once ------------------------------------------------------
# A builder with OpenSSH's defaults for what matters here (MaxSessions 10),
# logging each connection it accepts.
say "starting a second builder: MaxSessions 10, LogLevel VERBOSE"
BUILDER_MAX_SESSIONS=10 BUILDER_LOG_LEVEL=VERBOSE \
	"$repo/scripts/test-builder.sh" start "$work/b2" b2 > "$work/b2.env"
grep -q '^MaxSessions 10$' "$work/b2/sshd_config" || die "b2: MaxSessions is not 10"
accepted() { grep -c 'Accepted publickey' "$work/b2/sshd.log" || true; }

# burst HOOK REP: one warm build, then 8 nix-build processes at once, each
# with a trivial derivation of its own, on the hook's client store; records
# "burst8 HOOK REP new_ssh_conns N", the burst's wall time and status.
burst() {
	hook=$1 rep=$2
	sshopts="-F $work/b2/ssh_config"
	nixbuild "$hook" burstwarm "$rep" trivial --max-jobs 0 --builders "ssh://b2 x86_64-linux - 8"
	opts=$sshopts
	case $hook in
	offload) real=$work/offload ;;
	build-remote) real=$BR ;;
	build-remote-cm) real=$BR opts="$sshopts $cmopts" ;;
	esac
	n0=$(accepted)
	t0=$(date +%s%N)
	pids=
	for i in 1 2 3 4 5 6 7 8; do
		NIX_SSHOPTS=$opts client "$hook" nix-build --no-out-link "$work/bench.nix" \
			--argstr u "burst-$hook-$rep-$i-$t0" --argstr kind trivial \
			--option build-hook "$real" --max-jobs 0 --builders "ssh://b2 x86_64-linux - 8" \
			> "$work/burst-$i.out" 2> "$work/burst-$i.err" &
		pids="$pids $!"
	done
	st=0
	for p in $pids; do wait "$p" || st=$?; done
	t1=$(date +%s%N)
	n=$(($(accepted) - n0))
	tag=$(printf 'burst8\t%s\t%s' "$hook" "$rep")
	printf '%s\tnew_ssh_conns\t%s\t\n%s\twall_ms\t%s\t\n%s\tstatus\t%s\t\n' "$tag" "$n" \
		"$tag" "$(awk "BEGIN { printf \"%.2f\", ($t1 - $t0) / 1e6 }")" "$tag" "$st" >> "$raw"
	if [ "$st" != 0 ]; then
		cat "$work"/burst-*.err > "$work/failed-burst8-$hook-$rep.err"
		say "  burst8 $hook #$rep FAILED (exit $st), see failed-burst8-$hook-$rep.err"
	fi
	say "  burst8 $hook #$rep: $n new SSH connections"
	sshopts=$b1opts
}
rep=1
while [ "$rep" -le "$BURST_REPS" ]; do
	say "8 hooks at once, repetition $rep of $BURST_REPS"
	for h in offload build-remote build-remote-cm; do
		burst "$h" "$rep"
	done
	rep=$((rep + 1))
done
sed -i '/^burstwarm\t/d' "$raw"

# --- sizes and start-up under qemu ----------------------------------------
say "sizes"
nixbin=$(readlink -f "$(command -v nix)")
nixsize=$({
	echo "$nixbin"
	ldd "$nixbin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
} | xargs readlink -f | sort -u | xargs stat -c %s | awk '{ s += $1 } END { print s }')
printf 'size\toffload\t1\tbytes\t%s\t\nsize\tbuild-remote\t1\tbytes\t%s\t\n' \
	"$(stat -c %s "$work/offload")" "$nixsize" >> "$raw"

builders='ssh://b1 aarch64-linux,x86_64-linux - 4 2 kvm'
export OFFLOAD_STATE_DIR="$work/state"
for arch in amd64 arm64 riscv64; do
	case $arch in
	amd64) runner= ;;
	arm64) runner=qemu-aarch64-static ;;
	riscv64) runner=qemu-riscv64-static ;;
	esac
	bin=$work/offload-$arch
	say "start-up: linux-$arch ${runner:-native}, $QEMU_RUNS runs per command"
	# shellcheck disable=SC2086
	set -- $runner "$bin"
	r1=$("$tool" time "$QEMU_RUNS" "$@" version)
	r2=$("$tool" time "$QEMU_RUNS" "$@" machines --builders "$builders")
	printf 'qemu\t%s\t1\tbytes\t%s\t\n' "$arch" "$(stat -c %s "$bin")" >> "$raw"
	echo "$r1" | awk -v a="$arch" '{ printf "qemu\t%s\t1\tversion_ms\t%s\t\nqemu\t%s\t1\tversion_rss_kb\t%s\t\n", a, $1, a, $2 }' >> "$raw"
	echo "$r2" | awk -v a="$arch" '{ printf "qemu\t%s\t1\tmachines_ms\t%s\t\nqemu\t%s\t1\tmachines_rss_kb\t%s\t\n", a, $1, a, $2 }' >> "$raw"
	echo "runner_$arch=${runner:-native}" >> "$work/meta"
done

# --- report ---------------------------------------------------------------
elapsed=$(($(date +%s) - T0))
cat >> "$work/meta" <<META
date=$(date -u '+%Y-%m-%d %H:%M UTC')
nproc=$(nproc)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem_mib=$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo)
kernel=Linux $(uname -r)
load_start=$(cat "$work/load_start" 2>/dev/null || echo ?)
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
nix=$(nix --version)
nix_short=$(nix --version | awk '{ print $NF }')
nix_bin=$nixbin
build_remote=$BR
offload_version=$version
go=$(go version | awk '{ print $3 }')
reps=$REPS
fanout_reps=$FANOUT_REPS
burst_reps=$BURST_REPS
qemu_runs=$QEMU_RUNS
minutes=$(awk "BEGIN { printf \"%.1f\", $elapsed / 60 }")
META
cp "$raw" "$OUT/results.tsv"
cp "$work/meta" "$OUT/results.meta"
"$tool" report "$OUT/results.tsv" "$OUT/results.meta" "$OUT/results.md" "$OUT/results.svg"
# To redraw from the records: go run ./bench/benchtool report \
#   bench/results.tsv bench/results.meta bench/results.md bench/results.svg
say "done in ${elapsed}s: $OUT/results.md, $OUT/results.svg"
cat "$OUT/results.md"
