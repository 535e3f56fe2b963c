// SPDX-License-Identifier: MIT

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Uploads (src/libstore/remote-store.cc, RemoteStore::addToStore and
// RemoteStore::addMultipleToStore). From protocol 1.23 the NAR travels
// as a framed stream: chunks of u64 length and raw bytes, ended by a
// zero length. The daemon sends log messages, or an error, while it
// reads, so a goroutine reads them while the caller's goroutine writes
// (Nix's ConnectionHandle::withFramedSink). Whatever happens, the
// terminating zero frame is sent: the daemon's FramedSource drains the
// stream up to it before it reports an error, so the stream stays in step
// and a failed upload leaves the Client usable.

// AddToStoreNar uploads one store path: info describes it, r gives its
// NAR, exactly info.NarSize bytes. Like AddToStoreNars with one path, but
// with the AddToStoreNar operation, which every daemon has.
func (c *Client) AddToStoreNar(info store.PathInfo, r io.Reader) error {
	return c.AddToStoreNars([]store.PathInfo{info}, func(int) (io.Reader, error) { return r, nil })
}

// AddToStoreNars uploads store paths to the daemon's store. The infos must
// be in dependency order (references first); open(i) returns the NAR of
// infos[i], which must give exactly infos[i].NarSize bytes. If it returns
// an io.Closer, that is closed when done.
//
// Daemons at protocol 1.32 (Nix 2.4) and later get every path in one
// AddMultipleToStore stream; older ones get one AddToStoreNar per path.
// Daemons from Nix 2.4 to 2.34 lose their place in that stream when it
// carries a path they have already, so the upload of several paths first
// asks which are valid there and skips those: two round trips in all.
//
// The uploads ask the daemon not to check signatures. A daemon applies that
// only for trusted users: for others it requires each path to be signed by
// one of its trusted-public-keys (unless require-sigs = false there), and
// refuses unsigned paths with an error matching ErrNotTrusted.
//
// The daemon checks each NAR against NarHash and NarSize. Nothing is sent
// if one of the infos is malformed. A daemon's refusal comes back as a
// *RemoteError, and a NAR that open cannot give, or that has the wrong
// size, as an error of its own; after both the Client stays usable, and
// paths before the failing one may have become valid. A transport error
// leaves the Client unusable.
func (c *Client) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	return c.do(func() error { return c.addToStoreNars(infos, open) })
}

