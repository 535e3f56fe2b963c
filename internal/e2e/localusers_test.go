// SPDX-License-Identifier: MIT

package e2e

// Tests with a second, unprivileged local user (nobody): under nix-daemon
// every hook runs as root, and nothing another user can do to offload's
// state may stall it or change what it does. These run the offload binary
// in hook mode directly; they need root, setpriv and flock (util-linux),
// not Nix. Skipped with -short; without root or a tool they are skipped,
// unless CI=true, where that is a failure.

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/wire"
)

// nobodyFlocks makes nobody hold a shared flock(2) on dir and on every
// entry in it that nobody can open, until the test ends, and fails t
// unless that includes dir and the slot file.
func nobodyFlocks(t *testing.T, dir string) {
	t.Helper()
	held, _, _ := testenv.NobodyFlocks(t, dir, "-s")
	t.Logf("nobody holds flocks on %q", held)
	if len(held) < 2 {
		t.Fatalf("nobody holds flocks on %q only; want the directory and the slot file", held)
	}
}

// hookInput is what Nix writes to the hook: its settings, then one request
// for a derivation of system.
func hookInput(t *testing.T, builders, system string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	settings := map[string]string{"builders": builders, "system": "x86_64-linux"}
	if err := hookproto.WriteSettings(w, settings, []string{"builders", "system"}); err != nil {
		t.Fatal(err)
	}
	req := &hookproto.Request{AmWilling: true, System: system, DrvPath: "/nix/store/00000000000000000000000000000000-x.drv"}
	if err := hookproto.WriteRequest(w, req); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// While nobody holds flocks on offload's state directory and every file in
// it nobody can open, a root hook still answers Nix at once and ends
// promptly on SIGTERM.
func TestLocalUserFlocksHook(t *testing.T) {
	testenv.Nobody(t, "flock")
	state := filepath.Join(testenv.OpenDir(t), "offload")
	// The builder takes no derivation of this system: the hook opens the
	// shared state (and takes its lock to record the builder) and declines.
	builders := "ssh://b1 riscv64-linux"
	env := append(os.Environ(), "OFFLOAD_STATE_DIR="+state, "HOME="+t.TempDir())
	first := exec.Command(offloadBin, "hook", "3")
	first.Stdin = bytes.NewReader(hookInput(t, builders, "x86_64-linux"))
	first.Env = env
	if out, err := first.CombinedOutput(); err != nil || !strings.Contains(string(out), "# decline\n") {
		t.Fatalf("first hook: %v\n%s", err, out)
	}
	nobodyFlocks(t, state)

	cmd := exec.Command(offloadBin, "hook", "3")
	cmd.Env = env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// A second builder makes the hook add a record, under the lock.
	if _, err := stdin.Write(hookInput(t, builders+"; ssh://b2 riscv64-linux", "x86_64-linux")); err != nil {
		t.Fatal(err)
	}
	answer := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stderr)
		for {
			line, err := r.ReadString('\n')
			if strings.HasPrefix(line, "# ") || err != nil {
				answer <- strings.TrimSpace(line)
				io.Copy(io.Discard, r)
				return
			}
		}
	}()
	start := time.Now()
	select {
	case a := <-answer:
		if a != "# decline" {
			t.Errorf("hook answered %q, want # decline", a)
		}
		t.Logf("answer after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("hook gave no answer within 10s while nobody holds flocks (wchan %s)", wchan(cmd.Process.Pid))
	}
	// The hook now waits for Nix's next request; Nix ≥ 2.35 ends it with
	// SIGTERM.
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	start = time.Now()
	select {
	case <-exited:
		t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("hook still running 10s after SIGTERM (wchan %s)", wchan(cmd.Process.Pid))
	}
	if st, err := os.Stat(filepath.Join(state, "slots")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("slot file: %v, %v; want mode 0644, for status by every user", st, err)
	}
}

