// SPDX-License-Identifier: MIT

package e2e

// The end-to-end tests on current Nix: the client's nix-build is
// Debian unstable's Nix (2.34 when written), run chrooted into the root that
// scripts/unstable-root.sh builds once and caches, with a store of its own
// (scripts/test-client-sid.sh, reached through OFFLOAD_TEST_CLIENT=sid).
// Builders are the machine's Nix 2.8 unless a test says otherwise; a
// builder started with BUILDER_SID=1 runs the same current Nix.
//
// Each test is named after the difference between Nix 2.8 and current Nix
// it covers (docs/internals.md gives the versions where the hook protocol
// changed). When the root cannot be built (no debootstrap, no Debian
// archive) the tests are skipped with a loud message; with
// OFFLOAD_REQUIRE_SID=1 or CI set they fail instead, so CI never skips
// them.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	sidOnce sync.Once
	sidRoot string
	sidErr  error
)

// requireSid skips (or, in CI, fails) the test when the Debian unstable
// root cannot be built. The first caller builds it, which takes minutes
// once; later runs find it in its cache.
func requireSid(t *testing.T) {
	t.Helper()
	requireEnv(t)
	sidOnce.Do(func() {
		start := time.Now()
		var stderr bytes.Buffer
		cmd := exec.Command(filepath.Join(repoRoot, "scripts/unstable-root.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			sidErr = fmt.Errorf("%v: %w\n%s", cmd.Args, err, stderr.String())
			return
		}
		sidRoot = strings.TrimSpace(string(out))
		if d := time.Since(start); d > 5*time.Second {
			fmt.Fprintf(os.Stderr, "e2e: built the Debian unstable root %s in %v\n", sidRoot, d.Round(time.Second))
		}
	})
	if sidErr == nil {
		return
	}
	if os.Getenv("OFFLOAD_REQUIRE_SID") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("current Nix is required here (OFFLOAD_REQUIRE_SID=1 or CI), but the Debian unstable root could not be built: %v", sidErr)
	}
	t.Skipf("\n"+
		"**************************************************************\n"+
		"SKIPPED: NOT TESTED ON CURRENT NIX. The Debian unstable root\n"+
		"(scripts/unstable-root.sh) could not be built:\n%v\n"+
		"**************************************************************", sidErr)
}

// newSidClient is newClient whose commands run with current Nix.
func newSidClient(t *testing.T, bs ...*builder) *client {
	t.Helper()
	c := newClient(t, bs...)
	c.Env = append(c.Env, "OFFLOAD_TEST_CLIENT=sid")
	return c
}

// startSidBuilder is startBuilder for a builder whose sessions run current
// Nix (scripts/test-builder.sh with BUILDER_SID=1).
func startSidBuilder(t *testing.T, name string) *builder {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "builder-"+name)
	script := filepath.Join(repoRoot, "scripts/test-builder.sh")
	cmd := exec.Command(script, "start", dir, name)
	cmd.Env = append(os.Environ(), "BUILDER_SID=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting builder %s on current Nix: %v\n%s", name, err, stderrOf(err))
	}
	t.Cleanup(func() { exec.Command(script, "stop", dir).Run() })
	env := parseEnv(string(out))
	port, _ := strconv.Atoi(env["BUILDER_PORT"])
	return &builder{
		Name:       name,
		Dir:        dir,
		Port:       port,
		HostKeyB64: env["BUILDER_HOST_KEY_BASE64"],
		SSHConfig:  env["BUILDER_SSH_CONFIG"],
		Key:        env["BUILDER_KEY"],
	}
}

var nixVersionRE = regexp.MustCompile(`\(Nix\) (\d+)\.(\d+)`)

// nixVersion returns the major and minor version of the Nix that run runs.
func nixVersion(t *testing.T, run func(args ...string) (string, error)) (int, int) {
	t.Helper()
	out, err := run("nix-store", "--version")
	m := nixVersionRE.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("nix-store --version: %v\n%s", err, out)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor
}

// requireClientNix fails unless the client runs Nix ≥ 2.minor: the
// behaviour a test pins first appears there.
func requireClientNix(t *testing.T, c *client, minor int) {
	t.Helper()
	major, got := nixVersion(t, func(args ...string) (string, error) {
		r := c.run(defaultTimeout, args...)
		if r.Code != 0 {
			return r.Out + r.Stderr, fmt.Errorf("exit %d", r.Code)
		}
		return r.Out, nil
	})
	if major != 2 || got < minor {
		t.Fatalf("the client runs Nix %d.%d, want ≥ 2.%d: this test covers what changed there", major, got, minor)
	}
}

