// SPDX-License-Identifier: MIT

package e2e

// The scenarios of the matrix (matrix_test.go): each is written once and
// runs in every cell where it means something. The cells of a scenario
// share its builders and build derivations of their own.

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// salt returns a derivation attribute that makes it differ from every
// earlier one (unique).
func salt() string { return `u = "` + unique() + `";` }

// The thinnest real path: nix-build → offload → sshd → the builder's own
// store → the output valid in the client's store, with the right contents;
// the build's lines, stdout and stderr, reach the user and Nix's build
// log (they went to file descriptor 4), where `nix log` finds them.
func TestTrivialBuild(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, modes), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		var before []string
		if m.current() {
			before = sidMounts(t)
		}
		r := m.build(t, c, drv("trivial", "x86_64-linux", `echo hello from the builder > $out; echo a log line; echo to stderr >&2`, salt()),
			m.machines(b1, "x86_64-linux"))
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
		}
		wantAll(t, "nix-build's stderr", r.Stderr, "on '"+m.uri(b1)+"'", "a log line", "to stderr")
		if !b1.has(t, r.Out) {
			t.Errorf("%s is not in the builder's store: it was not built there", r.Out)
		}
		if got := c.run(defaultTimeout, "cat", r.Out).Out; got != "hello from the builder" {
			t.Errorf("output contents = %q", got)
		}
		if l := c.run(defaultTimeout, "nix-store", "--read-log", r.Out); !strings.Contains(l.Out, "a log line") {
			t.Errorf("nix-store --read-log: %q (code %d), want the build's lines\n%s", l.Out, l.Code, l.Stderr)
		}
		c.mustVerify()
		if !m.current() {
			return
		}
		// The client's mounts lived in its own namespace: none is left
		// in the machine's mount table, whatever other tests are doing.
		// (A machine may have mounts of the root of its own, as the
		// pristine root of scripts/fresh-check.sh binds it read-only.)
		if after := sidMounts(t); !slices.Equal(after, before) {
			t.Errorf("a mount of the unstable root leaked onto the machine: before the build\n%s\nafter\n%s",
				strings.Join(before, "\n"), strings.Join(after, "\n"))
		}
	})
}

// sidMounts returns the lines of this machine's mount table for the
// unstable root and what is under it.
func sidMounts(t *testing.T) []string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], sidRoot) {
			out = append(out, line)
		}
	}
	return out
}

// failExit is nix-build's exit code for a build that failed on the
// builder. The hook exits 100 for a failed build, as Nix 2.8 wants, and
// nix-build 2.8 passes it on. Through a 2.8 daemon nix-build exits 1 for
// any failed build, local ones too (the daemon's error carries no status);
// the hook's 100 shows in the message. Nix ≥ 2.29 no longer passes a
// hook's exit code through (99d0dd3): every non-zero hook exit is a plain
// failure, exit 1, with or without the daemon.
func failExit(m cell) int {
	if m.Nix == "2.8" && !m.Daemon {
		return 100
	}
	return 1
}

// A failing build: its stderr reaches the user with offload's message
// naming the builder's exit code, and nothing looks like a crashed hook.
func TestFailingBuild(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, byExit(cells(nixes, protos, modes), failExit), func(t *testing.T, m cell) {
		failingScenario(t, m, b1)
	})
}

func failingScenario(t *testing.T, m cell, b1 *builder) {
	t.Helper()
	c := m.client(t, b1)
	r := m.build(t, c, drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, salt()), m.machines(b1, "x86_64-linux"))
	if want := failExit(m); r.Code != want {
		t.Errorf("nix-build exit %d, want %d\n%s", r.Code, want, r.Stderr)
	}
	wantAll(t, "nix-build's stderr", r.Stderr, "about to fail", "offload: build of", "failed with exit code 3")
	if m.Nix == "2.8" && m.Daemon {
		wantAll(t, "nix-build's stderr", r.Stderr, "failed with exit code 100")
	}
	noHookCrash(t, r.Stderr)
}

// declineExit is nix-build's exit code when the hook declines and local
// builds are off: Nix 2.8 stops with "unable to start any build", exit 1;
// Nix 2.34 reports each derivation as a build failure ("local builds are
// disabled"), exit 100, except through a daemon, whose error carries no
// status: exit 1.
func declineExit(m cell) int {
	if m.current() && !m.Daemon {
		return 100
	}
	return 1
}

