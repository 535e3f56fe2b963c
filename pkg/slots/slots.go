// SPDX-License-Identifier: MIT

package slots

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

// File is an open slot file. Its methods are safe for concurrent use.
// Methods that change the file do nothing on a read-only File, and nothing
// after Close.
type File struct {
	path string
	o    Options
	self uint64 // owner word of this process

	cur    atomic.Pointer[view]
	closed atomic.Bool

	mu        sync.Mutex // serialises follow, Sync and Close
	old       []*mapping // replaced mappings, unmapped by Close
	closeOnce sync.Once
	closeErr  error
}

// machine is a builder as this process knows it.
type machine struct {
	uri, name string
	hash      uint64
	maxJobs   int
}

// view is a mapping plus where this process's builders are in it. It is
// never changed once published.
type view struct {
	m    *mapping
	ms   []machine
	recs []int          // record of ms[i], or -1
	idx  map[string]int // URI → index into ms
}

func (f *File) machines(ms []spec.Machine) []machine {
	out := make([]machine, 0, len(ms))
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		if seen[m.URI] {
			continue
		}
		seen[m.URI] = true
		mj := max(m.MaxJobs, 0)
		if mj > MaxSlots {
			f.o.Logf("slots: %s: max jobs %d lowered to %d", m.URI, mj, MaxSlots)
			mj = MaxSlots
		}
		out = append(out, machine{uri: m.URI, name: m.Name, hash: hashURI(m.URI), maxJobs: mj})
	}
	return out
}

func (f *File) newView(m *mapping, ms []machine) *view {
	v := &view{m: m, ms: ms, recs: make([]int, len(ms)), idx: make(map[string]int, len(ms))}
	for i, mc := range ms {
		v.idx[mc.uri] = i
		v.recs[i] = v.find(mc.hash)
	}
	return v
}

// find scans for the record of hash h.
func (v *view) find(h uint64) int {
	for i := 0; i < int(v.m.g.records); i++ {
		if v.m.load(v.m.g.recOff(i)+rHash) == h {
			return i
		}
	}
	return -1
}

// lookup returns the record of uri, or -1, without allocating.
func (v *view) lookup(uri string) (rec int, h uint64) {
	if i, ok := v.idx[uri]; ok {
		h = v.ms[i].hash
		if r := v.recs[i]; r >= 0 && v.m.load(v.m.g.recOff(r)+rHash) == h {
			return r, h
		}
	} else {
		h = hashURI(uri)
	}
	return v.find(h), h
}

// view returns the current view, moving to a rebuilt file first if the
// current one was replaced. It returns nil after Close.
func (f *File) view() *view {
	v := f.cur.Load()
	if v == nil || !v.m.moved() {
		return v
	}
	return f.follow()
}

// follow moves to the file now at f.path after a rebuild.
func (f *File) follow() *view {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return nil
	}
	f.followLocked()
	return f.cur.Load()
}

func (f *File) followLocked() {
	v := f.cur.Load()
	if !v.m.moved() {
		return
	}
	m, err := f.openMapping(v.ms)
	if err != nil {
		// Keep working on the old mapping: its slots stay valid for
		// this process, and the next decision tries again.
		f.o.Logf("slots: moving to rebuilt %s: %v", f.path, err)
		return
	}
	f.old = append(f.old, v.m)
	f.cur.Store(f.newView(m, v.ms))
	if !f.o.ReadOnly {
		for _, r := range f.cur.Load().recs {
			if r < 0 {
				if err := f.syncLocked(v.ms); err != nil {
					f.o.Logf("%v", err)
				}
				break
			}
		}
	}
}

// Close unmaps the file. Release slots before: a slot still held stays
// held until this process exits (and is then reclaimed), and its methods do
// nothing after Close. Close is idempotent.
func (f *File) Close() error {
	f.closeOnce.Do(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.closed.Store(true)
		v := f.cur.Swap(nil)
		if v != nil {
			f.old = append(f.old, v.m)
		}
		for _, m := range f.old {
			if err := m.unmap(); err != nil && f.closeErr == nil {
				f.closeErr = err
			}
		}
		f.old = nil
	})
	return f.closeErr
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Sync records a new list of builders (the machines file changed): it adds
// records for new builders, sets each builder's capacity, and marks
// builders no longer listed so their records can be reused once they have no
// slots held. Counters of every builder are kept. The file is rebuilt
// larger when records or slot entries run out.
func (f *File) Sync(ms []spec.Machine) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return errors.New("slots: sync after close")
	}
	return f.syncLocked(f.machines(ms))
}

