// SPDX-License-Identifier: MIT

package hook

// Rules for the guard around an accepted build's remote store:
//   - A connection that breaks after accept (the builder's sshd or its
//     nix-store died, keepalives went unanswered) marks the builder
//     unhealthy for every hook on the host, with the backoff that grows
//     with each failure in a row, exactly as a failed connect does: the next
//     derivations go elsewhere instead of meeting the same dead builder.
//     A build that fails, or a reply the hook refuses, is no reason.
//   - A NAR download whose consumer gave up (the local import refused the
//     archive) must not wait for bytes the builder may never send: a
//     hostile builder that announces a larger narSize than it sends would
//     otherwise hold the hook, and Nix's build, forever.

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/ssh"
)

// guarded is c's remote store with the rules above.
type guarded struct {
	h    *hook
	ctx  context.Context
	c    *conn
	next remote
	once sync.Once
}

// guard wraps c.store for an accepted build; the call site is
// `c.store = h.guard(ctx, c)` before h.build.
func (h *hook) guard(ctx context.Context, c *conn) remote {
	if _, ok := c.store.(*guarded); ok {
		return c.store
	}
	return &guarded{h: h, ctx: ctx, c: c, next: c.store}
}

// check marks the builder unhealthy when err says the connection broke.
func (g *guarded) check(err error) error {
	if err == nil || g.ctx.Err() != nil || g.h.state == nil {
		return err
	}
	code, lost := connectionLost(err)
	if !lost {
		return err
	}
	if g.c.client != nil {
		// The stream only saw its end; the keepalives know why.
		if d := g.c.client.Dead(); d != nil {
			code = ErrCode(d)
		}
	}
	g.once.Do(func() {
		cfg := &g.h.cfg
		g.h.state.RecordFailure(g.c.m.URI, code, cfg.UnhealthyBackoff, cfg.UnhealthyBackoffMax)
	})
	return err
}

// connectionLost reports whether err is the end of the connection rather
// than a refusal or a failed build, and its code for the slot file.
func connectionLost(err error) (slots.ErrCode, bool) {
	var se *ssh.Error
	if errors.As(err, &se) {
		return ErrCode(err), true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return slots.ErrOther, true
	}
	return slots.ErrNone, false
}

func (g *guarded) QueryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	v, err := g.next.QueryValidPaths(paths, lock, substitute)
	return v, g.check(err)
}

func (g *guarded) QueryPathInfos(paths []string) ([]serve.PathInfo, error) {
	infos, err := g.next.QueryPathInfos(paths)
	return infos, g.check(err)
}

func (g *guarded) AddToStoreNars(infos []serve.PathInfo, open func(i int) (io.Reader, error)) error {
	return g.check(g.next.AddToStoreNars(infos, open))
}

func (g *guarded) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o serve.BuildOptions) (serve.BuildResult, error) {
	res, err := g.next.BuildDerivation(drvPath, d, inputSrcs, o)
	return res, g.check(err)
}

// Timing of the consumer probe: how often a download checks that its
// reader is still there, and how long it then waits for the dump to end by
// itself before ending the session.
var (
	probeEvery = 250 * time.Millisecond
	probeGrace = 2 * time.Second
)

// DumpStorePath copies the NAR as the remote store does; when w is the
// write end of a pipe whose reader has been closed while the builder still
// owes bytes, it ends the session so that the call returns.
func (g *guarded) DumpStorePath(path string, w io.Writer, narSize uint64) error {
	pw, ok := w.(*io.PipeWriter)
	if !ok {
		return g.check(g.next.DumpStorePath(path, w, narSize))
	}
	done := make(chan struct{})
	defer close(done)
	go g.probe(pw, done)
	return g.check(g.next.DumpStorePath(path, w, narSize))
}

// probe watches pw's reader until done: an empty write returns once the
// reader reads (an empty read, which io.ReadFull and every reader here
// pass over) or with io.ErrClosedPipe once it has closed its end.
func (g *guarded) probe(pw *io.PipeWriter, done <-chan struct{}) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if _, err := pw.Write(nil); err == nil {
			continue
		}
		select {
		case <-done:
		case <-time.After(probeGrace):
			g.h.log.Warnf("'%s' is still sending a NAR that the local store refused; closing the connection", g.c.m.URI)
			g.c.end()
		}
		return
	}
}

// end closes the session under the remote store, direct or through the
// relay, so that whatever waits on it returns; conn.Close still reaps it.
func (c *conn) end() {
	switch {
	case c.rs != nil:
		c.rs.Close()
	case c.sess != nil:
		c.sess.Close()
	}
}
