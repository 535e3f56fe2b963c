// SPDX-License-Identifier: MIT

package slots

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

func mach(uri string, jobs int) spec.Machine {
	return spec.Machine{URI: uri, Name: strings.TrimPrefix(uri, "ssh://"), MaxJobs: jobs}
}

// logbuf collects Logf output.
type logbuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logbuf) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logbuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func open(t testing.TB, path string, ms []spec.Machine) *File {
	t.Helper()
	f, err := Open(path, ms, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func busy(t testing.TB, f *File, uri string) int {
	t.Helper()
	for _, b := range f.Snapshot(nil) {
		if b.URI == uri {
			return b.Busy
		}
	}
	t.Fatalf("Snapshot has no %s", uri)
	return 0
}

func TestAcquireRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offload", "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1), mach("ssh://zero", 0)})
	s1, ok1 := f.Acquire("ssh://a")
	s2, ok2 := f.Acquire("ssh://a")
	_, ok3 := f.Acquire("ssh://a")
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("Acquire a three times = %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if _, ok := f.Acquire("ssh://zero"); ok {
		t.Errorf("Acquire(zero) succeeded on a builder with max jobs 0")
	}
	if _, ok := f.Acquire("ssh://unknown"); ok {
		t.Errorf("Acquire(unknown) succeeded")
	}
	s1.SetDrv("hello-2.12.drv")
	s1.SetPhase(PhaseBuilding)
	s1.AddBytes(1000)
	s1.AddBytes(24)
	snap := f.Snapshot(nil)
	if len(snap) != 3 || snap[0].URI != "ssh://a" || snap[0].Busy != 2 || snap[0].MaxJobs != 2 || snap[0].Started != 2 {
		t.Fatalf("Snapshot()[0] = %+v", snap[0])
	}
	run := snap[0].Running
	if len(run) != 2 || run[0].Drv != "hello-2.12.drv" || run[0].Phase != PhaseBuilding || run[0].Bytes != 1024 || run[0].PID != os.Getpid() || run[0].Since.IsZero() {
		t.Errorf("Running = %+v", run)
	}
	if run[1].Phase != PhaseConnecting || run[1].Drv != "" {
		t.Errorf("Running[1] = %+v, want connecting, no drv", run[1])
	}
	s1.Release()
	s1.Release() // idempotent
	if got := busy(t, f, "ssh://a"); got != 1 {
		t.Errorf("busy after release = %d, want 1", got)
	}
	s3, ok := f.Acquire("ssh://a")
	if !ok {
		t.Fatalf("Acquire after release failed")
	}
	if got := f.Snapshot(nil)[0].Running; got[0].Drv != "" || got[0].Bytes != 0 {
		t.Errorf("reused slot shows old details: %+v", got[0])
	}
	s2.Release()
	s3.Release()
	if got := busy(t, f, "ssh://a"); got != 0 {
		t.Errorf("busy at end = %d, want 0", got)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode = %v, %v; want 0644", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode = %v, %v; want 0755", st.Mode(), err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := f.Acquire("ssh://a"); ok {
		t.Errorf("Acquire after Close succeeded")
	}
	s3.Release() // after Close: no crash
}

func TestAcquireZeroAllocs(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 2)})
	n := testing.AllocsPerRun(1000, func() {
		s, ok := f.Acquire("ssh://a")
		if !ok {
			panic("full")
		}
		s.Release()
	})
	if n != 0 {
		t.Errorf("Acquire+Release allocates %v times, want 0", n)
	}
}

