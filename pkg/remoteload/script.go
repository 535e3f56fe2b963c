// SPDX-License-Identifier: MIT

package remoteload

// Rules for this file:
//   - Script is a constant: nothing from configuration or from the builder
//     is ever put into it.
//   - Script reads nothing from its stdin: sh reads the script itself from
//     stdin, so every command runs with </dev/null (the braces), and sh
//     parses the whole group before it runs any of it.
//   - Only POSIX sh, awk, cat, df, id and the usual fallbacks for the CPU
//     count: a missing tool leaves its line empty, which reads as unknown.

// Command is the program to run on the builder, with [Script] on its
// stdin. Any login shell (bash, zsh, fish, tcsh) runs "/bin/sh" the same
// way, which a script given as the command line would not be.
const Command = "/bin/sh"

// Script is the shell script [Command] runs on the builder. See the package
// documentation for what it prints.
const Script = `
{
PATH=$PATH:/run/current-system/sw/bin:/nix/var/nix/profiles/default/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
LC_ALL=C
export PATH LC_ALL
echo 'offload-load 1'
n=$(nproc 2>/dev/null) || n=$(getconf _NPROCESSORS_ONLN 2>/dev/null) || n=$(grep -c '^processor' /proc/cpuinfo 2>/dev/null) || n=$(sysctl -n hw.ncpu 2>/dev/null) || n=
echo "cpus $n"
if [ -r /proc/loadavg ]; then
	read -r l </proc/loadavg && echo "loadavg $l"
else
	echo "vm.loadavg $(sysctl -n vm.loadavg 2>/dev/null)"
fi
for r in cpu memory io; do
	[ -r /proc/pressure/$r ] || continue
	while read -r l; do echo "pressure $r $l"; done 2>/dev/null </proc/pressure/$r
done
if [ -r /proc/meminfo ]; then
	while read -r k v u; do
		case $k in MemTotal: | MemAvailable:) echo "meminfo $k $v $u" ;; esac
	done </proc/meminfo
fi
df -Pk /nix/store 2>/dev/null | while read -r l; do echo "df $l"; done
if [ -r /proc/self/stat ]; then
	while read -r d m t o x; do
		[ "$m" = /proc ] && echo "procfs $o"
	done </proc/mounts
	echo "uid $(id -u 2>/dev/null)"
	echo "builds $(cat /proc/[0-9]*/stat 2>/dev/null | awk '
{
	o = index($0, "(")
	c = 0
	for (i = length($0); i > o; i--) if (substr($0, i, 1) == ")") { c = i; break }
	if (o < 2 || c == 0) next
	p = substr($0, 1, o - 2)
	comm[p] = substr($0, o + 1, c - o - 1)
	split(substr($0, c + 2), f, " ")
	st[p] = f[1]
	pp[p] = f[2]
}
END {
	n = 0
	for (p in pp) {
		q = comm[pp[p]]
		if (q != "nix-daemon" && q != "nix-store" && q != "nix" && q != "nix-build") continue
		k = comm[p]
		if (st[p] == "Z" || st[p] == "X" || k ~ /^nix/ || k == "build-remote" || k == "offload" || k == "ssh") continue
		n++
	}
	print n
}' 2>/dev/null)"
fi
echo "uname $(uname -m 2>/dev/null)"
for c in "${NIX_CONF_DIR:-/etc/nix}/nix.conf"; do
	[ -r "$c" ] || continue
	while read -r l; do
		case $l in system\ * | system=* | extra-platforms\ * | extra-platforms=*) echo "nixconf $l" ;; esac
	done <"$c"
done
if [ -n "${NIX_CONFIG:-}" ]; then
	printf '%s\n' "$NIX_CONFIG" | while read -r l; do
		case $l in system\ * | system=* | extra-platforms\ * | extra-platforms=*) echo "nixconf $l" ;; esac
	done
fi
if [ -r /proc/sys/fs/binfmt_misc/status ]; then
	read -r s </proc/sys/fs/binfmt_misc/status && echo "binfmt-status $s"
	for f in /proc/sys/fs/binfmt_misc/*; do
		n=${f##*/}
		case $n in register | status) continue ;; esac
		s= i=
		while read -r k v; do
			case $k in enabled | disabled) s=$k ;; interpreter) i=$v ;; esac
		done <"$f" 2>/dev/null
		echo "binfmt $n $s $i"
	done
fi
echo end
} </dev/null
`
