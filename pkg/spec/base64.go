// SPDX-License-Identifier: MIT

package spec

import "errors"

// errBase64 is what nixBase64Decode reports for a character outside the
// standard alphabet.
var errBase64 = errors.New("invalid character in base64 string")

// nixBase64Decode decodes s the way Nix's base64 decoder does (2.8
// base64Decode in src/libutil/util.cc, current base64::decode in
// src/libutil/base-n.cc), which is more lenient than encoding/base64:
//
//   - only the standard alphabet (A–Z a–z 0–9 + /) is accepted;
//   - decoding stops at the first '=', whatever follows it;
//   - '\n' is skipped;
//   - padding is not required, and leftover bits are dropped;
//   - any other byte is an error.
func nixBase64Decode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)*3/4)
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var v byte
		switch {
		case c == '=':
			return out, nil
		case c == '\n':
			continue
		case c >= 'A' && c <= 'Z':
			v = c - 'A'
		case c >= 'a' && c <= 'z':
			v = c - 'a' + 26
		case c >= '0' && c <= '9':
			v = c - '0' + 52
		case c == '+':
			v = 62
		case c == '/':
			v = 63
		default:
			return nil, errBase64
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	return out, nil
}
