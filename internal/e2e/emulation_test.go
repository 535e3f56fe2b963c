// SPDX-License-Identifier: MIT

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The emulation tests stand an x86 builder that runs aarch64-linux under
// qemu-user ("emu": extra-platforms in its nix.conf, as every test builder)
// beside one that builds aarch64-linux natively ("native": system =
// aarch64-linux in its nix.conf). Each test builder has a /nix of its own,
// so a marker file there is seen by the builds of that builder only: the
// derivation fails where the marker is, standing in for a failure that
// only happens under qemu. Every attempt leaves a line in the builder's
// /nix/attempts.

const emuMarker = "offload-test-emulated"

// emuDrv is an aarch64-linux derivation named name that fails on a builder
// with the marker.
func emuDrv(name, salt string) string {
	return drv(name, "aarch64-linux", `
echo attempt >> /nix/attempts
if [ -e /nix/`+emuMarker+` ]; then
	echo "qemu: uncaught target signal 4 (Illegal instruction) - core dumped" >&2
	exit 1
fi
echo built natively > $out`, `u = "`+salt+`";`)
}

func startEmulationBuilders(t *testing.T) (emu, native *builder) {
	t.Helper()
	emu = startBuilder(t, "emu", builderOpts{})
	if err := os.WriteFile(filepath.Join(emu.Dir, "nix", emuMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	native = startBuilder(t, "native", builderOpts{NixConf: "system = aarch64-linux\nsystem-features = kvm big-parallel"})
	return emu, native
}

// emuBuilders is the machines file of the emulation tests: emu is faster
// and emulating, so the default preference sends a build there first.
const emuBuilders = "ssh://emu x86_64-linux,aarch64-linux - 2 4 ; ssh://native aarch64-linux - 2 1"

// attempts is how many builds b started, from its /nix/attempts.
func attempts(t *testing.T, b *builder) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Dir, "nix", "attempts"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "attempt")
}

// wantAttempts fails unless the builders bs saw want attempts, in order;
// when says at which point, stderr is the last build's.
func wantAttempts(t *testing.T, when, stderr string, bs []*builder, want ...int) {
	t.Helper()
	got := make([]int, len(bs))
	names := make([]string, len(bs))
	for i, b := range bs {
		got[i], names[i] = attempts(t, b), b.Name
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: attempts on %s: %v, want %v\n%s", when, strings.Join(names, ", "), got, want, stderr)
	}
}

// A build that fails on the emulating builder is built again on the native
// one in the same nix-build; the log shows both attempts. The derivation's
// name is remembered: a second, different derivation of the same name goes
// to the native builder first. On current Nix the hook argv, output locks
// and protocol versions differ from 2.8's; the retry after accept must
// not. (The offload commands the 2.8 cell runs, machines and pick, do not
// depend on the client's Nix.)
func TestEmulationFallbackToNative(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	matrix(t, cells(nixes, []string{"ssh"}, directOnly), func(t *testing.T, m cell) {
		testEmulationFallback(t, m, !m.current())
	})
}

func testEmulationFallback(t *testing.T, m cell, commands bool) {
	emu, native := startEmulationBuilders(t)
	c := m.client(t, emu, native)
	both := []*builder{emu, native}

	r := c.build(emuDrv("flaky-under-qemu", unique()), emuBuilders)
	if r.Code != 0 {
		t.Fatalf("nix-build failed (code %d):\n%s", r.Code, r.Stderr)
	}
	wantAttempts(t, "after the first build", r.Stderr, both, 1, 1)
	wantAll(t, "the log", r.Stderr,
		"Illegal instruction",
		"failed on 'ssh://emu', which runs aarch64-linux under emulation",
		"building it again on 'ssh://native', which runs it natively")
	if !native.has(t, r.Out) || emu.has(t, r.Out) {
		t.Errorf("output %s: on native %v, on emu %v; want only native", r.Out, native.has(t, r.Out), emu.has(t, r.Out))
	}
	data, err := os.ReadFile(filepath.Join(c.Dir, "nix", strings.TrimPrefix(r.Out, "/nix/")))
	if err != nil || string(data) != "built natively\n" {
		t.Errorf("output in the local store: %q, %v", data, err)
	}

	if commands {
		checkMachinesExec(t, c)
	}

	// The same name again, another derivation: native first.
	r = c.build(emuDrv("flaky-under-qemu", unique()), emuBuilders)
	if r.Code != 0 {
		t.Fatalf("second nix-build failed (code %d):\n%s", r.Code, r.Stderr)
	}
	wantAttempts(t, "after the second build", r.Stderr, both, 1, 2)
	if strings.Contains(r.Stderr, "building it again") {
		t.Errorf("the second build was retried:\n%s", r.Stderr)
	}

	if !commands {
		return
	}
	// pick explains it.
	pr := c.run(defaultTimeout, offloadBin, "pick", "--system", "aarch64-linux", "--name", "flaky-under-qemu", "--builders", emuBuilders)
	if !strings.Contains(pr.Out, "accept ssh://native") || !strings.Contains(pr.Out, "emu: emulates aarch64-linux, where this derivation failed lately") {
		t.Errorf("offload pick --name flaky-under-qemu:\n%s%s", pr.Out, pr.Stderr)
	}
}

