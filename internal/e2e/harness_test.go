// SPDX-License-Identifier: MIT

// End-to-end tests: real Nix (nix-build) runs the offload binary as its
// build hook, which sends builds over SSH to real OpenSSH sshd builders,
// each with a Nix store of its own, and brings the outputs back into the
// client's store.
//
// What the environment must provide (scripts/deps.sh installs it on
// Debian): root, nix-bin (Nix 2.8), openssh-server, unshare and nsenter
// (util-linux). The client and every builder run in private mount
// namespaces with their own /nix (scripts/test-client.sh,
// scripts/test-builder.sh), so the machine's /nix/store is never touched.
// The tests are skipped with -short or when something is missing.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
)

var (
	offloadBin string // built once in TestMain
	repoRoot   string
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "../.."))
	dir, err := os.MkdirTemp("", "offload-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	offloadBin = filepath.Join(dir, "offload")
	cmd := exec.Command("go", "build", "-o", offloadBin, "./cmd/offload")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building offload: %v\n%s", err, out)
		os.Exit(1)
	}
	// Every test builder runs on this one machine and reads its load: a
	// builder's reading would count the builds of every test running at
	// the same time. Load awareness is off for every command the tests
	// start, unless a test turns it on (client.Base, see load_test.go).
	os.Setenv("OFFLOAD_LOAD_AWARE", "false")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireEnv(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		testenv.Skip(t, "end-to-end test: needs root (mount namespaces, sshd)")
	}
	for _, p := range []string{"nix-build", "nix-store", "unshare", "nsenter", "ssh-keygen", "ssh-keyscan"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Skip(t, "end-to-end test: %s not found (run scripts/deps.sh)", p)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		testenv.Skip(t, "end-to-end test: /usr/sbin/sshd not found (Debian package openssh-server)")
	}
}

// builder is a running test builder (scripts/test-builder.sh).
type builder struct {
	Name       string
	Dir        string
	Port       int
	HostKeyB64 string
	SSHConfig  string
	Key        string
}

type builderOpts struct {
	// NixConf replaces the builder's default extra nix.conf lines.
	NixConf string
	// Env is one VAR=value line for every session's environment.
	Env string
	// Sid runs current Nix in the builder's sessions, from the unstable
	// root (needs requireSid).
	Sid bool
	// MaxSessions is sshd's MaxSessions (0: the script's default, 100).
	MaxSessions int
	// Verbose logs every connection sshd accepts to sshd.log.
	Verbose bool
}

func startBuilder(t *testing.T, name string, o builderOpts) *builder {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "builder-"+name)
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), "start", dir, name)
	cmd.Env = os.Environ()
	if o.NixConf != "" {
		cmd.Env = append(cmd.Env, "BUILDER_NIX_CONF="+o.NixConf)
	}
	if o.Env != "" {
		cmd.Env = append(cmd.Env, "BUILDER_ENV="+o.Env)
	}
	if o.Sid {
		cmd.Env = append(cmd.Env, "BUILDER_SID=1")
	}
	if o.MaxSessions != 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("BUILDER_MAX_SESSIONS=%d", o.MaxSessions))
	}
	if o.Verbose {
		cmd.Env = append(cmd.Env, "BUILDER_LOG_LEVEL=VERBOSE")
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("starting builder %s (%+v): %v\n%s", name, o, err, stderrOf(err))
	}
	t.Cleanup(func() {
		exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), "stop", dir).Run()
	})
	env := parseEnv(string(out))
	port, _ := strconv.Atoi(env["BUILDER_PORT"])
	return &builder{
		Name:       name,
		Dir:        dir,
		Port:       port,
		HostKeyB64: env["BUILDER_HOST_KEY_BASE64"],
		SSHConfig:  env["BUILDER_SSH_CONFIG"],
		Key:        env["BUILDER_KEY"],
	}
}

func (b *builder) stop(t *testing.T) {
	t.Helper()
	if err := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), "stop", b.Dir).Run(); err != nil {
		t.Fatalf("stopping %s: %v", b.Name, err)
	}
}