func (f *File) syncLocked(mach []machine) error {
	for range 10 {
		v := f.cur.Load()
		if v.m.moved() {
			f.followLocked()
			if f.cur.Load() == v {
				return fmt.Errorf("slots: %s: cannot move to rebuilt file", f.path)
			}
			continue
		}
		if f.o.ReadOnly {
			f.cur.Store(f.newView(v.m, mach))
			return nil
		}
		m := v.m
		unlock, err := f.lock(m.f)
		if err != nil {
			return err
		}
		grow, err := f.place(m, mach)
		if err == nil && grow != (geometry{}) {
			err = f.rebuildLocked(m.f, m, grow, "")
			if err == nil {
				unlock()
				f.followLocked()
				continue
			}
		}
		unlock()
		if err != nil {
			return err
		}
		f.cur.Store(f.newView(m, mach))
		return nil
	}
	return fmt.Errorf("slots: %s: file keeps changing", f.path)
}

// place writes mach into m (the caller holds the lock). It returns a
// larger geometry instead when m has no room.
func (f *File) place(m *mapping, mach []machine) (geometry, error) {
	if m.moved() {
		return geometry{}, nil
	}
	g := m.g
	v := &view{m: m}
	recs := make([]int, len(mach))
	want := make(map[uint64]bool, len(mach))
	missing, most := 0, 0
	for i, mc := range mach {
		want[mc.hash] = true
		recs[i] = v.find(mc.hash)
		if recs[i] < 0 {
			missing++
		}
		most = max(most, mc.maxJobs)
	}
	free := 0
	for i := 0; i < int(g.records); i++ {
		r := g.recOff(i)
		h := m.load(r + rHash)
		if h == 0 || (!want[h] && m.load(r+rFlags)&flagListed == 0 && f.idle(m, i)) {
			free++
		}
	}
	if free < missing || uint64(most) > g.slots {
		n := geometryFor(int(g.records)/2+missing, most)
		n.records = max(n.records, g.records)
		n.slots = max(n.slots, g.slots)
		return n, nil
	}
	for i, mc := range mach {
		if recs[i] < 0 {
			recs[i] = f.claim(m, mc.hash, want)
			if recs[i] < 0 {
				return geometryFor(int(g.records), max(most, int(g.slots))), nil
			}
		}
		r := g.recOff(recs[i])
		m.store(r+rMaxJobs, uint64(mc.maxJobs))
		m.or(r+rFlags, flagListed)
		if !m.textEqual(r+rURI, rURILen, mc.uri) {
			m.putText(r+rURI, rURILen, mc.uri)
		}
		if !m.textEqual(r+rName, rNameLen, mc.name) {
			m.putText(r+rName, rNameLen, mc.name)
		}
	}
	for i := 0; i < int(g.records); i++ {
		r := g.recOff(i)
		if h := m.load(r + rHash); h != 0 && !want[h] {
			m.andNot(r+rFlags, flagListed)
		}
	}
	m.add(hConfigGen, 1)
	return geometry{}, nil
}

// idle reports whether no slot or upload token of record rec is held.
func (f *File) idle(m *mapping, rec int) bool {
	if m.load(m.g.recOff(rec)+rUpload) != 0 {
		return false
	}
	for j := 0; j < int(m.g.slots); j++ {
		if m.load(m.g.slotOff(rec, j)) != 0 {
			return false
		}
	}
	return true
}

// claim takes a free record for hash h, or reuses the record of a builder
// no longer listed that has nothing held. The caller holds the lock.
func (f *File) claim(m *mapping, h uint64, want map[uint64]bool) int {
	g := m.g
	for i := 0; i < int(g.records); i++ {
		if m.cas(g.recOff(i)+rHash, 0, h) {
			return i
		}
	}
	for i := 0; i < int(g.records); i++ {
		r := g.recOff(i)
		old := m.load(r + rHash)
		if old == 0 || want[old] || m.load(r+rFlags)&flagListed != 0 || !f.idle(m, i) {
			continue
		}
		// Unpublish the old builder, then check again that nothing of
		// it is held (a process with an older machines list may have
		// just taken a slot); only then clear and republish.
		if !m.cas(r+rHash, old, 0) {
			continue
		}
		if !f.idle(m, i) {
			m.store(r+rHash, old)
			continue
		}
		for off := rFlags; off < recHeadSize; off += 8 {
			m.store(r+off, 0)
		}
		for j := 0; j < int(g.slots); j++ {
			for off := 8; off < slotSize; off += 8 {
				m.store(g.slotOff(i, j)+off, 0)
			}
		}
		m.store(r+rHash, h)
		return i
	}
	return -1
}

