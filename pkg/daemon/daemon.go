// SPDX-License-Identifier: MIT

// Package daemon is a client for Nix's worker protocol, which `nix-daemon
// --stdio` speaks on its stdin and stdout and which Nix uses for
// `ssh-ng://` builders (src/libstore/worker-protocol.hh and
// src/libstore/remote-store.cc in Nix 2.8; docs/internals.md).
//
// The client speaks over a reader and a writer it is given: the stdout and
// stdin of a remote SSH session, or the pipes of a local `nix-daemon
// --stdio` process. It never opens connections itself. It speaks in the
// types of package store (store.PathInfo, store.BuildResult,
// store.BuildOptions), as package serve does, so the hook handles both
// kinds of builder alike.
//
// # Versions
//
// The client claims protocol 1.35, which every daemon from Nix 2.8 to
// current Nix and Lix accepts (Lix 2.94 and later refuse anything older),
// and gates every field on the negotiated version min(1.35, daemon).
// Daemons older than 1.21 (Nix 2.0) are refused.
//
// # Messages and errors
//
// While an operation runs, the daemon sends log messages ahead of the
// result (read by RemoteStore's processStderr in Nix). The client decodes
// them as they arrive: build-log lines go to Options.Log and build phases
// to Options.Phase, so the hook can pass them on while the build runs. An
// operation that fails on the daemon returns a *RemoteError carrying the
// daemon's message and trace; the stream stays in step, so the Client
// remains usable. Failures that are the builder's trust settings, such as
// an unsigned upload by a user not in trusted-users, match ErrNotTrusted
// with errors.Is.
//
// After a transport or protocol error the stream is out of step, so the
// Client refuses further operations; close the transport.
//
// # Limits
//
// Every length read from the wire is capped, and each reply has a total
// budget, so a hostile daemon cannot make the client allocate without
// bound. NAR bytes are streamed through fixed buffers and never held in
// memory. Log lines are handed over without copying.
//
// A Client runs one operation at a time; concurrent calls wait for each
// other.
package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Protocol constants (worker-protocol.hh: WORKER_MAGIC_1, WORKER_MAGIC_2;
// the handshake is WorkerProto::BasicClientConnection::handshake in
// src/libstore/worker-protocol-connection.cc).
const (
	magic1 = 0x6e697863 // "cxin": client → daemon
	magic2 = 0x6478696f // "oixd": daemon → client

	// ClientVersion is the protocol version the client claims: 1.35.
	ClientVersion = 1<<8 | 35
	// MinDaemonVersion is the oldest daemon version the client accepts:
	// 1.21, Nix 2.0.
	MinDaemonVersion = 1<<8 | 21
)

// Worker operations (worker-protocol.hh: WorkerOp in Nix 2.8,
// WorkerProto::Op now).
const (
	opIsValidPath        = 1
	opAddTempRoot        = 11
	opSetOptions         = 19
	opQueryPathInfo      = 26
	opQueryValidPaths    = 31
	opBuildDerivation    = 36
	opNarFromPath        = 38
	opAddToStoreNar      = 39
	opAddMultipleToStore = 44
)

// bufSize is the size of the read and write buffers, of the buffers NAR
// bytes are copied through and of the frames of a framed upload.
const bufSize = 64 << 10

// Options configure a Client. The zero value is usable.
type Options struct {
	// Host names the remote in error messages.
	Host string
	// Log, if set, receives each build-log line as it arrives (STDERR_RESULT
	// of type resBuildLogLine) and each message the daemon prints
	// (STDERR_NEXT), without the trailing newline. line is valid only
	// during the call. It is called from the goroutine that reads the
	// stream: the caller's, or during an upload a goroutine of the
	// Client's, never from two at once.
	Log func(line []byte)
	// Phase, if set, receives the build phases a builder announces
	// (STDERR_RESULT of type resSetPhase), such as "buildPhase".
	Phase func(phase string)
	// Stderr, if set, returns the last lines the remote printed on its
	// stderr (outside the protocol: the SSH session's stderr). It is called
	// when the stream ends or breaks, and its result is attached to the
	// error. It must be safe for concurrent use.
	Stderr func() string
	// Progress, if set, is called as NAR bytes are sent or received with
	// the store path, the bytes done so far for that path and its size.
	Progress func(path string, done, size uint64)
}

// Client is a worker-protocol client on one stream. Create it with New.
type Client struct {
	opts       Options
	br         *bufio.Reader
	r          *wire.Reader
	w          *wire.Writer
	peer       store.Peer
	nixVersion string
	trust      uint64 // 0 unknown, 1 trusted, 2 not trusted

	g    store.Guard
	rbuf []byte
	sbuf []byte // scratch for decoding strings
	lbuf []byte // scratch for log lines

	// Framed uploads: fw encodes into fbuf, which sink cuts into frames.
	sink *frameSink
	fbuf *bufio.Writer
	fw   *wire.Writer
}

// New performs the handshake on r (the daemon's stdout) and w (its stdin),
// reads the daemon's startup messages and returns a Client ready for
// operations.
//
// If the first bytes from r are not the worker protocol's magic number, the
// error says what was received instead: usually a shell startup file on the
// remote that prints to stdout.
func New(r io.Reader, w io.Writer, opts Options) (*Client, error) {
	c := &Client{
		opts: opts,
		peer: store.Peer{Proto: "daemon", Host: opts.Host, Stderr: opts.Stderr},
		br:   bufio.NewReaderSize(r, bufSize),
		w:    wire.NewWriter(w),
	}
	c.r = wire.NewReader(c.br)
	if err := c.handshake(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) handshake() error {
	const op = "handshake"
	// The daemon reads the version after answering the magic.
	hello := store.Hello{Magic1: magic1, Magic2: magic2, Version: ClientVersion, Program: "nix-daemon --stdio"}
	v, err := hello.Exchange(c.br, c.w, &c.peer)
	if err != nil {
		return err
	}
	if v>>8 != 1 || v < MinDaemonVersion {
		return fmt.Errorf("daemon: %sunsupported Nix daemon protocol version %s (need 1.x, at least %s, Nix 2.0)",
			c.peer.On(), store.VersionString(v), store.VersionString(MinDaemonVersion))
	}
	c.peer.Negotiate(v, ClientVersion)
	// Obsolete CPU affinity (≥1.14) and reserveSpace (≥1.11); every
	// accepted daemon has both.
	c.w.Uint64(0)
	c.w.Uint64(0)
	if err := c.w.Flush(); err != nil {
		return c.peer.IOErr(op, "", err)
	}
	if c.peer.Version >= 1<<8|33 {
		d := newDecoder(c.r, &c.sbuf)
		if c.nixVersion, err = d.String("Nix version", maxShort); err != nil {
			return c.peer.IOErr(op, "", wire.NoEOF(err))
		}
	}
	if c.peer.Version >= 1<<8|35 {
		if c.trust, err = c.r.Uint64(); err != nil {
			return c.peer.IOErr(op, "", wire.NoEOF(err))
		}
		if c.trust > 2 {
			return c.peer.IOErr(op, "", fmt.Errorf("invalid trust value %d", c.trust))
		}
	}
	// The daemon's startup messages, ended by LAST; an ERROR here is the
	// daemon refusing the connection (Lix: "the Nix client version is too
	// old").
	if err := c.processStderr(op, ""); err != nil {
		return err
	}
	return nil
}

// Version returns the negotiated protocol version, as a version word
// (major<<8 | minor).
func (c *Client) Version() uint64 { return c.peer.Version }

// DaemonVersion returns the version word the daemon announced.
func (c *Client) DaemonVersion() uint64 { return c.peer.Server }

// NixVersion returns the Nix version the daemon reported, such as "2.8.0",
// or "" if it is older than protocol 1.33.
func (c *Client) NixVersion() string { return c.nixVersion }

// Trusted reports what the daemon said about the connecting user at the
// handshake (protocol 1.35, Nix 2.15 and later): whether it knows, and if
// so whether the user is trusted (root, or in the builder's
// trusted-users). Older daemons do not say; `nix-daemon --stdio` of a user
// who opens the store directly (root or its owner) is trusted in every
// version.
func (c *Client) Trusted() (known, trusted bool) {
	return c.trust != 0, c.trust == 1
}

// ErrBroken is wrapped by the error a Client returns for every operation
// after the stream has failed.
var ErrBroken = errors.New("daemon: connection unusable after an earlier error")

// do runs op as one operation (store.Guard.Do). Errors the daemon
// reported, and errors found before anything was sent, leave the stream
// in step; any other error of op leaves the Client unusable.
func (c *Client) do(op func() error) error { return c.g.Do(ErrBroken, isRemote, op) }

// run is do for an operation that returns a value.
func run[T any](c *Client, op func() (T, error)) (T, error) {
	return store.Run(&c.g, ErrBroken, isRemote, op)
}

func isRemote(err error) bool {
	var r *RemoteError
	return errors.As(err, &r) && !r.fatal
}
