// SPDX-License-Identifier: MIT

package builder

// Rules for compressed copies from and to a builder:
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
//   - Uploads go as the serve protocol's AddToStoreNar into the builder's
//     `nix-store --serve --write` behind its decompressor: the path info
//     it carries (references, deriver, content address, signatures) is
//     the one the store protocol would have sent, and the builder checks
//     each NAR against its hash as it would there. Everything is sent
//     before any answer is read (serve.Upload), since the decompressor
//     may pass the last bytes on only when its input ends. The builder's
//     command says which decompressor it runs before anything is sent,
//     so a builder that cannot gets the store protocol's copy with
//     nothing lost.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/squash"
	"github.com/offload-nix/offload/pkg/ssh"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// exportMagic ends a NAR in an export stream, before the path's
// registration (Nix src/libstore/export-import.cc, exportPath: "NIXE").
const exportMagic = 0x4558494e

// SquashStats are what the compressed copies of a connection moved.
type SquashStats struct {
	// Method is how the last copy came (squash.None: uncompressed).
	Method squash.Method
	// Raw and Packed are the NAR bytes of the compressed copies from
	// the builder and what crossed the link for them; SentRaw and
	// SentPacked the same for uploads.
	Raw, Packed         int64
	SentRaw, SentPacked int64
}

// SquashOptions are how Squashed compresses.
type SquashOptions struct {
	// Level is the level (squash.Levels). 0 is auto: squash.DefaultLevel,
	// and for a copy that would take at least squash.TuneTime as is on
	// the link LinkRate knows, the level squash.Tune chooses on an
	// upload's first bytes, or backLevel's for a copy back.
	Level int
	// LinkRate, if not nil, returns what the builder's link moves, in
	// bytes a second, as earlier copies measured it (0: unknown).
	LinkRate func() float64
	// Compress, if not nil, is asked before each copy (either way) of at
	// least squashMin bytes, raw of them, whether it goes compressed;
	// nil: all do. It must not wait on the builder: it is asked with the
	// copy waiting.
	Compress func(raw int64) bool
	// Measured, if not nil, takes the measure of each copy of at least
	// squashMin bytes that succeeded, compressed or not.
	Measured func(Copy)
	// Logf takes what the compression did (at -v): each copy's sizes,
	// and once why the builder's copies are not compressed. Nil: dropped.
	Logf func(format string, args ...any)
}

// Copy is the measure of one copy to or from a builder.
type Copy struct {
	// Raw is the NAR bytes copied, Wire what crossed the link for them
	// (Raw for an uncompressed copy).
	Raw, Wire int64
	// Took is the copy's time, from before its session started (for a
	// compressed copy) to its last byte.
	Took time.Duration
	// Compressed is set for a compressed copy: then Wire/Took is only a
	// lower bound of the link's rate, since the compressor may have been
	// the slower.
	Compressed bool
}

// squashMin is the least a copy (one path back, one batch up) must carry
// to go compressed. A compressed copy runs in a session of its own, whose
// start (the session and nix-store on the builder, ~100 ms on a loopback
// builder) is paid before its first byte; below squashMin that start
// costs more than compression saves on a 100 Mbit link (1 MiB at 2.7×
// saves ~50 ms there), and a small build's copy back would wait for it.
// Smaller copies go over the store session, as uncompressed copies do.
const squashMin = 1 << 20

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
	if narSize < squashMin {
		return s.Remote.DumpStorePath(p, w, narSize)
	}
	t0 := time.Now()
	if s.compress(int64(narSize)) {
		if err, ok := s.dump(p, w, narSize, t0); ok {
			return err
		}
		s.off.Store(true)
	}
	s.mu.Lock()
	s.stats.Method = squash.None
	s.mu.Unlock()
	err := s.Remote.DumpStorePath(p, w, narSize)
	if err == nil {
		s.measured(int64(narSize), int64(narSize), t0, false)
	}
	return err
}

// compress reports whether the next copy, of raw bytes (at least
// squashMin), goes compressed.
func (s *squashed) compress(raw int64) bool {
	return !s.off.Load() && (s.o.Compress == nil || s.o.Compress(raw))
}

// measured hands a copy's measure to Measured.
func (s *squashed) measured(raw, wire int64, t0 time.Time, compressed bool) {
	if s.o.Measured != nil {
		s.o.Measured(Copy{Raw: raw, Wire: wire, Took: time.Since(t0), Compressed: compressed})
	}
}

