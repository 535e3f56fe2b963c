// SPDX-License-Identifier: MIT

package testenv

import "testing"

func TestPkgOf(t *testing.T) {
	if got, want := pkgOf(1), "github.com/offload-nix/offload/internal/testenv"; got != want {
		t.Errorf("pkgOf(1) = %q, want %q", got, want)
	}
	func() {
		if got, want := pkgOf(1), "github.com/offload-nix/offload/internal/testenv"; got != want {
			t.Errorf("pkgOf(1) in a closure = %q, want %q", got, want)
		}
	}()
}

func TestCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "true": true, "1": true} {
		t.Setenv("CI", v)
		if got := CI(); got != want {
			t.Errorf("CI with CI=%q = %v, want %v", v, got, want)
		}
	}
}
