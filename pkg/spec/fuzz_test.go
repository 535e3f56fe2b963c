// SPDX-License-Identifier: MIT

package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that ParseBuilders never panics, that its errors are
// located, that lenient mode never fails, and that every machine it
// returns survives Format and a second parse unchanged.
func FuzzParse(f *testing.F) {
	for _, tt := range tests {
		f.Add(tt.in)
	}
	for _, name := range inputs(f) {
		data, err := os.ReadFile(filepath.Join(machinesDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Fuzz(func(t *testing.T, in string) {
		// Includes read from a tiny in-memory tree, so "@x" lines explore
		// recursion and cycles without touching the disk.
		files := func(name string) ([]byte, error) {
			switch name {
			case "/a":
				return []byte("a1 x86_64-linux\n@/b"), nil
			case "/b":
				return []byte("@/a"), nil
			case "/self":
				return []byte(in), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		o := Options{LocalSystem: testSystem, ReadFile: files}
		ms, _, err := ParseBuilders(in, o)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.File == "" {
				t.Fatalf("ParseBuilders(%q) error %q is not located", in, err)
			}
			if !strings.Contains(err.Error(), ":") {
				t.Fatalf("error %q has no file:line", err)
			}
		}
		for _, m := range ms {
			line := Format(m)
			again, _, err := ParseBuilders(line, o)
			if err != nil {
				t.Fatalf("Format(%+v) = %q, which does not parse: %v", m, line, err)
			}
			if len(again) != 1 {
				t.Fatalf("Format(%+v) = %q parses to %d machines", m, line, len(again))
			}
			got := again[0]
			got.Source, m.Source = "", ""
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("Parse(Format(m)) != m\nline %q\n got %#v\nwant %#v", line, got, m)
			}
		}
		o.Lenient = true
		_, ws, err := ParseBuilders(in, o)
		if err != nil {
			t.Fatalf("lenient ParseBuilders(%q): %v", in, err)
		}
		for _, w := range ws {
			if !strings.Contains(w.Source, ":") {
				t.Fatalf("warning %q has no file:line", w)
			}
		}
	})
}

// machines1000 is a machines file of 1,000 varied lines, as a large
// site's generated /etc/nix/machines might be.
func machines1000() string {
	var b strings.Builder
	b.WriteString("# generated\n")
	for i := range 1000 {
		b.WriteString("ssh://nix@builder")
		b.WriteString(strings.Repeat("x", i%10))
		b.WriteByte(byte('a' + i%26))
		switch i % 3 {
		case 0:
			b.WriteString(" x86_64-linux,i686-linux /root/.ssh/id_builder 8 2 big-parallel,kvm,nixos-test big-parallel " + hostKey + "\n")
		case 1:
			b.WriteString(" aarch64-linux - 4 1.5 kvm - -\n")
		case 2:
			b.WriteString("\n")
		}
	}
	return b.String()
}

func BenchmarkParse1000(b *testing.B) {
	in := machines1000()
	o := Options{LocalSystem: testSystem}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		ms, _, err := ParseBuilders(in, o)
		if err != nil || len(ms) != 1000 {
			b.Fatal(len(ms), err)
		}
	}
}
