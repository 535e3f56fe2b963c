// SPDX-License-Identifier: MIT

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The thinnest real path: nix-build → offload → sshd → the builder's own
// store → the output valid in the client's store, with the right contents.
func TestTrivialBuildNix28(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	r := c.build(drv("trivial", "x86_64-linux", `echo hello from the builder > $out; echo a log line`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "on 'ssh://b1'") {
		t.Errorf("nix-build did not say it built on ssh://b1:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "a log line") {
		t.Errorf("the build log did not reach the user:\n%s", r.Stderr)
	}
	out := r.Out
	if !b1.has(t, out) {
		t.Errorf("%s is not in the builder's store: it was not built there", out)
	}
	got := c.run(defaultTimeout, "cat", out)
	if got.Out != "hello from the builder" {
		t.Errorf("output contents = %q", got.Out)
	}
	c.mustVerify()
}

// A derivation for aarch64-linux goes to the builder that lists it (an x86
// builder emulating it), not to the one that does not.
func TestEmulatedSystemRouted(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	c := newClient(t, b1, b2)
	r := c.build(drv("arm", "aarch64-linux", `echo arm > $out`, `u = "`+unique()+`";`),
		"ssh://b1 x86_64-linux ; ssh://b2 x86_64-linux,aarch64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if !b2.has(t, r.Out) || b1.has(t, r.Out) {
		t.Errorf("output built on b1=%v b2=%v, want b2 only", b1.has(t, r.Out), b2.has(t, r.Out))
	}
}

// A derivation that requires kvm goes only to a builder with kvm; a builder
// with a mandatory feature is used only when the derivation requires it.
func TestFeaturesRouted(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	c := newClient(t, b1, b2)
	machines := "ssh://b1 x86_64-linux - 2 1 kvm\nssh://b2 x86_64-linux - 2 4 big-parallel,benchmark benchmark"

	r := c.build(drv("kvm", "x86_64-linux", `echo kvm > $out`, `requiredSystemFeatures = ["kvm"]; u = "`+unique()+`";`), machines)
	if r.Code != 0 || !b1.has(t, r.Out) {
		t.Errorf("kvm build: exit %d, on b1 %v\n%s", r.Code, r.Code == 0 && b1.has(t, r.Out), r.Stderr)
	}
	// b2 is faster, but its mandatory feature is not requested.
	r = c.build(drv("plain", "x86_64-linux", `echo plain > $out`, `u = "`+unique()+`";`), machines)
	if r.Code != 0 || !b1.has(t, r.Out) {
		t.Errorf("plain build: exit %d, on b1 %v\n%s", r.Code, r.Code == 0 && b1.has(t, r.Out), r.Stderr)
	}
	r = c.build(drv("bench", "x86_64-linux", `echo bench > $out`, `requiredSystemFeatures = ["benchmark"]; u = "`+unique()+`";`), machines)
	if r.Code != 0 || !b2.has(t, r.Out) {
		t.Errorf("benchmark build: exit %d, on b2 %v\n%s", r.Code, r.Code == 0 && b2.has(t, r.Out), r.Stderr)
	}
}

// A chain of four derivations plus a local source file: the inputs are
// uploaded, every step builds remotely, and a second run of a new last
// step uploads nothing the builder already has.
func TestChainUploadsInputs(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	u := unique()
	c.file("src.txt", "local source "+u+"\n")
	chain := func(last string) string {
		return fmt.Sprintf(`
let
  mk = name: script: deps: derivation { inherit name; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" script ]; u = %q; inherit deps; };
  s1 = mk "s1" "/bin/cat ${./src.txt} > $out" [];
  s2 = mk "s2" "/bin/cat $deps > $out; echo s2 >> $out" [ s1 ];
  s3 = mk "s3" "/bin/cat $deps > $out; echo s3 >> $out" [ s2 ];
in mk "s4" "/bin/cat $deps > $out; echo %s >> $out" [ s3 ]`, u, last)
	}
	r := c.build(chain("s4"), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	got := c.run(defaultTimeout, "cat", r.Out).Out
	if want := "local source " + u + "\ns2\ns3\ns4"; got != want {
		t.Errorf("chain output = %q, want %q", got, want)
	}
	if !b1.has(t, r.Out) {
		t.Errorf("last step not built on b1")
	}
	if n := strings.Count(r.Stderr, "copying 1 paths to"); n < 1 {
		t.Errorf("expected the source file to be uploaded once:\n%s", r.Stderr)
	}

	// Same chain, new last step: s1…s3 are valid locally and on the
	// builder, so nothing is uploaded but s3 (which the builder has).
	r = c.build(chain("s4-again"), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("second nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stderr, "copying") && strings.Contains(r.Stderr, "paths to") {
		t.Errorf("second run uploaded paths the builder already had:\n%s", r.Stderr)
	}
	c.mustVerify()
}

// A 50 MiB output arrives byte-identical.
func TestLargeOutput(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	r := c.build(drv("big", "x86_64-linux", `/bin/mkdir $out; /usr/bin/head -c 52428800 /dev/urandom > $out/blob; /bin/chmod +x $out/blob; /bin/ln -s blob $out/link`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	local := c.nixStore("-q", "--hash", r.Out).Out
	remote, err := b1.exec(t, "nix-store", "-q", "--hash", r.Out)
	if err != nil || strings.TrimSpace(remote) != local {
		t.Errorf("hash on the client %q, on the builder %q (%v)", local, remote, err)
	}
	c.mustVerify()
}

// A failing build: its stderr reaches the user and Nix 2.8 reports a
// build failure (exit 100), not a hook crash.
func TestFailingBuildNix28(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	r := c.build(drv("fails", "x86_64-linux", `echo about to fail >&2; exit 3`, `u = "`+unique()+`";`), "ssh://b1 x86_64-linux")
	if r.Code != 100 {
		t.Errorf("nix-build exit %d, want 100 (build failure)\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "about to fail") {
		t.Errorf("the builder's last lines did not reach the user:\n%s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "offload: build of") {
		t.Errorf("no offload message naming the failure:\n%s", r.Stderr)
	}
}

// A derivation nobody can build gets a decline with per-builder reasons.
func TestDeclineWithReasons(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	r := c.build(drv("riscv", "riscv64-linux", `echo > $out`, `requiredSystemFeatures = ["kvm"]; u = "`+unique()+`";`), "ssh://b1 x86_64-linux,aarch64-linux")
	if r.Code == 0 {
		t.Fatalf("nix-build succeeded; want a failure: nobody can build it")
	}
	if !strings.Contains(r.Stderr, "b1") || !strings.Contains(r.Stderr, "riscv64-linux") {
		t.Errorf("the decline does not say why b1 cannot build it:\n%s", r.Stderr)
	}
}

const defaultTimeout = 30_000_000_000 // 30 s

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
