// SPDX-License-Identifier: MIT

package ssh

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/spec"
)

// run dials m, runs cmd and returns stdout, stderr and Wait's error.
func run(t *testing.T, m spec.Machine, o Options, cmd string) (string, string, error) {
	t.Helper()
	ctx := context.Background()
	c, err := Dial(ctx, m, o)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	s, err := c.Start(ctx, []string{cmd})
	if err != nil {
		return "", "", err
	}
	s.Stdin.Close()
	var stderr []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); stderr, _ = io.ReadAll(s.Stderr) }()
	stdout, _ := io.ReadAll(s.Stdout)
	wg.Wait()
	return string(stdout), string(stderr), s.Wait()
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return -1
}

func TestRemoteCommandStreams(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	m := s.machine(t, c, true) // pinned key, empty known_hosts
	out, errOut, err := run(t, m, c.options(), "echo out; echo err >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("Wait() = %v, want exit status 3", err)
	}
	if out != "out\n" || errOut != "err\n" {
		t.Errorf("stdout %q stderr %q, want \"out\\n\" \"err\\n\"", out, errOut)
	}
	out, _, err = run(t, m, c.options(), "cat /dev/null; echo ok")
	if err != nil || out != "ok\n" {
		t.Errorf("second run: %q, %v", out, err)
	}
}

func TestHostKeyRefused(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	otherDir := t.TempDir()
	_, otherEd := readPubKey(t, keygen(t, otherDir, "other_ed", "ed25519", "")+".pub")
	_, otherEC := readPubKey(t, keygen(t, otherDir, "other_ec", "ecdsa", "")+".pub")
	kh := filepath.Join(c.home, ".ssh", "known_hosts")
	hostPort := fmt.Sprintf("[127.0.0.1]:%d", s.addr.Port)
	fp := gossh.FingerprintSHA256(s.hostPub)

	tests := []struct {
		name       string
		pin        string // key line to pin
		knownHosts string
		want       []string // substrings of the error
	}{
		{"pinned wrong key", otherEd, "", []string{"machines file pins", fp}},
		{"pinned wrong type", otherEC, "", []string{"no ecdsa-sha2-nistp256 host key"}},
		{"unknown", "", "", []string{"unknown", fp, kh}},
		{"unknown, entry for port 22 only", "", "127.0.0.1 " + s.hostLine + "\n", []string{"unknown", fp}},
		{"changed", "", hostPort + " " + otherEd + "\n", []string{"CHANGED", fp, kh + ":1"}},
		{"changed type", "", hostPort + " " + otherEC + "\n", []string{"CHANGED", kh + ":1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write(t, ".ssh/known_hosts", tt.knownHosts)
			m := s.machine(t, c, false)
			if tt.pin != "" {
				m.PublicHostKey = base64.StdEncoding.EncodeToString([]byte(tt.pin))
			}
			_, _, err := run(t, m, c.options(), "true")
			if kindOf(err) != HostKey {
				t.Fatalf("err = %v (kind %v), want kind HostKey", err, kindOf(err))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestKnownHostsAccepted(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	hostPort := fmt.Sprintf("[127.0.0.1]:%d", s.addr.Port)
	tests := []struct {
		name, knownHosts, config string
	}{
		{"plain [host]:port", hostPort + " " + s.hostLine + "\n", ""},
		{"hashed", knownhosts.HashHostname(hostPort) + " " + s.hostLine + "\n", ""},
		{"among others", "other " + s.hostLine + "\n" + hostPort + " " + s.hostLine + "\n", ""},
		{"HostKeyAlias", "builder-alias " + s.hostLine + "\n", "Host 127.0.0.1\n  HostKeyAlias builder-alias\n"},
		{"global file", "", "GlobalKnownHostsFile " + filepath.Join(c.home, "global") + "\n"},
	}
	c.write(t, "global", hostPort+" "+s.hostLine+"\n")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write(t, ".ssh/known_hosts", tt.knownHosts)
			c.write(t, ".ssh/config", tt.config)
			out, _, err := run(t, s.machine(t, c, false), c.options(), "echo hi")
			if err != nil || out != "hi\n" {
				t.Fatalf("run = %q, %v", out, err)
			}
		})
	}
	// The client names the key that verified, for offload setup to say
	// how to pin it.
	cl, err := Dial(context.Background(), s.machine(t, c, false), c.options())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if k := cl.HostKey(); k == nil || strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k))) != s.hostLine {
		t.Errorf("HostKey() = %v, want %s", k, s.hostLine)
	}
}

