// SPDX-License-Identifier: MIT

package builder

// Rules for compressed copies from a builder:
//   - The NAR reaches the caller exactly as the store protocol's
//     DumpStorePath would write it: the caller (the local import) hashes
//     it and checks it against the path info the store protocol gave, so
//     nothing here is trusted more than the builder's own protocol.
//   - A builder that cannot compress (no zstd or gzip, a shell that is not
//     a POSIX one, a forced command that allows only Nix's own) gets the
//     store protocol's copy, said once at debug level, never a failure.
//     Once a compressed stream has started, a failure in it is the copy's
//     failure: the bytes already given cannot be taken back.
//   - The compressing command is fixed words: store paths and the store's
//     URI (quoted as the store command's is) are the only other words.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/offload-nix/offload/pkg/squash"
	"github.com/offload-nix/offload/pkg/ssh"
	"github.com/offload-nix/offload/pkg/wire"
)

// exportMagic ends a NAR in an export stream, before the path's
// registration (Nix src/libstore/export-import.cc, exportPath: "NIXE").
const exportMagic = 0x4558494e

// SquashStats are what the compressed copies of a connection moved.
type SquashStats struct {
	// Method is how the last copy came (squash.None: uncompressed).
	Method squash.Method
	// Raw and Packed are the NAR bytes of the compressed copies and
	// what crossed the link for them.
	Raw, Packed int64
}

// SquashOptions are how Squashed compresses.
type SquashOptions struct {
	// Level is the level (squash.Levels; 0: squash.DefaultLevel).
	Level int
	// Auto stops compressing once a copy of at least poorAfter bytes
	// came out at more than poorRatio of its size: the outputs turned
	// out incompressible, and compressing them costs the builder and the
	// hook time for nothing.
	Auto bool
	// Logf takes what the compression did (at -v): each copy's sizes,
	// and once why the builder's copies are not compressed. Nil: dropped.
	Logf func(format string, args ...any)
}

// Under compress=auto, a copy of at least poorAfter bytes that compresses
// to more than poorRatio of its size ends compression for the connection.
const (
	poorAfter = 1 << 20
	poorRatio = 0.9
)

// squashed is a Remote whose DumpStorePath copies compressed.
type squashed struct {
	Remote
	ctx  context.Context
	c    *Conn
	o    SquashOptions
	logf func(format string, args ...any)

	off   atomic.Bool
	mu    sync.Mutex
	stats SquashStats
}

// Squashed returns c.Store with DumpStorePath copying the NAR compressed:
// `nix-store --export` piped into the builder's zstd, or its gzip where it
// has no zstd, in a session of its own on c, decompressed here. Where the
// builder cannot, DumpStorePath is c.Store's own, and o.Logf says why,
// once. Stats reports the bytes.
func (c *Conn) Squashed(ctx context.Context, o SquashOptions) Remote {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &squashed{Remote: c.Store, ctx: ctx, c: c, o: o, logf: logf}
}

