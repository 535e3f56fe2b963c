// SPDX-License-Identifier: MIT

package builder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

// testBuilder starts scripts/test-builder.sh's builder with sshd's stock
// MaxSessions and a log of every connection; it returns the machine, the
// environment a hook would have, and the log's path.
func testBuilder(t *testing.T, scheme string) (*spec.Machine, func(string) string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (the test builder's mount namespace and sshd)")
	}
	for _, p := range []string{"/usr/sbin/sshd", "unshare", "ssh-keygen", "ssh-keyscan", "nix-store"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Skip(t, "%s not found (run scripts/deps.sh)", p)
		}
	}
	script, err := filepath.Abs("../../scripts/test-builder.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "b1")
	cmd := exec.Command(script, "start", dir, "b1")
	cmd.Env = append(os.Environ(), "BUILDER_MAX_SESSIONS=10", "BUILDER_LOG_LEVEL=VERBOSE")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	t.Cleanup(func() { exec.Command(script, "stop", dir).Run() })
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	hookEnv := map[string]string{"NIX_SSHOPTS": "-F " + env["BUILDER_SSH_CONFIG"]}
	m := &spec.Machine{Scheme: scheme, URI: scheme + "://b1", Host: "b1", Systems: []string{"x86_64-linux"}, MaxJobs: 8, SpeedFactor: 1}
	return m, func(k string) string { return hookEnv[k] }, filepath.Join(dir, "sshd.log")
}

// connections counts the SSH connections sshd accepted, from its log.
func connections(t *testing.T, log string) int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("Accepted publickey"))
}

// TestRelayFanOut: once the relay runs, eight hooks connecting at once
// to one builder with OpenSSH's stock MaxSessions (10) open at most one
// more SSH connection, every one gets a working store session of its
// own, and the relay has store commands started ahead for the next.
func TestRelayFanOut(t *testing.T) {
	for _, scheme := range []string{"ssh", "ssh-ng"} {
		t.Run(scheme, func(t *testing.T) { testRelayFanOut(t, scheme) })
	}
}

func testRelayFanOut(t *testing.T, scheme string) {
	m, getenv, log := testBuilder(t, scheme)
	dir := filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeRelay(ctx, dir, time.Minute) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "sock")); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("the relay did not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	o := Options{Relay: dir, Persist: time.Minute, ConnectTimeout: 30 * time.Second, Getenv: getenv,
		Debugf: func(format string, args ...any) { t.Errorf("not through the relay: "+format, args...) }}

	// The first hook: the relay connects, and starts commands ahead.
	c, err := Dial(context.Background(), m, o)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The commands started ahead, and a pause long enough for the
	// connection to be pinged (an answered ping keeps it).
	time.Sleep(2500 * time.Millisecond)
	before := connections(t, log)

	var wg sync.WaitGroup
	conns := make([]*Conn, 8)
	times := make([]time.Duration, 8)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := Dial(context.Background(), m, o)
			times[i] = time.Since(start)
			if err != nil {
				t.Errorf("hook %d: %v", i, err)
				return
			}
			// A working session: the store answers a query.
			if _, err := c.Store.QueryValidPaths([]string{"/nix/store/00000000000000000000000000000000-x"}, false, false); err != nil {
				t.Errorf("hook %d: QueryValidPaths: %v", i, err)
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	t.Logf("connect times through the relay: %v", times)
	time.Sleep(500 * time.Millisecond) // replacements started ahead
	if n := connections(t, log) - before; n > 1 {
		t.Errorf("eight hooks at once opened %d SSH connections, want at most 1", n)
	}
	t.Logf("SSH connections: %d for the first hook, %d more for eight at once", before, connections(t, log)-before)
}

// TestRelayFallbackBuilds: with each relay a hook must go around, the
// connection to a real builder still comes up, directly, and its store
// answers.
func TestRelayFallbackBuilds(t *testing.T) {
	m, getenv, _ := testBuilder(t, "ssh")
	for _, f := range relayFaults() {
		t.Run(f.name, func(t *testing.T) {
			var why []string
			o := Options{Relay: f.dir(t), Persist: time.Minute, ConnectTimeout: 30 * time.Second, Getenv: getenv,
				Debugf: func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }}
			c, err := Dial(context.Background(), m, o)
			if err != nil {
				t.Fatalf("Dial = %v (why not relayed: %q)", err, why)
			}
			defer c.Close()
			if c.rs != nil || len(why) != 1 {
				t.Errorf("relayed = %v, why not relayed = %q; want a direct connection and one line of why", c.rs != nil, why)
			}
			if _, err := c.Store.QueryValidPaths([]string{"/nix/store/00000000000000000000000000000000-x"}, false, false); err != nil {
				t.Errorf("QueryValidPaths: %v", err)
			}
		})
	}
}

// TestRelayWarmsAtStart: a relay started by a hook that connected by
// itself connects to that hook's builder and starts its commands ahead at
// once, so the next hook finds them ready and opens no connection.
func TestRelayWarmsAtStart(t *testing.T) {
	m, getenv, log := testBuilder(t, "ssh")
	o := Options{Persist: time.Minute, ConnectTimeout: 30 * time.Second, Getenv: getenv,
		Debugf: func(format string, args ...any) { t.Errorf("not through the relay: "+format, args...) }}
	warm, err := json.Marshal(relayWarm{Target: relayTargetOf(m, &o), Argv: ssh.RemoteCommand(*m, false)})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(envWarm, string(warm))
	o.Relay = filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeRelay(ctx, o.Relay, time.Minute) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	for i := 0; ; i++ {
		st, err := RelayStatus(context.Background(), o.Relay)
		if err == nil && len(st) == 1 && st[0].Ready > 0 {
			break
		}
		if i == 1000 {
			t.Fatalf("no command started ahead by the relay alone: %v, %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := connections(t, log)
	c, err := Dial(context.Background(), m, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.rs == nil {
		t.Error("the hook after the relay started did not go through it")
	}
	if n := connections(t, log) - before; n != 0 || before != 1 {
		t.Errorf("SSH connections: %d when the relay had warmed up, %d more for the next hook; want 1 and 0", before, n)
	}
}
