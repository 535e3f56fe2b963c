// SPDX-License-Identifier: MIT

package builder

// The relay (pkg/mux) keeps SSH connections warm across hooks, like
// OpenSSH's ControlPersist: the first hook that needs one starts it, as
// this same binary with OFFLOAD_RELAY_DIR set, in a session of its own
// (Nix kills the hook's whole process group when the hook ends), and it
// exits by itself once it has been idle for connect-persist. A hook asks
// the relay first and dials by itself when no relay answers; a builder
// that the relay cannot reach fails as a direct connection would.
//
// Rules: the relay serves only its own uid, from a 0700 directory; a hook
// uses only a relay of its own uid in a directory of its own (pkg/mux
// Start checks both), and root's is never in a directory named by the
// environment (su and sudo -E pass on another user's XDG_RUNTIME_DIR);
// the relay inherits none of the hook's descriptors (stderr is Nix's
// protocol, fd 4 and 5 the build log's pipe, which Nix leaves without
// close-on-exec); a relay serves only hooks of its own binary (a hook of
// another, say after an upgrade, makes it stop accepting); a connection
// error from it counts against the builder like any other; and whatever
// else goes wrong with the relay (none answers, it refuses on its own
// account, or its session ends before the store protocol started) makes
// the hook connect by itself at once, with one line of why at -v.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/offload-nix/offload/pkg/mux"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

const (
	// EnvRelay names the relay's directory in a relay process.
	EnvRelay = "OFFLOAD_RELAY_DIR"
	// envPersist is connect-persist as a relay process is given it.
	envPersist = "OFFLOAD_CONNECT_PERSIST"
	// envWarm is the target (and its store command) a relay process
	// starts commands ahead for at once: the builder of the hook that
	// started it, which connected by itself.
	envWarm = "OFFLOAD_RELAY_WARM"
)

// sshEnv are the variables pkg/ssh reads: a relay dials with the
// requesting hook's values, and hooks whose values differ get different
// connections.
var sshEnv = []string{"NIX_SSHOPTS", "SSH_AUTH_SOCK"}

// rootRelayDir is root's relay directory: on the runtime file system,
// which only root can write to.
const rootRelayDir = "/run/offload/relay"

// relayWarm is what a relay starts commands ahead for as it starts.
type relayWarm struct {
	Target string
	Argv   []string
}

// relayTarget is what a relay needs to dial a builder for a hook.
type relayTarget struct {
	Machine spec.Machine
	Env     map[string]string
	Timeout time.Duration
	// Binary is the hook's executable (binaryStamp): a relay of another
	// one is stale.
	Binary string
	// SSH is a digest of the SSH settings the hook resolves (ssh_config
	// files and NIX_SSHOPTS as they read now): after an edit, hooks get
	// a new connection, and the old one idles out.
	SSH string
}

// sshUser is the user pkg/ssh logs in as on m, for messages.
func sshUser(m *spec.Machine, getenv func(string) string) string {
	if getenv == nil {
		getenv = os.Getenv
	}
	s, err := ssh.Resolve(*m, ssh.Options{Env: getenv})
	if err != nil {
		return m.User
	}
	return s.User
}

