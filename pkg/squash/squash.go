// SPDX-License-Identifier: MIT

// Package squash compresses and decompresses the streams offload sends
// over slow links: a builder's NARs on their way back, compressed there
// by the zstd or gzip command, and inputs on their way out.
//
// A compressed stream says its own method in its first bytes (zstd's
// frame magic, RFC 8878 §3.1.1; gzip's ID1 ID2, RFC 1952 §2.3.1), so
// [NewReader] needs no other word of it, and a stream that starts with
// neither is none of them: the builder's shell may have printed something
// else, or refused the command.
//
// Rules: decompression takes bounded memory whatever the stream says (a
// zstd window of at most [MaxWindow], one decoding goroutine), so a hostile
// or broken builder cannot make the hook grow; a stream that is cut short
// or corrupt is an error, never a short read that looks like an end.
package squash

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Method is a way of compressing a stream.
type Method uint8

const (
	None Method = iota
	Gzip
	Zstd
)

func (m Method) String() string {
	switch m {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// ParseMethod is the inverse of String.
func ParseMethod(s string) (Method, error) {
	for _, m := range []Method{None, Gzip, Zstd} {
		if s == m.String() {
			return m, nil
		}
	}
	return None, fmt.Errorf("squash: unknown method %q (want none, gzip or zstd)", s)
}

// MaxWindow bounds the zstd window a stream may ask for, and so the
// decoder's history: 8 MiB, what `zstd -19` uses (its window log is 23,
// lib/compress/clevels.h); only --long or --ultra streams need more, and
// offload never asks for those.
const MaxWindow = 8 << 20

var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// Detect says which method's header starts p, or None.
func Detect(p []byte) Method {
	switch {
	case bytes.HasPrefix(p, zstdMagic):
		return Zstd
	case bytes.HasPrefix(p, gzipMagic):
		return Gzip
	}
	return None
}

// ErrNotCompressed is the error of NewReader for a stream that starts
// with neither method's header (an empty one included).
var ErrNotCompressed = errors.New("squash: not a zstd or gzip stream")

// NewReader decompresses r, whose method it reads from its first bytes.
// It fails with ErrNotCompressed when they are neither method's, having
// read at most 4 bytes' worth of r's first read.
func NewReader(r io.Reader) (io.ReadCloser, Method, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(zstdMagic))
	m := Detect(head)
	if m == None {
		if err != nil && err != io.EOF {
			return nil, None, fmt.Errorf("squash: %w", err)
		}
		return nil, None, ErrNotCompressed
	}
	rc, err := newMethodReader(br, m)
	return rc, m, err
}

func newMethodReader(r io.Reader, m Method) (io.ReadCloser, error) {
	switch m {
	case Zstd:
		d, err := zstd.NewReader(r,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxWindow),
			zstd.WithDecoderMaxMemory(2*MaxWindow))
		if err != nil {
			return nil, fmt.Errorf("squash: zstd: %w", err)
		}
		return &reader{r: d, close: d.Close, m: m}, nil
	case Gzip:
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("squash: gzip: %w", err)
		}
		return &reader{r: z, close: func() { z.Close() }, m: m}, nil
	}
	return nil, fmt.Errorf("squash: cannot decompress %v", m)
}

// reader names the method in its errors and turns a stream cut short into
// io.ErrUnexpectedEOF.
type reader struct {
	r     io.Reader
	close func()
	m     Method
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		err = fmt.Errorf("squash: %v: %w", r.m, err)
	}
	return n, err
}

func (r *reader) Close() error {
	r.close()
	return nil
}

// DefaultLevel is the level of compression when none is given: zstd's and
// gzip's own default are 3 and 6; 3 is what the zstd command uses too.
const DefaultLevel = 3

// Levels bounds the levels: 1 to 19 for zstd (the zstd command's range
// without --ultra), 1 to 9 for gzip.
func Levels(m Method) (lo, hi int) {
	switch m {
	case Zstd:
		return 1, 19
	case Gzip:
		return 1, 9
	}
	return 0, 0
}

// clampLevel brings level within m's range (0: DefaultLevel).
func clampLevel(m Method, level int) int {
	if level == 0 {
		level = DefaultLevel
	}
	lo, hi := Levels(m)
	return max(lo, min(hi, level))
}

// NewWriter compresses into w with m at level (0: DefaultLevel; brought
// within Levels). None writes w as is. Close ends the stream but not w.
func NewWriter(w io.Writer, m Method, level int) (io.WriteCloser, error) {
	level = clampLevel(m, level)
	switch m {
	case None:
		return nopCloser{w}, nil
	case Zstd:
		el := zstd.EncoderLevelFromZstd(level)
		if e, ok := tried[el].Get().(*zstd.Encoder); ok {
			e.Reset(w)
			return e, nil
		}
		e, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(el),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(4<<20))
		if err != nil {
			return nil, fmt.Errorf("squash: zstd: %w", err)
		}
		return e, nil
	case Gzip:
		z, err := gzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("squash: gzip: %w", err)
		}
		return z, nil
	}
	return nil, fmt.Errorf("squash: cannot compress with %v", m)
}

// tried holds the zstd encoders Tune used, by strategy, for the copy it
// tuned: setting one up costs more than its trial (tens of ms for the
// best strategy here).
var tried [zstd.SpeedBestCompression + 1]sync.Pool

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Command is the shell words that compress their standard input to their
// standard output with m at level on a builder: the zstd or gzip command.
// Their output is what NewReader reads.
func Command(m Method, level int) []string {
	level = clampLevel(m, level)
	switch m {
	case Zstd:
		return []string{"zstd", "-q", "-c", fmt.Sprintf("-%d", level)}
	case Gzip:
		return []string{"gzip", "-c", fmt.Sprintf("-%d", level)}
	}
	return []string{"cat"}
}

// Counter counts the bytes read from R or written to W through it: the
// compressed side of a stream, for the ratio.
type Counter struct {
	R io.Reader
	W io.Writer
	N int64
}

func (c *Counter) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}

func (c *Counter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
