// SPDX-License-Identifier: MIT

package spec

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s safe to print to a terminal: control characters (C0,
// DEL and C1, so also tabs and newlines), bytes that are not UTF-8, and the
// characters that reorder or hide text (bidirectional controls, line and
// paragraph separators) are written as Go escapes such as \x1b, \n and
// \u202e; everything else is kept. Every string the commands print that came
// from a derivation, a builder or a file goes through it, so that none can
// clear the screen, set a window title, or forge a line of output.
func Printable(s string) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unsafeRune(r, n) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[i])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[i])&15, 16))
		case unsafeRune(r, n):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func unsafeRune(r rune, n int) bool {
	return r < 0x20 || (r >= 0x7f && r < 0xa0) || (r == utf8.RuneError && n == 1) ||
		r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}