func TestAcceptNew(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	kh := filepath.Join(c.home, ".ssh", "known_hosts")
	os.Remove(kh)
	c.env["NIX_SSHOPTS"] = "-o StrictHostKeyChecking=accept-new"
	m := s.machine(t, c, false)
	for i := 0; i < 2; i++ {
		if _, _, err := run(t, m, c.options(), "true"); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	data, _ := os.ReadFile(kh)
	if n := strings.Count(string(data), "\n"); n != 1 || !strings.Contains(string(data), s.hostLine) {
		t.Fatalf("known_hosts = %q, want one line with the host key", data)
	}
	// A changed key is still refused.
	_, other := readPubKey(t, keygen(t, t.TempDir(), "other", "ed25519", "")+".pub")
	c.write(t, ".ssh/known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", s.addr.Port, other))
	if _, _, err := run(t, m, c.options(), "true"); kindOf(err) != HostKey {
		t.Errorf("changed key with accept-new: %v, want HostKey error", err)
	}
	// StrictHostKeyChecking=no does not turn verification off.
	c.env["NIX_SSHOPTS"] = "-oStrictHostKeyChecking=no"
	c.write(t, ".ssh/known_hosts", "")
	if _, _, err := run(t, m, c.options(), "true"); kindOf(err) != HostKey {
		t.Errorf("StrictHostKeyChecking=no: %v, want HostKey error", err)
	}
}

func TestCertAuthority(t *testing.T) {
	c := newClient(t)
	ca := keygen(t, t.TempDir(), "ca", "ed25519", "")
	_, caLine := readPubKey(t, ca+".pub")
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}, hostCert: ca})
	c.write(t, ".ssh/known_hosts", fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s\n", s.addr.Port, caLine))
	out, _, err := run(t, s.machine(t, c, false), c.options(), "echo cert")
	if err != nil || out != "cert\n" {
		t.Fatalf("with @cert-authority: %q, %v", out, err)
	}
	// A CA for another host does not vouch for this one.
	c.write(t, ".ssh/known_hosts", "@cert-authority other.example "+caLine+"\n")
	if _, _, err := run(t, s.machine(t, c, false), c.options(), "true"); kindOf(err) != HostKey {
		t.Errorf("CA for another host: %v, want HostKey error", err)
	}
}

