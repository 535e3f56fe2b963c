// SPDX-License-Identifier: MIT

package daemon

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/store"
)

// narFile returns the NAR of a single regular file (src/libutil/archive.cc,
// dumpPath).
func narFile(contents []byte, executable bool) []byte {
	var b bytes.Buffer
	str := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	str("nix-archive-1")
	str("(")
	str("type")
	str("regular")
	if executable {
		str("executable")
		str("")
	}
	str("contents")
	str(string(contents))
	str(")")
	return b.Bytes()
}

// narHash returns "sha256:<nix32>" of nar.
func narHash(nar []byte) string {
	sum := sha256.Sum256(nar)
	return store.FormatSHA256(sum)
}

// randomStorePath returns a store path with a random hash part.
func randomStorePath(name string) string {
	var h [20]byte
	rand.Read(h[:])
	return "/nix/store/" + nixbase32.EncodeToString(h[:]) + "-" + name
}

// tail keeps the last bytes written to it, like the SSH layer keeps the
// last lines of a remote's stderr.
type tail struct {
	mu   sync.Mutex
	buf  []byte
	done chan struct{}
}

func newTail() *tail { return &tail{done: make(chan struct{})} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8<<10 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-4<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// wait returns the tail once the stream has ended, or after a short while.
func (t *tail) wait() string {
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
	return t.String()
}

// nixStore is a private Nix store for tests: a directory that is
// bind-mounted over /nix inside a private mount namespace, so tests never
// touch the host's /nix/store. Its nix.conf lies in the store directory,
// at /nix/etc inside the namespace, where users other than root can read
// it too.
type nixStore struct {
	dir string // holds nix/ (with nix/etc/nix.conf), home/, work/
}

// newNixStore makes an empty store, or skips the test if this machine
// cannot run Nix in a private mount namespace.
func newNixStore(t testing.TB) *nixStore {
	t.Helper()
	for _, tool := range []string{"unshare", "nix-daemon", "nix-instantiate"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, "skipping: %s not found (tests against real Nix need nix-bin and util-linux)", tool)
		}
	}
	if fi, err := os.Stat("/nix"); err != nil || !fi.IsDir() {
		testenv.Skip(t, "skipping: /nix does not exist to mount a private store over")
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		testenv.Skip(t, "skipping: cannot create a mount namespace (needs root): %v: %s", err, out)
	}
	s := &nixStore{dir: t.TempDir()}
	for _, d := range []string{"nix/etc", "home", "work"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := "build-users-group =\nsandbox = false\nsubstituters =\n"
	if err := os.WriteFile(filepath.Join(s.dir, "nix", "etc", "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// command returns a command that runs script in the store's namespace,
// with $W naming the scratch directory s.dir/work.
func (s *nixStore) command(script string) *exec.Cmd {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-euc", `mount --bind "$D/nix" /nix; `+script)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"D=" + s.dir,
		"W=" + filepath.Join(s.dir, "work"),
		"HOME=" + filepath.Join(s.dir, "home"),
		"NIX_CONF_DIR=/nix/etc",
	}
	return cmd
}

// run runs script in the store's namespace and returns its stdout.
func (s *nixStore) run(t testing.TB, script string) string {
	t.Helper()
	cmd := s.command(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return string(out)
}

// path maps a store path to where it lies on the host.
func (s *nixStore) path(p string) string {
	return filepath.Join(s.dir, p)
}

// session is a `nix-daemon --stdio` process and a Client talking to it.
type session struct {
	*Client
	stdin  io.WriteCloser
	stderr *tail
	rec    *bytes.Buffer // everything the daemon sent, if recording
}

// stdio starts `nix-daemon --stdio` as root in the store's namespace,
// which opens the store directly and trusts its client.
func (s *nixStore) stdio(t testing.TB, opts Options, record bool) (*session, error) {
	t.Helper()
	return s.start(t, "exec nix-daemon --stdio", opts, record)
}

// start runs script, which ends by starting a worker-protocol server, and
// connects a Client to it.
func (s *nixStore) start(t testing.TB, script string, opts Options, record bool) (*session, error) {
	t.Helper()
	cmd := s.command(script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sess := &session{stdin: stdin, stderr: newTail()}
	go func() {
		io.Copy(sess.stderr, errPipe)
		close(sess.stderr.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if s := strings.TrimSpace(sess.stderr.String()); s != "" {
			t.Logf("nix-daemon stderr:\n%s", s)
		}
	})
	var r io.Reader = stdout
	if record {
		sess.rec = new(bytes.Buffer)
		r = io.TeeReader(stdout, sess.rec)
	}
	if opts.Host == "" {
		opts.Host = "test-builder"
	}
	opts.Stderr = sess.stderr.wait
	c, err := New(r, stdin, opts)
	if err != nil {
		return sess, err
	}
	sess.Client = c
	return sess, nil
}