// Slot is a held build slot on one builder. The zero Slot is not held.
// Release it exactly through one copy.
type Slot struct {
	f     *File
	m     *mapping
	hash  uint64
	rec   int
	j     int
	owner uint64
}

// capacity returns how many slots of record rec may be held.
func capacity(m *mapping, rec int) int {
	return int(min(m.load(m.g.recOff(rec)+rMaxJobs), m.g.slots))
}

// take claims a free slot of record rec, or returns -1. Slot j may be taken
// only while j < capacity - (slots held at or above capacity); see the
// package documentation.
func (f *File) take(m *mapping, rec int) int {
	c := capacity(m, rec)
	lim := c
	for j := c; j < int(m.g.slots); j++ {
		if m.load(m.g.slotOff(rec, j)) != 0 {
			lim--
		}
	}
	for j := 0; j < lim; j++ {
		off := m.g.slotOff(rec, j)
		if m.load(off) == 0 && m.cas(off, 0, f.self) {
			return j
		}
	}
	return -1
}

// Acquire takes a free slot on the builder with URI uri without blocking.
// It fails when the builder is full (after freeing slots of dead owners),
// drained, or has no record. It does not allocate.
func (f *File) Acquire(uri string) (Slot, bool) {
	if f.o.ReadOnly {
		return Slot{}, false
	}
	for range 4 {
		v := f.view()
		if v == nil {
			return Slot{}, false
		}
		m := v.m
		rec, h := v.lookup(uri)
		if rec < 0 {
			return Slot{}, false
		}
		base := m.g.recOff(rec)
		if m.load(base+rFlags)&flagDrained != 0 {
			return Slot{}, false
		}
		j := f.take(m, rec)
		if j < 0 && f.reclaimRecord(m, rec) > 0 {
			j = f.take(m, rec)
		}
		if j < 0 {
			return Slot{}, false
		}
		off := m.g.slotOff(rec, j)
		if m.moved() {
			// A rebuild started: it may or may not have copied
			// this slot. Give it back in both files and retry.
			m.cas(off, f.self, 0)
			if nv := f.follow(); nv != nil && nv.m != m {
				if r := nv.find(h); r >= 0 && j < int(nv.m.g.slots) {
					nv.m.cas(nv.m.g.slotOff(r, j), f.self, 0)
				}
			}
			continue
		}
		if m.load(base+rHash) != h || j >= capacity(m, rec) {
			// Record reused or capacity lowered meanwhile.
			m.cas(off, f.self, 0)
			continue
		}
		m.store(off+sAt, uint64(f.o.Now().UnixNano()))
		m.store(off+sPhase, uint64(PhaseConnecting))
		m.clear(off + sBytes) // left by a reclaimed owner
		m.clear(off + sDrv)
		m.add(base+rStarted, 1)
		return Slot{f: f, m: m, hash: h, rec: rec, j: j, owner: f.self}, true
	}
	return Slot{}, false
}

// Held reports whether s holds a slot.
func (s *Slot) Held() bool { return s.m != nil }

// Index is the slot's index in its builder's record: the Index of its
// SlotInfo in a Snapshot.
func (s *Slot) Index() int { return s.j }

// loc returns where s lives now, following a rebuild.
func (s *Slot) loc() (*mapping, int, bool) {
	if s.m == nil || s.f.closed.Load() {
		return nil, 0, false
	}
	if s.m.moved() {
		if v := s.f.view(); v != nil && v.m != s.m {
			if r := v.find(s.hash); r >= 0 && s.j < int(v.m.g.slots) &&
				v.m.load(v.m.g.slotOff(r, s.j)) == s.owner {
				s.m, s.rec = v.m, r
			}
		}
	}
	return s.m, s.m.g.slotOff(s.rec, s.j), true
}

// Release gives the slot back. It is idempotent.
func (s *Slot) Release() {
	m, off, ok := s.loc()
	if !ok {
		s.m = nil
		return
	}
	s.m = nil
	m.clear(off + sAt)
	m.clear(off + sPhase)
	m.clear(off + sBytes)
	m.clear(off + sDrv)
	m.cas(off, s.owner, 0)
	if m.moved() {
		// The slot may have been copied into the rebuilt file.
		if v := s.f.view(); v != nil && v.m != m {
			if r := v.find(s.hash); r >= 0 && s.j < int(v.m.g.slots) {
				v.m.cas(v.m.g.slotOff(r, s.j), s.owner, 0)
			}
			m = v.m
		}
	}
	notify(m)
}

