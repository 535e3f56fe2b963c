// SPDX-License-Identifier: MIT

package mux

// Rules: every received descriptor is closed when its session ends; a
// session whose client's socket closes has its remote command ended at
// once; a remote whose connection broke, or that says it cannot run
// more commands (Remote.Err), is never used again; a Server that exits
// because it is idle or stale stops accepting first and lets every
// session it accepted run to its end (a client that connected has been
// promised its command, and a cancelled one would look like a broken
// builder); the Server's own refusals carry CodeServer, for the client to
// connect by itself instead.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Remote is a connection a Server keeps warm.
type Remote interface {
	// Run runs argv with the given standard streams until it ends or
	// ctx is done (then the command must end as if the connection had
	// dropped). It returns the command's exit, or an error when the
	// command could not run or the connection broke: the Server then
	// drops the Remote.
	Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, started func()) (Exit, error)
	// Err says why the Remote cannot run more commands (its connection
	// closed, or keepalives went unanswered), or nil. It must be cheap:
	// it is asked before every command.
	Err() error
	Close() error
}

// Pinger is a Remote that can ask its peer for an answer, for a
// connection that has been quiet for a while before it is handed out:
// one whose peer went away without a word looks alive to Err.
type Pinger interface {
	Ping(ctx context.Context) error
}

// pingAfter is how long a connection may be quiet before it is pinged
// on its way to a client, and pingTimeout how long the answer may take:
// long enough for a builder's sshd on a busy machine (an answer that is
// only late drops a good connection, and every hook waiting on it opens
// another), short enough that a vanished peer costs the hook little.
var (
	pingAfter   = 2 * time.Second
	pingTimeout = 3 * time.Second
)

// Starter is a Remote that can start a command before a client asks for
// it (Server.Ready).
type Starter interface {
	StartAhead(argv []string) (Started, error)
}

// Started is a command started ahead of its client.
type Started interface {
	// Err says why it can no longer be handed out (it ended), or nil.
	// It must be cheap.
	Err() error
	// Attach gives it the client's streams and runs it to its end, as
	// Remote.Run does once started.
	Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (Exit, error)
	// Close ends it, attached or not.
	Close() error
}

// CodeServer is the code of the Server's own refusals (a bad request, a
// stale or stopping Server): nothing is known about the target then, and
// the client should reach it by itself.
const CodeServer = ^uint32(0)

// ErrStale, wrapped in an error from Server.Check, makes the Server stop
// accepting: it no longer serves its clients as they expect (its binary
// or settings changed), and the next client starts a fresh one.
var ErrStale = errors.New("mux: stale server")

// Server relays commands to warm Remotes. Its zero value is not usable:
// Dial must be set.
type Server struct {
	// Dial connects to target. Its error's code (CodeOf) reaches the
	// client.
	Dial func(ctx context.Context, target string) (Remote, error)
	// Idle is how long the Server stays without sessions before Serve
	// returns (0: a minute).
	Idle time.Duration
	// MaxSessions bounds the sessions one Remote runs at once; more
	// open another connection (0: 8, below OpenSSH's MaxSessions 10).
	MaxSessions int
	// UID is the only user served (-1: the Server's own uid).
	UID int
	// Ready, if not nil, says how many commands argv for target the
	// Server keeps started ahead (on Remotes that are Starters), once a
	// client has asked for one: a client is handed one of them, and a
	// replacement starts in the background. Each counts as a session on
	// its Remote.
	Ready func(target string, argv []string) int
	// Warm, if its Target is set, is a target whose commands Serve
	// starts ahead at once, before any client asks: the one the process
	// that started this Server connected to by itself.
	Warm struct {
		Target string
		Argv   []string
	}
	// Name, if not nil, names a target for Status (default: itself).
	Name func(target string) string
	// Check, if not nil, vets each request's target before it is
	// served: an error refuses it (CodeServer), and one wrapping
	// ErrStale also stops the Server accepting.
	Check func(target string) error
	// Logf, if not nil, receives what went wrong. It must be safe for
	// concurrent use.
	Logf func(format string, args ...any)
	// Lock, if not nil, is the lock Listen took: it is closed as soon as
	// the Server stops accepting (idle, stale or told to stop), after its
	// socket is gone, so that a new Server can listen in the directory
	// while this one finishes the sessions it still runs (a build can
	// take hours).
	Lock io.Closer

	mu       sync.Mutex
	pool     map[string][]*warm
	active   int
	lastIdle time.Time
	stop     func() // closes the listener
	ready    map[string][]*ahead
	filling  map[string]int
	dialing  map[string]chan struct{} // closed when the target's dial ends
	bg       sync.WaitGroup           // refills
}

