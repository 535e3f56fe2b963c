// SPDX-License-Identifier: MIT

package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
	gossh "golang.org/x/crypto/ssh"
)

func TestCompareCapabilities(t *testing.T) {
	tests := []struct {
		line     string
		system   string
		extra    []string
		features []string
		want     []string // substrings, one per problem
	}{
		{"ssh://b1 x86_64-linux,aarch64-linux - 1 1 kvm", "x86_64-linux", []string{"aarch64-linux", "i686-linux"}, []string{"kvm", "big-parallel"}, nil},
		{"ssh://b1 x86_64-linux - 1 1", "x86_64-linux", nil, nil, nil},
		{"ssh://b1 aarch64-linux,riscv64-linux - 1 1", "x86_64-linux", []string{"aarch64-linux"}, nil,
			[]string{"lists riscv64-linux, which it does not build (system x86_64-linux, extra-platforms aarch64-linux)"}},
		{"ssh://b1 x86_64-linux - 1 1 kvm,benchmark benchmark", "x86_64-linux", nil, []string{"big-parallel"},
			[]string{"lists features benchmark, kvm, which it lacks (system-features big-parallel)"}},
		{"ssh://b1 aarch64-linux - 1 1 kvm", "x86_64-linux", nil, nil,
			[]string{"extra-platforms none", "feature kvm, which it lacks (system-features none)"}},
	}
	for _, tt := range tests {
		ms, _, err := spec.ParseBuilders(tt.line, spec.Options{LocalSystem: "x86_64-linux"})
		if err != nil {
			t.Fatal(err)
		}
		got := compareCapabilities(ms[0], tt.system, tt.extra, tt.features)
		if len(got) != len(tt.want) {
			t.Errorf("compareCapabilities(%q) = %q, want %d problems", tt.line, got, len(tt.want))
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tt.want[i]) {
				t.Errorf("compareCapabilities(%q)[%d] = %q, want it to contain %q", tt.line, i, got[i], tt.want[i])
			}
		}
	}
}

