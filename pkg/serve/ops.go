// SPDX-License-Identifier: MIT

package serve

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// QueryValidPaths returns the paths that are valid on the server.
//
// With lock, the server adds temporary GC roots for the paths, valid for
// the rest of the session, so its garbage collector keeps what is uploaded
// for a build. With substitute, it first tries to fetch missing paths from
// its own substituters. Both take effect only with `nix-store --serve
// --write`.
func (c *Client) QueryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	return run(c, func() ([]string, error) { return c.queryValidPaths(paths, lock, substitute) })
}

func (c *Client) queryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	const op = "QueryValidPaths"
	c.w.Uint64(cmdQueryValidPaths)
	c.w.Bool(lock)
	c.w.Bool(substitute)
	c.w.Strings(paths)
	if err := c.w.Flush(); err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	d := newDecoder(c.r, &c.sbuf)
	// The reply is a subset of the request.
	valid, err := d.Strings("valid paths", uint64(len(paths)), maxPath)
	if err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	return valid, nil
}

// QueryPathInfos returns information about those of paths that are valid on
// the server, in the server's order. Invalid paths are left out.
func (c *Client) QueryPathInfos(paths []string) ([]store.PathInfo, error) {
	return run(c, func() ([]store.PathInfo, error) { return c.queryPathInfos(paths) })
}

func (c *Client) queryPathInfos(paths []string) ([]store.PathInfo, error) {
	const op = "QueryPathInfos"
	c.w.Uint64(cmdQueryPathInfos)
	c.w.Strings(paths)
	if err := c.w.Flush(); err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	infos, err := readPathInfos(newDecoder(c.r, &c.sbuf), c.peer.Version, paths)
	if err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	return infos, nil
}

// readPathInfos decodes a QueryPathInfos reply: one entry per valid path,
// ended by an empty string (nix-store.cc opServe, cmdQueryPathInfos). Every
// path must be one that was asked for, and none may come twice.
func readPathInfos(d *wire.Decoder, version uint64, asked []string) ([]store.PathInfo, error) {
	// asked == nil (only in tests) accepts any path.
	want := make(map[string]bool, len(asked))
	for _, p := range asked {
		want[p] = true
	}
	seen := make(map[string]bool)
	var infos []store.PathInfo
	for {
		path, err := d.String("path", maxPath)
		if err != nil {
			return nil, wire.NoEOF(err)
		}
		if path == "" {
			return infos, nil
		}
		if (asked != nil && !want[path]) || seen[path] {
			return nil, fmt.Errorf("server sent information about %q, which was not asked for (or twice)", path)
		}
		seen[path] = true
		info := store.PathInfo{Path: path}
		if info.Deriver, err = d.String("deriver", maxPath); err != nil {
			return nil, wire.NoEOF(err)
		}
		if info.References, err = d.Strings("references", maxList, maxPath); err != nil {
			return nil, wire.NoEOF(err)
		}
		if _, err = d.Uint64(); err != nil { // download size, the same as narSize
			return nil, wire.NoEOF(err)
		}
		if info.NarSize, err = d.Uint64(); err != nil {
			return nil, wire.NoEOF(err)
		}
		if version >= 0x204 {
			if info.NarHash, err = d.String("narHash", maxShort); err != nil {
				return nil, wire.NoEOF(err)
			}
			if info.CA, err = d.String("content address", maxShort); err != nil {
				return nil, wire.NoEOF(err)
			}
			if info.Sigs, err = d.Strings("signatures", maxList, maxShort); err != nil {
				return nil, wire.NoEOF(err)
			}
		}
		infos = append(infos, info)
	}
}

// QueryClosure returns the closure of paths on the server: the paths and
// everything they reference, transitively, and with includeOutputs also the
// outputs of derivations in it.
func (c *Client) QueryClosure(paths []string, includeOutputs bool) ([]string, error) {
	return run(c, func() ([]string, error) { return c.queryClosure(paths, includeOutputs) })
}

func (c *Client) queryClosure(paths []string, includeOutputs bool) ([]string, error) {
	const op = "QueryClosure"
	c.w.Uint64(cmdQueryClosure)
	c.w.Bool(includeOutputs)
	c.w.Strings(paths)
	if err := c.w.Flush(); err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	closure, err := newDecoder(c.r, &c.sbuf).Strings("closure", maxList, maxPath)
	if err != nil {
		return nil, c.peer.IOErr(op, "", wire.NoEOF(err))
	}
	return closure, nil
}

// DumpStorePath asks the server for the NAR of path and copies exactly
// narSize bytes of it into w. The protocol sends no length: the caller
// knows narSize from QueryPathInfos. A stream that ends early gives an
// error wrapping io.ErrUnexpectedEOF (an invalid path makes the server
// exit, with its message in the remote stderr).
//
// narSize must be the NarSize that QueryPathInfos reported: the stream has
// nothing to tell a shorter NAR by, so with a larger narSize the call waits
// for bytes that never come, until the transport is closed.
//
// An error from w leaves the rest of the NAR unread, so the Client is
// unusable afterwards.
func (c *Client) DumpStorePath(path string, w io.Writer, narSize uint64) error {
	return c.do(func() error { return c.dumpStorePath(path, w, narSize) })
}

