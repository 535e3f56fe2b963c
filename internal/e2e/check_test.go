// SPDX-License-Identifier: MIT

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	gossh "golang.org/x/crypto/ssh"
)

// checkRow is one builder of `offload check --json`.
type checkRow struct {
	URI          string   `json:"uri"`
	Name         string   `json:"name"`
	OK           bool     `json:"ok"`
	Reason       string   `json:"reason"`
	Error        string   `json:"error"`
	Fingerprint  string   `json:"host_key_fingerprint"`
	NixVersion   string   `json:"nix_version"`
	Protocol     string   `json:"protocol"`
	ConnectMS    float64  `json:"connect_ms"`
	HandshakeMS  float64  `json:"handshake_ms"`
	RTTMS        float64  `json:"rtt_ms"`
	Capabilities string   `json:"capabilities"`
	System       string   `json:"system"`
	Extra        []string `json:"extra_platforms"`
	Features     []string `json:"system_features"`
	Problems     []string `json:"problems"`
}

// checkEnv is what `offload check` runs with: the client's ssh_config
// (plus extra Host blocks) through NIX_SSHOPTS, and offload's settings and
// state in a directory of the test's own. It runs on the host, outside the
// client's namespace: check reads no local store. The connect timeout is
// long because every step of a check (the serve handshake, each nix
// command) gets that much, and a loaded test machine can take seconds to
// start nix there; refused connections are immediate anyway.
type checkEnv struct {
	env   []string
	state string
}

func newCheckEnv(t *testing.T, c *client, extraSSHConfig string) *checkEnv {
	t.Helper()
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(c.Dir, "ssh_config"))
	if err != nil {
		t.Fatal(err)
	}
	sshConfig := filepath.Join(dir, "ssh_config")
	conf := filepath.Join(dir, "offload.conf")
	for name, content := range map[string]string{sshConfig: string(cfg) + extraSSHConfig, conf: "connect-timeout = 30s\n"} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := &checkEnv{state: filepath.Join(dir, "state")}
	e.env = append(os.Environ(),
		"NIX_SSHOPTS=-F "+sshConfig,
		"OFFLOAD_CONF="+conf,
		"OFFLOAD_STATE_DIR="+e.state,
		"HOME="+filepath.Join(dir, "home"),
		"NIX_CONF_DIR="+filepath.Join(dir, "etc"),
		"SSH_AUTH_SOCK=",
	)
	return e
}

// run runs offload with args and returns stdout, stderr, the exit code and
// the wall time.
func (e *checkEnv) run(t *testing.T, args ...string) (string, string, int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, offloadBin, args...)
	cmd.Env = e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("offload %q: %v", args, err)
	}
	return stdout.String(), stderr.String(), code, elapsed
}

func hostKeyFingerprint(t *testing.T, b *builder) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Dir, "keys", "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := gossh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return gossh.FingerprintSHA256(k)
}