func TestCounters(t *testing.T) {
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	f, err := Open(filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 1)}, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const sec = time.Second
	for i, want := range []time.Duration{1 * sec, 2 * sec, 4 * sec, 8 * sec, 10 * sec, 10 * sec} {
		f.RecordFailure("ssh://a", ErrAuth, sec, 10*sec)
		b := f.Snapshot(nil)[0]
		if b.ConsecutiveFailures != i+1 || !b.UnhealthyUntil.Equal(now.Add(want)) || b.LastError != ErrAuth {
			t.Errorf("after %d failures: consecutive %d, unhealthy until +%v, last error %v; want %d, +%v, auth",
				i+1, b.ConsecutiveFailures, b.UnhealthyUntil.Sub(now), b.LastError, i+1, want)
		}
	}
	f.RecordSuccess("ssh://a", 150*time.Millisecond)
	f.BuildDone("ssh://a", true, 100, 2000)
	f.BuildDone("ssh://a", false, 5, 0)
	b := f.Snapshot(nil)[0]
	if b.ConsecutiveFailures != 0 || !b.UnhealthyUntil.IsZero() || b.LastConnect != 150*time.Millisecond ||
		!b.LastConnectAt.Equal(now) || b.Succeeded != 1 || b.Failed != 1 || b.BytesSent != 105 || b.BytesRecvd != 2000 {
		t.Errorf("after success and two builds: %+v", b)
	}

	if err := f.SetDrained("ssh://a", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Acquire("ssh://a"); ok || !f.Snapshot(nil)[0].Drained {
		t.Errorf("drained builder gave a slot or is not shown drained")
	}
	f.SetDrained("ssh://a", false)
	if s, ok := f.Acquire("ssh://a"); !ok {
		t.Errorf("undrained builder gave no slot")
	} else {
		s.Release()
	}
	if err := f.SetDrained("ssh://nope", true); !errors.Is(err, ErrUnknownBuilder) {
		t.Errorf("SetDrained(unknown) = %v, want ErrUnknownBuilder", err)
	}

	rel, ok := f.TryUpload("ssh://a")
	if !ok {
		t.Fatal("TryUpload failed on a free token")
	}
	if _, ok := f.TryUpload("ssh://a"); ok {
		t.Error("second TryUpload succeeded while held")
	}
	if !f.Snapshot(nil)[0].Uploading {
		t.Error("Snapshot does not show the upload")
	}
	rel()
	rel()
	rel2, ok := f.TryUpload("ssh://a")
	if !ok {
		t.Fatal("TryUpload after release failed")
	}
	rel2()
}

func TestDecisions(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 1)})
	if got := f.Decisions(nil); len(got) != 0 {
		t.Fatalf("Decisions of a new file = %v", got)
	}
	long := strings.Repeat("x", 200) + ".drv"
	for i := range decisionCount + 5 {
		f.LogDecision(Decision{Time: time.Unix(int64(i), 0), Drv: fmt.Sprintf("d%d-%s", i, long), Answer: pick.Accept, Builder: "ssh://a", Reason: "least loaded"})
	}
	got := f.Decisions(nil)
	if len(got) != decisionCount {
		t.Fatalf("len(Decisions) = %d, want %d", len(got), decisionCount)
	}
	first, last := got[0], got[len(got)-1]
	if first.Time.Unix() != 5 || last.Time.Unix() != decisionCount+4 || !strings.HasPrefix(last.Drv, fmt.Sprintf("d%d-x", decisionCount+4)) ||
		len(last.Drv) != dDrvLen || last.Answer != pick.Accept || last.Builder != "ssh://a" || last.Reason != "least loaded" {
		t.Errorf("Decisions: first %+v, last %+v", first, last)
	}
}

func TestCut(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 8, "abc"},
		{"abcdefghij", 8, "abcdefgh"},
		{"abcdefgé", 8, "abcdefg"}, // é is two bytes: not split
		{"", 8, ""},
	}
	for _, tt := range tests {
		if got := cut(tt.in, tt.n); got != tt.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestSyncWhileHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 4), mach("ssh://b", 1)})
	other := open(t, path, []spec.Machine{mach("ssh://a", 4), mach("ssh://b", 1)})
	f.BuildDone("ssh://b", true, 1, 1)
	var held []Slot
	for range 4 {
		s, ok := f.Acquire("ssh://a")
		if !ok {
			t.Fatal("Acquire a failed")
		}
		held = append(held, s)
	}

	// Lower a to 2 while 4 are held: nothing new until 2 are back.
	if err := other.Sync([]spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1), mach("ssh://c", 1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Acquire("ssh://a"); ok {
		t.Fatal("Acquire succeeded with 4 held and capacity 2")
	}
	held[0].Release()
	held[1].Release()
	if _, ok := f.Acquire("ssh://a"); ok {
		t.Fatal("Acquire succeeded with 2 held and capacity 2")
	}
	held[2].Release()
	s, ok := f.Acquire("ssh://a")
	if !ok {
		t.Fatal("Acquire failed with 1 held and capacity 2")
	}
	held[3].Release()
	s.Release()

	// b removed and c added by one process; b's counters survive and its
	// record is reused only once nothing needs it.
	sb, _ := f.Acquire("ssh://b")
	if err := other.Sync([]spec.Machine{mach("ssh://a", 2), mach("ssh://c", 1)}); err != nil {
		t.Fatal(err)
	}
	if other.Snapshot(nil)[1].URI != "ssh://c" {
		t.Fatalf("Snapshot after Sync = %+v", other.Snapshot(nil))
	}
	if _, ok := other.Acquire("ssh://c"); !ok {
		t.Error("Acquire of added builder failed")
	}
	sb.Release()
	if err := other.Sync([]spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1), mach("ssh://c", 1)}); err != nil {
		t.Fatal(err)
	}
	if b := other.Snapshot(nil)[1]; b.URI != "ssh://b" || b.Succeeded != 1 {
		t.Errorf("b after removal and return = %+v, want its counters", b)
	}
}

