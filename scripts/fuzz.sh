#!/bin/sh
# fuzz.sh: every fuzz target of the module, one after the other, for
# FUZZTIME each: a duration (5s) or a number of inputs (20000x). It fails on
# anything the fuzzing found (a failing input, written to the package's
# testdata/fuzz/FuzzX/) and on every other test failure, with the log.
#
#   FUZZTIME=30s scripts/fuzz.sh [packages]   (default: 5s, ./...)
#
# Inputs are not minimized (FUZZMINIMIZETIME=0; -fuzzminimizetime): Go's
# default of 60s per input sends every input that finds new coverage to be
# shrunk before it is fuzzed further, which on an empty fuzz cache keeps
# both workers shrinking for most of a short run. Without it FuzzRestore
# finds a planted crash in under a second; with it, often not in 5s. A
# failing input is then written as found; set FUZZMINIMIZETIME=10s to
# have it shrunk.
#
# One failure it does not count: with a duration, Go's fuzzing coordinator
# (internal/fuzz/fuzz.go, CoordinateFuzzing, up to Go 1.26) can report its
# own -fuzztime deadline as the target's failure. The deadline is a context
# whose child, fuzzCtx, is cancelled only after the parent's Done channel is
# closed (context.cancelCtx.cancel); when the coordinator's loop wakes in
# between, its stop func compares the deadline error with fuzzCtx.Err(),
# still nil, and keeps it as the result. The target then fails with the
# bare line "context deadline exceeded", having found nothing. It happens
# most on a busy machine, early in a run on an empty fuzz cache, when the
# workers keep creating and cancelling child contexts of fuzzCtx. A
# number of inputs (FUZZTIME=20000x) sets no deadline, so the race cannot
# happen at all.
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-0}
export CGO_ENABLED=0

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# deadline_only reports whether the log's only failure is the coordinator's
# deadline: target $1 failed with nothing but "context deadline exceeded".
deadline_only() {
	! grep -q 'Failing input written to' "$log" &&
		awk -v f="$1" '
			$0 ~ "^--- FAIL: " f " \\(" { in_fail = 1; fails++; next }
			/^--- FAIL: / { other = 1 }
			in_fail && /^FAIL$/ { in_fail = 0; next }
			in_fail { sub(/^[ \t]+/, ""); if ($0 != "") lines[++n] = $0 }
			END { exit !(fails == 1 && !other && n == 1 && lines[1] == "context deadline exceeded") }
		' "$log"
}

[ $# -gt 0 ] || set -- ./...
for pkg in $($GO list "$@"); do
	dir=$($GO list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		corpus=$dir/testdata/fuzz/$f
		before=$(ls "$corpus" 2>/dev/null || true)
		start=$(date +%s)
		if $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" >"$log" 2>&1; then
			echo "fuzz $pkg $f: ok ($(($(date +%s) - start))s)"
			continue
		fi
		after=$(ls "$corpus" 2>/dev/null || true)
		if [ "$before" = "$after" ] && deadline_only "$f"; then
			echo "fuzz $pkg $f: ok ($(($(date +%s) - start))s; the fuzzing coordinator reported its own -fuzztime deadline, nothing found)"
			continue
		fi
		cat "$log"
		echo "fuzz $pkg $f: FAILED"
		exit 1
	done
done
