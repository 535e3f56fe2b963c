// SPDX-License-Identifier: MIT

package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var tests = []struct {
	in, want string
}{
	{"", `""`},
	{"plain", `"plain"`},
	{`a "b" \c`, `"a \"b\" \\c"`},
	{"line\nnext\r\ttab", `"line\nnext\r\ttab"`},
	{"\x00\x1b[31m\x7f", `"\u0000\u001b[31m\u007f"`},
	{"bad \xff utf-8", `"bad \ufffd utf-8"`},
	{"c1 \u0085 \u009b", `"c1 \u0085 \u009b"`},
	{"ls \u2028 ps \u2029", `"ls \u2028 ps \u2029"`},
	{"bidi \u202e \u2066 \u061c \u200f", `"bidi \u202e \u2066 \u061c \u200f"`},
	{"ünïcødé ✓", `"ünïcødé ✓"`},
}

func TestAppend(t *testing.T) {
	for _, tt := range tests {
		if got := string(Append(nil, tt.in)); got != tt.want {
			t.Errorf("Append(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func FuzzAppend(f *testing.F) {
	for _, tt := range tests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := Append([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatalf("Append overwrote the prefix")
		}
		b = b[1:]
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Append(%q) = %s: not JSON: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("Append(%q) decodes to %q", s, back)
		}
		if strings.ContainsAny(string(b), "\n\r\u2028\u2029") {
			t.Fatalf("Append(%q) = %s: a line break", s, b)
		}
	})
}