// ahead is a command started ahead on w.
type ahead struct {
	w       *warm
	st      Started
	started time.Time
}

// readyAge is how long a command started ahead waits for a client: an
// older one is ended rather than handed out, so that what a client gets
// started no more than that before (a builder's configuration read
// then, its daemon the one running then), and a builder keeps no
// process for a relay that has had no client for that long.
var readyAge = 10 * time.Second

// pruneReady ends the commands started ahead that are older than
// readyAge; s.mu is held.
func (s *Server) pruneReady() {
	for key, as := range s.ready {
		kept := as[:0]
		for _, a := range as {
			if time.Since(a.started) < readyAge {
				kept = append(kept, a)
				continue
			}
			a.st.Close()
			a.w.sessions--
		}
		s.ready[key] = kept
	}
}

func readyKey(target string, argv []string) string {
	return target + "\x00" + strings.Join(argv, "\x00")
}

// testOnlyAccepted, if set, runs after a client is accepted and before it
// counts as active: tests widen the window in which the Server may decide
// it is idle.
var testOnlyAccepted func()

type warm struct {
	r        Remote
	sessions int
	dead     bool
	// heard is when the peer last showed it was there: the dial, a
	// session's clean end, an answered ping.
	heard time.Time
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve accepts clients on ln until ctx is done or the Server has been
// idle for s.Idle, then closes ln and every Remote.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	idle := s.Idle
	if idle <= 0 {
		idle = time.Minute
	}
	// stopped ends the accept loop; sessions already accepted run on
	// with ctx (only the caller's cancel ends them).
	stopped := make(chan struct{})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(stopped)
			ln.Close() // unlinks the socket
			if s.Lock != nil {
				s.Lock.Close()
			}
		})
	}
	s.mu.Lock()
	s.pool = make(map[string][]*warm)
	s.ready = make(map[string][]*ahead)
	s.filling = make(map[string]int)
	s.lastIdle = time.Now()
	s.stop = stop
	s.mu.Unlock()
	if s.Warm.Target != "" && (s.Check == nil || s.Check(s.Warm.Target) == nil) {
		s.refill(ctx, s.Warm.Target, s.Warm.Argv)
	}
	go func() {
		t := time.NewTicker(min(idle/4+time.Millisecond, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				stop()
				return
			case <-stopped:
				return
			case <-t.C:
			}
			s.mu.Lock()
			s.pruneReady()
			done := s.active == 0 && time.Since(s.lastIdle) >= idle
			s.mu.Unlock()
			if done {
				stop()
				return
			}
		}
	}()
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		s.mu.Lock()
		for _, as := range s.ready {
			for _, a := range as {
				a.st.Close()
			}
		}
		s.ready = nil
		s.mu.Unlock()
		s.bg.Wait()
		s.mu.Lock()
		for _, ws := range s.pool {
			for _, w := range ws {
				w.r.Close()
			}
		}
		s.pool = nil
		s.mu.Unlock()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			select {
			case <-stopped:
				return nil
			default:
			}
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("mux: %w", err)
		}
		if testOnlyAccepted != nil {
			testOnlyAccepted()
		}
		if !s.allowed(c) {
			c.Close()
			continue
		}
		s.mu.Lock()
		s.active++
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, c)
			s.mu.Lock()
			s.active--
			if s.active == 0 {
				s.lastIdle = time.Now()
			}
			s.mu.Unlock()
		}()
	}
}