// dump copies p's NAR compressed into w. ok is false when the builder
// could not start the compressed stream; then nothing was written.
func (s *squashed) dump(p string, w io.Writer, narSize uint64, t0 time.Time) (err error, ok bool) {
	level := s.o.Level
	if level == 0 && s.o.LinkRate != nil {
		rate := s.o.LinkRate()
		if level = backLevel(rate, narSize); level != 0 {
			s.logf("copying %s from '%s' compressed at level %d there: the link moves %.1f MiB/s", p, s.c.Machine.URI, level, rate/(1<<20))
		}
	}
	sc, ok := s.start(squashCommand(s.c.Machine.Scheme == "ssh-ng", s.c.Machine.Params, p, level), "from")
	if !ok {
		return nil, false
	}
	sc.st.Stdin.Close()
	packed := &squash.Counter{R: sc.out}
	zr, m, err := squash.NewReader(packed)
	var head [8]byte
	if err == nil {
		// Nothing is written to w before the stream's first word: a
		// nix-store that failed at once still leaves its compressor an
		// empty stream to compress.
		if _, err = io.ReadFull(zr, head[:]); err == nil && binary.LittleEndian.Uint64(head[:]) != 1 {
			err = errors.New("not an export stream")
		}
		if err != nil {
			zr.Close()
			err = fmt.Errorf("%v: %w", m, err)
		}
	}
	if err != nil {
		s.refuse(sc, "from", err.Error())
		return nil, false
	}
	defer zr.Close()
	err = readExport(io.MultiReader(bytes.NewReader(head[:]), zr), p, w, narSize)
	if err = s.end(sc, err); err != nil {
		return fmt.Errorf("compressed copy of %s: %w", p, err), true
	}
	s.mu.Lock()
	s.stats.Method = m
	s.stats.Raw += int64(narSize)
	s.stats.Packed += packed.N
	s.mu.Unlock()
	ratio := float64(packed.N) / float64(max(narSize, 1))
	s.logf("copied %s from '%s' with %v: %d bytes for its %d (%.0f%%)", p, s.c.Machine.URI, m, packed.N, narSize, 100*ratio)
	s.measured(int64(narSize), packed.N, t0, true)
	return nil, true
}

// Copies back on a slow link are compressed harder: below backSlow bytes
// a second, zstd -9 on any x86 builder (some 40 MiB/s on one core of
// this machine's EPYC) outruns what the link takes of it (~14 MiB/s of
// input at the ~21 % level 9 leaves of machine code), and leaves a tenth
// fewer bytes than level 3 (50 MiB of binaries: 11.2 MB against 12.6).
// At 100 Mbit the link would take ~50 MiB/s of input, more than level 9
// makes, so level 3 stays.
const (
	backSlow      = 3 << 20
	backSlowLevel = 9
)

// backLevel is the level at which a builder compresses a copy of size
// bytes back on a link that moves rate bytes a second, for compress-level
// auto: backSlowLevel on a link below backSlow that the copy would take
// squash.TuneTime or more to cross as is, else 0 (the default).
func backLevel(rate float64, size uint64) int {
	if rate <= 0 || rate >= backSlow || float64(size)/rate < squash.TuneTime.Seconds() {
		return 0
	}
	return backSlowLevel
}

// sideCmd is a command started beside the store protocol for a compressed
// copy, with its output and input followed for the stall watch.
type sideCmd struct {
	argv []string
	st   *Stream
	tail *Tail
	out  io.Reader
	in   io.Writer
}

// start starts argv for a copy dir ("from" or "to") the builder. It
// returns false, said through Logf, when argv is nil (remote-program is
// no nix-store) or the session would not start.
func (s *squashed) start(argv []string, dir string) (*sideCmd, bool) {
	if argv == nil {
		s.logf("not compressing copies %s '%s': its remote-program is not a nix-store or nix-daemon", dir, s.c.Machine.URI)
		return nil, false
	}
	st, err := s.c.Start(s.ctx, argv)
	if err != nil {
		s.logf("not compressing copies %s '%s': %v", dir, s.c.Machine.URI, err)
		return nil, false
	}
	s.c.side.add(st)
	sc := &sideCmd{argv: argv, st: st, tail: newTail(st.Stderr), out: st.Stdout, in: st.Stdin}
	if s.c.Prog != nil {
		sc.out, sc.in = s.c.Prog.Reader(sc.out), s.c.Prog.Writer(sc.in)
	}
	return sc, true
}

