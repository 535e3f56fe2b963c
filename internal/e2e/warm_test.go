// SPDX-License-Identifier: MIT

package e2e

// Warm sessions under a burst: the relay (connect-persist, on by default)
// holds one SSH connection per builder and store commands started ahead,
// so hooks that start together do not each open a connection, which a
// builder with OpenSSH's stock MaxStartups and MaxSessions would refuse
// or delay.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWarmEightHooksAtOnce: once the relay holds a connection to a
// builder with sshd's stock MaxSessions (10), eight nix-builds started at
// once, each with a hook of its own, open at most one more SSH connection
// (counted in sshd's log), and every one builds. Through a nix-daemon the
// hooks run as the daemon's root, without XDG_RUNTIME_DIR.
func TestWarmEightHooksAtOnce(t *testing.T) {
	cs := []cell{
		{Nix: "2.8", Proto: "ssh"},
		{Nix: "2.8", Proto: "ssh-ng", Daemon: true},
		{Nix: "2.34", Proto: "ssh", Daemon: true},
		{Nix: "2.34", Proto: "ssh-ng"},
	}
	matrix(t, cs, func(t *testing.T, m cell) {
		b1 := startBuilder(t, "b1", builderOpts{MaxSessions: 10, Verbose: true})
		c := m.client(t, b1)
		builders := m.machines(b1, "x86_64-linux - 8")
		// The first build starts the relay (when none runs, or the one
		// that runs is another binary's), which connects and starts store
		// commands ahead; the second goes through it.
		for _, name := range []string{"warm-1", "warm-2"} {
			r := m.build(t, c, drv(name, "x86_64-linux", "echo warm > $out", salt()), builders, "-v")
			if r.Code != 0 {
				t.Fatalf("%s: nix-build exit %d\n%s", name, r.Code, r.Stderr)
			}
			time.Sleep(time.Second)
		}
		before := accepted(t, b1)

		var script strings.Builder
		script.WriteString("pids=\n")
		for i := range 8 {
			f := c.file(fmt.Sprintf("burst-%d.nix", i), drv("burst", "x86_64-linux", fmt.Sprintf("echo burst %d > $out", i), salt()))
			args := "nix-build -v --no-out-link " + f
			if !m.Daemon {
				args += " --max-jobs 0 --option build-hook " + c.hook() + " --builders '" + builders + "'"
			}
			fmt.Fprintf(&script, "%s > %s/burst-%d.out 2> %s/burst-%d.err &\npids=\"$pids $!\"\n", args, c.Dir, i, c.Dir, i)
		}
		script.WriteString("st=0\nfor p in $pids; do wait $p || st=$?; done\nexit $st\n")
		args := []string{"sh", "-c", script.String()}
		if m.Daemon {
			writeDaemonConf(t, c, c.hook(), builders)
			args = append([]string{daemonScript(t, c)}, args...)
		}
		r := c.run(3*time.Minute, args...)
		for i := range 8 {
			out, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("burst-%d.out", i)))
			p := strings.TrimSpace(string(out))
			if p == "" {
				errs, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("burst-%d.err", i)))
				t.Errorf("build %d of the burst printed no output path (exit %d):\n%s", i, r.Code, errs)
				continue
			}
			if got, want := c.run(defaultTimeout, "cat", p).Out, fmt.Sprintf("burst %d", i); got != want {
				t.Errorf("%s holds %q, want %q", p, got, want)
			}
		}
		if n := accepted(t, b1) - before; n > 1 {
			t.Errorf("eight hooks at once opened %d new SSH connections to the builder, want at most 1", n)
			for i := range 8 {
				errs, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("burst-%d.err", i)))
				t.Logf("build %d's stderr:\n%s", i, errs)
			}
		}
		t.Logf("SSH connections: %d before the burst, %d more for eight hooks at once", before, accepted(t, b1)-before)
		c.mustVerify()
	})
}

// accepted counts the SSH connections b's sshd accepted, from its log
// (startBuilder with Verbose).
func accepted(t *testing.T, b *builder) int {
	t.Helper()
	log, err := os.ReadFile(filepath.Join(b.Dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(log, []byte("Accepted publickey"))
}

// TestBuildEndsWithoutBuilderExit: once the outputs are home, the hook
// exits without waiting for the builder's store command to exit (here it
// lingers 30 s after its input closes; a real one takes 10 to 40 ms to
// close its database), through the relay and directly.
func TestBuildEndsWithoutBuilderExit(t *testing.T) {
	linger := `st=$?; sleep 30; exit $st`
	b1 := startBuilder(t, "b1", builderOpts{Env: fakeTools(t, map[string]string{
		"nix-store":  `/usr/bin/nix-store "$@"; ` + linger,
		"nix-daemon": `/usr/bin/nix-daemon "$@"; ` + linger,
	})})
	cs := tagged(cells(nixes, protos, directOnly), func(m cell) string {
		if m.Nix == "2.8" {
			return "relay"
		}
		return "no-relay"
	})
	matrix(t, cs, func(t *testing.T, m cell) {
		c := m.client(t, b1)
		if m.Tag == "no-relay" {
			c.Env = append(c.Env, "OFFLOAD_CONNECT_PERSIST=0")
		}
		start := time.Now()
		r := m.build(t, c, drv("linger", "x86_64-linux", "echo linger > $out", salt()), m.machines(b1, "x86_64-linux"))
		took := time.Since(start)
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
		}
		if got := c.run(defaultTimeout, "cat", r.Out).Out; got != "linger" {
			t.Errorf("%s holds %q, want linger", r.Out, got)
		}
		if took > 25*time.Second {
			t.Errorf("nix-build took %v: the hook waited for the builder's store command to exit", took.Round(time.Millisecond))
		}
	})
}