// allowed checks the peer's uid.
func (s *Server) allowed(c *net.UnixConn) bool {
	want := s.UID
	if want < 0 {
		want = os.Getuid()
	}
	cred, err := peerCred(c)
	if err != nil {
		s.logf("mux: %v", err)
		return false
	}
	if int(cred.Uid) != want {
		s.logf("mux: refused a client of uid %d (pid %d)", cred.Uid, cred.Pid)
		return false
	}
	return true
}

// peerCred returns the credentials of the process at the other end of c
// (SO_PEERCRED: the client's at connect, the server's at listen).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("reading the peer's credentials: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("reading the peer's credentials: %w", cerr)
	}
	return cred, nil
}

func peerUID(c *net.UnixConn) (int, error) {
	cred, err := peerCred(c)
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}

// handle serves one client: one command.
func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, maxRequest+4)
	oob := make([]byte, unix.CmsgSpace(3*4))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	files, ferr := parseFiles(oob[:oobn])
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// The whole request arrives in one message unless it is large.
	for err == nil && n >= 4 && n < int(binary.BigEndian.Uint32(buf))+4 && n < len(buf) {
		var m int
		m, err = c.Read(buf[n:])
		n += m
	}
	c.SetReadDeadline(time.Time{})
	if err != nil || n < 4 || int(binary.BigEndian.Uint32(buf))+4 != n {
		return
	}
	target, argv, err := decodeRequest(buf[4:n])
	if err == nil && target == "" && len(argv) == 1 {
		s.control(c, argv[0])
		return
	}
	if ferr != nil || len(files) != 3 {
		c.Write(refusal(CodeServer, "mux: a request needs three descriptors"))
		return
	}
	if err == nil && s.Check != nil {
		if err = s.Check(target); errors.Is(err, ErrStale) {
			s.logf("mux: %v; no longer accepting", err)
			s.mu.Lock()
			s.stop()
			s.mu.Unlock()
		}
	}
	if err != nil {
		c.Write(refusal(CodeServer, err.Error()))
		return
	}

	// The client's socket closing ends the command.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		var b [1]byte
		c.Read(b[:]) // returns on EOF, error or a byte (none is sent)
		cancel()
	}()

	key := readyKey(target, argv)
	a := s.takeReady(key, target)
	if a != nil && !s.alive(sctx, target, a.w) {
		a.st.Close()
		s.unreserve(a.w)
		a = nil
	}
	if a != nil {
		c.Write(reply(replyStarted, nil))
		// With another command still ready, the replacement starts when
		// this one ends: its start (a session and a store command on the
		// builder) would otherwise compete with the build this one
		// serves, and the next client has one meanwhile.
		later := s.readyLeft(key) > 0
		if !later {
			s.refill(ctx, target, argv)
		}
		exit, err := a.st.Attach(sctx, files[0], files[1], files[2])
		a.st.Close()
		s.give(target, a.w, err != nil)
		if later {
			s.refill(ctx, target, argv)
		}
		if err != nil {
			c.Write(lost(err))
			return
		}
		s.exited(c, files, exit)
		return
	}
	var exit Exit
	for attempt := 0; ; attempt++ {
		w, err := s.take(sctx, target)
		if err != nil {
			c.Write(refusal(CodeOf(err), err.Error()))
			return
		}
		started := false
		exit, err = w.r.Run(sctx, argv, files[0], files[1], files[2], func() {
			started = true
			c.Write(reply(replyStarted, nil))
			s.refill(ctx, target, argv)
		})
		s.give(target, w, err != nil)
		if err == nil {
			break
		}
		if !started && attempt == 0 && sctx.Err() == nil {
			// A connection that died while idle: dial again once.
			s.logf("mux: %s: %v; connecting again", target, err)
			continue
		}
		if !started {
			c.Write(refusal(CodeOf(err), err.Error()))
			return
		}
		c.Write(lost(err))
		return
	}
	s.exited(c, files, exit)
}

