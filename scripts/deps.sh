#!/bin/sh
# deps.sh: install what building and testing offload needs on Debian, as
# root. Does nothing for what is already there.
set -eu
need=""
command -v nix-build >/dev/null 2>&1 || need="$need nix-bin"
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh >/dev/null 2>&1 || need="$need openssh-client"
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v file >/dev/null 2>&1 || need="$need file"
command -v make >/dev/null 2>&1 || need="$need make"
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
mkdir -p /run/sshd
command -v go >/dev/null 2>&1 || { echo "deps.sh: go is not on PATH (expected /usr/local/go/bin)" >&2; exit 1; }
go mod download
