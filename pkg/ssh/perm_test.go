// SPDX-License-Identifier: MIT

package ssh

// These tests pin what keeps a local user from running code as root or
// vouching for a builder through files root reads: the home directory
// comes from the user database, and config, identity and known_hosts
// files that another user can change are refused (OpenSSH readconf.c
// "Bad owner or permissions", authfile.c sshkey_perm_ok).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/spec"
)

// asNobody runs a shell script as the user nobody, for files another
// local user owns (testenv.Nobody says when it cannot).
func asNobody(t *testing.T, script string, args ...string) {
	t.Helper()
	argv := append(testenv.Nobody(t), append([]string{"/bin/sh", "-ec", script, "sh"}, args...)...)
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("setpriv %q: %v\n%s", argv, err, out)
	}
}

// sharedDir returns an empty directory that nobody may write in.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestHomeOfAnotherUser: root running with another user's HOME (sudo
// -E, su) must not read that user's ~/.ssh/config, whose ProxyCommand
// would run as root.
func TestHomeOfAnotherUser(t *testing.T) {
	c := newClient(t)
	home := sharedDir(t)
	marker := filepath.Join(t.TempDir(), "ran-as-root")
	asNobody(t, `mkdir -m 700 "$1/.ssh"; printf 'Host 127.0.0.1\n  ProxyCommand touch %s; exec cat\n' "$2" >"$1/.ssh/config"`, home, marker)

	// Only the environment names that home; no Home option.
	o := Options{Env: func(k string) string { return map[string]string{"HOME": home}[k] }, etcDir: c.etc}
	m := spec.Machine{Host: "127.0.0.1", Port: testenv.ClosedPort(t), SSHKey: c.key}
	s, err := Resolve(m, o)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if s.ProxyCommand != "" || strings.HasPrefix(s.home, home) {
		t.Errorf("Resolve with HOME=%s: home %s, ProxyCommand %q; want the user database's home", home, s.home, s.ProxyCommand)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := Dial(ctx, m, o); err == nil {
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("another user's ProxyCommand ran as uid %d", os.Getuid())
	}
}

// TestConfigOwnerAndMode: a config file another user owns or that group
// or others can write is refused, as ssh(1) refuses it.
func TestConfigOwnerAndMode(t *testing.T) {
	c := newClient(t)
	cfg := filepath.Join(c.home, ".ssh", "config")
	for _, mode := range []os.FileMode{0o664, 0o646, 0o620} {
		c.write(t, ".ssh/config", "Host b1\n  HostName 10.0.0.1\n")
		if err := os.Chmod(cfg, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Resolve(spec.Machine{Host: "b1"}, c.options())
		if err == nil || !strings.Contains(err.Error(), "bad owner or permissions on "+cfg) || !strings.Contains(err.Error(), "chmod go-w "+cfg) {
			t.Errorf("Resolve with a config of mode %#o = %v, want it refused with chmod go-w", mode, err)
		}
	}
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Resolve(spec.Machine{Host: "b1"}, c.options()); err != nil || s.HostName != "10.0.0.1" {
		t.Errorf("Resolve with a config of mode 0644 = %v; want it read", err)
	}

	// Owned by another user, in a home the options name: refused too.
	home := sharedDir(t)
	asNobody(t, `mkdir -m 700 "$1/.ssh"; printf 'Host b1\n  HostName 10.0.0.2\n' >"$1/.ssh/config"; chmod 755 "$1/.ssh"`, home)
	o := c.options()
	o.Env = func(k string) string { return map[string]string{"HOME": home}[k] }
	o.Home = home
	_, err := Resolve(spec.Machine{Host: "b1"}, o)
	if err == nil || !strings.Contains(err.Error(), "bad owner or permissions on "+filepath.Join(home, ".ssh", "config")) {
		t.Errorf("Resolve with a config owned by nobody = %v, want it refused", err)
	}
}

// TestIdentityFileTooOpen: a private key others can read is not used.
func TestIdentityFileTooOpen(t *testing.T) {
	c := newClient(t)
	if err := os.Chmod(c.key, 0o644); err != nil {
		t.Fatal(err)
	}
	m := spec.Machine{Host: "127.0.0.1", Port: testenv.ClosedPort(t), SSHKey: c.key}
	_, err := Dial(context.Background(), m, c.options())
	if kindOf(err) != Auth || !strings.Contains(err.Error(), "chmod 600 "+c.key) {
		t.Fatalf("Dial with a key of mode 0644 = %v, want an Auth error saying chmod 600", err)
	}
}

// TestKnownHostsNotTrusted: accept-new never writes through a symlink,
// and a known_hosts file others can write vouches for nothing.
func TestKnownHostsNotTrusted(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	kh := filepath.Join(c.home, ".ssh", "known_hosts")
	m := s.machine(t, c, false)

	planted := c.write(t, "planted", "")
	os.Remove(kh)
	if err := os.Symlink(planted, kh); err != nil {
		t.Fatal(err)
	}
	c.env["NIX_SSHOPTS"] = "-o StrictHostKeyChecking=accept-new"
	if _, _, err := run(t, m, c.options(), "true"); kindOf(err) != HostKey {
		t.Errorf("accept-new with a symlinked known_hosts: %v, want HostKey error", err)
	}
	if data, _ := os.ReadFile(planted); len(data) != 0 {
		t.Errorf("accept-new wrote %q through a symlink", data)
	}

	os.Remove(kh)
	c.env["NIX_SSHOPTS"] = ""
	line := fmt.Sprintf("[127.0.0.1]:%d %s\n", s.addr.Port, s.hostLine)
	c.write(t, ".ssh/known_hosts", line)
	if err := os.Chmod(kh, 0o666); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, m, c.options(), "true")
	if kindOf(err) != HostKey {
		t.Errorf("known_hosts of mode 0666: %v, want HostKey error", err)
	}
	if err := os.Chmod(kh, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, m, c.options(), "true"); err != nil {
		t.Errorf("known_hosts of mode 0644: %v", err)
	}
}

// TestConfigIncludeChecked: files a config includes pass the same check
// (ssh(1) reads them with the same flags).
func TestConfigIncludeChecked(t *testing.T) {
	c := newClient(t)
	extra := c.write(t, ".ssh/extra", "Host b1\n  HostName 10.0.0.9\n")
	c.write(t, ".ssh/config", "Include "+filepath.Join(c.home, ".ssh", "ext*")+"\n")
	if s, err := Resolve(spec.Machine{Host: "b1"}, c.options()); err != nil || s.HostName != "10.0.0.9" {
		t.Fatalf("Resolve with an included file of mode 0600 = %v; want it read", err)
	}
	if err := os.Chmod(extra, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := Resolve(spec.Machine{Host: "b1"}, c.options())
	if err == nil || !strings.Contains(err.Error(), "bad owner or permissions on "+extra) {
		t.Errorf("Resolve with an included file of mode 0666 = %v, want it refused", err)
	}
	// Included from an included file.
	c.write(t, ".ssh/config", "Host *\n  Include "+filepath.Join(c.home, ".ssh", "middle")+"\n")
	c.write(t, ".ssh/middle", "Include "+extra+"\n")
	_, err = Resolve(spec.Machine{Host: "b1"}, c.options())
	if err == nil || !strings.Contains(err.Error(), "bad owner or permissions on "+extra) {
		t.Errorf("Resolve with a file of mode 0666 included twice over = %v, want it refused", err)
	}
}
