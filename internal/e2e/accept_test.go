// SPDX-License-Identifier: MIT

package e2e

// The rest of the hook's acceptance tests: load limits, host
// keys, a builder that is down, a hook killed mid-build, forwarded
// timeouts, builds through nix-daemon, and the output import while Nix
// holds the output's lock. Each test has builders and clients of its own,
// so they run in parallel.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"golang.org/x/sys/unix"
)

// Twenty independent derivations on a builder with max jobs 2: Nix starts
// a hook for each at once (max-jobs 0 locally), and never more than two
// run on the builder at the same time. Each build appends its start and
// end times to a file the test reads (no sandbox: builds can write it),
// and holds until another build runs, so that a hook that let a third
// one in would be seen.
func TestFanOutRespectsMaxJobs(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	logFile := filepath.Join(t.TempDir(), "times")
	expr := fmt.Sprintf(`
let mk = i: derivation {
  name = "fan-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; u = %q;
  args = [ "-c" ''
    L=%s
    echo start $(/bin/date +%%s.%%N) >> $L
    # Hold until a second build runs (or 2 s pass), then 1 s more: the
    # builds overlap whenever the hook lets them.
    i=0
    while [ $(/bin/grep -c start $L) -le $(( $(/bin/grep -c end $L) + 1 )) ] && [ $i -lt 20 ]; do
      /bin/sleep 0.1; i=$((i + 1))
    done
    /bin/sleep 1
    echo end $(/bin/date +%%s.%%N) >> $L
    echo ${toString i} > $out
  '' ];
};
in builtins.genList mk 20`, unique(), logFile)
	start := time.Now()
	r := c.build(expr, "ssh://b1 x86_64-linux - 2")
	wall := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if outs := strings.Fields(r.Out); len(outs) != 20 {
		t.Errorf("nix-build printed %d outputs, want 20", len(outs))
	}
	starts, maxOverlap, err := overlap(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if starts != 20 {
		t.Errorf("%d builds started on the builder, want 20", starts)
	}
	if maxOverlap > 2 {
		t.Errorf("up to %d builds ran at once on a builder with max jobs 2", maxOverlap)
	}
	if maxOverlap < 2 {
		t.Errorf("never more than %d build at once: the builder's two slots were not used", maxOverlap)
	}
	t.Logf("20 derivations of about 1 s, max jobs 2: wall time %v, at most %d at once", wall.Round(10*time.Millisecond), maxOverlap)
}

// overlap reads "start T" and "end T" lines and returns how many builds
// started and the most that ran at once.
func overlap(path string) (starts, most int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	type ev struct {
		t     float64
		delta int
	}
	var evs []ev
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, ts, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseFloat(ts, 64)
		if !ok || err != nil || (kind != "start" && kind != "end") {
			return 0, 0, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		d := -1
		if kind == "start" {
			d = 1
			starts++
		}
		evs = append(evs, ev{v, d})
	}
	// At equal times an end comes first: a build that ends as another
	// starts does not overlap it.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].delta < evs[j].delta
	})
	n := 0
	for _, e := range evs {
		n += e.delta
		most = max(most, n)
	}
	return starts, most, sc.Err()
}

// hostOnlyConfig writes the client's ssh_config for b with known_hosts
// files that are empty, so that only the machines file can vouch for the
// builder's host key, and returns the empty known_hosts file.
func hostOnlyConfig(t *testing.T, c *client, b *builder) string {
	t.Helper()
	kh := c.file("empty_known_hosts", "")
	c.file("ssh_config", fmt.Sprintf(`Host %s
	HostName 127.0.0.1
	Port %d
	User root
	IdentityFile %s
	IdentitiesOnly yes
	UserKnownHostsFile %s
	GlobalKnownHostsFile %s
	BatchMode yes
`, b.Name, b.Port, b.Key, kh, kh))
	return kh
}

