// SPDX-License-Identifier: MIT

package slots

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

func unknownReading(t time.Time) pick.Reading {
	const u = pick.ReadingUnknown
	return pick.Reading{Time: t, CPUs: u, Load1: u, Load5: u, Load15: u, CPUPressure: u, MemoryPressure: u,
		IOPressure: u, MemAvailable: u, MemTotal: u, StoreFree: u, StoreSize: u, Builds: u}
}

func snap(t testing.TB, f *File, uri string) Builder {
	t.Helper()
	for _, b := range f.Snapshot(nil) {
		if b.URI == uri {
			return b
		}
	}
	t.Fatalf("Snapshot has no %s", uri)
	return Builder{}
}

func TestSetReading(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 4), mach("ssh://b", 2)})
	if b := snap(t, f, "ssh://a"); !b.Reading.Time.IsZero() || b.Reading != (pick.Reading{}) {
		t.Fatalf("new file has a reading: %+v", b.Reading)
	}
	at := time.Unix(1_700_000_000, 123)
	full := pick.Reading{Time: at, CPUs: 8, Load1: 7910, Load5: 6020, Load15: 0, CPUPressure: 6536,
		MemoryPressure: 4100, IOPressure: 10000, MemAvailable: 9 << 30, MemTotal: 16 << 30,
		StoreFree: 0, StoreSize: 1 << 40, Builds: 3}
	tests := []struct {
		name string
		in   pick.Reading
		want pick.Reading
	}{
		{"full", full, full},
		{"unknown", unknownReading(at), unknownReading(at)},
		{"partial", func() pick.Reading { r := unknownReading(at); r.Builds, r.CPUs = 0, 1; return r }(),
			func() pick.Reading { r := unknownReading(at); r.Builds, r.CPUs = 0, 1; return r }()},
		{"clamped", func() pick.Reading {
			r := full
			r.Load1, r.CPUs, r.Builds, r.MemoryPressure = 5_000_000, 1<<30, 1<<21, 70000
			return r
		}(), func() pick.Reading {
			r := full
			r.Load1, r.CPUs, r.Builds, r.MemoryPressure = loadMax, countMax, countMax, psiMax
			return r
		}()},
	}
	for i, tt := range tests {
		tt.in.Time = at.Add(time.Duration(i) * time.Second)
		tt.want.Time = tt.in.Time
		f.SetReading("ssh://a", tt.in)
		got := snap(t, f, "ssh://a").Reading
		if !got.Time.Equal(tt.want.Time) {
			t.Errorf("%s: Time = %v, want %v", tt.name, got.Time, tt.want.Time)
		}
		got.Time = tt.want.Time
		if got != tt.want {
			t.Errorf("%s: Snapshot().Reading =\n%+v, want\n%+v", tt.name, got, tt.want)
		}
	}
	// Older readings are dropped; b is untouched.
	f.SetReading("ssh://a", full)
	if got := snap(t, f, "ssh://a").Reading; got.Time.Equal(full.Time) {
		t.Errorf("an older reading replaced a newer one")
	}
	if got := snap(t, f, "ssh://b").Reading; !got.Time.IsZero() {
		t.Errorf("b has a reading: %+v", got)
	}
	f.SetReading("ssh://nobody", full) // no record: nothing happens
}

func TestReadingOurs(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, err := Open(filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 4)},
		Options{Logf: t.Logf, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s1, _ := f.Acquire("ssh://a")
	s2, _ := f.Acquire("ssh://a")
	s3, _ := f.Acquire("ssh://a")
	s1.SetPhase(PhaseBuilding)
	s2.SetPhase(PhaseBuilding)
	s3.SetPhase(PhaseUploading)
	r := unknownReading(time.Time{})
	r.Builds = 5
	f.SetReading("ssh://a", r)
	b := snap(t, f, "ssh://a")
	if b.ReadingOurs != 2 || b.Reading.Builds != 5 || !b.Reading.Time.Equal(now) {
		t.Errorf("ReadingOurs %d, Builds %d, Time %v; want 2, 5, %v", b.ReadingOurs, b.Reading.Builds, b.Reading.Time, now)
	}
	s1.Release()
	s2.Release()
	s3.Release()
	if b := snap(t, f, "ssh://a"); b.ReadingOurs != 2 {
		t.Errorf("ReadingOurs changed to %d after release; it is as of the reading", b.ReadingOurs)
	}
}

