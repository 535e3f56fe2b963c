// SPDX-License-Identifier: MIT

package wire

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// le is n as eight little-endian bytes.
func le(n uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return string(b[:])
}

// value is one thing to write and read back.
type value struct {
	name  string
	write func(w *Writer) error
	read  func(r *Reader) (any, error)
	want  any
	bytes string // the encoding
}

func u64(n uint64) value {
	return value{"uint64", func(w *Writer) error { return w.Uint64(n) },
		func(r *Reader) (any, error) { return r.Uint64() }, n, le(n)}
}

func boolean(b bool) value {
	enc := le(0)
	if b {
		enc = le(1)
	}
	return value{"bool", func(w *Writer) error { return w.Bool(b) },
		func(r *Reader) (any, error) { return r.Bool() }, b, enc}
}

func str(s, enc string) value {
	return value{"string", func(w *Writer) error { return w.String(s) },
		func(r *Reader) (any, error) { return r.String() }, s, enc}
}

func byteStr(s, enc string) value {
	return value{"bytes", func(w *Writer) error { return w.Bytes([]byte(s)) },
		func(r *Reader) (any, error) {
			b, err := r.BytesMax([]byte("prefix"), MaxString)
			return strings.TrimPrefix(string(b), "prefix"), err
		}, s, enc}
}

func strs(ss []string, enc string) value {
	return value{"strings", func(w *Writer) error { return w.Strings(ss) },
		func(r *Reader) (any, error) {
			got, err := r.Strings()
			return strings.Join(got, "|"), err
		}, strings.Join(ss, "|"), enc}
}

