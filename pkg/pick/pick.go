// SPDX-License-Identifier: MIT

package pick

// Rules for this file:
//   - Choose allocates nothing once Decision.Reasons has grown to the number
//     of machines: no string formatting, no maps, no closures that escape.
//   - No I/O, no clock: the caller passes the time.
//   - Eligibility is Nix's (build-remote.cc, main_build_remote) plus
//     offload's own exclusions; keep the reasons in the same order as the
//     checks, most permanent first.

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

// Request is one `try` from Nix (docs/internals.md).
type Request struct {
	// System is the derivation's platform, e.g. "aarch64-linux", or
	// "builtin".
	System string
	// Features are the required system features, as Nix sends them.
	Features []string
	// LocalWilling is Nix's amWilling: it would build locally now.
	LocalWilling bool
	// DrvPath is the derivation's store path, for messages.
	DrvPath string
	// DrvName is the derivation's name without hash, for messages.
	DrvName string
	// EmulationFailed is set when a build of a derivation of this name
	// failed on a machine that emulated its system and then succeeded on
	// one that did not, lately (the hook remembers that for the setting
	// emulation-failure-memory). Such a
	// request goes to machines that do not emulate the system first
	// (RejectEmulationFailed keeps the others away while one of those
	// fits); when none fits, it stays local if the local machine can build
	// it and Nix is willing, and otherwise goes where it can.
	EmulationFailed bool
}

// Local is what the local machine could build, how fast and how busy it is.
// The caller fills it from Nix's settings and /proc/loadavg.
type Local struct {
	// System is Nix's system setting, e.g. "aarch64-linux".
	System string
	// ExtraPlatforms is Nix's extra-platforms setting.
	ExtraPlatforms []string
	// Features is Nix's system-features setting.
	Features []string
	// SpeedFactor is offload's local-speed-factor setting (0 means 1).
	SpeedFactor float64
	// LoadPerCPU is the one-minute load average divided by the number of
	// CPUs.
	LoadPerCPU float64
}

// Exec says how a machine runs a system.
type Exec uint8

const (
	// Unknown: nobody said, and the presumption does not apply.
	Unknown Exec = iota
	// Native: the machine's own CPU runs it.
	Native
	// Emulated: qemu-user through binfmt_misc (or similar) runs it.
	Emulated
)

func (e Exec) String() string {
	switch e {
	case Native:
		return "native"
	case Emulated:
		return "emulated"
	}
	return "unknown"
}

// SystemExec is what is known about one (machine, system) pair.
type SystemExec struct {
	System string
	Exec   Exec
	// Via names the emulator, e.g. "qemu-aarch64", if known.
	Via string
}

// Load is the state of one machine at decision time. The caller fills one
// per machine, in the same order as the machines; a missing entry is the
// zero Load (idle, healthy, nothing known).
type Load struct {
	// Busy is the number of slots in use.
	Busy int
	// UnhealthyUntil is when the machine may be tried again after failed
	// connections; the zero time means healthy.
	UnhealthyUntil time.Time
	// Failures is the number of failed connections in a row.
	Failures int
	// LastError is the last connection error, for messages.
	LastError string
	// Drained is set by `offload drain`: take no new builds.
	Drained bool
	// Unreachable is set by a hook that failed to connect to the machine
	// itself: unlike a shared unhealthy mark it is not waited out, so a
	// request whose only builders are unreachable is declined (as Nix's
	// own hook does) instead of postponed again and again.
	Unreachable bool
	// Exec says, per system, whether the machine runs it natively or under
	// emulation; systems not listed are unknown.
	Exec []SystemExec
	// Reading is the machine's last load reading (from pkg/remoteload,
	// shared through pkg/slots); a zero Time means none.
	Reading Reading
	// ReadingOurs is how many of this host's builds (Busy) Reading.Builds
	// already counted (slots.Builder.ReadingOurs).
	ReadingOurs int
	// InputsThere is how many of the request's input derivations this
	// host sent to the machine lately: it likely has their outputs, so
	// less is uploaded. It breaks ties of score.
	InputsThere int
}

