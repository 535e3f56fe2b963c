// SPDX-License-Identifier: MIT

package serve

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// nix32Alphabet is Nix's base32 alphabet (Nix 2.8 src/libutil/hash.cc,
// base32Chars).
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

var nix32Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = int8(i)
	}
	return t
}()

// DecodeNix32 decodes Nix's base32 into dst, which must have the decoded
// length (32 bytes for the 52 characters of a sha256). Character k of s
// (left to right) holds bits 5·(len(s)−1−k) and up of dst read as one
// little-endian integer; bits beyond dst must be zero.
func DecodeNix32(dst []byte, s string) error {
	if len(s) != (len(dst)*8-1)/5+1 {
		return fmt.Errorf("serve: nix32 string of %d characters cannot hold %d bytes", len(s), len(dst))
	}
	clear(dst)
	for n := 0; n < len(s); n++ {
		c := s[len(s)-1-n]
		v := nix32Value[c]
		if v < 0 {
			return fmt.Errorf("serve: invalid nix32 character %q", c)
		}
		b := n * 5
		i, j := b/8, b%8
		dst[i] |= byte(v) << j
		carry := byte(v) >> (8 - j)
		if i+1 < len(dst) {
			dst[i+1] |= carry
		} else if carry != 0 {
			return fmt.Errorf("serve: nix32 string %q has bits beyond %d bytes", s, len(dst))
		}
	}
	return nil
}

// EncodeNix32 encodes b in Nix's base32.
func EncodeNix32(b []byte) string {
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, 0, n)
	for k := n - 1; k >= 0; k-- {
		bit := k * 5
		i, j := bit/8, bit%8
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out = append(out, nix32Alphabet[c&0x1f])
	}
	return string(out)
}

// ParseSHA256 returns the 32-byte digest of a sha256 hash in any form Nix
// prints: "sha256:" followed by Nix base32 (as QueryPathInfos sends it),
// base16 or base64; SRI "sha256-<base64>"; or one of those encodings bare,
// told apart by length as Nix's Hash::parseAny does.
func ParseSHA256(s string) ([32]byte, error) {
	var d [32]byte
	body := s
	switch {
	case strings.HasPrefix(s, "sha256:"):
		body = s[len("sha256:"):]
	case strings.HasPrefix(s, "sha256-"):
		b, err := base64.StdEncoding.DecodeString(s[len("sha256-"):])
		if err != nil || len(b) != len(d) {
			return d, fmt.Errorf("serve: bad SRI hash %q", s)
		}
		copy(d[:], b)
		return d, nil
	case strings.Contains(s, ":"):
		return d, fmt.Errorf("serve: hash %q is not sha256", s)
	}
	switch len(body) {
	case 64:
		if _, err := hex.Decode(d[:], []byte(body)); err != nil {
			return d, fmt.Errorf("serve: bad base16 hash %q", s)
		}
	case 52:
		if err := DecodeNix32(d[:], body); err != nil {
			return d, err
		}
	case 44:
		b, err := base64.StdEncoding.DecodeString(body)
		if err != nil || len(b) != len(d) {
			return d, fmt.Errorf("serve: bad base64 hash %q", s)
		}
		copy(d[:], b)
	default:
		return d, fmt.Errorf("serve: hash %q has the wrong length for sha256", s)
	}
	return d, nil
}
