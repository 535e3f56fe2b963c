// SPDX-License-Identifier: MIT

// Package mux lets short-lived processes share long-lived connections: a
// Server holds warm connections to remote machines and runs commands on
// them for clients that reach it over a unix socket, as OpenSSH's
// ControlMaster does for ssh.
//
// A client sends one request per command: a target (an opaque string the
// Server's Dial understands), the command's words, and three file
// descriptors (SCM_RIGHTS) that become the command's standard input,
// output and error. The Server copies between them and the remote command
// directly, so data does not pass through the client's socket, and it
// answers on the socket when the command has started and when it has
// ended. When the client's socket closes before the command ends (the
// client died), the Server ends the remote command at once, as a dropped
// direct connection would.
//
// A Server can also keep commands started ahead of their clients
// (Server.Ready), each handed to one client only and replaced in the
// background, and it answers two control requests: Query (what it holds)
// and Stop.
//
// The socket carries the power of the user's credentials: Listen makes it
// mode 0600 in a directory of mode 0700 owned by the user, and the Server
// checks every peer's uid (SO_PEERCRED) and serves no other. A Server
// exits by itself after it has been idle for a while.
package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Protocol constants. A request is one message with three file
// descriptors: u32 length, then u32 version, string target, u32 count and
// that many strings (each u32 length and bytes). Replies are one byte of
// kind and a body.
const (
	version    = 1
	maxRequest = 64 << 10

	replyStarted byte = 'S' // the command runs
	replyRefused byte = 'R' // u32 code, string: it could not start
	replyExit    byte = 'X' // i32 code, string signal: it ended
	replyLost    byte = 'L' // u32 code, string: the connection broke while it ran
	replyInfo    byte = 'I' // string: the answer to a control request
)

// Control requests have an empty target and one word, with no file
// descriptors.
const (
	controlStatus = "status" // the answer: one line per target (Status)
	controlStop   = "stop"   // stop accepting; sessions run to their end
)

// Exit is how a remote command ended: its exit code, or the signal that
// killed it (then Code is -1).
type Exit struct {
	Code   int
	Signal string
}

// Error is an error the Server met on the client's behalf: Code is what
// the Server's Dial or Remote reported (see CodeOf), for the client to
// tell kinds of failure apart.
type Error struct {
	Code uint32
	Msg  string
	// Lost is true when the connection broke while the command ran
	// (Code then says why, when the Remote knew).
	Lost bool
}

func (e *Error) Error() string { return e.Msg }

// Coder is implemented by errors that carry a code for Error.Code.
type Coder interface{ MuxCode() uint32 }

// CodeOf returns the code of err if some error in its chain implements
// Coder, or 0.
func CodeOf(err error) uint32 {
	var c Coder
	if errors.As(err, &c) {
		return c.MuxCode()
	}
	return 0
}

func putString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// reader decodes the fields of a message.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 4 {
		r.err = io.ErrUnexpectedEOF
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) str() string {
	n := r.u32()
	if r.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = io.ErrUnexpectedEOF
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func encodeRequest(target string, argv []string) []byte {
	b := make([]byte, 4, 64+len(target))
	b = binary.BigEndian.AppendUint32(b, version)
	b = putString(b, target)
	b = binary.BigEndian.AppendUint32(b, uint32(len(argv)))
	for _, a := range argv {
		b = putString(b, a)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func decodeRequest(b []byte) (target string, argv []string, err error) {
	r := &reader{b: b}
	if v := r.u32(); r.err == nil && v != version {
		return "", nil, fmt.Errorf("mux: request version %d, want %d", v, version)
	}
	target = r.str()
	n := r.u32()
	if r.err == nil && n > 4096 {
		return "", nil, fmt.Errorf("mux: %d words in a command", n)
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		argv = append(argv, r.str())
	}
	if r.err != nil {
		return "", nil, fmt.Errorf("mux: bad request: %w", r.err)
	}
	return target, argv, nil
}

// readReply reads one reply.
func readReply(rd io.Reader) (kind byte, body []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxRequest {
		return 0, nil, fmt.Errorf("mux: reply of %d bytes", n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return 0, nil, io.ErrUnexpectedEOF
	}
	return hdr[0], body, nil
}

func reply(kind byte, body []byte) []byte {
	b := make([]byte, 0, 5+len(body))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}