// SetDrv records the derivation the slot builds (cut to 80 bytes).
func (s *Slot) SetDrv(name string) {
	if m, off, ok := s.loc(); ok {
		m.putText(off+sDrv, sDrvLen, name)
	}
}

// SetPhase records what the slot's build is doing.
func (s *Slot) SetPhase(p Phase) {
	if m, off, ok := s.loc(); ok {
		m.store(off+sPhase, uint64(p))
	}
}

// AddBytes adds n to the bytes the slot's build has transferred.
func (s *Slot) AddBytes(n int64) {
	if m, off, ok := s.loc(); ok {
		m.add(off+sBytes, uint64(n))
	}
}

// notify bumps the change counter and wakes processes in WaitChange.
func notify(m *mapping) {
	if m.ro {
		return
	}
	m.add32(hChange, 1)
	if m.load32(hWaiters) != 0 {
		futexWakeAll(m.word32(hChange))
	}
}

// Generation returns the change counter, bumped whenever a slot is
// released or reclaimed. Read it before a Snapshot and pass it to
// WaitChange so no release in between is missed.
func (f *File) Generation() uint32 {
	v := f.view()
	if v == nil {
		return 0
	}
	return v.m.load32(hChange)
}

// WaitChange waits at most d, or until ctx is done, for the change counter
// to differ from gen. It reports whether it did.
func (f *File) WaitChange(ctx context.Context, gen uint32, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		v := f.view()
		if v == nil {
			return false
		}
		m := v.m
		if m.load32(hChange) != gen {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return false
		}
		// Sleep in short steps so a cancelled ctx or a moved file is
		// noticed.
		step := min(left, 20*time.Millisecond)
		if m.ro {
			time.Sleep(min(step, 10*time.Millisecond))
			continue
		}
		m.add32(hWaiters, 1)
		if m.load32(hChange) == gen {
			futexSleep(m.word32(hChange), gen, step)
		}
		m.add32(hWaiters, ^uint32(0))
	}
}

// Reclaim frees every slot, upload token and refresh token whose owner
// process is gone and returns how many slots it freed. Acquire does this
// by itself for a full builder.
func (f *File) Reclaim() int {
	v := f.view()
	if v == nil || f.o.ReadOnly {
		return 0
	}
	n := 0
	for i := 0; i < int(v.m.g.records); i++ {
		if v.m.load(v.m.g.recOff(i)+rHash) != 0 {
			n += f.reclaimRecord(v.m, i)
		}
	}
	return n
}

func (f *File) reclaimRecord(m *mapping, rec int) int {
	n := 0
	for j := 0; j < int(m.g.slots); j++ {
		off := m.g.slotOff(rec, j)
		if w := m.load(off); w != 0 && w != f.self && !alive(w) && m.cas(off, w, 0) {
			n++
		}
	}
	for _, tok := range [...]int{rUpload, rRefresh} {
		up := m.g.recOff(rec) + tok
		if w := m.load(up); w != 0 && w != f.self && !alive(w) {
			m.cas(up, w, 0)
		}
	}
	if n > 0 {
		notify(m)
	}
	return n
}

// record returns the current mapping and record offset of uri.
func (f *File) record(uri string) (*mapping, int, bool) {
	v := f.view()
	if v == nil || f.o.ReadOnly {
		return nil, 0, false
	}
	rec, _ := v.lookup(uri)
	if rec < 0 {
		return nil, 0, false
	}
	return v.m, v.m.g.recOff(rec), true
}

// RecordSuccess notes a successful connection to uri taking connect: the
// builder is healthy again.
func (f *File) RecordSuccess(uri string, connect time.Duration) {
	m, r, ok := f.record(uri)
	if !ok {
		return
	}
	m.store(r+rConsecFail, 0)
	m.store(r+rUnhealthy, 0)
	m.store(r+rConnectNs, uint64(connect))
	m.store(r+rConnectAt, uint64(f.o.Now().UnixNano()))
}