func TestTryRefresh(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	path := filepath.Join(t.TempDir(), "slots")
	ms := []spec.Machine{mach("ssh://a", 4)}
	f, err := Open(path, ms, Options{Logf: t.Logf, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	rel, ok := f.TryRefresh("ssh://a", 5*time.Second)
	if !ok {
		t.Fatal("TryRefresh without any reading failed")
	}
	if !snap(t, f, "ssh://a").Refreshing {
		t.Error("Snapshot does not show the refresh")
	}
	if _, ok := f.TryRefresh("ssh://a", 5*time.Second); ok {
		t.Error("second TryRefresh succeeded while held")
	}
	f.SetReading("ssh://a", unknownReading(time.Time{}))
	rel()
	rel()
	if snap(t, f, "ssh://a").Refreshing {
		t.Error("token still shown after release")
	}
	if _, ok := f.TryRefresh("ssh://a", 5*time.Second); ok {
		t.Error("TryRefresh succeeded on a fresh reading")
	}
	advance(5 * time.Second)
	rel, ok = f.TryRefresh("ssh://a", 5*time.Second)
	if !ok {
		t.Fatal("TryRefresh failed on a stale reading")
	}
	// A process that died holding the token does not keep it.
	rel()
	dead := deadOwner(t)
	f.cur.Load().m.store(f.cur.Load().m.g.recOff(f.cur.Load().recs[0])+rRefresh, dead)
	rel, ok = f.TryRefresh("ssh://a", 5*time.Second)
	if !ok {
		t.Fatal("TryRefresh did not take over a dead holder's token")
	}
	rel()
	f.cur.Load().m.store(f.cur.Load().m.g.recOff(f.cur.Load().recs[0])+rRefresh, dead)
	f.Reclaim()
	if snap(t, f, "ssh://a").Refreshing {
		t.Error("Reclaim left a dead holder's refresh token")
	}
	if _, ok := f.TryRefresh("ssh://nobody", time.Second); ok {
		t.Error("TryRefresh of an unknown builder succeeded")
	}

	ro, err := Open(path, ms, Options{ReadOnly: true, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, ok := ro.TryRefresh("ssh://a", 0); ok {
		t.Error("TryRefresh on a read-only file succeeded")
	}
	if got := snap(t, ro, "ssh://a").Reading; got != unknownReading(now.Add(-5*time.Second)) {
		t.Errorf("read-only Snapshot reading = %+v", got)
	}
}

// deadOwner returns the owner word of a process that has exited.
func deadOwner(t *testing.T) uint64 {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	return ownerWord(cmd.Process.Pid, 12345)
}

// TestTryRefreshOne checks that of many goroutines and files racing for a
// stale reading exactly one refreshes it.
func TestTryRefreshOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	ms := []spec.Machine{mach("ssh://a", 4)}
	files := make([]*File, 4)
	for i := range files {
		files[i] = open(t, path, ms)
	}
	for round := range 20 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := files[g%len(files)]
				rel, ok := f.TryRefresh("ssh://a", time.Hour)
				if !ok {
					return
				}
				mu.Lock()
				won++
				mu.Unlock()
				r := unknownReading(time.Now())
				r.Builds = round
				f.SetReading("ssh://a", r)
				rel()
			}()
		}
		wg.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d refreshers, want 1", round, won)
		}
		// Make it stale again.
		v := files[0].cur.Load()
		v.m.store(v.m.g.recOff(v.recs[0])+rLoadAt, 1)
	}
}

// TestReadingConsistent checks that a reader never sees a reading mixed
// from two writes.
func TestReadingConsistent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	w := open(t, path, []spec.Machine{mach("ssh://a", 4)})
	r := open(t, path, []spec.Machine{mach("ssh://a", 4)})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		base := time.Now()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := i % 1000
			w.SetReading("ssh://a", pick.Reading{Time: base.Add(time.Duration(i)), CPUs: v, Load1: v, Load5: v, Load15: v,
				CPUPressure: v, MemoryPressure: v, IOPressure: v, MemAvailable: int64(v), MemTotal: int64(v),
				StoreFree: int64(v), StoreSize: int64(v), Builds: v})
		}
	}()
	var dst []Builder
	for range 20000 {
		dst = r.Snapshot(dst)
		g := dst[0].Reading
		if g.Time.IsZero() {
			continue
		}
		v := g.CPUs
		if g.Load1 != v || g.Load15 != v || g.IOPressure != v || g.MemTotal != int64(v) || g.StoreSize != int64(v) || g.Builds != v {
			close(stop)
			<-done
			t.Fatalf("mixed reading: %+v", g)
		}
	}
	close(stop)
	<-done
}

func TestReadingSurvivesRebuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 2)})
	r := unknownReading(time.Unix(1_700_000_000, 0))
	r.Builds, r.StoreFree, r.StoreSize = 2, 1<<30, 1<<40
	f.SetReading("ssh://a", r)
	rel, ok := f.TryRefresh("ssh://a", time.Nanosecond)
	if !ok {
		t.Fatal("TryRefresh failed")
	}
	var big []spec.Machine
	big = append(big, mach("ssh://a", 20))
	for i := range 40 {
		big = append(big, mach(fmt.Sprintf("ssh://x%d", i), 1))
	}
	other := open(t, path, big)
	b := snap(t, other, "ssh://a")
	if !b.Reading.Time.Equal(r.Time) || b.Reading.Builds != 2 || b.Reading.StoreFree != 1<<30 || !b.Refreshing {
		t.Errorf("after rebuild: %+v, refreshing %v", b.Reading, b.Refreshing)
	}
	rel()
	if snap(t, other, "ssh://a").Refreshing {
		t.Error("release did not reach the rebuilt file")
	}
}

func TestTryRefreshFreshZeroAllocs(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 4)})
	f.SetReading("ssh://a", unknownReading(time.Now()))
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := f.TryRefresh("ssh://a", time.Hour); ok {
			t.Fatal("refresh of a fresh reading")
		}
	}); n != 0 {
		t.Errorf("TryRefresh of a fresh reading allocates %v times, want 0", n)
	}
}

// BenchmarkDecisionReading is what the shared reading costs a hook per
// decision when it is fresh: a Snapshot (which reads it) and a TryRefresh
// that declines. No round trip, no allocation.
func BenchmarkDecisionReading(b *testing.B) {
	var ms []spec.Machine
	for i := range 8 {
		ms = append(ms, mach(fmt.Sprintf("ssh://b%d", i), 4))
	}
	f := open(b, filepath.Join(b.TempDir(), "slots"), ms)
	for _, m := range ms {
		r := unknownReading(time.Now())
		r.Builds, r.CPUs, r.Load1 = 1, 8, 1500
		f.SetReading(m.URI, r)
	}
	dst := f.Snapshot(nil)
	b.Run("snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst = f.Snapshot(dst)
		}
	})
	b.Run("try-refresh-fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := f.TryRefresh("ssh://b3", time.Hour); ok {
				b.Fatal("refresh")
			}
		}
	})
}