// offload check against real sshd builders with stores of their own: a
// good one, one whose machines line claims more than its nix.conf gives, one
// whose Nix will not say (no nix on its PATH), a closed port, and a pinned
// host key that is not the builder's.
func TestCheckBuilders(t *testing.T) {
	requireEnv(t)
	good := startBuilder(t, "cgood", builderOpts{})
	poor := startBuilder(t, "cpoor", builderOpts{NixConf: "extra-platforms =\nsystem-features = big-parallel"})
	c := newClient(t, good, poor)
	closed := testenv.ClosedPort(t)
	e := newCheckEnv(t, c, fmt.Sprintf(`
Host cclosed
	HostName 127.0.0.1
	Port %d
	User root
	IdentityFile %s
Host cwrongkey
	HostName 127.0.0.1
	Port %d
	User root
	IdentityFile %s
`, closed, good.Key, good.Port, good.Key))

	machines := strings.Join([]string{
		"ssh://cgood x86_64-linux,aarch64-linux,riscv64-linux - 4 1 kvm,big-parallel",
		"ssh://cpoor x86_64-linux,aarch64-linux,riscv64-linux - 4 1 kvm,big-parallel benchmark",
		"ssh://cclosed x86_64-linux",
		"ssh://cwrongkey x86_64-linux - 1 1 - - " + poor.HostKeyB64,
	}, "\n")
	stdout, stderr, code, elapsed := e.run(t, "check", "--builders", machines, "--json")
	if code != 1 {
		t.Errorf("exit %d, want 1 (some builders are not fine)\n%s", code, stderr)
	}
	var rows []checkRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4:\n%s", len(rows), stdout)
	}
	g, p, cl, wk := rows[0], rows[1], rows[2], rows[3]
	t.Logf("check of 4 builders: %v wall; cgood connect %.1f ms + handshake %.1f ms, rtt %.2f ms; cpoor connect %.1f ms + handshake %.1f ms, rtt %.2f ms; cclosed %.1f ms; cwrongkey %.1f ms",
		elapsed, g.ConnectMS, g.HandshakeMS, g.RTTMS, p.ConnectMS, p.HandshakeMS, p.RTTMS, cl.ConnectMS, wk.ConnectMS)

	if !g.OK || g.NixVersion != "2.8.0" || g.Protocol != "2.7" || g.Capabilities != "reported" ||
		g.System != "x86_64-linux" || g.ConnectMS <= 0 || g.HandshakeMS <= 0 || g.RTTMS <= 0 || len(g.Problems) != 0 {
		t.Errorf("cgood = %+v; want ok, Nix 2.8.0, protocol 2.7, its systems and times", g)
	}
	if !strings.Contains(strings.Join(g.Extra, " "), "aarch64-linux") || !strings.Contains(strings.Join(g.Features, " "), "kvm") {
		t.Errorf("cgood reports extra-platforms %q, features %q; want its nix.conf's", g.Extra, g.Features)
	}

	if p.OK || p.Error != "" || p.Protocol != "2.7" || len(p.Problems) != 2 ||
		!strings.Contains(p.Reason, "aarch64-linux, riscv64-linux, which it does not build") ||
		!strings.Contains(p.Reason, "features benchmark, kvm, which it lacks (system-features big-parallel)") {
		t.Errorf("cpoor = %+v; want ✗ for its systems and features", p)
	}

	if cl.OK || cl.Error != "refused" || cl.ConnectMS > 1000 || cl.Protocol != "" {
		t.Errorf("cclosed = %+v; want ✗ refused at once", cl)
	}

	fp := hostKeyFingerprint(t, good)
	if wk.OK || wk.Error != "host-key" || wk.Fingerprint != fp || !strings.Contains(wk.Reason, fp) {
		t.Errorf("cwrongkey = %+v; want ✗ host key naming %s", wk, fp)
	}

	// The results are in the shared builder state, as a hook's would be.
	ms, _, err := spec.ParseBuilders(machines, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(e.state, "slots"), ms, slots.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	snap := f.Snapshot(nil)
	f.Close()
	now := time.Now()
	for i, want := range []slots.ErrCode{slots.ErrNone, slots.ErrNone, slots.ErrConnect, slots.ErrHostKey} {
		b := snap[i]
		unhealthy := b.UnhealthyUntil.After(now)
		if b.LastError != want || unhealthy != (want != slots.ErrNone) {
			t.Errorf("state of %s: last error %v, unhealthy until %v; want %v", b.URI, b.LastError, b.UnhealthyUntil, want)
		}
		if want == slots.ErrNone && b.LastConnect <= 0 {
			t.Errorf("state of %s: no connect time recorded", b.URI)
		}
	}

	// Only the good builder, by name: exit 0, one ✓ row with the version
	// and protocol.
	stdout, stderr, code, elapsed = e.run(t, "check", "--builders", machines, "cgood")
	if code != 0 || !strings.Contains(stdout, "✓  cgood") || !strings.Contains(stdout, "2.8.0") ||
		!strings.Contains(stdout, "2.7") || !strings.Contains(stdout, "1 of 1 fine") {
		t.Errorf("check cgood: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("check of 1 builder: %v wall", elapsed)

}

// A builder where `nix` cannot be run (the serve command is given by an
// absolute path, and PATH has no nix) is reachable, so ✓, with its systems
// and features "unknown".
func TestCheckBuilderWillNotSay(t *testing.T) {
	requireEnv(t)
	t.Setenv("BUILDER_ENV", "PATH=/nonexistent")
	b := startBuilder(t, "cnonix", builderOpts{})
	c := newClient(t, b)
	e := newCheckEnv(t, c, "")
	stdout, stderr, code, _ := e.run(t, "check", "--json", "--builders", "ssh://cnonix?remote-program=/usr/bin/nix-store x86_64-linux - 1 1 kvm")
	if code != 0 {
		t.Errorf("exit %d, want 0\n%s\n%s", code, stdout, stderr)
	}
	var rows []checkRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("stdout: %v\n%s", err, stdout)
	}
	r := rows[0]
	if !r.OK || r.Capabilities != "unknown" || r.NixVersion != "unknown" || r.Protocol != "2.7" ||
		!strings.Contains(r.Reason, "unknown") || !strings.Contains(r.Reason, "show-config") {
		t.Errorf("cnonix = %+v; want ✓ with capabilities unknown and why", r)
	}
}
