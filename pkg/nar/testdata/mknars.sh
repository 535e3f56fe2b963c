#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Regenerates the NAR fixtures in this directory with the real
# `nix-store --dump`. The tree must stay the same as makeTree in
# nar_test.go, which checks Dump against tree.nar. Run from this directory:
#   sh mknars.sh && git diff --exit-code .
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t=$tmp/tree
mkdir -p "$t/emptydir" "$t/sub/deeper"
printf 'hello\n' > "$t/hello"
printf '#!/bin/sh\necho hi\n' > "$t/run.sh"
chmod 755 "$t/run.sh"
: > "$t/empty"
ln -s hello "$t/link"
printf 'nested\n' > "$t/sub/deeper/file"
ln -s /etc/passwd "$t/sub/abs"
nix-store --dump "$t" > tree.nar
nix-store --dump "$t/hello" > file.nar
nix-store --dump "$t/run.sh" > exec.nar
nix-store --dump "$t/empty" > empty.nar
nix-store --dump "$t/link" > symlink.nar
nix-store --dump "$t/emptydir" > emptydir.nar
