// SPDX-License-Identifier: MIT

package squash

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// sample is data that compresses somewhat, like machine code: random
// words from a small vocabulary with runs of noise.
func sample(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := [][]byte{[]byte("\x48\x89\xe5"), []byte("\x41\x57\x41\x56"), []byte("nix-archive-1"), []byte("\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("/nix/store/")}
	var b bytes.Buffer
	for b.Len() < n {
		if rng.IntN(4) == 0 {
			for range rng.IntN(16) {
				b.WriteByte(byte(rng.Uint32()))
			}
			continue
		}
		b.Write(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func compress(t testing.TB, m Method, level int, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, m, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		m     Method
		level int
		size  int
	}{
		{Zstd, 0, 0},
		{Zstd, 1, 1},
		{Zstd, 3, 100_000},
		{Zstd, 19, 10_000},
		{Zstd, 99, 5000}, // clamped to 19
		{Gzip, 0, 0},
		{Gzip, 1, 300_000},
		{Gzip, 9, 10_000},
		{Gzip, -4, 1000}, // clamped to 1
	}
	for _, tt := range tests {
		data := sample(tt.size, uint64(tt.size))
		z := compress(t, tt.m, tt.level, data)
		if got := Detect(z); got != tt.m {
			t.Errorf("Detect(%v level %d output) = %v", tt.m, tt.level, got)
		}
		r, m, err := NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatalf("NewReader(%v level %d) = %v", tt.m, tt.level, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || m != tt.m || !bytes.Equal(got, data) {
			t.Errorf("%v level %d, %d bytes: read %d bytes as %v, %v", tt.m, tt.level, tt.size, len(got), m, err)
		}
	}
}

func TestNotCompressed(t *testing.T) {
	for _, in := range []string{"", "\x28\xb5", "\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1", "sh: 1: zstd: not found\n"} {
		if _, _, err := NewReader(bytes.NewReader([]byte(in))); !errors.Is(err, ErrNotCompressed) {
			t.Errorf("NewReader(%q) = %v, want ErrNotCompressed", in, err)
		}
	}
}

// TestCutShort: a stream cut anywhere, or with a byte changed, is an
// error, never a clean end with less data.
func TestCutShort(t *testing.T) {
	data := sample(200_000, 7)
	for _, m := range []Method{Zstd, Gzip} {
		z := compress(t, m, 3, data)
		for _, n := range []int{5, 20, len(z) / 2, len(z) - 5, len(z) - 1} {
			if err := readAll(z[:n]); err == nil {
				t.Errorf("%v cut to %d of %d bytes: no error", m, n, len(z))
			}
		}
		bad := bytes.Clone(z)
		bad[len(bad)/2] ^= 0x55
		if err := readAll(bad); err == nil {
			t.Errorf("%v with a byte changed: no error", m)
		}
		bad = bytes.Clone(z)
		bad[len(bad)-2] ^= 0x01 // in the checksum or the size
		if err := readAll(bad); err == nil {
			t.Errorf("%v with its trailer changed: no error", m)
		}
	}
}

func readAll(z []byte) error {
	r, _, err := NewReader(bytes.NewReader(z))
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}

// TestWindowBound: a zstd frame that asks for a window above MaxWindow is
// refused, not allocated.
func TestWindowBound(t *testing.T) {
	// A frame header (RFC 8878 §3.1.1.1): magic, a descriptor with no
	// single-segment flag, then a window descriptor of exponent 30 (1 GiB).
	z := append(bytes.Clone(zstdMagic), 0x00, (30-10)<<3)
	z = append(z, make([]byte, 16)...)
	err := readAll(z)
	if err == nil {
		t.Fatal("a 1 GiB window was accepted")
	}
	t.Logf("%v", err)
}

func TestParseMethod(t *testing.T) {
	for _, m := range []Method{None, Gzip, Zstd} {
		if got, err := ParseMethod(m.String()); err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMethod("xz"); err == nil {
		t.Error(`ParseMethod("xz") succeeded`)
	}
}

// FuzzReader: whatever the bytes (its corpus, testdata/fuzz/FuzzReader,
// holds the zstd and gzip commands' output for a small NAR, whole, cut and
// doubled, and a plain NAR), reading them never panics, stays within
// its memory, and a stream that decompresses whole is one that
// compressing its output again decompresses to the same.
func FuzzReader(f *testing.F) {
	for i, m := range []Method{Zstd, Gzip} {
		data := sample(2000, uint64(i))
		z := compress(f, m, 3, data)
		f.Add(z)
		f.Add(z[:len(z)/2])
	}
	f.Fuzz(func(t *testing.T, z []byte) {
		r, m, err := NewReader(bytes.NewReader(z))
		if err != nil {
			return
		}
		defer r.Close()
		// A small input may say it decompresses to much more; read a
		// bounded part of it.
		out, err := io.ReadAll(io.LimitReader(r, 4<<20))
		if err != nil {
			return
		}
		if !bytes.Equal(out, decompress(t, compress(t, m, 1, out))) {
			t.Fatal("round trip of the output differs")
		}
	})
}

func decompress(t *testing.T, z []byte) []byte {
	t.Helper()
	r, _, err := NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func BenchmarkCompress(b *testing.B) {
	data := sample(4<<20, 1)
	for _, bm := range []struct {
		name  string
		m     Method
		level int
	}{{"zstd-1", Zstd, 1}, {"zstd-3", Zstd, 3}, {"gzip-1", Gzip, 1}, {"gzip-6", Gzip, 6}} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				var c countWriter
				w, _ := NewWriter(&c, bm.m, bm.level)
				w.Write(data)
				w.Close()
				n = int(c)
			}
			b.ReportMetric(float64(n)/float64(len(data)), "ratio")
		})
	}
}

func BenchmarkDecompress(b *testing.B) {
	data := sample(4<<20, 1)
	for _, m := range []Method{Zstd, Gzip} {
		z := compress(b, m, 3, data)
		b.Run(m.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := readAll(z); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