func startAgent(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		testenv.Skip(t, "ssh-agent not found: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("ssh-agent did not create its socket")
	return ""
}

func TestAgentAndEncryptedKey(t *testing.T) {
	c := newClient(t)
	enc := keygen(t, c.home, "id_enc", "ecdsa", "secret")
	_, encLine := readPubKey(t, enc+".pub")
	rsa := keygen(t, c.home, "id_rsa_test", "rsa", "")
	_, rsaLine := readPubKey(t, rsa+".pub")
	s := startSSHD(t, serverOpts{clientPubs: []string{encLine, rsaLine}})
	m := s.machine(t, c, true)

	// Encrypted key, no agent: a clear error, at once.
	m.SSHKey = enc
	start := time.Now()
	_, _, err := run(t, m, c.options(), "true")
	if kindOf(err) != Auth || !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), "ssh-add") {
		t.Fatalf("encrypted key without agent: %v, want an Auth error that says to ssh-add it", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}

	// RSA key file.
	m.SSHKey = rsa
	if out, _, err := run(t, m, c.options(), "echo rsa"); err != nil || out != "rsa\n" {
		t.Fatalf("rsa key: %q, %v", out, err)
	}

	// The same encrypted key held by a real ssh-agent.
	sock := startAgent(t)
	add := exec.Command("ssh-add", enc)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock, "SSH_ASKPASS_REQUIRE=force", "SSH_ASKPASS="+c.write(t, "askpass", "#!/bin/sh\necho secret\n"), "DISPLAY=x")
	os.Chmod(filepath.Join(c.home, "askpass"), 0o700)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	c.env["SSH_AUTH_SOCK"] = sock
	m.SSHKey = enc
	if out, _, err := run(t, m, c.options(), "echo agent"); err != nil || out != "agent\n" {
		t.Fatalf("encrypted key via agent: %q, %v", out, err)
	}
	// Agent key alone (no identity file given, no default files).
	m.SSHKey = ""
	if out, _, err := run(t, m, c.options(), "echo agent"); err != nil || out != "agent\n" {
		t.Fatalf("agent key: %q, %v", out, err)
	}
	// IdentitiesOnly with a file the server refuses: the agent's key is not offered.
	m.SSHKey = c.key
	c.env["NIX_SSHOPTS"] = "-o IdentitiesOnly=yes"
	if _, _, err := run(t, m, c.options(), "true"); kindOf(err) != Auth {
		t.Fatalf("IdentitiesOnly: %v, want Auth error", err)
	}
}

func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := newClient(t)
	m := spec.Machine{Host: "127.0.0.1", Port: port, SSHKey: c.key}
	start := time.Now()
	_, err = Dial(context.Background(), m, c.options())
	if kindOf(err) != Refused {
		t.Fatalf("Dial = %v, want kind Refused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused after %v", d)
	}
}

func TestTimeout(t *testing.T) {
	// Accepts TCP and never says a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c := newClient(t)
	c.env["NIX_SSHOPTS"] = "-o ConnectTimeout=1"
	m := spec.Machine{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, SSHKey: c.key}
	start := time.Now()
	_, err = Dial(context.Background(), m, c.options())
	d := time.Since(start)
	if kindOf(err) != Timeout {
		t.Fatalf("Dial = %v, want kind Timeout", err)
	}
	if d < time.Second || d > 2*time.Second {
		t.Errorf("timed out after %v, want about 1s", d)
	}
	if !strings.Contains(err.Error(), "ConnectTimeout") {
		t.Errorf("error %q does not name ConnectTimeout", err)
	}
}

// stallProxy forwards TCP to target until stall is closed, then holds
// the connections open without forwarding anything.
type stallProxy struct {
	ln    net.Listener
	stall chan struct{}
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, stall: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); u.Close() })
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					select {
					case <-p.stall:
						<-make(chan struct{}) // hold forever (until cleanup closes)
					default:
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return p
}

func TestKeepalive(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	p := newStallProxy(t, s.addr.String())
	m := s.machine(t, c, true)
	m.Port = p.ln.Addr().(*net.TCPAddr).Port
	c.env["NIX_SSHOPTS"] = "-o ServerAliveInterval=1 -o ServerAliveCountMax=2"
	ctx := context.Background()
	cl, err := Dial(ctx, m, c.options())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.Start(ctx, []string{"sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	close(p.stall)
	start := time.Now()
	go io.Copy(io.Discard, sess.Stderr)
	go io.Copy(io.Discard, sess.Stdout)
	err = sess.Wait()
	d := time.Since(start)
	if kindOf(err) != Timeout || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("Wait = %v, want a keepalive Timeout", err)
	}
	if d > 5*time.Second {
		t.Errorf("noticed after %v, want about 2-3s", d)
	}
}

func TestProxyJump(t *testing.T) {
	c := newClient(t)
	jump := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	target := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}, hostKeyType: "ecdsa"})
	// The jump host is verified through known_hosts and uses the default identity.
	c.write(t, ".ssh/known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", jump.addr.Port, jump.hostLine))
	os.Rename(c.key, filepath.Join(c.home, ".ssh", "id_ed25519"))
	c.key = filepath.Join(c.home, ".ssh", "id_ed25519")
	m := target.machine(t, c, true)
	c.env["NIX_SSHOPTS"] = fmt.Sprintf("-J %s@127.0.0.1:%d", currentUser(t), jump.addr.Port)
	out, _, err := run(t, m, c.options(), "echo through")
	if err != nil || out != "through\n" {
		t.Fatalf("via ProxyJump: %q, %v", out, err)
	}
	if n := jump.conns.Load(); n != 1 {
		t.Errorf("jump host saw %d connections, want 1", n)
	}
	// Two hops: jump, jump, target.
	c.env["NIX_SSHOPTS"] = fmt.Sprintf("-J 127.0.0.1:%d,%s@127.0.0.1:%d", jump.addr.Port, currentUser(t), jump.addr.Port)
	if out, _, err := run(t, m, c.options(), "echo twice"); err != nil || out != "twice\n" {
		t.Fatalf("via two hops: %q, %v", out, err)
	}
	if n := jump.conns.Load(); n != 3 {
		t.Errorf("jump host saw %d connections, want 3", n)
	}
}