// refuse ends sc, which did not start a compressed stream, and says why:
// the command's failure when it failed.
func (s *squashed) refuse(sc *sideCmd, dir, why string) {
	sc.st.Stdin.Close()
	sc.st.Close()
	if werr := s.wait(sc); werr != nil {
		why = werr.Error() // it names the command
	} else {
		why = strings.Join(sc.argv, " ") + ": " + why
	}
	if msg := sc.tail.Last(); msg != "" {
		why += ": " + firstLine(msg)
	}
	s.logf("not compressing copies %s '%s': %s", dir, s.c.Machine.URI, why)
}

// end waits for sc after a copy whose error is err, and returns the
// copy's failure, or the command's.
func (s *squashed) end(sc *sideCmd, err error) error {
	if err != nil {
		sc.st.Close()
	}
	werr := s.wait(sc)
	if err == nil && werr != nil {
		err = fmt.Errorf("%s: %w", strings.Join(sc.argv, " "), werr)
	}
	if err != nil {
		if msg := sc.tail.Last(); msg != "" {
			err = fmt.Errorf("%w (%s)", err, firstLine(msg))
		}
	}
	return err
}

func (s *squashed) wait(sc *sideCmd) error {
	err := sc.st.Wait()
	sc.tail.Wait()
	s.c.side.remove(sc.st)
	return err
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

// AddToStoreNars uploads infos compressed into the builder's `nix-store
// --serve --write`, or as c.Store does when the builder cannot.
func (s *squashed) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	raw := narBytes(infos)
	if raw < squashMin {
		return s.Remote.AddToStoreNars(infos, open)
	}
	t0 := time.Now()
	if s.compress(int64(raw)) {
		if err, ok := s.upload(infos, int64(raw), open, t0); ok {
			return err
		}
		s.off.Store(true)
	}
	err := s.Remote.AddToStoreNars(infos, open)
	if err == nil {
		s.measured(int64(raw), int64(raw), t0, false)
	}
	return err
}

// narBytes is the sum of infos' NAR sizes.
func narBytes(infos []store.PathInfo) uint64 {
	var n uint64
	for i := range infos {
		n += infos[i].NarSize
	}
	return n
}

// upload sends infos compressed in a session of their own. ok is false
// when the builder could not start decompressing; then nothing was
// opened.
func (s *squashed) upload(infos []store.PathInfo, raw int64, open func(i int) (io.Reader, error), t0 time.Time) (err error, ok bool) {
	if len(infos) == 0 {
		return nil, true
	}
	sc, ok := s.start(uploadCommand(s.c.Machine.Scheme == "ssh-ng", s.c.Machine.Params), "to")
	if !ok {
		return nil, false
	}
	// The first line names the decompressor; nothing is sent before.
	br := bufio.NewReaderSize(sc.out, 64)
	line, lerr := br.ReadSlice('\n')
	m, merr := squash.ParseMethod(string(bytes.TrimSuffix(line, []byte("\n"))))
	if lerr != nil || merr != nil || m == squash.None {
		s.refuse(sc, "to", fmt.Sprintf("its first line was %q", line))
		return nil, false
	}
	packed := &squash.Counter{W: sc.in}
	level, open, err := s.tune(m, infos, raw, open)
	var zw io.WriteCloser
	if err == nil {
		zw, err = squash.NewWriter(packed, m, level)
	}
	if err == nil {
		in := &squashInput{zw: zw, st: sc.st}
		err = serve.Upload(br, in, serve.Options{Host: s.c.Machine.Name, Stderr: sc.tail.Last}, infos, open)
	}
	if err = s.end(sc, err); err != nil {
		return fmt.Errorf("compressed copy: %w", err), true
	}
	s.mu.Lock()
	s.stats.SentRaw += raw
	s.stats.SentPacked += packed.N
	s.mu.Unlock()
	ratio := float64(packed.N) / float64(max(raw, 1))
	s.logf("copied %d paths to '%s' with %v: %d bytes for their %d (%.0f%%)", len(infos), s.c.Machine.URI, m, packed.N, raw, 100*ratio)
	s.measured(raw, packed.N, t0, true)
	return nil, true
}

