// SPDX-License-Identifier: MIT

package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"

	gossh "golang.org/x/crypto/ssh"

	"github.com/offload-nix/offload/pkg/spec"
)

// RemoteCommand returns the command Nix runs on a builder: for ssh://
// "nix-store --serve --write", for ssh-ng:// (ng) "nix-daemon --stdio",
// with ?remote-program= replacing the program (a word list, as in
// current Nix) and ?remote-store= adding "--store X"
// (src/libstore/legacy-ssh-store.cc, ssh-store.cc).
func RemoteCommand(m spec.Machine, ng bool) []string {
	prog := m.Params["remote-program"]
	if prog == "" {
		prog = "nix-store"
		if ng {
			prog = "nix-daemon"
		}
	}
	argv := strings.Fields(prog)
	if ng {
		argv = append(argv, "--stdio")
	} else {
		argv = append(argv, "--serve", "--write")
	}
	if st := m.Params["remote-store"]; st != "" {
		// Nix 2.8 shell-escapes the store; its words go through
		// the remote shell.
		argv = append(argv, "--store", Quote(st))
	}
	return argv
}

// ExitError is a remote (or local) command that ended unsuccessfully.
type ExitError struct {
	Host   string
	Argv   []string
	Code   int    // exit status, -1 if killed by a signal
	Signal string // e.g. "TERM", if killed by a signal
}

func (e *ExitError) Error() string {
	cmd := strings.Join(e.Argv, " ")
	if e.Signal != "" {
		return fmt.Sprintf("ssh: %s: %q killed by signal %s", e.Host, cmd, e.Signal)
	}
	return fmt.Sprintf("ssh: %s: %q exited with status %d", e.Host, cmd, e.Code)
}

// Session is a running command.
//
// Stdout and Stderr must both be read: an SSH channel has one flow
// control window for both, so unread stderr eventually stalls stdout.
type Session struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader

	host   string
	argv   []string
	client *Client
	sess   *gossh.Session
	cmd    *exec.Cmd
	stop   func() bool
}

// Start runs argv. Over SSH the words are joined with spaces and run by
// the remote user's shell, as Nix does (current Nix does not quote
// them: quote words with Quote where needed). For a local machine the
// same string runs under /bin/sh -c (as Nix 2.8 does with bash -c).
// Cancelling ctx ends the command.
func (c *Client) Start(ctx context.Context, argv []string) (*Session, error) {
	line := strings.Join(argv, " ")
	s := &Session{host: c.settings.Host, argv: argv, client: c}
	if c.conn == nil {
		cmd := exec.Command("/bin/sh", "-c", line)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var err error
		if s.Stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if s.Stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		if s.Stderr, err = cmd.StderrPipe(); err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("ssh: %v: %w", cmd.Args, err)
		}
		s.cmd = cmd
		s.stop = context.AfterFunc(ctx, func() { s.Close() })
		return s, nil
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, c.connErr(err)
	}
	if s.Stdin, err = sess.StdinPipe(); err != nil {
		sess.Close()
		return nil, err
	}
	if s.Stdout, err = sess.StdoutPipe(); err != nil {
		sess.Close()
		return nil, err
	}
	if s.Stderr, err = sess.StderrPipe(); err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.Start(line); err != nil {
		sess.Close()
		return nil, c.connErr(fmt.Errorf("starting %q: %w", line, err))
	}
	s.sess = sess
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// connErr prefers the keepalive's reason for a closed connection.
func (c *Client) connErr(err error) error {
	if d := c.dead(); d != nil {
		return d
	}
	return &Error{Kind: Other, Host: c.settings.Host, Err: err}
}

// Wait waits for the command to end. It returns nil on exit status 0,
// an *ExitError for another status or a signal, and an *Error when the
// connection was lost.
func (s *Session) Wait() error {
	defer s.stop()
	if s.cmd != nil {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			e := &ExitError{Host: s.host, Argv: s.argv, Code: ee.ExitCode()}
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.Signal = strings.ToUpper(strings.TrimPrefix(unix(ws.Signal()), "SIG"))
			}
			return e
		}
		return err
	}
	err := s.sess.Wait()
	var ee *gossh.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		e := &ExitError{Host: s.host, Argv: s.argv, Code: ee.ExitStatus(), Signal: ee.Signal()}
		if e.Signal != "" {
			e.Code = -1
		}
		return e
	}
	return s.client.connErr(err)
}

func unix(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGINT:
		return "INT"
	}
	return sig.String()
}

// Close ends the command: it closes its stdin (Nix's serve loop ends on
// EOF) and the channel, or signals the local process group. Call Wait
// afterwards to reap it.
func (s *Session) Close() error {
	s.Stdin.Close()
	if s.cmd != nil {
		if s.cmd.Process != nil {
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		}
		return nil
	}
	err := s.sess.Close()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// NoiseError means a remote command's output did not start with the
// protocol's greeting, typically because the remote shell's startup
// files printed something first.
type NoiseError struct {
	Host string
	Got  []byte
}

func (e *NoiseError) Error() string {
	return fmt.Sprintf("ssh: %s: the remote command's output starts with %q instead of the protocol greeting: the builder's shell startup files (~/.bashrc, /etc/bashrc, ~/.profile …) print to stdout for non-interactive logins; make them silent unless interactive (e.g. `[[ $- == *i* ]] || return` at the top of ~/.bashrc). Nix shows this as \"serialised integer … is too big\" or \"protocol mismatch\"", e.Host, e.Got)
}

// ExpectGreeting reads len(want) bytes from r (a session's Stdout) and
// returns a *NoiseError if they differ from want. The serve and daemon
// protocol clients call it for the server's magic number.
func ExpectGreeting(host string, r io.Reader, want []byte) error {
	got := make([]byte, len(want))
	n, err := io.ReadFull(r, got)
	if bytes.Equal(got[:n], want) && err == nil {
		return nil
	}
	if n == 0 && err != nil {
		return fmt.Errorf("ssh: %s: reading the protocol greeting: %w", host, err)
	}
	if !bytes.Equal(got[:n], want[:n]) {
		return &NoiseError{Host: host, Got: got[:n]}
	}
	return fmt.Errorf("ssh: %s: reading the protocol greeting: %w", host, err)
}
