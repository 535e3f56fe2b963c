// SPDX-License-Identifier: MIT

package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Messages the daemon sends while an operation runs (worker-protocol.hh,
// STDERR_*; read by RemoteStore's processStderr).
const (
	stderrNext          = 0x6f6c6d67
	stderrRead          = 0x64617461
	stderrWrite         = 0x64617416
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// Result types whose fields the client passes on (logging.hh ResultType).
const (
	resBuildLogLine = 101
	resSetPhase     = 104
)

// Field kinds in activities and results (Logger::Field).
const (
	fieldInt    = 0
	fieldString = 1
)

// ErrNotTrusted is matched (with errors.Is) by the *RemoteError of an
// operation the daemon refused because the connecting user is not trusted
// on the builder: an upload of unsigned paths ("lacks a valid signature"),
// or a build of an input-addressed derivation.
var ErrNotTrusted = errors.New("daemon: the SSH user on the builder is not trusted")

// RemoteError is a failure the daemon reported (STDERR_ERROR). Unless the
// daemon exited with it, the stream stays in step and the Client can go
// on.
type RemoteError struct {
	Host string // Options.Host
	Op   string // the operation, such as "AddMultipleToStore"
	Path string // the store path it was about, if any
	// Msg is the daemon's message, without terminal colour codes.
	Msg string
	// Traces are the daemon's error traces, outermost last, as Nix
	// prints them after the message.
	Traces []string
	// Status is the exit status the daemon attached, for daemons before
	// protocol 1.26; 0 otherwise.
	Status uint64

	fatal bool // the daemon exits after it
}

func (e *RemoteError) Error() string {
	var b strings.Builder
	b.WriteString("daemon: ")
	if e.Host != "" {
		b.WriteString(e.Host + ": ")
	}
	b.WriteString(e.Op)
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	for _, t := range e.Traces {
		b.WriteString("\n… " + t)
	}
	if h := e.Hint(); h != "" {
		b.WriteString("; " + h)
	}
	return b.String()
}

// Unwrap returns ErrNotTrusted if the daemon refused the operation because
// the user is not trusted.
func (e *RemoteError) Unwrap() error {
	if e.notTrusted() != "" {
		return ErrNotTrusted
	}
	return nil
}

// Hint says how to fix the builder's configuration, for errors that
// match ErrNotTrusted; "" otherwise.
func (e *RemoteError) Hint() string {
	switch e.notTrusted() {
	case "sigs":
		return "the SSH user on the builder is not trusted: add it to trusted-users there, or set require-sigs = false"
	case "build":
		return "the SSH user on the builder is not trusted: add it to trusted-users there"
	}
	return ""
}

func (e *RemoteError) notTrusted() string {
	switch {
	case strings.Contains(e.Msg, "lacks a valid signature"), // Nix ≤2.x LocalStore::addToStore
		strings.Contains(e.Msg, "lacks a signature by a trusted key"): // current Nix
		return "sigs"
	case strings.Contains(e.Msg, "not privileged to build input-addressed derivations"),
		strings.Contains(e.Msg, "you are not in 'trusted-users'"):
		return "build"
	}
	return ""
}

// processStderr reads the daemon's messages until STDERR_LAST, passing log
// lines and phases on. An ERROR from the daemon comes back as a
// *RemoteError; anything else that goes wrong is a transport or protocol
// error.
func (c *Client) processStderr(op, path string) error {
	return c.processStderrFrom(op, path, nil)
}

// processStderrFrom is processStderr for operations during which the
// daemon may pull data with STDERR_READ (AddToStoreNar at 1.21 and 1.22):
// src supplies it.
func (c *Client) processStderrFrom(op, path string, src io.Reader) error {
	for {
		msg, err := c.r.Uint64()
		if err != nil {
			return c.peer.IOErr(op, path, wire.NoEOF(err))
		}
		if msg == stderrLast {
			return nil
		}
		if err := c.message(msg, src); err != nil {
			var re *RemoteError
			if errors.As(err, &re) {
				re.Host, re.Op, re.Path = c.peer.Host, op, path
				return re
			}
			return c.peer.IOErr(op, path, wire.NoEOF(err))
		}
	}
}

// message decodes one message other than LAST.
func (c *Client) message(msg uint64, src io.Reader) error {
	d := newDecoder(c.r, &c.sbuf)
	switch msg {
	case stderrNext:
		line, err := d.Bytes("log message", maxLogLine)
		if err != nil {
			return err
		}
		c.logLine(line)
		return nil
	case stderrError:
		return readError(d, c.peer.Version)
	case stderrStartActivity:
		// id, level, type, text, fields, parent
		for range 3 {
			if _, err := d.Uint64(); err != nil {
				return err
			}
		}
		if _, err := d.Bytes("activity text", maxLogLine); err != nil {
			return err
		}
		if err := c.fields(d, 0); err != nil {
			return err
		}
		_, err := d.Uint64()
		return err
	case stderrStopActivity:
		_, err := d.Uint64()
		return err
	case stderrResult:
		if _, err := d.Uint64(); err != nil { // activity id
			return err
		}
		typ, err := d.Uint64()
		if err != nil {
			return err
		}
		return c.fields(d, typ)
	case stderrRead:
		n, err := d.Uint64()
		if err != nil {
			return err
		}
		if src == nil {
			return fmt.Errorf("daemon asked for data (STDERR_READ) outside an upload")
		}
		return c.answerRead(src, n)
	case stderrWrite:
		// Data for a sink of the obsolete export operations, which the
		// client never asks for.
		_, err := d.Bytes("data", bufSize)
		return err
	}
	return fmt.Errorf("unknown message type %#x from the daemon", msg)
}

// fields reads the fields of an activity or a result of type typ, passing
// the text of build-log lines and phases on.
func (c *Client) fields(d *wire.Decoder, typ uint64) error {
	n, err := d.Count("fields", maxFields)
	if err != nil {
		return err
	}
	for i := range n {
		kind, err := d.Uint64()
		if err != nil {
			return wire.NoEOF(err)
		}
		switch kind {
		case fieldInt:
			if _, err := d.Uint64(); err != nil {
				return wire.NoEOF(err)
			}
		case fieldString:
			if i == 0 && (typ == resBuildLogLine || typ == resSetPhase) {
				// Read into the log buffer, so it survives later
				// fields.
				b, err := newDecoder(c.r, &c.lbuf).Bytes("log line", maxLogLine)
				if err != nil {
					return wire.NoEOF(err)
				}
				if typ == resBuildLogLine {
					defer c.logLine(b)
				} else if c.opts.Phase != nil {
					defer c.opts.Phase(string(b))
				}
				continue
			}
			if _, err := d.Bytes("field", maxLogLine); err != nil {
				return wire.NoEOF(err)
			}
		default:
			return fmt.Errorf("unknown field type %d", kind)
		}
	}
	return nil
}

func (c *Client) logLine(b []byte) {
	if c.opts.Log != nil {
		c.opts.Log(bytes.TrimSuffix(b, []byte("\n")))
	}
}

// answerRead sends up to n bytes of src, as the daemon asked.
func (c *Client) answerRead(src io.Reader, n uint64) error {
	if c.rbuf == nil {
		c.rbuf = make([]byte, bufSize)
	}
	buf := c.rbuf[:min(n, uint64(len(c.rbuf)))]
	k, err := io.ReadFull(src, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("reading the data to send: %w", err)
	}
	c.w.Bytes(buf[:k])
	return c.w.Flush()
}

// readError decodes the payload of STDERR_ERROR: at 1.26 and later the
// Error struct (serialise.cc operator<<(Sink&, const Error&)), before that
// a message and an exit status.
func readError(d *wire.Decoder, version uint64) error {
	e := &RemoteError{}
	if version < 1<<8|26 {
		msg, err := d.String("error message", maxErrorMsg)
		if err != nil {
			return wire.NoEOF(err)
		}
		e.Msg = cleanMsg(msg)
		if e.Status, err = d.Uint64(); err != nil {
			return wire.NoEOF(err)
		}
		return e
	}
	typ, err := d.Bytes("error type", maxShort)
	if err != nil {
		return wire.NoEOF(err)
	}
	if string(typ) != "Error" {
		return fmt.Errorf("error of type %q, want \"Error\"", typ)
	}
	if _, err := d.Uint64(); err != nil { // level
		return wire.NoEOF(err)
	}
	if _, err := d.Bytes("error name", maxShort); err != nil { // unused
		return wire.NoEOF(err)
	}
	msg, err := d.String("error message", maxErrorMsg)
	if err != nil {
		return wire.NoEOF(err)
	}
	e.Msg = cleanMsg(msg)
	if err := expectNoPos(d); err != nil {
		return err
	}
	n, err := d.Count("error traces", maxTraces)
	if err != nil {
		return wire.NoEOF(err)
	}
	for range n {
		if err := expectNoPos(d); err != nil {
			return err
		}
		t, err := d.String("error trace", maxTrace)
		if err != nil {
			return wire.NoEOF(err)
		}
		e.Traces = append(e.Traces, cleanMsg(t))
	}
	return e
}

// expectNoPos reads the havePos word of an error or a trace, which Nix
// always sends as 0.
func expectNoPos(d *wire.Decoder) error {
	p, err := d.Uint64()
	if err != nil {
		return wire.NoEOF(err)
	}
	if p != 0 {
		return fmt.Errorf("error with a position (%d), which daemons never send", p)
	}
	return nil
}

func cleanMsg(s string) string {
	return strings.TrimRight(store.StripANSI(s), "\n")
}
