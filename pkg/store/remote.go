// SPDX-License-Identifier: MIT

package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/offload-nix/offload/pkg/wire"
)

// Hello is how a client of a store protocol opens its stream; the serve
// and worker protocols differ only in the numbers (Nix 2.8
// legacy-ssh-store.cc openConnection and remote-store.cc initConnection;
// current serve-protocol-connection.cc and worker-protocol-connection.cc,
// BasicClientConnection::handshake).
type Hello struct {
	// Magic1 is the client's magic number, Magic2 the server's answer.
	Magic1, Magic2 uint64
	// Version is the protocol version the client claims.
	Version uint64
	// Program names what should answer ("nix-store --serve").
	Program string
}

// Exchange sends the magic number and the version in one write, as Nix
// clients send them, then reads the server's magic number and returns the
// version word that follows it. A failure of the stream is returned as
// p's IOErr of "handshake"; bytes other than the magic number as a
// ShellNoiseError.
func (h Hello) Exchange(br *bufio.Reader, w *wire.Writer, p *Peer) (uint64, error) {
	h.Send(w)
	if err := w.Flush(); err != nil {
		return 0, p.IOErr("handshake", "", err)
	}
	return h.Answer(br, p)
}

// Send buffers the magic number and the version in w, for a client that
// sends its first commands before the server answers.
func (h Hello) Send(w *wire.Writer) {
	w.Uint64(h.Magic1)
	w.Uint64(h.Version)
}

// Answer reads the server's answer to Send: its magic number, and returns
// the version word that follows it. Errors are Exchange's.
func (h Hello) Answer(br *bufio.Reader, p *Peer) (uint64, error) {
	const op = "handshake"
	var first [8]byte
	n, err := io.ReadFull(br, first[:])
	if n == 0 && err != nil {
		return 0, p.IOErr(op, "", err)
	}
	if n < len(first) || binary.LittleEndian.Uint64(first[:]) != h.Magic2 {
		return 0, ShellNoiseError(p.Prefix(), h.Program, first[:n], br)
	}
	v, err := wire.NewReader(br).Uint64()
	if err != nil {
		return 0, p.IOErr(op, "", wire.NoEOF(err))
	}
	return v, nil
}

// ShellNoiseError explains the classic breakage of a remote store: something
// on the remote (a shell startup file, usually) printed to stdout before
// the store program started, so the protocol stream begins with text
// instead of the magic number. Nix itself reports this as "protocol
// mismatch" or "serialised integer … is too large".
//
// prefix starts the message ("serve: builder: "), program names what
// should have answered ("nix-store --serve"), first holds the bytes read in
// place of the magic number, and up to 256 bytes in all are shown,
// counting what br holds already.
func ShellNoiseError(prefix, program string, first []byte, br *bufio.Reader) error {
	got := append([]byte(nil), first...)
	if more, _ := br.Peek(min(br.Buffered(), 256-len(got))); len(more) > 0 {
		got = append(got, more...)
	}
	return fmt.Errorf("%sthe remote shell printed %q on stdout before '%s' started; "+
		"nothing may print to stdout in a non-interactive session: make the login user's shell startup files "+
		"(~/.bashrc, ~/.profile, /etc/bash.bashrc, …) print only in interactive shells "+
		"(e.g. begin ~/.bashrc with `[[ $- == *i* ]] || return`) or send such output to stderr",
		prefix, got, program)
}

// TransportError wraps err, a failure of the stream during operation op
// (on path, if not empty), with prefix before it. An end of stream is
// said to be the remote closing the connection. stderr, if set, returns the
// last lines the remote printed on its stderr, which are attached.
func TransportError(prefix, op, path string, err error, stderr func() string) error {
	what := op
	if path != "" {
		what += " " + path
	}
	tail := ""
	if stderr != nil {
		if s := strings.TrimSpace(stderr()); s != "" {
			tail = "; remote stderr: " + s
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%s%s: remote closed the connection (%w)%s", prefix, what, err, tail)
	}
	return fmt.Errorf("%s%s: %w%s", prefix, what, err, tail)
}

// VersionString formats a protocol version word, major<<8 | minor, as
// "major.minor".
func VersionString(v uint64) string {
	return fmt.Sprintf("%d.%d", v>>8, v&0xff)
}

// StripANSI removes terminal escape sequences from s: Nix colours the
// names in its messages (ANSI_MAGENTA … ANSI_NORMAL, src/libutil/fmt.hh),
// and the messages a remote store sends are shown as plain text.
func StripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		// CSI: ESC [ parameters… final byte in 0x40–0x7e.
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		// Any other escape: drop ESC and the byte after it.
		i++
	}
	return b.String()
}