// A command that changes the state the hooks read (drain, undrain, status
// --reset-counters), typed by a user who cannot write it, fails (exit 2)
// with one line and a hint, and changes nothing: not the hooks' file, and
// no file of the user's own that no hook reads.
func TestLocalUserCannotChange(t *testing.T) {
	as := testenv.Nobody(t)
	// The test binary's directory is private to root.
	if err := os.Chmod(filepath.Dir(offloadBin), 0o755); err != nil {
		t.Fatal(err)
	}
	root := testenv.OpenDir(t)
	home := filepath.Join(root, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	builders := "ssh://b1 x86_64-linux - 2; ssh://b2 x86_64-linux"
	for _, exists := range []bool{true, false} {
		state := filepath.Join(root, "offload")
		if !exists {
			state = filepath.Join(root, "none", "offload")
			os.Mkdir(filepath.Dir(state), 0o755)
		}
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "OFFLOAD_STATE_DIR=" + state, "OFFLOAD_CONF=/dev/null"}
		if exists {
			// root's hooks made the file; root drained b2.
			c := exec.Command(offloadBin, "drain", "b2", "--builders", builders)
			c.Env = env
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("root: offload drain b2: %v\n%s", err, out)
			}
		}
		for _, args := range [][]string{
			{"drain", "b1"},
			{"undrain", "b2"},
			{"status", "--reset-counters"},
		} {
			if !exists && args[0] == "status" {
				continue // nothing to reset: says so, exit 0
			}
			argv := append(append(append([]string{}, as...), offloadBin), args...)
			argv = append(argv, "--builders", builders)
			c := exec.Command(argv[0], argv[1:]...)
			c.Env = env
			var stdout, stderr bytes.Buffer
			c.Stdout, c.Stderr = &stdout, &stderr
			err := c.Run()
			code := c.ProcessState.ExitCode()
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != 2 || stdout.Len() != 0 || len(lines) != 2 ||
				!strings.HasPrefix(lines[0], "offload: "+args[0]+": ") ||
				!strings.HasPrefix(lines[1], "offload: hint: ") {
				t.Errorf("nobody (state file exists: %v): offload %q = %v (exit %d)\nstdout: %s\nstderr: %s\nwant exit 2, no output, one error line and a hint",
					exists, args, err, code, stdout.String(), stderr.String())
			} else {
				t.Logf("nobody: offload %s:\n%s", strings.Join(args, " "), stderr.String())
			}
		}
		if _, err := os.Stat(filepath.Join(home, ".local")); err == nil {
			t.Errorf("nobody's commands made a state file of nobody's own in %s", home)
			os.RemoveAll(filepath.Join(home, ".local"))
		}
		if !exists {
			if _, err := os.Stat(state); err == nil {
				t.Errorf("nobody's commands made %s", state)
			}
			continue
		}
		// Reading is for everyone.
		for _, args := range [][]string{{"status", "--log"}, {"status", "-v"}, {"pick", "--system", "x86_64-linux"}} {
			argv := append(append(append([]string{}, as...), offloadBin), args...)
			c := exec.Command(argv[0], append(argv[1:], "--builders", builders)...)
			c.Env = env
			if out, err := c.CombinedOutput(); err != nil && c.ProcessState.ExitCode() != 1 {
				t.Errorf("nobody: offload %q: %v\n%s", args, err, out)
			} else if strings.Contains(string(out), "offload: ") {
				t.Errorf("nobody: offload %q:\n%s", args, out)
			}
		}
		c := exec.Command(offloadBin, "status", "--json", "--builders", builders)
		c.Env = env
		out, err := c.Output()
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), `"drained":true`); n != 1 {
			t.Errorf("root's file has %d drained builders after nobody's commands, want 1 (b2)\n%s", n, out)
		}
	}
}

// The real path: while nobody holds flocks on offload's state directory and
// every file in it they can open, nix-build (its hook as root) still
// offloads a build.
func TestLocalUserFlocksNixBuild(t *testing.T) {
	requireEnv(t)
	testenv.Nobody(t, "flock")
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	// nobody must reach the client's /nix, as it can reach /nix/var/nix.
	for _, d := range []string{c.Dir, filepath.Dir(c.Dir), filepath.Dir(filepath.Dir(c.Dir))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	builders := "ssh://b1 x86_64-linux"
	r := c.build(drv("first", "x86_64-linux", `echo first > $out`, `u = "`+unique()+`";`), builders)
	if r.Code != 0 {
		t.Fatalf("first nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	state := filepath.Join(c.Dir, "nix/var/nix/offload")
	for _, d := range []string{"nix", "nix/var", "nix/var/nix"} {
		if err := os.Chmod(filepath.Join(c.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nobodyFlocks(t, state)
	start := time.Now()
	r = c.build(drv("second", "x86_64-linux", `echo second > $out`, `u = "`+unique()+`";`), builders+"; ssh://b2 x86_64-linux")
	if r.Code != 0 || !b1.has(t, r.Out) {
		t.Fatalf("nix-build while nobody holds flocks: exit %d\n%s", r.Code, r.Stderr)
	}
	t.Logf("built on b1 in %v while nobody held flocks", time.Since(start).Round(time.Millisecond))
}