var values = []value{
	u64(0),
	u64(1),
	u64(0x390c9deb),
	u64(1<<64 - 1),
	boolean(false),
	boolean(true),
	str("", le(0)),
	str("a", le(1)+"a\x00\x00\x00\x00\x00\x00\x00"),
	str("abcdefgh", le(8)+"abcdefgh"),
	str("nix-archive-1", le(13)+"nix-archive-1\x00\x00\x00"),
	byteStr("", le(0)),
	byteStr("\x00\xff", le(2)+"\x00\xff\x00\x00\x00\x00\x00\x00"),
	strs(nil, le(0)),
	strs([]string{"out", "dev"}, le(2)+le(3)+"out\x00\x00\x00\x00\x00"+le(3)+"dev\x00\x00\x00\x00\x00"),
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, v := range values {
		if err := v.write(w); err != nil {
			t.Fatalf("writing %s %v: %v", v.name, v.want, err)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("the Writer sent %d bytes before Flush", buf.Len())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, v := range values {
		want.WriteString(v.bytes)
	}
	if buf.String() != want.String() {
		t.Fatalf("encoding:\n got %q\nwant %q", buf.String(), want.String())
	}
	r := NewReader(&buf)
	for _, v := range values {
		got, err := v.read(r)
		if err != nil || got != v.want {
			t.Errorf("reading %s: %v, %v; want %v", v.name, got, err, v.want)
		}
	}
	if _, err := r.Uint64(); err != io.EOF {
		t.Errorf("reading past the end: %v, want io.EOF", err)
	}
}

// TestShortRead cuts every encoding at every length: reading must fail,
// and with an end-of-file error, never a value.
func TestShortRead(t *testing.T) {
	for _, v := range values {
		for n := 0; n < len(v.bytes); n++ {
			got, err := v.read(NewReader(strings.NewReader(v.bytes[:n])))
			if err == nil {
				t.Errorf("reading %s from %d of its %d bytes = %v, want an error", v.name, n, len(v.bytes), got)
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("reading %s from %d of its %d bytes: %v, want an end of file", v.name, n, len(v.bytes), err)
			}
		}
	}
	r := NewReader(strings.NewReader(le(3) + "abc"))
	if err := r.Expect("abc"); !errors.Is(err, io.EOF) {
		t.Errorf("Expect without padding: %v, want io.EOF", err)
	}
}

// TestCaps checks that a length beyond a cap fails before anything is
// allocated for it: the lengths here are far too large to allocate.
func TestCaps(t *testing.T) {
	huge := le(1 << 62)
	tests := []struct {
		name string
		in   string
		read func(r *Reader) error
		want string
	}{
		{"string", huge, func(r *Reader) error { _, err := r.String(); return err }, "longer than 1048576"},
		{"string at MaxString", le(MaxString + 1), func(r *Reader) error { _, err := r.String(); return err }, "longer than"},
		{"bytes", le(9), func(r *Reader) error { _, err := r.BytesMax(nil, 8); return err }, "string of 9 bytes is longer than 8"},
		{"list", huge, func(r *Reader) error { _, err := r.Strings(); return err }, "list of 4611686018427387904 entries"},
		{"entry", le(1) + huge, func(r *Reader) error { _, err := r.Strings(); return err }, "longer than"},
		{"int", le(11), func(r *Reader) error { _, err := r.Int(10); return err }, "integer 11 is larger than 10"},
		{"expect", huge, func(r *Reader) error { return r.Expect("(") }, `expected "("`},
	}
	for _, tt := range tests {
		err := tt.read(NewReader(strings.NewReader(tt.in)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}

	// The caps are the Reader's to set.
	r := NewReader(strings.NewReader(le(2) + le(1) + "a\x00\x00\x00\x00\x00\x00\x00" + le(1) + "b\x00\x00\x00\x00\x00\x00\x00"))
	r.MaxList = 1
	if _, err := r.Strings(); err == nil {
		t.Errorf("Strings with MaxList 1 read a list of 2")
	}
	r = NewReader(strings.NewReader(le(4) + "abcd\x00\x00\x00\x00"))
	r.MaxString = 3
	if _, err := r.String(); err == nil {
		t.Errorf("String with MaxString 3 read 4 bytes")
	}
	if n, err := NewReader(strings.NewReader(le(10))).Int(10); n != 10 || err != nil {
		t.Errorf("Int(10) of 10 = %d, %v", n, err)
	}
}

func TestPadding(t *testing.T) {
	_, err := NewReader(strings.NewReader(le(1) + "a\x00\x00\x00\x01\x00\x00\x00")).String()
	if err != ErrPadding {
		t.Errorf("String with non-zero padding: %v, want ErrPadding", err)
	}
	if err := NewReader(strings.NewReader(le(1) + "(\x00\x00\x00\x00\x00\x00\x01")).Expect("("); err != ErrPadding {
		t.Errorf("Expect with non-zero padding: %v, want ErrPadding", err)
	}
}

func TestExpect(t *testing.T) {
	long := strings.Repeat("x", 100) // beyond Expect's stack buffer
	tests := []struct {
		in, want string
		ok       bool
	}{
		{le(1) + "(\x00\x00\x00\x00\x00\x00\x00", "(", true},
		{le(13) + "nix-archive-1\x00\x00\x00", "nix-archive-1", true},
		{le(100) + long + "\x00\x00\x00\x00", long, true},
		{le(1) + ")\x00\x00\x00\x00\x00\x00\x00", "(", false},
		{le(2) + "((\x00\x00\x00\x00\x00\x00", "(", false},
		{le(100) + strings.Repeat("y", 100) + "\x00\x00\x00\x00", long, false},
	}
	for _, tt := range tests {
		err := NewReader(strings.NewReader(tt.in)).Expect(tt.want)
		if (err == nil) != tt.ok {
			t.Errorf("Expect(%.10q) on %.20q: %v, want ok=%v", tt.want, tt.in, err, tt.ok)
		}
	}
}

func TestRaw(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.String("nar")
	w.Raw([]byte("raw bytes, unpadded"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	if s, err := r.String(); s != "nar" || err != nil {
		t.Fatalf("String = %q, %v", s, err)
	}
	rest, _ := io.ReadAll(r.Underlying())
	if string(rest) != "raw bytes, unpadded" {
		t.Errorf("raw bytes = %q", rest)
	}
}

// failWriter fails every write.
type failWriter struct{}

var errWrite = errors.New("write failed")

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWriteError(t *testing.T) {
	w := NewWriter(failWriter{})
	w.String(strings.Repeat("x", 100<<10)) // more than the buffer
	if err := w.Flush(); !errors.Is(err, errWrite) {
		t.Errorf("Flush after a failed write: %v, want %v", err, errWrite)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(0), "", "a", "")
	f.Add(uint64(1<<64-1), "nix-archive-1", "out", "dev")
	f.Fuzz(func(t *testing.T, n uint64, s, a, b string) {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.Uint64(n)
		w.String(s)
		w.Strings([]string{a, b})
		w.Bytes([]byte(s))
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if buf.Len()%8 != 0 {
			t.Fatalf("encoding of %d bytes is not a multiple of eight", buf.Len())
		}
		r := NewReader(&buf)
		if got, err := r.Uint64(); got != n || err != nil {
			t.Fatalf("Uint64 = %d, %v; want %d", got, err, n)
		}
		if got, err := r.String(); got != s || err != nil {
			t.Fatalf("String = %q, %v; want %q", got, err, s)
		}
		if got, err := r.Strings(); len(got) != 2 || got[0] != a || got[1] != b || err != nil {
			t.Fatalf("Strings = %q, %v; want [%q %q]", got, err, a, b)
		}
		if err := r.Expect(s); err != nil {
			t.Fatalf("Expect(%q): %v", s, err)
		}
		if buf.Len() != 0 {
			t.Fatalf("%d bytes left over", buf.Len())
		}
	})
}

// FuzzReader reads arbitrary input: never a panic, and never a value from
// a length beyond the caps.
func FuzzReader(f *testing.F) {
	for _, v := range values {
		f.Add([]byte(v.bytes))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		r.MaxString, r.MaxList = 64, 4
		for {
			ss, err := r.Strings()
			if err != nil {
				return
			}
			if len(ss) > 4 {
				t.Fatalf("Strings read %d entries, more than MaxList", len(ss))
			}
			for _, s := range ss {
				if len(s) > 64 {
					t.Fatalf("Strings read an entry of %d bytes, more than MaxString", len(s))
				}
			}
		}
	})
}

func TestDecoder(t *testing.T) {
	var scratch []byte
	dec := func(in string, budget int64) *Decoder {
		return NewDecoder(NewReader(strings.NewReader(in)), &scratch, budget)
	}
	entry := le(8) + "abcdefgh"
	if got, err := dec(le(2)+entry+entry, 1<<10).Strings("paths", 2, 8); err != nil || len(got) != 2 || got[1] != "abcdefgh" {
		t.Errorf("Strings = %q, %v", got, err)
	}
	// Each entry costs its bytes and 16 more, and the count 16 per entry.
	if _, err := dec(le(2)+entry+entry, 2*16+2*(8+16)-1).Strings("paths", 2, 8); err == nil || !strings.Contains(err.Error(), "reply is larger than") {
		t.Errorf("Strings beyond the budget: %v, want a budget error", err)
	}
	if _, err := dec(le(3), 1<<10).Strings("paths", 2, 8); err == nil || !strings.Contains(err.Error(), "paths of 3 entries is longer than 2") {
		t.Errorf("Strings beyond maxN: %v", err)
	}
	if _, err := dec(le(1)+le(9), 1<<10).Strings("paths", 2, 8); err == nil || !strings.Contains(err.Error(), "paths entry of 9 bytes is longer than 8") {
		t.Errorf("Strings entry beyond maxLen: %v", err)
	}
	if _, err := dec(le(1)+le(8)+"abc", 1<<10).Strings("paths", 2, 8); err != io.ErrUnexpectedEOF {
		t.Errorf("Strings cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	for in, want := range map[string]bool{le(0): false, le(1): true} {
		if got, err := dec(in, 0).Bool(); got != want || err != nil {
			t.Errorf("Bool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := dec(le(2), 0).Bool(); err == nil {
		t.Errorf("Bool(2) succeeded")
	}
	d := dec(le(3)+"abc\x00\x00\x00\x00\x00"+le(2)+"de\x00\x00\x00\x00\x00\x00", 1<<10)
	b, _ := d.Bytes("first", 8)
	if string(b) != "abc" {
		t.Errorf("Bytes = %q", b)
	}
	if s, err := d.String("second", 8); s != "de" || err != nil {
		t.Errorf("String = %q, %v", s, err)
	}
	if string(b) != "dec" {
		t.Errorf("Bytes result after the next read = %q, want the scratch buffer's %q", b, "dec")
	}
}

func TestCopyRaw(t *testing.T) {
	buf := make([]byte, 4)
	var out bytes.Buffer
	var progress []uint64
	n, err := CopyRaw(&out, strings.NewReader("0123456789rest"), 10, buf, func(done uint64) { progress = append(progress, done) })
	if n != 10 || err != nil || out.String() != "0123456789" {
		t.Errorf("CopyRaw = %d, %v, copied %q; want 10 bytes", n, err, out.String())
	}
	if want := []uint64{4, 8, 10}; !slices.Equal(progress, want) {
		t.Errorf("progress %v, want %v", progress, want)
	}
	out.Reset()
	if n, err := CopyRaw(&out, strings.NewReader("0123"), 10, buf, nil); n != 4 || err != io.ErrUnexpectedEOF {
		t.Errorf("CopyRaw of a short stream = %d, %v; want 4, io.ErrUnexpectedEOF", n, err)
	}
	var we *WriteError
	if _, err := CopyRaw(failWriter{}, strings.NewReader("0123"), 4, buf, nil); !errors.As(err, &we) || !errors.Is(err, errWrite) {
		t.Errorf("CopyRaw to a failing writer: %v, want a *WriteError", err)
	}
	// What has arrived is passed on before the stream goes on: the
	// consumer sees the first bytes while the peer still owes the rest.
	pr, pw := io.Pipe()
	go pw.Write([]byte("ab"))
	got := make(chan string, 1)
	go CopyRaw(writerFunc(func(p []byte) (int, error) { got <- string(p); return len(p), nil }), pr, 10, buf, nil)
	if s := <-got; s != "ab" {
		t.Errorf("first write %q, want %q", s, "ab")
	}
	pw.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