func TestProxyCommand(t *testing.T) {
	c := newClient(t)
	s := startSSHD(t, serverOpts{clientPubs: []string{c.pubLine}})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c.write(t, ".ssh/config", fmt.Sprintf("Host 127.0.0.1\n  ProxyCommand env OFFLOAD_SSH_TEST_PROXY=1 %s %%h %%p\n", exe))
	out, _, err := run(t, s.machine(t, c, true), c.options(), "echo proxied")
	if err != nil || out != "proxied\n" {
		t.Fatalf("via ProxyCommand: %q, %v", out, err)
	}
	// A proxy command that fails says why.
	c.write(t, ".ssh/config", "Host 127.0.0.1\n  ProxyCommand echo no route to builder >&2; exit 1\n")
	_, _, err = run(t, s.machine(t, c, true), c.options(), "true")
	if err == nil || !strings.Contains(err.Error(), "no route to builder") {
		t.Fatalf("failing ProxyCommand: %v, want its stderr in the error", err)
	}
}

func TestLocalhost(t *testing.T) {
	c := newClient(t)
	out, errOut, err := run(t, spec.Machine{Host: "localhost"}, c.options(), "echo local; echo e >&2; exit 4")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 4 || out != "local\n" || errOut != "e\n" {
		t.Fatalf("localhost: %q %q %v, want local process output and exit 4", out, errOut, err)
	}
	// localhost with a user or port is an ordinary SSH host.
	s, err := Resolve(spec.Machine{Host: "localhost", User: "root"}, c.options())
	if err != nil || s.Local {
		t.Errorf("root@localhost: Local = %v, %v; want SSH", s != nil && s.Local, err)
	}
}

// TestProxyCommandMetachars: %h, %n and %r never bring shell syntax into
// a ProxyCommand (OpenSSH 9.6 ssh.c valid_hostname and valid_ruser, the
// fix for CVE-2023-51385).
func TestProxyCommandMetachars(t *testing.T) {
	c := newClient(t)
	marker := filepath.Join(t.TempDir(), "ran")
	c.write(t, ".ssh/config", "Host *\n  ProxyCommand true %h %r\n")
	for _, m := range []spec.Machine{
		{Host: "b1;touch " + marker},
		{Host: "b1`touch " + marker + "`"},
		{Host: "b1$(touch " + marker + ")"},
		{Host: "-oProxyCommand=x"},
		{Host: "b1", User: "u;touch " + marker},
		{Host: "b1", User: "u|touch " + marker},
	} {
		m.SSHKey = c.key
		_, err := Dial(context.Background(), m, c.options())
		if err == nil || !strings.Contains(err.Error(), "ProxyCommand") || !strings.Contains(err.Error(), "shell") {
			t.Errorf("Dial(%s@%s) = %v, want the ProxyCommand refused", m.User, m.Host, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a host or user name ran a command through ProxyCommand")
	}
}
