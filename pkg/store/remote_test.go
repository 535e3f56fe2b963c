// SPDX-License-Identifier: MIT

package store

import (
	"strings"
	"testing"
)

var stripTests = []struct {
	in, want string
}{
	{"", ""},
	{"plain", "plain"},
	// Nix 2.8's BuildResult.errorMsg, as a builder sends it.
	{"builder for '\x1b[35;1m/nix/store/x-f.drv\x1b[0m' failed with exit code 3", "builder for '/nix/store/x-f.drv' failed with exit code 3"},
	{"\x1b[31;1merror:\x1b[0m x", "error: x"},
	{"a\x1b(Bb", "aBb"},
	{"cut \x1b[1", "cut "},
	{"end\x1b", "end"},
}

func TestStripANSI(t *testing.T) {
	for _, tt := range stripTests {
		if got := StripANSI(tt.in); got != tt.want {
			t.Errorf("StripANSI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzStripANSI(f *testing.F) {
	for _, tt := range stripTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := StripANSI(s)
		if strings.IndexByte(got, 0x1b) >= 0 {
			t.Errorf("StripANSI(%q) = %q, still has ESC", s, got)
		}
		if len(got) > len(s) {
			t.Errorf("StripANSI(%q) = %q, longer than its input", s, got)
		}
	})
}
