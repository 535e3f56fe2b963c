// SPDX-License-Identifier: MIT

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two boards share a builder. The first builds a chain of two derivations
// there; the second, building the same chain afterwards, gets both by
// copying them back: the builder runs no build and receives no input.
func TestSecondBoardCopiesWhatTheBuilderHas(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b := startBuilder(t, "b1", builderOpts{})
	u := unique()
	expr := `let
  a = ` + drv("chain-a", "x86_64-linux", `echo attempt >> /nix/attempts; echo a > $out`, `u = "`+u+`";`) + `;
in ` + drv("chain-b", "x86_64-linux", `echo attempt >> /nix/attempts; /bin/cat $a > $out; echo b >> $out`, `a = a; u = "`+u+`";`)
	builders := "ssh://b1 x86_64-linux - 2 1"
	first, second := newClient(t, b), newClient(t, b)

	r1 := first.build(expr, builders)
	if r1.Code != 0 {
		t.Fatalf("first board: code %d\n%s", r1.Code, r1.Stderr)
	}
	wantAttempts(t, "after the first board", r1.Stderr, []*builder{b}, 2)
	r2 := second.build(expr, builders)
	if r2.Code != 0 {
		t.Fatalf("second board: code %d\n%s", r2.Code, r2.Stderr)
	}
	if r2.Out != r1.Out {
		t.Fatalf("the boards got %s and %s", r1.Out, r2.Out)
	}
	wantAttempts(t, "after the second board", r2.Stderr, []*builder{b}, 2)
	if strings.Count(r2.Stderr, "has the outputs of chain-") != 2 {
		t.Errorf("the second board's log does not say it copied both without building:\n%s", r2.Stderr)
	}
	data, err := os.ReadFile(filepath.Join(second.Dir, "nix", strings.TrimPrefix(r2.Out, "/nix/")))
	if err != nil || string(data) != "a\nb\n" {
		t.Errorf("the second board's output: %q, %v", data, err)
	}
	second.mustVerify()
}

// Of two equally idle builders, the one that built a derivation's input
// lately (this host's decisions in the slot file) builds it: it has the
// input's output already, and nothing is uploaded. `offload pick --drv`
// says so.
func TestBuilderThatBuiltTheInputs(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	c := newClient(t, b1, b2)
	u := unique()
	a := drv("affinity-a", "x86_64-linux", `echo attempt >> /nix/attempts; echo a > $out`, `u = "`+u+`";`)
	b := `let a = ` + a + `; in ` + drv("affinity-b", "x86_64-linux", `echo attempt >> /nix/attempts; /bin/cat $a > $out`, `a = a; u = "`+u+`";`)
	builders := "ssh://b1 x86_64-linux - 2 1 ; ssh://b2 x86_64-linux - 2 1"

	c.Env = []string{"OFFLOAD_ONLY=b2"}
	if r := c.build(a, builders); r.Code != 0 {
		t.Fatalf("building a on b2: code %d\n%s", r.Code, r.Stderr)
	}
	c.Env = nil
	drvPath := c.run(defaultTimeout, "nix-instantiate", c.file("b.nix", b)).Out
	p := c.run(defaultTimeout, offloadBin, "pick", "--drv", drvPath, "--builders", builders)
	if !strings.HasPrefix(p.Out, "accept ssh://b2") || !strings.Contains(p.Out, "built 1 input lately") {
		t.Errorf("offload pick --drv %s:\n%s%s", drvPath, p.Out, p.Stderr)
	}
	r := c.build(b, builders)
	if r.Code != 0 {
		t.Fatalf("building b: code %d\n%s", r.Code, r.Stderr)
	}
	wantAttempts(t, "after building b", r.Stderr, []*builder{b1, b2}, 0, 2)
	if strings.Contains(r.Stderr, "copying 1 paths to") {
		t.Errorf("a's output was uploaded again:\n%s", r.Stderr)
	}
}
