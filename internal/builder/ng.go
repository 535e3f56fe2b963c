// SPDX-License-Identifier: MIT

package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/offload-nix/offload/pkg/daemon"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
	"github.com/offload-nix/offload/pkg/store"
)

// dialNG connects to an ssh-ng:// builder: `nix-daemon --stdio` over
// SSH, spoken with pkg/daemon, all within the connect timeout as Dial
// does for ssh://.
//
// The session's stderr is not the build log here: the build's lines come
// inside the protocol. They are pushed into c.Tail, so the switch to the
// build log at accept (c.Tail.SetSink) is the same for both kinds of
// builder and nothing reaches file descriptor 4 before it. The remote
// stderr is read to its end and its last lines go into error messages.
func dialNG(ctx context.Context, m *spec.Machine, o Options) (*Conn, error) {
	c, argv, err := dialCommand(ctx, m, &o, true)
	if err != nil {
		return nil, err
	}
	client, sess := c.client, c.sess
	err = c.ngHandshake(m, &o, argv, sess.Stdin, sess.Stdout, sess.Stderr, func() { sess.Close() }, client.Settings().User)
	var nt *notTrustedError
	if err != nil && !errors.As(err, &nt) {
		err = &HandshakeError{Argv: argv, HostKey: client.HostKey(), Err: err}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ngHandshake starts the daemon protocol on c's store command (argv,
// with its standard streams; closeSess ends it): the Tail, the progress
// watch and the store. A daemon that does not trust user gives a
// *notTrustedError unless o allows it; the caller closes c on error.
func (c *Conn) ngHandshake(m *spec.Machine, o *Options, argv []string, stdin io.Writer, stdout, stderrR io.Reader, closeSess func(), user string) error {
	c.Tail = newPushTail()
	// The log ends with the session's stderr, so that Close does not
	// wait for it.
	var once sync.Once
	stderr := newTail(&endNotify{r: stderrR, end: func() { once.Do(func() { close(c.Tail.done) }) }}) // never given a sink
	lw := &ngLog{t: c.Tail}
	timeout := o.timeout()
	c.Prog = &Progress{} // the build log comes inside the protocol
	timer := time.AfterFunc(timeout, closeSess)
	dc, err := daemon.New(c.Prog.Reader(stdout), c.Prog.Writer(stdin), daemon.Options{
		Host:   m.Name,
		Log:    lw.line,
		Phase:  lw.phase,
		Stderr: stderr.Last,
	})
	if !timer.Stop() && err != nil {
		err = &ssh.Error{Kind: ssh.Timeout, Host: m.Host, Err: fmt.Errorf("no answer from %s within %v: %w", strings.Join(argv, " "), timeout, err)}
	}
	if err != nil {
		return err
	}
	c.HandshakeTime = time.Since(c.started)
	c.version = dc.DaemonVersion()
	c.trustKnown, c.trust = dc.Trusted()
	if c.trustKnown && !c.trust && !o.AllowUntrusted {
		// nix-daemon builds input-addressed derivations only for
		// trusted users: every build would fail after accept, when Nix
		// can no longer build it elsewhere.
		return &notTrustedError{uri: m.URI, user: user}
	}
	c.Store = &ngStore{c: dc, uri: m.URI, user: user, subst: o.Substitute}
	return nil
}

// DaemonStore is a builder's store over a running daemon protocol client,
// for tests of what uses a Remote.
func DaemonStore(dc *daemon.Client, uri string) Remote {
	return &ngStore{c: dc, uri: uri}
}

// newPushTail returns a Tail that is given its lines with push instead
// of reading a stream; its Wait returns once done is closed.
func newPushTail() *Tail {
	return &Tail{done: make(chan struct{})}
}

// push does with p what run does with what it reads: it goes to the sink,
// if one is set, and into the tail. Under the same lock as SetSink, so a
// line pushed before accept never reaches the build log.
func (t *Tail) push(p []byte) {
	t.mu.Lock()
	if t.sink != nil {
		t.sink.Write(p)
	}
	t.tail = append(t.tail, p...)
	if len(t.tail) > 2*tailSize {
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-tailSize:]...)
	}
	t.mu.Unlock()
}

