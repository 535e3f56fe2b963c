// SPDX-License-Identifier: MIT

package ssh

// Test harness: a real OpenSSH sshd, started inetd-style with "sshd -i"
// for every TCP connection accepted on 127.0.0.1:0, so tests need no
// fixed port and no running sshd. As root, sshd -i needs /run/sshd.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/spec"
)

func TestMain(m *testing.M) {
	// The test binary doubles as a ProxyCommand: "proxy HOST PORT".
	if os.Getenv("OFFLOAD_SSH_TEST_PROXY") == "1" {
		os.Exit(proxyMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func proxyMain(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: proxy HOST PORT")
		return 2
	}
	c, err := net.Dial("tcp", net.JoinHostPort(args[0], args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
	return 0
}

type sshdServer struct {
	t        *testing.T
	dir      string
	cfg      string
	addr     *net.TCPAddr
	hostPub  gossh.PublicKey
	hostLine string // "ssh-ed25519 AAAA…"
	conns    atomic.Int32
	log      bytes.Buffer
	mu       sync.Mutex
}

// keygen runs ssh-keygen to make a key pair and returns the private key
// path.
func keygen(t testing.TB, dir, name, typ, pass string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	args := []string{"-q", "-t", typ, "-N", pass, "-C", name, "-f", p}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
	}
	return p
}

func readPubKey(t testing.TB, path string) (gossh.PublicKey, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

func needSSHD(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sshd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/sshd"); err2 == nil {
			p = "/usr/sbin/sshd"
		} else {
			testenv.Skip(t, "sshd not found (%v): install openssh-server to run tests against real OpenSSH", err)
		}
	}
	if os.Getuid() == 0 {
		// sshd's privilege separation directory; Debian creates it
		// at service start, which has not happened in a container.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			testenv.Skip(t, "sshd -i as root needs /run/sshd: %v", err)
		}
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		testenv.Skip(t, "ssh-keygen not found: %v", err)
	}
	return p
}

type serverOpts struct {
	hostKeyType string   // default ed25519
	clientPubs  []string // authorized_keys lines
	hostCert    string   // CA private key path: sign the host key with it
	extra       string   // more sshd_config lines
}

// startSSHD starts a server. Close happens in t.Cleanup.
func startSSHD(t testing.TB, o serverOpts) *sshdServer {
	t.Helper()
	sshd := needSSHD(t)
	dir := t.TempDir()
	typ := o.hostKeyType
	if typ == "" {
		typ = "ed25519"
	}
	hk := keygen(t, dir, "host_"+typ, typ, "")
	s := &sshdServer{dir: dir}
	s.hostPub, s.hostLine = readPubKey(t, hk+".pub")
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), []byte(strings.Join(o.clientPubs, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// HOME points into the test directory so the session's shell does
	// not run the real user's rc files (slow or noisy ones would
	// distort the tests and the benchmark).
	cfg := fmt.Sprintf(`HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
LogLevel ERROR
AllowTcpForwarding yes
SetEnv HOME=%s
`, hk, filepath.Join(dir, "authorized_keys"), dir)
	if o.hostCert != "" {
		args := []string{"-q", "-s", o.hostCert, "-I", "testhost", "-h", "-n", "127.0.0.1", hk + ".pub"}
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
		cfg += "HostCertificate " + hk + "-cert.pub\n"
	}
	cfg += o.extra
	s.cfg = filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(s.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshd, "-t", "-f", s.cfg).CombinedOutput(); err != nil {
		testenv.Skip(t, "sshd -t rejects the test config: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().(*net.TCPAddr)
	var wg sync.WaitGroup
	var procs sync.Map
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				continue
			}
			cmd := exec.Command(sshd, "-i", "-e", "-f", s.cfg)
			cmd.Stdin, cmd.Stdout = f, f
			cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.log}
			if err := cmd.Start(); err != nil {
				f.Close()
				continue
			}
			f.Close()
			procs.Store(cmd, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmd.Wait()
				procs.Delete(cmd)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		procs.Range(func(k, _ any) bool {
			k.(*exec.Cmd).Process.Signal(os.Interrupt)
			return true
		})
		wg.Wait()
		s.mu.Lock()
		if s.log.Len() > 0 {
			t.Logf("sshd stderr:\n%s", s.log.String())
		}
		s.mu.Unlock()
	})
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// clientEnv is a client side: a home directory with .ssh, a key, and no
// agent, system config or global known_hosts.
type clientEnv struct {
	home, key, pubLine string
	env                map[string]string
	etc                string
}

func newClient(t testing.TB) *clientEnv {
	t.Helper()
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	key := keygen(t, home, "id_test", "ed25519", "")
	_, line := readPubKey(t, key+".pub")
	return &clientEnv{home: home, key: key, pubLine: line, etc: t.TempDir(),
		env: map[string]string{}}
}

func (c *clientEnv) options() Options {
	return Options{
		Env:    func(k string) string { return c.env[k] },
		Home:   c.home,
		etcDir: c.etc,
	}
}

func (c *clientEnv) write(t testing.TB, rel, text string) string {
	t.Helper()
	p := filepath.Join(c.home, rel)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func currentUser(t testing.TB) string {
	u, err := user.Current()
	if err != nil {
		testenv.Skip(t, "no current user: %v", err)
	}
	return u.Username
}

func (s *sshdServer) machine(t testing.TB, c *clientEnv, pin bool) spec.Machine {
	m := spec.Machine{Scheme: "ssh", Host: "127.0.0.1", Port: s.addr.Port, User: currentUser(t), SSHKey: c.key}
	m.Name = m.Host
	if pin {
		m.PublicHostKey = base64.StdEncoding.EncodeToString([]byte(s.hostLine + "\n"))
	}
	return m
}

func writeFile(p, text string) error {
	return os.WriteFile(p, []byte(text), 0o600)
}