// settingsDigest is a digest of what pkg/ssh resolves for m, "" when it
// cannot (the dial then says why).
func settingsDigest(m *spec.Machine, getenv func(string) string) string {
	s, err := ssh.Resolve(*m, ssh.Options{Env: getenv})
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q %v %q %d %q %q %v %q %q %q %q %q %v %v %v %d %q %q",
		s.Host, s.Local, s.HostName, s.Port, s.User, s.IdentityFiles, s.IdentitiesOnly, s.IdentityAgent,
		s.UserKnownHostsFiles, s.GlobalKnownHostsFiles, s.HostKeyAlias, s.StrictHostKeyChecking, s.HashKnownHosts,
		s.ConnectTimeout, s.ServerAliveInterval, s.ServerAliveCountMax, s.ProxyJump, s.ProxyCommand)
	if s.PinnedHostKey != nil {
		h.Write(s.PinnedHostKey.Marshal())
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// binaryStamp identifies the running executable: its device, inode,
// size and modification time (an upgrade replaces the file, and a
// rebuilt one in place changes its time), read through /proc/self/exe,
// which names the file even once it is replaced.
func binaryStamp() string {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d:%d:%d.%d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// RelayDir is the relay's directory for this user and this offload
// binary: below rootRelayDir for root, else below $XDG_RUNTIME_DIR, or
// below stateDir (offload's state directory), in a directory named after
// the binary (binaryStamp). Two binaries in use at once (an upgrade while
// builds run, a second copy) then each have a relay of their own instead
// of each stopping the other's. "" when the socket path would be too
// long.
func RelayDir(getenv func(string) string, stateDir string) string {
	var dir string
	if os.Geteuid() == 0 {
		dir = rootRelayDir
	} else if x := getenv("XDG_RUNTIME_DIR"); x != "" {
		dir = filepath.Join(x, "offload-relay")
	} else {
		dir = filepath.Join(stateDir, "relay-"+strconv.Itoa(os.Getuid()))
	}
	sum := sha256.Sum256([]byte(binaryStamp()))
	dir = filepath.Join(dir, hex.EncodeToString(sum[:6]))
	if len(mux.SocketPath(dir)) > 100 { // sun_path holds 108 bytes
		return ""
	}
	return dir
}

func relayTargetOf(m *spec.Machine, o *Options) string {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := relayTarget{Machine: *m, Env: map[string]string{}, Timeout: o.ConnectTimeout, Binary: binaryStamp(), SSH: settingsDigest(m, getenv)}
	for _, k := range sshEnv {
		if v := getenv(k); v != "" {
			t.Env[k] = v
		}
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// dialRelay starts the builder's store command through the relay in
// o.Relay, starting the relay when none runs. An error wrapping
// mux.ErrNoServer means the relay could not be used (the caller dials by
// itself).
func dialRelay(ctx context.Context, m *spec.Machine, o Options) (*Conn, error) {
	timeout := o.timeout()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir := o.Relay
	sock := mux.SocketPath(dir)
	target := relayTargetOf(m, &o)
	ng := m.Scheme == "ssh-ng"
	argv := ssh.RemoteCommand(*m, ng)
	started := time.Now()
	rs, err := mux.Start(ctx, sock, target, argv)
	if errors.Is(err, mux.ErrUntrusted) {
		o.logf("not using the connection relay at %s: %v", sock, err)
		return nil, err
	}
	var me *mux.Error
	if errors.As(err, &me) && me.Code == mux.CodeServer {
		// The relay refused by itself: stale (another offload binary) or
		// stopping. It no longer accepts and has given up its directory
		// to a new relay, even while it finishes the builds it serves.
		err = fmt.Errorf("%w: %v", mux.ErrNoServer, err)
	}
	if errors.Is(err, mux.ErrNoServer) {
		// None runs: this hook connects by itself at once, and the relay
		// it starts serves the hooks after it. Waiting for the relay's
		// start and its first dial would put both on this hook's way to
		// "# accept", where Nix's whole scheduler waits: the first build
		// of a burst would be slower than a direct connection.
		if _, serr := startRelay(dir, o.Persist, target, argv); serr != nil {
			return nil, fmt.Errorf("%w (starting one: %v)", err, serr)
		}
		return nil, fmt.Errorf("%w: one is starting, for the hooks after this one", err)
	}
	if err != nil {
		return nil, relayErr(m, err)
	}
	// Cancelling the caller's ctx ends the session at once, as it ends a
	// direct one (pkg/ssh Start): on SIGTERM the hook has half a second.
	c := &Conn{Machine: m, rs: rs, relaySock: sock, target: target, started: started,
		unhook: context.AfterFunc(parent, func() { rs.Close() })}
	if ng {
		err = c.ngHandshake(m, &o, argv, rs.Stdin, rs.Stdout, rs.Stderr, func() { rs.Close() }, sshUser(m, o.Getenv))
		var nt *notTrustedError
		if errors.As(err, &nt) {
			c.Close()
			return nil, err
		}
	} else {
		c.Tail = newTail(rs.Stderr)
		err = c.handshake(m, timeout)
	}
	if err != nil {
		c.Close()
		// Nothing is answered yet: a builder whose store command
		// fails fails again directly, and a relay that lost the
		// session costs no build.
		return nil, fmt.Errorf("%w: the relayed session ended before its store protocol started: %v", mux.ErrNoServer, err)
	}
	c.HandshakeTime = time.Since(c.started)
	return c, nil
}

// relayErr turns the relay's report of a failed dial into the error a
// direct dial would have given, for the builder's health.
func relayErr(m *spec.Machine, err error) error {
	var me *mux.Error
	if !errors.As(err, &me) {
		return err
	}
	return &relayError{host: m.Host, code: slots.ErrCode(me.Code), msg: me.Msg}
}

type relayError struct {
	host string
	code slots.ErrCode
	msg  string
}

func (e *relayError) Error() string { return e.msg }

// startRelay starts a relay process for dir, detached from the hook's
// process group and session. exited is closed when it ends (at once when
// another relay holds dir).
func startRelay(dir string, persist time.Duration, target string, argv []string) (exited <-chan struct{}, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(exe, ".test") && testOnlyRelayExe == nil {
		// A test binary calling Main in-process: it would run its
		// tests again.
		return nil, errors.New("not from a test binary")
	}
	cmd := exec.Command(exe)
	cmd.Args = os.Args // argv[0] too: a multi-call binary dispatches on it
	if testOnlyRelayExe != nil {
		cmd = exec.Command(testOnlyRelayExe[0], testOnlyRelayExe[1:]...)
	}
	warm, _ := json.Marshal(relayWarm{Target: target, Argv: argv})
	cmd.Env = append(os.Environ(), EnvRelay+"="+dir, envPersist+"="+persist.String(), envWarm+"="+string(warm))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := closeOnExec(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	// Waited for only to see it end early: it outlives the hook, and
	// init reaps it then.
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	return done, nil
}

// testOnlyRelayExe, if set, is the command startRelay runs.
var testOnlyRelayExe []string

// closeOnExec marks every descriptor above stderr close-on-exec. Go's
// exec passes on any descriptor without the flag, and Nix gives the hook
// the build log's pipe as fds 4 and 5 without it: a relay holding them
// would keep the pipe open for as long as it runs.
func closeOnExec() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		syscall.CloseOnExec(fd) // the directory's own descriptor is gone by now: EBADF
	}
	return nil
}

// ServeRelay is the relay process: it serves hooks on dir's socket until
// it has been idle for idle. It returns nil at once when it cannot listen
// there (another relay runs, or none can: hooks dial by themselves).
func ServeRelay(ctx context.Context, dir string, idle time.Duration) error {
	ln, lock, err := mux.Listen(dir)
	if err != nil {
		return nil
	}
	own := binaryStamp()
	s := &mux.Server{
		Dial:  relayDial,
		Idle:  idle,
		UID:   -1,
		Check: func(target string) error { return checkTarget(target, own) },
		Ready: readyFor,
		Name:  targetName,
		Lock:  lock,
	}
	var w relayWarm
	if json.Unmarshal([]byte(os.Getenv(envWarm)), &w) == nil {
		s.Warm.Target, s.Warm.Argv = w.Target, w.Argv
	}
	return s.Serve(ctx, ln)
}

// targetName names a target by its machine's URI.
func targetName(target string) string {
	var t relayTarget
	if json.Unmarshal([]byte(target), &t) != nil {
		return "?"
	}
	return t.Machine.URI
}

// RelayStatus returns what the relay in dir holds per builder; an error
// wrapping mux.ErrNoServer when none runs.
func RelayStatus(ctx context.Context, dir string) ([]mux.Status, error) {
	return mux.Query(ctx, mux.SocketPath(dir))
}

// StopRelay makes the relay in dir stop accepting hooks: the sessions it
// runs go on to their end, and it exits then.
func StopRelay(ctx context.Context, dir string) error {
	return mux.Stop(ctx, mux.SocketPath(dir))
}

// NoRelay says whether err, from RelayStatus or StopRelay, means that no
// relay runs (rather than one that is not to be trusted, or failed).
func NoRelay(err error) bool {
	return errors.Is(err, mux.ErrNoServer) && !errors.Is(err, mux.ErrUntrusted)
}

// checkTarget vets a hook's request against the relay's own binary.
func checkTarget(target, own string) error {
	var t relayTarget
	if err := json.Unmarshal([]byte(target), &t); err != nil {
		return fmt.Errorf("relay: bad target: %w", err)
	}
	if t.Binary != own {
		return fmt.Errorf("relay: the hook runs another offload binary (%s, the relay %s): %w", t.Binary, own, mux.ErrStale)
	}
	return nil
}

func relayDial(ctx context.Context, target string) (mux.Remote, error) {
	var t relayTarget
	if err := json.Unmarshal([]byte(target), &t); err != nil {
		return nil, fmt.Errorf("relay: bad target: %w", err)
	}
	c, err := ssh.Dial(ctx, t.Machine, ssh.Options{
		ConnectTimeout: t.Timeout,
		Env:            func(k string) string { return t.Env[k] },
	})
	if err != nil {
		return nil, codedErr{err}
	}
	return sshRemote{c}, nil
}

// codedErr carries the kind of a dial error to the hook.
type codedErr struct{ error }

func (e codedErr) MuxCode() uint32 { return uint32(ErrCode(e.error)) }
func (e codedErr) Unwrap() error   { return e.error }

// sshRemote runs relayed commands on an SSH connection.
type sshRemote struct{ c *ssh.Client }

func (r sshRemote) Close() error { return r.c.Close() }
func (r sshRemote) Err() error   { return r.c.Err() }

func (r sshRemote) Ping(ctx context.Context) error { return r.c.Ping(ctx) }

// copyBuf is the relay's copy buffer: large, so a NAR crosses the relay in
// few reads and writes.
const copyBuf = 256 << 10

func (r sshRemote) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, started func()) (mux.Exit, error) {
	sess, err := r.c.Start(ctx, argv)
	if err != nil {
		return mux.Exit{}, codedErr{err}
	}
	started()
	return attach(ctx, sess, sess.Wait, stdin, stdout, stderr)
}

// attach copies between a running session and a hook's streams until the
// session ends; wait returns how it ended.
func attach(ctx context.Context, sess *ssh.Session, wait func() error, stdin io.Reader, stdout, stderr io.Writer) (mux.Exit, error) {
	go func() {
		io.CopyBuffer(sess.Stdin, stdin, make([]byte, copyBuf))
		sess.Stdin.Close()
	}()
	errDone := make(chan struct{})
	go func() {
		io.CopyBuffer(stderr, sess.Stderr, make([]byte, 32<<10))
		close(errDone)
	}()
	io.CopyBuffer(stdout, sess.Stdout, make([]byte, copyBuf))
	<-errDone
	err := wait()
	var ee *ssh.ExitError
	switch {
	case ctx.Err() != nil:
		// The hook went away and the session was closed for it: the
		// connection itself is fine.
		return mux.Exit{Code: -1, Signal: "HUP"}, nil
	case err == nil:
		return mux.Exit{}, nil
	case errors.As(err, &ee):
		return mux.Exit{Code: ee.Code, Signal: ee.Signal}, nil
	}
	return mux.Exit{}, codedErr{err}
}

// readyStore is how many store commands (nix-store --serve --write, or
// nix-daemon --stdio for ssh-ng://) a relay keeps started per builder: a hook is handed one at once, and
// the builder's session and nix-store start (most of a connection's time
// on a near builder) happen before the hook asks.
const readyStore = 2

// readyFor is the relay's mux.Server.Ready: store commands only.
func readyFor(target string, argv []string) int {
	var t relayTarget
	if json.Unmarshal([]byte(target), &t) != nil || Supported(&t.Machine) != nil {
		return 0
	}
	if slices.Equal(argv, ssh.RemoteCommand(t.Machine, t.Machine.Scheme == "ssh-ng")) {
		return readyStore
	}
	return 0
}

// StartAhead starts argv for a hook yet to come.
func (r sshRemote) StartAhead(argv []string) (mux.Started, error) {
	ctx, cancel := context.WithCancel(context.Background())
	sess, err := r.c.Start(ctx, argv)
	if err != nil {
		cancel()
		return nil, codedErr{err}
	}
	a := &sshAhead{sess: sess, cancel: cancel, done: make(chan struct{})}
	go func() {
		a.err = sess.Wait()
		close(a.done)
	}()
	return a, nil
}

// sshAhead is a command started ahead on an SSH connection. Whether it
// has ended is known without reading its output: its exit status comes
// on the channel.
type sshAhead struct {
	sess   *ssh.Session
	cancel context.CancelFunc
	done   chan struct{}
	err    error // how it ended, once done
}

func (a *sshAhead) Err() error {
	select {
	case <-a.done:
		if a.err == nil {
			return errors.New("exited")
		}
		return a.err
	default:
		return nil
	}
}

func (a *sshAhead) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (mux.Exit, error) {
	defer context.AfterFunc(ctx, a.cancel)()
	return attach(ctx, a.sess, func() error { <-a.done; return a.err }, stdin, stdout, stderr)
}

// Close ends the command without waiting: on a dead connection the
// wait would be as long as the keepalives take.
func (a *sshAhead) Close() error {
	a.cancel()
	return nil
}