func TestRecordReuse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	var ms []spec.Machine
	for i := range minRecords {
		ms = append(ms, mach(fmt.Sprintf("ssh://m%d", i), 1))
	}
	f := open(t, path, ms)
	f.BuildDone("ssh://m0", true, 7, 7)
	held, ok := f.Acquire("ssh://m1")
	if !ok {
		t.Fatal("Acquire m1 failed")
	}
	// Drop m0 and m1, add n0 and n1: m0's record is reused, m1's is not
	// (held), so the other new builder takes another free record.
	next := append([]spec.Machine{mach("ssh://n0", 1), mach("ssh://n1", 1)}, ms[2:]...)
	if err := f.Sync(next); err != nil {
		t.Fatal(err)
	}
	snap := f.Snapshot(nil)
	if !snap[0].Known || !snap[1].Known || snap[0].Succeeded != 0 || snap[1].Succeeded != 0 {
		t.Errorf("new builders = %+v %+v, want known with clean counters", snap[0], snap[1])
	}
	if _, ok := f.Acquire("ssh://n0"); !ok {
		t.Error("Acquire n0 failed")
	}
	held.Release()
	f.Reclaim()
}

func TestGrowWhileHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	logs := &logbuf{}
	f, err := Open(path, []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1)}, Options{Logf: logs.logf})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.BuildDone("ssh://a", true, 10, 20)
	s1, _ := f.Acquire("ssh://a")
	s2, ok := f.Acquire("ssh://a")
	if !ok {
		t.Fatal("Acquire failed")
	}
	s1.SetDrv("first.drv")
	ino := inode(t, path)

	// Another process raises a to more jobs than a record has room for,
	// and adds many builders: the file is rebuilt.
	other := open(t, path, nil)
	var big []spec.Machine
	big = append(big, mach("ssh://a", 2), mach("ssh://b", 1))
	for i := range 40 {
		big = append(big, mach(fmt.Sprintf("ssh://x%d", i), 1))
	}
	big[0].MaxJobs = 20
	if err := other.Sync(big); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) == ino {
		t.Fatal("file was not rebuilt")
	}
	if got := busy(t, other, "ssh://a"); got != 2 {
		t.Errorf("rebuilt file shows %d busy on a, want the 2 held", got)
	}
	b := other.Snapshot(nil)[0]
	if b.Succeeded != 1 || b.BytesRecvd != 20 || b.MaxJobs != 20 || b.Running[0].Drv != "first.drv" {
		t.Errorf("a in rebuilt file = %+v", b)
	}
	// The holder moves before its next decision: its Snapshot reads the
	// new file, and its releases land there.
	if !f.cur.Load().m.moved() {
		t.Fatal("old mapping not marked moved")
	}
	s1.SetPhase(PhaseDownloading)
	if got := other.Snapshot(nil)[0].Running[0].Phase; got != PhaseDownloading {
		t.Errorf("phase set through old slot = %v in new file", got)
	}
	s1.Release()
	s2.Release()
	if got := busy(t, other, "ssh://a"); got != 0 {
		t.Errorf("after release %d busy on a in new file, want 0", got)
	}
	if len(f.Snapshot(nil)) != 2 || f.cur.Load().m.moved() {
		t.Errorf("holder did not move to the new file")
	}
	if strings.Contains(logs.String(), "rebuilt") {
		t.Errorf("growth logged as damage: %s", logs)
	}
}

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Ino)
}