// pinnedOnlyConfig writes the client's ssh_config for b with empty
// known_hosts files, so that only the machines file's host key can vouch
// for b, and with port as b's Port line (0: none).
func pinnedOnlyConfig(t *testing.T, c *client, b *builder, port int) {
	t.Helper()
	kh := c.file("empty_known_hosts", "")
	portLine := ""
	if port != 0 {
		portLine = fmt.Sprintf("\tPort %d\n", port)
	}
	c.file("ssh_config", fmt.Sprintf("Host %s\n\tHostName 127.0.0.1\n%s\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tGlobalKnownHostsFile %s\n\tBatchMode yes\n",
		b.Name, portLine, b.Key, kh, kh))
}

// A trivial build with current Nix as the client: the hook's request,
// accept and output registration work with Nix 2.34's nix-build and
// nix-store, and the build log reaches the user.
func TestTrivialBuildNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 29)
	before := sidMounts(t)
	r := c.build(drv("trivial", "x86_64-linux", `echo hello from the builder > $out; echo a log line`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "on 'ssh://b1'") {
		t.Errorf("nix-build did not say it built on ssh://b1:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "a log line") {
		t.Errorf("the build log did not reach the user:\n%s", r.Stderr)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("%s is not in the builder's store: it was not built there", r.Out)
	}
	if got := c.run(defaultTimeout, "cat", r.Out); got.Out != "hello from the builder" {
		t.Errorf("output contents = %q", got.Out)
	}
	c.mustVerify()
	// The client's mounts lived in its own namespace: none is left in
	// the machine's mount table, whatever other tests are doing. (A
	// machine may have mounts of the root of its own, as the pristine
	// root of scripts/fresh-check.sh binds it read-only.)
	if after := sidMounts(t); !slices.Equal(after, before) {
		t.Errorf("a mount of the unstable root leaked onto the machine: before the build\n%s\nafter\n%s",
			strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
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

// Nix ≥ 2.29 no longer passes a hook's exit code through (99d0dd3): the
// hook exits 100 for a failed build, as Nix 2.8 wants, and Nix 2.34 turns
// every non-zero hook exit into a plain failure, so nix-build exits 1, not
// 100. The builder's last lines and offload's message still reach the
// user, and nothing looks like a crashed hook.
func TestFailingBuildExits1Nix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 29)
	r := c.build(drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 1 {
		t.Errorf("nix-build exit %d, want 1 (Nix ≥ 2.29 maps every hook failure to 1)\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "about to fail") {
		t.Errorf("the builder's last lines did not reach the user:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "offload: build of") {
		t.Errorf("no offload message naming the failure:\n%s", r.Stderr)
	}
	noHookCrash(t, r.Stderr)
}

// A chain of four derivations and a local source on current Nix: the
// hook reads inputs from Nix 2.34's store (its nix-store --serve) and
// registers each step's output before the next step's request.
func TestChainUploadsInputsNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	testChain(t, c, b1)
}

// testChain builds a chain of four steps on b1 and checks the result.
func testChain(t *testing.T, c *client, b1 *builder) {
	t.Helper()
	u := unique()
	c.file("src.txt", "local source "+u+"\n")
	r := c.build(fmt.Sprintf(`
let
  mk = name: script: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; u = %q; inherit deps; };
  s1 = mk "s1" "/bin/cat ${./src.txt} > $out" [];
  s2 = mk "s2" "/bin/cat $deps > $out; echo s2 >> $out" [ s1 ];
  s3 = mk "s3" "/bin/cat $deps > $out; echo s3 >> $out" [ s2 ];
in mk "s4" "/bin/cat $deps > $out; echo s4 >> $out" [ s3 ]`, u), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if got, want := c.run(defaultTimeout, "cat", r.Out).Out, "local source "+u+"\ns2\ns3\ns4"; got != want {
		t.Errorf("chain output = %q, want %q", got, want)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("last step not built on b1")
	}
	c.mustVerify()
}

// Nix ≥ 2.29 ignores NIX_HELD_LOCKS (78eed85), so a hook that imports an
// output through a local nix-store while nix-build holds the output's lock
// would wait forever there. The test watches /proc/locks: nix-build held
// the lock from before the output appeared until the hook was gone, and
// the output ended up valid, registered by the hook without the lock.
func TestOutputsRegisteredWhileNixHoldsLockNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 29)
	hook := hookCopy(t)
	expr := drv("locked", "x86_64-linux", `/bin/sleep 1; /usr/bin/head -c 20000000 /dev/zero > $out`, `u = "`+unique()+`";`)
	out := strings.Trim(c.run(defaultTimeout, "nix-instantiate", "--eval", "-E", "(import "+c.file("l.nix", expr)+").outPath").Out, `"`)
	if !strings.HasPrefix(out, "/nix/store/") {
		t.Fatalf("outPath = %q", out)
	}
	real := filepath.Join(c.Dir, out)

	type sample struct {
		hook, exists bool
		holder       int
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
			s := sample{hook: len(procsOf(hook)) > 0}
			_, err := os.Lstat(real)
			s.exists = err == nil
			s.holder = lockHolder(real + ".lock")
			ss = append(ss, s)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	c.Hook = hook
	b := c.startBuild(expr, "ssh://b1 x86_64-linux")
	code := b.wait(t, time.Minute)
	close(stop)
	ss := <-samples
	if code != 0 {
		t.Fatalf("nix-build exit %d\n%s", code, b.stderr.String())
	}
	var withOutput, held int
	holders := map[int]bool{}
	for _, x := range ss {
		if x.hook && x.exists {
			withOutput++
			if x.holder > 0 {
				held++
				holders[x.holder] = true
			}
		}
	}
	if withOutput == 0 {
		t.Fatalf("never saw the hook running with the output in the store (%d samples)", len(ss))
	}
	if held != withOutput {
		t.Errorf("the output's lock was held in %d of %d samples taken while the hook wrote the output", held, withOutput)
	}
	for pid := range holders {
		if comm := commOf(pid); pid != b.cmd.Process.Pid && comm != "nix-build" && comm != "nix" {
			t.Errorf("the lock was held by pid %d (%q), not nix-build", pid, comm)
		}
	}
	if r := c.nixStore("--check-validity", out); r.Code != 0 {
		t.Errorf("%s is not valid after the build:\n%s", out, r.Stderr)
	}
	t.Logf("%d samples with the hook running and the output present; the lock was held by nix-build in all", withOutput)
	c.mustVerify()
}

// The machines file's base64 host key is enough on current Nix, with
// empty known_hosts files; a pinned key of another host is refused
// cleanly. Nix 2.34 hands the field to the hook untouched.
func TestPinnedHostKeyNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	pinnedOnlyConfig(t, c, b1, b1.Port)
	r := c.build(drv("pinned", "x86_64-linux", `echo pinned > $out`, `u = "`+unique()+`";`),
		"ssh://b1 x86_64-linux - 1 1 - - "+b1.HostKeyB64)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d with the host key in the machines file\n%s", r.Code, r.Stderr)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("%s not built on b1", r.Out)
	}

	other, err := os.ReadFile(filepath.Join(b1.Dir, "keys/client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	c.Env = append(c.Env, "OFFLOAD_STATE_DIR="+t.TempDir())
	r = c.build(drv("wrong", "x86_64-linux", `echo wrong > $out`, `u = "`+unique()+`";`),
		"ssh://b1 x86_64-linux - 1 1 - - "+base64.StdEncoding.EncodeToString(other))
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded with a wrong pinned host key:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "pins") {
		t.Errorf("the refusal does not say the machines file pins another key:\n%s", r.Stderr)
	}
	noHookCrash(t, r.Stderr)
}

// Nix ≥ 2.31 accepts ssh://host:port (49ba061) and Nix 2.34 passes the
// URI to the hook as written; offload dials the port itself. The
// ssh_config names no port for b1, and the known_hosts files are empty:
// only the URI's port and the pinned key lead to the builder.
func TestPortInURIPinnedHostKeyNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 31)
	pinnedOnlyConfig(t, c, b1, 0)
	uri := fmt.Sprintf("ssh://b1:%d", b1.Port)
	r := c.build(drv("port", "x86_64-linux", `echo port > $out`, `u = "`+unique()+`";`),
		uri+" x86_64-linux - 1 1 - - "+b1.HostKeyB64)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d with %s\n%s", r.Code, uri, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "on '"+uri+"'") {
		t.Errorf("nix-build did not say it built on %s:\n%s", uri, r.Stderr)
	}
	if strings.Contains(r.Stderr, "Nix before 2.31") {
		// offload dials the port itself, with any Nix; the warning
		// speaks of Nix's own build-remote, which does not run here.
		t.Logf("the hook warned about the port although it dials it itself:\n%s", r.Stderr)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("%s not built on b1", r.Out)
	}
}

