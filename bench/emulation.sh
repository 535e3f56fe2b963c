#!/bin/sh
# bench/emulation.sh: how much slower CPU-bound build work runs under
# qemu-user than natively, as a guide for the emulation-penalty setting.
#
# Cross-compiles bench/emulation (a fixed, deterministic workload: flate
# level 6 of generated text, SHA-256, an integer loop, and parsing,
# type-checking and printing generated Go source) for the host and for
# arm64 and riscv64, runs the host binary natively and the others under
# qemu-aarch64-static and qemu-riscv64-static (not through binfmt_misc),
# interleaved, several times each, checks that every run printed the same
# checksum, and prints Markdown tables of the median times (measured inside
# the program, so process and emulator start-up are not counted) and their
# ratios to native. Run from anywhere:
#
#   bench/emulation.sh
#
# Needs Go and Debian's qemu-user-static; exits 2 when either is missing.
# Takes about a minute and a half on an idle 2-core x86_64 machine.
#
# Environment:
#   BENCH_EMU_RUNS=3   runs of each target
#   BENCH_EMU_ARGS=""  arguments for the workload (-mib 32 -loop 100000000
#                      -funcs 2000 by default)
set -eu
cd "$(dirname "$0")/.."
RUNS=${BENCH_EMU_RUNS:-3}
ARGS=${BENCH_EMU_ARGS:-}
export PATH="$PATH:/usr/local/go/bin"

die() { echo "bench/emulation.sh: $*" >&2; exit "${2:-1}"; }
missing() { echo "bench/emulation.sh: $*" >&2; exit 2; }

case $RUNS in '' | *[!0-9]* | 0) die "BENCH_EMU_RUNS=$RUNS: want a whole number above 0" ;; esac
command -v go >/dev/null 2>&1 || missing "go not found in PATH (or /usr/local/go/bin)"
qa64=$(command -v qemu-aarch64-static) ||
	missing "qemu-aarch64-static not found: install qemu-user-static (apt-get install qemu-user-static)"
qrv64=$(command -v qemu-riscv64-static) ||
	missing "qemu-riscv64-static not found: install qemu-user-static (apt-get install qemu-user-static)"

tmp=$(mktemp -d /tmp/offload-emulation.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
# A fresh root shell may have neither HOME nor a Go build cache.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
	export GOCACHE="$tmp/gocache"
fi

host=$(go env GOHOSTARCH)
# target name, GOARCH, emulator ("" for native)
targets="$host"
for a in arm64 riscv64; do
	[ "$a" = "$host" ] || targets="$targets $a"
done
runner() {
	case $1 in
	"$host") echo native ;;
	arm64) echo "$qa64" ;;
	riscv64) echo "$qrv64" ;;
	esac
}

for a in $targets; do
	CGO_ENABLED=0 GOOS=linux GOARCH=$a go build -trimpath -o "$tmp/emulation-$a" ./bench/emulation ||
		die "go build for $a failed"
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
i=1
while [ "$i" -le "$RUNS" ]; do
	for a in $targets; do
		r=$(runner "$a")
		# shellcheck disable=SC2086 # ARGS is split on purpose
		if [ "$r" = native ]; then
			line=$("$tmp/emulation-$a" $ARGS) || die "$a run $i failed"
		else
			line=$("$r" "$tmp/emulation-$a" $ARGS) || die "$a run $i under $r failed"
		fi
		echo "$line" >>"$tmp/$a.runs"
		echo "run $i/$RUNS $a: $line" >&2
	done
	i=$((i + 1))
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# The checksum is the last field; every run must agree.
sums=$(for a in $targets; do awk '{ print $NF }' "$tmp/$a.runs"; done | sort -u)
[ "$(echo "$sums" | wc -l)" = 1 ] || die "checksums differ between runs or targets:
$(for a in $targets; do sed "s/^/$a: /" "$tmp/$a.runs"; done)"

# median FILE NAME: the median of the value after the field NAME.
median() {
	awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$1" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "Machine: $(nproc) CPUs, $(uname -m), ${cpu:-unknown CPU}, Go $(go env GOVERSION), $($qa64 --version | head -n 1)."
echo "Load average $load_start at the start, $load_end at the end; $RUNS runs of each target, interleaved; checksum $sums on every run."
echo
echo "| target | runs under | median (s) | ratio to native |"
echo "|---|---|--:|--:|"
native=$(median "$tmp/$host.runs" work)
for a in $targets; do
	m=$(median "$tmp/$a.runs" work)
	printf '| linux-%s | %s | %.2f | %s |\n' "$a" "$(basename "$(runner "$a")")" "$m" "$(ratio "$m" "$native")"
done
echo
echo "By phase: median seconds (ratio to native)."
echo
echo "| target | flate -6 | sha256 | integer loop | parse + type-check + print |"
echo "|---|--:|--:|--:|--:|"
for a in $targets; do
	row="| linux-$a |"
	for p in flate sha256 loop compile; do
		m=$(median "$tmp/$a.runs" "$p")
		row="$row $(printf '%.3f' "$m") ($(ratio "$m" "$(median "$tmp/$host.runs" "$p")")) |"
	done
	echo "$row"
done
