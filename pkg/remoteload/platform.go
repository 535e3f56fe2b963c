// SPDX-License-Identifier: MIT

package remoteload

// Rules for this file:
//   - Like Parse, ParsePlatform trusts nothing: bounded lists, and anything
//     that does not parse is left out, never an error.
//   - Platform.Exec answers in pick.Exec, which pkg/slots stores and
//     pkg/pick weighs.

import (
	"strings"

	"github.com/offload-nix/offload/pkg/pick"
)

// Limits of what the platform part of the output keeps.
const (
	maxNixConf = 64
	maxBinfmt  = 64
)

// Platform is what a builder said about the systems it can build: its
// kernel's architecture, the system and extra-platforms settings of its
// nix.conf, and the interpreters registered with binfmt_misc. The zero
// Platform knows nothing.
type Platform struct {
	// Machine is the kernel's architecture (uname -m), e.g. "x86_64".
	Machine string
	// System is the system setting of the builder's nix.conf, if set.
	System string
	// ExtraPlatforms is the extra-platforms setting of its nix.conf.
	ExtraPlatforms []string
	// Binfmt lists the enabled binfmt_misc entries; nil when binfmt_misc
	// is not mounted, not readable or disabled as a whole.
	Binfmt []Binfmt
}

// Binfmt is one enabled binfmt_misc entry.
type Binfmt struct {
	// Name is the entry's name, e.g. "qemu-aarch64" (Debian) or
	// "aarch64-linux" (NixOS).
	Name string
	// Interpreter is the program the kernel runs, e.g.
	// "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".
	Interpreter string
}

// Known reports whether the builder told anything about its platform.
func (p *Platform) Known() bool {
	return p.Machine != "" || p.System != "" || len(p.ExtraPlatforms) > 0 || len(p.Binfmt) > 0
}

// ParsePlatform reads the platform part of the output of [Script]. It is
// empty when out has no header line or no platform lines (an older script,
// or a builder that hides them).
func ParsePlatform(out []byte) Platform {
	var p Platform
	_, err := parse(out, &p)
	if err != nil {
		return Platform{}
	}
	return p
}

// platformLine takes one line of the platform part.
func platformLine(pl *Platform, st *platformState, key, val string) {
	switch key {
	case "uname":
		st.uname++
		pl.Machine = strings.TrimSpace(val)
	case "nixconf":
		if st.conf >= maxNixConf {
			return
		}
		st.conf++
		k, v, ok := strings.Cut(val, "=")
		if !ok {
			return
		}
		switch strings.TrimSpace(k) {
		case "system":
			pl.System = strings.TrimSpace(v)
		case "extra-platforms":
			// Later lines replace earlier ones, as in nix.conf.
			pl.ExtraPlatforms = strings.Fields(v)
		}
	case "binfmt-status":
		st.status = strings.TrimSpace(val)
	case "binfmt":
		if len(pl.Binfmt) >= maxBinfmt {
			return
		}
		f := strings.Fields(val)
		if len(f) == 3 && f[1] == "enabled" {
			pl.Binfmt = append(pl.Binfmt, Binfmt{Name: f[0], Interpreter: f[2]})
		}
	}
}

type platformState struct {
	uname, conf int
	status      string
}

func (st *platformState) finish(pl *Platform) {
	if st.uname != 1 || strings.ContainsAny(pl.Machine, " \t") {
		pl.Machine = ""
	}
	if strings.ContainsAny(pl.System, " \t") {
		pl.System = ""
	}
	if st.status != "enabled" {
		pl.Binfmt = nil
	}
}

// Exec says how the builder runs system (a Nix system such as
// "aarch64-linux"), and through which emulator when emulated (the binfmt
// entry's name, e.g. "qemu-aarch64", or "" when not known). In order:
//
//   - native when system is the system setting of its nix.conf, or the
//     kernel's architecture (or one that CPU runs without help: i686 on
//     x86_64, 32-bit ARM on aarch64 unless an interpreter is registered
//     for it);
//   - emulated when a binfmt_misc interpreter is registered for the
//     system's CPU, or when extra-platforms lists it;
//   - unknown otherwise.
func (p *Platform) Exec(system string) (pick.Exec, string) {
	if system == "" {
		return pick.Unknown, ""
	}
	if p.System == system {
		return pick.Native, ""
	}
	arch, kernel, _ := strings.Cut(system, "-")
	emu, via := false, ""
	for _, b := range p.Binfmt {
		if kernel == "linux" && binfmtRuns(b, arch) {
			emu, via = true, b.Name
			break
		}
	}
	if p.Machine != "" && kernel == "linux" {
		switch m := p.Machine; {
		case m == arch:
			return pick.Native, ""
		case m == "x86_64" && (arch == "i686" || arch == "i386"):
			return pick.Native, ""
		case m == "aarch64" && strings.HasPrefix(arch, "arm") && !emu:
			return pick.Native, ""
		case strings.HasPrefix(m, "armv") && strings.HasPrefix(arch, "armv") && m >= arch:
			return pick.Native, ""
		}
	}
	if emu {
		return pick.Emulated, via
	}
	for _, x := range p.ExtraPlatforms {
		if x == system {
			return pick.Emulated, ""
		}
	}
	return pick.Unknown, ""
}

// binfmtRuns reports whether the binfmt entry b is an interpreter for the
// Nix architecture arch ("aarch64", "armv7l", "riscv64", "i686", …), going
// by its name or its interpreter's file name: "qemu-aarch64",
// "aarch64-linux", "qemu-aarch64-static", "aarch64-binfmt-P".
func binfmtRuns(b Binfmt, arch string) bool {
	for _, s := range [2]string{b.Name, b.Interpreter[strings.LastIndexByte(b.Interpreter, '/')+1:]} {
		s = strings.TrimPrefix(s, "qemu-")
		for _, suf := range [...]string{"-binfmt-P", "-binfmt", "-static", "-linux"} {
			s = strings.TrimSuffix(s, suf)
		}
		if s == "" {
			continue
		}
		switch {
		case s == arch:
			return true
		case s == "arm" && strings.HasPrefix(arch, "arm") && arch != "arm64":
			return true
		case s == "i386" && arch == "i686":
			return true
		case s == "ppc64le" && arch == "powerpc64le", s == "ppc64" && arch == "powerpc64":
			return true
		}
	}
	return false
}
