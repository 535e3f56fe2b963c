// SPDX-License-Identifier: MIT

package e2e

// Faults, all with real Nix and sshd builders: the builder's
// nix-store --serve killed while the hook uploads, builds and downloads; a
// network that stops answering; a state directory that is read-only, full
// or holds a corrupt slot file; a remote log that never ends. In every
// case the build ends in bounded time, no slot stays held, and the local
// store holds no partial path.
//
// After "# accept" Nix cannot send a derivation elsewhere: a build whose
// builder dies under it fails (Nix 2.8 reports the hook's exit code 1),
// and the builder is marked unhealthy so that the next derivations go to
// other builders; it is not retried by the hook.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/slots"
)

// servePids returns the builder's running `nix-store --serve` processes:
// those below its sshd.
func (b *builder) servePids(t *testing.T) []int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Dir, "sshd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	sshd, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	var pids []int
	for _, p := range descendants(sshd) {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[0], "nix-store") && args[1] == "--serve" && running(p) {
			pids = append(pids, p)
		}
	}
	return pids
}

// phaseOf returns the phase of the first held slot of uri in the client's
// slot file, or PhaseNone.
func (c *client) phaseOf(t *testing.T, builders, uri string) slots.Phase {
	t.Helper()
	p := filepath.Join(c.Dir, "nix/var/nix/offload/slots")
	if _, err := os.Stat(p); err != nil {
		return slots.PhaseNone
	}
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI == uri && len(b.Running) > 0 {
			return b.Running[0].Phase
		}
	}
	return slots.PhaseNone
}

// afterFault checks what every fault must leave: the build failed, no
// slot is held, the builder is unhealthy, nothing partial is in the store.
func afterFault(t *testing.T, c *client, builders, uri, out string) {
	t.Helper()
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI != uri {
			continue
		}
		if b.Busy != 0 {
			t.Errorf("%s has %d busy slots after the build ended: %+v", uri, b.Busy, b.Running)
		}
		if b.ConsecutiveFailures < 1 || !b.UnhealthyUntil.After(time.Now()) {
			t.Errorf("%s: %d failures, unhealthy until %v: want it marked unhealthy after its connection broke",
				uri, b.ConsecutiveFailures, b.UnhealthyUntil)
		}
		if b.Failed != 1 || b.Succeeded != 0 {
			t.Errorf("%s: %d failed, %d succeeded builds; want 1 and 0", uri, b.Failed, b.Succeeded)
		}
	}
	if r := c.nixStore("--check-validity", out); r.Code == 0 {
		t.Errorf("%s is valid after the builder died", out)
	}
	if _, err := os.Lstat(filepath.Join(c.Dir, out)); err == nil {
		t.Errorf("%s (partial) is in the client's store after the builder died", out)
	}
	c.mustVerify()
}

// The builder's nix-store --serve killed while the inputs go up, while the
// build runs, and while the output comes back.
func TestServeKilled(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	for _, phase := range []slots.Phase{slots.PhaseUploading, slots.PhaseBuilding, slots.PhaseDownloading} {
		t.Run(phase.String(), func(t *testing.T) {
			t.Parallel()
			b1 := startBuilder(t, "b1", builderOpts{})
			c := newClient(t, b1)
			// Compressed copies come over a session of their own,
			// beside nix-store --serve: off, so that the output comes
			// over the one killed.
			c.Env = []string{"OFFLOAD_LOAD_AWARE=false", "OFFLOAD_UNHEALTHY_BACKOFF=5m", "OFFLOAD_COMPRESS=off"}
			builders := "ssh://b1 x86_64-linux"
			var expr string
			switch phase {
			case slots.PhaseUploading:
				// 128 MiB of input: the upload takes long enough to be
				// caught in the act.
				big := filepath.Join(c.Dir, "big.bin")
				if err := exec.Command("sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > %s; echo %s >> %s", 128<<20, big, unique(), big)).Run(); err != nil {
					t.Fatal(err)
				}
				expr = drv("upload-killed", "x86_64-linux", `/usr/bin/wc -c < ${./big.bin} > $out`, `u = "`+unique()+`";`)
			case slots.PhaseBuilding:
				expr = drv("build-killed", "x86_64-linux", `/bin/sleep 60; echo > $out`, `u = "`+unique()+`";`)
			case slots.PhaseDownloading:
				expr = drv("download-killed", "x86_64-linux", `/usr/bin/head -c 209715200 /dev/urandom > $out`, `u = "`+unique()+`";`)
			}
			out := c.outPath(t, expr)
			s := c.startBuild(expr, builders)
			var killed []int
			if !waitFor(90*time.Second, func() bool {
				if c.phaseOf(t, builders, "ssh://b1") != phase {
					return false
				}
				for _, p := range b1.servePids(t) {
					if syscall.Kill(p, syscall.SIGKILL) == nil {
						killed = append(killed, p)
					}
				}
				return len(killed) > 0
			}) {
				s.cancel()
				t.Fatalf("never saw the hook in phase %v with a nix-store --serve on the builder\n%s", phase, s.stderr.String())
			}
			t.Logf("killed the builder's nix-store --serve (pid %v) in phase %v", killed, phase)
			start := time.Now()
			code := s.wait(t, 60*time.Second)
			if code == 0 {
				t.Fatalf("nix-build succeeded after the builder's nix-store was killed\n%s", s.stderr.String())
			}
			stderr := s.stderr.String()
			noHookCrash(t, stderr)
			if !strings.Contains(stderr, "ssh://b1") {
				t.Errorf("the failure does not name the builder:\n%s", stderr)
			}
			t.Logf("nix-build exit %d %v after the kill; its report:\n%s", code, time.Since(start).Round(10*time.Millisecond), lastLines(stderr, 3))
			afterFault(t, c, builders, "ssh://b1", out)
		})
	}
}