// Thresholds say when a machine's real state (its [Load.Reading]) keeps
// new builds away. The zero value turns every test off: choices are as
// without readings. Each test needs its field known in a reading no older
// than MaxAge; an unknown field, a missing or an old reading never keeps a
// machine away.
type Thresholds struct {
	// MaxAge is how old a reading may be, at the decision's time, to
	// count (setting load-max-age); 0 means any age.
	MaxAge time.Duration
	// Builds counts the builds running on the machine that are not this
	// host's (Reading.Builds - Load.ReadingOurs) against its max-jobs,
	// as if they held slots: the machine is busy elsewhere when they and
	// this host's busy slots reach max-jobs, and they count in its score.
	Builds bool
	// LoadPerCPU: busy elsewhere when the one-minute load average per
	// CPU is above it (setting load-max-per-cpu); 0: off.
	LoadPerCPU float64
	// CPUPressure and MemoryPressure, in percent: busy elsewhere when
	// "some avg10" is above (settings cpu-pressure-max and
	// memory-pressure-max); 0: off.
	CPUPressure, MemoryPressure float64
	// StoreFree, in bytes: "store nearly full" when the store's
	// filesystem has less free space (setting store-free-min); 0: off.
	StoreFree int64
}

// DefaultThresholds are the defaults of the load-aware settings:
//
//   - MaxAge 60 s: the hook refreshes readings older than load-refresh
//     (5 s) when it needs them, so a reading this old means nobody could
//     read the machine for a while; better to decide as without readings.
//   - Builds on: builds from other hosts are what load-aware is for.
//   - LoadPerCPU 2: twice as many runnable tasks as CPUs means every
//     build there gets at most half a CPU; a new one slows them all. A
//     machine running its max-jobs builds with all cores each already
//     sits near 1 to 2.
//   - CPUPressure off: "some" CPU pressure is high on any saturated
//     machine, even one that still makes good progress; the load per CPU
//     says the same with a meaning people know.
//   - MemoryPressure 20 %: tasks stalled on memory a fifth of the last
//     ten seconds means reclaim or swap is slowing builds down, and more
//     builds lead to the out-of-memory killer.
//   - StoreFree 1 GiB: below that most builds with real outputs fail with
//     "No space left on device".
var DefaultThresholds = Thresholds{
	MaxAge:         60 * time.Second,
	Builds:         true,
	LoadPerCPU:     2,
	MemoryPressure: 20,
	StoreFree:      1 << 30,
}

// Figures over a threshold, for the reason.
const (
	overBuilds uint8 = 1 << iota
	overLoad
	overCPU
	overMemory
)

// judge applies t to a machine's reading: how many builds from elsewhere
// count against max-jobs, which figures are over their thresholds, and
// whether the store is nearly full.
func (t *Thresholds) judge(ld *Load, maxJobs int, now time.Time) (elsewhere int, over uint8, storeLow bool) {
	r := &ld.Reading
	if r.Time.IsZero() || t.MaxAge > 0 && now.Sub(r.Time) > t.MaxAge {
		return 0, 0, false
	}
	if t.Builds && r.Builds > 0 {
		elsewhere = max(r.Builds-max(ld.ReadingOurs, 0), 0)
		if max(ld.Busy, 0)+elsewhere >= maxJobs {
			over |= overBuilds
		}
	}
	if t.LoadPerCPU > 0 && r.CPUs > 0 && r.Load1 >= 0 && float64(r.Load1)/1000/float64(r.CPUs) > t.LoadPerCPU {
		over |= overLoad
	}
	if t.CPUPressure > 0 && r.CPUPressure >= 0 && float64(r.CPUPressure)/100 > t.CPUPressure {
		over |= overCPU
	}
	if t.MemoryPressure > 0 && r.MemoryPressure >= 0 && float64(r.MemoryPressure)/100 > t.MemoryPressure {
		over |= overMemory
	}
	storeLow = t.StoreFree > 0 && r.StoreFree >= 0 && r.StoreFree < t.StoreFree
	return elsewhere, over, storeLow
}

