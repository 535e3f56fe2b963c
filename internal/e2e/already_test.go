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
	if n := attempts(t, b); n != 2 {
		t.Fatalf("%d builds on b1 for the first board, want 2\n%s", n, r1.Stderr)
	}
	r2 := second.build(expr, builders)
	if r2.Code != 0 {
		t.Fatalf("second board: code %d\n%s", r2.Code, r2.Stderr)
	}
	if r2.Out != r1.Out {
		t.Fatalf("the boards got %s and %s", r1.Out, r2.Out)
	}
	if n := attempts(t, b); n != 2 {
		t.Errorf("%d builds on b1 after the second board, want still 2\n%s", n, r2.Stderr)
	}
	if strings.Count(r2.Stderr, "has the outputs of chain-") != 2 {
		t.Errorf("the second board's log does not say it copied both without building:\n%s", r2.Stderr)
	}
	data, err := os.ReadFile(filepath.Join(second.Dir, "nix", strings.TrimPrefix(r2.Out, "/nix/")))
	if err != nil || string(data) != "a\nb\n" {
		t.Errorf("the second board's output: %q, %v", data, err)
	}
	second.mustVerify()
}