// Stats reports what the compressed copies moved, for a Remote from
// Squashed; ok is false for any other.
func Stats(r Remote) (st SquashStats, ok bool) {
	s, ok := r.(*squashed)
	if !ok {
		return SquashStats{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, true
}

func (s *squashed) DumpStorePath(p string, w io.Writer, narSize uint64) error {
	if !s.off.Load() {
		if err, ok := s.dump(p, w, narSize); ok {
			return err
		}
		s.off.Store(true)
	}
	s.mu.Lock()
	s.stats.Method = squash.None
	s.mu.Unlock()
	return s.Remote.DumpStorePath(p, w, narSize)
}

// dump copies p's NAR compressed into w. ok is false when the builder
// could not start the compressed stream; then nothing was written.
func (s *squashed) dump(p string, w io.Writer, narSize uint64) (err error, ok bool) {
	argv := squashCommand(s.c.Machine.Scheme == "ssh-ng", s.c.Machine.Params, p, s.o.Level)
	if argv == nil {
		s.logf("not compressing copies from '%s': its remote-program names no nix-store", s.c.Machine.URI)
		return nil, false
	}
	st, err := s.c.Start(s.ctx, argv)
	if err != nil {
		s.logf("not compressing copies from '%s': %v", s.c.Machine.URI, err)
		return nil, false
	}
	s.c.side.add(st)
	defer s.c.side.remove(st)
	st.Stdin.Close()
	tail := newTail(st.Stderr)
	var out io.Reader = st.Stdout
	if s.c.Prog != nil {
		out = s.c.Prog.Reader(out)
	}
	packed := &squash.Counter{R: out}
	zr, m, err := squash.NewReader(packed)
	if err != nil {
		st.Close()
		werr := st.Wait()
		tail.Wait()
		why := strings.Join(argv, " ") + ": " + err.Error()
		if werr != nil {
			why = werr.Error() // it names the command
		}
		if msg := tail.Last(); msg != "" {
			why += ": " + firstLine(msg)
		}
		s.logf("not compressing copies from '%s': %s", s.c.Machine.URI, why)
		return nil, false
	}
	defer zr.Close()
	err = readExport(zr, p, w, narSize)
	if err != nil {
		st.Close()
	}
	werr := st.Wait()
	tail.Wait()
	if err == nil && werr != nil {
		err = fmt.Errorf("%s: %w", strings.Join(argv, " "), werr)
	}
	if err != nil {
		if msg := tail.Last(); msg != "" {
			err = fmt.Errorf("%w (%s)", err, firstLine(msg))
		}
		return fmt.Errorf("compressed copy of %s: %w", p, err), true
	}
	s.mu.Lock()
	s.stats.Method = m
	s.stats.Raw += int64(narSize)
	s.stats.Packed += packed.N
	s.mu.Unlock()
	ratio := float64(packed.N) / float64(max(narSize, 1))
	s.logf("copied %s from '%s' with %v: %d bytes for its %d (%.0f%%)", p, s.c.Machine.URI, m, packed.N, narSize, 100*ratio)
	if s.o.Auto && narSize >= poorAfter && ratio > poorRatio {
		s.logf("not compressing more copies from '%s': %s compressed only to %.0f%%", s.c.Machine.URI, p, 100*ratio)
		s.off.Store(true)
	}
	return nil, true
}

// readExport copies the NAR of a one-path export stream (Nix
// src/libstore/export-import.cc, exportPath) from r into w, and reads the
// rest to its end: the registration must name p, and nothing may follow.
// The NAR is narSize bytes, as the store protocol said; a builder that
// sent another is caught by the magic after it or by the caller's hash.
func readExport(r io.Reader, p string, w io.Writer, narSize uint64) error {
	wr := wire.NewReader(r)
	if n, err := wr.Uint64(); err != nil || n != 1 {
		return exportError("no path at its start", err)
	}
	if _, err := io.CopyN(w, r, int64(narSize)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if n, err := wr.Uint64(); err != nil || n != exportMagic {
		return exportError("no NIXE after the NAR: its size is not the one the store protocol said", err)
	}
	got, err := wr.String()
	if err != nil || got != p {
		return exportError(fmt.Sprintf("it is of %q", got), err)
	}
	if _, err := wr.Strings(); err != nil { // references: the store protocol's count
		return exportError("its references", err)
	}
	if _, err := wr.String(); err != nil { // deriver
		return exportError("its deriver", err)
	}
	if sig, err := wr.Uint64(); err != nil || sig != 0 {
		return exportError("a signature flag that is not 0", err)
	}
	if n, err := wr.Uint64(); err != nil || n != 0 {
		return exportError("more than one path", err)
	}
	if n, err := io.Copy(io.Discard, r); err != nil || n != 0 {
		return exportError(fmt.Sprintf("%d bytes after its end", n), err)
	}
	return nil
}

func exportError(what string, err error) error {
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("export stream: %w", err)
	}
	return fmt.Errorf("export stream: %s", what)
}

// squashCommand is the shell line that writes p's export stream
// compressed: `nix-store [--store S] --export p | { zstd … || gzip …; }`.
// zstd not found leaves the input to gzip, unread. nix-store is
// remote-program's for ssh:// and its sibling for ssh-ng://'s
// nix-daemon; nil when remote-program names something else.
func squashCommand(ng bool, params map[string]string, p string, level int) []string {
	argv := []string{"nix-store"}
	if prog := params["remote-program"]; prog != "" {
		argv = strings.Fields(prog)
		if ng {
			dir, base := path.Split(argv[0])
			if base != "nix-daemon" || len(argv) > 1 {
				return nil
			}
			argv = []string{dir + "nix-store"}
		}
	}
	if st := params["remote-store"]; st != "" {
		argv = append(argv, "--store", ssh.Quote(st))
	}
	argv = append(argv, "--export", p, "|", "{")
	argv = append(argv, squash.Command(squash.Zstd, level)...)
	argv = append(argv, "2>/dev/null", "||")
	argv = append(argv, squash.Command(squash.Gzip, level)...)
	return append(argv, ";", "}")
}

// sideStreams are the commands started beside the store protocol that
// End closes with it, so that whatever waits on them returns too.
type sideStreams struct {
	mu sync.Mutex
	m  map[*Stream]bool
}

func (s *sideStreams) add(st *Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*Stream]bool{}
	}
	s.m[st] = true
}

func (s *sideStreams) remove(st *Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, st)
}

func (s *sideStreams) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.m {
		st.Close()
	}
}
