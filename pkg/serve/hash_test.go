// SPDX-License-Identifier: MIT

package serve

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// Vectors from `nix-hash --type sha256 --to-base32 <hex>` (Nix 2.8).
var nix32Tests = []struct {
	hex, nix32 string
}{
	{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
	{"0000000000000000000000000000000000000000000000000000000000000001", "0080000000000000000000000000000000000000000000000000"},
	{"ff00000000000000000000000000000000000000000000000000000000000080", "100000000000000000000000000000000000000000000000007z"},
}

func TestNix32(t *testing.T) {
	for _, tt := range nix32Tests {
		raw, _ := hex.DecodeString(tt.hex)
		if got := EncodeNix32(raw); got != tt.nix32 {
			t.Errorf("EncodeNix32(%s) = %s, want %s", tt.hex, got, tt.nix32)
		}
		var got [32]byte
		if err := DecodeNix32(got[:], tt.nix32); err != nil || !bytes.Equal(got[:], raw) {
			t.Errorf("DecodeNix32(%s) = %x, %v; want %s", tt.nix32, got, err, tt.hex)
		}
	}
	var d [32]byte
	for _, bad := range []string{
		"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e",  // 'e' is not in the alphabet
		"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7",   // too short
		"2000000000000000000000000000000000000000000000000000",  // bit 256 set
		"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c733", // too long
	} {
		if err := DecodeNix32(d[:], bad); err == nil {
			t.Errorf("DecodeNix32(%q) succeeded", bad)
		}
	}
	// Store path hash parts are 20 bytes in 32 characters.
	var h [20]byte
	if err := DecodeNix32(h[:], "2jmiqxxd2z4ypk8am71rc6kffqzgma57"); err != nil {
		t.Errorf("DecodeNix32(store path hash): %v", err)
	} else if got := EncodeNix32(h[:]); got != "2jmiqxxd2z4ypk8am71rc6kffqzgma57" {
		t.Errorf("EncodeNix32(DecodeNix32(x)) = %s", got)
	}
}

func TestParseSHA256(t *testing.T) {
	const hexEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		in  string
		err string
	}{
		{"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", ""},
		{"sha256:" + hexEmpty, ""},
		{hexEmpty, ""},
		{strings.ToUpper(hexEmpty), ""},
		{"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", ""},
		{"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
		{"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
		{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", ""},
		{"sha512:" + hexEmpty, "not sha256"},
		{"sha256:abc", "wrong length"},
		{"", "wrong length"},
		{"sha256-47DEQpj8HBSa", "bad SRI"},
		{"sha256:" + strings.Repeat("g", 64), "bad base16"},
		{"sha256:" + strings.Repeat("!", 44), "bad base64"},
		{"sha256:" + strings.Repeat("e", 52), "invalid nix32"},
	}
	for _, tt := range tests {
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
