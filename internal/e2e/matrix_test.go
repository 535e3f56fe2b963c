// SPDX-License-Identifier: MIT

package e2e

// The ways a user's build reaches offload, as a matrix: the client's Nix
// (2.8 from Debian stable, 2.34 from the unstable root), the builder's
// URI scheme (ssh:// runs nix-store --serve on the builder, ssh-ng://
// nix-daemon --stdio), and whether nix-build runs the hook itself
// (direct) or asks a nix-daemon that runs it as its child, with the
// daemon's environment and nix.conf, as on NixOS (daemon). A scenario is
// written once and runs in each cell where it means something, as a
// subtest named after the cell: TestTrivialBuild/nix2.34/ssh-ng/daemon.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A cell is one client Nix, one URI scheme, direct or through a daemon.
type cell struct {
	Nix    string // "2.8" or "2.34"
	Proto  string // "ssh" or "ssh-ng"
	Daemon bool
	// Tag, when set, ends the subtest's name: what the scenario expects
	// in this cell that it does not in others, such as an exit code.
	Tag string
}

func (m cell) String() string {
	mode := "direct"
	if m.Daemon {
		mode = "daemon"
	}
	s := "nix" + m.Nix + "/" + m.Proto + "/" + mode
	if m.Tag != "" {
		s += "/" + m.Tag
	}
	return s
}

// current reports whether the cell's client is current Nix.
func (m cell) current() bool { return m.Nix == "2.34" }

var (
	nixes      = []string{"2.8", "2.34"}
	protos     = []string{"ssh", "ssh-ng"}
	modes      = []bool{false, true}
	directOnly = []bool{false}
)

// cells returns every combination of the given client versions, schemes
// and modes.
func cells(nix, proto []string, daemon []bool) []cell {
	var cs []cell
	for _, n := range nix {
		for _, p := range proto {
			for _, d := range daemon {
				cs = append(cs, cell{Nix: n, Proto: p, Daemon: d})
			}
		}
	}
	return cs
}

// tagged sets the Tag of every cell of cs to tag(cell).
func tagged(cs []cell, tag func(cell) string) []cell {
	for i := range cs {
		cs[i].Tag = tag(cs[i])
	}
	return cs
}

// byExit tags every cell of cs with the exit code nix-build ends with
// there, exit(cell), as "exit100".
func byExit(cs []cell, exit func(cell) int) []cell {
	return tagged(cs, func(m cell) string { return "exit" + strconv.Itoa(exit(m)) })
}

// matrix runs scenario in every cell as a parallel subtest. A cell on
// current Nix is skipped (or, in CI, fails) when the unstable root cannot
// be built.
func matrix(t *testing.T, cs []cell, scenario func(t *testing.T, m cell)) {
	t.Helper()
	for _, m := range cs {
		t.Run(m.String(), func(t *testing.T) {
			if m.current() {
				requireSid(t)
			} else {
				requireEnv(t)
			}
			t.Parallel()
			scenario(t, m)
		})
	}
}

// client returns a client of the cell's Nix for bs.
func (m cell) client(t *testing.T, bs ...*builder) *client {
	t.Helper()
	if !m.current() {
		return newClient(t, bs...)
	}
	c := newSidClient(t, bs...)
	// What the 2.34 cells expect first appears in Nix 2.29.
	requireClientNix(t, c, 29)
	return c
}

// uri returns b's URI in the cell's scheme.
func (m cell) uri(b *builder) string { return m.Proto + "://" + b.Name }

// machines returns a machines line for b in the cell's scheme; rest are
// the fields after the URI.
func (m cell) machines(b *builder, rest string) string { return m.uri(b) + " " + rest }

// build runs nix-build on expr as c, with c's hook and the builders given,
// the cell's way: direct, or through a nix-daemon started for this build
// with the hook and builders in its nix.conf. extra goes to nix-build.
func (m cell) build(t *testing.T, c *client, expr, builders string, extra ...string) result {
	t.Helper()
	if !m.Daemon {
		return c.build(expr, builders, extra...)
	}
	writeDaemonConf(t, c, c.hook(), builders)
	f := c.file(fmt.Sprintf("expr-%d.nix", time.Now().UnixNano()), expr)
	return c.run(2*time.Minute, append([]string{daemonScript(t, c), "nix-build", "--no-out-link", f}, extra...)...)
}

