// SPDX-License-Identifier: MIT

package e2e

// The end-to-end tests on current Nix: the client's nix-build is
// Debian unstable's Nix (2.34 when written), run chrooted into the root that
// scripts/unstable-root.sh builds once and caches, with a store of its own
// (scripts/test-client-sid.sh, reached through OFFLOAD_TEST_CLIENT=sid).
// Builders are the machine's Nix 2.8 unless a test says otherwise; a
// builder started with builderOpts{Sid: true} runs the same current Nix.
//
// The scenarios that mean something on both versions run as cells of the
// matrix (matrix_test.go, build_test.go); the tests here cover what only
// current Nix does, each named after the difference between Nix 2.8 and
// current Nix it covers (docs/internals.md gives the versions where the
// hook protocol changed). When the root cannot be built (no debootstrap, no Debian
// archive) the tests are skipped with a loud message; with
// OFFLOAD_REQUIRE_SID=1 or CI set they fail instead, so CI never skips
// them.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	sidOnce sync.Once
	sidRoot string
	sidErr  error
)

// requireSid skips (or, in CI, fails) the test when the Debian unstable
// root cannot be built. The first caller builds it, which takes minutes
// once; later runs find it in its cache.
func requireSid(t *testing.T) {
	t.Helper()
	requireEnv(t)
	sidOnce.Do(func() {
		start := time.Now()
		var stderr bytes.Buffer
		cmd := exec.Command(filepath.Join(repoRoot, "scripts/unstable-root.sh"))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			sidErr = fmt.Errorf("%v: %w\n%s", cmd.Args, err, stderr.String())
			return
		}
		sidRoot = strings.TrimSpace(string(out))
		if d := time.Since(start); d > 5*time.Second {
			fmt.Fprintf(os.Stderr, "e2e: built the Debian unstable root %s in %v\n", sidRoot, d.Round(time.Second))
		}
	})
	if sidErr == nil {
		return
	}
	if os.Getenv("OFFLOAD_REQUIRE_SID") == "1" || os.Getenv("CI") != "" {
		t.Fatalf("current Nix is required here (OFFLOAD_REQUIRE_SID=1 or CI), but the Debian unstable root could not be built: %v", sidErr)
	}
	t.Skipf("\n"+
		"**************************************************************\n"+
		"SKIPPED: NOT TESTED ON CURRENT NIX. The Debian unstable root\n"+
		"(scripts/unstable-root.sh) could not be built:\n%v\n"+
		"**************************************************************", sidErr)
}

// newSidClient is newClient whose commands run with current Nix.
func newSidClient(t *testing.T, bs ...*builder) *client {
	t.Helper()
	c := newClient(t, bs...)
	c.sid = true
	c.Base = append(c.Base, "OFFLOAD_TEST_CLIENT=sid")
	return c
}

var nixVersionRE = regexp.MustCompile(`\(Nix\) (\d+)\.(\d+)`)

// nixVersion returns the major and minor version of the Nix that run runs.
func nixVersion(t *testing.T, run func(args ...string) (string, error)) (int, int) {
	t.Helper()
	out, err := run("nix-store", "--version")
	m := nixVersionRE.FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("nix-store --version: %v\n%s", err, out)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor
}

// requireClientNix fails unless the client runs Nix ≥ 2.minor: the
// behaviour a test pins first appears there.
func requireClientNix(t *testing.T, c *client, minor int) {
	t.Helper()
	major, got := nixVersion(t, func(args ...string) (string, error) {
		r := c.run(defaultTimeout, args...)
		if r.Code != 0 {
			return r.Out + r.Stderr, fmt.Errorf("exit %d", r.Code)
		}
		return r.Out, nil
	})
	if major != 2 || got < minor {
		t.Fatalf("the client runs Nix %d.%d, want ≥ 2.%d: this test covers what changed there", major, got, minor)
	}
}

// Nix ≥ 2.31 accepts ssh://host:port (49ba061) and ssh-ng://host:port,
// and Nix 2.34 passes the URI to the hook as written, with or without the
// daemon; offload dials the port itself. The ssh_config names no port for
// b1, and the known_hosts files are empty: only the URI's port and the
// pinned key lead to the builder.
func TestPortInURIPinnedHostKeyNix234(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells([]string{"2.34"}, protos, modes), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		requireClientNix(t, c, 31)
		pinnedOnlyConfig(t, c, b1, 0)
		uri := fmt.Sprintf("%s:%d", m.uri(b1), b1.Port)
		r := m.build(t, c, drv("port", "x86_64-linux", `echo port > $out`, salt()), uri+" x86_64-linux - 1 1 - - "+b1.HostKeyB64)
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d with %s\n%s", r.Code, uri, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "on '"+uri+"'") {
			t.Errorf("nix-build did not say it built on %s:\n%s", uri, r.Stderr)
		}
		if strings.Contains(r.Stderr, "Nix before 2.31") {
			// offload dials the port itself, with any Nix; the warning
			// speaks of Nix's own build-remote, which does not run here.
			t.Logf("the hook warned about the port although it dials it itself:\n%s", r.Stderr)
		}
		if !b1.has(t, r.Out) {
			t.Errorf("%s not built on b1", r.Out)
		}
	})
}

// Nix ≥ 2.17 reads build-hook as a list of words (d2ce2e8) and, since
// 2.12 (f8d0193), runs the hook with argv [basename(word 0), words 1…,
// verbosity]. With `build-hook = /path/offload hook` in nix.conf, Nix
// 2.34 starts offload with argv [offload, hook, 3], and offload takes it
// for hook mode.
func TestHookArgvWordsNix234(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells([]string{"2.34"}, []string{"ssh"}, directOnly), func(t *testing.T, m cell) {
		hookArgvWords(t, m.client(t, b1), b1)
	})
}

func hookArgvWords(t *testing.T, c *client, b1 *builder) {
	t.Helper()
	hook := hookCopy(t)
	c.file("etc/nix.conf", fmt.Sprintf("build-users-group =\nsandbox = false\nsubstituters =\nbuild-hook = %s hook\n", hook))

	stop := make(chan struct{})
	argvs := make(chan [][]string, 1)
	go func() {
		seen := map[string][]string{}
		for {
			select {
			case <-stop:
				var all [][]string
				for _, a := range seen {
					all = append(all, a)
				}
				argvs <- all
				return
			default:
			}
			for _, pid := range procsOf(hook) {
				if a := cmdline(pid); a != nil {
					seen[strings.Join(a, "\x00")] = a
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	expr := drv("argv", "x86_64-linux", `/bin/sleep 1; echo argv > $out`, salt())
	b := c.start("nix-build", "--no-out-link", c.file("argv.nix", expr), "--max-jobs", "0", "--builders", "ssh://b1 x86_64-linux")
	code := b.wait(t, time.Minute)
	close(stop)
	got := <-argvs
	if code != 0 {
		t.Fatalf("nix-build with build-hook = %s hook: exit %d\n%s", hook, code, b.stderr.String())
	}
	if !b1.has(t, strings.TrimSpace(b.stdout.String())) {
		t.Errorf("the output was not built on b1")
	}
	want := []string{"offload", "hook", "3"}
	if len(got) == 0 {
		t.Fatalf("never saw the hook running")
	}
	for _, a := range got {
		if strings.Join(a, " ") != strings.Join(want, " ") {
			t.Errorf("hook argv = %q, want %q", a, want)
		}
	}
}