// Emulation is the `emulation` setting: how machines that emulate a non-x86
// system on an x86 CPU rank against equally good others.
type Emulation uint8

const (
	// EmulationPrefer ranks emulating x86 machines first on ties (default).
	EmulationPrefer Emulation = iota
	// EmulationNeutral ignores emulation when ranking.
	EmulationNeutral
	// EmulationAvoid ranks emulating x86 machines last on ties.
	EmulationAvoid
)

func (e Emulation) String() string {
	switch e {
	case EmulationNeutral:
		return "neutral"
	case EmulationAvoid:
		return "avoid"
	}
	return "prefer"
}

// ErrEmulation is returned by ParseEmulation for an unknown value.
var ErrEmulation = errors.New(`pick: emulation must be "prefer", "neutral" or "avoid"`)

// ParseEmulation parses the `emulation` setting; "" means prefer.
func ParseEmulation(s string) (Emulation, error) {
	switch s {
	case "", "prefer":
		return EmulationPrefer, nil
	case "neutral":
		return EmulationNeutral, nil
	case "avoid":
		return EmulationAvoid, nil
	}
	return EmulationPrefer, ErrEmulation
}

// Options are the user's settings for choosing.
type Options struct {
	// Emulation is the `emulation` setting (default prefer).
	Emulation Emulation
	// EmulationPenalty divides the speed factor of emulated pairs
	// (setting emulation-penalty; 0 means 1).
	EmulationPenalty float64
	// Only, if not empty, restricts the choice to these machines (names or
	// URIs, from OFFLOAD_ONLY).
	Only []string
	// Avoid excludes these machines (names or URIs, from OFFLOAD_AVOID).
	Avoid []string
	// Thresholds keep machines whose real state is over them away; the
	// zero value is off (the load-aware setting off).
	Thresholds Thresholds
}

// ParseList splits the value of OFFLOAD_ONLY or OFFLOAD_AVOID, builder
// names or URIs separated by commas, dropping spaces and empty entries.
func ParseList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// Answer is the hook's reply to Nix (docs/internals.md). The hook writes
// it to Nix (pkg/hookproto) and keeps it in the decision ring of the slot
// file (pkg/slots), which stores the number: the values never change.
type Answer uint8

const (
	// NoAnswer is the zero Answer: none given, as in an empty entry of
	// the decision ring.
	NoAnswer Answer = iota
	// Accept: the chosen machine builds it.
	Accept
	// Decline: Nix builds it locally, or fails.
	Decline
	// Postpone: ask again later; a machine could build it but is full or
	// briefly unhealthy, and the local machine cannot.
	Postpone
	// DeclinePermanently: no machines at all; Nix stops asking.
	DeclinePermanently
)

var answerNames = [...]string{"none", "accept", "decline", "postpone", "decline-permanently"}

// String returns the protocol word, without the leading "# ": "accept",
// "decline", "postpone" or "decline-permanently"; "none" for NoAnswer.
func (a Answer) String() string {
	if int(a) < len(answerNames) {
		return answerNames[a]
	}
	return "answer(" + strconv.FormatUint(uint64(a), 10) + ")"
}

// Reject says why a machine is not eligible. The constants are in the order
// Choose checks them.
type Reject uint8