// The machines file's base64 host key field is enough with an empty
// known_hosts; without it the unknown key is refused with the file to fix
// and the fingerprint; a pinned key of another host is refused.
func TestHostKeys(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	kh := hostOnlyConfig(t, c, b1)
	fp, err := exec.Command("ssh-keygen", "-lf", filepath.Join(b1.Dir, "keys/host.pub")).Output()
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := strings.Fields(string(fp))[1]
	other, err := os.ReadFile(filepath.Join(b1.Dir, "keys/client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	otherB64 := b64(other)

	t.Run("pinned", func(t *testing.T) {
		c.t = t
		r := c.build(drv("pinned", "x86_64-linux", `echo pinned > $out`, `u = "`+unique()+`";`),
			"ssh://b1 x86_64-linux - 1 1 - - "+b1.HostKeyB64)
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d with the host key in the machines file\n%s", r.Code, r.Stderr)
		}
		if !b1.has(t, r.Out) {
			t.Errorf("%s not built on b1", r.Out)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		c.t = t
		r := c.build(drv("unknown", "x86_64-linux", `echo unknown > $out`, `u = "`+unique()+`";`),
			"ssh://b1 x86_64-linux")
		if r.Code == 0 {
			t.Fatalf("nix-build succeeded with an unknown host key:\n%s", r.Stderr)
		}
		for _, want := range []string{"unknown", kh, fingerprint} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("the refusal does not mention %q:\n%s", want, r.Stderr)
			}
		}
		noHookCrash(t, r.Stderr)
	})
	t.Run("wrong", func(t *testing.T) {
		c.t = t
		// The unhealthy mark of the previous case must not hide the
		// host key error: use a fresh state directory.
		c.Env = []string{"OFFLOAD_STATE_DIR=" + t.TempDir()}
		defer func() { c.Env = nil }()
		r := c.build(drv("wrong", "x86_64-linux", `echo wrong > $out`, `u = "`+unique()+`";`),
			"ssh://b1 x86_64-linux - 1 1 - - "+otherB64)
		if r.Code == 0 {
			t.Fatalf("nix-build succeeded with a wrong pinned host key:\n%s", r.Stderr)
		}
		for _, want := range []string{"pins", fingerprint} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("the refusal does not mention %q:\n%s", want, r.Stderr)
			}
		}
		noHookCrash(t, r.Stderr)
	})
	c.t = t
}

func b64(b []byte) string {
	cmd := exec.Command("base64", "-w0")
	cmd.Stdin = strings.NewReader(string(b))
	out, err := cmd.Output()
	if err != nil {
		panic(err)
	}
	return string(out)
}