// control answers a control request.
func (s *Server) control(c *net.UnixConn, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch what {
	case controlStop:
		s.logf("mux: stopping on request")
		s.stop()
		c.Write(reply(replyInfo, putString(nil, "")))
	case controlStatus:
		var b strings.Builder
		for target, ws := range s.pool {
			st := Status{Target: target}
			if s.Name != nil {
				st.Target = s.Name(target)
			}
			for _, w := range ws {
				st.Connections++
				st.Sessions += w.sessions
			}
			for key, as := range s.ready {
				if strings.HasPrefix(key, target+"\x00") {
					st.Ready += len(as)
				}
			}
			st.Sessions -= st.Ready
			fmt.Fprintf(&b, "%d %d %d %s\n", st.Connections, st.Sessions, st.Ready, st.Target)
		}
		c.Write(reply(replyInfo, putString(nil, b.String())))
	default:
		c.Write(refusal(CodeServer, fmt.Sprintf("mux: unknown control request %q", what)))
	}
}

// exited closes the session's descriptors and reports its exit: our
// copies first, so the client sees the ends of stdout and stderr before
// the exit status.
func (s *Server) exited(c *net.UnixConn, files []*os.File, exit Exit) {
	for _, f := range files {
		f.Close()
	}
	body := binary.BigEndian.AppendUint32(nil, uint32(int32(exit.Code)))
	c.Write(reply(replyExit, putString(body, exit.Signal)))
}

// takeReady returns a command started ahead for key that is still
// alive on a live Remote, or nil; dead ones are closed on the way.
func (s *Server) takeReady(key, target string) *ahead {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneReady()
	for len(s.ready[key]) > 0 {
		a := s.ready[key][0]
		s.ready[key] = s.ready[key][1:]
		err := a.st.Err()
		if err == nil {
			err = a.w.r.Err()
			if err != nil {
				s.drop(target, a.w)
			}
		}
		if err == nil {
			return a
		}
		s.logf("mux: %s: a command started ahead ended: %v", target, err)
		a.st.Close()
		a.w.sessions--
	}
	return nil
}

// readyLeft is how many commands for key are started ahead and not
// handed out.
func (s *Server) readyLeft(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ready[key])
}

// refill starts commands ahead for target and argv in the background,
// up to what s.Ready says.
func (s *Server) refill(ctx context.Context, target string, argv []string) {
	if s.Ready == nil {
		return
	}
	n := s.Ready(target, argv)
	key := readyKey(target, argv)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready == nil {
		return
	}
	for need := n - len(s.ready[key]) - s.filling[key]; need > 0; need-- {
		s.filling[key]++
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.startAhead(ctx, target, argv, key)
		}()
	}
}