// A derivation nobody can build gets a decline with per-builder reasons,
// and offload's reason reaches the user before Nix's error.
func TestDecline(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, byExit(cells(nixes, protos, modes), declineExit), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		r := m.build(t, c, drv("riscv", "riscv64-linux", `echo > $out`, `requiredSystemFeatures = ["kvm"]; `+salt()),
			m.machines(b1, "x86_64-linux,aarch64-linux"))
		if want := declineExit(m); r.Code != want {
			t.Errorf("nix-build exit %d, want %d\n%s", r.Code, want, r.Stderr)
		}
		reason := strings.Index(r.Stderr, "offload: not building riscv remotely")
		nixErr := strings.Index(r.Stderr, "error:")
		if reason < 0 || !strings.Contains(r.Stderr, "b1") || !strings.Contains(r.Stderr, "riscv64-linux") {
			t.Errorf("the decline does not say why b1 cannot build it:\n%s", r.Stderr)
		} else if nixErr >= 0 && nixErr < reason {
			t.Errorf("offload's reason comes after Nix's error:\n%s", r.Stderr)
		}
		noHookCrash(t, r.Stderr)
	})
}

// A chain of four derivations plus a local source file: the inputs are
// uploaded, every step builds remotely and is registered before the next
// step's request, and a second run of a new last step uploads nothing the
// builder already has.
func TestChainUploadsInputs(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, modes), func(t *testing.T, m cell) {
		chainScenario(t, m, b1)
	})
}

func chainScenario(t *testing.T, m cell, b1 *builder) {
	t.Helper()
	c := m.client(t, b1)
	u := unique()
	c.file("src.txt", "local source "+u+"\n")
	builders := m.machines(b1, "x86_64-linux")
	r := m.build(t, c, chainExpr(u, "s4"), builders)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if got, want := c.run(defaultTimeout, "cat", r.Out).Out, "local source "+u+"\ns2\ns3\ns4"; got != want {
		t.Errorf("chain output = %q, want %q", got, want)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("last step not built on b1")
	}
	if !strings.Contains(r.Stderr, "copying 1 paths to '"+m.uri(b1)+"'") {
		t.Errorf("the source file was not uploaded once:\n%s", r.Stderr)
	}

	// Same chain, new last step: s1…s3 are valid locally and on the
	// builder, so nothing is uploaded but s3 (which the builder has).
	r = m.build(t, c, chainExpr(u, "s4-again"), builders)
	if r.Code != 0 {
		t.Fatalf("second nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stderr, "copying") && strings.Contains(r.Stderr, "paths to") {
		t.Errorf("second run uploaded paths the builder already had:\n%s", r.Stderr)
	}
	c.mustVerify()
}

// A 50 MiB output arrives byte-identical.
func TestLargeOutput(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		r := m.build(t, c, drv("big", "x86_64-linux", `/bin/mkdir $out; /usr/bin/head -c 52428800 /dev/urandom > $out/blob; /bin/chmod +x $out/blob; /bin/ln -s blob $out/link`, salt()),
			m.machines(b1, "x86_64-linux"))
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
		}
		local := c.nixStore("-q", "--hash", r.Out).Out
		remote, err := b1.exec(t, "nix-store", "-q", "--hash", r.Out)
		if err != nil || strings.TrimSpace(remote) != local {
			t.Errorf("hash on the client %q, on the builder %q (%v)", local, remote, err)
		}
		c.mustVerify()
	})
}

// A derivation for aarch64-linux goes to the builder that lists it (an x86
// builder emulating it), not to the one that does not. A derivation that
// requires kvm goes only to a builder with kvm; a builder with a mandatory
// feature is used only when the derivation requires it.
func TestRouting(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	matrix(t, cells([]string{"2.8"}, protos, directOnly), func(t *testing.T, m cell) {
		c := m.client(t, b1, b2)
		r := m.build(t, c, drv("arm", "aarch64-linux", `echo arm > $out`, salt()),
			m.machines(b1, "x86_64-linux")+" ; "+m.machines(b2, "x86_64-linux,aarch64-linux"))
		if r.Code != 0 || !b2.has(t, r.Out) || b1.has(t, r.Out) {
			t.Errorf("aarch64: exit %d, on b2 %v, want b2 only\n%s", r.Code, r.Code == 0 && b2.has(t, r.Out), r.Stderr)
		}
		// b2 is faster, but its mandatory feature is not requested by
		// the plain build.
		machines := m.machines(b1, "x86_64-linux - 2 1 kvm") + "\n" + m.machines(b2, "x86_64-linux - 2 4 big-parallel,benchmark benchmark")
		for _, tc := range []struct {
			name, features string
			on, not        *builder
		}{
			{"kvm", `requiredSystemFeatures = ["kvm"];`, b1, b2},
			{"plain", ``, b1, b2},
			{"bench", `requiredSystemFeatures = ["benchmark"];`, b2, b1},
		} {
			r := m.build(t, c, drv(tc.name, "x86_64-linux", `echo `+tc.name+` > $out`, tc.features+" "+salt()), machines)
			if r.Code != 0 || !tc.on.has(t, r.Out) || tc.not.has(t, r.Out) {
				t.Errorf("%s: exit %d, want it built on %s only\n%s", tc.name, r.Code, tc.on.Name, r.Stderr)
			}
		}
	})
}

