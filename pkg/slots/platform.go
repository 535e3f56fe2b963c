// SPDX-License-Identifier: MIT

package slots

// Rules for this file:
//   - The file stores pick.Exec values (1 native, 2 emulated) in two bits.
//   - Nothing here is on the path of a slot: lookups scan a few words and
//     allocate nothing.

import (
	"time"

	"github.com/offload-nix/offload/pkg/pick"
)

// MaxSystems is the number of systems per builder whose way of running
// (native or emulated) the file keeps.
const MaxSystems = 8

// SystemExec says how a builder runs one system, as its probe found.
type SystemExec struct {
	System string
	// Exec is pick.Native or pick.Emulated (pick.Unknown entries are
	// not stored).
	Exec pick.Exec
	// Qemu is set when a qemu-user interpreter registered with
	// binfmt_misc runs it.
	Qemu bool
}

// Entry word: bits 0-1 exec, bit 2 qemu, bits 8-63 time of the probe in
// Unix seconds.
const (
	exQemu      = 1 << 2
	exTimeShift = 8
)

// SetExec stores what a probe of uri at time at found: how it runs each of
// the systems in list (at most MaxSystems; entries with pick.Unknown are
// left out). It replaces what was stored before.
func (f *File) SetExec(uri string, at time.Time, list []SystemExec) {
	m, off, ok := f.record(uri)
	if !ok {
		return
	}
	secs := uint64(max(at.Unix(), 1)) << exTimeShift
	i := 0
	for _, e := range list {
		if i == MaxSystems {
			break
		}
		if e.Exec != pick.Native && e.Exec != pick.Emulated {
			continue
		}
		w := secs | uint64(e.Exec)
		if e.Qemu {
			w |= exQemu
		}
		o := off + rSystems + i*16
		m.store(o+8, 0)
		m.store(o, hashURI(e.System))
		m.store(o+8, w)
		i++
	}
	for ; i < MaxSystems; i++ {
		o := off + rSystems + i*16
		m.store(o+8, 0)
		m.store(o, 0)
	}
	// A probe that found nothing still says when it ran.
	if len(list) == 0 || m.load(off+rSystems) == 0 {
		m.store(off+rSystems+8, secs)
	}
}

// ExecOf returns how the builder runs system, as last probed: pick.Unknown
// when it was not, or the probe could not tell.
func (b *Builder) ExecOf(system string) (exec pick.Exec, qemu bool) {
	h := hashURI(system)
	for i := range b.execs {
		w := b.execs[i][1]
		if b.execs[i][0] == h && w&3 != 0 {
			return pick.Exec(w & 3), w&exQemu != 0
		}
	}
	return pick.Unknown, false
}

// ExecProbed returns when the builder's platform was last probed; zero
// when never.
func (b *Builder) ExecProbed() time.Time {
	var t uint64
	for i := range b.execs {
		t = max(t, b.execs[i][1]>>exTimeShift)
	}
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(int64(t), 0)
}

// readExecs copies a record's system entries into b.
func readExecs(m *mapping, off int, b *Builder) {
	for i := range b.execs {
		o := off + rSystems + i*16
		b.execs[i] = [2]uint64{m.load(o), m.load(o + 8)}
	}
}

// Derivation table entry fields (see doc.go).
const (
	dtHash  = 0
	dtSeen  = 8
	dtFlags = 16
	dtName  = 32
	dtLen   = 96
)

// DrvEmulationFailed is the flag of a derivation name whose build failed
// on a builder that emulated its system.
const DrvEmulationFailed = 1

// RememberDrv notes flags for the derivation name (without hash) at time
// at, for every hook on the host. The table keeps the 64 names noted
// last; the oldest make room.
func (f *File) RememberDrv(name string, flags uint64, at time.Time) {
	v := f.view()
	if v == nil || f.o.ReadOnly || name == "" {
		return
	}
	m := v.m
	h := hashURI(name)
	base := int(m.g.drvOff())
	for range 4 {
		pick, oldest := -1, uint64(1<<64-1)
		for k := 0; k < drvCount; k++ {
			e := base + k*drvEntrySize
			eh := m.load(e + dtHash)
			if eh == h {
				pick = k
				break
			}
			// A free entry first, then the one noted longest ago.
			age := uint64(0)
			if eh != 0 {
				age = m.load(e+dtSeen) + 1
			}
			if age < oldest {
				pick, oldest = k, age
			}
		}
		e := base + pick*drvEntrySize
		cur := m.load(e + dtHash)
		if cur != h {
			// Take the entry; a concurrent writer that took it first
			// makes this one look again.
			m.store(e+dtSeen, 0)
			if !m.cas(e+dtHash, cur, h) {
				continue
			}
			m.putText(e+dtName, dtLen, name)
		}
		m.or(e+dtFlags, flags)
		m.store(e+dtSeen, uint64(at.UnixNano()))
		return
	}
}

// DrvFlags returns the flags noted for the derivation name since the time
// since, and when they were last noted; 0 when nothing was.
func (f *File) DrvFlags(name string, since time.Time) (uint64, time.Time) {
	v := f.view()
	if v == nil || name == "" {
		return 0, time.Time{}
	}
	m := v.m
	h := hashURI(name)
	base := int(m.g.drvOff())
	for k := 0; k < drvCount; k++ {
		e := base + k*drvEntrySize
		if m.load(e+dtHash) != h {
			continue
		}
		seen := m.load(e + dtSeen)
		if seen == 0 || int64(seen) < since.UnixNano() || !m.textEqual(e+dtName, dtLen, cut(name, dtLen)) {
			return 0, time.Time{}
		}
		return m.load(e + dtFlags), time.Unix(0, int64(seen))
	}
	return 0, time.Time{}
}
