// SPDX-License-Identifier: MIT

package e2e

// Soak: many derivations over three builders while a chaos loop
// restarts builders at random (scripts/test-builder.sh stop and start on
// the same port; the store stays) and kills hooks in the middle of their
// builds (SIGKILL, as Nix kills a hook it gives up on). Builds caught by a
// restart or a kill fail (after accept Nix cannot move them) and the rest
// go on; a second run without chaos builds what failed. At the end every
// output is correct, no slot is held, nothing runs on the builders once
// the relay is stopped, and the counters add up: every derivation
// succeeded exactly once, and every failed build whose hook lived was
// counted.
//
// The short form (30 derivations, about a minute) runs by default; set
// OFFLOAD_SOAK=1 for the long one (200 derivations).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/slots"
)

func TestSoakChaos(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	n := 30
	if os.Getenv("OFFLOAD_SOAK") == "1" {
		n = 200
	}
	bs := []*builder{
		startBuilder(t, "b1", builderOpts{}),
		startBuilder(t, "b2", builderOpts{}),
		startBuilder(t, "b3", builderOpts{}),
	}
	c := newClient(t, bs...)
	// A binary of its own: its relay is this test's alone.
	c.Hook = hookCopy(t)
	c.Env = []string{"OFFLOAD_LOAD_AWARE=false", "OFFLOAD_UNHEALTHY_BACKOFF=1s", "OFFLOAD_UNHEALTHY_BACKOFF_MAX=2s"}
	builders := "ssh://b1 x86_64-linux - 2\nssh://b2 x86_64-linux - 2\nssh://b3 x86_64-linux - 2"
	f := c.file("soak.nix", drvs("soak", n, `"/bin/sleep 1; echo soak ${toString i} > $out"`))
	build := func() result {
		return c.run(10*time.Minute, "nix-build", "--no-out-link", "--keep-going", f, "--max-jobs", "0",
			"--option", "build-hook", c.Hook, "--builders", builders)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var restarts, kills int // written by the chaos loop, read after wg.Wait
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1500+rand.IntN(1500)) * time.Millisecond):
			}
			if rand.IntN(2) == 0 && killBuildingHook(t, c, builders) {
				kills++
				continue
			}
			// A builder in the middle of a build, when there is one.
			b := bs[rand.IntN(len(bs))]
			for _, k := range rand.Perm(len(bs)) {
				if busyBuilder(bs[k]) {
					b = bs[k]
					break
				}
			}
			script := filepath.Join(repoRoot, "scripts/test-builder.sh")
			// As a reboot would: the sessions die with the listener
			// (stopping sshd alone leaves them running), and no
			// connection accepted meanwhile outlives it.
			if data, err := os.ReadFile(filepath.Join(b.Dir, "sshd.pid")); err == nil {
				pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
				killTree(pid)
			}
			exec.Command(script, "stop", b.Dir).Run()
			time.Sleep(time.Duration(200+rand.IntN(800)) * time.Millisecond)
			if out, err := exec.Command(script, "start", b.Dir, b.Name, strconv.Itoa(b.Port)).CombinedOutput(); err != nil {
				t.Errorf("restarting %s: %v\n%s", b.Name, err, out)
				return
			}
			restarts++
		}
	}()
	begin := time.Now()
	r1 := build()
	close(stop)
	wg.Wait()
	failed1 := strings.Count(r1.Stderr, "failed with exit code")
	// A hook killed before it counted its build (it may have counted it:
	// a kill can land as it exits).
	killed := strings.Count(r1.Stderr, "failed due to signal 9")
	t.Logf("with chaos: %d derivations, %d builder restarts, %d hooks killed (%d builds failed for it), exit %d, %d builds failed, %v",
		n, restarts, kills, killed, r1.Code, failed1, time.Since(begin).Round(100*time.Millisecond))
	noHookCrash(t, r1.Stderr)

	// Every builder is up again; let the unhealthy marks expire.
	time.Sleep(2500 * time.Millisecond)
	r2 := build()
	if r2.Code != 0 {
		t.Fatalf("without chaos: nix-build exit %d\n%s", r2.Code, r2.Stderr)
	}
	failed2 := strings.Count(r2.Stderr, "failed with exit code")
	outs := strings.Fields(r2.Out)
	if len(outs) != n {
		t.Fatalf("nix-build printed %d outputs, want %d", len(outs), n)
	}
	for _, o := range outs {
		got := c.run(defaultTimeout, "cat", o).Out
		i := o[strings.LastIndex(o, "-soak-")+len("-soak-"):]
		if want := "soak " + i; got != want {
			t.Errorf("%s holds %q, want %q", o, got, want)
		}
	}
	var succeeded, failed uint64
	for _, b := range c.slotSnapshot(t, builders) {
		if b.Busy != 0 {
			t.Errorf("%s has %d busy slots after every build ended: %+v", b.URI, b.Busy, b.Running)
		}
		succeeded += b.Succeeded
		failed += b.Failed
		t.Logf("%s: %d succeeded, %d failed, %d consecutive failures", b.URI, b.Succeeded, b.Failed, b.ConsecutiveFailures)
	}
	if succeeded != uint64(n) {
		t.Errorf("the slot file counts %d successful builds, want %d (one per derivation)", succeeded, n)
	}
	if lo, hi := uint64(failed1+failed2), uint64(failed1+failed2+killed); failed < lo || failed > hi {
		t.Errorf("the slot file counts %d failed builds; nix-build reported %d failed and %d killed", failed, lo, killed)
	}
	c.mustVerify()

	// Nothing is left running on the builders once the relay, which
	// keeps store commands started ahead, has ended (SIGTERM, as a
	// shutdown sends it; this test's own, so that other tests' relays
	// run on).
	for _, p := range relaysOf(c.Hook) {
		syscall.Kill(p, syscall.SIGTERM)
	}
	for _, b := range bs {
		var left []string
		for i := 0; i < 100; i++ {
			left = builderCommands(b)
			if len(left) == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(left) > 0 {
			t.Errorf("%s still runs %q 10 s after the relay stopped", b.Name, left)
		}
	}
}

// killBuildingHook kills (SIGKILL) the hook of a build that c's slot file
// shows in its building phase, and reports whether there was one.
func killBuildingHook(t *testing.T, c *client, builders string) bool {
	for _, b := range c.slotSnapshot(t, builders) {
		for _, r := range b.Running {
			if r.Phase == slots.PhaseBuilding && r.PID > 0 && syscall.Kill(r.PID, syscall.SIGKILL) == nil {
				return true
			}
		}
	}
	return false
}

// builderCommands returns the command lines of the processes b's sshd
// runs for its sessions.
func builderCommands(b *builder) []string {
	data, err := os.ReadFile(filepath.Join(b.Dir, "sshd.pid"))
	if err != nil {
		return nil
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	var cmds []string
	for _, p := range descendants(pid) {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); err == nil && len(cmd) > 0 {
			cmds = append(cmds, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
		}
	}
	return cmds
}

// busyBuilder reports whether b runs a session (a nix-store --serve) now.
func busyBuilder(b *builder) bool {
	data, err := os.ReadFile(filepath.Join(b.Dir, "sshd.pid"))
	if err != nil {
		return false
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	for _, p := range descendants(pid) {
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); strings.Contains(string(cmd), "--serve") {
			return true
		}
	}
	return false
}