// A builder whose network stops answering mid-build: it lives in a network
// namespace of its own, reached through a veth pair, and the link goes
// down while the build sleeps. With ServerAliveInterval 2 the hook gives up
// within the keepalive bound (2 s × 3 and a margin), not TCP's minutes.
func TestNetworkGone(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.Skip(t, "ip (iproute2) not found")
	}
	b1 := startBuilder(t, "b1", builderOpts{})
	b1.stop(t)

	// The namespace, the veth pair and the addresses exist only for
	// this test: a name and a /30 of 10.x picked from the port.
	ns := fmt.Sprintf("offload-t%d", b1.Port)
	hostIf, nsIf := fmt.Sprintf("ofh%d", b1.Port), fmt.Sprintf("ofn%d", b1.Port)
	n := b1.Port % 16000
	hostIP := fmt.Sprintf("10.%d.%d.%d", 100+n/4096, (n/16)%256, (n%16)*16+1)
	nsIP := fmt.Sprintf("10.%d.%d.%d", 100+n/4096, (n/16)%256, (n%16)*16+2)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() })
	ip("link", "set", nsIf, "netns", ns)
	ip("addr", "add", hostIP+"/28", "dev", hostIf)
	ip("link", "set", hostIf, "up")
	ip("-n", ns, "addr", "add", nsIP+"/28", "dev", nsIf)
	ip("-n", ns, "link", "set", nsIf, "up")
	ip("-n", ns, "link", "set", "lo", "up")

	// The builder's own sshd, as test-builder.sh starts it, in the
	// namespace and listening on its address.
	cfg, err := os.ReadFile(filepath.Join(b1.Dir, "sshd_config"))
	if err != nil {
		t.Fatal(err)
	}
	nsCfg := filepath.Join(b1.Dir, "sshd_config.netns")
	writeFile(t, nsCfg, strings.Replace(string(cfg), "ListenAddress 127.0.0.1", "ListenAddress "+nsIP, 1))
	sshd := exec.Command("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$1/nix" /nix && exec /usr/sbin/sshd -D -e -f "$2"`, "sh", b1.Dir, nsCfg)
	// A file, not a pipe: the sessions sshd leaves behind when the link
	// goes down hold its stderr.
	sshdLog := filepath.Join(b1.Dir, "sshd.netns.log")
	logf, err := os.Create(sshdLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	sshd.Stdout, sshd.Stderr = logf, logf
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Everything in the namespace is this test's: sshd and the
		// sessions that never heard of the hangup.
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		sshd.Process.Kill()
		sshd.Wait()
	})
	if !waitFor(10*time.Second, func() bool {
		return exec.Command("ssh-keyscan", "-T", "1", "-p", strconv.Itoa(b1.Port), nsIP).Run() == nil
	}) {
		b, _ := os.ReadFile(sshdLog)
		t.Fatalf("sshd in %s did not start:\n%s", ns, b)
	}

	c := newClient(t, b1)
	kh := filepath.Join(c.Dir, "known_hosts")
	host, err := os.ReadFile(filepath.Join(b1.Dir, "keys/host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, kh, fmt.Sprintf("[%s]:%d %s", nsIP, b1.Port, host))
	c.file("ssh_config", fmt.Sprintf("Host b1\n\tHostName %s\n\tPort %d\n\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tBatchMode yes\n",
		nsIP, b1.Port, b1.Key, kh))
	c.Env = []string{"OFFLOAD_LOAD_AWARE=false", "OFFLOAD_UNHEALTHY_BACKOFF=5m"}
	builders := "ssh://b1 x86_64-linux"
	dir := t.TempDir()
	expr := drv("net-gone", "x86_64-linux", fmt.Sprintf(`echo $$ > %s/pid; /bin/sleep 60; echo > $out`, dir), `u = "`+unique()+`";`)
	out := c.outPath(t, expr)

	f := c.file("net-gone.nix", expr)
	cmd := c.command(t.Context(), "nix-build", "--no-out-link", f, "--max-jobs", "0",
		"--option", "build-hook", offloadBin, "--builders", builders)
	cmd.Env = append(cmd.Env, "NIX_SSHOPTS=-F "+filepath.Join(c.Dir, "ssh_config")+" -o ServerAliveInterval=2")
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sleeper := readPid(t, filepath.Join(dir, "pid"), time.Minute)
	ip("-n", ns, "link", "set", nsIf, "down")
	down := time.Now()
	select {
	case err := <-done:
		took := time.Since(down)
		if err == nil {
			t.Fatalf("nix-build succeeded with the builder's network gone\n%s", stderr.String())
		}
		t.Logf("nix-build failed %v after the link went down (keepalive bound 6 s):\n%s", took.Round(100*time.Millisecond), lastLines(stderr.String(), 2))
		if took > 20*time.Second {
			t.Errorf("the hook took %v to notice, more than the keepalive bound", took)
		}
	case <-time.After(45 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("nix-build still runs 45 s after the builder's link went down\n%s", stderr.String())
	}
	noHookCrash(t, stderr.String())
	afterFault(t, c, builders, "ssh://b1", out)
	// The keepalives said why: recorded as a timeout, not "other".
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI == "ssh://b1" && b.LastError != slots.ErrTimeout {
			t.Errorf("ssh://b1: last error %v, want timeout (keepalives unanswered)", b.LastError)
		}
	}
	_ = sleeper
}

// The state directory read-only, full, or with a corrupt slot file: the
// hook builds anyway, without shared load, and says why once.
func TestStateDirBroken(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	mount := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v\n%s", args, err, out)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"read-only", func(t *testing.T, dir string) {
			mount(t, "--bind", dir, dir)
			t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
			mount(t, "-o", "remount,bind,ro", dir)
		}, "read-only file system"},
		{"full", func(t *testing.T, dir string) {
			mount(t, "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir)
			t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
			// Fill it.
			exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(dir, "filler"), "bs=4k").Run()
		}, "no space left on device"},
		{"corrupt", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "slots"), strings.Repeat("garbage\x00\xff", 1000))
		}, "slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			tt.setup(t, state)
			c := newClient(t, b1)
			// No fallback in root's home: the fallback directory is
			// the test's too.
			fallback := filepath.Join(t.TempDir(), "xdg")
			c.Env = []string{"OFFLOAD_LOAD_AWARE=false", "OFFLOAD_STATE_DIR=" + state, "XDG_STATE_HOME=" + fallback}
			expr := drvs("state", 2, `"echo ${toString i} > $out"`)
			r := c.build(expr, "ssh://b1 x86_64-linux - 2")
			if r.Code != 0 {
				t.Fatalf("nix-build exit %d with a %s state directory\n%s", r.Code, tt.name, r.Stderr)
			}
			if outs := strings.Fields(r.Out); len(outs) != 2 {
				t.Errorf("nix-build printed %d outputs, want 2", len(outs))
			}
			for _, o := range strings.Fields(r.Out) {
				if !b1.has(t, o) {
					t.Errorf("%s was not built on b1", o)
				}
			}
			if !strings.Contains(strings.ToLower(r.Stderr), tt.want) {
				t.Errorf("nix-build's stderr does not say %q:\n%s", tt.want, r.Stderr)
			}
			t.Logf("%s: the hook said:\n%s", tt.name, grepLines(r.Stderr, "offload"))
			if tt.name == "corrupt" {
				// docs/security.md: set aside as slots.bad and rebuilt.
				if b, err := os.ReadFile(filepath.Join(state, "slots.bad")); err != nil || !strings.HasPrefix(string(b), "garbage") {
					t.Errorf("the corrupt slot file was not kept as slots.bad: %v", err)
				}
			}
			c.mustVerify()
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A remote log that never ends, with max-build-log-size: Nix kills the
// hook with its log-limit report, and the builder's build ends.
func TestEndlessLogReal(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	c.Env = []string{"OFFLOAD_LOAD_AWARE=false"}
	dir := t.TempDir()
	expr := drv("endless", "x86_64-linux", fmt.Sprintf(`echo $$ > %s/pid; while :; do echo the log goes on; done`, dir), `u = "`+unique()+`";`)
	s := c.startBuild(expr, "ssh://b1 x86_64-linux", "--option", "max-build-log-size", "100000")
	pid := readPid(t, filepath.Join(dir, "pid"), time.Minute)
	code := s.wait(t, 60*time.Second)
	if code == 0 {
		t.Fatalf("nix-build succeeded with an endless log\n%s", s.stderr.String())
	}
	stderr := s.stderr.String()
	if !strings.Contains(stderr, "after writing more than 100000 bytes of log output") {
		t.Errorf("nix-build does not report the log limit:\n%s", lastLines(stderr, 5))
	}
	if !waitFor(10*time.Second, func() bool { return !running(pid) }) {
		t.Errorf("the remote build (pid %d) still runs 10 s after nix-build ended", pid)
	}
	t.Logf("log limit: %s", lastLines(stderr, 1))
}