// goodImage returns the bytes of a file with builders a (3 builds
// succeeded, one slot held by a dead process) and b (5 failed).
func goodImage(t testing.TB) []byte {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 2)})
	for range 3 {
		f.BuildDone("ssh://a", true, 0, 0)
	}
	for range 5 {
		f.BuildDone("ssh://b", false, 0, 0)
	}
	m := f.cur.Load().m
	m.store(m.g.slotOff(f.cur.Load().recs[0], 0), ownerWord(1<<21+12345, 1))
	f.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func put(b []byte, off int, v uint64) []byte {
	b = bytes.Clone(b)
	binary.NativeEndian.PutUint64(b[off:], v)
	return b
}

func TestBadFiles(t *testing.T) {
	good := goodImage(t)
	g := geometryFor(2, 2)
	tests := []struct {
		name     string
		data     []byte
		warn     string // "" means no rebuild
		a, b     uint64 // counters kept
		newerErr bool
	}{
		{name: "good", data: good, a: 3, b: 5},
		{name: "empty", data: nil, warn: "short file"},
		{name: "short", data: []byte("offlslot"), warn: "short file"},
		{name: "wrong magic", data: put(good, hMagic, 0x1234), warn: "bad magic"},
		{name: "garbage", data: bytes.Repeat([]byte{0xff}, 10000), warn: "bad magic"},
		{name: "truncated in second record", data: good[:g.recOff(1)+100], warn: "truncated", a: 3},
		{name: "truncated in slots", data: good[:g.recOff(1)+recHeadSize+8], warn: "truncated", a: 3, b: 5},
		{name: "older version", data: put(good, hVersion, 0), warn: "older layout version 0", a: 3, b: 5},
		{name: "newer version", data: put(good, hVersion, version+1), newerErr: true},
		{name: "zero records", data: put(good, hRecords, 0), warn: "record count 0"},
		// Damaged geometry words: the records are still read where the
		// rest of the header describes them.
		{name: "huge records", data: put(good, hRecords, 1<<40), warn: "record count", a: 3, b: 5},
		{name: "bad slot count", data: put(good, hSlots, 3), warn: "record size", a: 3, b: 5},
		{name: "bad declared size", data: put(good, hFileSize, 99), warn: "declared size", a: 3, b: 5},
		{name: "bad record size", data: put(good, hRecSize, 8), warn: "record size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "slots")
			if err := os.WriteFile(path, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			logs := &logbuf{}
			f, err := Open(path, []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 2)}, Options{Logf: logs.logf})
			if tt.newerErr {
				if !errors.Is(err, ErrNewerLayout) {
					t.Fatalf("Open = %v, want ErrNewerLayout", err)
				}
				if got, _ := os.ReadFile(path); !bytes.Equal(got, tt.data) {
					t.Errorf("newer file was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer f.Close()
			if tt.warn == "" && logs.String() != "" || !strings.Contains(logs.String(), tt.warn) {
				t.Errorf("log = %q, want %q", logs, tt.warn)
			}
			if tt.warn != "" {
				if _, err := os.Stat(path + ".bad"); err != nil {
					t.Errorf("damaged file not kept: %v", err)
				}
			}
			snap := f.Snapshot(nil)
			if snap[0].Succeeded != tt.a || snap[1].Failed != tt.b {
				t.Errorf("counters a=%d b=%d, want %d %d", snap[0].Succeeded, snap[1].Failed, tt.a, tt.b)
			}
			// The dead owner's slot, where it was kept, comes back.
			for range 2 {
				if _, ok := f.Acquire("ssh://a"); !ok {
					t.Errorf("Acquire on rebuilt file failed")
				}
			}
			if _, ok := f.Acquire("ssh://a"); ok {
				t.Errorf("Acquire beyond capacity succeeded")
			}
		})
	}
}

// scratchDir returns a temporary directory on tmpfs when there is one:
// Open fsyncs every file it creates or rebuilds, which on a busy disk
// costs more than everything else a fuzz input does.
func scratchDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "slots-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func FuzzOpen(f *testing.F) {
	good := goodImage(f)
	f.Add(good)
	f.Add([]byte{})
	f.Add(put(good, hVersion, 0))
	f.Add(good[:5000])
	f.Add(put(good, hSlots, 1))
	base := scratchDir(f)
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		dir := filepath.Join(base, fmt.Sprint(n))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "slots")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fl, err := Open(path, []spec.Machine{mach("ssh://a", 1)}, Options{})
		if err != nil {
			if !errors.Is(err, ErrNewerLayout) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer fl.Close()
		fl.Snapshot(nil)
		fl.Decisions(nil)
		fl.Reclaim()
		s, ok := fl.Acquire("ssh://a")
		if !ok {
			// The file may be right to refuse: its builder drained, or
			// its slots held by owners that alive cannot rule out (a
			// pid that exists on this host, with no start time).
			if b := fl.Snapshot(nil)[0]; !b.Known || !b.Drained && b.Busy < b.MaxJobs {
				t.Fatalf("Acquire on opened file failed: known %v, drained %v, %d of %d slots held", b.Known, b.Drained, b.Busy, b.MaxJobs)
			}
			return
		}
		s.Release()
	})
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	if _, err := Open(path, nil, Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read-only Open of missing file = %v, want not exist", err)
	}
	w := open(t, path, []spec.Machine{mach("ssh://a", 1)})
	s, _ := w.Acquire("ssh://a")
	defer s.Release()
	r, err := Open(path, []spec.Machine{mach("ssh://a", 1)}, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Snapshot(nil)[0].Busy; got != 1 {
		t.Errorf("read-only Snapshot busy = %d, want 1", got)
	}
	if _, ok := r.Acquire("ssh://a"); ok {
		t.Error("read-only Acquire succeeded")
	}
	if err := r.SetDrained("ssh://a", true); err == nil {
		t.Error("read-only SetDrained succeeded")
	}
	r.RecordFailure("ssh://a", ErrAuth, time.Second, time.Second) // ignored, no crash
	r.LogDecision(Decision{Drv: "x"})
	if r.Reclaim() != 0 {
		t.Error("read-only Reclaim freed something")
	}
}

