// SPDX-License-Identifier: MIT

package slots

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/pkg/spec"
)

// benchJobs is the capacity of the one builder both schemes decide on.
const benchJobs = 8

// nixLoad is a reference implementation of the lock-file scheme of Nix's
// build-remote (src/build-remote/build-remote.cc, main_build_remote and
// openSlotLock): per decision, take a blocking flock on
// current-load/main-lock, open and try-lock every slot file of the machine
// (the first free one is kept, later free ones are closed again), release
// the main lock; the slot is held until its lock file is closed.
type nixLoad struct {
	dir  string
	uri  string
	jobs int
}

func (n *nixLoad) openLock(name string) (int, error) {
	return unix.Open(filepath.Join(n.dir, name), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
}

// acquire returns the fd of the slot lock taken, or -1.
func (n *nixLoad) acquire() int {
	main, err := n.openLock("main-lock")
	if err != nil {
		panic(err)
	}
	unix.Flock(main, unix.LOCK_EX)
	free := -1
	esc := strings.ReplaceAll(n.uri, "/", "_")
	for s := range n.jobs {
		fd, err := n.openLock(esc + "-" + strconv.Itoa(s))
		if err != nil {
			panic(err)
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil && free < 0 {
			free = fd
			continue
		}
		unix.Close(fd)
	}
	unix.Close(main) // drops the main lock
	return free
}

func benchOp(t testing.TB, mode, path string) func() {
	if mode == "bench-nix" {
		n := &nixLoad{dir: path, uri: "ssh://b", jobs: benchJobs}
		os.MkdirAll(path, 0o777)
		return func() {
			if fd := n.acquire(); fd >= 0 {
				unix.Close(fd)
			}
		}
	}
	f, err := Open(path, []spec.Machine{mach("ssh://b", benchJobs)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		if s, ok := f.Acquire("ssh://b"); ok {
			s.Release()
		}
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, mode := range []string{"offload", "nix"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "slots")
			op := benchOp(b, "bench-"+mode, path)
			b.ReportAllocs()
			for b.Loop() {
				op()
			}
		})
	}
}

// BenchmarkAcquireRelease8Proc runs b.N decisions spread over 8 processes
// on one file; ns/op is wall time per decision.
func BenchmarkAcquireRelease8Proc(b *testing.B) {
	const procs = 8
	for _, mode := range []string{"offload", "nix"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "slots")
			if mode == "offload" {
				benchOp(b, "bench-offload", path) // create it
			}
			b.StopTimer()
			var stdins []io.WriteCloser
			var outs []*bufio.Reader
			for range procs {
				cmd := child(b, "bench-"+mode, "SLOTS_PATH="+path, "SLOTS_N="+strconv.Itoa(b.N/procs+1))
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				defer cmd.Wait()
				defer cmd.Process.Signal(syscall.SIGKILL)
				stdins = append(stdins, stdin)
				outs = append(outs, bufio.NewReader(stdout))
			}
			// Let them open the file before the clock starts.
			for _, w := range stdins {
				defer w.Close()
			}
			b.StartTimer()
			for _, w := range stdins {
				w.Write([]byte{1})
			}
			for _, r := range outs {
				if line, err := r.ReadString('\n'); line != "done\n" {
					b.Fatalf("child said %q, %v", line, err)
				}
			}
			b.StopTimer()
		})
	}
}