const (
	// RejectNone: the machine is eligible.
	RejectNone Reject = iota
	// RejectSystem: it does not list the needed system.
	RejectSystem
	// RejectFeature: it lacks a required feature.
	RejectFeature
	// RejectMandatory: one of its mandatory features is not required.
	RejectMandatory
	// RejectNoJobs: its max-jobs is 0.
	RejectNoJobs
	// RejectOnly: Options.Only is set and does not name it.
	RejectOnly
	// RejectAvoid: Options.Avoid names it.
	RejectAvoid
	// RejectDrained: it is drained.
	RejectDrained
	// RejectUnreachable: this hook could not connect to it just now.
	RejectUnreachable
	// RejectUnhealthy: it is marked unhealthy.
	RejectUnhealthy
	// RejectFull: every slot is busy.
	RejectFull
	// RejectStoreFull: its store's filesystem has less free space than
	// Thresholds.StoreFree.
	RejectStoreFull
	// RejectBusyElsewhere: its real state is over a threshold: builds
	// from elsewhere fill its max-jobs, or its load or pressure is too
	// high.
	RejectBusyElsewhere
	// RejectEmulationFailed: it emulates the system, the derivation's
	// build failed under emulation lately (Request.EmulationFailed), and a
	// machine that does not emulate it fits the request.
	RejectEmulationFailed
)

// transient reports whether the machine could build the request were it not
// for a state that passes by itself (Nix's rightType).
func (r Reject) transient() bool {
	return r == RejectUnhealthy || r == RejectFull || r == RejectStoreFull || r == RejectBusyElsewhere
}

// Reason is what Choose found about one machine.
type Reason struct {
	URI, Name string
	// Eligible is true when the machine passed every test, whether or not
	// it was chosen.
	Eligible bool
	// Reject says which test failed first (RejectNone when eligible).
	Reject Reject
	// Score is busy slots / effective speed, lower is better; set for
	// machines that list the system and features, else 0.
	Score float64
	// Speed is the effective speed for the needed system.
	Speed float64
	// Busy and MaxJobs are the slot counts.
	Busy, MaxJobs int
	// Elsewhere is the number of builds from elsewhere that count
	// against MaxJobs and in Score (Thresholds.Builds).
	Elsewhere int
	// Exec is how the machine runs the needed system; Presumed is true
	// when that was presumed from its systems list, not known.
	Exec     Exec
	Presumed bool
	// Via names the emulator, if known.
	Via string
	// InputsThere is Load.InputsThere.
	InputsThere int

	prefer bool  // emulating x86 machine, for the preference
	over   uint8 // figures over their thresholds

	// For formatting on demand.
	m  *spec.Machine
	ld *Load
	d  *Decision
}

// Decision is the result of Choose. Reuse one Decision across calls: its
// Reasons slice is reused, so steady-state decisions allocate nothing.
type Decision struct {
	Answer Answer
	// Index is the chosen machine's index, or -1.
	Index int
	// Reasons has one entry per machine, in the machines' order.
	Reasons []Reason

	// Kept to explain the decision on demand.
	system      string
	features    []string
	now         time.Time
	best        int // best remote machine, even when local wins; -1 if none
	localFaster bool
	localCan    bool
	localSpeed  float64 // speed a new build would get locally
	remoteSpeed float64 // speed a new build would get on best
	localUtil   float64
	// The request failed under emulation lately and no machine that does
	// not emulate its system fits: it stays local.
	emulationLocal bool
}

// Chosen returns the chosen machine's URI, or "".
func (d *Decision) Chosen() string {
	if d.Index < 0 || d.Index >= len(d.Reasons) {
		return ""
	}
	return d.Reasons[d.Index].URI
}

// LocalCanBuild reports whether the local machine could build the request
// (its system or extra platforms, and its features), whether or not Nix is
// willing now. Nix logs its "Failed to find a machine" table louder when
// the local machine cannot build the derivation; the hook can do the same.
func (d *Decision) LocalCanBuild() bool { return d.localCan }

var zeroLoad Load

