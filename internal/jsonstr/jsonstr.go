// SPDX-License-Identifier: MIT

// Package jsonstr appends strings as JSON strings, for the few places that
// write JSON by hand: the hook's @nix lines to Nix (pkg/hookproto) and the
// decisions that pkg/pick explains. It imports nothing but unicode/utf8, so
// pure packages may use it.
package jsonstr

import "unicode/utf8"

const hex = "0123456789abcdef"

// Append appends s to b as a JSON string. Invalid UTF-8 becomes U+FFFD:
// Nix's JSON parser rejects it, and a rejected line is lost. Control
// characters (C0, DEL and C1), the bidirectional controls a terminal acts
// on, and U+2028 and U+2029 (line breaks to JavaScript) are escaped, so
// that the JSON stays one line and printing a field shows what it holds.
func Append(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r < 0xa0 || r == 0x61c || r == 0x200e || r == 0x200f ||
			(r >= 0x2028 && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			b = append(b, '\\', 'u', hex[r>>12], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
