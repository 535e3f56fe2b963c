// SPDX-License-Identifier: MIT

package decide

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// DownAfter is the number of failed connections in a row after which a
// builder still inside its backoff counts as down: requests that only it
// could serve are declined (Nix builds them locally, or fails with the
// reason) instead of postponed, so a dead builder fails a build after a few
// backoffs rather than making it wait forever, while one failed handshake
// only postpones.
const DownAfter = 3

// Load is what a decision at now needs to know of builder b's shared
// state. The hook and `offload pick` both use it, so they agree.
func Load(b *slots.Builder, now time.Time) pick.Load {
	l := pick.Load{
		Busy:           b.Busy,
		UnhealthyUntil: b.UnhealthyUntil,
		Failures:       b.ConsecutiveFailures,
		Drained:        b.Drained,
		Reading:        b.Reading,
		ReadingOurs:    b.ReadingOurs,
	}
	if b.LastError != slots.ErrNone {
		l.LastError = b.LastError.String()
	}
	if b.ConsecutiveFailures >= DownAfter && b.UnhealthyUntil.After(now) {
		l.Unreachable = true
		l.LastError += ", " + strconv.Itoa(b.ConsecutiveFailures) + " failed connects in a row"
	}
	return l
}

// Loads fills loads, one per machine of ms, from snap (the slot file's
// snapshot; nil: every builder idle and healthy) at now: the shared
// health, busy slots and readings, and how each machine runs system (over
// is the system-exec setting). execs backs the loads' Exec entries; both
// have len(ms).
func Loads(loads []pick.Load, execs []pick.SystemExec, ms []spec.Machine, snap []slots.Builder, system string, over []config.ExecEntry, now time.Time) {
	for i := range ms {
		var b *slots.Builder
		for k := range snap {
			if snap[k].URI == ms[i].URI {
				b = &snap[k]
				break
			}
		}
		loads[i] = pick.Load{}
		if b != nil {
			loads[i] = Load(b, now)
		}
		if e, via := ExecOf(&ms[i], b, system, over); e != pick.Unknown {
			execs[i] = pick.SystemExec{System: system, Exec: e, Via: via}
			loads[i].Exec = execs[i : i+1]
		}
	}
}

// EmulationFailed reports whether the derivation called name failed under
// emulation within memory before now, as f remembers (memory 0: not
// remembered).
func EmulationFailed(f *slots.File, name string, memory time.Duration, now time.Time) bool {
	if f == nil || memory <= 0 || name == "" {
		return false
	}
	fl, _ := f.DrvFlags(name, now.Add(-memory))
	return fl&slots.DrvEmulationFailed != 0
}

// ExecOf says how machine m runs system: as the system-exec setting says,
// else as its last probe (b, nil when unknown) found, else unknown. The
// second result names the emulator ("qemu-aarch64") when known.
func ExecOf(m *spec.Machine, b *slots.Builder, system string, over []config.ExecEntry) (pick.Exec, string) {
	for i := range over {
		o := &over[i]
		if o.System == system && (o.Builder == m.Name || o.Builder == m.URI) {
			if o.Native {
				return pick.Native, ""
			}
			return pick.Emulated, ""
		}
	}
	if b == nil {
		return pick.Unknown, ""
	}
	e, qemu := b.ExecOf(system)
	if e == pick.Emulated && qemu {
		return e, QemuName(system)
	}
	return e, ""
}

// QemuName is the name of qemu-user's program for a Nix system:
// "qemu-aarch64" for aarch64-linux, "qemu-arm" for armv7l-linux.
func QemuName(system string) string {
	arch, _, _ := strings.Cut(system, "-")
	switch {
	case strings.HasPrefix(arch, "arm"):
		arch = "arm"
	case arch == "i686":
		arch = "i386"
	case arch == "powerpc64le":
		arch = "ppc64le"
	case arch == "powerpc64":
		arch = "ppc64"
	}
	return "qemu-" + arch
}

// Options are the choosing options: offload's settings c and the
// OFFLOAD_ONLY and OFFLOAD_AVOID lists of the environment.
func Options(c *config.Config, getenv func(string) string) (pick.Options, error) {
	em, err := pick.ParseEmulation(c.Emulation())
	if err != nil {
		return pick.Options{}, err
	}
	var th pick.Thresholds
	if c.LoadAware() {
		th = pick.Thresholds{
			MaxAge:         c.LoadMaxAge(),
			Builds:         true,
			LoadPerCPU:     c.LoadMaxPerCPU(),
			CPUPressure:    c.CPUPressureMax(),
			MemoryPressure: c.MemoryPressureMax(),
			StoreFree:      c.StoreFreeMin(),
		}
	}
	return pick.Options{
		Emulation:        em,
		EmulationPenalty: c.Float("emulation-penalty"),
		Thresholds:       th,
		Only:             pick.ParseList(getenv("OFFLOAD_ONLY")),
		Avoid:            pick.ParseList(getenv("OFFLOAD_AVOID")),
	}, nil
}

// SystemExec is the system-exec setting: how builders run systems, over
// what their probes found (ExecOf).
func SystemExec(c *config.Config) ([]config.ExecEntry, error) {
	return config.ParseExecList(c.String("system-exec"))
}

// Loadavg is where the local machine's load is read.
const Loadavg = "/proc/loadavg"

// LoadPerCPU is the one-minute load average per CPU, read from path (0
// when unreadable): how busy the local machine is, standing in for its
// busy build slots, which Nix does not tell the hook.
func LoadPerCPU(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v / float64(runtime.NumCPU())
}
