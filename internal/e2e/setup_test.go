// SPDX-License-Identifier: MIT

package e2e

// What a new user does on a fresh machine (docs/setup.md): copy the static
// binary somewhere, run `offload setup`, apply what it says with --write,
// build a derivation that goes to a builder, and undo by restoring the
// backup setup kept. Each client has a fresh store and config dir; the
// machines file is the one Nix reads by default ($NIX_CONF_DIR/machines),
// with the builder's host key pinned, and max-jobs = 0 so that nothing
// builds locally. Run for a single-user Nix and for a nix-daemon (started
// in the client's namespace after the change, as a user restarts it), on
// Nix 2.8 and on current Nix.

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSetupNewUser(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	matrix(t, cells(nixes, []string{"ssh"}, modes), testSetupNewUser)
}

func testSetupNewUser(t *testing.T, m cell) {
	daemon := m.Daemon
	b1 := startBuilder(t, "b1", builderOpts{})
	c := m.client(t, b1)
	// A fresh config dir as the user finds it, with the builder listed
	// and local builds off.
	conf := filepath.Join(c.Dir, "etc/nix.conf")
	orig := "build-users-group =\nsandbox = false\nsubstituters =\nmax-jobs = 0\n"
	writeFile(t, conf, orig)
	writeFile(t, filepath.Join(c.Dir, "etc/machines"), "ssh://b1 x86_64-linux - 2 1 - - "+b1.HostKeyB64+"\n")

	// 1. Copy the static binary somewhere.
	hook := filepath.Join(c.Dir, "opt/offload")
	data, err := os.ReadFile(offloadBin)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, hook, string(data))
	if err := os.Chmod(hook, 0o755); err != nil {
		t.Fatal(err)
	}

	setup := func(args ...string) result {
		t.Helper()
		argv := []string{hook, "setup"}
		if daemon {
			argv = append([]string{"env", "NIX_REMOTE=daemon"}, argv...)
		}
		return c.run(2*time.Minute, append(argv, args...)...)
	}
	wantLine := "build-hook = " + hook

	// 2. offload setup says what is missing, and that b1 trusts us.
	r := setup()
	if r.Code != 1 {
		t.Errorf("offload setup before any change: exit %d, want 1\n%s%s", r.Code, r.Out, r.Stderr)
	}
	for _, want := range []string{
		"✗ build-hook does not name offload",
		fmt.Sprintf("add %q to %s", wantLine, conf),
		"✓ 1 builder(s) from " + filepath.Join(c.Dir, "etc/machines"),
		"✓ b1: the SSH user is trusted there",
	} {
		if !strings.Contains(r.Out, want) {
			t.Errorf("offload setup does not say %q:\n%s%s", want, r.Out, r.Stderr)
		}
	}
	if daemon != strings.Contains(r.Out, "builds run through nix-daemon") {
		t.Errorf("offload setup (daemon %v) misjudged how Nix builds:\n%s", daemon, r.Out)
	}

	// 3. Apply it.
	r = setup("--write")
	wantCode := 0
	if daemon {
		wantCode = 1 // the daemon must still be restarted
	}
	if r.Code != wantCode {
		t.Errorf("offload setup --write: exit %d, want %d\n%s%s", r.Code, wantCode, r.Out, r.Stderr)
	}
	if daemon && !strings.Contains(r.Out, "restart it: systemctl restart nix-daemon") {
		t.Errorf("offload setup --write under the daemon does not say to restart it:\n%s", r.Out)
	}
	written, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if want := orig + wantLine + "\n"; string(written) != want {
		t.Errorf("nix.conf after --write:\n%s\nwant:\n%s", written, want)
	}

	// 4. --write a second time changes nothing.
	r = setup("--write")
	if r.Code != 0 || strings.Contains(r.Out, "wrote") || strings.Contains(r.Out, "restart") {
		t.Errorf("second offload setup --write: exit %d\n%s%s", r.Code, r.Out, r.Stderr)
	}
	if again, _ := os.ReadFile(conf); string(again) != string(written) {
		t.Errorf("the second --write changed nix.conf:\n%s", again)
	}

	// 5. A build goes to b1, with nothing on the command line.
	expr := c.file("hello.nix", drv("hello", "x86_64-linux", `echo hello from setup > $out`, `u = "`+unique()+`";`))
	argv := []string{"nix-build", "--no-out-link", expr}
	if daemon {
		argv = append([]string{daemonScript(t, c)}, argv...)
	}
	r = c.run(2*time.Minute, argv...)
	if r.Code != 0 {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "daemon.log"))
		t.Fatalf("nix-build after setup: exit %d\n%s\ndaemon log:\n%s", r.Code, r.Stderr, log)
	}
	if !strings.Contains(r.Stderr, "on 'ssh://b1'") || !b1.has(t, r.Out) {
		t.Errorf("the build was not offloaded to b1:\n%s", r.Stderr)
	}

	// 6. Undo: the backup is nix.conf as it was.
	if err := os.Rename(conf+".before-offload", conf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); string(b) != orig {
		t.Errorf("nix.conf after undo:\n%s\nwant:\n%s", b, orig)
	}
	if r = setup(); r.Code != 1 || !strings.Contains(r.Out, "✗ build-hook does not name offload") {
		t.Errorf("offload setup after undo: exit %d\n%s", r.Code, r.Out)
	}

	// 7. Another program's build-hook is not overwritten without --force,
	// and the refusal names the line.
	other := orig + "build-hook = /usr/libexec/nix/build-remote\n"
	writeFile(t, conf, other)
	r = setup("--write")
	if r.Code != 1 || !strings.Contains(r.Stderr, conf+":5") || !strings.Contains(r.Stderr, "--force") {
		t.Errorf("offload setup --write over another hook: exit %d\n%s%s", r.Code, r.Out, r.Stderr)
	}
	if b, _ := os.ReadFile(conf); string(b) != other {
		t.Errorf("nix.conf changed without --force:\n%s", b)
	}
}

