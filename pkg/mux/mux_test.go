// SPDX-License-Identifier: MIT

package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
)

// localRemote runs commands on this machine with /bin/sh, as a remote
// user's shell would.
type localRemote struct {
	closed *atomic.Int32
	err    *atomic.Value // an error: Err's answer
	ahead  *atomic.Int32 // commands started ahead
}

func (l localRemote) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, started func()) (Exit, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", strings.Join(argv, " "))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return Exit{}, err
	}
	started()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws := ee.Sys().(syscall.WaitStatus); ws.Signaled() {
			return Exit{Code: -1, Signal: ws.Signal().String()}, nil
		}
		return Exit{Code: ee.ExitCode()}, nil
	}
	return Exit{}, err
}

func (l localRemote) Err() error {
	if l.err == nil {
		return nil
	}
	err, _ := l.err.Load().(error)
	if _, silent := err.(silentErr); silent {
		return nil // gone without a word: only a ping finds out
	}
	return err
}

func (l localRemote) Close() error {
	l.closed.Add(1)
	return nil
}

// breaksRemote's connection breaks once each command has started.
type breaksRemote struct{}

func (breaksRemote) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer, started func()) (Exit, error) {
	started()
	return Exit{}, codeErr{}
}
func (breaksRemote) Err() error   { return nil }
func (breaksRemote) Close() error { return nil }

type codeErr struct{}

func (codeErr) Error() string   { return "no route to nowhere" }
func (codeErr) MuxCode() uint32 { return 7 }

type testServer struct {
	*Server
	dir    string
	sock   string
	dials  atomic.Int32
	closed atomic.Int32
	ahead  atomic.Int32
	// err is the next Remote's Err answer, settable later.
	err    atomic.Pointer[atomic.Value]
	done   chan error
	cancel context.CancelFunc
}

func startServer(t *testing.T, idle time.Duration, uid int, opts ...func(*Server)) *testServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mux")
	ln, lock, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{dir: dir, sock: SocketPath(dir), done: make(chan error, 1)}
	ts.Server = &Server{
		Idle: idle,
		UID:  uid,
		Logf: t.Logf,
		Dial: func(ctx context.Context, target string) (Remote, error) {
			if target == "nowhere" {
				return nil, codeErr{}
			}
			if target == "breaks" {
				return breaksRemote{}, nil
			}
			ts.dials.Add(1)
			v := new(atomic.Value)
			ts.err.Store(v)
			return localRemote{&ts.closed, v, &ts.ahead}, nil
		},
	}
	for _, o := range opts {
		o(ts.Server)
	}
	ts.Server.Lock = lock
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() {
		ts.done <- ts.Serve(ctx, ln)
		lock.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return ts
}

func run(t *testing.T, sock, target, cmd, stdin string) (stdout, stderr string, exit Exit, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Start(ctx, sock, target, []string{cmd})
	if err != nil {
		return "", "", Exit{}, err
	}
	defer s.Release()
	defer s.Close()
	go func() {
		io.WriteString(s.Stdin, stdin)
		s.Stdin.Close()
	}()
	var eb bytes.Buffer
	errDone := make(chan struct{})
	go func() { io.Copy(&eb, s.Stderr); close(errDone) }()
	out, _ := io.ReadAll(s.Stdout)
	<-errDone
	exit, err = s.Wait()
	return string(out), eb.String(), exit, err
}

func TestRelay(t *testing.T) {
	ts := startServer(t, time.Minute, -1)
	tests := []struct {
		cmd, stdin, out, errOut string
		exit                    Exit
	}{
		{"cat", "hello\n", "hello\n", "", Exit{}},
		{"echo oops >&2; exit 3", "", "", "oops\n", Exit{Code: 3}},
		{"head -c 3000000 /dev/zero | wc -c; cat >/dev/null", strings.Repeat("x", 1<<20), "3000000\n", "", Exit{}},
		{"kill -TERM $$", "", "", "", Exit{Code: -1, Signal: "terminated"}},
	}
	for _, tt := range tests {
		out, errOut, exit, err := run(t, ts.sock, "b1", tt.cmd, tt.stdin)
		if err != nil || out != tt.out || errOut != tt.errOut || exit != tt.exit {
			t.Errorf("run %q = %q, %q, %+v, %v; want %q, %q, %+v", tt.cmd, out, errOut, exit, err, tt.out, tt.errOut, tt.exit)
		}
	}
	// One warm connection served every command.
	if n := ts.dials.Load(); n != 1 {
		t.Errorf("dialled %d times for one target, want 1", n)
	}
	_, _, _, err := run(t, ts.sock, "nowhere", "true", "")
	var me *Error
	if !errors.As(err, &me) || me.Code != 7 || me.Msg != "no route to nowhere" || me.Lost {
		t.Errorf("run on a target that cannot be dialled = %v, want *Error code 7", err)
	}
	// A connection that breaks while a command runs: the client learns
	// why, with the code (a keepalive timeout is told from a reset).
	_, _, _, err = run(t, ts.sock, "breaks", "true", "")
	if !errors.As(err, &me) || me.Code != 7 || !me.Lost {
		t.Errorf("run on a connection that breaks = %v, want a lost *Error with code 7", err)
	}
}

