// SPDX-License-Identifier: MIT

package slots

// Tests with real processes sharing one slot file: the test binary re-execs
// itself as child hooks (see TestMain). Under qemu-user, set
// OFFLOAD_TEST_EXEC_WRAPPER to the interpreter (e.g. qemu-aarch64-static)
// so the children run under it too; scripts/qemu-test.sh does.

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/pkg/spec"
)

const childEnv = "OFFLOAD_SLOTS_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// child starts the test binary as a child process in mode.
func child(t testing.TB, mode string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{exe, "-test.run=^$"}
	if w := os.Getenv("OFFLOAD_TEST_EXEC_WRAPPER"); w != "" {
		argv = append(strings.Fields(w), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + mode}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func hammerMachines() []spec.Machine {
	return []spec.Machine{mach("ssh://one", 1), mach("ssh://three", 3), mach("ssh://five", 5)}
}

// witness is a test-only shared mapping the children use to check one
// another independently of the code under test: per builder the number of
// slots in use, per slot the pid using it, and a violation count.
type witness struct{ data []byte }

const (
	wViolations = 0
	wInUse      = 8    // + 8*builder
	wReady      = 512  // children ready to start
	wGo         = 520  // end of the run (Unix ns); 0 until all are ready
	wSlot       = 1024 // + 8*(builder*MaxSlots + slot)
	wSize       = wSlot + 8*8*MaxSlots
)

func openWitness(t testing.TB, path string, create bool) *witness {
	if create {
		if err := os.WriteFile(path, make([]byte, wSize), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	data, err := unix.Mmap(int(fd.Fd()), 0, wSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	return &witness{data}
}

func (w *witness) word(off int) *uint64 { return (*uint64)(unsafe.Pointer(&w.data[off])) }

// childT is enough of testing.TB for helpers used by children.
type childT struct{ testing.TB }

func (childT) Helper() {}
func (childT) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(2)
}
func (c childT) Fatalf(format string, args ...any) { c.Fatal(fmt.Sprintf(format, args...)) }

func runChild(mode string) int {
	t := childT{}
	path := os.Getenv("SLOTS_PATH")
	switch mode {
	case "hammer":
		return hammer(t, path)
	case "hold":
		f, err := Open(path, hammerMachines(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(os.Getenv("SLOTS_N"))
		for range n {
			if _, ok := f.Acquire(os.Getenv("SLOTS_URI")); !ok {
				t.Fatal("hold: Acquire failed")
			}
		}
		tok, ok := f.TryUpload(os.Getenv("SLOTS_URI"))
		_ = tok
		fmt.Printf("held %v\n", ok)
		io.Copy(io.Discard, os.Stdin) // until killed
		return 0
	case "race":
		start, _ := strconv.ParseInt(os.Getenv("SLOTS_START"), 10, 64)
		time.Sleep(time.Until(time.Unix(0, start)))
		f, err := Open(path, []spec.Machine{mach("ssh://r", 8)}, Options{Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		}})
		if err != nil {
			t.Fatal(err)
		}
		s, ok := f.Acquire("ssh://r")
		fmt.Printf("%d %v\n", inode(t, path), ok)
		io.Copy(io.Discard, os.Stdin)
		s.Release()
		return 0
	case "bench-offload", "bench-nix":
		n, _ := strconv.Atoi(os.Getenv("SLOTS_N"))
		op := benchOp(t, mode, path)
		os.Stdin.Read(make([]byte, 1))
		for range n {
			op()
		}
		fmt.Println("done")
		io.Copy(io.Discard, os.Stdin)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
	return 2
}

// hammer takes and gives back slots until SLOTS_UNTIL, checking through the
// witness that no builder is ever over capacity and no slot has two
// holders. It prints the number of slots it took.
func hammer(t childT, path string) int {
	ms := hammerMachines()
	f, err := Open(path, ms, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := openWitness(t, os.Getenv("SLOTS_WITNESS"), false)
	atomic.AddUint64(w.word(wReady), 1)
	for atomic.LoadUint64(w.word(wGo)) == 0 {
		time.Sleep(time.Millisecond)
	}
	until := int64(atomic.LoadUint64(w.word(wGo)))
	pid := uint64(os.Getpid())
	taken := 0
	var snap []Builder
	for time.Now().UnixNano() < until {
		b := rand.IntN(len(ms))
		s, ok := f.Acquire(ms[b].URI)
		if !ok {
			if rand.IntN(8) == 0 {
				snap = f.Snapshot(snap)
			}
			runtime.Gosched()
			continue
		}
		taken++
		if n := atomic.AddUint64(w.word(wInUse+8*b), 1); n > uint64(ms[b].MaxJobs) {
			atomic.AddUint64(w.word(wViolations), 1)
			fmt.Fprintf(os.Stderr, "%s: %d in use, capacity %d\n", ms[b].URI, n, ms[b].MaxJobs)
		}
		slotw := w.word(wSlot + 8*(b*MaxSlots+s.j))
		if !atomic.CompareAndSwapUint64(slotw, 0, pid) {
			atomic.AddUint64(w.word(wViolations), 1)
			fmt.Fprintf(os.Stderr, "%s slot %d: also held by %d\n", ms[b].URI, s.j, atomic.LoadUint64(slotw))
		}
		s.SetDrv("hammer.drv")
		for range rand.IntN(50) {
			runtime.Gosched()
		}
		atomic.StoreUint64(slotw, 0)
		atomic.AddUint64(w.word(wInUse+8*b), ^uint64(0))
		s.Release()
	}
	fmt.Println(taken)
	return 0
}

func hammerDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("OFFLOAD_TEST_HAMMER")); err == nil {
		return d
	}
	return 2 * time.Second
}

func TestMultiProcess(t *testing.T) {
	for _, rebuild := range []bool{false, true} {
		t.Run(fmt.Sprintf("rebuilds=%v", rebuild), func(t *testing.T) { testMultiProcess(t, rebuild) })
	}
}

func testMultiProcess(t *testing.T, rebuild bool) {
	const children = 32
	dir := t.TempDir()
	path := filepath.Join(dir, "slots")
	ms := hammerMachines()
	f := open(t, path, ms)
	w := openWitness(t, filepath.Join(dir, "witness"), true)

	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range children {
		cmd := child(t, "hammer", "SLOTS_PATH="+path, "SLOTS_WITNESS="+filepath.Join(dir, "witness"))
		out := &strings.Builder{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		outs = append(outs, out)
	}

	// Children start slowly under qemu or the race detector: start the
	// clock once all have opened the file.
	for deadline := time.Now().Add(2 * time.Minute); atomic.LoadUint64(w.word(wReady)) < children; {
		if time.Now().After(deadline) {
			for _, c := range cmds {
				c.Process.Kill()
			}
			t.Fatalf("only %d of %d children started", atomic.LoadUint64(w.word(wReady)), children)
		}
		time.Sleep(time.Millisecond)
	}
	until := time.Now().Add(hammerDuration())
	atomic.StoreUint64(w.word(wGo), uint64(until.UnixNano()))

	// Watch: in-use counts never above capacity; and, with rebuilds,
	// grow the file under the children now and then.
	done := make(chan error, children)
	go func() {
		for _, c := range cmds {
			done <- c.Wait()
		}
	}()
	peak := make([]uint64, len(ms))
	extra := ms
	lastRebuild := time.Now()
	rebuilds := 0
	for finished := 0; finished < children; {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child: %v", err)
			}
			finished++
			continue
		default:
		}
		for b := range ms {
			n := atomic.LoadUint64(w.word(wInUse + 8*b))
			peak[b] = max(peak[b], n)
			if n > uint64(ms[b].MaxJobs) {
				t.Errorf("watcher: %s has %d in use, capacity %d", ms[b].URI, n, ms[b].MaxJobs)
			}
		}
		if rebuild && time.Since(lastRebuild) > 150*time.Millisecond && time.Now().Before(until) {
			// Alternately grow the file by adding builders and
			// rebuild it as it is.
			if rebuilds%2 == 0 {
				for i := range 20 {
					extra = append(extra, mach(fmt.Sprintf("ssh://extra-%d-%d", rebuilds, i), 1))
				}
			}
			ino := inode(t, path)
			if err := f.Sync(extra); err != nil {
				t.Fatal(err)
			}
			if inode(t, path) == ino {
				f.testOnlyRebuild(t)
			}
			if inode(t, path) != ino {
				rebuilds++
			}
			lastRebuild = time.Now()
		}
		time.Sleep(100 * time.Microsecond)
	}
	if v := atomic.LoadUint64(w.word(wViolations)); v != 0 {
		t.Errorf("children saw %d capacity or double-holder violations", v)
	}
	total := 0
	for i, out := range outs {
		n, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil || n == 0 {
			t.Errorf("child %d took %q slots", i, out.String())
		}
		total += n
	}
	for _, b := range f.Snapshot(nil)[:len(ms)] {
		if b.Busy != 0 {
			t.Errorf("%s: %d slots still held at the end: %+v", b.URI, b.Busy, b.Running)
		}
	}
	t.Logf("%d children took %d slots; peak in use %v of %d/%d/%d; %d rebuilds",
		children, total, peak, ms[0].MaxJobs, ms[1].MaxJobs, ms[2].MaxJobs, rebuilds)
	// How many rebuilds fit while the children run depends on the
	// machine's speed (qemu-user is slow); one is enough to exercise the
	// move, more only add confidence.
	if rebuild && rebuilds < 1 {
		t.Errorf("no rebuild happened while the children ran")
	}
	for b := range ms {
		if peak[b] == 0 {
			t.Errorf("%s never used", ms[b].URI)
		}
	}
}

// testOnlyRebuild rebuilds the file in place, as after an interrupted
// rebuild.
func (f *File) testOnlyRebuild(t testing.TB) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.cur.Load().m
	if err := f.rebuild(m.f, m, m.g, ""); err != nil {
		t.Fatal(err)
	}
	f.followLocked()
}

func TestCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	ms := hammerMachines()
	f := open(t, path, ms)
	// Two children fill "five" (3 + 2) and one holds the upload token.
	var cmds []*exec.Cmd
	for _, n := range []int{3, 2} {
		cmd := child(t, "hold", "SLOTS_PATH="+path, "SLOTS_URI=ssh://five", "SLOTS_N="+strconv.Itoa(n))
		stdin, _ := cmd.StdinPipe()
		defer stdin.Close()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "held") {
			t.Fatalf("child said %q, %v", line, err)
		}
		cmds = append(cmds, cmd)
	}
	if _, ok := f.Acquire("ssh://five"); ok {
		t.Fatal("Acquire succeeded on a builder the children fill")
	}
	if _, ok := f.TryUpload("ssh://five"); ok {
		t.Fatal("TryUpload succeeded while a live child holds the token")
	}
	if n := f.Reclaim(); n != 0 {
		t.Fatalf("Reclaim freed %d slots of live children", n)
	}
	// SIGKILL, and look before reaping (zombies are dead too) and after.
	cmds[0].Process.Signal(syscall.SIGKILL)
	waitDead(t, cmds[0].Process.Pid)
	var got []Slot
	for range 3 {
		s, ok := f.Acquire("ssh://five")
		if !ok {
			t.Fatalf("Acquire after SIGKILL of the holder of 3 got only %d", len(got))
		}
		got = append(got, s)
	}
	if _, ok := f.Acquire("ssh://five"); ok {
		t.Fatal("Acquire took a slot of the live child")
	}
	cmds[0].Wait()
	cmds[1].Process.Signal(syscall.SIGKILL)
	cmds[1].Wait()
	for range 2 {
		s, ok := f.Acquire("ssh://five")
		if !ok {
			t.Fatal("Acquire after SIGKILL of the second child failed")
		}
		got = append(got, s)
	}
	if rel, ok := f.TryUpload("ssh://five"); !ok {
		t.Error("upload token of a killed child not taken over")
	} else {
		rel()
	}
	for i := range got {
		got[i].Release()
	}
	if b := busy(t, f, "ssh://five"); b != 0 {
		t.Errorf("busy = %d at the end", b)
	}
}

// waitDead waits until pid is a zombie or gone.
func waitDead(t *testing.T, pid int) {
	for range 500 {
		if _, state, ok := procStat(pid); !ok || state == 'Z' {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("process %d did not die", pid)
}

func TestRaceCreate(t *testing.T) {
	const children = 8
	path := filepath.Join(t.TempDir(), "sub", "slots")
	start := time.Now().Add(300 * time.Millisecond)
	if os.Getenv("OFFLOAD_TEST_EXEC_WRAPPER") != "" {
		start = time.Now().Add(3 * time.Second)
	}
	var stdins []io.WriteCloser
	var outs []*bufio.Reader
	for range children {
		cmd := child(t, "race", "SLOTS_PATH="+path, "SLOTS_START="+strconv.FormatInt(start.UnixNano(), 10))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer stdin.Close()
		stdins = append(stdins, stdin)
		outs = append(outs, bufio.NewReader(stdout))
	}
	var lines []string
	for _, r := range outs {
		line, _ := r.ReadString('\n')
		lines = append(lines, strings.TrimSpace(line))
	}
	for _, l := range lines {
		if l != lines[0] || !strings.HasSuffix(l, " true") {
			t.Fatalf("children disagree on the file or got no slot: %q", lines)
		}
	}
	if got := lines[0]; got != fmt.Sprintf("%d true", inode(t, path)) {
		t.Errorf("children used inode %s, file at path is %d", got, inode(t, path))
	}
	r, err := Open(path, []spec.Machine{mach("ssh://r", 8)}, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b := r.Snapshot(nil)[0]; b.Busy != children {
		t.Errorf("busy = %d, want %d", b.Busy, children)
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"))
	if len(matches) != 2 || matches[1] != lockPath(path) {
		t.Errorf("files left next to the slot file: %q", matches)
	}
}