// The machines file's base64 host key field is enough with empty
// known_hosts files (the field reaches the hook untouched, with or without
// the daemon); without it the unknown key is refused with the file to fix
// and the fingerprint; a pinned key of another host is refused cleanly.
func TestHostKeys(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	fp, err := exec.Command("ssh-keygen", "-lf", filepath.Join(b1.Dir, "keys/host.pub")).Output()
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := strings.Fields(string(fp))[1]
	other, err := os.ReadFile(filepath.Join(b1.Dir, "keys/client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	otherB64 := base64.StdEncoding.EncodeToString(other)

	matrix(t, cells(nixes, []string{"ssh"}, modes), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		kh := pinnedOnlyConfig(t, c, b1, b1.Port)

		r := m.build(t, c, drv("pinned", "x86_64-linux", `echo pinned > $out`, salt()), m.machines(b1, "x86_64-linux - 1 1 - - "+b1.HostKeyB64))
		if r.Code != 0 {
			t.Fatalf("pinned: nix-build exit %d with the host key in the machines file\n%s", r.Code, r.Stderr)
		}
		if !b1.has(t, r.Out) {
			t.Errorf("pinned: %s not built on b1", r.Out)
		}

		r = m.build(t, c, drv("unknown", "x86_64-linux", `echo unknown > $out`, salt()), m.machines(b1, "x86_64-linux"))
		if r.Code == 0 {
			t.Fatalf("unknown: nix-build succeeded with an unknown host key:\n%s", r.Stderr)
		}
		wantAll(t, "unknown: the refusal", r.Stderr, "unknown", kh, fingerprint)
		noHookCrash(t, r.Stderr)

		// The unhealthy mark of the previous build must not hide the
		// host key error: a fresh state directory.
		c.Env = append(c.Env, "OFFLOAD_STATE_DIR="+t.TempDir())
		r = m.build(t, c, drv("wrong", "x86_64-linux", `echo wrong > $out`, salt()), m.machines(b1, "x86_64-linux - 1 1 - - "+otherB64))
		if r.Code == 0 {
			t.Fatalf("wrong: nix-build succeeded with a wrong pinned host key:\n%s", r.Stderr)
		}
		wantAll(t, "wrong: the refusal", r.Stderr, "pins", fingerprint)
		noHookCrash(t, r.Stderr)
	})
}

// The situation Nix creates for every hook build: nix-build, or under the
// daemon its worker, holds an flock on the output's .lock file from
// before the try request until after the hook exits. Nix ≥ 2.29 ignores
// NIX_HELD_LOCKS (78eed85), so a hook that imported the output through a
// local nix-store would wait forever there. The test watches /proc/locks
// while the build runs: the holder held the lock from before the output
// appeared in the store until the hook was gone, and the output ended up
// valid, registered by the hook without the lock.
func TestOutputsRegisteredWhileNixHoldsLock(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, tagged(cells(nixes, []string{"ssh"}, modes), func(m cell) string { return "held-by-" + lockOwner(m)[0] }), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		c.Hook = hookCopy(t)
		expr := drv("locked", "x86_64-linux", `/bin/sleep 1; /usr/bin/head -c 20000000 /dev/zero > $out`, salt())
		out := strings.Trim(c.run(defaultTimeout, "nix-instantiate", "--eval", "-E", "(import "+c.file("l.nix", expr)+").outPath").Out, `"`)
		if !strings.HasPrefix(out, "/nix/store/") {
			t.Fatalf("outPath = %q", out)
		}
		real := filepath.Join(c.Dir, out)

		type sample struct {
			hook, exists bool
			holder       int
			comm         string // the holder's, read at once: it is gone after the build
		}
		stop := make(chan struct{})
		samples := make(chan []sample, 1)
		go func() {
			var ss []sample
			for {
				select {
				case <-stop:
					samples <- ss
					return
				default:
				}
				// The lock first, the hook last: the lock is taken
				// long before the output appears and let go as soon
				// as the hook is gone, so a sample taken as the hook
				// exits does not count a lock let go after it.
				var s sample
				s.holder = lockHolder(real + ".lock")
				if s.holder > 0 {
					s.comm = commOf(s.holder)
				}
				_, err := os.Lstat(real)
				s.exists = err == nil
				s.hook = len(procsOf(c.Hook)) > 0
				ss = append(ss, s)
				time.Sleep(2 * time.Millisecond)
			}
		}()
		r := m.build(t, c, expr, m.machines(b1, "x86_64-linux"))
		close(stop)
		ss := <-samples
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
		}
		var withOutput, held int
		holders := map[int]string{}
		for _, x := range ss {
			if x.hook && x.exists {
				withOutput++
				if x.holder > 0 {
					held++
					holders[x.holder] = x.comm
				}
			}
		}
		if withOutput == 0 {
			t.Fatalf("never saw the hook running with the output in the store (%d samples)", len(ss))
		}
		if held != withOutput {
			t.Errorf("the output's lock was held in %d of %d samples taken while the hook wrote the output", held, withOutput)
		}
		for pid, comm := range holders {
			if !slices.Contains(lockOwner(m), comm) {
				t.Errorf("the lock was held by pid %d (%q), want %q", pid, comm, lockOwner(m))
			}
		}
		if r := c.nixStore("--check-validity", out); r.Code != 0 {
			t.Errorf("%s is not valid after the build:\n%s", out, r.Stderr)
		}
		t.Logf("%d samples with the hook running and the output present; the lock was held by %v", withOutput, holders)
		c.mustVerify()
	})
}

