// SPDX-License-Identifier: MIT

package hook

// Rules for the guard around an accepted build's builder.Remote store:
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
//   - Every wait on the builder is bounded by progress, on both protocols:
//     while a call waits to read the builder's output or to write to its
//     input, a builder that moves no byte either way for the stall
//     timeout loses the connection, and is marked unhealthy as above.
//     SSH keepalives cannot tell this: the builder's sshd answers them
//     whatever its store command does. Time the hook spends on its own
//     side (the local store, slow disks) is not counted. A build may be
//     silent as long as the user allows: max-silent-time (and timeout),
//     plus the stall timeout; without them, as long as it takes.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/ssh"
	"github.com/offload-nix/offload/pkg/store"
)

// guarded is c's builder.Remote store with the rules above.
type guarded struct {
	h    *hook
	ctx  context.Context
	c    *builder.Conn
	next builder.Remote
	once sync.Once
	end  func() // ends the session: c.end
}

// guard wraps c.Store for an accepted build; the call site is
// `c.Store = h.guard(ctx, c)` before h.build.
func (h *hook) guard(ctx context.Context, c *builder.Conn) builder.Remote {
	if _, ok := c.Store.(*guarded); ok {
		return c.Store
	}
	return &guarded{h: h, ctx: ctx, c: c, next: h.squashed(ctx, c), end: c.End}
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
	var se *stallError
	if !errors.As(err, &se) {
		// The stream only saw its end; the keepalives know why.
		if d := g.c.Dead(); d != nil {
			code = builder.ErrCode(d)
		}
	}
	g.once.Do(func() {
		cfg := g.h.cfg
		g.h.state.RecordFailure(g.c.Machine.URI, code, cfg.UnhealthyBackoff(), cfg.UnhealthyBackoffMax())
	})
	return err
}

// connectionLost reports whether err is the end of the connection rather
// than a refusal or a failed build, and its code for the slot file.
func connectionLost(err error) (slots.ErrCode, bool) {
	var st *stallError
	if errors.As(err, &st) {
		return slots.ErrTimeout, true
	}
	var se *ssh.Error
	if errors.As(err, &se) {
		return builder.ErrCode(err), true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return slots.ErrOther, true
	}
	return slots.ErrNone, false
}

func (g *guarded) QueryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	done := g.watch(g.h.stallTimeout(), 0)
	v, err := g.next.QueryValidPaths(paths, lock, substitute)
	return v, g.check(done(err))
}

func (g *guarded) QueryPathInfos(paths []string) ([]store.PathInfo, error) {
	done := g.watch(g.h.stallTimeout(), 0)
	infos, err := g.next.QueryPathInfos(paths)
	return infos, g.check(done(err))
}

func (g *guarded) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	done := g.watch(g.h.stallTimeout(), 0)
	return g.check(done(g.next.AddToStoreNars(infos, open)))
}

// BuildDerivation waits as long as the build may be silent, and last, as
// the user set them, plus the stall timeout; without max-silent-time a
// build may be silent as long as it takes, as with Nix's own hook.
func (g *guarded) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error) {
	var silent, total time.Duration
	if o.MaxSilentTime > 0 {
		silent = o.MaxSilentTime + g.h.stallTimeout()
	}
	if o.Timeout > 0 {
		total = o.Timeout + g.h.stallTimeout()
	}
	done := g.watch(silent, total)
	res, err := g.next.BuildDerivation(drvPath, d, inputSrcs, o)
	return res, g.check(done(err))
}

// Timing of the consumer probe: how often a download checks that its
// reader is still there, and how long it then waits for the dump to end by
// itself before ending the session.
var (
	probeEvery = 250 * time.Millisecond
	probeGrace = 2 * time.Second
)

// DumpStorePath copies the NAR as the builder.Remote store does; when w is the
// write end of a pipe whose reader has been closed while the builder still
// owes bytes, it ends the session so that the call returns.
func (g *guarded) DumpStorePath(path string, w io.Writer, narSize uint64) error {
	pw, ok := w.(*io.PipeWriter)
	if !ok {
		stop := g.watch(g.h.stallTimeout(), 0)
		return g.check(stop(g.next.DumpStorePath(path, w, narSize)))
	}
	done := make(chan struct{})
	defer close(done)
	go g.probe(pw, done)
	stop := g.watch(g.h.stallTimeout(), 0)
	return g.check(stop(g.next.DumpStorePath(path, w, narSize)))
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
			g.h.log.Warnf("'%s' is still sending a NAR that the local store refused; closing the connection", g.c.Machine.URI)
			g.end()
		}
		return
	}
}

// end closes the session under the builder.Remote store, direct or through the
// relay, so that whatever waits on it returns; conn.Close still reaps it.
// stallTimeout is how long a builder may move no byte while the hook waits
// on it: longer than a healthy builder stays silent (a garbage collection
// there holds its store's lock for minutes), far shorter than forever.
func (h *hook) stallTimeout() time.Duration {
	return h.cfg.Duration("stall-timeout")
}

// stallError is a wait on a builder that the watchdog ended.
type stallError struct {
	uri   string
	after time.Duration
	total bool // the build's timeout, not silence
	err   error
}

func (e *stallError) Error() string {
	if e.total {
		return fmt.Sprintf("the build on '%s' took longer than %v (timeout and stall-timeout); closed the connection", e.uri, e.after)
	}
	return fmt.Sprintf("'%s' sent and took no byte for %v (stall-timeout) while offload waited on it; closed the connection", e.uri, e.after)
}

func (e *stallError) Unwrap() error { return e.err }

// watch ends c's session when, while a call waits on the builder, no byte
// moves for silent, or when the call takes longer than total (0: no such
// bound). The returned done ends the watch and turns the call's error into
// a *stallError when the watch ended it.
func (g *guarded) watch(silent, total time.Duration) (done func(error) error) {
	p := g.c.Prog
	if p == nil || (silent <= 0 && total <= 0) {
		return func(err error) error { return err }
	}
	p.Touch()
	stop := make(chan struct{})
	var fired atomic.Pointer[stallError]
	tick := time.Second
	if silent > 0 {
		tick = min(tick, max(silent/8, time.Millisecond))
	}
	start := time.Now()
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var e *stallError
			switch {
			case silent > 0 && p.Stalled(silent):
				e = &stallError{uri: g.c.Machine.URI, after: silent}
			case total > 0 && time.Since(start) > total:
				e = &stallError{uri: g.c.Machine.URI, after: total, total: true}
			default:
				continue
			}
			fired.Store(e)
			g.end()
			return
		}
	}()
	return func(err error) error {
		close(stop)
		e := fired.Load()
		if e == nil {
			return err
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		e.err = err
		return e
	}
}
