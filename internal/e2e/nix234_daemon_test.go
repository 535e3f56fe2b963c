// SPDX-License-Identifier: MIT

package e2e

// Current Nix through its own nix-daemon: the client's
// nix-build is Nix 2.34 with NIX_REMOTE=daemon, and a nix-daemon of the
// same root, started in the client's namespace, runs offload as its child
// with the daemon's environment and nix.conf, as on NixOS. The builder is
// the machine's Nix 2.8. The daemon reads nix.conf when it starts, so each
// build starts one (daemonScript).

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// daemonClient234 returns a current-Nix client whose nix.conf names hook
// and builders, and a function that runs nix-build on expr through a
// fresh nix-daemon.
func daemonClient234(t *testing.T, b1 *builder, hook, builders string) (*client, func(expr string) result) {
	t.Helper()
	c := newSidClient(t, b1)
	requireClientNix(t, c, 29)
	writeDaemonConf(t, c, hook, builders)
	script := daemonScript(t, c)
	return c, func(expr string) result {
		t.Helper()
		f := c.file(fmt.Sprintf("expr-%d.nix", time.Now().UnixNano()), expr)
		return c.run(2*time.Minute, script, "nix-build", "--no-out-link", f)
	}
}

func writeDaemonConf(t *testing.T, c *client, hook, builders string) {
	t.Helper()
	writeFile(t, filepath.Join(c.Dir, "etc/nix.conf"), fmt.Sprintf(`build-users-group =
sandbox = false
substituters =
build-hook = %s
builders = %s
max-jobs = 0
`, hook, builders))
}

// The trivial, failing and chain builds through a Nix 2.34 daemon: the
// hook, the daemon's child, sees the daemon's environment (NIX_SSHOPTS),
// and the build log and offload's messages reach the user's terminal
// through the daemon.
func TestThroughDaemonNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c, viaDaemon := daemonClient234(t, b1, offloadBin, "ssh://b1 x86_64-linux")

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

	// Nix ≥ 2.29 passes no hook exit code through, with or without the
	// daemon: the failure is a plain one, and the messages carry why.
	r = viaDaemon(drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, `u = "`+unique()+`";`))
	if r.Code == 0 {
		t.Errorf("failing: nix-build succeeded\n%s", r.Stderr)
	}
	for _, want := range []string{"about to fail", "offload: build of", "exit code 3"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("failing: the user did not see %q:\n%s", want, r.Stderr)
		}
	}
	noHookCrash(t, r.Stderr)
	t.Logf("failing build through the 2.34 daemon: nix-build exit %d", r.Code)

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
	if !b1.has(t, r.Out) {
		t.Errorf("chain: last step not built on b1")
	}
	c.mustVerify()
}

// The machines line's host key is all the daemon's hook needs, with empty
// known_hosts files; a pinned key of another host is refused, and the
// refusal reaches the user through the daemon.
func TestPinnedHostKeyThroughDaemonNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c, viaDaemon := daemonClient234(t, b1, offloadBin, "ssh://b1 x86_64-linux - 1 1 - - "+b1.HostKeyB64)
	pinnedOnlyConfig(t, c, b1, b1.Port)
	r := viaDaemon(drv("pinned", "x86_64-linux", `echo pinned > $out`, `u = "`+unique()+`";`))
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d with the host key in the machines line\n%s", r.Code, r.Stderr)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("%s not built on b1", r.Out)
	}

	other, err := os.ReadFile(filepath.Join(b1.Dir, "keys/client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	writeDaemonConf(t, c, offloadBin, "ssh://b1 x86_64-linux - 1 1 - - "+base64.StdEncoding.EncodeToString(other))
	c.Env = append(c.Env, "OFFLOAD_STATE_DIR="+t.TempDir())
	r = viaDaemon(drv("wrong", "x86_64-linux", `echo wrong > $out`, `u = "`+unique()+`";`))
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded with a wrong pinned host key:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "pins") {
		t.Errorf("the refusal does not say the machines line pins another key:\n%s", r.Stderr)
	}
	noHookCrash(t, r.Stderr)
}

// Under the daemon it is the daemon's worker process, not nix-build, that
// holds the output's lock while the hook registers the output (Nix 2.34
// ignores NIX_HELD_LOCKS). The output must end up valid all the same.
func TestOutputsRegisteredWhileDaemonHoldsLockNix234(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	hook := hookCopy(t)
	c, _ := daemonClient234(t, b1, hook, "ssh://b1 x86_64-linux")
	expr := drv("locked", "x86_64-linux", `/bin/sleep 1; /usr/bin/head -c 20000000 /dev/zero > $out`, `u = "`+unique()+`";`)
	exprFile := c.file("l.nix", expr)
	out := strings.Trim(c.run(defaultTimeout, "nix-instantiate", "--eval", "-E", "(import "+exprFile+").outPath").Out, `"`)
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
			s := sample{hook: len(procsOf(hook)) > 0}
			_, err := os.Lstat(real)
			s.exists = err == nil
			s.holder = lockHolder(real + ".lock")
			if s.holder > 0 {
				s.comm = commOf(s.holder)
			}
			ss = append(ss, s)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	r := c.run(2*time.Minute, filepath.Join(c.Dir, "with-daemon.sh"), "nix-build", "--no-out-link", exprFile)
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
		if comm != "nix-daemon" {
			t.Errorf("the lock was held by pid %d (%q), not the daemon", pid, comm)
		}
	}
	if r := c.nixStore("--check-validity", out); r.Code != 0 {
		t.Errorf("%s is not valid after the build:\n%s", out, r.Stderr)
	}
	t.Logf("%d samples with the hook running and the output present; the lock was held by %v", withOutput, holders)
	c.mustVerify()
}