func (s *Server) startAhead(ctx context.Context, target string, argv []string, key string) {
	var st Started
	w, err := s.take(ctx, target)
	if err == nil {
		if sr, ok := w.r.(Starter); ok {
			st, err = sr.StartAhead(argv)
		} else {
			err = errors.New("mux: cannot start commands ahead")
		}
		if err != nil {
			s.give(target, w, false)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filling[key]--
	if err != nil {
		s.logf("mux: %s: starting a command ahead: %v", target, err)
		return
	}
	if s.ready == nil || ctx.Err() != nil { // Serve is ending
		st.Close()
		w.sessions--
		return
	}
	s.ready[key] = append(s.ready[key], &ahead{w: w, st: st, started: time.Now()})
}

// serverError is a refusal of the Server's own.
type serverError string

func (e serverError) Error() string   { return string(e) }
func (e serverError) MuxCode() uint32 { return CodeServer }

func lost(err error) []byte {
	return reply(replyLost, putString(binary.BigEndian.AppendUint32(nil, CodeOf(err)), err.Error()))
}

func refusal(code uint32, msg string) []byte {
	return reply(replyRefused, putString(binary.BigEndian.AppendUint32(nil, code), msg))
}

// take returns a warm Remote for target with room for a session, dialling
// a new one when none has. A Remote that says it cannot run more commands
// is dropped on the way, so that no client is handed a dead connection.
func (s *Server) take(ctx context.Context, target string) (*warm, error) {
	maxS := s.MaxSessions
	if maxS <= 0 {
		maxS = 8
	}
again:
	for {
		s.mu.Lock()
		for _, w := range s.pool[target] {
			if w.dead || w.sessions >= maxS {
				continue
			}
			if err := w.r.Err(); err != nil {
				s.logf("mux: %s: %v; not used again", target, err)
				s.drop(target, w)
				continue
			}
			w.sessions++
			s.mu.Unlock()
			if !s.alive(ctx, target, w) {
				s.unreserve(w)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue again
			}
			return w, nil
		}
		// One dial per target at a time: sessions that find every
		// connection full wait for it rather than each opening one.
		ch := s.dialing[target]
		if ch == nil {
			break // with s.mu held
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ch := make(chan struct{})
	if s.dialing == nil {
		s.dialing = make(map[string]chan struct{})
	}
	s.dialing[target] = ch
	s.mu.Unlock()
	r, err := s.Dial(ctx, target)
	s.mu.Lock()
	delete(s.dialing, target)
	close(ch)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	w := &warm{r: r, sessions: 1, heard: time.Now()}
	if s.pool == nil { // Serve has returned
		s.mu.Unlock()
		r.Close()
		return nil, serverError("mux: shutting down")
	}
	s.pool[target] = append(s.pool[target], w)
	s.mu.Unlock()
	return w, nil
}

// give returns a session's Remote; a broken one is closed and dropped.
func (s *Server) give(target string, w *warm, broken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.sessions--
	if broken {
		s.drop(target, w)
		return
	}
	w.heard = time.Now()
}

// unreserve gives back a session of w that did not run.
func (s *Server) unreserve(w *warm) {
	s.mu.Lock()
	w.sessions--
	s.mu.Unlock()
}

// alive says whether w, reserved by the caller, may be handed out: yes
// when its peer was heard from lately, else when it answers a ping in
// time; a Remote that does not is dropped.
func (s *Server) alive(ctx context.Context, target string, w *warm) bool {
	p, ok := w.r.(Pinger)
	s.mu.Lock()
	quiet := time.Since(w.heard)
	s.mu.Unlock()
	if !ok || quiet < pingAfter {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	err := p.Ping(pctx)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		w.heard = time.Now()
		return true
	}
	if ctx.Err() == nil {
		s.logf("mux: %s: quiet for %v and %v; not used again", target, quiet.Round(time.Millisecond), err)
		s.drop(target, w)
	}
	return false
}

// drop takes w out of the pool and closes it, once; s.mu is held.
func (s *Server) drop(target string, w *warm) {
	if w.dead {
		return
	}
	w.dead = true
	ws := s.pool[target]
	for i := range ws {
		if ws[i] == w {
			s.pool[target] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	go w.r.Close()
}

func parseFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "mux"))
		}
	}
	return files, nil
}

// ErrRunning is returned by Listen when another Server holds dir.
var ErrRunning = errors.New("mux: another server is running")

// Listen prepares dir for a Server and listens on its socket: dir is
// created with mode 0700 (an existing one must belong to the user and
// not be open to others), a lock file in it is taken for as long as the
// returned closer is open (the kernel drops it when the process dies, so
// a crashed Server leaves nothing in the way), a stale socket is removed,
// and the new one gets mode 0600 (set by the umask at bind, in the 0700
// directory checked before).
func Listen(dir string) (*net.UnixListener, io.Closer, error) {
	if err := checkDir(dir, true); err != nil {
		return nil, nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("mux: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, ErrRunning
		}
		return nil, nil, fmt.Errorf("mux: locking %s: %w", lock.Name(), err)
	}
	sock := SocketPath(dir)
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		lock.Close()
		return nil, nil, fmt.Errorf("mux: %w", err)
	}
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("mux: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	// The umask gave the socket its mode as bind made it; a chmod by
	// path would follow whatever is at the path by then.
	return ln, lock, nil
}

// SocketPath is the socket of the Server for dir.
func SocketPath(dir string) string { return filepath.Join(dir, "sock") }

// checkDir makes sure dir is a directory of the user's with mode 0700,
// creating it when create is set.
func checkDir(dir string, create bool) error {
	if create {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("mux: %w", err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mux: %w", err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("mux: %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("mux: %s is not a directory", dir)
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("mux: %s belongs to uid %d, not %d", dir, st.Uid, os.Getuid())
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("mux: %s has mode %#o, others may enter", dir, st.Mode&0o777)
	}
	return nil
}