// RecordFailure notes a failed connection to uri. The builder counts as
// unhealthy for backoff, doubled for each further consecutive failure, at
// most max, for every hook on the host.
func (f *File) RecordFailure(uri string, code ErrCode, backoff, max time.Duration) {
	m, r, ok := f.record(uri)
	if !ok {
		return
	}
	n := m.add(r+rConsecFail, 1)
	d := max
	if n <= 62 && backoff > 0 && backoff <= max>>(n-1) {
		d = backoff << (n - 1)
	}
	until := uint64(f.o.Now().Add(d).UnixNano())
	for {
		cur := m.load(r + rUnhealthy)
		if cur >= until || m.cas(r+rUnhealthy, cur, until) {
			break
		}
	}
	m.store(r+rLastErr, uint64(code))
}

// BuildDone counts a finished build on uri and the bytes it moved.
func (f *File) BuildDone(uri string, ok bool, sent, received int64) {
	m, r, found := f.record(uri)
	if !found {
		return
	}
	if ok {
		m.add(r+rSucceeded, 1)
	} else {
		m.add(r+rFailed, 1)
	}
	m.add(r+rSent, uint64(sent))
	m.add(r+rReceived, uint64(received))
}

// ResetCounters zeroes the build counters (started, succeeded, failed,
// bytes sent and received) of every builder in the file, listed or not.
// Health, drain flags, held slots and the decision ring are kept.
func (f *File) ResetCounters() error {
	if f.o.ReadOnly {
		return fmt.Errorf("slots: %s: opened read-only", f.path)
	}
	v := f.view()
	if v == nil {
		return errors.New("slots: reset after close")
	}
	m := v.m
	for i := 0; i < int(m.g.records); i++ {
		r := m.g.recOff(i)
		if m.load(r+rHash) == 0 {
			continue
		}
		for _, off := range [...]int{rStarted, rSucceeded, rFailed, rSent, rReceived} {
			m.store(r+off, 0)
		}
	}
	return nil
}

// SetDrained turns draining of uri on or off: a drained builder gives out
// no new slots; held ones run to their end.
func (f *File) SetDrained(uri string, on bool) error {
	if f.o.ReadOnly {
		return fmt.Errorf("slots: %s: opened read-only", f.path)
	}
	m, r, ok := f.record(uri)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownBuilder, uri)
	}
	if on {
		m.or(r+rFlags, flagDrained)
	} else {
		m.andNot(r+rFlags, flagDrained)
	}
	notify(m)
	return nil
}

// TryUpload takes the upload token of uri, which lets one hook at a time
// copy inputs to a builder. It fails while a live process holds it; a token
// whose holder died is taken over.
func (f *File) TryUpload(uri string) (release func(), ok bool) {
	m, r, found := f.record(uri)
	if !found {
		return func() {}, false
	}
	off := r + rUpload
	for {
		w := m.load(off)
		if w != 0 && (w == f.self || alive(w)) {
			return func() {}, false
		}
		if m.cas(off, w, f.self) {
			break
		}
	}
	h := hashURI(uri)
	var once sync.Once
	return func() {
		once.Do(func() {
			if f.closed.Load() {
				return
			}
			m.cas(off, f.self, 0)
			if v := f.view(); v != nil && v.m != m {
				if rec := v.find(h); rec >= 0 {
					v.m.cas(v.m.g.recOff(rec)+rUpload, f.self, 0)
				}
			}
		})
	}, true
}

// Snapshot appends the state of this process's builders, in machines-file
// order, to dst[:0] and returns it, reusing dst's Running slices. It takes
// no lock: each word is read atomically, the whole is consistent enough for
// choosing a builder.
func (f *File) Snapshot(dst []Builder) []Builder {
	v := f.view()
	if v == nil {
		return dst[:0]
	}
	if cap(dst) < len(v.ms) {
		dst = append(dst[:cap(dst)], make([]Builder, len(v.ms)-cap(dst))...)
	}
	dst = dst[:len(v.ms)]
	m := v.m
	for i, mc := range v.ms {
		run := dst[i].Running[:0]
		dst[i] = Builder{URI: mc.uri, Name: mc.name, MaxJobs: mc.maxJobs}
		rec, _ := v.lookup(mc.uri)
		if rec < 0 {
			dst[i].Running = run
			continue
		}
		readRecord(m, rec, &dst[i], run)
	}
	return dst
}

