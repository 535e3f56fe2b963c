// SPDX-License-Identifier: MIT

package builder

import (
	"bytes"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// tailSize is how much of the builder's stderr is kept for error messages.
const tailSize = 4096

// Tail reads a builder session's stderr until it ends. It keeps the last
// few KiB for error messages and, once a sink is set (after accept), copies
// everything to it: the build log on file descriptor 4.
type Tail struct {
	mu   sync.Mutex
	sink io.Writer
	tail []byte
	done chan struct{}
	prog atomic.Pointer[Progress] // told of every read (follow)
}

// follow tells p of every byte read from now on.
func (t *Tail) follow(p *Progress) { t.prog.Store(p) }

func newTail(r io.Reader) *Tail {
	t := &Tail{done: make(chan struct{})}
	go t.run(r)
	return t
}

func (t *Tail) run(r io.Reader) {
	defer close(t.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if p := t.prog.Load(); p != nil {
				p.Touch()
			}
			t.mu.Lock()
			if t.sink != nil {
				t.sink.Write(buf[:n])
			}
			t.tail = append(t.tail, buf[:n]...)
			if len(t.tail) > 2*tailSize {
				t.tail = append(t.tail[:0], t.tail[len(t.tail)-tailSize:]...)
			}
			t.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// SetSink starts copying what arrives to w.
func (t *Tail) SetSink(w io.Writer) {
	t.mu.Lock()
	t.sink = w
	t.mu.Unlock()
}

// Last returns the last lines the builder printed, waiting briefly for the
// stream to end: when the remote command fails, its message comes on
// stderr while stdout has already ended.
func (t *Tail) Last() string {
	select {
	case <-t.done:
	case <-time.After(500 * time.Millisecond):
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.tail
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}

// Wait waits for the stream to end.
func (t *Tail) Wait() {
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
}