// listen serves every connection on a local port with serve until the
// test ends, and returns the port.
func listen(t *testing.T, serve func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func newHostKey(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientKeyPEM is a new unencrypted private key in OpenSSH's format.
func clientKeyPEM(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// Connection failures: each is a ✗ with its class, recorded in the slot
// file, and found within the connect timeout. The SSH server is
// x/crypto's, which gets as far as the host key; the real builder cases
// are in internal/e2e.
func TestCheckFailures(t *testing.T) {
	offered := newHostKey(t)
	other := newHostKey(t)
	sshPort := listen(t, func(c net.Conn) {
		cfg := &gossh.ServerConfig{NoClientAuth: true}
		cfg.AddHostKey(offered)
		gossh.NewServerConn(c, cfg)
		c.Close()
	})
	silentPort := listen(t, func(c net.Conn) {
		time.Sleep(5 * time.Second)
		c.Close()
	})
	refused := testenv.ClosedPort(t)

	h := newTestHome(t, pickNixConf)
	h.write(t, "etc/offload.conf", "connect-timeout = 700ms\n")
	h.write(t, "id_client", clientKeyPEM(t))
	// A private key others can read is not used.
	if err := os.Chmod(filepath.Join(h.dir, "id_client"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NIX_SSHOPTS": "-i " + filepath.Join(h.dir, "id_client")}
	builders := strings.Join([]string{
		"ssh://root@127.0.0.1:" + strconv.Itoa(refused) + " x86_64-linux",
		"ssh://root@127.0.0.1:" + strconv.Itoa(sshPort) + " x86_64-linux - 1 1 - - " + ssh.PinnedKey(other.PublicKey()),
		"ssh://root@127.0.0.1:" + strconv.Itoa(silentPort) + " x86_64-linux",
		"ssh-ng://root@127.0.0.1:" + strconv.Itoa(refused) + " x86_64-linux",
	}, "\n")
	start := time.Now()
	code, stdout, stderr := h.run(t, env, "check", "--builders", builders, "--json")
	elapsed := time.Since(start)
	if code != ExitFailed {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitFailed, stdout, stderr)
	}
	// In parallel: the silent one's 700 ms bounds the whole.
	if elapsed > 3*time.Second {
		t.Errorf("check took %v, want about the connect timeout (700ms)", elapsed)
	}
	var got []checkResult
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout)
	}
	if len(got) != 4 {
		t.Fatalf("%d results, want 4:\n%s", len(got), stdout)
	}
	wantErr := []string{"refused", "host-key", "timeout", "refused"}
	for i, r := range got {
		if r.OK || r.Error != wantErr[i] || r.Reason == "" || len(r.Problems) != 1 || r.Protocol != "" {
			t.Errorf("result %d = %+v; want not ok, error %q, a reason", i, r, wantErr[i])
		}
	}
	fp := gossh.FingerprintSHA256(offered.PublicKey())
	if got[1].Fingerprint != fp || !strings.Contains(got[1].Reason, fp) {
		t.Errorf("host key result: fingerprint %q, reason %q; want the offered key's %s", got[1].Fingerprint, got[1].Reason, fp)
	}

	// The failures are in the shared state: hooks skip those builders
	// for a while.
	ms, _, err := spec.ParseBuilders(builders, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(h.env["OFFLOAD_STATE_DIR"], "slots"), ms, slots.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantCode := []slots.ErrCode{slots.ErrConnect, slots.ErrHostKey, slots.ErrTimeout, slots.ErrConnect}
	for i, b := range f.Snapshot(nil) {
		unhealthy := !b.UnhealthyUntil.IsZero() && b.UnhealthyUntil.After(time.Now())
		if b.LastError != wantCode[i] || unhealthy != (wantCode[i] != slots.ErrNone) {
			t.Errorf("slot record %s: last error %v, unhealthy until %v; want %v", b.URI, b.LastError, b.UnhealthyUntil, wantCode[i])
		}
	}

	// Text: one row per builder.
	code, stdout, _ = h.run(t, env, "check", "--builders", builders)
	if code != ExitFailed || strings.Count(stdout, "✗") != 4 || !strings.Contains(stdout, "0 of 4 fine") {
		t.Errorf("text output (exit %d):\n%s", code, stdout)
	}
}

func TestCheckUsage(t *testing.T) {
	h := newTestHome(t, pickNixConf)
	h.write(t, "ssh_config", "Host b1\n  HostName 10.0.0.7\n  Port 2222\n  User builder\n")
	sshopts := map[string]string{"NIX_SSHOPTS": "-F " + filepath.Join(h.dir, "ssh_config") + " -i /k/id_b1"}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"no builders", []string{"check", "--builders", ""}, ExitFailed, nil, "no builders"},
		{"unknown builder", []string{"check", "--builders", "ssh://b1 x86_64-linux", "b9"}, ExitUsage, nil, "b9"},
		{"bad line", []string{"check", "--builders", "ssh://b1 x86_64-linux - x", "--explain", "b1"}, ExitOK,
			[]string{"HostName               10.0.0.7", "ssh_config:2", "NIX_SSHOPTS -i"}, ""},
		{"explain a builder", []string{"check", "--builders", "ssh://b1 x86_64-linux - 1 1 - - " + ssh.PinnedKey(newHostKey(t).PublicKey()), "--explain", "b1"}, ExitOK,
			[]string{"builder ssh://b1", "Port                   2222", "User                   builder", "PinnedHostKey", "RemoteCommand          nix-store --serve --write"}, ""},
		{"explain any host", []string{"check", "--builders", "", "--explain", "b1"}, ExitOK,
			[]string{"not in the machines", "HostName               10.0.0.7"}, ""},
		{"explain two hosts", []string{"check", "--builders", "", "--explain", "b1 b2"}, ExitUsage, nil, "one host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := h.run(t, sshopts, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			if !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.stderr)
			}
		})
	}
}