// Nix ≥ 2.17 reads build-hook as a list of words (d2ce2e8) and, since
// 2.12 (f8d0193), runs the hook with argv [basename(word 0), words 1…,
// verbosity]. With `build-hook = /path/offload hook` in nix.conf, Nix
// 2.34 starts offload with argv [offload, hook, 3], and offload takes it
// for hook mode.
func TestHookArgvWordsNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 17)
	hook := hookCopy(t)
	c.file("etc/nix.conf", fmt.Sprintf("build-users-group =\nsandbox = false\nsubstituters =\nbuild-hook = %s hook\n", hook))

	stop := make(chan struct{})
	argvs := make(chan [][]string, 1)
	go func() {
		seen := map[string][]string{}
		for {
			select {
			case <-stop:
				var all [][]string
				for _, a := range seen {
					all = append(all, a)
				}
				argvs <- all
				return
			default:
			}
			for _, pid := range procsOf(hook) {
				if a := cmdline(pid); a != nil {
					seen[strings.Join(a, "\x00")] = a
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	expr := drv("argv", "x86_64-linux", `/bin/sleep 1; echo argv > $out`, `u = "`+unique()+`";`)
	b := c.start("nix-build", "--no-out-link", c.file("argv.nix", expr), "--max-jobs", "0", "--builders", "ssh://b1 x86_64-linux")
	code := b.wait(t, time.Minute)
	close(stop)
	got := <-argvs
	if code != 0 {
		t.Fatalf("nix-build with build-hook = %s hook: exit %d\n%s", hook, code, b.stderr.String())
	}
	if !b1.has(t, strings.TrimSpace(b.stdout.String())) {
		t.Errorf("the output was not built on b1")
	}
	want := []string{"offload", "hook", "3"}
	if len(got) == 0 {
		t.Fatalf("never saw the hook running")
	}
	for _, a := range got {
		if strings.Join(a, " ") != strings.Join(want, " ") {
			t.Errorf("hook argv = %q, want %q", a, want)
		}
	}
}

// When the hook declines and local builds are off, Nix 2.8 stops with
// "unable to start any build" and exit 1; Nix 2.34 reports each
// derivation as a build failure ("local builds are disabled") and exits
// 100. Either way offload's reason must reach the user, before Nix's.
func TestDeclineExits100Nix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newSidClient(t, b1)
	requireClientNix(t, c, 29)
	r := c.build(drv("riscv", "riscv64-linux", `echo > $out`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 100 {
		t.Errorf("nix-build exit %d, want 100 (Nix 2.34: a derivation nobody builds is a build failure)\n%s", r.Code, r.Stderr)
	}
	reason := strings.Index(r.Stderr, "offload: not building riscv remotely")
	nixErr := strings.Index(r.Stderr, "error:")
	if reason < 0 || !strings.Contains(r.Stderr, "riscv64-linux") {
		t.Errorf("offload's reason for declining did not reach the user:\n%s", r.Stderr)
	} else if nixErr >= 0 && nixErr < reason {
		t.Errorf("offload's reason comes after Nix's error:\n%s", r.Stderr)
	}
	noHookCrash(t, r.Stderr)
}

// A builder on current Nix: its nix-store --serve is Nix 2.34's, which
// no longer serves ExportPaths (2.32): inputs go up with AddToStoreNar,
// outputs come down with DumpStorePath, with either client.
func TestChainOnBuilderNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startSidBuilder(t, "b1")
	major, minor := nixVersion(t, func(args ...string) (string, error) { return b1.exec(t, args...) })
	if major != 2 || minor < 32 {
		t.Fatalf("the builder runs Nix %d.%d, want ≥ 2.32", major, minor)
	}
	t.Run("client=2.34", func(t *testing.T) {
		testChain(t, newSidClient(t, b1), b1)
	})
	t.Run("client=2.8", func(t *testing.T) {
		testChain(t, newClient(t, b1), b1)
	})
	// The failure comes back in Nix 2.34's BuildResult, which the serve
	// protocol 2.7 still encodes as in 2.8: a plain build failure (Nix
	// 2.8 client: exit 100) with the builder's exit code in the message.
	t.Run("failing/client=2.8", func(t *testing.T) {
		c := newClient(t, b1)
		r := c.build(drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
		if r.Code != 100 {
			t.Errorf("nix-build exit %d, want 100 (build failure)\n%s", r.Code, r.Stderr)
		}
		for _, want := range []string{"about to fail", "offload: build of", "exit code 3"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("nix-build's stderr lacks %q:\n%s", want, r.Stderr)
			}
		}
	})
}