// exec runs a command inside the builder's view of the machine (its /nix).
func (b *builder) exec(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/test-builder.sh"), append([]string{"exec", b.Dir}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// has reports whether path is valid in the builder's own store.
func (b *builder) has(t *testing.T, path string) bool {
	t.Helper()
	_, err := b.exec(t, "nix-store", "--check-validity", path)
	return err == nil
}

func parseEnv(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// client is a Nix client with a store of its own (scripts/test-client.sh).
type client struct {
	t        *testing.T
	Dir      string
	builders []*builder
	// Base and then Env are added to the environment of every command
	// the client runs (the hook inherits it): Base for the whole test,
	// Env for the next commands.
	Base []string
	Env  []string
	// Hook is the build hook nix-build runs; empty means offloadBin.
	Hook string
	// sid is set for a client that runs current Nix (newSidClient).
	sid bool
}

func newClient(t *testing.T, bs ...*builder) *client {
	t.Helper()
	c := &client{t: t, Dir: filepath.Join(t.TempDir(), "client"), builders: bs}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg bytes.Buffer
	for _, b := range bs {
		data, err := os.ReadFile(b.SSHConfig)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Write(data)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "ssh_config"), cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// file writes name in the client's directory and returns its path.
func (c *client) file(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

type result struct {
	Out    string // stdout: the output paths
	Stderr string
	Code   int
}

// run runs a command as the client, in its namespace, with a timeout.
func (c *client) run(timeout time.Duration, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{Out: strings.TrimSpace(stdout.String()), Stderr: stderr.String()}
	if ctx.Err() != nil {
		c.t.Fatalf("%v: timed out after %v\nstderr:\n%s", args, timeout, stderr.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("%v: %v", args, err)
	}
	return r
}

// command returns the command that runs args as the client, in its
// namespace, with NIX_SSHOPTS pointing at the client's ssh_config.
func (c *client) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts/test-client.sh"), append([]string{c.Dir}, args...)...)
	cmd.Env = append(os.Environ(), "NIX_SSHOPTS=-F "+filepath.Join(c.Dir, "ssh_config"))
	// On a loaded 2-core machine running these tests in parallel an SSH
	// handshake with sshd can take over 10 s (measured: 13 concurrent
	// `ssh b1 true` took 5-12 s), past offload's default connect timeout;
	// the tests are not about that timeout. c.Env can override it.
	cmd.Env = append(cmd.Env, "OFFLOAD_CONNECT_TIMEOUT=60s")
	cmd.Env = append(cmd.Env, c.Base...)
	cmd.Env = append(cmd.Env, c.Env...)
	return cmd
}

// build runs nix-build on expr with offload as the build hook, no local
// builds, and the given builders setting.
func (c *client) build(expr string, builders string, extra ...string) result {
	c.t.Helper()
	return c.run(2*time.Minute, c.buildArgs(expr, builders, extra...)...)
}

// buildArgs writes expr to a file and returns the nix-build command line
// of build.
func (c *client) buildArgs(expr string, builders string, extra ...string) []string {
	c.t.Helper()
	f := c.file(fmt.Sprintf("expr-%d.nix", time.Now().UnixNano()), expr)
	args := []string{"nix-build", "--no-out-link", f, "--max-jobs", "0",
		"--option", "build-hook", c.hook(), "--builders", builders}
	return append(args, extra...)
}

// hook returns the build hook the client's builds run.
func (c *client) hook() string {
	if c.Hook == "" {
		return offloadBin
	}
	return c.Hook
}

// nixStore runs nix-store as the client.
func (c *client) nixStore(args ...string) result {
	c.t.Helper()
	return c.run(time.Minute, append([]string{"nix-store"}, args...)...)
}

func (c *client) mustVerify() {
	c.t.Helper()
	r := c.nixStore("--verify", "--check-contents")
	if r.Code != 0 || strings.Contains(r.Stderr, "modified") || strings.Contains(r.Stderr, "error") {
		c.t.Errorf("nix-store --verify --check-contents on the client: code %d\n%s", r.Code, r.Stderr)
	}
}

// drv builds a derivation expression whose builder is /bin/sh running
// script. The build environment has no PATH: use absolute paths.
func drv(name, system, script string, extra string) string {
	return fmt.Sprintf(`derivation { name = %q; system = %q; builder = "/bin/sh"; args = [ "-c" %q ]; %s }`, name, system, script, extra)
}

// drvs builds an expression of n x86_64-linux derivations, name-0 to
// name-<n-1>, each salted with unique and running script, a Nix string
// (quoted, and able to use i, the derivation's index). The build
// environment has no PATH: use absolute paths.
func drvs(name string, n int, script string) string {
	return fmt.Sprintf(`
let mk = i: derivation {
  name = "%s-${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; u = %q;
  args = [ "-c" %s ];
};
in builtins.genList mk %d`, name, unique(), script, n)
}

var uniqueMu sync.Mutex
var uniqueN int

// unique returns a string that makes a derivation differ from every
// earlier one, so that no test finds its output already built.
func unique() string {
	uniqueMu.Lock()
	defer uniqueMu.Unlock()
	uniqueN++
	return fmt.Sprintf("%d-%d", time.Now().UnixNano(), uniqueN)
}
