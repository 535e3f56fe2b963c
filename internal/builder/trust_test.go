// SPDX-License-Identifier: MIT

package builder

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/nar"
)

func TestTrustProbeNAR(t *testing.T) {
	name := strings.TrimPrefix(trustProbePath(), "/nix/store/")
	hash, rest, _ := strings.Cut(name, "-")
	if len(hash) != 32 || rest != "offload-trust-probe" {
		t.Errorf("trustProbePath = %q: want a 32-character hash and the name offload-trust-probe", trustProbePath())
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := nar.Restore(bytes.NewReader(trustProbeNAR()), dst, nar.Options{}); err != nil {
		t.Fatalf("the probe's NAR does not unpack: %v", err)
	}
	if b, err := os.ReadFile(dst); err != nil || !strings.HasPrefix(string(b), "offload checks") {
		t.Errorf("the probe's file holds %q, %v", b, err)
	}
}