// Choose decides which of ms builds req, and why, into d. loads[i] is the
// state of ms[i] (missing entries mean idle and healthy). now is the
// decision's time, against which Load.UnhealthyUntil is compared.
//
// d and its Reasons refer to ms, loads and req.Features afterwards, to
// explain themselves on demand: do not change those, or call Choose with d
// again, before calling Why, WriteText or WriteJSON.
func Choose(d *Decision, ms []spec.Machine, loads []Load, req Request, local Local, o Options, now time.Time) {
	*d = Decision{Reasons: d.Reasons[:0], Index: -1, best: -1,
		system: req.System, features: req.Features, now: now,
		localCan: canBuildLocally(req, local)}
	if len(ms) == 0 {
		d.Answer = DeclinePermanently
		return
	}
	penalty := positive(o.EmulationPenalty)
	nonX86 := req.System != "builtin" && !isX86(req.System) && strings.HasSuffix(req.System, "-linux")
	rightType := false
	best := -1
	// For Request.EmulationFailed: emulating machines held back, and
	// whether a machine that does not emulate fits.
	held, nativeFits := 0, false
	if cap(d.Reasons) < len(ms) {
		d.Reasons = make([]Reason, len(ms))
	}
	d.Reasons = d.Reasons[:len(ms)]
	for i := range ms {
		m := &ms[i]
		ld := &zeroLoad
		if i < len(loads) {
			ld = &loads[i]
		}
		r := &d.Reasons[i]
		*r = Reason{URI: m.URI, Name: m.Name, Busy: ld.Busy, MaxJobs: m.MaxJobs, InputsThere: ld.InputsThere, m: m, ld: ld, d: d}
		elsewhere, over, storeLow := o.Thresholds.judge(ld, m.MaxJobs, now)
		r.Elsewhere, r.over = elsewhere, over

		switch {
		case req.System != "builtin" && !contains(m.Systems, req.System):
			r.Reject = RejectSystem
		case !subset2(req.Features, m.SupportedFeatures, m.MandatoryFeatures):
			r.Reject = RejectFeature
		case !subset(m.MandatoryFeatures, req.Features):
			r.Reject = RejectMandatory
		case m.MaxJobs <= 0:
			r.Reject = RejectNoJobs
		case len(o.Only) > 0 && !names(o.Only, m):
			r.Reject = RejectOnly
		case names(o.Avoid, m):
			r.Reject = RejectAvoid
		case ld.Drained:
			r.Reject = RejectDrained
		case ld.Unreachable:
			r.Reject = RejectUnreachable
		case ld.UnhealthyUntil.After(now):
			r.Reject = RejectUnhealthy
		case ld.Busy >= m.MaxJobs:
			r.Reject = RejectFull
		case storeLow:
			r.Reject = RejectStoreFull
		case over != 0:
			r.Reject = RejectBusyElsewhere
		}
		if r.Reject != RejectNone && r.Reject < RejectNoJobs {
			continue
		}

		// The machine fits the request: rate the (machine, system) pair.
		for j := range ld.Exec {
			if ld.Exec[j].System == req.System {
				r.Exec, r.Via = ld.Exec[j].Exec, ld.Exec[j].Via
				break
			}
		}
		listsX86 := listsX86(m)
		if r.Exec == Unknown && nonX86 && listsX86 {
			r.Exec, r.Presumed = Emulated, true
		}
		r.prefer = r.Exec == Emulated && nonX86 && listsX86
		r.Speed = positive(m.SpeedFactor)
		if r.Exec == Emulated {
			r.Speed /= penalty
		}
		busy := max(ld.Busy, 0) + elsewhere
		r.Score = float64(busy) / r.Speed

		if req.EmulationFailed && r.Exec != Emulated && (r.Reject == RejectNone || r.Reject.transient()) {
			nativeFits = true
		}
		if req.EmulationFailed && r.Exec == Emulated && r.Reject == RejectNone {
			r.Reject = RejectEmulationFailed
			held++
			continue
		}
		if r.Reject.transient() {
			rightType = true
		}
		if r.Reject != RejectNone {
			continue
		}
		r.Eligible = true
		if best < 0 || better(r, &d.Reasons[best], o.Emulation) {
			best = i
		}
	}
	if held > 0 && !nativeFits {
		// Nothing but emulation fits: the local machine when it can
		// build it, else emulation after all.
		if req.LocalWilling && d.localCan {
			d.emulationLocal = true
			d.Answer = Decline
			return
		}
		for i := range d.Reasons {
			r := &d.Reasons[i]
			if r.Reject != RejectEmulationFailed {
				continue
			}
			r.Reject, r.Eligible = RejectNone, true
			if best < 0 || better(r, &d.Reasons[best], o.Emulation) {
				best = i
			}
		}
	}
	d.best = best

	if best < 0 {
		switch {
		case rightType && !(req.LocalWilling && d.localCan):
			d.Answer = Postpone
		default:
			d.Answer = Decline
		}
		return
	}
	if req.LocalWilling && d.localCan {
		r := &d.Reasons[best]
		d.remoteSpeed = r.Speed / (1 + float64(max(r.Busy, 0)+r.Elsewhere)/float64(r.MaxJobs))
		d.localUtil = local.LoadPerCPU
		if !(d.localUtil > 0) || math.IsInf(d.localUtil, 0) {
			d.localUtil = 0
		}
		ls := positive(local.SpeedFactor)
		if req.System != "builtin" && family(req.System) != family(local.System) {
			ls /= penalty
		}
		d.localSpeed = ls / (1 + d.localUtil)
		if d.localSpeed > d.remoteSpeed {
			d.localFaster = true
			d.Answer = Decline
			return
		}
	}
	d.Answer = Accept
	d.Index = best
}

