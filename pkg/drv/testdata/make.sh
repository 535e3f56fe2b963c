#!/bin/sh
# Regenerates the .drv fixtures in this directory with the local Nix
# (nix-instantiate), in a private mount namespace with a scratch /nix so the
# host's store is never touched. Run as root from anywhere:
#
#	sh pkg/drv/testdata/make.sh
#
# then `go test ./pkg/drv -update` to refresh the golden parse results.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/nix" "$tmp/etc"
printf 'build-users-group =\nsandbox = false\n' >"$tmp/etc/nix.conf"

cat >"$tmp/drvs.nix" <<'NIX'
let
  sh = "/bin/sh";
  simple = derivation {
    name = "t";
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" "echo hi > $out" ];
  };
in {
  simple = simple;
  multi = derivation {
    name = "multi";
    system = "x86_64-linux";
    builder = sh;
    outputs = [ "out" "dev" "lib" ];
    args = [ "-c" "echo a > $out; echo b > $dev; echo c > $lib" ];
  };
  fixed = derivation {
    name = "fixed";
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" "printf hi > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4";
  };
  fixedrec = derivation {
    name = "fixedrec";
    system = "aarch64-linux";
    builder = sh;
    args = [ "-c" "mkdir $out" ];
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = "sha256-pQpattmS9VmO3ZIQUFn66az8GSmB4IvYhTTCFn6SUmo=";
  };
  withinput = derivation {
    name = "withinput";
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" "cat ${simple} > $out" ];
    src = ./drvs.nix;
  };
  structured = derivation {
    name = "structured";
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" "cp .attrs.json $out" ];
    __structuredAttrs = true;
    list = [ 1 2 "three" ];
    nested = { a = true; b = null; };
  };
  escapes = derivation {
    name = "escapes";
    system = "riscv64-linux";
    builder = sh;
    args = [ "-c" "printf '%s\\n' \"quoted\" 'back\\slash'\ttab\r" ];
    multiline = ''
      line one
        line "two"
    '';
  };
}
NIX

NIX_CONF_DIR="$tmp/etc" unshare --mount --propagation private sh -eu -c '
	mount --bind "$1/nix" /nix
	for a in simple multi fixed fixedrec withinput structured escapes; do
		p=$(nix-instantiate --quiet "$1/drvs.nix" -A "$a" 2>/dev/null)
		cp "$p" "$2/$a.drv"
		chmod 644 "$2/$a.drv"
		echo "$p" >"$2/$a.path"
	done
' sh "$tmp" "$here"
