// SPDX-License-Identifier: MIT

package daemon

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// IsValidPath reports whether path is valid on the daemon's store.
func (c *Client) IsValidPath(path string) (bool, error) {
	return run(c, func() (bool, error) { return c.isValidPath(path) })
}

func (c *Client) isValidPath(path string) (bool, error) {
	const op = "IsValidPath"
	c.w.Uint64(opIsValidPath)
	c.w.String(path)
	if err := c.flushAndWait(op, path); err != nil {
		return false, err
	}
	ok, err := newDecoder(c.r, &c.sbuf).Bool()
	if err != nil {
		return false, c.peer.IOErr(op, path, wire.NoEOF(err))
	}
	return ok, nil
}

// flushAndWait sends the request and reads the messages up to the result.
func (c *Client) flushAndWait(op, path string) error {
	if err := c.w.Flush(); err != nil {
		return c.peer.IOErr(op, path, err)
	}
	return c.processStderr(op, path)
}

// QueryValidPaths returns the paths that are valid on the daemon's store.
// With substitute, the daemon first tries to fetch missing paths from its
// own substituters (protocol 1.27, Nix 2.4, and later; older daemons do
// not substitute).
func (c *Client) QueryValidPaths(paths []string, substitute bool) ([]string, error) {
	return run(c, func() ([]string, error) { return c.queryValidPaths(paths, substitute) })
}

func (c *Client) queryValidPaths(paths []string, substitute bool) ([]string, error) {
	const op = "QueryValidPaths"
	c.w.Uint64(opQueryValidPaths)
	// A StorePathSet: the daemon parses each path and dedups.
	c.w.Strings(paths)
	if c.peer.Version >= 1<<8|27 {
		c.w.Bool(substitute)
	}
	if err := c.flushAndWait(op, ""); err != nil {
		return nil, err
	}
	// The reply is a subset of the request.
	valid, err := newDecoder(c.r, &c.sbuf).Strings("valid paths", uint64(len(paths)), maxPath)
	if err != nil {
		return nil, c.peer.IOErr(op, "", wire.NoEOF(err))
	}
	return valid, nil
}

// QueryPathInfo returns information about path, and false if it is not
// valid on the daemon's store.
//
// The daemon sends the NAR hash in base16; it is returned in the form
// every store sends, "sha256:<nix32>" (store.FormatSHA256), so that path infos from both kinds
// of builder compare equal. PathInfo.NarDigest gives the raw digest.
func (c *Client) QueryPathInfo(path string) (info store.PathInfo, ok bool, err error) {
	err = c.do(func() error {
		info, ok, err = c.queryPathInfo(path)
		return err
	})
	return info, ok, err
}

func (c *Client) queryPathInfo(path string) (store.PathInfo, bool, error) {
	const op = "QueryPathInfo"
	c.w.Uint64(opQueryPathInfo)
	c.w.String(path)
	if err := c.flushAndWait(op, path); err != nil {
		return store.PathInfo{}, false, err
	}
	info, ok, err := readPathInfo(newDecoder(c.r, &c.sbuf), c.peer.Version, path)
	if err != nil {
		return store.PathInfo{}, false, c.peer.IOErr(op, path, err)
	}
	return info, ok, nil
}

// QueryPathInfos returns information about those of paths that are valid
// on the daemon's store, in the order asked. Invalid paths are left out.
// The requests are pipelined: all are written while the replies are read.
func (c *Client) QueryPathInfos(paths []string) ([]store.PathInfo, error) {
	return run(c, func() ([]store.PathInfo, error) { return c.queryPathInfos(paths) })
}

