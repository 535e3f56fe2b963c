// SPDX-License-Identifier: MIT

package store

import (
	"encoding/hex"
	"strings"
	"testing"
)

// sha256 of the empty string.
const hexEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

var sha256Tests = []struct {
	in  string
	err string // "" for success: the digest is hexEmpty
}{
	{"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", ""},
	{"sha256:" + hexEmpty, ""},
	{"sha256:" + strings.ToUpper(hexEmpty), ""},
	{hexEmpty, ""},
	{strings.ToUpper(hexEmpty), ""},
	{"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", ""},
	{"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
	{"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
	{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
	{"sha512:" + hexEmpty, "not sha256"},
	{"sha1:" + hexEmpty, "not sha256"},
	{"sha512-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "wrong length"},
	{"sha256:abc", "wrong length"},
	{"", "wrong length"},
	{"sha256:" + hexEmpty[:63], "wrong length"},
	{"sha256:" + hexEmpty[:63] + "g", "bad hash"},
	{"sha256-47DEQpj8HBSa", "bad SRI"},
	{"sha256-" + hexEmpty, "bad SRI"},
	{"sha256:" + strings.Repeat("g", 64), "bad hash"},
	{"sha256:" + strings.Repeat("!", 44), "bad hash"},
	{"sha256:" + strings.Repeat("e", 52), "bad hash"},                           // 'e' is not Nix base32
	{"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e", "bad hash"}, // nor in the last place
	{"sha256:zmdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "bad hash"}, // bits beyond 256
}

func TestParseSHA256(t *testing.T) {
	for _, tt := range sha256Tests {
		d, err := ParseSHA256(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSHA256(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || hex.EncodeToString(d[:]) != hexEmpty {
			t.Errorf("ParseSHA256(%q) = %x, %v; want %s", tt.in, d, err, hexEmpty)
		}
	}
}

func TestFormatSHA256(t *testing.T) {
	// Vectors from `nix-hash --type sha256 --to-base32 <hex>` (Nix 2.8).
	for _, tt := range []struct{ hex, want string }{
		{hexEmpty, "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
		{"0000000000000000000000000000000000000000000000000000000000000001", "sha256:0080000000000000000000000000000000000000000000000000"},
		{"ff00000000000000000000000000000000000000000000000000000000000080", "sha256:100000000000000000000000000000000000000000000000007z"},
	} {
		var d [32]byte
		hex.Decode(d[:], []byte(tt.hex))
		if got := FormatSHA256(d); got != tt.want {
			t.Errorf("FormatSHA256(%s) = %s, want %s", tt.hex, got, tt.want)
		}
		if back, err := ParseSHA256(tt.want); err != nil || back != d {
			t.Errorf("ParseSHA256(%s) = %x, %v; want %s", tt.want, back, err, tt.hex)
		}
	}
}

func FuzzParseSHA256(f *testing.F) {
	for _, tt := range sha256Tests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseSHA256(s)
		if err != nil {
			return
		}
		// Whatever parses, its other forms parse to the same digest.
		for _, form := range []string{"sha256:" + hex.EncodeToString(d[:]), FormatSHA256(d)} {
			if d2, err := ParseSHA256(form); err != nil || d2 != d {
				t.Fatalf("ParseSHA256(%q) = %x, but %q gives %x, %v", s, d, form, d2, err)
			}
		}
	})
}

func TestCheckPath(t *testing.T) {
	h := "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr"
	tests := []struct {
		p  string
		ok bool
	}{
		{h + "-hello-2.12", true},
		{h + "-a+b=c?d_e.f", true},
		{h + "-" + strings.Repeat("n", 211), true},
		{h + "-" + strings.Repeat("n", 212), false},
		{h + "-", false},
		{h + "-..", false},
		{h + "-a/b", false},
		{h + "-a b", false},
		{"/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pe-x", false},
		{"/nix/store/short-x", false},
		{"/gnu/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-x", false},
		{"/nix/store/../0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-x", false},
	}
	for _, tt := range tests {
		if err := CheckPath("/nix/store", tt.p); (err == nil) != tt.ok {
			t.Errorf("CheckPath(%q) = %v, want ok=%v", tt.p, err, tt.ok)
		}
	}
}
