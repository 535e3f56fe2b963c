// SPDX-License-Identifier: MIT

package store

import (
	"errors"
	"fmt"
	"io"

	"github.com/offload-nix/offload/pkg/wire"
)

// Peer is the other end of a store-protocol client's stream as the client
// knows it: how its errors name it, where the remote's stderr is, and the
// versions the handshake settled. Packages serve and daemon keep one in
// their Client.
type Peer struct {
	// Proto is the client's package, which starts its error messages
	// ("serve").
	Proto string
	// Host names the remote in error messages; it may be empty.
	Host string
	// Stderr, if set, returns the last lines the remote printed on its
	// stderr, which transport errors carry (see TransportError).
	Stderr func() string
	// Server is the version word the server announced, and Version the
	// negotiated one: the lower of Server and the client's.
	Server, Version uint64
}

// Negotiate records the server's version word v, and the lower of it and
// client, the version the client speaks.
func (p *Peer) Negotiate(v, client uint64) {
	p.Server, p.Version = v, min(v, client)
}

// On returns "host: ", to follow the package's name in error messages, or
// "" if there is no host.
func (p *Peer) On() string {
	if p.Host == "" {
		return ""
	}
	return p.Host + ": "
}

// Prefix returns what starts the client's error messages: "serve: host: ".
func (p *Peer) Prefix() string { return p.Proto + ": " + p.On() }

// IOErr wraps a transport or protocol error of op (on path, if any) and
// attaches the remote's stderr (TransportError).
func (p *Peer) IOErr(op, path string, err error) error {
	return TransportError(p.Prefix(), op, path, err, p.Stderr)
}

// CheckNARSize refuses a narSize of 0 for a NAR about to be asked for: no
// NAR is empty, and sending the request would leave its bytes unread. The
// error is Local.
func (p *Peer) CheckNARSize(op, path string, narSize uint64) error {
	if narSize == 0 {
		return Local(fmt.Errorf("%s%s %s: narSize is 0", p.Prefix(), op, path))
	}
	return nil
}

// CopyNAR copies exactly narSize bytes, the NAR of path that op asked for,
// from r into w through buf, reporting the bytes done to progress, if set.
// A failure of w is said to be one; a stream that ends early gives an
// error wrapping io.ErrUnexpectedEOF.
func (p *Peer) CopyNAR(op, path string, w io.Writer, r io.Reader, narSize uint64, buf []byte, progress func(path string, done, size uint64)) error {
	done, err := wire.CopyRaw(w, r, narSize, buf, func(done uint64) {
		if progress != nil {
			progress(path, done, narSize)
		}
	})
	var we *wire.WriteError
	if errors.As(err, &we) {
		return fmt.Errorf("%s%s %s: writing NAR: %w", p.Prefix(), op, path, we.Err)
	}
	if err != nil {
		return p.IOErr(op, path, fmt.Errorf("NAR ended after %d of %d bytes: %w", done, narSize, err))
	}
	return nil
}
