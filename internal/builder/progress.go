// SPDX-License-Identifier: MIT

package builder

import (
	"io"
	"sync/atomic"
	"time"
)

// Progress follows the bytes between the hook and a builder: when the
// last one moved, either way, and how many reads of the builder's output
// and writes to its input are under way.
type Progress struct {
	last    atomic.Int64 // nanoseconds since progressEpoch
	waiting atomic.Int32
}

var progressEpoch = time.Now()

// Touch notes that a byte moved now.
func (p *Progress) Touch() { p.last.Store(int64(time.Since(progressEpoch))) }

// begin marks a read or write on the builder's stream as under way; the
// first one starts the clock, so time the hook spent on its own side
// between them is not counted.
func (p *Progress) begin() {
	if p.waiting.Add(1) == 1 {
		p.Touch()
	}
}

// end marks it done, having moved n bytes.
func (p *Progress) end(n int) {
	if n > 0 {
		p.Touch()
	}
	p.waiting.Add(-1)
}

// Stalled reports whether a read or write on the builder is under way and
// no byte moved for d.
func (p *Progress) Stalled(d time.Duration) bool {
	return p.waiting.Load() > 0 && time.Since(progressEpoch)-time.Duration(p.last.Load()) > d
}

// Reader and Writer count what passes over a builder's output and input.
func (p *Progress) Reader(r io.Reader) io.Reader { return &progressReader{r: r, p: p} }
func (p *Progress) Writer(w io.Writer) io.Writer { return &progressWriter{w: w, p: p} }

type progressReader struct {
	r io.Reader
	p *Progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	r.p.begin()
	n, err := r.r.Read(b)
	r.p.end(n)
	return n, err
}

type progressWriter struct {
	w io.Writer
	p *Progress
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.p.begin()
	n, err := w.w.Write(b)
	w.p.end(n)
	return n, err
}