// closedPort returns a port on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// slotSnapshot reads the client's slot file, as `offload status` does.
func (c *client) slotSnapshot(t *testing.T, builders string) []slots.Builder {
	t.Helper()
	ms, _, err := spec.ParseBuilders(builders, spec.Options{LocalSystem: "x86_64-linux", Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(c.Dir, "nix/var/nix/offload/slots"), ms, slots.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("opening the client's slot file: %v", err)
	}
	defer f.Close()
	return f.Snapshot(nil)
}

// Two builders, the preferred one down: every build goes to the other,
// and the down one is marked unhealthy in the shared slot file, so the
// hooks of later derivations do not try it again.
func TestOneBuilderDown(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b2 := startBuilder(t, "b2", builderOpts{})
	c := newClient(t, b2)
	cfg, err := os.ReadFile(filepath.Join(c.Dir, "ssh_config"))
	if err != nil {
		t.Fatal(err)
	}
	c.file("ssh_config", string(cfg)+fmt.Sprintf("Host bdown\n\tHostName 127.0.0.1\n\tPort %d\n\tUser root\n\tIdentityFile %s\n\tBatchMode yes\n", closedPort(t), b2.Key))
	builders := "ssh://bdown x86_64-linux - 4 10\nssh://b2 x86_64-linux - 4 1"
	// A backoff longer than the build, however slow the machine: within
	// it, no hook may try bdown again.
	c.Env = []string{"OFFLOAD_UNHEALTHY_BACKOFF=5m"}
	expr := fmt.Sprintf(`
let mk = i: derivation { name = "d-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; u = %q;
  args = [ "-c" "echo ${toString i} > $out" ]; };
in builtins.genList mk 4`, unique())
	r := c.build(expr, builders)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	outs := strings.Fields(r.Out)
	if len(outs) != 4 {
		t.Fatalf("nix-build printed %d outputs, want 4", len(outs))
	}
	for _, o := range outs {
		if !b2.has(t, o) {
			t.Errorf("%s was not built on b2", o)
		}
	}
	if n := strings.Count(r.Stderr, "cannot build on 'ssh://bdown'"); n != 1 {
		t.Errorf("the hooks tried the down builder %d times in 4 derivations, want 1:\n%s", n, r.Stderr)
	}
	for _, b := range c.slotSnapshot(t, builders) {
		switch b.URI {
		case "ssh://bdown":
			if b.ConsecutiveFailures < 1 || !b.UnhealthyUntil.After(time.Now()) || b.LastError != slots.ErrConnect {
				t.Errorf("bdown in the slot file: %d failures, unhealthy until %v, last error %v; want unhealthy after a connect failure",
					b.ConsecutiveFailures, b.UnhealthyUntil, b.LastError)
			}
		case "ssh://b2":
			if b.Succeeded != 4 || b.Busy != 0 || !b.UnhealthyUntil.IsZero() {
				t.Errorf("b2 in the slot file: %d succeeded, %d busy, unhealthy until %v; want 4, 0, healthy", b.Succeeded, b.Busy, b.UnhealthyUntil)
			}
		}
	}
}

// A hook SIGKILLed while the remote build runs (what Nix ≤ 2.34 does on
// Ctrl-C or another build's failure): the remote build ends, the local
// store holds nothing half-imported, the slot is reclaimed by the next
// decision (max jobs 1, so a leaked slot would stop the rerun), and the
// rerun succeeds.
func TestHookKilledMidBuild(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	// SIGKILL at once: Nix ≤ 2.34. SIGTERM first: Nix ≥ 2.35, which
	// sends SIGKILL 500 ms later; the hook must be gone by then.
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(unix.SignalName(sig), func(t *testing.T) {
			t.Parallel()
			hookKilled(t, sig)
		})
	}
}

func hookKilled(t *testing.T, sig syscall.Signal) {
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	c.Hook = hookCopy(t)
	dir := t.TempDir()
	builders := "ssh://b1 x86_64-linux - 1"
	expr := drv("killed", "x86_64-linux", fmt.Sprintf(`if [ -e %[1]s/again ]; then echo done > $out; else echo $$ > %[1]s/pid; exec /bin/sleep 60; fi`, dir), `u = "`+unique()+`";`)
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
		if b.URI == "ssh://b1" && b.Busy > 1 {
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
		if b.URI == "ssh://b1" && b.Busy != 0 {
			t.Errorf("b1 has %d busy slots after every build ended: %+v", b.Busy, b.Running)
		}
	}
	c.mustVerify()
}

// Nix never applies timeout or max-silent-time to a hook: offload forwards
// them, the builder stops the build within a few seconds of the limit, and
// nix-build reports a timeout (exit 101 on Nix 2.8).
func TestTimeoutsForwardedNix28(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	for _, opt := range []string{"timeout", "max-silent-time"} {
		t.Run(opt, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, b1)
			dir := t.TempDir()
			expr := drv("sleeps", "x86_64-linux", fmt.Sprintf(`echo $$ > %s/pid; exec /bin/sleep 30`, dir), `u = "`+unique()+`";`)
			begin := time.Now()
			s := c.startBuild(expr, "ssh://b1 x86_64-linux", "--option", opt, "3")
			pid := readPid(t, filepath.Join(dir, "pid"), time.Minute)
			code := s.wait(t, 40*time.Second)
			took := time.Since(begin)
			if code != 101 {
				t.Errorf("nix-build exit %d, want 101 (timed out)\n%s", code, s.stderr.String())
			}
			if took > 15*time.Second {
				t.Errorf("nix-build took %v with %s 3", took, opt)
			}
			if running(pid) {
				t.Errorf("the remote build (pid %d) still runs after nix-build ended", pid)
			}
			t.Logf("%s 3: nix-build ended after %v", opt, took.Round(10*time.Millisecond))
		})
	}
}