// A machines line without a host key is how many people start, and the
// way Nix itself checks the builder then: known_hosts (here the one the
// client's ssh_config names). When setup connects and the key verifies,
// setup --write exits 0; how to pin that key stays a hint, with the very
// value for field 8.
func TestSetupHostKeyFromKnownHosts(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	conf := filepath.Join(c.Dir, "etc/nix.conf")
	writeFile(t, conf, "build-users-group =\nsandbox = false\nsubstituters =\nmax-jobs = 0\n")
	writeFile(t, filepath.Join(c.Dir, "etc/machines"), "ssh://b1 x86_64-linux - 2 1\n")

	r := c.run(2*time.Minute, offloadBin, "setup", "--write", "--hook", offloadBin)
	if r.Code != 0 {
		t.Errorf("offload setup --write with b1's key in known_hosts only: exit %d, want 0\n%s%s", r.Code, r.Out, r.Stderr)
	}
	for _, want := range []string{
		"✓ b1: host key verified through known_hosts (not pinned in the machines line)",
		"✓ b1: the SSH user is trusted there",
	} {
		if !strings.Contains(r.Out, want) {
			t.Errorf("offload setup --write does not say %q:\n%s", want, r.Out)
		}
	}
	m := regexp.MustCompile(`hint: to pin it, put (\S+) in field 8 of b1's machines line`).FindStringSubmatch(r.Out)
	if m == nil {
		t.Fatalf("offload setup --write gives no hint on pinning b1's host key:\n%s", r.Out)
	}
	// The hint's value is the key of b1's host.pub, comment aside.
	keyOf := func(b64 string) string {
		b, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatalf("%q: %v", b64, err)
		}
		return strings.Join(strings.Fields(string(b))[:2], " ")
	}
	if got, want := keyOf(m[1]), keyOf(b1.HostKeyB64); got != want {
		t.Errorf("the hint pins %s, want %s", got, want)
	}

	// Pinned as the hint says, setup has nothing more to say about it.
	writeFile(t, filepath.Join(c.Dir, "etc/machines"), "ssh://b1 x86_64-linux - 2 1 - - "+m[1]+"\n")
	r = c.run(2*time.Minute, offloadBin, "setup", "--hook", offloadBin)
	if r.Code != 0 || strings.Contains(r.Out, "host key") {
		t.Errorf("offload setup with the pinned key: exit %d\n%s%s", r.Code, r.Out, r.Stderr)
	}
}