func TestNoServer(t *testing.T) {
	_, err := Start(context.Background(), filepath.Join(t.TempDir(), "sock"), "b1", []string{"true"})
	if !errors.Is(err, ErrNoServer) {
		t.Errorf("Start without a server = %v, want ErrNoServer", err)
	}
}

func TestWrongUIDRefused(t *testing.T) {
	ts := startServer(t, time.Minute, os.Getuid()+1)
	_, _, _, err := run(t, ts.sock, "b1", "true", "")
	if !errors.Is(err, ErrNoServer) {
		t.Errorf("run as another uid = %v, want refused (ErrNoServer)", err)
	}
	if n := ts.dials.Load(); n != 0 {
		t.Errorf("dialled %d times for a refused client", n)
	}
}

func TestIdleExit(t *testing.T) {
	ts := startServer(t, 200*time.Millisecond, -1)
	if _, _, _, err := run(t, ts.sock, "b1", "sleep 0.4", ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case err := <-ts.done:
		ts.done <- err // for the cleanup
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("exited %v after the last session, want about 200ms", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server still running 5 s after its last session")
	}
	if n := ts.closed.Load(); n != 1 {
		t.Errorf("closed %d remotes on exit, want 1", n)
	}
	if _, err := os.Stat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mux")
	ln, lock, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	defer ln.Close()
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {SocketPath(dir), 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil || fi.Mode().Perm() != c.mode {
			t.Errorf("mode of %s = %v, %v; want %#o", c.path, fi.Mode().Perm(), err, c.mode)
		}
	}
	if _, _, err := Listen(dir); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen = %v, want ErrRunning", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Listen(open); err == nil || !strings.Contains(err.Error(), "others may enter") {
		t.Errorf("Listen in a directory others may enter = %v", err)
	}
}

const envClient = "MUX_TEST_CLIENT"

