// SPDX-License-Identifier: MIT

// Package testenv decides what a test does when the machine lacks
// something it needs (root, a tool, a kernel feature, current Nix): on a
// developer's machine it skips with the reason; under CI (CI=true) it
// fails with the same reason, so that a missing install step cannot hide
// behind a skipped test.
//
// A skip that is right even under CI is listed in [Allowed], with why; it
// is the one place such skips are named. scripts/testsum counts every
// skip in a `go test -json` run and fails on one not listed there.
package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Allowed names the tests that may skip under CI, each with the reason
// it is right to. Keys are "import/path.TestName" (subtests included by
// their full name).
var Allowed = map[string]string{}

// CI reports whether the tests run under CI, where a missing
// prerequisite is a failure: the CI environment variable is set to
// anything but "" or "false".
func CI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false"
}

// Skip skips t with the reason, or fails it under CI. Use it for a
// missing prerequisite; a -short skip is testing.Short's business and
// uses t.Skip.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if CI() && Allowed[pkgOf(2)+"."+t.Name()] == "" {
		t.Fatalf("would skip, which CI does not allow: %s", why)
	}
	t.Skip(why)
}

// pkgOf returns the import path of the function skip frames up.
func pkgOf(skip int) string {
	pc, _, _, ok := runtime.Caller(skip)
	if !ok {
		return ""
	}
	name := runtime.FuncForPC(pc).Name() // e.g. example.com/m/pkg/nar.TestX.func1
	slash := strings.LastIndexByte(name, '/')
	if dot := strings.IndexByte(name[slash+1:], '.'); dot >= 0 {
		return name[:slash+1+dot]
	}
	return name
}

// Nobody returns the argv prefix that runs a command as the user nobody,
// for tests about what another local user can do. It needs root, setpriv
// and the named tools; without them it skips, or fails under CI. With
// -short it skips.
func Nobody(t testing.TB, tools ...string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("second-user test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		Skip(t, "second-user test: needs root to run commands as nobody")
	}
	for _, p := range append([]string{"setpriv"}, tools...) {
		if _, err := exec.LookPath(p); err != nil {
			Skip(t, "second-user test: %s not found", p)
		}
	}
	return []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"}
}

// OpenDir returns a new directory that every user can enter and read, and
// only its owner write, as /nix/var/nix is.
func OpenDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// NobodyCopy returns a copy of the running test binary, in a directory
// that OpenDir made, which the user nobody can run (t.TempDir's parents
// are closed to other users). Use it with Nobody to run a part of a test
// as that user.
func NobodyCopy(t testing.TB) (bin, dir string) {
	t.Helper()
	dir = OpenDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// ClosedPort returns a TCP port on 127.0.0.1 where nothing listens, for
// a connection that must be refused.
func ClosedPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NobodyFlocks makes nobody hold flock(2) (mode "-s" or "-x") on dir and
// on every entry in it, until stop is called or the test ends: Linux lets
// a process flock any file it can open, also one it may only read. It
// returns the names (dir's base name among them) nobody holds, and those
// nobody could not open, and so cannot lock. It needs flock(1).
func NobodyFlocks(t testing.TB, dir, mode string) (held, refused []string, stop func()) {
	t.Helper()
	var cmds []*exec.Cmd
	stop = func() {
		for _, cmd := range cmds {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
		cmds = nil
	}
	t.Cleanup(stop)
	as := Nobody(t, "flock")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{dir}
	for _, e := range ents {
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	for _, p := range paths {
		argv := append(append([]string{}, as...), "flock", mode, "-E", "99", p, "sh", "-c", "echo held; exec sleep 3600")
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line == "held\n" {
			held = append(held, filepath.Base(p))
			continue
		}
		cmd.Wait()
		if !strings.Contains(stderr.String(), "Permission denied") {
			t.Fatalf("flock %s %s as nobody: %q, %s", mode, p, line, stderr.String())
		}
		refused = append(refused, filepath.Base(p))
	}
	return held, refused, stop
}