// lockOwner is the command names of the process that holds an output's
// lock while the hook runs: nix-build (Nix 2.34's nix-build is the nix
// binary), or the daemon's worker.
func lockOwner(m cell) []string {
	if m.Daemon {
		return []string{"nix-daemon"}
	}
	return []string{"nix-build", "nix"}
}

// Nix never applies timeout or max-silent-time to a hook: offload forwards
// them, the builder stops the build within a few seconds of the limit, and
// nix-build reports a timeout (exit 101 on Nix 2.8).
func TestTimeoutsForwarded(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	var cs []cell
	for _, m := range cells([]string{"2.8"}, protos, directOnly) {
		for _, opt := range []string{"timeout", "max-silent-time"} {
			m.Tag = opt
			cs = append(cs, m)
		}
	}
	matrix(t, cs, func(t *testing.T, m cell) {
		opt := m.Tag
		c := m.client(t, b1)
		dir := t.TempDir()
		expr := drv("sleeps", "x86_64-linux", `echo $$ > `+dir+`/pid; exec /bin/sleep 30`, salt())
		begin := time.Now()
		s := c.startBuild(expr, m.machines(b1, "x86_64-linux"), "--option", opt, "3")
		pid := readPid(t, filepath.Join(dir, "pid"), time.Minute)
		code := s.wait(t, 40*time.Second)
		took := time.Since(begin)
		if code != 101 {
			t.Errorf("nix-build exit %d, want 101 (timed out)\n%s", code, s.stderr.String())
		}
		// ssh-ng:// connects through nix-daemon --stdio, a little
		// slower to stop.
		limit := 15 * time.Second
		if m.Proto == "ssh-ng" {
			limit = 20 * time.Second
		}
		if took > limit {
			t.Errorf("nix-build took %v with %s 3", took, opt)
		}
		if running(pid) {
			t.Errorf("the remote build (pid %d) still runs after nix-build ended", pid)
		}
		t.Logf("%s 3: nix-build ended after %v", opt, took.Round(10*time.Millisecond))
	})
}

