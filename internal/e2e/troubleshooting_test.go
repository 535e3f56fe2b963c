// SPDX-License-Identifier: MIT

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docNoise are the parts of docs/troubleshooting.md that change from run to
// run: builders' real state, dates, durations, ports, store path hashes, host keys and their
// fingerprints, temporary paths, and the alignment of tables around them.
var docNoise = []struct {
	re   *regexp.Regexp
	with string
}{
	// A builder's real state is this machine's (the test builders run
	// on it): load, memory, free space and other builds.
	{regexp.MustCompile(`(?m)^(\s*\S+\s+)\d+ CPUs?, .*$`), "${1}STATE"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`), "DATE"},
	{regexp.MustCompile(`\b\d+(\.\d+)?(ms|s)\b`), "DUR"},
	{regexp.MustCompile(`127\.0\.0\.1\]?:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`/nix/store/[0-9a-z]{32}`), "/nix/store/HASH"},
	{regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`), "SHA256:FP"},
	{regexp.MustCompile(`c3NoLW[A-Za-z0-9+/=]+`), "KEY"},
	{regexp.MustCompile(`/tmp/[^\s"']*`), "/tmp/X"},
	{regexp.MustCompile(`[ \t]+`), " "},
}

func normaliseDoc(s string) []string {
	for _, n := range docNoise {
		s = n.re.ReplaceAllString(s, n.with)
	}
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

// docs/troubleshooting.md is what scripts/troubleshooting.sh writes: its
// outputs are offload's real answers. A change in what offload prints, or
// in the script, fails here until the document is written again
// (scripts/troubleshooting.sh, as root) and committed.
func TestTroubleshootingDoc(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	out := filepath.Join(t.TempDir(), "troubleshooting.md")
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/troubleshooting.sh"), out)
	cmd.Env = append(os.Environ(), "OFFLOAD="+offloadBin)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/troubleshooting.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot, "docs/troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	g, w := normaliseDoc(string(got)), normaliseDoc(string(want))
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("docs/troubleshooting.md is out of date from line %d (normalised):\n  committed: %s\n  now:       %s\nrun scripts/troubleshooting.sh (as root) and commit docs/troubleshooting.md", i+1, wl, gl)
		}
	}
}