// With only an emulating builder, a failing build fails once, with Nix's
// own report of a failed build: no retry, no second attempt.
func TestEmulationFailureWithoutNative(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	emu := startBuilder(t, "emu", builderOpts{})
	if err := os.WriteFile(filepath.Join(emu.Dir, "nix", emuMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, emu)
	r := c.build(emuDrv("fails-under-qemu", unique()), "ssh://emu x86_64-linux,aarch64-linux - 2 4")
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded:\n%s", r.Stderr)
	}
	wantAttempts(t, "after the build", r.Stderr, []*builder{emu}, 1)
	if !strings.Contains(r.Stderr, "Illegal instruction") || !strings.Contains(r.Stderr, "fails-under-qemu") {
		t.Errorf("the report lacks the build's log or name:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "no builder that runs it natively can take it") {
		t.Errorf("the report does not say why there was no retry:\n%s", r.Stderr)
	}
}

// checkMachinesExec: the retry probed the native builder, and `offload
// machines` says so.
func checkMachinesExec(t *testing.T, c *client) {
	t.Helper()
	mr := c.run(defaultTimeout, offloadBin, "machines", "--json", "--builders", emuBuilders)
	var ms []struct {
		URI  string `json:"uri"`
		Exec map[string]struct {
			Runs, Source string
		} `json:"exec"`
	}
	if err := json.Unmarshal([]byte(mr.Out), &ms); err != nil || len(ms) != 2 {
		t.Fatalf("offload machines --json: %v\n%s\n%s", err, mr.Out, mr.Stderr)
	}
	for _, m := range ms {
		e := m.Exec["aarch64-linux"]
		want := "emulated"
		if m.URI == "ssh://native" {
			want = "native"
		}
		if e.Runs != want {
			t.Errorf("machines: %s runs aarch64-linux %q (from %q), want %q", m.URI, e.Runs, e.Source, want)
		}
	}
}

// A timeout set by the user is not a failure emulation explains: no
// retry on the native builder.
func TestEmulationTimeoutNotRetried(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	emu, native := startEmulationBuilders(t)
	c := newClient(t, emu, native)
	r := c.build(drv("slow-under-qemu", "aarch64-linux", `echo attempt >> /nix/attempts; /bin/sleep 30; echo > $out`, salt()),
		emuBuilders, "--timeout", "2")
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded:\n%s", r.Stderr)
	}
	wantAttempts(t, "after the build", r.Stderr, []*builder{emu, native}, 1, 0)
	if !strings.Contains(r.Stderr, "timed out") || strings.Contains(r.Stderr, "building it again") {
		t.Errorf("want a timeout and no retry:\n%s", r.Stderr)
	}
}

// Any user can build a derivation of any name. One that fails everywhere
// (named like a popular package) fails under emulation, and then on the
// native builder too: that proves nothing about emulation, so the name is
// not remembered, and everyone's next derivation of that name goes where
// it would have gone anyway (the faster, emulating builder), not to the
// native one first.
func TestEmulationFailsEverywhereNotRemembered(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	emu, native := startEmulationBuilders(t)
	c := newClient(t, emu, native)
	const name = "firefox-130.0"

	r := c.build(drv(name, "aarch64-linux", `echo attempt >> /nix/attempts; exit 1`, salt()), emuBuilders)
	if r.Code == 0 {
		t.Fatalf("the derivation that fails everywhere built:\n%s", r.Stderr)
	}
	wantAttempts(t, "after the build that fails everywhere (and its retry on native)", r.Stderr, []*builder{emu, native}, 1, 1)

	pr := c.run(defaultTimeout, offloadBin, "pick", "--system", "aarch64-linux", "--name", name, "--builders", emuBuilders)
	if !strings.Contains(pr.Out, "accept ssh://emu") || strings.Contains(pr.Out, "failed lately") {
		t.Errorf("offload pick --name %s after a build that failed everywhere:\n%s%s", name, pr.Out, pr.Stderr)
	}

	// Another user's derivation of the same name, which builds anywhere.
	r = c.build(drv(name, "aarch64-linux", `echo attempt >> /nix/attempts; echo ok > $out`, salt()), emuBuilders)
	if r.Code != 0 {
		t.Fatalf("second nix-build failed (code %d):\n%s", r.Code, r.Stderr)
	}
	wantAttempts(t, "after the second build, which goes to emu: the name is not remembered", r.Stderr, []*builder{emu, native}, 2, 1)
}
