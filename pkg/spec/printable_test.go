// SPDX-License-Identifier: MIT

package spec

import "testing"

func TestPrintable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"x86_64-linux", "x86_64-linux"},
		{"größe-1.0", "größe-1.0"},
		{"\x1b[2J", `\x1b[2J`},
		{"\x1b]0;pwned\a", `\x1b]0;pwned\a`},
		{"x\n# accept ssh://evil", `x\n# accept ssh://evil`},
		{"a\tb\rc", `a\tb\rc`},
		{"\x7f\u009b31m", `\x7f\u009b31m`},
		{"\xff\xfe", `\xff\xfe`},
		{"abc\u202edcba", `abc\u202edcba`},
		{"line\u2028sep", `line\u2028sep`},
		{`back\slash`, `back\slash`},
	} {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