// Presumed is how machine m is presumed to run system when nothing is
// known: Emulated for a non-x86 Linux system on a machine that lists an x86
// system too (an x86 machine running it through qemu-user, the usual
// case), else Unknown.
func Presumed(m *spec.Machine, system string) Exec {
	if system != "builtin" && !isX86(system) && strings.HasSuffix(system, "-linux") && listsX86(m) {
		return Emulated
	}
	return Unknown
}

func listsX86(m *spec.Machine) bool {
	return contains(m.Systems, "x86_64-linux") || contains(m.Systems, "i686-linux")
}

// better reports whether a ranks before b; a comes later in file order.
func better(a, b *Reason, e Emulation) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	if a.InputsThere != b.InputsThere {
		return a.InputsThere > b.InputsThere
	}
	if a.Speed != b.Speed {
		return a.Speed > b.Speed
	}
	if a.prefer != b.prefer && e != EmulationNeutral {
		return a.prefer == (e == EmulationPrefer)
	}
	return a.Busy+a.Elsewhere < b.Busy+b.Elsewhere
}

func canBuildLocally(req Request, l Local) bool {
	if req.System != "builtin" && req.System != l.System && !contains(l.ExtraPlatforms, req.System) {
		return false
	}
	return subset(req.Features, l.Features)
}

// positive returns f, or 1 when f is not a positive finite number.
func positive(f float64) float64 {
	if f > 0 && !math.IsInf(f, 0) {
		return f
	}
	return 1
}

func isX86(system string) bool {
	return strings.HasPrefix(system, "x86_64-") || strings.HasPrefix(system, "i686-")
}

// family returns the CPU family of a system's architecture: CPUs of one
// family run each other's code without emulation (mostly: not every aarch64
// runs armv7l, but that is the case to presume).
func family(system string) string {
	arch, _, _ := strings.Cut(system, "-")
	switch {
	case arch == "x86_64" || arch == "i686" || arch == "i386":
		return "x86"
	case arch == "aarch64" || strings.HasPrefix(arch, "arm"):
		return "arm"
	case strings.HasPrefix(arch, "riscv"):
		return "riscv"
	case strings.HasPrefix(arch, "powerpc"):
		return "powerpc"
	case strings.HasPrefix(arch, "mips"):
		return "mips"
	}
	return arch
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

// subset2 reports whether every element of a is in b or c.
func subset2(a, b, c []string) bool {
	for _, x := range a {
		if !contains(b, x) && !contains(c, x) {
			return false
		}
	}
	return true
}

// names reports whether list names m, by name or URI.
func names(list []string, m *spec.Machine) bool {
	for _, x := range list {
		if x != "" && (x == m.Name || x == m.URI) {
			return true
		}
	}
	return false
}
