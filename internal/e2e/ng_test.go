// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
)

// An SSH user that the builder's nix-daemon does not trust: the build
// fails with a message that says what to change on the builder. The
// builder's sessions run as root, so the remote program is a wrapper that
// runs `nix-daemon --stdio` as nobody; that one hands the connection to a
// socket nix-daemon in the builder's namespace, which trusts root only.
func TestSSHNGUntrusted(t *testing.T) {
	requireEnv(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Skip(t, "setpriv not found")
	}
	t.Parallel()
	b3 := startBuilder(t, "b3", builderOpts{})
	wrapper := filepath.Join(b3.Dir, "untrusted-daemon")
	writeFile(t, wrapper, `#!/bin/sh
exec env -u NIX_CONF_DIR HOME=/nonexistent setpriv --reuid=nobody --regid=nogroup --clear-groups nix-daemon --stdio
`)
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, b3)

	// The input is input-addressed and unsigned: built on b3 as root
	// over ssh://, then deleted there, so the next build must upload it.
	// (Content-addressed inputs, such as local sources, need no
	// signature.)
	u := unique()
	dep := drv("dep", "x86_64-linux", `echo dep > $out`, `u = "`+u+`";`)
	r := c.build(dep, "ssh://b3 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("building the input on b3 as root: exit %d\n%s", r.Code, r.Stderr)
	}
	if out, err := b3.exec(t, "nix-store", "--delete", r.Out); err != nil {
		t.Fatalf("deleting %s on b3: %v\n%s", r.Out, err, out)
	}
	expr := drv("untrusted", "x86_64-linux", `/bin/cat $dep > $out`, `dep = `+dep+`; u = "`+u+`";`)
	builders := "ssh-ng://b3?remote-program=" + wrapper + " x86_64-linux"

	for _, tc := range []struct {
		name string
		args []string // for the socket nix-daemon
		want []string
	}{
		// The upload of the input is refused.
		{"signatures", nil, []string{"copying inputs", "lacks a valid signature", "does not trust", "trusted-users", "require-sigs = false"}},
		// With require-sigs = false the upload passes, and the build
		// is refused.
		{"require-sigs-off", []string{"--option", "require-sigs", "false"}, []string{"build of", "not privileged to build input-addressed derivations", "does not trust", "trusted-users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop := startSocketDaemon(t, b3, tc.args...)
			defer stop()
			r := c.build(expr, builders)
			if r.Code == 0 {
				t.Fatalf("nix-build succeeded as an untrusted user\n%s", r.Stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("nix-build's output lacks %q:\n%s", want, r.Stderr)
				}
			}
			for _, l := range strings.Split(r.Stderr, "\n") {
				if strings.HasPrefix(l, "offload: ") {
					t.Log(l)
				}
			}
		})
	}
}

// startSocketDaemon runs `nix-daemon` on its socket in b's namespace until
// the returned function is called.
func startSocketDaemon(t *testing.T, b *builder, args ...string) func() {
	t.Helper()
	b.exec(t, "rm", "-f", "/nix/var/nix/daemon-socket/socket")
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), append([]string{"exec", b.Dir, "nix-daemon"}, args...)...)
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("socket nix-daemon's output:\n%s", log.String())
		}
	}
	if !waitFor(10*time.Second, func() bool {
		_, err := b.exec(t, "test", "-S", "/nix/var/nix/daemon-socket/socket")
		return err == nil
	}) {
		stop()
		t.Fatalf("the socket nix-daemon did not start:\n%s", log.String())
	}
	return stop
}

// offload check on ssh-ng:// builders: the daemon's protocol version, and
// trust "unknown" from Nix 2.8, whose handshake does not say.
func TestSSHNGCheckNix28(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	e := newCheckEnv(t, newClient(t, b1), "")
	stdout, stderr, code, _ := e.run(t, "check", "--builders", "ssh-ng://b1 x86_64-linux", "--json")
	rows := ngCheckRows(t, stdout, stderr)
	if code != 0 || len(rows) != 1 || !rows[0].OK {
		t.Fatalf("check: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if r := rows[0]; r.Protocol != "1.34" || r.Trusted != "unknown" || r.NixVersion != "2.8.0" {
		t.Errorf("check of ssh-ng://b1: protocol %q, trusted %q, nix %q; want 1.34, unknown, 2.8.0", r.Protocol, r.Trusted, r.NixVersion)
	}
	stdout, _, _, _ = e.run(t, "check", "--builders", "ssh-ng://b1 x86_64-linux")
	if !strings.Contains(stdout, "trusted unknown") {
		t.Errorf("check's table does not show the trust:\n%s", stdout)
	}
}

type ngCheckRow struct {
	checkRow
	Trusted string `json:"trusted"`
}

func ngCheckRows(t *testing.T, stdout, stderr string) []ngCheckRow {
	t.Helper()
	var rows []ngCheckRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("check --json: %v\n%s\n%s", err, stdout, stderr)
	}
	return rows
}

