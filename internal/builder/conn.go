// SPDX-License-Identifier: MIT

package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/mux"
	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
	"github.com/offload-nix/offload/pkg/store"
)

// Remote is a builder's store as a build needs it: the serve protocol
// (ssh://, *serve.Client) or the daemon protocol (ssh-ng://, see ng.go).
type Remote interface {
	QueryValidPaths(paths []string, lock, substitute bool) ([]string, error)
	QueryPathInfos(paths []string) ([]store.PathInfo, error)
	AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error
	BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error)
	DumpStorePath(path string, w io.Writer, narSize uint64) error
}

// Options are what Dial needs besides the machine.
type Options struct {
	// ConnectTimeout bounds the dial and, again, the handshake (0:
	// ssh.DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// Getenv is the environment pkg/ssh reads (NIX_SSHOPTS,
	// SSH_AUTH_SOCK, HOME …); nil: os.Getenv.
	Getenv func(string) string
	// Logf takes warnings (a key file others can read, a relay that is
	// not to be trusted); Debugf takes why the relay was not used, one
	// line per connection. Nil: dropped.
	Logf, Debugf func(format string, args ...any)
	// Relay is the connection relay's directory (RelayDir), "" to dial
	// directly; Persist is how long a relay started for it stays idle.
	Relay   string
	Persist time.Duration
	// Substitute lets an ssh-ng:// builder substitute what it lacks
	// (builders-use-substitutes).
	Substitute bool
	// AllowUntrusted keeps a connection to an ssh-ng:// builder whose
	// nix-daemon does not trust the SSH user, for a caller that reports
	// it (Trusted); otherwise Dial fails, as every build there would.
	AllowUntrusted bool
}

