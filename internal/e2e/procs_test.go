// SPDX-License-Identifier: MIT

package e2e

// Processes, locks and crashes, as the tests see them through /proc: the
// hook processes of a test, the pid a build writes, who holds an output's
// lock, whether a process still runs, and whether nix-build's stderr shows
// a hook that died rather than one that answered.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hookCopy copies the offload binary to a file of the test's own, named
// offload, so the test can find its hook processes by executable without
// meeting the hooks of tests running in parallel.
func hookCopy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(offloadBin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "offload")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// procsOf returns the pids of the processes whose executable is the file
// exe, but for connection relays. It compares files, not names: a process
// chrooted into the unstable root shows another path in /proc/<pid>/exe.
func procsOf(exe string) []int { return processes(exe, false) }

// relaysOf returns the pids of the connection relays run from exe.
func relaysOf(exe string) []int { return processes(exe, true) }

// processes returns the pids of the processes run from exe that are
// relays, or that are not.
func processes(exe string, relays bool) []int {
	want, err := os.Stat(exe)
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Stat("/proc/" + e.Name() + "/exe"); err == nil && os.SameFile(fi, want) && isRelay(pid) == relays {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isRelay says whether pid is a connection relay: the first hook starts
// one from its own executable (connect-persist), and it outlives the hook.
func isRelay(pid int) bool {
	env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return bytes.Contains(append([]byte{0}, env...), []byte("\x00OFFLOAD_RELAY_DIR="))
}

// descendants returns the processes below pid, per /proc.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// cmdline returns a process's argv.
func cmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// commOf returns a process's command name.
func commOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// wchan is where in the kernel process pid waits, for failure messages.
func wchan(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "wchan"))
	return string(b)
}

// running reports whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls cond every 50 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readPid waits for a build to write its pid to path.
func readPid(t *testing.T, path string, d time.Duration) int {
	t.Helper()
	var pid int
	if !waitFor(d, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	}) {
		t.Fatalf("the build did not start on the builder within %v (no %s)", d, path)
	}
	return pid
}

// lockHolder returns the pid that holds an flock on path, per
// /proc/locks, or 0.
func lockHolder(path string) int {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	want := ":" + strconv.FormatUint(st.Ino, 10)
	for _, line := range strings.Split(string(b), "\n") {
		// "1: FLOCK ADVISORY WRITE 1234 00:2a:5678 0 EOF"
		fs := strings.Fields(line)
		if len(fs) < 6 || fs[1] != "FLOCK" || !strings.HasSuffix(fs[5], want) {
			continue
		}
		pid, _ := strconv.Atoi(fs[4])
		return pid
	}
	return 0
}

// noHookCrash fails if nix-build's stderr shows a hook that died rather
// than one that answered. offload's own lines are left out: they may
// quote "unexpected EOF" from a builder.
func noHookCrash(t *testing.T, stderr string) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "offload: ") {
			continue
		}
		for _, bad := range []string{"unexpected EOF", "bad hook reply", "panic", "goroutine "} {
			if strings.Contains(line, bad) {
				t.Errorf("nix-build's stderr shows a hook crash (%q):\n%s", bad, stderr)
				return
			}
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// started is a command of the client's running in the background.
type started struct {
	cmd    *exec.Cmd
	stdout strings.Builder
	stderr strings.Builder
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// start runs args as the client in the background, and stops it when the
// test ends.
func (c *client) start(args ...string) *started {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s := &started{done: make(chan struct{}), cancel: cancel}
	s.cmd = c.command(ctx, args...)
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	if err := s.cmd.Start(); err != nil {
		cancel()
		c.t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	c.t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// startBuild is build in the background.
func (c *client) startBuild(expr, builders string, extra ...string) *started {
	c.t.Helper()
	return c.start(c.buildArgs(expr, builders, extra...)...)
}

// wait waits for the command to end and returns its exit code.
func (s *started) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.cancel()
		<-s.done
		t.Fatalf("%v did not end within %v\n%s", s.cmd.Args, d, s.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return 0
}

// killTree kills pid and every process below it, as a reboot would. It
// stops them all first, until no new one appears, so that none can fork a
// process (sshd accepting one more connection, a session starting its
// command) between the look at /proc and the kill.
func killTree(pid int) {
	syscall.Kill(pid, syscall.SIGSTOP)
	var seen map[int]bool
	for range 20 {
		ps := descendants(pid)
		grew := false
		for _, p := range ps {
			if !seen[p] {
				if seen == nil {
					seen = map[int]bool{}
				}
				seen[p] = true
				grew = true
				syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if !grew {
			break
		}
	}
	for p := range seen {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}