// Others appends the state of every builder the file has a record for
// that is not one of this process's builders, in record order, to dst[:0]
// and returns it: builders that hooks with another configuration put
// there (nix-build --builders …, an older machines file). Their URI and
// name are as stored, cut to 128 and 64 bytes.
func (f *File) Others(dst []Builder) []Builder {
	dst = dst[:0]
	v := f.view()
	if v == nil {
		return dst
	}
	m := v.m
	mine := make(map[uint64]bool, len(v.ms))
	for _, mc := range v.ms {
		mine[mc.hash] = true
	}
	for rec := 0; rec < int(m.g.records); rec++ {
		r := m.g.recOff(rec)
		if h := m.load(r + rHash); h == 0 || mine[h] {
			continue
		}
		var b Builder
		readRecord(m, rec, &b, nil)
		if m.load(r+rHash) == 0 {
			continue // freed while being read
		}
		b.URI = m.text(r+rURI, rURILen)
		b.Name = m.text(r+rName, rNameLen)
		dst = append(dst, b)
	}
	return dst
}

// readRecord fills b from record rec, appending its held slots to run.
func readRecord(m *mapping, rec int, b *Builder, run []SlotInfo) {
	r := m.g.recOff(rec)
	b.Known = true
	b.MaxJobs = capacity(m, rec)
	b.Started = m.load(r + rStarted)
	b.Succeeded = m.load(r + rSucceeded)
	b.Failed = m.load(r + rFailed)
	b.BytesSent = m.load(r + rSent)
	b.BytesRecvd = m.load(r + rReceived)
	b.ConsecutiveFailures = int(m.load(r + rConsecFail))
	b.UnhealthyUntil = unixTime(m.load(r + rUnhealthy))
	b.LastError = ErrCode(m.load(r + rLastErr))
	b.LastConnect = time.Duration(m.load(r + rConnectNs))
	b.LastConnectAt = unixTime(m.load(r + rConnectAt))
	b.Drained = m.load(r+rFlags)&flagDrained != 0
	b.Uploading = m.load(r+rUpload) != 0
	b.Reading, b.ReadingOurs = reading(m, r)
	b.Refreshing = m.load(r+rRefresh) != 0
	b.Link = linkOf(m.load(r + rLink))
	readExecs(m, r, b)
	for j := 0; j < int(m.g.slots); j++ {
		off := m.g.slotOff(rec, j)
		w := m.load(off)
		if w == 0 {
			continue
		}
		b.Busy++
		run = append(run, SlotInfo{
			Index: j,
			PID:   ownerPID(w),
			Since: unixTime(m.load(off + sAt)),
			Phase: Phase(m.load(off + sPhase)),
			Drv:   m.text(off+sDrv, sDrvLen),
			Bytes: int64(m.load(off + sBytes)),
		})
	}
	b.Running = run
}

func unixTime(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns))
}

// LogDecision adds d to the ring of recent decisions, overwriting the
// oldest. Texts are cut to their fields.
func (f *File) LogDecision(d Decision) {
	v := f.view()
	if v == nil || f.o.ReadOnly {
		return
	}
	m := v.m
	n := m.add(hRingHead, 1) - 1
	e := int(m.g.ringOff()) + int(n%decisionCount)*decisionSize
	m.store(e+dSeq, 0)
	t := d.Time
	if t.IsZero() {
		t = f.o.Now()
	}
	m.store(e+dTime, uint64(t.UnixNano()))
	m.store(e+dAnswer, uint64(d.Answer))
	var h uint64
	if d.Builder != "" {
		h = hashURI(d.Builder)
	}
	m.store(e+dHash, h)
	m.putText(e+dDrv, dDrvLen, d.Drv)
	m.putText(e+dBuilder, dBuilderLen, d.Builder)
	m.putText(e+dReason, dReasonLen, d.Reason)
	m.store(e+dSeq, n+1)
}

// Decisions appends the logged decisions still in the ring, oldest first,
// to dst[:0]. Entries being written at the time are left out.
func (f *File) Decisions(dst []Decision) []Decision {
	dst = dst[:0]
	v := f.view()
	if v == nil {
		return dst
	}
	m := v.m
	head := m.load(hRingHead)
	first := uint64(0)
	if head > decisionCount {
		first = head - decisionCount
	}
	for n := first; n < head; n++ {
		e := int(m.g.ringOff()) + int(n%decisionCount)*decisionSize
		if m.load(e+dSeq) != n+1 {
			continue
		}
		d := Decision{
			Time:    unixTime(m.load(e + dTime)),
			Answer:  pick.Answer(m.load(e + dAnswer)),
			Drv:     m.text(e+dDrv, dDrvLen),
			Builder: m.text(e+dBuilder, dBuilderLen),
			Reason:  m.text(e+dReason, dReasonLen),
		}
		if m.load(e+dSeq) != n+1 {
			continue
		}
		dst = append(dst, d)
	}
	return dst
}
