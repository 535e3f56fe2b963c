// SPDX-License-Identifier: MIT

// Package remoteload reads a builder's real load over the SSH connection
// offload already has, without any agent on the builder.
//
// Several hosts (boards, laptops) often share the same builders, and each
// host's slot file counts only its own builds. A fixed shell script,
// [Script], run by /bin/sh on the builder ([Command], the script on stdin),
// prints the builder's state in a line format that [Parse] reads into a
// [Reading]: the number of CPUs, the load averages, pressure stall
// information (Linux 4.20 and later), available memory, free space of the
// store's filesystem and how many Nix builds run there now, whoever sent
// them.
//
// Nothing from configuration goes into the script, so a machines file cannot
// make the builder run anything else. Every field is optional: a builder
// that is not Linux, hides something or runs a forced command prints less
// or nothing, and the reading says "unknown" for what is missing; the caller
// then decides as if there were no reading. [Parse] fails only on output
// that is not this format at all, and callers treat that as unknown too.
//
// # Output format
//
// After any lines the remote shell's startup files may print, the script
// prints a header line "offload-load 1" and then one "key value…" line per
// item; unknown keys are ignored, a key given twice makes its field unknown,
// and a last line without its newline (the command was cut short) is
// dropped:
//
//	offload-load 1
//	cpus 8
//	loadavg 7.91 6.02 5.10 9/812 40123
//	pressure cpu some avg10=65.36 avg60=85.95 avg300=73.58 total=1490278430
//	pressure memory some avg10=41.00 avg60=12.00 avg300=3.00 total=123
//	pressure io some avg10=3.17 avg60=2.63 avg300=1.72 total=35930729
//	meminfo MemTotal: 16314080 kB
//	meminfo MemAvailable: 9123456 kB
//	df /dev/vda 264212084 18170180 77331084 20% /
//	procfs rw,relatime
//	uid 0
//	builds 2
//	uname x86_64
//	nixconf extra-platforms = aarch64-linux riscv64-linux
//	binfmt-status enabled
//	binfmt qemu-aarch64 enabled /usr/libexec/qemu-binfmt/aarch64-binfmt-P
//	end
//
// The lines from "uname" on describe the builder's platform ([Platform],
// [ParsePlatform]): the kernel's architecture, the system and
// extra-platforms lines of its nix.conf (from $NIX_CONF_DIR or /etc/nix,
// then $NIX_CONFIG) and the binfmt_misc entries, from which [Platform.Exec]
// tells which systems it runs natively and which under emulation. Included
// nix.conf files and settings given on Nix's command line are not read.
//
// macOS prints "vm.loadavg { 1.91 2.04 2.10 }" for the load and has no
// /proc: its pressure, memory and builds stay unknown.
//
// # Counting builds
//
// Nix runs each build's builder as a direct child of the Nix process that
// builds it: a nix-daemon worker (builds sent over ssh-ng://, and ssh://
// builds on a multi-user install), `nix-store --serve` (ssh:// on a
// single-user or root install, like offload's test builders), or a local
// nix-build or nix command. Sandboxed builds too: Nix clones the sandboxed
// builder with CLONE_PARENT, so its parent is the Nix process and not the
// short-lived helper (src/libstore/linux/build/linux-derivation-builder.cc).
// The script counts live processes (not zombies) whose parent's command name
// is nix-daemon, nix-store, nix or nix-build and whose own name does not
// start with "nix" (daemon workers, clone helpers and builtin builders such
// as builtin:fetchurl, which are forks of Nix) and is not a build hook
// (build-remote, offload) or ssh. This works with and without build users,
// from Nix 2.8 to current Nix, and costs one read of every /proc/PID/stat.
//
// Limits: a builtin builder is not counted (it is short); a builder whose
// program is named nix… is not counted; a process a local user starts with
// `nix run` or `nix develop` may be counted for as long as it runs; when
// /proc is mounted with hidepid and the login is not root the count is
// unknown (other users' processes are invisible); builds in another PID
// namespace (a container with its own Nix) are counted only when the
// builder's /proc shows them.
package remoteload