// ngLog turns the daemon's log messages into build-log lines in the
// connection's Tail: each line with its newline, and each build phase
// as the @nix line Nix reads from a build log.
type ngLog struct {
	mu  sync.Mutex
	t   *Tail
	buf []byte
}

func (l *ngLog) line(b []byte) {
	l.mu.Lock()
	l.buf = append(append(l.buf[:0], b...), '\n')
	l.t.push(l.buf)
	l.mu.Unlock()
}

func (l *ngLog) phase(p string) {
	q, err := json.Marshal(p)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.buf = append(l.buf[:0], `@nix {"action":"setPhase","phase":`...)
	l.buf = append(l.buf, q...)
	l.buf = append(l.buf, "}\n"...)
	l.t.push(l.buf)
	l.mu.Unlock()
}

// ngStore is a builder's store over the daemon protocol, as the build
// needs it (the remote interface).
type ngStore struct {
	c     *daemon.Client
	uri   string
	user  string
	subst bool
}

// QueryValidPaths asks which paths the builder has; with lock, each of them
// becomes a temporary GC root there for the session, so that its garbage
// collector cannot delete an input between this question and the build (the
// daemon roots uploaded paths itself).
func (s *ngStore) QueryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	valid, err := s.c.QueryValidPaths(paths, substitute)
	if err != nil || !lock {
		return valid, err
	}
	for _, p := range valid {
		if err := s.c.AddTempRoot(p); err != nil {
			return nil, err
		}
	}
	return valid, nil
}

func (s *ngStore) QueryPathInfos(paths []string) ([]store.PathInfo, error) {
	return s.c.QueryPathInfos(paths)
}

func (s *ngStore) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	return s.explain(s.c.AddToStoreNars(infos, open))
}

// BuildDerivation sends the build's limits first: Nix's own ssh-ng client
// forwards none, so the builder's max-silent-time and timeout would apply
// instead of the user's.
func (s *ngStore) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error) {
	err := s.c.SetOptions(daemon.Settings{
		Build:          o,
		Verbosity:      daemon.LvlError,
		UseSubstitutes: s.subst,
	})
	if err != nil {
		return store.BuildResult{}, err
	}
	res, err := s.c.BuildDerivation(drvPath, d, inputSrcs)
	return res, s.explain(err)
}

func (s *ngStore) DumpStorePath(path string, w io.Writer, narSize uint64) error {
	return s.c.NarFromPath(path, w, narSize)
}

// explain replaces a refusal for lack of trust with what to change on the
// builder.
func (s *ngStore) explain(err error) error {
	var re *daemon.RemoteError
	if !errors.Is(err, daemon.ErrNotTrusted) || !errors.As(err, &re) {
		return err
	}
	return &notTrustedError{uri: s.uri, user: s.user, remote: re}
}

// notTrustedError is a builder whose nix-daemon does not trust the SSH
// user: it refuses unsigned uploads and builds of input-addressed
// derivations.
type notTrustedError struct {
	uri, user string
	remote    *daemon.RemoteError // nil: the handshake said so
}

func (e *notTrustedError) Error() string {
	var b strings.Builder
	if e.remote != nil {
		msg := e.remote.Msg
		if e.remote.Path != "" && !strings.Contains(msg, e.remote.Path) {
			msg = e.remote.Path + ": " + msg
		}
		fmt.Fprintf(&b, "the builder refused %s: %s; ", e.remote.Op, msg)
	}
	who := "the SSH user"
	if e.user != "" {
		who = fmt.Sprintf("the SSH user %q", e.user)
	}
	fmt.Fprintf(&b, "nix-daemon on '%s' does not trust %s: add it to trusted-users in the builder's nix.conf", e.uri, who)
	b.WriteString(" (require-sigs = false there is not enough: it lets an untrusted user upload unsigned paths, but nix-daemon builds input-addressed derivations only for trusted users)")
	return b.String()
}

// endNotify reads r and calls end when r ends.
type endNotify struct {
	r   io.Reader
	end func()
}

func (e *endNotify) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.end()
	}
	return n, err
}

func (e *notTrustedError) Unwrap() error { return daemon.ErrNotTrusted }
