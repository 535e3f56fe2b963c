// SPDX-License-Identifier: MIT

package ssh

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

var splitTests = []struct {
	in   string
	want []string
	err  bool
}{
	{"", nil, false},
	{"-p 2222", []string{"-p", "2222"}, false},
	{"  -i  /k  -oPort=1\t", []string{"-i", "/k", "-oPort=1"}, false},
	{`-o 'ProxyCommand ssh -W %h:%p bastion'`, []string{"-o", "ProxyCommand ssh -W %h:%p bastion"}, false},
	{`-i "/my keys/id" -l a\ b`, []string{"-i", "/my keys/id", "-l", "a b"}, false},
	{`"a\"b\\c\d"`, []string{`a"b\c\d`}, false},
	{`x'y'"z"`, []string{"xyz"}, false},
	{`''`, []string{""}, false},
	{`'open`, nil, true},
	{`"open`, nil, true},
	{`end\`, nil, true},
}

func TestSplitShell(t *testing.T) {
	for _, tt := range splitTests {
		got, err := SplitShell(tt.in)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitShell(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzSplitShell(f *testing.F) {
	for _, tt := range splitTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitShell(s)
		if err != nil {
			return
		}
		// Quoting the words and splitting again gives the same words.
		var q []string
		for _, w := range words {
			q = append(q, Quote(w))
		}
		again, err := SplitShell(strings.Join(q, " "))
		if err != nil || !reflect.DeepEqual(again, words) {
			t.Errorf("SplitShell(Quote words of %q) = %q, %v; want %q", s, again, err, words)
		}
	})
}

// port is a TestResolve check that the port is want.
func port(want int) func(*Settings) string {
	return func(s *Settings) string {
		if s.Port != want {
			return fmt.Sprintf("port %d, want %d", s.Port, want)
		}
		return ""
	}
}

func TestResolve(t *testing.T) {
	c := newClient(t)
	ssh := filepath.Join(c.home, ".ssh")
	tests := []struct {
		name        string
		m           spec.Machine
		sshopts     string
		user, sys   string // ~/.ssh/config and /etc/ssh/ssh_config
		check       func(*Settings) string
		wantErr     string
		wantNote    string
		wantSources map[string]string
	}{
		{
			name: "defaults",
			m:    spec.Machine{Host: "b1"},
			check: func(s *Settings) string {
				if s.HostName != "b1" || s.Port != 22 || s.ConnectTimeout != 10*time.Second || s.ServerAliveInterval != 15*time.Second || s.ServerAliveCountMax != 3 || s.StrictHostKeyChecking != "yes" {
					return "wrong defaults"
				}
				want := []string{filepath.Join(ssh, "id_ed25519"), filepath.Join(ssh, "id_ecdsa"), filepath.Join(ssh, "id_rsa")}
				if !reflect.DeepEqual(s.IdentityFiles, want) {
					return "IdentityFiles " + strings.Join(s.IdentityFiles, " ")
				}
				if !reflect.DeepEqual(s.UserKnownHostsFiles, []string{filepath.Join(ssh, "known_hosts"), filepath.Join(ssh, "known_hosts2")}) {
					return "UserKnownHostsFiles"
				}
				return ""
			},
		},
		{
			name:    "command line beats user config beats system config",
			m:       spec.Machine{Host: "b1", User: "uri", SSHKey: "/machine-key"},
			sshopts: "-p 2000 -i /opt-key -o ConnectTimeout=3",
			user:    "Host b1\n  HostName 10.0.0.1\n  Port 3000\n  User cfg\n  IdentityFile ~/cfg-key\n  ConnectTimeout 5\n",
			sys:     "Host *\n  HostName wrong\n  ServerAliveInterval 7\n  IdentityFile /sys-key\n",
			check: func(s *Settings) string {
				if s.HostName != "10.0.0.1" || s.Port != 2000 || s.User != "uri" || s.ConnectTimeout != 3*time.Second || s.ServerAliveInterval != 7*time.Second {
					return "wrong values"
				}
				want := []string{"/opt-key", "/machine-key", filepath.Join(c.home, "cfg-key"), "/sys-key"}
				if !reflect.DeepEqual(s.IdentityFiles, want) {
					return "IdentityFiles " + strings.Join(s.IdentityFiles, " ")
				}
				return ""
			},
			wantSources: map[string]string{"port": "NIX_SSHOPTS -p", "user": "machine URI", "connecttimeout": "NIX_SSHOPTS -oConnectTimeout"},
		},
		{
			name:    "-l loses to the URI user, -p beats the URI port",
			m:       spec.Machine{Host: "b1", User: "uri", Port: 2222},
			sshopts: "-l opt -p 1",
			check: func(s *Settings) string {
				if s.User != "uri" || s.Port != 1 {
					return "wrong user or port"
				}
				return ""
			},
		},
		{
			name:        "first match in a file wins; config line in Sources",
			m:           spec.Machine{Host: "b1"},
			user:        "Host b*\n  Port 1\nHost b1\n  Port 2\n",
			check:       port(1),
			wantSources: map[string]string{"port": filepath.Join(ssh, "config") + ":2"},
		},
		{
			name:    "-F replaces both files",
			m:       spec.Machine{Host: "b1"},
			sshopts: "-F " + filepath.Join(c.home, "alt"),
			user:    "Port 9\n",
			sys:     "Port 8\n",
			check:   port(7),
		},
		{
			name:  "Match host, user, localuser, negation",
			m:     spec.Machine{Host: "b1", User: "bob"},
			user:  "Match host a*,!b2 user bob\n  Port 1\nMatch host b* !user bob\n  Port 2\nMatch originalhost b? localuser *\n  Port 3\n",
			check: port(3),
		},
		{
			name:     "Match exec is not evaluated and says so",
			m:        spec.Machine{Host: "b1"},
			user:     "Match exec \"true\"\n  Port 1\nHost b1\n  Port 2\n",
			wantNote: "Match exec \"true\" not evaluated",
			check:    port(2),
		},
		{
			name:     "StrictHostKeyChecking no is ignored",
			m:        spec.Machine{Host: "b1"},
			sshopts:  "-o StrictHostKeyChecking=no",
			wantNote: "ignored: offload always verifies host keys",
			check: func(s *Settings) string {
				if s.StrictHostKeyChecking != "yes" {
					return "verification off"
				}
				return ""
			},
		},
		{
			name:        "compress=true asks for compression",
			m:           spec.Machine{Host: "b1", Params: map[string]string{"compress": "true"}},
			check:       compression(true),
			wantSources: map[string]string{"compression": "machine URI (compress=true)"},
		},
		{
			name:        "-C asks for compression",
			m:           spec.Machine{Host: "b1"},
			sshopts:     "-C",
			check:       compression(true),
			wantSources: map[string]string{"compression": "NIX_SSHOPTS -C"},
		},
		{
			name:        "Compression yes in ssh_config",
			m:           spec.Machine{Host: "b1"},
			user:        "Host b1\n  Compression yes\n",
			check:       compression(true),
			wantSources: map[string]string{"compression": filepath.Join(ssh, "config") + ":2"},
		},
		{
			name:  "no compression by default",
			m:     spec.Machine{Host: "b1"},
			check: compression(false),
		},
		{
			name:    "ProxyJump from -J, ProxyCommand from config loses",
			m:       spec.Machine{Host: "b1"},
			sshopts: "-J bastion",
			user:    "ProxyCommand nc %h %p\n",
			check: func(s *Settings) string {
				if s.ProxyJump != "bastion" || s.ProxyCommand != "" {
					return "wrong proxy"
				}
				return ""
			},
		},
		{
			name: "tokens",
			m:    spec.Machine{Host: "b1", User: "u"},
			user: "Host b1\n  HostName %h.example\n  IdentityFile %d/k-%r-%h-%p\n  UserKnownHostsFile ~/kh-%n\n",
			check: func(s *Settings) string {
				if s.HostName != "b1.example" || s.IdentityFiles[0] != c.home+"/k-u-b1.example-22" || s.UserKnownHostsFiles[0] != c.home+"/kh-b1" {
					return "HostName " + s.HostName + " IdentityFile " + s.IdentityFiles[0] + " known " + s.UserKnownHostsFiles[0]
				}
				return ""
			},
		},
		{
			name: "localhost is local",
			m:    spec.Machine{Host: "localhost"},
			check: func(s *Settings) string {
				if !s.Local {
					return "not local"
				}
				return ""
			},
		},
		{name: "bad NIX_SSHOPTS quote", m: spec.Machine{Host: "b1"}, sshopts: "-i 'x", wantErr: "unterminated"},
		{name: "NIX_SSHOPTS with a host", m: spec.Machine{Host: "b1"}, sshopts: "other", wantErr: "only options"},
		{name: "bad port", m: spec.Machine{Host: "b1"}, user: "Port x\n", wantErr: "not a port"},
		{name: "bad pinned key", m: spec.Machine{Host: "b1", PublicHostKey: base64.StdEncoding.EncodeToString([]byte("nonsense"))}, wantErr: "not a public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.write(t, ".ssh/config", tt.user)
			c.write(t, "alt", "Port 7\n")
			if err := writeFile(filepath.Join(c.etc, "ssh_config"), tt.sys); err != nil {
				t.Fatal(err)
			}
			c.env["NIX_SSHOPTS"] = tt.sshopts
			s, err := Resolve(tt.m, c.options())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if tt.check != nil {
				if msg := tt.check(s); msg != "" {
					t.Errorf("%s; settings %+v", msg, s)
				}
			}
			for k, v := range tt.wantSources {
				if s.Sources[k] != v {
					t.Errorf("Sources[%q] = %q, want %q", k, s.Sources[k], v)
				}
			}
			var b bytes.Buffer
			if err := s.Explain(&b); err != nil {
				t.Fatal(err)
			}
			if tt.wantNote != "" && !strings.Contains(b.String(), tt.wantNote) {
				t.Errorf("Explain:\n%s\nwant a note %q", b.String(), tt.wantNote)
			}
		})
	}
}

func TestHomeFallback(t *testing.T) {
	// Under nix-daemon HOME is unset or "/homeless-shelter"; the user
	// database decides either way.
	c := newClient(t)
	o := c.options()
	o.Home = ""
	c.env["HOME"] = "/homeless-shelter"
	s, err := Resolve(spec.Machine{Host: "b1"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(s.IdentityFiles[0], "/homeless-shelter") {
		t.Errorf("IdentityFiles = %v, want the user database's home", s.IdentityFiles)
	}
}

func TestRemoteCommand(t *testing.T) {
	tests := []struct {
		params map[string]string
		ng     bool
		want   string
	}{
		{nil, false, "nix-store --serve --write"},
		{nil, true, "nix-daemon --stdio"},
		{map[string]string{"remote-program": "/nix/var/nix/profiles/default/bin/nix-store"}, false, "/nix/var/nix/profiles/default/bin/nix-store --serve --write"},
		{map[string]string{"remote-program": "env X=1 nix-store", "remote-store": "local?root=/my store"}, false, "env X=1 nix-store --serve --write --store 'local?root=/my store'"},
	}
	for _, tt := range tests {
		got := strings.Join(RemoteCommand(spec.Machine{Params: tt.params}, tt.ng), " ")
		if got != tt.want {
			t.Errorf("RemoteCommand(%v, %v) = %q, want %q", tt.params, tt.ng, got, tt.want)
		}
	}
}

func TestExpectGreeting(t *testing.T) {
	magic := []byte{0xcb, 0xee, 0x52, 0x54, 0, 0, 0, 0}
	if err := ExpectGreeting("b1", bytes.NewReader(append(magic, 1)), magic); err != nil {
		t.Errorf("good greeting: %v", err)
	}
	err := ExpectGreeting("b1", strings.NewReader("Welcome to b1\n"), magic)
	var ne *NoiseError
	if !errors.As(err, &ne) || string(ne.Got) != "Welcome " || !strings.Contains(err.Error(), "bashrc") {
		t.Errorf("noisy shell: %v", err)
	}
	if err := ExpectGreeting("b1", strings.NewReader(""), magic); err == nil || errors.As(err, &ne) {
		t.Errorf("empty output: %v, want a read error", err)
	}
}

func compression(want bool) func(s *Settings) string {
	return func(s *Settings) string {
		if s.Compression != want {
			return fmt.Sprintf("Compression = %v, want %v", s.Compression, want)
		}
		return ""
	}
}

// The host key field setup suggests for a builder's key is the form
// Nix's own build-remote passes to ssh, base64 of the key's public key
// line (as in its .pub file, without the comment), and ParsePinnedKey
// reads it back as that key.
func TestPinnedKeyRoundTrip(t *testing.T) {
	pub := keygen(t, t.TempDir(), "host", "ed25519", "") + ".pub"
	k, _ := readPubKey(t, pub)
	data, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	field := PinnedKey(k)
	line, err := base64.StdEncoding.DecodeString(field)
	if want := strings.Join(strings.Fields(string(data))[:2], " ") + "\n"; err != nil || string(line) != want {
		t.Errorf("PinnedKey = %q, decoded %q (%v), want base64 of %q", field, line, err, want)
	}
	got, err := ParsePinnedKey(field)
	if err != nil || !bytes.Equal(got.Marshal(), k.Marshal()) {
		t.Errorf("ParsePinnedKey(PinnedKey(k)) = %v, %v; want k back", got, err)
	}
}
