// SPDX-License-Identifier: MIT

// Package wire reads and writes Nix's wire encoding: little-endian 64-bit
// integers and length-prefixed strings padded with zeros to a multiple of
// eight bytes. The build-hook protocol, the serve and daemon protocols and
// NAR all use it.
//
// Readers cap every length they are given, so a hostile peer cannot make
// them allocate without bound, and reuse one small buffer, so reading
// integers does not allocate.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Limits used when a caller has no better bound.
const (
	// MaxString is the longest string a Reader accepts by default.
	MaxString = 1 << 20
	// MaxList is the longest list a Reader accepts by default.
	MaxList = 1 << 20
)

// ErrPadding is returned when the padding after a string is not zero.
var ErrPadding = errors.New("wire: non-zero padding")

// Reader decodes wire values from an underlying reader.
type Reader struct {
	r   io.Reader
	buf [8]byte
	// MaxString caps string lengths (default MaxString).
	MaxString uint64
	// MaxList caps list lengths (default MaxList).
	MaxList uint64
}

// NewReader returns a Reader on r. It does not buffer: wrap r in a
// bufio.Reader when reading from a pipe or socket.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, MaxString: MaxString, MaxList: MaxList}
}

// Underlying returns the reader that r reads from, for raw payloads such as
// NAR bytes that follow a header.
func (r *Reader) Underlying() io.Reader { return r.r }

// Uint64 reads one 64-bit integer.
func (r *Reader) Uint64() (uint64, error) {
	if _, err := io.ReadFull(r.r, r.buf[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.buf[:]), nil
}

// Bool reads an integer and reports whether it is non-zero.
func (r *Reader) Bool() (bool, error) {
	n, err := r.Uint64()
	return n != 0, err
}

// Int reads an integer that must fit in max.
func (r *Reader) Int(max uint64) (uint64, error) {
	n, err := r.Uint64()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("wire: integer %d is larger than %d", n, max)
	}
	return n, nil
}

// String reads a string of at most r.MaxString bytes.
func (r *Reader) String() (string, error) {
	b, err := r.BytesMax(nil, r.MaxString)
	return string(b), err
}

// BytesMax reads a string of at most max bytes, appending it to dst.
func (r *Reader) BytesMax(dst []byte, max uint64) ([]byte, error) {
	n, err := r.Uint64()
	if err != nil {
		return dst, err
	}
	if n > max {
		return dst, fmt.Errorf("wire: string of %d bytes is longer than %d", n, max)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	if _, err := io.ReadFull(r.r, dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, r.Padding(n)
}

// Expect reads a string and checks that it equals want, without allocating
// when it fits the internal buffer.
func (r *Reader) Expect(want string) error {
	n, err := r.Uint64()
	if err != nil {
		return err
	}
	if n != uint64(len(want)) {
		return fmt.Errorf("wire: expected %q, got a string of %d bytes", want, n)
	}
	var tmp [64]byte
	var got []byte
	if n <= uint64(len(tmp)) {
		got = tmp[:n]
	} else {
		got = make([]byte, n)
	}
	if _, err := io.ReadFull(r.r, got); err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("wire: expected %q, got %q", want, got)
	}
	return r.Padding(n)
}

// Padding reads and checks the zero padding after n bytes of content.
func (r *Reader) Padding(n uint64) error {
	p := (8 - n%8) % 8
	if p == 0 {
		return nil
	}
	if _, err := io.ReadFull(r.r, r.buf[:p]); err != nil {
		return err
	}
	for _, c := range r.buf[:p] {
		if c != 0 {
			return ErrPadding
		}
	}
	return nil
}

// Strings reads a list of strings, each at most r.MaxString bytes, of at
// most r.MaxList entries.
func (r *Reader) Strings() ([]string, error) {
	n, err := r.Uint64()
	if err != nil {
		return nil, err
	}
	if n > r.MaxList {
		return nil, fmt.Errorf("wire: list of %d entries is longer than %d", n, r.MaxList)
	}
	out := make([]string, 0, min(n, 1024))
	for i := uint64(0); i < n; i++ {
		s, err := r.String()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Writer encodes wire values into a buffered writer.
type Writer struct {
	w   *bufio.Writer
	buf [8]byte
}

// NewWriter returns a Writer that buffers into w. Call Flush to send.
func NewWriter(w io.Writer) *Writer {
	if bw, ok := w.(*bufio.Writer); ok {
		return &Writer{w: bw}
	}
	return &Writer{w: bufio.NewWriterSize(w, 64<<10)}
}

// Uint64 writes one integer.
func (w *Writer) Uint64(n uint64) error {
	binary.LittleEndian.PutUint64(w.buf[:], n)
	_, err := w.w.Write(w.buf[:])
	return err
}

// Bool writes 1 or 0.
func (w *Writer) Bool(b bool) error {
	if b {
		return w.Uint64(1)
	}
	return w.Uint64(0)
}

var zeros [8]byte

// String writes a length-prefixed, padded string.
func (w *Writer) String(s string) error {
	if err := w.Uint64(uint64(len(s))); err != nil {
		return err
	}
	if _, err := w.w.WriteString(s); err != nil {
		return err
	}
	return w.pad(uint64(len(s)))
}

// Bytes writes a length-prefixed, padded byte string.
func (w *Writer) Bytes(b []byte) error {
	if err := w.Uint64(uint64(len(b))); err != nil {
		return err
	}
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	return w.pad(uint64(len(b)))
}

func (w *Writer) pad(n uint64) error {
	if p := (8 - n%8) % 8; p != 0 {
		_, err := w.w.Write(zeros[:p])
		return err
	}
	return nil
}

// Strings writes a list of strings.
func (w *Writer) Strings(ss []string) error {
	if err := w.Uint64(uint64(len(ss))); err != nil {
		return err
	}
	for _, s := range ss {
		if err := w.String(s); err != nil {
			return err
		}
	}
	return nil
}

// Raw writes bytes as they are, for payloads such as NARs.
func (w *Writer) Raw(b []byte) error {
	_, err := w.w.Write(b)
	return err
}

// Flush sends what is buffered.
func (w *Writer) Flush() error { return w.w.Flush() }

// WriteError is what CopyRaw returns when its destination fails.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "writing: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// CopyRaw copies exactly n raw bytes, such as a NAR whose size is known
// beforehand, from r to w through buf, and returns how many it copied. It
// passes on whatever has arrived rather than waiting for a full buffer: a
// consumer that checks the bytes as they come must see their end even when
// the peer announced more and then stops sending, or both would wait
// forever. progress, if not nil, gets the count after each write. A
// failure of w is a *WriteError; a stream that ends early gives
// io.ErrUnexpectedEOF.
func CopyRaw(w io.Writer, r io.Reader, n uint64, buf []byte, progress func(done uint64)) (uint64, error) {
	var done uint64
	for done < n {
		chunk := buf[:min(uint64(len(buf)), n-done)]
		k, err := r.Read(chunk)
		if k == 0 && err == nil {
			continue
		}
		done += uint64(k)
		if k > 0 {
			if _, werr := w.Write(chunk[:k]); werr != nil {
				return done, &WriteError{werr}
			}
			if progress != nil {
				progress(done)
			}
		}
		if err != nil {
			return done, NoEOF(err)
		}
	}
	return done, nil
}
