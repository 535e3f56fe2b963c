// SPDX-License-Identifier: MIT

package hook

import (
	"errors"
	"io"

	"github.com/offload-nix/offload/pkg/hookproto"
)

// errCopyStopped ends a NAR stream that its reader gave up on.
var errCopyStopped = errors.New("copy stopped")

// narCopy pipes the NARs of one copy of n paths (upload.go, download.go)
// from the store that dumps them to the one that takes them, one at a
// time: each NAR is dumped by a goroutine of its own into a pipe, and the
// next starts once the previous one's dump has ended.
type narCopy struct {
	h        *hook
	id       uint64 // the actCopyPaths activity
	n        int
	src, dst string
	res      *reservation

	prev chan struct{}
	cur  *copyProgress
	curR *io.PipeReader
}

// dumpFunc writes the NAR of path, of narSize bytes, to w.
type dumpFunc func(path string, w io.Writer, narSize uint64) error

// next starts the copy of the i-th path, of size bytes, from dump, and
// returns the counting reader of its NAR and the pipe under it.
func (p *narCopy) next(i int, path string, size uint64, dump dumpFunc) (*copyProgress, *io.PipeReader) {
	p.waitPrev()
	done := make(chan struct{})
	p.prev = done
	pr, pw := io.Pipe()
	p.curR = pr
	go func() {
		defer close(done)
		pw.CloseWithError(dump(path, pw, size))
	}()
	p.h.log.Result(p.id, hookproto.ResProgress, i, p.n, 1, 0)
	p.cur = p.h.startCopy(pr, path, p.src, p.dst, size, p.res)
	return p.cur, pr
}

// stop ends the copy. When it stopped early (the taker went away or gave
// up on a bad NAR), nobody reads the current NAR any more: closing it
// stops its dump instead of leaving it waiting forever to write.
func (p *narCopy) stop() {
	if p.curR != nil {
		p.curR.CloseWithError(errCopyStopped)
	}
	p.waitPrev()
}

// waitPrev waits for the previous NAR's dump to end and ends its activity.
func (p *narCopy) waitPrev() {
	if p.prev != nil {
		<-p.prev
	}
	if p.cur != nil {
		p.cur.finish()
	}
}
