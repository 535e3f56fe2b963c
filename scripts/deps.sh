#!/bin/sh
# deps.sh: install what building and testing offload needs on a fresh
# Debian 12 machine, as root, and create what Debian's packages leave out.
# Does nothing for what is already there.
set -eu
need=""
# want PACKAGE TEST...: install PACKAGE unless the test succeeds.
want() { pkg=$1; shift; "$@" >/dev/null 2>&1 || need="$need $pkg"; }
have() { command -v "$1"; }
want nix-bin have nix-build
want openssh-server test -x /usr/sbin/sshd
want openssh-client have ssh
want qemu-user-static have qemu-aarch64-static
want util-linux have unshare
want iproute2 have ip            # the link-down test's network namespace
want file have file               # the cross-build's static-binary check
want zstd have zstd               # the test builders compress copies with it
want make have make
want git have git
want debootstrap have debootstrap # the Debian unstable root with current Nix
want ca-certificates test -f /etc/ssl/certs/ca-certificates.crt
want gcc have gcc                 # cgo, for the race detector
want libc6-dev test -f /usr/include/stdio.h
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing Debian packages:$need (run as root to install them)" >&2
		exit 1
	fi
	echo "deps.sh: installing$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# Debian's nix-bin installs no /nix: the test builders and clients bind a
# store of their own over it, and the demo's too.
[ -d /nix ] || mkdir -m 0755 /nix
mkdir -p /run/sshd
command -v go >/dev/null 2>&1 || { echo "deps.sh: go is not on PATH (expected /usr/local/go/bin, Go $(sed -n 's/^go //p' go.mod) or later)" >&2; exit 1; }
go mod download