// TestClientKilled starts a client process that runs a long command
// through the server and SIGKILLs it: the command must end at once, as it
// would when a direct connection drops.
func TestClientKilled(t *testing.T) {
	if sock := os.Getenv(envClient); sock != "" {
		pidFile := os.Getenv(envClient + "_PID")
		s, err := Start(context.Background(), sock, "b1", []string{"echo $$ > " + pidFile + "; exec sleep 60"})
		if err != nil {
			os.Exit(3)
		}
		s.Wait()
		os.Exit(4)
	}
	ts := startServer(t, time.Minute, -1)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(os.Args[0], "-test.run=^TestClientKilled$")
	cmd.Env = append(os.Environ(), envClient+"="+ts.sock, envClient+"_PID="+pidFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for i := 0; i < 500 && pid == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the remote command never started")
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatal("the remote command still runs 3 s after its client was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(encodeRequest("b1", []string{"nix-store", "--serve", "--write"})[4:])
	f.Add(encodeRequest("", nil)[4:])
	f.Add([]byte{0, 0, 0, 1, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		target, argv, err := decodeRequest(b)
		if err != nil {
			return
		}
		again := encodeRequest(target, argv)[4:]
		t2, a2, err := decodeRequest(again)
		if err != nil || t2 != target || len(a2) != len(argv) {
			t.Errorf("decode(encode(%q, %q)) = %q, %q, %v", target, argv, t2, a2, err)
		}
	})
}

const envNobodyServer = "MUX_TEST_NOBODY_SERVER"

// serveAsOther is the server TestOtherUsersServer starts as another
// user: it serves root, and records every request it gets in dir/got.
func serveAsOther(dir string) {
	ln, lock, err := Listen(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	defer lock.Close()
	s := &Server{UID: 0, Idle: time.Minute, Dial: func(ctx context.Context, target string) (Remote, error) {
		os.WriteFile(filepath.Join(dir, "got"), []byte(target), 0o644)
		return nil, errors.New("played the builder")
	}}
	s.Serve(context.Background(), ln)
	os.Exit(0)
}

// startAsNobody runs serveAsOther as the user nobody on base/mux and
// returns that directory once its socket listens.
func startAsNobody(t *testing.T, testName string) string {
	t.Helper()
	as := testenv.Nobody(t)
	bin, base := testenv.NobodyCopy(t)
	home := filepath.Join(base, "nobody")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, "mux")
	cmd := exec.Command(as[0], append(as[1:], bin, "-test.run=^"+testName+"$")...)
	cmd.Env = append(os.Environ(), envNobodyServer+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Logf("server as nobody: %s", stderr.String())
		}
	})
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(SocketPath(dir)); err == nil {
			return dir
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the server as nobody did not listen: %s", stderr.String())
	return ""
}

// TestOtherUsersServer: a client never sends a request to a server of
// another user, whether found in that user's directory (root with
// another user's XDG_RUNTIME_DIR) or moved into a directory of its own.
func TestOtherUsersServer(t *testing.T) {
	if dir := os.Getenv(envNobodyServer); dir != "" {
		serveAsOther(dir)
	}
	dir := startAsNobody(t, "TestOtherUsersServer")
	got := filepath.Join(dir, "got")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err := Start(ctx, SocketPath(dir), "secret target", []string{"true"})
	if !errors.Is(err, ErrNoServer) || !errors.Is(err, ErrUntrusted) {
		t.Errorf("Start on nobody's socket = %v, want ErrUntrusted (and ErrNoServer)", err)
	}
	if b, err := os.ReadFile(got); err == nil {
		t.Fatalf("nobody's server got the request %q", b)
	}

	// The same listener, in a directory of root's.
	own := filepath.Join(t.TempDir(), "mux")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(SocketPath(dir), SocketPath(own)); err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, SocketPath(own), "secret target", []string{"true"})
	if !errors.Is(err, ErrNoServer) || !errors.Is(err, ErrUntrusted) {
		t.Errorf("Start on nobody's listener in root's directory = %v, want ErrUntrusted (and ErrNoServer)", err)
	}
	if b, err := os.ReadFile(got); err == nil {
		t.Fatalf("nobody's server got the request %q", b)
	}
}

// TestIdleExitKeepsAccepted: a client accepted just as the Server decided
// it was idle must still get its command run to its end. Before, the
// Server's exit cancelled it, and the hook saw a refused or lost session
// on a builder that was fine.
func TestIdleExitKeepsAccepted(t *testing.T) {
	const idle = 50 * time.Millisecond
	var once atomic.Bool
	testOnlyAccepted = func() {
		if once.CompareAndSwap(false, true) {
			time.Sleep(4 * idle) // the idle check closes the listener meanwhile
		}
	}
	defer func() { testOnlyAccepted = nil }()
	ts := startServer(t, idle, -1)
	out, _, exit, err := run(t, ts.sock, "b1", "sleep 0.2; echo done", "")
	if err != nil || out != "done\n" || exit != (Exit{}) {
		t.Errorf("run while the server went idle = %q, %+v, %v; want done, exit 0", out, exit, err)
	}
	select {
	case err := <-ts.done:
		ts.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("server still running 5 s after its last session")
	}
}

// TestDeadRemoteNotUsed: a warm connection that died while idle (its
// keepalives went unanswered, or it closed) is dropped before a client
// is handed it.
func TestDeadRemoteNotUsed(t *testing.T) {
	ts := startServer(t, time.Minute, -1)
	if _, _, _, err := run(t, ts.sock, "b1", "true", ""); err != nil {
		t.Fatal(err)
	}
	ts.err.Load().Store(error(errors.New("no answer to keepalives")))
	out, _, exit, err := run(t, ts.sock, "b1", "echo ok", "")
	if err != nil || out != "ok\n" || exit != (Exit{}) {
		t.Errorf("run after the connection died = %q, %+v, %v; want ok, exit 0", out, exit, err)
	}
	if n := ts.dials.Load(); n != 2 {
		t.Errorf("dialled %d times, want 2 (the dead connection replaced)", n)
	}
	if n := ts.closed.Load(); n != 1 {
		t.Errorf("closed %d remotes, want the dead one", n)
	}
}

// staleOnNew makes a Server find itself stale when a client asks for
// the target "new".
func staleOnNew(s *Server) {
	s.Check = func(target string) error {
		if target == "new" {
			return fmt.Errorf("relay binary changed: %w", ErrStale)
		}
		return nil
	}
}

