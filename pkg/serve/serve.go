// SPDX-License-Identifier: MIT

// Package serve is a client for Nix's serve protocol, which `nix-store
// --serve` speaks on its stdin and stdout and which Nix uses for `ssh://`
// builders (Nix 2.8 src/nix-store/nix-store.cc opServe and
// src/libstore/legacy-ssh-store.cc; docs/internals.md).
//
// The client speaks over a reader and a writer it is given: the stdout and
// stdin of a remote SSH session, or the pipes of a local `nix-store --serve`
// process. It never opens connections itself.
//
// # Versions
//
// The client claims protocol 2.7 (0x207), the highest version every builder
// from Nix 2.4 to 2.34 and Lix understands, and gates every field on the
// negotiated version min(0x207, server). Servers older than 2.5 are refused,
// as current Nix refuses them.
//
// # Errors
//
// The protocol has no error frame: when a command fails, the remote prints
// "error: …" on its stderr and exits, and the client sees EOF. Options.Stderr
// lets the caller attach the tail of the remote's stderr to such errors.
// After any transport or protocol error the stream is out of step, so the
// Client refuses further commands; close the transport.
//
// # Limits
//
// Every length read from the wire is capped, and each reply has a total
// budget, so a hostile server cannot make the client allocate without
// bound. NAR bytes are streamed through fixed buffers and never held in
// memory.
//
// A Client runs one command at a time; concurrent calls wait for each other.
// AddToStoreNars pipelines its uploads internally.
package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Protocol constants (serve-protocol.hh: SERVE_MAGIC_1, SERVE_MAGIC_2).
const (
	magic1 = 0x390c9deb // client → server
	magic2 = 0x5452eecb // server → client

	// ClientVersion is the protocol version the client claims: 2.7.
	ClientVersion = 0x207
	// MinServerVersion is the oldest server version the client accepts.
	MinServerVersion = 0x205
)

// Serve commands (serve-protocol.hh: ServeCommand in Nix 2.8,
// ServeProto::Command now).
const (
	cmdQueryValidPaths = 1
	cmdQueryPathInfos  = 2
	cmdDumpStorePath   = 3
	cmdBuildDerivation = 8
	cmdQueryClosure    = 7
	cmdAddToStoreNar   = 9
)

// bufSize is the size of the read and write buffers and of the buffers NAR
// bytes are copied through.
const bufSize = 64 << 10

// Options configure a Client. The zero value is usable.
type Options struct {
	// Host names the remote in error messages.
	Host string
	// Stderr, if set, returns the last lines the remote printed on its
	// stderr. It is called when the stream ends or breaks, and its result
	// is attached to the error. Because the remote's stderr and stdout are
	// separate streams, an implementation should wait briefly for the
	// stderr stream to reach EOF before answering. It must be safe for
	// concurrent use: AddToStoreNars may call it from two goroutines.
	Stderr func() string
	// Progress, if set, is called as NAR bytes are sent or received with
	// the store path, the bytes done so far for that path and its size.
	// It is called from the goroutine of the method that moves the bytes.
	Progress func(path string, done, size uint64)
}

// Client is a serve-protocol client on one stream. Create it with New.
type Client struct {
	opts Options
	br   *bufio.Reader
	r    *wire.Reader
	w    *wire.Writer
	peer store.Peer

	g    store.Guard
	rbuf []byte
	wbuf []byte
	sbuf []byte // scratch for decoding strings
}

// New performs the handshake on r (the server's stdout) and w (its stdin)
// and returns a Client ready for commands.
//
// If the first bytes from r are not the serve protocol's magic number, the
// error says what was received instead: usually a shell startup file on the
// remote that prints to stdout.
func New(r io.Reader, w io.Writer, opts Options) (*Client, error) {
	c := newClient(r, w, opts)
	v, err := hello.Exchange(c.br, c.w, &c.peer)
	if err == nil {
		err = c.accept(v)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

var hello = store.Hello{Magic1: magic1, Magic2: magic2, Version: ClientVersion, Program: "nix-store --serve"}

func newClient(r io.Reader, w io.Writer, opts Options) *Client {
	c := &Client{
		opts: opts,
		peer: store.Peer{Proto: "serve", Host: opts.Host, Stderr: opts.Stderr},
		br:   bufio.NewReaderSize(r, bufSize),
		w:    wire.NewWriter(w),
		rbuf: make([]byte, bufSize),
		wbuf: make([]byte, bufSize),
	}
	c.r = wire.NewReader(c.br)
	return c
}

// accept takes the version v the server announced, or refuses it.
func (c *Client) accept(v uint64) error {
	if v>>8 != 2 || v < MinServerVersion {
		return fmt.Errorf("serve: %sunsupported 'nix-store --serve' protocol version %s (need 2.x, at least %s)",
			c.peer.On(), store.VersionString(v), store.VersionString(MinServerVersion))
	}
	c.peer.Negotiate(v, ClientVersion)
	return nil
}

// Version returns the negotiated protocol version, as a version word
// (major<<8 | minor).
func (c *Client) Version() uint64 { return c.peer.Version }

// ServerVersion returns the version word the server announced.
func (c *Client) ServerVersion() uint64 { return c.peer.Server }

// ErrBroken is wrapped by the error a Client returns for every command after
// the stream has failed.
var ErrBroken = errors.New("serve: connection unusable after an earlier error")

// do runs op as one command (store.Guard.Do): any error of op but one
// found before anything was sent leaves the Client unusable.
func (c *Client) do(op func() error) error { return c.g.Do(ErrBroken, nil, op) }

// run is do for a command that returns a value.
func run[T any](c *Client, op func() (T, error)) (T, error) {
	return store.Run(&c.g, ErrBroken, nil, op)
}
