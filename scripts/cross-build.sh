#!/bin/sh
# cross-build.sh: the static release binaries for the boards offload runs on,
# with SHA256SUMS. Each binary is checked to be static (no ELF interpreter,
# no shared libraries) and the arm64 and riscv64 ones are run under
# qemu-user.
#
#   VERSION=v0.1.0 scripts/cross-build.sh     (default: git describe)
set -eu
cd "$(dirname "$0")/.."
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
out=dist
mkdir -p "$out"
rm -f "$out"/offload-* "$out/SHA256SUMS"

build() { # goarch goarm suffix
	name="$out/offload-$VERSION-linux-$3"
	CGO_ENABLED=0 GOOS=linux GOARCH=$1 GOARM=$2 go build -trimpath \
		-ldflags "-s -w -X github.com/offload-nix/offload/internal/cli.Version=$VERSION" \
		-o "$name" ./cmd/offload
	echo "$name"
}

for t in "amd64  amd64" "arm64  arm64" "riscv64  riscv64" "arm 7 armv7" "arm 6 armv6"; do
	# shellcheck disable=SC2086
	set -- $t
	if [ $# -eq 2 ]; then build "$1" "" "$2"; else build "$1" "$2" "$3"; fi
done >/dev/null

(cd "$out" && sha256sum offload-"$VERSION"-* > SHA256SUMS)

go run ./scripts/elfcheck "$out"/offload-"$VERSION"-*

smoke() { # interpreter binary
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "cross-build.sh: $1 not found (Debian package qemu-user-static): $2 not run" >&2
		return 0
	fi
	v=$("$1" "$2" version)
	case $v in "offload $VERSION") ;; *) echo "cross-build.sh: $2 version printed '$v'" >&2; exit 1 ;; esac
	"$1" "$2" machines --builders 'ssh://b1 aarch64-linux,x86_64-linux - 4 2 kvm' >/dev/null
	echo "ran under $1: $2"
}
smoke qemu-aarch64-static "$out/offload-$VERSION-linux-arm64"
smoke qemu-riscv64-static "$out/offload-$VERSION-linux-riscv64"
smoke qemu-arm-static "$out/offload-$VERSION-linux-armv6"
ls -l "$out"/offload-"$VERSION"-* | awk '{print $5, $NF}'