func TestOpenFallback(t *testing.T) {
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	os.WriteFile(state, nil, 0o644) // not a directory: cannot be created
	home := filepath.Join(tmp, "home")
	env := map[string]string{"HOME": home}
	logs := &logbuf{}
	o := Options{Logf: logs.logf, Getenv: func(k string) string { return env[k] }}
	f, err := OpenFallback(filepath.Join(state, "offload", "slots"), []spec.Machine{mach("ssh://a", 1)}, o)
	if err == nil {
		defer f.Close()
		t.Fatalf("OpenFallback with a file as state dir = %s, want an error (not permission)", f.Path())
	}

	// Unwritable: a read-only directory, as a user of a single-user Nix
	// meets it. Root writes there anyway, but not into sysfs (EPERM).
	state = filepath.Join(tmp, "ro")
	os.Mkdir(state, 0o555)
	state = filepath.Join(state, "offload", "slots")
	if os.Getuid() == 0 {
		state = "/sys/offload-test/slots"
	}
	f, err = OpenFallback(state, []spec.Machine{mach("ssh://a", 1)}, o)
	if err != nil {
		t.Fatalf("OpenFallback: %v", err)
	}
	want := filepath.Join(home, ".local", "state", "offload", "slots")
	if f.Path() != want {
		t.Errorf("OpenFallback path = %s, want %s", f.Path(), want)
	}
	f.Close()
	if !strings.Contains(logs.String(), want) {
		t.Errorf("fallback not announced: %q", logs)
	}
	n := len(logs.lines)
	f, err = OpenFallback(state, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(logs.lines) != n {
		t.Errorf("fallback announced again: %q", logs)
	}
	env["XDG_STATE_HOME"] = filepath.Join(tmp, "xdg")
	r, err := OpenFallback(state, nil, Options{ReadOnly: true, Getenv: o.Getenv})
	if err == nil {
		r.Close()
		t.Errorf("read-only OpenFallback found %s, want none under XDG_STATE_HOME", r.Path())
	}
	delete(env, "XDG_STATE_HOME")
	r, err = OpenFallback(state, nil, Options{ReadOnly: true, Getenv: o.Getenv})
	if err != nil || r.Path() != want {
		t.Fatalf("read-only OpenFallback = %v, want %s", err, want)
	}
	r.Close()
}

func TestWaitChange(t *testing.T) {
	f := open(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{mach("ssh://a", 1)})
	s, _ := f.Acquire("ssh://a")
	gen := f.Generation()
	start := time.Now()
	if f.WaitChange(context.Background(), gen, 50*time.Millisecond) {
		t.Error("WaitChange reported a change with none")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("WaitChange returned after %v, want 50ms", d)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		s.Release()
	}()
	start = time.Now()
	if !f.WaitChange(context.Background(), gen, 5*time.Second) {
		t.Error("WaitChange missed a release")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("WaitChange took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if f.WaitChange(ctx, f.Generation(), time.Second) {
		t.Error("WaitChange with a cancelled ctx reported a change")
	}
}

func TestResetCounters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slots")
	ms := []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1)}
	f := open(t, path, ms)
	s, ok := f.Acquire("ssh://a")
	if !ok {
		t.Fatal("Acquire failed")
	}
	defer s.Release()
	f.BuildDone("ssh://a", true, 10, 20)
	f.BuildDone("ssh://b", false, 1, 2)
	f.RecordFailure("ssh://b", ErrConnect, time.Hour, time.Hour)
	f.SetDrained("ssh://a", true)
	f.LogDecision(Decision{Drv: "x", Answer: pick.Accept})
	// A builder no longer listed keeps a record; its counters go too.
	old := open(t, path, []spec.Machine{mach("ssh://gone", 1)})
	old.BuildDone("ssh://gone", true, 5, 5)

	ro, err := Open(path, ms, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.ResetCounters(); err == nil {
		t.Error("ResetCounters on a read-only file succeeded")
	}
	if got := ro.Snapshot(nil)[0].Succeeded; got != 1 {
		t.Errorf("read-only ResetCounters changed the file: succeeded %d, want 1", got)
	}

	if err := f.ResetCounters(); err != nil {
		t.Fatal(err)
	}
	for _, b := range f.Snapshot(nil) {
		if b.Started != 0 || b.Succeeded != 0 || b.Failed != 0 || b.BytesSent != 0 || b.BytesRecvd != 0 {
			t.Errorf("%s after reset: %+v", b.URI, b)
		}
	}
	if b := old.Snapshot(nil)[0]; b.Succeeded != 0 || b.BytesSent != 0 {
		t.Errorf("unlisted builder after reset: %+v", b)
	}
	snap := f.Snapshot(nil)
	if snap[0].Busy != 1 || !snap[0].Drained || snap[1].ConsecutiveFailures != 1 || snap[1].UnhealthyUntil.IsZero() {
		t.Errorf("reset changed more than counters: %+v", snap)
	}
	if n := len(f.Decisions(nil)); n != 1 {
		t.Errorf("reset changed the decision ring: %d entries, want 1", n)
	}
	f.Close()
	if err := f.ResetCounters(); err == nil {
		t.Error("ResetCounters after Close succeeded")
	}
}