// The trivial, failing and chain builds through a local nix-daemon that
// runs the hook, as on NixOS: NIX_SSHOPTS reaches the hook through the
// daemon's environment, and offload's messages reach the user's terminal.
func TestThroughDaemonNix28(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	writeFile(t, filepath.Join(c.Dir, "etc/nix.conf"), fmt.Sprintf(`build-users-group =
sandbox = false
substituters =
build-hook = %s
builders = ssh://b1 x86_64-linux
max-jobs = 0
trusted-users = root
`, offloadBin))
	script := c.file("with-daemon.sh", `#!/bin/sh
# Starts nix-daemon in the client's namespace, runs "$@" against it, stops it.
rm -f /nix/var/nix/daemon-socket/socket
nix-daemon >"$DAEMON_LOG" 2>&1 &
pid=$!
i=0
until [ -S /nix/var/nix/daemon-socket/socket ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then echo "nix-daemon did not start" >&2; cat "$DAEMON_LOG" >&2; kill $pid; exit 99; fi
	sleep 0.1
done
NIX_REMOTE=daemon "$@"
rc=$?
kill $pid
wait $pid
exit $rc
`)
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	daemonLog := filepath.Join(c.Dir, "daemon.log")
	c.Env = []string{"DAEMON_LOG=" + daemonLog}
	viaDaemon := func(expr string) result {
		t.Helper()
		f := c.file(fmt.Sprintf("expr-%d.nix", time.Now().UnixNano()), expr)
		return c.run(2*time.Minute, script, "nix-build", "--no-out-link", f)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(daemonLog)
			t.Logf("nix-daemon's log:\n%s", b)
		}
	}()

	r := viaDaemon(drv("trivial", "x86_64-linux", `echo via the daemon > $out; echo a daemon log line`, `u = "`+unique()+`";`))
	if r.Code != 0 {
		t.Fatalf("trivial: nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "on 'ssh://b1'") || !strings.Contains(r.Stderr, "a daemon log line") {
		t.Errorf("trivial: the user did not see where it was built or its log:\n%s", r.Stderr)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("trivial: %s not built on b1", r.Out)
	}

	// Through a 2.8 daemon nix-build exits 1 for any failed build, local
	// ones too (the daemon's error carries no status); the hook's 100
	// shows in the message.
	r = viaDaemon(drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, `u = "`+unique()+`";`))
	if r.Code == 0 {
		t.Errorf("failing: nix-build succeeded\n%s", r.Stderr)
	}
	for _, want := range []string{"about to fail", "offload: build of", "failed with exit code 3", "failed with exit code 100"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("failing: the user did not see %q:\n%s", want, r.Stderr)
		}
	}

	u := unique()
	c.file("src.txt", "daemon source "+u+"\n")
	r = viaDaemon(fmt.Sprintf(`
let
  mk = name: script: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; u = %q; inherit deps; };
  s1 = mk "s1" "/bin/cat ${./src.txt} > $out" [];
  s2 = mk "s2" "/bin/cat $deps > $out; echo s2 >> $out" [ s1 ];
  s3 = mk "s3" "/bin/cat $deps > $out; echo s3 >> $out" [ s2 ];
in mk "s4" "/bin/cat $deps > $out; echo s4 >> $out" [ s3 ]`, u))
	if r.Code != 0 {
		t.Fatalf("chain: nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if got, want := c.run(defaultTimeout, "cat", r.Out).Out, "daemon source "+u+"\ns2\ns3\ns4"; got != want {
		t.Errorf("chain output = %q, want %q", got, want)
	}

	// A decline's reason reaches the user too.
	r = viaDaemon(drv("riscv", "riscv64-linux", `echo > $out`, `u = "`+unique()+`";`))
	if r.Code == 0 || !strings.Contains(r.Stderr, "offload: ") || !strings.Contains(r.Stderr, "riscv64-linux") {
		t.Errorf("decline: exit %d; the user did not see offload's reason:\n%s", r.Code, r.Stderr)
	}
	c.mustVerify()
}

