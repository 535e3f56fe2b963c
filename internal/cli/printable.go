// SPDX-License-Identifier: MIT

package cli

// Rules for output: every string a command prints that came from a
// derivation (its name, system, features), a builder (versions, errors,
// readings) or a file (names, URIs, reasons in the slot file) goes through
// printable, at the place it is printed. Under nix-daemon the slot file's
// decision log holds what any user's derivation said, and root reads it.

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/offload-nix/offload/pkg/spec"
)

// printable is spec.Printable: s with control and reordering characters
// written as escapes.
func printable(s string) string { return spec.Printable(s) }

// printableLines is printable for each line of a message that may have
// several (errors.Join).
func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = printable(lines[i])
	}
	return strings.Join(lines, "\n")
}

// printable returns a copy of st whose strings are printable, for --format
// templates.
func (st *statusInfo) printable() *statusInfo {
	c := *st
	c.Builders = append([]builderStatus(nil), st.Builders...)
	for i := range c.Builders {
		b := &c.Builders[i]
		b.URI, b.Name, b.LastError = printable(b.URI), printable(b.Name), printable(b.LastError)
		b.Running = append([]runningStatus(nil), b.Running...)
		for j := range b.Running {
			b.Running[j].Drv = printable(b.Running[j].Drv)
		}
	}
	return &c
}

// printableJSON escapes, in JSON text b, the characters encoding/json
// passes through that a terminal may act on: DEL, C1 controls and
// bidirectional controls (it escapes C0 controls and U+2028/9 itself).
// They can only be inside strings, where \uXXXX means the same.
func printableJSON(b []byte) []byte {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x7f && r < 0xa0 || unicode.Is(unicode.Bidi_Control, r) {
			break
		}
		i += n
	}
	if i == len(b) {
		return b
	}
	out := bytes.NewBuffer(make([]byte, 0, len(b)+16))
	out.Write(b[:i])
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r >= 0x7f && r < 0xa0 || unicode.Is(unicode.Bidi_Control, r) {
			q := strconv.FormatInt(int64(r), 16)
			out.WriteString(`\u` + "0000"[len(q):] + q)
		} else {
			out.Write(b[i : i+n])
		}
		i += n
	}
	return out.Bytes()
}
