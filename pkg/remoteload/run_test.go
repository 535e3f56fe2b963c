// SPDX-License-Identifier: MIT

package remoteload

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/pick"
	"golang.org/x/sys/unix"
)

// run runs the script through cmd (whose last argument is Command) and
// parses its output with Run.
func run(t *testing.T, cmd *exec.Cmd) pick.Reading {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	r, rerr := Run(stdin, stdout, nil)
	if err := cmd.Wait(); err != nil {
		t.Errorf("%v: %v\n%s", cmd.Args, err, stderr.Bytes())
	}
	if rerr != nil {
		t.Fatalf("Run: %v", rerr)
	}
	t.Logf("%v: %v", cmd.Args, r)
	return r
}

// TestLocal runs the script on this machine, as a builder would.
func TestLocal(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "checks Linux's /proc")
	}
	r := run(t, exec.Command(Command))
	var aff unix.CPUSet
	if unix.SchedGetaffinity(0, &aff) == nil && r.CPUs != aff.Count() {
		t.Errorf("CPUs = %d, want %d (the affinity mask, as nproc counts)", r.CPUs, aff.Count())
	}
	if r.Load1 == pick.ReadingUnknown || r.Load15 == pick.ReadingUnknown {
		t.Errorf("load unknown: %+v", r)
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		total := int64(si.Totalram) * int64(si.Unit)
		if d := r.MemTotal - total; d < -1<<20 || d > 1<<20 {
			t.Errorf("MemTotal = %d, sysinfo says %d", r.MemTotal, total)
		}
	}
	if r.MemAvailable == pick.ReadingUnknown {
		t.Errorf("MemAvailable unknown")
	}
	if _, err := os.Stat("/proc/pressure/cpu"); err == nil {
		if _, err := os.ReadFile("/proc/pressure/cpu"); err == nil && r.CPUPressure == pick.ReadingUnknown {
			t.Errorf("CPU pressure unknown though /proc/pressure/cpu is readable")
		}
	}
	if r.Builds == pick.ReadingUnknown {
		t.Errorf("builds unknown")
	}
	if _, err := os.Stat("/nix/store"); err == nil {
		checkStore(t, r, "/nix/store")
	}
}

// checkStore compares the reading's store size with statfs of dir.
func checkStore(t *testing.T, r pick.Reading, dir string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := int64(st.Blocks) * int64(st.Frsize) / 1024 * 1024
	if r.StoreSize != size {
		t.Errorf("StoreSize = %d, statfs(%s) says %d", r.StoreSize, dir, size)
	}
	if r.StoreFree < 0 || r.StoreFree > r.StoreSize {
		t.Errorf("StoreFree = %d of %d", r.StoreFree, r.StoreSize)
	}
}

// TestCountBuilds runs the script in a PID namespace of its own, where the
// only processes are fake Nix processes and their children, so the count is
// exact.
func TestCountBuilds(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		testenv.Skip(t, "needs root and unshare")
	}
	dir := t.TempDir()
	for _, name := range []string{"nix-store", "nix-daemon", "build-remote", "nix-build"} {
		if err := os.Symlink("/bin/sh", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// nix-store --serve with two builds and a build hook (whose child is
	// not a build of this machine); a daemon with a worker running one
	// build; nix-build with one build.
	setup := `
d=$1
"$d/nix-store" -c 'sleep 30 & sleep 30 & "$0" -c "sleep 30" & wait' "$d/build-remote" &
"$d/nix-daemon" -c '"$0" -c "sleep 30; :" & wait' "$d/nix-daemon" &
"$d/nix-build" -c 'sleep 30 & wait' &
sleep 1
exec /bin/sh
`
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The namespace's init is the outer sh: killing it ends every process
	// in the namespace.
	cmd := exec.CommandContext(ctx, unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "/bin/sh", "-c", setup, "sh", dir)
	cmd.WaitDelay = time.Second
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		testenv.Skip(t, "%v: %v", cmd.Args, err)
	}
	r, err := Run(stdin, stdout, nil)
	cancel()
	cmd.Wait()
	if err != nil {
		testenv.Skip(t, "no reading in a new PID namespace (%v): not allowed here?", err)
	}
	t.Logf("%v", r)
	if r.Builds != 4 {
		t.Errorf("Builds = %d, want 4 (two under nix-store, one under a daemon worker, one under nix-build)", r.Builds)
	}
}

// TestBuilder reads a test builder over SSH, with a build running on it.
func TestBuilder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd")
	}
	script, _ := filepath.Abs("../../scripts/test-builder.sh")
	for _, p := range []string{"sshd", "ssh", "unshare", "nsenter", "nix-build"} {
		if _, err := exec.LookPath(p); err != nil && p != "sshd" {
			testenv.Skip(t, "no %s", p)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil || os.Geteuid() != 0 {
		testenv.Skip(t, "needs root and /usr/sbin/sshd")
	}
	dir := t.TempDir()
	if out, err := exec.Command(script, "start", dir, "rlbuilder").CombinedOutput(); err != nil {
		testenv.Skip(t, "%s start: %v\n%s", script, err, out)
	}
	t.Cleanup(func() { exec.Command(script, "stop", dir).Run() })
	ssh := func() *exec.Cmd {
		return exec.Command("ssh", "-F", filepath.Join(dir, "ssh_config"), "rlbuilder", Command)
	}

	r := run(t, ssh())
	if r.CPUs == pick.ReadingUnknown || r.Load1 == pick.ReadingUnknown || r.MemTotal == pick.ReadingUnknown || r.Builds == pick.ReadingUnknown {
		t.Errorf("reading over SSH lacks fields: %+v", r)
	}
	// The builder's /nix is dir/nix, bind-mounted in its namespace: the
	// store figures must be that filesystem's.
	checkStore(t, r, filepath.Join(dir, "nix"))

	// A build running on the builder is counted (whatever else runs on
	// this machine is counted too: builders share its PID namespace).
	expr := `derivation { name = "remoteload-test"; system = builtins.currentSystem; builder = "/bin/sh"; ` +
		`args = ["-c" "/bin/sleep 20; echo > $out"]; }`
	build := exec.Command(script, "exec", dir, "nix-build", "--no-out-link", "-E", expr)
	var blog bytes.Buffer
	build.Stdout, build.Stderr = &blog, &blog
	build.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	build.WaitDelay = time.Second // the builder keeps the log pipe open
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		unix.Kill(-build.Process.Pid, unix.SIGKILL)
		build.Wait()
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r = run(t, ssh())
		if r.Builds >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a running build was not counted: %+v\nbuild log:\n%s", r, blog.Bytes())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