// A builder on current Nix over ssh-ng (protocol 1.38, spoken at 1.35):
// it builds, check reports its trust, and a user it does not trust
// (nix-daemon --force-untrusted) is turned away before accept with what
// to fix, so Nix is free to build elsewhere.
func TestSSHNGCurrentNix(t *testing.T) {
	requireSid(t)
	t.Parallel()
	s1 := startBuilder(t, "s1", builderOpts{Sid: true})
	c := newClient(t, s1)
	r := c.build(drv("ng-current", "x86_64-linux", `echo on current nix > $out; echo a current log line`, `u = "`+unique()+`";`), "ssh-ng://s1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if !s1.has(t, r.Out) || !strings.Contains(r.Stderr, "a current log line") {
		t.Errorf("built on s1 %v; log shown %v\n%s", s1.has(t, r.Out), strings.Contains(r.Stderr, "a current log line"), r.Stderr)
	}
	c.mustVerify()

	untrusted := "ssh-ng://s1?remote-program=nix-daemon%20--extra-experimental-features%20daemon-trust-override%20--force-untrusted x86_64-linux"
	r = c.build(drv("ng-untrusted", "x86_64-linux", `echo x > $out`, `u = "`+unique()+`";`), untrusted)
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded as an untrusted user\n%s", r.Stderr)
	}
	for _, want := range []string{"cannot build on 'ssh-ng://s1", "does not trust", "trusted-users"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("nix-build's output lacks %q:\n%s", want, r.Stderr)
		}
	}
	if strings.Contains(r.Stderr, "building '") {
		t.Errorf("the build was accepted:\n%s", r.Stderr)
	}
	for _, l := range strings.Split(r.Stderr, "\n") {
		if strings.HasPrefix(l, "offload: ") {
			t.Log(l)
		}
	}

	e := newCheckEnv(t, c, "")
	stdout, stderr, _, _ := e.run(t, "check", "--builders", "ssh-ng://s1 x86_64-linux\n"+untrusted, "--json")
	rows := ngCheckRows(t, stdout, stderr)
	if len(rows) != 2 {
		t.Fatalf("check: %d rows\n%s\n%s", len(rows), stdout, stderr)
	}
	if r := rows[0]; !r.OK || r.Protocol != "1.38" || r.Trusted != "yes" {
		t.Errorf("check of the trusted session: ok %v, protocol %q, trusted %q; want ok, 1.38, yes (%s)", r.OK, r.Protocol, r.Trusted, r.Reason)
	}
	if r := rows[1]; r.OK || r.Trusted != "no" || !strings.Contains(r.Reason, "trusted-users") {
		t.Errorf("check of the untrusted session: ok %v, trusted %q, reason %q; want not ok, no, and what to fix", r.OK, r.Trusted, r.Reason)
	}
}

// BenchmarkSSHNG times whole nix-builds through three hooks against the
// same builder in the same run: offload over ssh:// (nix-store --serve),
// offload over ssh-ng:// (nix-daemon --stdio), and Nix's own build-remote
// over ssh-ng://. "trivial" is a build with a one-line output; "50MiB"
// one whose 50 MiB output is copied back. Each op is one nix-build of a
// derivation new to both stores: hook start, connection, build, copy back.
//
//	go test ./internal/e2e -run '^$' -bench SSHNG -benchtime 5x
func BenchmarkSSHNG(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	script := filepath.Join(repoRoot, "scripts/test-builder.sh")
	out, err := exec.Command(script, "start", filepath.Join(dir, "b"), "b1").Output()
	if err != nil {
		b.Fatalf("starting the builder: %v", err)
	}
	defer exec.Command(script, "stop", filepath.Join(dir, "b")).Run()
	env := parseEnv(string(out))
	cdir := filepath.Join(dir, "client")
	cfg, err := os.ReadFile(env["BUILDER_SSH_CONFIG"])
	if err != nil {
		b.Fatal(err)
	}
	writeBench := func(name, content string) string {
		p := filepath.Join(cdir, name)
		if err := os.MkdirAll(cdir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	sshConfig := writeBench("ssh_config", string(cfg))
	builds := []struct{ name, script string }{
		{"trivial", `echo hello > $out`},
		{"50MiB", `/usr/bin/head -c 52428800 /dev/urandom > $out`},
	}
	hooks := []struct{ name, hook, builders string }{
		{"offload-ssh", offloadBin, "ssh://b1 x86_64-linux"},
		{"offload-ssh-ng", offloadBin, "ssh-ng://b1 x86_64-linux"},
		{"nix-build-remote-ssh-ng", "/usr/libexec/nix/build-remote", "ssh-ng://b1 x86_64-linux"},
	}
	for _, bd := range builds {
		for _, h := range hooks {
			b.Run(bd.name+"/"+h.name, func(b *testing.B) {
				if _, err := os.Stat(h.hook); err != nil {
					b.Skip(err)
				}
				for b.Loop() {
					f := writeBench("bench-"+unique()+".nix", drv("bench", "x86_64-linux", bd.script, `u = "`+unique()+`";`))
					cmd := exec.Command(filepath.Join(repoRoot, "scripts/test-client.sh"), cdir,
						"nix-build", "--no-out-link", f, "--max-jobs", "0", "--option", "build-hook", h.hook, "--builders", h.builders)
					// Each hook opens its own connection, as Nix's does: no relay.
					cmd.Env = append(os.Environ(), "NIX_SSHOPTS=-F "+sshConfig, "OFFLOAD_LOAD_AWARE=false", "OFFLOAD_CONNECT_PERSIST=0")
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("nix-build: %v\n%s", err, out)
					}
				}
			})
		}
	}
}