// writeDaemonConf writes the client's nix.conf for a daemon that runs
// hook with builders and builds nothing itself.
func writeDaemonConf(t *testing.T, c *client, hook, builders string) {
	t.Helper()
	writeFile(t, filepath.Join(c.Dir, "etc/nix.conf"), fmt.Sprintf(`build-users-group =
sandbox = false
substituters =
build-hook = %s
builders = %s
max-jobs = 0
trusted-users = root
`, hook, builders))
}

// daemonScript returns a script in c's directory that starts nix-daemon
// in the client's namespace, runs "$@" with NIX_REMOTE=daemon, and stops
// the daemon; the daemon's log goes to c.Dir/daemon.log. The daemon reads
// nix.conf when it starts, so each run starts one. The first call writes
// the script.
func daemonScript(t *testing.T, c *client) string {
	t.Helper()
	script := filepath.Join(c.Dir, "with-daemon.sh")
	if _, err := os.Stat(script); err == nil {
		return script
	}
	c.file("with-daemon.sh", `#!/bin/sh
rm -f /nix/var/nix/daemon-socket/socket
nix-daemon >>"$DAEMON_LOG" 2>&1 &
pid=$!
i=0
until [ -S /nix/var/nix/daemon-socket/socket ]; do
	i=$((i + 1))
	if [ $i -gt 300 ]; then echo "nix-daemon did not start" >&2; cat "$DAEMON_LOG" >&2; kill $pid; exit 99; fi
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
	c.Base = append(c.Base, "DAEMON_LOG="+daemonLog)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(daemonLog)
			t.Logf("nix-daemon's log:\n%s", b)
		}
	})
	if c.sid && sidRoot != "" {
		// Nix 2.34's daemon workers unshare their mount namespace; in
		// the chrooted test client, /proc/<worker>/exe then reads as the
		// host's path of the nix binary (<root>/usr/bin/nix), which the
		// hook runs for its local nix-store. Binding the root at that
		// path inside itself makes it resolve there too. A daemon that is
		// not chrooted, as on NixOS, has no such difference.
		c.Base = append(c.Base, "OFFLOAD_SID_BINDS="+sidRoot)
	}
	return script
}

// chainExpr is a chain of four derivations on a local source file,
// src.txt in the client's directory, salted with u; the last step appends
// last to what the steps before wrote.
func chainExpr(u, last string) string {
	return fmt.Sprintf(`
let
  mk = name: script: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; u = %q; inherit deps; };
  s1 = mk "s1" "/bin/cat ${./src.txt} > $out" [];
  s2 = mk "s2" "/bin/cat $deps > $out; echo s2 >> $out" [ s1 ];
  s3 = mk "s3" "/bin/cat $deps > $out; echo s3 >> $out" [ s2 ];
in mk "s4" "/bin/cat $deps > $out; echo %s >> $out" [ s3 ]`, u, last)
}

// pinnedOnlyConfig writes the client's ssh_config for b with empty
// known_hosts files, so that only the machines file's host key can vouch
// for b, and with port as b's Port line (0: none). It returns the empty
// known_hosts file.
func pinnedOnlyConfig(t *testing.T, c *client, b *builder, port int) string {
	t.Helper()
	kh := c.file("empty_known_hosts", "")
	portLine := ""
	if port != 0 {
		portLine = fmt.Sprintf("\tPort %d\n", port)
	}
	c.file("ssh_config", fmt.Sprintf("Host %s\n\tHostName 127.0.0.1\n%s\tUser root\n\tIdentityFile %s\n\tIdentitiesOnly yes\n\tUserKnownHostsFile %s\n\tGlobalKnownHostsFile %s\n\tBatchMode yes\n",
		b.Name, portLine, b.Key, kh, kh))
	return kh
}

// wantAll fails for every want that s lacks.
func wantAll(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, s)
		}
	}
}
