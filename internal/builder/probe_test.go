// SPDX-License-Identifier: MIT

package builder

import (
	"reflect"
	"testing"
)

func TestParseNixConfig(t *testing.T) {
	// Captured from nix 2.8.0 show-config (abridged), and the shape of
	// nix 2.2x config show, which is the same.
	out := "allowed-users = *\nextra-platforms = i686-linux x86_64-v1-linux\nsystem = x86_64-linux\nsystem-features = benchmark big-parallel nixos-test\nplugin-files =\nwarn-dirty = true\n"
	got := parseNixConfig([]byte(out))
	want := map[string]string{
		"allowed-users":   "*",
		"extra-platforms": "i686-linux x86_64-v1-linux",
		"system":          "x86_64-linux",
		"system-features": "benchmark big-parallel nixos-test",
		"plugin-files":    "",
		"warn-dirty":      "true",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseNixConfig = %q, want %q", got, want)
	}
}

func TestParseNixVersion(t *testing.T) {
	tests := []struct {
		out, want string
	}{
		{"nix (Nix) 2.8.0\n", "2.8.0"},
		{"nix (Nix) 2.24.10\n", "2.24.10"},
		{"nix (Nix) 2.20.0pre20240115_dirty\n", "2.20.0pre20240115_dirty"},
		{"nix (Lix, like Nix) 2.91.1\nSystem type: x86_64-linux\n", "2.91.1 (Lix)"},
		{"", "unknown"},
	}
	for _, tt := range tests {
		got := parseNixVersion([]byte(tt.out))
		if got != tt.want {
			t.Errorf("parseNixVersion(%q) = %q, want %q", tt.out, got, tt.want)
		}
	}
}
