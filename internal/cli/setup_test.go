// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

func TestSetupWriteIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nix.conf")
	os.WriteFile(conf, []byte("# mine\nsandbox = false\nmax-jobs = 0"), 0o644)
	env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none")}
	run(t, nil, env, "setup", "--write", "--hook", "/opt/offload")
	first, _ := os.ReadFile(conf)
	if want := "# mine\nsandbox = false\nmax-jobs = 0\nbuild-hook = /opt/offload\n"; string(first) != want {
		t.Errorf("nix.conf after --write:\n%s\nwant:\n%s", first, want)
	}
	if b, err := os.ReadFile(conf + ".before-offload"); err != nil || string(b) != "# mine\nsandbox = false\nmax-jobs = 0" {
		t.Errorf("backup = %q, %v", b, err)
	}
	stdout, _, _ := run(t, nil, env, "setup", "--write", "--hook", "/opt/offload")
	second, _ := os.ReadFile(conf)
	if string(second) != string(first) {
		t.Errorf("second --write changed nix.conf:\n%s", second)
	}
	if strings.Contains(stdout, "wrote") || !strings.Contains(stdout, "✓ build-hook is offload") {
		t.Errorf("second run output:\n%s", stdout)
	}
}

func TestSetupRefusesOtherHook(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nix.conf")
	orig := "build-hook = /usr/libexec/nix/build-remote\n"
	os.WriteFile(conf, []byte(orig), 0o644)
	env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none")}
	_, stderr, code := run(t, nil, env, "setup", "--write", "--hook", "/opt/offload")
	if code != 1 || !strings.Contains(stderr, "build-remote") || !strings.Contains(stderr, conf+":1") || !strings.Contains(stderr, "--force") {
		t.Errorf("setup --write over another hook: code %d, stderr %q", code, stderr)
	}
	if b, _ := os.ReadFile(conf); string(b) != orig {
		t.Errorf("nix.conf changed without --force:\n%s", b)
	}
	run(t, nil, env, "setup", "--write", "--force", "--hook", "/opt/offload")
	if b, _ := os.ReadFile(conf); string(b) != "build-hook = /opt/offload\n" {
		t.Errorf("nix.conf after --force:\n%s", b)
	}
}

func TestNixSupport(t *testing.T) {
	for _, tt := range []struct {
		version string
		ok      bool
		note    string // a word the note must hold; "" for none
	}{
		{"nix-store (Nix) 2.8.0", true, ""},
		{"nix-store (Nix) 2.34.1", true, ""},
		{"nix-store (Nix) 2.3.16", true, "older"},
		{"nix-store (Nix) 2.35.0", true, "newer"},
		{"nix-store (Lix, like Nix) 2.94.0", false, "Cap'n Proto"},
		{"nix-store (Lix, like Nix) 2.95.3", false, "RPC"},
		{"nix-store (Lix, like Nix) 2.91.1", true, "Lix before 2.94"},
		{"nix-store (Nix) 3.0.0", true, "not tested"},
		{"something else", true, "not recognised"},
	} {
		ok, note := nixSupport(tt.version)
		if ok != tt.ok || (tt.note == "") != (note == "") || !strings.Contains(note, tt.note) {
			t.Errorf("nixSupport(%q) = %v, %q; want %v and a note with %q", tt.version, ok, note, tt.ok, tt.note)
		}
	}
}

// fakeNixStore puts a nix-store first on PATH that prints version.
func fakeNixStore(t *testing.T, version string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "nix-store"), []byte("#!/bin/sh\necho '"+version+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
}

// No Lix package is at hand: a nix-store that answers as Lix 2.94 does
// stands in for it.
func TestSetupWarnsOnceAboutLix(t *testing.T) {
	fakeNixStore(t, "nix-store (Lix, like Nix) 2.94.0")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("build-hook = /opt/offload\nbuilders =\n"), 0o644)
	env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none"), "NIX_REMOTE": "local"}
	stdout, stderr, code := run(t, nil, env, "setup", "--offline", "--hook", "/opt/offload")
	if code != ExitFailed {
		t.Errorf("setup with Lix 2.94: exit %d, want %d", code, ExitFailed)
	}
	if n := strings.Count(stdout+stderr, "Cap'n Proto"); n != 1 {
		t.Errorf("setup with Lix 2.94 says so %d times, want once:\n%s%s", n, stdout, stderr)
	}
	if !strings.Contains(stdout, "✗ found nix-store (Lix, like Nix) 2.94.0") {
		t.Errorf("setup output:\n%s", stdout)
	}
	stdout, _, _ = run(t, nil, env, "setup", "--offline", "--json", "--hook", "/opt/offload")
	var r setupReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if r.NixSupported || r.NixVersion != "nix-store (Lix, like Nix) 2.94.0" {
		t.Errorf("--json: nixSupported %v, nixVersion %q", r.NixSupported, r.NixVersion)
	}
}

