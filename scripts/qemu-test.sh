#!/bin/sh
# Cross-compiles the test binaries of the packages whose shared-memory code
# (pkg/slots) or architecture-specific code (pkg/squash: zstd's decoder has
# assembly for arm64 and none for riscv64) must work on the boards offload
# runs on, and runs them under qemu-user:
# linux/arm64, linux/riscv64 and linux/arm GOARM=6. The tests re-exec
# themselves as child processes through OFFLOAD_TEST_EXEC_WRAPPER, so the
# children run under the same interpreter.
#
# Usage: scripts/qemu-test.sh [go test flags, e.g. -test.v]
set -eu

cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

pkgs="./pkg/slots ./pkg/squash"

for target in arm64:aarch64: riscv64:riscv64: arm:arm:6; do
	goarch=${target%%:*}
	rest=${target#*:}
	qarch=${rest%%:*}
	goarm=${rest#*:}
	qemu=qemu-$qarch-static
	if ! command -v "$qemu" >/dev/null 2>&1; then
		echo "qemu-test: $qemu not found" >&2
		exit 1
	fi
	for pkg in $pkgs; do
		bin=$out/$(basename "$pkg")-$goarch.test
		echo "qemu-test: $pkg on linux/$goarch${goarm:+ GOARM=$goarm} under $qemu"
		CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
			go test -c -trimpath -o "$bin" "$pkg"
		(cd "$pkg" && OFFLOAD_TEST_EXEC_WRAPPER=$qemu "$qemu" "$bin" -test.timeout=10m "$@")
	done
done