// The situation Nix creates for every hook build: nix-build holds an flock
// on the output's .lock file from before the try request until after the
// hook exits. The test watches /proc/locks while the build runs and checks
// that nix-build held that lock from before the output appeared in the
// store until the hook process was gone, and that the output ended up
// valid: the hook registered it without the lock.
func TestOutputsRegisteredWhileNixHoldsLockNix28(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	c.Hook = hookCopy(t)
	expr := drv("locked", "x86_64-linux", `/bin/sleep 1; /usr/bin/head -c 20000000 /dev/zero > $out`, `u = "`+unique()+`";`)
	out := strings.Trim(c.run(defaultTimeout, "nix-instantiate", "--eval", "-E", "(import "+c.file("l.nix", expr)+").outPath").Out, `"`)
	if !strings.HasPrefix(out, "/nix/store/") {
		t.Fatalf("outPath = %q", out)
	}
	real := filepath.Join(c.Dir, out)

	type sample struct {
		hook, exists, locked bool
		holder               int
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
			s := sample{hook: len(procsOf(c.Hook)) > 0}
			_, err := os.Lstat(real)
			s.exists = err == nil
			s.holder = lockHolder(real + ".lock")
			s.locked = s.holder > 0
			ss = append(ss, s)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	s := c.startBuild(expr, "ssh://b1 x86_64-linux")
	code := s.wait(t, time.Minute)
	close(stop)
	ss := <-samples
	if code != 0 {
		t.Fatalf("nix-build exit %d\n%s", code, s.stderr.String())
	}
	var withOutput, heldWithOutput int
	holders := map[int]bool{}
	for _, x := range ss {
		if x.hook && x.exists {
			withOutput++
			if x.locked {
				heldWithOutput++
				holders[x.holder] = true
			}
		}
	}
	if withOutput == 0 {
		t.Fatalf("never saw the hook running with the output in the store (%d samples)", len(ss))
	}
	if heldWithOutput != withOutput {
		t.Errorf("the output's lock was held in %d of %d samples taken while the hook wrote the output", heldWithOutput, withOutput)
	}
	for pid := range holders {
		if comm := commOf(pid); pid != s.cmd.Process.Pid && comm != "nix-build" && comm != "nix" {
			t.Errorf("the lock was held by pid %d, not nix-build", pid)
		}
	}
	if r := c.nixStore("--check-validity", out); r.Code != 0 {
		t.Errorf("%s is not valid after the build:\n%s", out, r.Stderr)
	}
	t.Logf("%d samples with the hook running and the output present, lock held by nix-build in all", withOutput)
	c.mustVerify()
}

// Two builds that need the same big local input, started together: the
// second hook waits for the first one's upload (the builder's upload token
// in the slot file) and then sends nothing, instead of sending the same
// closure a second time at once.
func TestConcurrentUploadsOnce(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	const size = 64 << 20
	big := make([]byte, size)
	for i := range big {
		big[i] = byte(i * 7)
	}
	copy(big, unique())
	c.file("big.bin", string(big))
	expr := fmt.Sprintf(`
let mk = i: derivation { name = "uses-big-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; u = %q;
  args = [ "-c" "/usr/bin/wc -c < ${./big.bin} > $out" ]; };
in builtins.genList mk 2`, unique())
	r := c.build(expr, "ssh://b1 x86_64-linux - 4")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if n := strings.Count(r.Stderr, "copying 1 paths to 'ssh://b1'"); n != 1 {
		t.Errorf("the big input was uploaded %d times, want 1:\n%s", n, r.Stderr)
	}
	for _, b := range c.slotSnapshot(t, "ssh://b1 x86_64-linux - 4") {
		if b.URI == "ssh://b1" && (b.BytesSent < size || b.BytesSent > size+size/2) {
			t.Errorf("%d bytes sent to b1, want one copy of %d", b.BytesSent, size)
		}
	}
	t.Logf("second hook waited for the first one's upload: %v", strings.Contains(r.Stderr, "waiting for another build's upload"))
}