func TestSetupNamesMissingIdentity(t *testing.T) {
	fakeNixStore(t, "nix-store (Nix) 2.34.0")
	dir := t.TempDir()
	key := filepath.Join(dir, "no-such-key")
	os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("build-hook = /opt/offload\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "machines"), []byte("ssh://b1 x86_64-linux "+key+" 1 1 - - c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSURwUjd5a2JzMGE2TVRsZ0ZmWWt2TFRFSHJmTzZ3d0xpY01OYzZ2M1pSUDQK\n"), 0o644)
	env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none"), "NIX_REMOTE": "local", "HOME": dir}
	stdout, _, code := run(t, nil, env, "setup", "--offline", "--hook", "/opt/offload")
	if code != ExitFailed || !strings.Contains(stdout, "identity file "+key+" (machines file") || !strings.Contains(stdout, "ssh-keygen -t ed25519 -f "+key) {
		t.Errorf("setup with a missing identity file: exit %d\n%s", code, stdout)
	}
	os.WriteFile(key, []byte("not read by setup"), 0o600)
	stdout, _, code = run(t, nil, env, "setup", "--offline", "--hook", "/opt/offload")
	if code != ExitOK || strings.Contains(stdout, "identity file") {
		t.Errorf("setup with the identity file present: exit %d\n%s", code, stdout)
	}
}

// A builder whose host key is not pinned in its machines line but that
// setup reached through known_hosts (Nix's own default) is no failure:
// setup --write exits 0 and says, as a hint, how to pin the key that
// verified. Unverified, it stays a failure.
func TestSetupHostKeyFromKnownHosts(t *testing.T) {
	fakeNixStore(t, "nix-store (Nix) 2.34.0")
	const pin = "c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSURwUjd5a2JzMGE2TVRsZ0ZmWWt2TFRFSHJmTzZ3d0xpY01OYzZ2M1pSUDQK"
	defer func(f func(context.Context, spec.Machine, ssh.Options) (string, string, string)) {
		testOnlyProbeTrust = f
	}(testOnlyProbeTrust)
	for _, tt := range []struct {
		name                     string
		trusted, detail, hostKey string
		code                     int
		want                     []string
	}{
		{"verified", "yes", "", pin, ExitOK, []string{
			"✓ b1: host key verified through known_hosts (not pinned in the machines line)\n",
			"       hint: to pin it, put " + pin + " in field 8 of b1's machines line",
			"✓ b1: the SSH user is trusted there",
		}},
		{"not reached", "unknown", "ssh: b1: host key unknown", "", ExitFailed, []string{
			"✗ b1: no host key pinned in the machines line",
			"       fix: add field 8: base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub (run on b1)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testOnlyProbeTrust = func(context.Context, spec.Machine, ssh.Options) (string, string, string) {
				return tt.trusted, tt.detail, tt.hostKey
			}
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("build-hook = /opt/offload\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "machines"), []byte("ssh://b1 x86_64-linux - 1 1\n"), 0o644)
			env := map[string]string{"NIX_CONF_DIR": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none"), "NIX_REMOTE": "local", "HOME": dir}
			stdout, stderr, code := run(t, nil, env, "setup", "--write", "--hook", "/opt/offload")
			if code != tt.code {
				t.Errorf("setup --write: exit %d, want %d\n%s%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("setup --write does not say %q:\n%s", w, stdout)
				}
			}
			stdout, _, _ = run(t, nil, env, "setup", "--json", "--hook", "/opt/offload")
			var r setupReport
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("--json: %v\n%s", err, stdout)
			}
			hinted := false
			for _, s := range r.Steps {
				hinted = hinted || (s.OK && strings.Contains(s.Hint, pin))
			}
			if hinted != (tt.hostKey != "") {
				t.Errorf("--json: a step hinting at the pin: %v, want %v\n%s", hinted, tt.hostKey != "", stdout)
			}
		})
	}
}

// Every command people type says in one line what it is for, and shows
// an example, in its --help.
func TestEveryCommandHelpHasPurposeAndExample(t *testing.T) {
	parser, err := kong.New(&CLI{}, kong.Name("offload"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range parser.Model.Children {
		if cmd.Hidden {
			continue
		}
		stdout, _, code := run(t, nil, nil, cmd.Name, "--help")
		if code != 0 {
			t.Errorf("offload %s --help: exit %d", cmd.Name, code)
		}
		if cmd.Help == "" || strings.Contains(cmd.Help, "\n") {
			t.Errorf("offload %s: purpose %q, want one line", cmd.Name, cmd.Help)
		}
		if !strings.Contains(stdout, "Example") || !strings.Contains(stdout, "offload "+cmd.Name) {
			t.Errorf("offload %s --help has no example:\n%s", cmd.Name, stdout)
		}
	}
}
