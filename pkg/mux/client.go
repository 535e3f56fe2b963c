// SPDX-License-Identifier: MIT

package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoServer is returned, wrapped, by Start when no Server listens on the
// socket: the caller connects by itself (or starts a Server).
var ErrNoServer = errors.New("mux: no server")

// Session is a command running through a Server.
type Session struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader

	c       *net.UnixConn
	stdout  *os.File
	stderr  *os.File
	once    sync.Once
	waitErr error
	exit    Exit
	done    chan struct{}
}

// Start asks the Server on socket to run argv on target, and returns once
// the command runs (or ctx is done: the request is then abandoned, which
// ends it). An error from the Server is an *Error; a missing or dead
// Server gives an error wrapping ErrNoServer.
//
// Nothing is sent unless the socket's directory is the user's own, not
// a symbolic link, with mode 0700, and the listening process runs as the
// user: else the error wraps both ErrNoServer and ErrUntrusted.
func Start(ctx context.Context, socket, target string, argv []string) (*Session, error) {
	c, err := dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	// Pipes with a larger buffer than the default 64 KiB, so a big copy
	// wakes each side less often.
	inR, inW, err := os.Pipe()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("mux: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		c.Close()
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("mux: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		c.Close()
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return nil, fmt.Errorf("mux: %w", err)
	}
	for _, f := range []*os.File{inW, outR} {
		unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20) // best effort
	}
	req := encodeRequest(target, argv)
	rights := unix.UnixRights(int(inR.Fd()), int(outW.Fd()), int(errW.Fd()))
	_, _, err = c.WriteMsgUnix(req, rights, nil)
	// The Server has its own copies now.
	inR.Close()
	outW.Close()
	errW.Close()
	s := &Session{Stdin: inW, Stdout: outR, Stderr: errR, c: c, stdout: outR, stderr: errR, done: make(chan struct{})}
	if err != nil {
		s.closeAll()
		return nil, fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	kind, body, err := readReply(c)
	stop()
	c.SetReadDeadline(time.Time{})
	if err == nil && kind != replyStarted {
		err = replyError(kind, body)
	} else if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w: %v", ErrNoServer, err)
		}
	}
	if err != nil {
		s.closeAll()
		return nil, err
	}
	go s.wait()
	return s, nil
}

// dial connects to the Server on socket, if it is to be trusted.
func dial(ctx context.Context, socket string) (*net.UnixConn, error) {
	dir := filepath.Dir(socket)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	if err := checkDir(dir, false); err != nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrNoServer, ErrUntrusted, err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	c := nc.(*net.UnixConn)
	if uid, err := peerUID(c); err != nil || uid != os.Getuid() {
		c.Close()
		if err == nil {
			err = fmt.Errorf("%s is served by uid %d, not %d", socket, uid, os.Getuid())
		}
		return nil, fmt.Errorf("%w: %w: %v", ErrNoServer, ErrUntrusted, err)
	}
	return c, nil
}

// Status is what a Server holds for one target.
type Status struct {
	Target string
	// Connections open, sessions running on them for clients, and
	// commands started ahead (Server.Ready).
	Connections, Sessions, Ready int
}

// Query returns what the Server on socket holds, one Status per target.
// Errors are as Start's.
func Query(ctx context.Context, socket string) ([]Status, error) {
	body, err := control(ctx, socket, controlStatus)
	if err != nil {
		return nil, err
	}
	var sts []Status
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		var st Status
		if _, err := fmt.Sscanf(line, "%d %d %d", &st.Connections, &st.Sessions, &st.Ready); err != nil {
			continue
		}
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			st.Target = f[3]
		}
		sts = append(sts, st)
	}
	return sts, nil
}

// Stop makes the Server on socket stop accepting; the sessions it runs
// go on to their end, and it exits then. Errors are as Start's.
func Stop(ctx context.Context, socket string) error {
	_, err := control(ctx, socket, controlStop)
	return err
}

func control(ctx context.Context, socket, what string) (string, error) {
	c, err := dial(ctx, socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })()
	if _, err := c.Write(encodeRequest("", []string{what})); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	kind, body, err := readReply(c)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoServer, err)
	}
	if kind != replyInfo {
		return "", replyError(kind, body)
	}
	r := &reader{b: body}
	return r.str(), r.err
}

func replyError(kind byte, body []byte) error {
	r := &reader{b: body}
	switch kind {
	case replyRefused:
		code := r.u32()
		return &Error{Code: code, Msg: r.str()}
	case replyLost:
		code := r.u32()
		return &Error{Code: code, Msg: r.str(), Lost: true}
	}
	return fmt.Errorf("mux: unexpected reply %q", kind)
}

func (s *Session) wait() {
	defer close(s.done)
	kind, body, err := readReply(s.c)
	switch {
	case err != nil:
		s.waitErr = &Error{Msg: fmt.Sprintf("mux: the server went away: %v", err), Lost: true}
	case kind == replyExit:
		r := &reader{b: body}
		s.exit.Code = int(int32(r.u32()))
		s.exit.Signal = r.str()
	default:
		s.waitErr = replyError(kind, body)
	}
}

// Lost returns the Server's report of a broken connection, waiting at
// most d for it (it follows the end of the command's output closely);
// nil when none came.
func (s *Session) Lost(d time.Duration) *Error {
	select {
	case <-s.done:
	case <-time.After(d):
		return nil
	}
	var e *Error
	if errors.As(s.waitErr, &e) && e.Lost {
		return e
	}
	return nil
}

// Wait waits for the command to end and returns its exit, or an error
// when the connection broke or the session was closed.
func (s *Session) Wait() (Exit, error) {
	<-s.done
	return s.exit, s.waitErr
}

// Close ends the session: the Server ends the remote command if it still
// runs. Reads of Stdout and Stderr return EOF once the Server has closed
// its ends.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.Stdin.Close()
		s.c.CloseWrite()
		s.c.Close()
	})
	return nil
}

func (s *Session) closeAll() {
	s.Close()
	s.stdout.Close()
	s.stderr.Close()
}

// Release closes the read ends of Stdout and Stderr, after Wait.
func (s *Session) Release() {
	s.stdout.Close()
	s.stderr.Close()
}

// ErrUntrusted is returned, wrapped together with ErrNoServer, by Start
// when the socket's directory or the listening process is not the
// user's own.
var ErrUntrusted = errors.New("mux: untrusted server")