func (o *Options) timeout() time.Duration {
	if o.ConnectTimeout > 0 {
		return o.ConnectTimeout
	}
	return ssh.DefaultConnectTimeout
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func (o *Options) debugf(format string, args ...any) {
	if o.Debugf != nil {
		o.Debugf(format, args...)
	}
}

// Conn is a connection to a builder with its store protocol running:
// client and sess for a connection of its own, rs (with relaySock and
// target, to start more commands) for one through the relay.
type Conn struct {
	Machine *spec.Machine
	Store   Remote
	// Tail is the builder's stderr (ssh://) or the build's log lines
	// (ssh-ng://); it reaches a sink only once one is set (after accept).
	Tail *Tail
	// Prog follows the bytes on the store protocol's streams and the
	// builder's stderr, for a stall watch (nil: none).
	Prog *Progress
	// ConnectTime is the SSH connection (TCP, key exchange,
	// authentication; 0 through the relay), HandshakeTime the store
	// protocol's start after it.
	ConnectTime, HandshakeTime time.Duration

	version           uint64
	trustKnown, trust bool
	started           time.Time // when the store command started
	side              sideStreams

	client *ssh.Client
	sess   *ssh.Session

	rs        *mux.Session
	relaySock string
	target    string
	unhook    func() bool // stops closing rs when the dial's ctx ends
}

// NewConn is a connection over a store protocol that is already running,
// for tests of what uses a Conn.
func NewConn(m *spec.Machine, store Remote, prog *Progress) *Conn {
	return &Conn{Machine: m, Store: store, Prog: prog}
}

// Close ends the session and the connection, and waits for them.
func (c *Conn) Close() {
	switch {
	case c.rs != nil:
		if c.unhook != nil {
			c.unhook()
		}
		c.rs.Close()
		c.rs.Wait()
		c.Tail.Wait()
		c.rs.Release()
	case c.sess != nil:
		c.sess.Close()
		c.sess.Wait()
		c.Tail.Wait()
		c.client.Close()
	}
}

// End closes the store protocol's session, and the commands beside it,
// without waiting: whatever waits on the builder returns. Close still has
// to be called.
func (c *Conn) End() {
	c.side.close()
	switch {
	case c.rs != nil:
		c.rs.Close()
	case c.sess != nil:
		c.sess.Close()
	}
}

// Leave closes the connection once a build's outputs are home, without
// waiting for the builder's store command to exit (closing its database
// takes it 10 to 40 ms, a wait Nix would see) or for the rest of its
// stderr. Close may still be called; it returns at once.
func (c *Conn) Leave() {
	c.side.close()
	switch {
	case c.rs != nil:
		if c.unhook != nil {
			c.unhook()
		}
		c.rs.Close()
		c.rs.Release()
	case c.sess != nil:
		c.sess.Stdin.Close() // a local store command ends on it
		c.client.Close()
	}
}

// Abort closes the connection itself without waiting, which unblocks
// every session on it. Close still has to be called.
func (c *Conn) Abort() {
	switch {
	case c.rs != nil:
		c.rs.Close()
	case c.client != nil:
		c.client.Close()
	}
}

// Dead returns why the connection died, as its keepalives saw it (for a
// relayed one, the relay's: its report follows the end of the output
// within moments); nil while it lives.
func (c *Conn) Dead() error {
	if c.rs != nil {
		if e := c.rs.Lost(200 * time.Millisecond); e != nil && e.Code != 0 {
			return &relayError{host: c.Machine.Host, code: slots.ErrCode(e.Code), msg: e.Msg}
		}
		return nil
	}
	if c.client == nil {
		return nil
	}
	return c.client.Dead()
}

// HostKey is the key that verified the builder (nil through the relay).
func (c *Conn) HostKey() gossh.PublicKey {
	if c.client == nil {
		return nil
	}
	return c.client.HostKey()
}

// Version is the store protocol's version as the builder said it: the
// serve protocol's for ssh://, the daemon protocol's for ssh-ng://.
func (c *Conn) Version() uint64 { return c.version }

// Trusted says, for an ssh-ng:// builder, whether its nix-daemon trusts
// the SSH user; known is false for ssh:// and for daemons before protocol
// 1.35 (Nix 2.15), which do not say.
func (c *Conn) Trusted() (known, trusted bool) { return c.trustKnown, c.trust }

// HandshakeError is a failure to start the store protocol after the SSH
// connection was made: a remote command that would not start, or that did
// not speak the protocol. Its message is Err's.
type HandshakeError struct {
	Argv []string
	// HostKey is the key that verified the builder (nil through the
	// relay).
	HostKey gossh.PublicKey
	Err     error
}

func (e *HandshakeError) Error() string { return e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// Supported says why m's scheme cannot be used, or nil.
func Supported(m *spec.Machine) error {
	switch m.Scheme {
	case "ssh", "ssh-ng":
		return nil
	}
	return fmt.Errorf("%s:// builders are not supported", m.Scheme)
}

// Dial connects to m and starts its store protocol there: `nix-store
// --serve --write` for ssh://, `nix-daemon --stdio` for ssh-ng://, within
// the connect timeout for the dial and again for the handshake: a dead
// builder must not hold up Nix, which waits for the hook's answer with
// its whole scheduler. A builder is reached through the relay when
// o.Relay names one that can be used.
func Dial(ctx context.Context, m *spec.Machine, o Options) (*Conn, error) {
	if err := Supported(m); err != nil {
		return nil, err
	}
	if o.Relay != "" {
		c, err := dialRelay(ctx, m, o)
		if !errors.Is(err, mux.ErrNoServer) {
			return c, err
		}
		o.debugf("connecting to '%s' without the relay: %v", m.URI, err)
	}
	if m.Scheme == "ssh-ng" {
		return dialNG(ctx, m, o)
	}
	c, argv, err := dialCommand(ctx, m, &o, false)
	if err != nil {
		return nil, err
	}
	c.Tail = newTail(c.sess.Stderr)
	if err := c.handshake(m, o.timeout()); err != nil {
		c.Close()
		return nil, &HandshakeError{Argv: argv, HostKey: c.client.HostKey(), Err: err}
	}
	c.HandshakeTime = time.Since(c.started)
	return c, nil
}

// dialCommand dials m and starts its store command there (ng: the daemon
// protocol's); the caller starts the protocol.
func dialCommand(ctx context.Context, m *spec.Machine, o *Options, ng bool) (*Conn, []string, error) {
	t0 := time.Now()
	client, err := ssh.Dial(ctx, *m, o.sshOptions())
	if err != nil {
		return nil, nil, err
	}
	t1 := time.Now()
	argv := ssh.RemoteCommand(*m, ng)
	sess, err := client.Start(ctx, argv)
	if err != nil {
		client.Close()
		return nil, nil, &HandshakeError{Argv: argv, HostKey: client.HostKey(), Err: err}
	}
	return &Conn{Machine: m, client: client, sess: sess, ConnectTime: t1.Sub(t0), started: t1}, argv, nil
}

func (o *Options) sshOptions() ssh.Options {
	return ssh.Options{ConnectTimeout: o.ConnectTimeout, Env: o.Getenv, Logf: o.Logf}
}

// handshake starts the serve protocol on c, within timeout: a remote
// command that never answers is a dead builder.
func (c *Conn) handshake(m *spec.Machine, timeout time.Duration) error {
	var stdin io.WriteCloser
	var stdout io.Reader
	var closeSess func()
	if c.rs != nil {
		stdin, stdout, closeSess = c.rs.Stdin, c.rs.Stdout, func() { c.rs.Close() }
	} else {
		stdin, stdout, closeSess = c.sess.Stdin, c.sess.Stdout, func() { c.sess.Close() }
	}
	c.Prog = &Progress{}
	c.Tail.follow(c.Prog) // the build log counts as progress
	timer := time.AfterFunc(timeout, closeSess)
	sc, err := serve.New(c.Prog.Reader(stdout), c.Prog.Writer(stdin), serve.Options{Host: m.Name, Stderr: c.Tail.Last})
	if !timer.Stop() && err != nil {
		err = &ssh.Error{Kind: ssh.Timeout, Host: m.Host, Err: fmt.Errorf("no answer from %s within %v: %w", strings.Join(ssh.RemoteCommand(*m, false), " "), timeout, err)}
	}
	if err != nil {
		return err
	}
	c.Store, c.version = sc, sc.ServerVersion()
	return nil
}

// Stream is a command's standard streams on a builder, direct or relayed.
type Stream struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader
	close  func()
	wait   func() error
}

// Close closes the session without waiting for it.
func (s *Stream) Close() { s.close() }

// Wait waits for the command's end and returns its failure, if any.
func (s *Stream) Wait() error { return s.wait() }

// End closes the session and waits for it.
func (s *Stream) End() { s.close(); s.wait() }

// Start runs another command on c's builder over the same connection.
func (c *Conn) Start(ctx context.Context, argv []string) (*Stream, error) {
	if c.rs != nil {
		rs, err := mux.Start(ctx, c.relaySock, c.target, argv)
		if err != nil {
			return nil, err
		}
		wait := func() error {
			defer rs.Release()
			x, err := rs.Wait()
			switch {
			case err != nil:
			case x.Signal != "":
				err = fmt.Errorf("killed by signal %s", x.Signal)
			case x.Code != 0:
				err = fmt.Errorf("exit status %d", x.Code)
			}
			return err
		}
		return &Stream{rs.Stdin, rs.Stdout, rs.Stderr, func() { rs.Close() }, wait}, nil
	}
	if c.client == nil { // NewConn's
		return nil, errors.New("builder: no connection to start a command on")
	}
	sess, err := c.client.Start(ctx, argv)
	if err != nil {
		return nil, err
	}
	return &Stream{sess.Stdin, sess.Stdout, sess.Stderr, func() { sess.Close() }, sess.Wait}, nil
}