func (c *Client) queryPathInfos(paths []string) ([]store.PathInfo, error) {
	const op = "QueryPathInfo"
	werr := make(chan error, 1)
	go func() {
		for _, p := range paths {
			c.w.Uint64(opQueryPathInfo)
			c.w.String(p)
		}
		werr <- c.w.Flush()
	}()
	var infos []store.PathInfo
	var first error
	for _, p := range paths {
		// Every reply is read, even after the daemon refused one, to keep
		// the stream in step.
		if err := c.processStderr(op, p); err != nil {
			if !isRemote(err) {
				// The stream is out of step; the writer ends when the
				// transport is closed.
				return nil, err
			}
			first = cmpOr(first, err)
			continue
		}
		info, ok, err := readPathInfo(newDecoder(c.r, &c.sbuf), c.peer.Version, p)
		if err != nil {
			return nil, c.peer.IOErr(op, p, err)
		}
		if ok {
			infos = append(infos, info)
		}
	}
	if err := <-werr; err != nil {
		return nil, c.peer.IOErr(op, "", err)
	}
	if first != nil {
		return nil, first
	}
	return infos, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// readPathInfo decodes the reply to QueryPathInfo for path
// (ValidPathInfo::write without the path, after the validity flag at 1.17
// and later; daemons before 1.17 fail invalid paths with an error).
func readPathInfo(d *wire.Decoder, version uint64, path string) (store.PathInfo, bool, error) {
	info := store.PathInfo{Path: path}
	if version >= 1<<8|17 {
		valid, err := d.Bool()
		if err != nil {
			return info, false, wire.NoEOF(err)
		}
		if !valid {
			return store.PathInfo{}, false, nil
		}
	}
	if err := readPathInfoBody(d, version, &info); err != nil {
		return store.PathInfo{}, false, err
	}
	return info, true, nil
}

// readPathInfoBody decodes ValidPathInfo after its path: deriver, narHash
// (base16), references, registrationTime, narSize, and at 1.16 and later
// ultimate, signatures and content address.
func readPathInfoBody(d *wire.Decoder, version uint64, info *store.PathInfo) error {
	var err error
	if info.Deriver, err = d.String("deriver", maxPath); err != nil {
		return wire.NoEOF(err)
	}
	h, err := d.Bytes("narHash", maxShort)
	if err != nil {
		return wire.NoEOF(err)
	}
	if info.NarHash, err = nix32Hash(h); err != nil {
		return err
	}
	if info.References, err = d.Strings("references", maxList, maxPath); err != nil {
		return wire.NoEOF(err)
	}
	if _, err = d.Uint64(); err != nil { // registrationTime
		return wire.NoEOF(err)
	}
	if info.NarSize, err = d.Uint64(); err != nil {
		return wire.NoEOF(err)
	}
	if version >= 1<<8|16 {
		if _, err = d.Bool(); err != nil { // ultimate
			return wire.NoEOF(err)
		}
		if info.Sigs, err = d.Strings("signatures", maxList, maxShort); err != nil {
			return wire.NoEOF(err)
		}
		if info.CA, err = d.String("content address", maxShort); err != nil {
			return wire.NoEOF(err)
		}
	}
	return nil
}

// nix32Hash turns the daemon's narHash (64 hex digits; any form
// Hash::parseAny takes is accepted) into "sha256:<nix32>".
func nix32Hash(h []byte) (string, error) {
	var digest [32]byte
	if len(h) == 64 {
		if _, err := hex.Decode(digest[:], h); err != nil {
			return "", fmt.Errorf("narHash %q is not base16", h)
		}
	} else {
		var err error
		if digest, err = store.ParseSHA256(string(h)); err != nil {
			return "", fmt.Errorf("narHash: %w", err)
		}
	}
	return store.FormatSHA256(digest), nil
}

// NarFromPath asks the daemon for the NAR of path and copies exactly
// narSize bytes of it into w. The protocol sends no length: the caller
// knows narSize from QueryPathInfo. A stream that ends early gives an error
// wrapping io.ErrUnexpectedEOF.
//
// narSize must be the NarSize that QueryPathInfo reported: the stream has
// nothing to tell a shorter NAR by, so with a larger narSize the call waits
// for bytes that never come, until the transport is closed. Every byte
// that arrives is written to w at once, so a w that checks the NAR sees
// where it ends. An invalid path
// makes the daemon send an error where the NAR should be, and exit; the
// call returns that error.
//
// An error from w leaves the rest of the NAR unread, so the Client is
// unusable afterwards.
func (c *Client) NarFromPath(path string, w io.Writer, narSize uint64) error {
	return c.do(func() error { return c.narFromPath(path, w, narSize) })
}

// narMagic is how every NAR starts: the length of "nix-archive-1".
const narMagic = 13

func (c *Client) narFromPath(path string, w io.Writer, narSize uint64) error {
	const op = "NarFromPath"
	if err := c.peer.CheckNARSize(op, path, narSize); err != nil {
		return err
	}
	c.w.Uint64(opNarFromPath)
	c.w.String(path)
	if err := c.flushAndWait(op, path); err != nil {
		return err
	}
	// Nix's daemon checks nothing before STDERR_LAST: if dumping the path
	// fails, an error follows where the NAR should be, after the NAR's
	// magic string in Nix 2.8 (dumpPath writes it first), and the daemon
	// exits.
	if err := c.narError(op, path); err != nil {
		return err
	}
	if c.rbuf == nil {
		c.rbuf = make([]byte, bufSize)
	}
	return c.peer.CopyNAR(op, path, w, c.br, narSize, c.rbuf, c.opts.Progress)
}

// narError looks at the start of a NAR and returns the daemon's error if
// one is there instead. A NAR starts with the string "nix-archive-1"
// (24 bytes) and then the string "(".
func (c *Client) narError(op, path string) error {
	b, err := c.br.Peek(32)
	if len(b) < 8 {
		return nil // the copy reports the short stream
	}
	var skip int
	switch {
	case binary.LittleEndian.Uint64(b) == stderrError:
		skip = 8
	case err == nil && binary.LittleEndian.Uint64(b) == narMagic && binary.LittleEndian.Uint64(b[24:]) == stderrError:
		skip = 32
	case binary.LittleEndian.Uint64(b) != narMagic:
		return c.peer.IOErr(op, path, fmt.Errorf("reply does not start a NAR: %x", b[:8]))
	default:
		return nil
	}
	c.br.Discard(skip)
	err = readError(newDecoder(c.r, &c.sbuf), c.peer.Version)
	if re, ok := err.(*RemoteError); ok {
		re.Host, re.Op, re.Path, re.fatal = c.peer.Host, op, path, true
		return re
	}
	return c.peer.IOErr(op, path, wire.NoEOF(err))
}

// AddTempRoot makes path a temporary GC root on the builder for the rest
// of the session, so that its garbage collector keeps what is uploaded
// for a build.
func (c *Client) AddTempRoot(path string) error {
	return c.do(func() error { return c.addTempRoot(path) })
}

func (c *Client) addTempRoot(path string) error {
	const op = "AddTempRoot"
	c.w.Uint64(opAddTempRoot)
	c.w.String(path)
	if err := c.flushAndWait(op, path); err != nil {
		return err
	}
	if _, err := c.r.Uint64(); err != nil {
		return c.peer.IOErr(op, path, wire.NoEOF(err))
	}
	return nil
}

// Verbosity is a Nix log level (Verbosity in logging.hh).
type Verbosity uint64

// Log levels.
const (
	LvlError     Verbosity = 0
	LvlWarn      Verbosity = 1
	LvlNotice    Verbosity = 2
	LvlInfo      Verbosity = 3
	LvlTalkative Verbosity = 4
	LvlChatty    Verbosity = 5
	LvlDebug     Verbosity = 6
	LvlVomit     Verbosity = 7
)

// Settings are what SetOptions sends (src/libstore/remote-store.cc,
// RemoteStore::setOptions; src/libstore/daemon.cc, ClientSettings::apply).
// The daemon applies them to the rest of the session.
type Settings struct {
	// Build carries the limits the hook forwards, as for ssh://
	// builders. MaxSilentTime and KeepFailed are fixed fields, which the
	// daemon applies for every user. Timeout travels as the "timeout"
	// override, which untrusted users may set too. MaxLogSize travels as
	// the "max-build-log-size" override, which the daemon ignores for
	// untrusted users (the hook enforces it anyway, on the log it passes
	// on); 0 sends none.
	Build store.BuildOptions
	// Verbosity is the daemon's log level for the session. Messages above
	// it (STDERR_NEXT) are not sent; build-log lines are sent regardless.
	Verbosity Verbosity
	// MaxBuildJobs is max-jobs on the builder; 0 sends 1, since a builder
	// with max-jobs 0 cannot build BuildDerivation's derivation itself.
	MaxBuildJobs uint64
	// BuildCores is cores on the builder: 0 lets a build use them all.
	BuildCores uint64
	// UseSubstitutes lets the builder substitute paths it needs.
	UseSubstitutes bool
	// Overrides are further settings, by name. The daemon applies them
	// only for trusted users, except "timeout", "connect-timeout",
	// "builders" = "" and trusted "substituters" (Nix 2.8; current Nix
	// also allows "max-silent-time" and "build-poll-interval"). It
	// ignores the others for untrusted users: silently in Nix 2.8, with a
	// warning (through Options.Log) in current Nix.
	Overrides [][2]string
}

// SetOptions sends the session's settings to the daemon. Nix's own
// ssh-ng client never sends them, so the builder uses its own
// max-silent-time and timeout unless the hook does.
//
// Every field is applied for untrusted users too, except the overrides
// named in Settings.Overrides.
func (c *Client) SetOptions(s Settings) error {
	return c.do(func() error { return c.setOptions(s) })
}

func (c *Client) setOptions(s Settings) error {
	const op = "SetOptions"
	c.w.Uint64(opSetOptions)
	c.w.Bool(s.Build.KeepFailed)
	c.w.Bool(false) // keepGoing: one derivation per build
	c.w.Bool(false) // tryFallback
	c.w.Uint64(uint64(s.Verbosity))
	c.w.Uint64(max(s.MaxBuildJobs, 1))
	c.w.Uint64(seconds(s.Build.MaxSilentTime))
	c.w.Uint64(1)                // obsolete useBuildHook
	c.w.Uint64(uint64(LvlError)) // verboseBuild (lvlError means true)
	c.w.Uint64(0)                // obsolete logType
	c.w.Uint64(0)                // obsolete printBuildTrace
	c.w.Uint64(min(s.BuildCores, math.MaxUint32))
	c.w.Bool(s.UseSubstitutes)
	ov := slices.Clone(s.Overrides)
	if s.Build.Timeout > 0 {
		ov = append(ov, [2]string{"timeout", fmt.Sprint(seconds(s.Build.Timeout))})
	}
	if s.Build.MaxLogSize > 0 {
		ov = append(ov, [2]string{"max-build-log-size", fmt.Sprint(s.Build.MaxLogSize)})
	}
	c.w.Uint64(uint64(len(ov)))
	for _, kv := range ov {
		c.w.String(kv[0])
		c.w.String(kv[1])
	}
	return c.flushAndWait(op, "")
}

// seconds encodes a duration as the daemon reads it: readInt, at most
// 2³²−1, rounded up to whole seconds.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64((d + time.Second - 1) / time.Second)
	return min(s, math.MaxUint32)
}