// Others shows what hooks of another configuration wrote: a reader with no
// builders, or other ones, sees every other record with its counters and
// held slots, and not its own builders.
func TestOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offload", "slots")
	hook := open(t, path, []spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1)})
	s, ok := hook.Acquire("ssh://a")
	if !ok {
		t.Fatal("Acquire(a) failed")
	}
	defer s.Release()
	s.SetDrv("hello-2.12")
	s.SetPhase(PhaseBuilding)
	hook.BuildDone("ssh://b", true, 10, 20)

	for _, tt := range []struct {
		ms   []spec.Machine
		want string
	}{
		{nil, "ssh://a a 2 busy 1 hello-2.12 building built 0; ssh://b b 1 busy 0 built 1"},
		{[]spec.Machine{mach("ssh://b", 4)}, "ssh://a a 2 busy 1 hello-2.12 building built 0"},
		{[]spec.Machine{mach("ssh://a", 2), mach("ssh://b", 1)}, ""},
	} {
		ro, err := Open(path, tt.ms, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range ro.Others(nil) {
			g := fmt.Sprintf("%s %s %d busy %d", b.URI, b.Name, b.MaxJobs, b.Busy)
			for _, r := range b.Running {
				g += " " + r.Drv + " " + r.Phase.String()
			}
			got = append(got, g+fmt.Sprintf(" built %d", b.Succeeded))
		}
		ro.Close()
		if strings.Join(got, "; ") != tt.want {
			t.Errorf("Others() with machines %v = %q, want %q", tt.ms, strings.Join(got, "; "), tt.want)
		}
	}
}
