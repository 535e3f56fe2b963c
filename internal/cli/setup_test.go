// SPDX-License-Identifier: MIT

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