// A hook killed while the remote build runs: SIGKILL at once, as Nix ≤
// 2.34 does on Ctrl-C or another build's failure, or SIGTERM first, as Nix
// ≥ 2.35 does, with SIGKILL 500 ms later (the hook must be gone by then).
// The SSH channel closes with the process, and the builder's nix-store
// --serve or nix-daemon sees its stdin hang up and stops the build; the
// local store holds nothing half-imported, the slot is reclaimed by the
// next decision (max jobs 1, so a leaked slot would stop the rerun), and
// the rerun succeeds.
func TestHookKilledMidBuild(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	var cs []cell
	for _, m := range cells([]string{"2.8"}, protos, directOnly) {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			m.Tag = unix.SignalName(sig)
			cs = append(cs, m)
		}
	}
	matrix(t, cs, func(t *testing.T, m cell) {
		hookKilled(t, m, b1, unix.SignalNum(m.Tag))
	})
}

func hookKilled(t *testing.T, m cell, b1 *builder, sig syscall.Signal) {
	c := m.client(t, b1)
	c.Hook = hookCopy(t)
	dir := t.TempDir()
	builders := m.machines(b1, "x86_64-linux - 1")
	expr := drv("killed", "x86_64-linux", `if [ -e `+dir+`/again ]; then echo done > $out; else echo $$ > `+dir+`/pid; exec /bin/sleep 60; fi`, salt())
	s := c.startBuild(expr, builders)
	sleeper := readPid(t, filepath.Join(dir, "pid"), time.Minute)
	hooks := procsOf(c.Hook)
	if len(hooks) != 1 {
		t.Fatalf("found %d hook processes, want 1: %v", len(hooks), hooks)
	}
	if err := syscall.Kill(hooks[0], sig); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if sig != syscall.SIGKILL {
		if !waitFor(time.Second, func() bool { return !running(hooks[0]) }) {
			t.Errorf("the hook still runs 1 s after %v (Nix ≥ 2.35 SIGKILLs it after 500 ms)", sig)
			syscall.Kill(hooks[0], syscall.SIGKILL)
		} else {
			t.Logf("the hook exited %v after %v", time.Since(killed).Round(time.Millisecond), sig)
		}
	}
	if code := s.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("nix-build succeeded after its hook was killed\n%s", s.stderr.String())
	}
	if !waitFor(10*time.Second, func() bool { return !running(sleeper) }) {
		t.Errorf("the remote build (pid %d) still runs 10 s after its hook got %v", sleeper, sig)
	} else {
		t.Logf("remote build ended %v after the hook got %v", time.Since(killed).Round(10*time.Millisecond), sig)
	}

	// The dead hook's slot is still marked: only a decision reclaims it.
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI == m.uri(b1) && b.Busy > 1 {
			t.Errorf("b1 has %d busy slots after one killed hook", b.Busy)
		}
	}
	c.mustVerify()
	out := c.run(defaultTimeout, "nix-instantiate", "--eval", "-E", "(import "+c.file("k.nix", expr)+").outPath").Out
	out = strings.Trim(out, `"`)
	if r := c.nixStore("--check-validity", out); r.Code == 0 {
		t.Errorf("%s is valid in the local store after the hook was killed", out)
	}

	writeFile(t, filepath.Join(dir, "again"), "")
	r := c.build(expr, builders)
	if r.Code != 0 {
		t.Fatalf("rerun: nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if r.Out != out {
		t.Errorf("rerun built %s, want %s", r.Out, out)
	}
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI == m.uri(b1) && b.Busy != 0 {
			t.Errorf("b1 has %d busy slots after every build ended: %+v", b.Busy, b.Running)
		}
	}
	c.mustVerify()
}

// A builder on current Nix: its nix-store --serve is Nix 2.34's, which
// no longer serves ExportPaths (2.32): inputs go up with AddToStoreNar,
// outputs come down with DumpStorePath, with either client. A failure
// comes back in Nix 2.34's BuildResult, which the serve protocol 2.7
// still encodes as in 2.8: a plain build failure with the builder's exit
// code in the message.
func TestBuilderOnCurrentNix(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{Sid: true})
	major, minor := nixVersion(t, func(args ...string) (string, error) { return b1.exec(t, args...) })
	if major != 2 || minor < 32 {
		t.Fatalf("the builder runs Nix %d.%d, want ≥ 2.32", major, minor)
	}
	matrix(t, byExit(cells(nixes, []string{"ssh"}, directOnly), failExit), func(t *testing.T, m cell) {
		chainScenario(t, m, b1)
		failingScenario(t, m, b1)
	})
}

const defaultTimeout = 30_000_000_000 // 30 s

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
