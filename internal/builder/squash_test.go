// SPDX-License-Identifier: MIT

package builder

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

const exportPath = "/nix/store/00000000000000000000000000000000-out"

// export writes a one-path export stream of nar as path, the way
// `nix-store --export` does (Nix src/libstore/export-import.cc).
func export(nar []byte, path string, tail ...uint64) []byte {
	var b bytes.Buffer
	u64 := func(n uint64) { binary.Write(&b, binary.LittleEndian, n) }
	str := func(s string) {
		u64(uint64(len(s)))
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	u64(1)
	b.Write(nar)
	u64(exportMagic)
	str(path)
	u64(1)
	str("/nix/store/11111111111111111111111111111111-dep")
	str("/nix/store/22222222222222222222222222222222-out.drv")
	u64(0)
	for _, n := range tail {
		u64(n)
	}
	return b.Bytes()
}

func TestReadExport(t *testing.T) {
	nar := bytes.Repeat([]byte("nar bytes"), 100)
	good := export(nar, exportPath, 0)
	tests := []struct {
		name    string
		in      []byte
		size    uint64
		wantErr string
	}{
		{"whole", good, uint64(len(nar)), ""},
		{"empty", nil, uint64(len(nar)), "unexpected EOF"},
		{"no_path", export(nil, exportPath, 0)[8:], 0, "no path at its start"},
		{"cut_in_nar", good[:500], uint64(len(nar)), "unexpected EOF"},
		{"cut_after_nar", good[:8+len(nar)+12], uint64(len(nar)), "unexpected EOF"},
		{"cut_before_end", good[:len(good)-8], uint64(len(nar)), "unexpected EOF"},
		{"longer_than_said", good, uint64(len(nar)) - 8, "no NIXE after the NAR"},
		{"other_path", export(nar, exportPath+"2", 0), uint64(len(nar)), "it is of"},
		{"two_paths", export(nar, exportPath, 1), uint64(len(nar)), "more than one path"},
		{"trailing", append(bytes.Clone(good), 'x'), uint64(len(nar)), "1 bytes after its end"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := readExport(bytes.NewReader(tt.in), exportPath, &out, tt.size)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: readExport = %v", tt.name, err)
		case tt.wantErr == "" && !bytes.Equal(out.Bytes(), nar):
			t.Errorf("%s: readExport wrote %d bytes, want the %d of the NAR", tt.name, out.Len(), len(nar))
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: readExport = %v, want an error with %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestSquashCommand(t *testing.T) {
	const tail = "--export " + exportPath + " | { zstd -q -c -3 2>/dev/null || gzip -c -3 ; }"
	tests := []struct {
		ng     bool
		params map[string]string
		want   string
	}{
		{false, nil, "nix-store " + tail},
		{true, nil, "nix-store " + tail},
		{false, map[string]string{"remote-program": "/opt/nix/bin/nix-store"}, "/opt/nix/bin/nix-store " + tail},
		{true, map[string]string{"remote-program": "/opt/nix/bin/nix-daemon"}, "/opt/nix/bin/nix-store " + tail},
		{true, map[string]string{"remote-program": "sudo nix-daemon"}, ""},
		{false, map[string]string{"remote-program": "/tmp/fake-nix-store"}, ""},
		{true, map[string]string{"remote-program": "/opt/nix/bin/nix-store"}, ""},
		{false, map[string]string{"remote-store": "local?root=/x y"}, "nix-store --store 'local?root=/x y' " + tail},
	}
	for _, tt := range tests {
		got := strings.Join(squashCommand(tt.ng, tt.params, exportPath, 3), " ")
		if got != tt.want {
			t.Errorf("squashCommand(%v, %v) = %q, want %q", tt.ng, tt.params, got, tt.want)
		}
	}
	const head = "z=zstd; command -v zstd >/dev/null || z=gzip; command -v $z >/dev/null && command -v nix-store >/dev/null && $z -c </dev/null | $z -dc && echo $z && $z -dc | "
	for params, want := range map[string]string{
		"":                head + "nix-store --serve --write",
		"local?root=/x y": head + "nix-store --store 'local?root=/x y' --serve --write",
	} {
		got := strings.Join(uploadCommand(true, map[string]string{"remote-store": params}), " ")
		if got != want {
			t.Errorf("uploadCommand(remote-store %q) = %q, want %q", params, got, want)
		}
	}
}

// plainRemote counts the copies that went over the store session.
type plainRemote struct {
	Remote
	dumps, uploads int
}

func (r *plainRemote) DumpStorePath(string, io.Writer, uint64) error { r.dumps++; return nil }
func (r *plainRemote) AddToStoreNars([]store.PathInfo, func(int) (io.Reader, error)) error {
	r.uploads++
	return nil
}

// A copy below squashMin goes over the store session at once, without a
// session of its own on the builder; a larger one asks for one first
// (here refused: a Conn from NewConn starts no command).
func TestSquashMin(t *testing.T) {
	for _, size := range []uint64{1, squashMin - 1, squashMin} {
		plain := &plainRemote{}
		var said []string
		c := NewConn(&spec.Machine{Scheme: "ssh", URI: "ssh://b"}, plain, nil)
		r := c.Squashed(context.Background(), SquashOptions{Logf: func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) }})
		if err := r.DumpStorePath(exportPath, io.Discard, size); err != nil {
			t.Fatalf("%d bytes back: %v", size, err)
		}
		infos := []store.PathInfo{{Path: exportPath, NarSize: size}}
		if err := r.AddToStoreNars(infos, nil); err != nil {
			t.Fatalf("%d bytes up: %v", size, err)
		}
		if plain.dumps != 1 || plain.uploads != 1 {
			t.Errorf("%d bytes: %d copies back and %d up over the store session, want 1 each", size, plain.dumps, plain.uploads)
		}
		if asked := len(said) > 0; asked != (size >= squashMin) {
			t.Errorf("%d bytes: asked the builder for a compressed copy: %v (said %q)", size, asked, said)
		}
	}
}

// Compress decides each large copy, both ways, before the builder is
// asked for anything; Measured takes every large copy, compressed or not.
func TestSquashDecides(t *testing.T) {
	for _, size := range []uint64{squashMin - 1, squashMin, 50 << 20} {
		plain := &plainRemote{}
		var said []string
		var asked int
		var got []Copy
		c := NewConn(&spec.Machine{Scheme: "ssh", URI: "ssh://b"}, plain, nil)
		r := c.Squashed(context.Background(), SquashOptions{
			Compress: func(int64) bool { asked++; return false },
			Measured: func(cp Copy) { got = append(got, cp) },
			Logf:     func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) },
		})
		if err := r.DumpStorePath(exportPath, io.Discard, size); err != nil {
			t.Fatalf("%d bytes back: %v", size, err)
		}
		if err := r.AddToStoreNars([]store.PathInfo{{Path: exportPath, NarSize: size}}, nil); err != nil {
			t.Fatalf("%d bytes up: %v", size, err)
		}
		large := size >= squashMin
		if plain.dumps != 1 || plain.uploads != 1 || len(said) > 0 {
			t.Errorf("%d bytes: %d copies back and %d up over the store session, said %q; want 1 each, nothing said", size, plain.dumps, plain.uploads, said)
		}
		if want := map[bool]int{true: 2}[large]; asked != want || len(got) != want {
			t.Errorf("%d bytes: Compress asked %d times, %d measures; want %d", size, asked, len(got), want)
		}
		for _, cp := range got {
			if cp.Raw != int64(size) || cp.Wire != int64(size) || cp.Compressed || cp.Took <= 0 {
				t.Errorf("%d bytes: measure %+v", size, cp)
			}
		}
	}
}

// A copy back goes at level 9 only on a slow link that it would take 5 s
// or more to cross as is.
func TestBackLevel(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		rate float64
		size uint64
		want int
	}{
		{0, 50 * mib, 0},           // unknown link
		{2.3 * mib, 50 * mib, 9},   // 20 Mbit
		{2.3 * mib, 8 * mib, 0},    // 20 Mbit, 3.5 s as is
		{2.3 * mib, 12 * mib, 9},   // 20 Mbit, 5.2 s as is
		{11 * mib, 100 * mib, 0},   // 100 Mbit
		{backSlow, 1 << 30, 0},     // the bound
		{backSlow - 1, 1 << 30, 9}, // just below
	} {
		if got := backLevel(tt.rate, tt.size); got != tt.want {
			t.Errorf("backLevel(%.1f MiB/s, %d MiB) = %d, want %d", tt.rate/mib, tt.size/mib, got, tt.want)
		}
	}
}