// TestStale: a Server whose Check finds it stale refuses with CodeServer
// (the client connects by itself) and stops accepting, so that the next
// client starts a fresh one.
func TestStale(t *testing.T) {
	ts := startServer(t, time.Minute, -1, staleOnNew)
	if _, _, _, err := run(t, ts.sock, "b1", "true", ""); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := run(t, ts.sock, "new", "true", "")
	var me *Error
	if !errors.As(err, &me) || me.Code != CodeServer {
		t.Fatalf("run on a stale server = %v, want a refusal with CodeServer", err)
	}
	select {
	case err := <-ts.done:
		ts.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("stale server still running")
	}
	if _, _, _, err := run(t, ts.sock, "b1", "true", ""); !errors.Is(err, ErrNoServer) {
		t.Errorf("run after the server stopped = %v, want ErrNoServer", err)
	}
}

// TestStaleFreesDir: a stale Server that still runs a session (a build
// that may take hours) lets a new Server listen in its directory at once,
// and the session goes on to its end.
func TestStaleFreesDir(t *testing.T) {
	ts := startServer(t, time.Minute, -1, staleOnNew)
	type result struct {
		out string
		err error
	}
	long := make(chan result, 1)
	go func() {
		out, _, _, err := run(t, ts.sock, "b1", "sleep 1; echo done", "")
		long <- result{out, err}
	}()
	for i := 0; ; i++ {
		ts.mu.Lock()
		active := ts.active
		ts.mu.Unlock()
		if active > 0 {
			break
		}
		if i == 500 {
			t.Fatal("the session did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, _, err := run(t, ts.sock, "new", "true", ""); err == nil {
		t.Fatal("a stale server served a new client")
	}
	ln, lock, err := Listen(ts.dir)
	if err != nil {
		t.Fatalf("Listen while the stale server finishes a session = %v, want a new server's socket", err)
	}
	ln.Close()
	lock.Close()
	if r := <-long; r.err != nil || r.out != "done\n" {
		t.Errorf("the stale server's last session = %q, %v; want done", r.out, r.err)
	}
}

// localAhead is a command started ahead by localRemote.
type localAhead struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr io.ReadCloser
	done           chan struct{}
	state          *os.ProcessState
}

func (l localRemote) StartAhead(argv []string) (Started, error) {
	cmd := exec.Command("/bin/sh", "-c", strings.Join(argv, " "))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	errp, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &localAhead{cmd: cmd, stdin: in, stdout: out, stderr: errp, done: make(chan struct{})}
	go func() {
		a.state, _ = cmd.Process.Wait()
		close(a.done)
	}()
	if l.ahead != nil {
		l.ahead.Add(1)
	}
	return a, nil
}

func (a *localAhead) Err() error {
	select {
	case <-a.done:
		return fmt.Errorf("ended: %v", a.state)
	default:
		return nil
	}
}

func (a *localAhead) Attach(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (Exit, error) {
	stop := context.AfterFunc(ctx, func() { a.cmd.Process.Kill() })
	defer stop()
	go func() {
		io.Copy(a.stdin, stdin)
		a.stdin.Close()
	}()
	errDone := make(chan struct{})
	go func() { io.Copy(stderr, a.stderr); close(errDone) }()
	io.Copy(stdout, a.stdout)
	<-errDone
	<-a.done
	return Exit{Code: a.state.ExitCode()}, nil
}

func (a *localAhead) Close() error {
	a.cmd.Process.Kill()
	<-a.done
	a.stdin.Close()
	a.stdout.Close()
	a.stderr.Close()
	return nil
}

// waitReady waits until the Server holds n commands started ahead.
func waitReady(t *testing.T, ts *testServer, n int) {
	t.Helper()
	for i := 0; ; i++ {
		ts.mu.Lock()
		got := 0
		for _, as := range ts.ready {
			got += len(as)
		}
		ts.mu.Unlock()
		if got == n {
			return
		}
		if i == 500 {
			t.Fatalf("%d commands started ahead, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReady: the Server keeps commands started ahead, hands each to one
// client only, never hands out one that ended, and starts replacements.
func TestReady(t *testing.T) {
	ts := startServer(t, time.Minute, -1, func(s *Server) {
		s.Ready = func(target string, argv []string) int {
			if argv[0] == "cat" {
				return 2
			}
			return 0
		}
	})
	if out, _, _, err := run(t, ts.sock, "b1", "cat", "first\n"); err != nil || out != "first\n" {
		t.Fatalf("first run = %q, %v", out, err)
	}
	waitReady(t, ts, 2)
	if n := ts.ahead.Load(); n != 2 {
		t.Fatalf("started %d ahead after the first client, want 2", n)
	}

	// One started ahead dies while waiting: nobody gets it.
	ts.mu.Lock()
	dead := ts.ready[readyKey("b1", []string{"cat"})][0].st.(*localAhead)
	ts.mu.Unlock()
	dead.cmd.Process.Kill()
	<-dead.done

	// Eight clients at once: each gets its own command.
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			in := fmt.Sprintf("client %d\n", i)
			out, _, exit, err := run(t, ts.sock, "b1", "cat", in)
			if err == nil && (out != in || exit != (Exit{})) {
				err = fmt.Errorf("got %q, %+v; want %q, exit 0", out, exit, in)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	waitReady(t, ts, 2)
	// Sessions: 8 clients and 2 ahead, 8 to a connection: two dialled.
	if n := ts.dials.Load(); n > 2 {
		t.Errorf("dialled %d connections, want at most 2", n)
	}
}

// TestControl: Query reports what the Server holds, and Stop ends it.
func TestControl(t *testing.T) {
	ts := startServer(t, time.Minute, -1, func(s *Server) {
		s.Ready = func(target string, argv []string) int { return 1 }
		s.Name = func(target string) string { return "name of " + target }
	})
	if _, _, _, err := run(t, ts.sock, "b1", "cat", ""); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ts, 1)
	ctx := context.Background()
	got, err := Query(ctx, ts.sock)
	want := []Status{{Target: "name of b1", Connections: 1, Sessions: 0, Ready: 1}}
	if err != nil || len(got) != 1 || got[0] != want[0] {
		t.Errorf("Query = %+v, %v; want %+v", got, err, want)
	}
	if err := Stop(ctx, ts.sock); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	select {
	case err := <-ts.done:
		ts.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("server still running after Stop")
	}
	if _, err := Query(ctx, ts.sock); !errors.Is(err, ErrNoServer) {
		t.Errorf("Query after Stop = %v, want ErrNoServer", err)
	}
}

// Ping makes localRemote a Pinger: it answers unless told it is gone,
// then it waits for ctx, as a peer that went away without a word.
func (l localRemote) Ping(ctx context.Context) error {
	if l.err != nil {
		if _, silent := l.err.Load().(silentErr); silent {
			<-ctx.Done()
			return ctx.Err()
		}
	}
	return nil
}

// TestQuietRemotePinged: a connection quiet for a while is pinged before
// a client gets it, and one whose peer does not answer is replaced.
func TestQuietRemotePinged(t *testing.T) {
	defer func(a, b time.Duration) { pingAfter, pingTimeout = a, b }(pingAfter, pingTimeout)
	pingAfter, pingTimeout = 0, 100*time.Millisecond
	ts := startServer(t, time.Minute, -1)
	if _, _, _, err := run(t, ts.sock, "b1", "true", ""); err != nil {
		t.Fatal(err)
	}
	// Err does not see it: the peer is gone but nothing said so.
	ts.err.Load().Store(error(silentErr{}))
	out, _, exit, err := run(t, ts.sock, "b1", "echo ok", "")
	if err != nil || out != "ok\n" || exit != (Exit{}) {
		t.Errorf("run after the peer went silently = %q, %+v, %v; want ok", out, exit, err)
	}
	if n := ts.dials.Load(); n != 2 {
		t.Errorf("dialled %d times, want 2 (the silent connection replaced)", n)
	}
}

type silentErr struct{}

func (silentErr) Error() string { return "gone silently" }

// TestReadyAge: a command started ahead that no client took within
// readyAge is ended, not handed out: a client gets one started lately.
func TestReadyAge(t *testing.T) {
	defer func(a time.Duration) { readyAge = a }(readyAge)
	readyAge = 300 * time.Millisecond
	ts := startServer(t, 4*time.Second, -1, func(s *Server) {
		s.Ready = func(target string, argv []string) int { return 1 }
	})
	if _, _, _, err := run(t, ts.sock, "b1", "cat", ""); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ts, 1)
	waitReady(t, ts, 0) // ended by the Server's own tick
	if out, _, _, err := run(t, ts.sock, "b1", "cat", "again\n"); err != nil || out != "again\n" {
		t.Errorf("run after the command started ahead aged = %q, %v", out, err)
	}
}
