// SPDX-License-Identifier: MIT

package slots

// Rules for this file:
//   - A reading is a pick.Reading, the type pkg/remoteload fills and
//     pkg/pick weighs; nothing converts between them.
//   - Readers never block and never see half a reading: the time word is
//     the sequence word (see doc.go).

import (
	"runtime"
	"sync"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
)

// Readings are stored as they are given, except that values beyond what
// the file holds are stored clamped: loads at 2097 (2097150 thousandths),
// CPUs and builds at 1048574.
const (
	readingBusy = ^uint64(0) // time word while a reading is written
	loadBits    = 21
	loadMax     = 1<<loadBits - 2
	countBits   = 20
	countMax    = 1<<countBits - 2
	psiMax      = 1<<16 - 2
)

// plus1 stores v+1 clamped to hi+1, and 0 for an unknown (negative) v.
func plus1(v int64, hi int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(min(v, hi)) + 1
}

// minus1 undoes plus1.
func minus1(w uint64) int64 { return int64(w) - 1 }

func field(w uint64, shift, bits uint) uint64 { return w >> shift & (1<<bits - 1) }

// SetReading stores r as the last reading of uri, with this host's slots of
// uri in the building phase at this moment (which the reading's Builds
// already counts: see [Builder.ReadingOurs]). A zero r.Time means now. A
// reading older than the stored one is dropped. Call it while holding the
// token from TryRefresh; `offload check`, which reads the builder anyway,
// may call it without.
func (f *File) SetReading(uri string, r pick.Reading) {
	m, off, ok := f.record(uri)
	if !ok {
		return
	}
	t := r.Time
	if t.IsZero() {
		t = f.o.Now()
	}
	ns := uint64(t.UnixNano())
	if ns == 0 || ns == readingBusy {
		ns = 1
	}
	for i := 0; ; i++ {
		cur := m.load(off + rLoadAt)
		if cur == readingBusy && i < 100 {
			// Another writer is between its first and last store;
			// that takes nanoseconds unless it died there.
			runtime.Gosched()
			continue
		}
		if cur != readingBusy && cur > ns {
			return
		}
		if m.cas(off+rLoadAt, cur, readingBusy) {
			break
		}
	}
	rec := (off - m.g.recOff(0)) / int(m.g.recSize())
	ours := 0
	for j := 0; j < int(m.g.slots); j++ {
		so := m.g.slotOff(rec, j)
		if m.load(so) != 0 && Phase(m.load(so+sPhase)) == PhaseBuilding {
			ours++
		}
	}
	m.store(off+rLoad, plus1(int64(r.Load1), loadMax)|
		plus1(int64(r.Load5), loadMax)<<loadBits|
		plus1(int64(r.Load15), loadMax)<<(2*loadBits))
	m.store(off+rReadCounts, plus1(int64(r.CPUs), countMax)|
		plus1(int64(r.Builds), countMax)<<countBits|
		uint64(ours)<<(2*countBits))
	m.store(off+rPressure, plus1(int64(r.CPUPressure), psiMax)|
		plus1(int64(r.MemoryPressure), psiMax)<<16|
		plus1(int64(r.IOPressure), psiMax)<<32)
	const big = 1<<63 - 2
	m.store(off+rMemAvail, plus1(r.MemAvailable, big))
	m.store(off+rMemTotal, plus1(r.MemTotal, big))
	m.store(off+rStoreFree, plus1(r.StoreFree, big))
	m.store(off+rStoreSize, plus1(r.StoreSize, big))
	m.store(off+rLoadAt, ns)
}

// reading reads the reading of the record at off, retrying while it is
// written; it returns no reading if it keeps changing.
func reading(m *mapping, off int) (r pick.Reading, ours int) {
	for range 8 {
		t1 := m.load(off + rLoadAt)
		if t1 == 0 {
			return pick.Reading{}, 0
		}
		if t1 == readingBusy {
			runtime.Gosched()
			continue
		}
		load := m.load(off + rLoad)
		counts := m.load(off + rReadCounts)
		psi := m.load(off + rPressure)
		r = pick.Reading{
			Time:           time.Unix(0, int64(t1)),
			CPUs:           int(minus1(field(counts, 0, countBits))),
			Load1:          int(minus1(field(load, 0, loadBits))),
			Load5:          int(minus1(field(load, loadBits, loadBits))),
			Load15:         int(minus1(field(load, 2*loadBits, loadBits))),
			CPUPressure:    int(minus1(field(psi, 0, 16))),
			MemoryPressure: int(minus1(field(psi, 16, 16))),
			IOPressure:     int(minus1(field(psi, 32, 16))),
			MemAvailable:   minus1(m.load(off + rMemAvail)),
			MemTotal:       minus1(m.load(off + rMemTotal)),
			StoreFree:      minus1(m.load(off + rStoreFree)),
			StoreSize:      minus1(m.load(off + rStoreSize)),
			Builds:         int(minus1(field(counts, countBits, countBits))),
		}
		ours = int(field(counts, 2*countBits, countBits))
		if m.load(off+rLoadAt) == t1 {
			return r, ours
		}
	}
	return pick.Reading{}, 0
}

func noop() {}

// TryRefresh takes the load refresh token of uri when its reading is
// missing or older than maxAge, so that one process at a time reads the
// builder's load for every process on the host. It returns ok false,
// cheaply and without allocating, when the reading is fresh enough, when
// another live process is refreshing it, and for a builder without a
// record or a read-only File. A token whose holder died is taken over. The
// holder reads the builder, calls SetReading (also when the reading failed:
// store an all-unknown Reading, so that others do not retry at once), and
// then release, which is idempotent.
func (f *File) TryRefresh(uri string, maxAge time.Duration) (release func(), ok bool) {
	m, off, found := f.record(uri)
	if !found {
		return noop, false
	}
	fresh := func() bool {
		t := m.load(off + rLoadAt)
		if t == readingBusy {
			return true // being stored right now
		}
		return t != 0 && f.o.Now().Sub(time.Unix(0, int64(t))) < maxAge
	}
	if fresh() {
		return noop, false
	}
	tok := off + rRefresh
	for {
		w := m.load(tok)
		if w != 0 && (w == f.self || alive(w)) {
			return noop, false
		}
		if m.cas(tok, w, f.self) {
			break
		}
	}
	h := hashURI(uri)
	var once sync.Once
	release = func() {
		once.Do(func() {
			if f.closed.Load() {
				return
			}
			m.cas(tok, f.self, 0)
			if v := f.view(); v != nil && v.m != m {
				if rec := v.find(h); rec >= 0 {
					v.m.cas(v.m.g.recOff(rec)+rRefresh, f.self, 0)
				}
			}
		})
	}
	if fresh() {
		// Another process stored a reading between the two looks.
		release()
		return noop, false
	}
	return release, true
}