func (c *Client) dumpStorePath(path string, w io.Writer, narSize uint64) error {
	const op = "DumpStorePath"
	if err := c.peer.CheckNARSize(op, path, narSize); err != nil {
		return err
	}
	c.w.Uint64(cmdDumpStorePath)
	c.w.String(path)
	if err := c.w.Flush(); err != nil {
		return c.peer.IOErr(op, path, err)
	}
	return c.peer.CopyNAR(op, path, w, c.br, narSize, c.rbuf, c.opts.Progress)
}

// AddToStoreNars uploads store paths to the server with AddToStoreNar. The
// infos must be in dependency order (references first); open(i) returns the
// NAR of infos[i], which must give exactly infos[i].NarSize bytes. If it
// returns an io.Closer, that is closed when done.
//
// The requests are pipelined: every AddToStoreNar is written back to back
// while a goroutine reads the server's acknowledgements, so an upload costs
// one round trip in all rather than one per path. An error on either side
// stops both and names the path.
//
// The server checks each NAR against NarHash and NarSize. Nothing is sent
// if one of the infos is malformed; any other error leaves the Client
// unusable, and a path whose NAR was cut short never becomes valid.
func (c *Client) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	return c.do(func() error { return c.addToStoreNars(infos, open) })
}

func (c *Client) addToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	const op = "AddToStoreNar"
	// The server would refuse narSize 0 too ("narInfo is too old").
	hashes, err := store.UploadHashes(infos)
	if err != nil {
		return store.Local(fmt.Errorf("serve: %s %w", op, err))
	}
	if len(infos) == 0 {
		return nil
	}

	var stop atomic.Bool
	acks := make(chan error, 1)
	go func() {
		acks <- c.readAcks(infos, &stop)
	}()
	werr := c.writeNars(infos, hashes, open, &stop)
	if werr == nil || errors.Is(werr, errStopped) {
		// All sent, or the reader failed first and stopped the writer.
		return <-acks
	}
	var we *writeError
	if !errors.As(werr, &we) {
		// A local failure (open, a short or long NAR): the server is
		// waiting for bytes that will never come and sends nothing more,
		// so do not wait for the reader; it ends when the transport is
		// closed.
		return werr
	}
	// The transport failed under the writer, so the remote is gone or
	// going, and the reader sees the end of the stream too. Its error
	// carries the remote's reason.
	if rerr := <-acks; rerr != nil && !errors.Is(rerr, errStopped) {
		return rerr
	}
	return werr
}

// writeError is a failure to write to the transport.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

var errStopped = errors.New("stopped")

func (c *Client) readAcks(infos []store.PathInfo, stop *atomic.Bool) error {
	for i := range infos {
		n, err := c.r.Uint64()
		if err == nil && n != 1 {
			err = fmt.Errorf("unexpected reply %d", n)
		}
		if err != nil {
			stop.Store(true)
			return c.peer.IOErr("AddToStoreNar", infos[i].Path, wire.NoEOF(err))
		}
	}
	return nil
}

func (c *Client) writeNars(infos []store.PathInfo, hashes []string, open func(i int) (io.Reader, error), stop *atomic.Bool) error {
	const op = "AddToStoreNar"
	for i := range infos {
		p := &infos[i]
		if stop.Load() {
			return errStopped
		}
		r, err := open(i)
		if err != nil {
			return fmt.Errorf("serve: %s %s: opening NAR: %w", op, p.Path, err)
		}
		c.w.Uint64(cmdAddToStoreNar)
		c.w.String(p.Path)
		c.w.String(p.Deriver)
		c.w.String(hashes[i])
		c.w.Strings(p.References)
		c.w.Uint64(0) // registrationTime: the server uses the current time
		c.w.Uint64(p.NarSize)
		c.w.Bool(false) // ultimate
		c.w.Strings(p.Sigs)
		c.w.String(p.CA)
		err = c.copyNar(p, r, stop)
		if cl, ok := r.(io.Closer); ok {
			cl.Close()
		}
		if err != nil {
			return err
		}
		// Flush after each path so the server can start on it; the
		// buffer is full most of the time anyway.
		if err := c.w.Flush(); err != nil {
			return &writeError{c.peer.IOErr(op, p.Path, err)}
		}
	}
	return nil
}

// copyNar sends exactly p.NarSize bytes from r and checks that r has no
// more.
func (c *Client) copyNar(p *store.PathInfo, r io.Reader, stop *atomic.Bool) error {
	const op = "AddToStoreNar"
	var done uint64
	for done < p.NarSize {
		if stop.Load() {
			return errStopped
		}
		chunk := c.wbuf[:min(uint64(len(c.wbuf)), p.NarSize-done)]
		n, err := io.ReadFull(r, chunk)
		if n > 0 {
			if werr := c.w.Raw(chunk[:n]); werr != nil {
				return &writeError{c.peer.IOErr(op, p.Path, werr)}
			}
			done += uint64(n)
			if c.opts.Progress != nil {
				c.opts.Progress(p.Path, done, p.NarSize)
			}
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return fmt.Errorf("serve: %s %s: NAR has %d bytes, want %d", op, p.Path, done, p.NarSize)
			}
			return fmt.Errorf("serve: %s %s: reading NAR: %w", op, p.Path, err)
		}
	}
	if err := store.NAREnd(r, p.NarSize); err != nil {
		return fmt.Errorf("serve: %s %s: %w", op, p.Path, err)
	}
	return nil
}