// tune returns the level of an upload of infos with m (Level, or at auto
// what squash.Tune chooses on the first squash.TuneSample bytes of the
// first NAR, read ahead here), and open giving that NAR whole.
func (s *squashed) tune(m squash.Method, infos []store.PathInfo, raw int64, open func(i int) (io.Reader, error)) (int, func(i int) (io.Reader, error), error) {
	if s.o.Level != 0 || s.o.LinkRate == nil {
		return s.o.Level, open, nil
	}
	rate := s.o.LinkRate()
	if rate <= 0 || float64(raw)/rate < squash.TuneTime.Seconds() {
		return 0, open, nil
	}
	first, err := open(0)
	if err != nil {
		return 0, nil, err
	}
	sample := make([]byte, min(squash.TuneSample, infos[0].NarSize))
	n, err := io.ReadFull(first, sample)
	sample = sample[:n]
	var level int
	var why string
	if err == nil || err == io.ErrUnexpectedEOF || err == io.EOF {
		level, why, err = squash.Tune(m, 0, sample, rate)
	}
	if err != nil {
		readCloser{from: first}.Close()
		return 0, nil, err
	}
	s.logf("copying %d paths to '%s' with %v at level %d: %s", len(infos), s.c.Machine.URI, m, level, why)
	return level, func(i int) (io.Reader, error) {
		if i == 0 {
			return readCloser{io.MultiReader(bytes.NewReader(sample), first), first}, nil
		}
		return open(i)
	}, nil
}

// readCloser reads from Reader and closes what its NAR came from, if
// anything.
type readCloser struct {
	io.Reader
	from io.Reader
}

func (r readCloser) Close() error {
	if c, ok := r.from.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// squashInput is the compressed input of an upload's session: Close ends
// the compressed stream, then the session's input.
type squashInput struct {
	zw io.WriteCloser
	st *Stream
}

func (in *squashInput) Write(p []byte) (int, error) { return in.zw.Write(p) }

func (in *squashInput) Close() error {
	if err := in.zw.Close(); err != nil {
		return err
	}
	return in.st.Stdin.Close()
}

// uploadCommand is the shell line that says which of zstd and gzip the
// builder has, on a line of its own, once nix-store is there and the
// decompressor decompresses, and then serves the store protocol from its
// decompressed input: `z=zstd; command -v zstd >/dev/null || z=gzip;
// command -v $z >/dev/null && command -v nix-store >/dev/null && $z -c
// </dev/null | $z -dc && echo $z && $z -dc | nix-store [--store S]
// --serve --write`. nix-store is storeCommand's.
func uploadCommand(ng bool, params map[string]string) []string {
	nixStore := storeCommand(ng, params)
	if nixStore == nil {
		return nil
	}
	argv := []string{"z=zstd;", "command", "-v", "zstd", ">/dev/null", "||", "z=gzip;",
		"command", "-v", "$z", ">/dev/null", "&&", "command", "-v", nixStore[0], ">/dev/null", "&&", "$z", "-c", "</dev/null", "|", "$z", "-dc", "&&",
		"echo", "$z", "&&", "$z", "-dc", "|"}
	return append(append(argv, nixStore...), "--serve", "--write")
}

// storeCommand is the builder's nix-store with the store's URI: "nix-store",
// or remote-program when it is a nix-store (ssh://), or the nix-store
// beside remote-program's nix-daemon (ssh-ng://). A remote-program that is
// anything else (a wrapper, more words) may take only what the store
// protocol needs: nil.
func storeCommand(ng bool, params map[string]string) []string {
	argv := []string{"nix-store"}
	if prog := params["remote-program"]; prog != "" {
		f := strings.Fields(prog)
		dir, base := path.Split(f[0])
		want := "nix-store"
		if ng {
			want = "nix-daemon"
		}
		if len(f) > 1 || base != want {
			return nil
		}
		argv = []string{dir + "nix-store"}
	}
	if st := params["remote-store"]; st != "" {
		argv = append(argv, "--store", ssh.Quote(st))
	}
	return argv
}

// squashCommand is the shell line that writes p's export stream
// compressed: `nix-store [--store S] --export p | { zstd … || gzip …; }`.
// zstd not found leaves the input to gzip, unread. nix-store is
// storeCommand's.
func squashCommand(ng bool, params map[string]string, p string, level int) []string {
	argv := storeCommand(ng, params)
	if argv == nil {
		return nil
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