func (c *Client) addToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	op := "AddMultipleToStore"
	if c.peer.Version < 1<<8|32 || len(infos) == 1 {
		op = "AddToStoreNar"
	}

	hashes, err := store.UploadHashes(infos)
	if err != nil {
		return store.Local(fmt.Errorf("daemon: %s %w", op, err))
	}
	// Daemons from Nix 2.4 to 2.34 do not read the NAR of a path that is
	// valid already, and read it as the next path's header instead
	// (Store::addMultipleToStore; fixed by EnsureRead in 2.35), so only
	// paths missing there are sent.
	if len(infos) > 1 && c.peer.Version >= 1<<8|32 {
		paths := make([]string, len(infos))
		for i := range infos {
			paths[i] = infos[i].Path
		}
		valid, err := c.queryValidPaths(paths, false)
		if err != nil {
			return err
		}
		if len(valid) > 0 {
			infos, open = missing(infos, hashes, valid, open)
			hashes = hashes[:len(infos)]
		}
	}
	if len(infos) == 0 {
		return nil
	}
	if op == "AddToStoreNar" || len(infos) == 1 {
		for i := range infos {
			if err := c.addToStoreNar(&infos[i], hashes[i], i, open); err != nil {
				return err
			}
		}
		return nil
	}
	c.w.Uint64(opAddMultipleToStore)
	c.w.Bool(false) // repair
	c.w.Bool(true)  // dontCheckSigs: applied for trusted users only
	return c.framed(op, "", func(fw *wire.Writer, stop *atomic.Bool) error {
		fw.Uint64(uint64(len(infos)))
		for i := range infos {
			// ValidPathInfo::write with the path, at format 16.
			writePathInfo(fw, &infos[i], hashes[i], true)
			if err := c.sendNar(fw, &infos[i], i, open, stop, op); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *Client) addToStoreNar(p *store.PathInfo, hash string, i int, open func(int) (io.Reader, error)) error {
	const op = "AddToStoreNar"
	if c.peer.Version >= 1<<8|23 {
		c.w.Uint64(opAddToStoreNar)
		writePathInfo(c.w, p, hash, true)
		c.w.Bool(false) // repair
		c.w.Bool(true)  // dontCheckSigs
		return c.framed(op, p.Path, func(fw *wire.Writer, stop *atomic.Bool) error {
			return c.sendNar(fw, p, i, open, stop, op)
		})
	}
	// 1.21 and 1.22: the daemon pulls the NAR with STDERR_READ.
	r, err := open(i)
	if err != nil {
		return store.Local(fmt.Errorf("daemon: %s %s: opening NAR: %w", op, p.Path, err))
	}
	if cl, ok := r.(io.Closer); ok {
		defer cl.Close()
	}
	c.w.Uint64(opAddToStoreNar)
	writePathInfo(c.w, p, hash, true)
	c.w.Bool(false) // repair
	c.w.Bool(true)  // dontCheckSigs
	if err := c.w.Flush(); err != nil {
		return c.peer.IOErr(op, p.Path, err)
	}
	return c.processStderrFrom(op, p.Path, io.LimitReader(r, int64(p.NarSize)))
}

// missing returns the infos whose paths are not in valid, their hashes in
// the first entries of hashes, and an open function that maps their
// indices to the original ones.
func missing(infos []store.PathInfo, hashes, valid []string, open func(int) (io.Reader, error)) ([]store.PathInfo, func(int) (io.Reader, error)) {
	isValid := make(map[string]bool, len(valid))
	for _, p := range valid {
		isValid[p] = true
	}
	var keep []store.PathInfo
	var index []int
	for i := range infos {
		if !isValid[infos[i].Path] {
			hashes[len(keep)] = hashes[i]
			keep = append(keep, infos[i])
			index = append(index, i)
		}
	}
	return keep, func(i int) (io.Reader, error) { return open(index[i]) }
}

// writePathInfo encodes p as ValidPathInfo::write does, with the hash in
// base16.
func writePathInfo(w *wire.Writer, p *store.PathInfo, hash string, withPath bool) {
	if withPath {
		w.String(p.Path)
	}
	w.String(p.Deriver)
	w.String(hash)
	w.Strings(p.References)
	w.Uint64(0) // registrationTime: the daemon uses the current time
	w.Uint64(p.NarSize)
	w.Bool(false) // ultimate: the daemon forces it off anyway
	w.Strings(p.Sigs)
	w.String(p.CA)
}

// frameSink turns each write into frames of at most bufSize bytes on the
// Client's stream, and remembers a failure of the stream, to tell it from
// a failure to read the NAR.
type frameSink struct {
	w   *wire.Writer
	err error
}

func (s *frameSink) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), bufSize)]
		if err := s.w.Uint64(uint64(len(chunk))); err != nil {
			s.err = err
			return n, err
		}
		if err := s.w.Raw(chunk); err != nil {
			s.err = err
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// framed sends the request written so far, then the framed stream that
// body writes, while a goroutine reads the daemon's messages up to LAST or
// ERROR. body gets a Writer whose bytes go out in frames, and must return
// soon after stop is set: the daemon has failed the operation.
func (c *Client) framed(op, path string, body func(fw *wire.Writer, stop *atomic.Bool) error) error {
	if err := c.w.Flush(); err != nil {
		return c.peer.IOErr(op, path, err)
	}
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		err := c.processStderr(op, path)
		stop.Store(true)
		done <- err
	}()
	if c.fbuf == nil {
		c.sink = &frameSink{w: c.w}
		c.fbuf = bufio.NewWriterSize(c.sink, bufSize)
		c.fw = wire.NewWriter(c.fbuf)
	}
	c.sink.err = nil
	c.fbuf.Reset(c.sink)
	werr := body(c.fw, &stop)
	if werr == nil || !isTransport(werr) {
		// Send what is buffered and the terminating frame, even after a
		// local failure: the daemon then fails on a short stream and
		// stays in step.
		if err := c.fbuf.Flush(); err != nil {
			werr = cmpOr(werr, &writeError{c.peer.IOErr(op, path, err)})
		} else if err := c.w.Uint64(0); err != nil {
			werr = cmpOr(werr, &writeError{c.peer.IOErr(op, path, err)})
		} else if err := c.w.Flush(); err != nil {
			werr = cmpOr(werr, &writeError{c.peer.IOErr(op, path, err)})
		}
	}
	if isTransport(werr) {
		// The remote is gone or going, so the reader sees the end of the
		// stream too; its error carries the remote's reason.
		if rerr := <-done; rerr != nil {
			return rerr
		}
		return werr
	}
	rerr := <-done
	switch {
	case werr == nil:
		return rerr
	case errors.Is(werr, errStopped):
		if rerr == nil {
			return c.peer.IOErr(op, path, errors.New("the daemon ended the operation before the upload was complete"))
		}
		return rerr
	case rerr == nil || isRemote(rerr):
		// The daemon failed on the stream cut short, or (if the cut
		// fell between paths) did not notice; either way it is in step.
		return store.Local(werr)
	default:
		return rerr
	}
}

// writeError is a failure to write to the transport.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var we *writeError
	return errors.As(err, &we)
}

var errStopped = errors.New("stopped")

// sendNar writes the NAR of infos[i] to fw: exactly NarSize bytes, checking
// that open's reader has no more.
func (c *Client) sendNar(fw *wire.Writer, p *store.PathInfo, i int, open func(int) (io.Reader, error), stop *atomic.Bool, op string) error {
	if stop.Load() {
		return errStopped
	}
	r, err := open(i)
	if err != nil {
		return fmt.Errorf("daemon: %s %s: opening NAR: %w", op, p.Path, err)
	}
	if cl, ok := r.(io.Closer); ok {
		defer cl.Close()
	}
	lr := &io.LimitedReader{}
	var done uint64
	for done < p.NarSize {
		if stop.Load() {
			return errStopped
		}
		lr.R, lr.N = r, int64(min(p.NarSize-done, 1<<20))
		n, err := c.fbuf.ReadFrom(lr)
		done += uint64(n)
		if c.opts.Progress != nil && n > 0 {
			c.opts.Progress(p.Path, done, p.NarSize)
		}
		if err != nil {
			if c.sink.err != nil {
				return &writeError{c.peer.IOErr(op, p.Path, c.sink.err)}
			}
			return fmt.Errorf("daemon: %s %s: reading NAR: %w", op, p.Path, err)
		}
		if lr.N > 0 {
			return fmt.Errorf("daemon: %s %s: NAR has %d bytes, want %d", op, p.Path, done, p.NarSize)
		}
	}
	if err := store.NAREnd(r, p.NarSize); err != nil {
		return fmt.Errorf("daemon: %s %s: %w", op, p.Path, err)
	}
	return nil
}
