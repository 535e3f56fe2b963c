// SPDX-License-Identifier: MIT

// Package nixtest is what the tests of the store protocols (pkg/serve and
// pkg/daemon) share: a private Nix store in a mount namespace, a store
// program started in it, the NARs and path infos of small closures, and
// the recording of a server's replies for fuzz seeds. Only tests import it.
//
// A Store is a temporary directory bind-mounted over /nix inside a private
// mount namespace, so tests never touch the host's /nix/store; its
// nix.conf turns off build users, the sandbox and substituters. Tests that
// use it need root, unshare and Nix, and skip without them.
package nixtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// NarFile returns the NAR of a single regular file (src/libutil/archive.cc,
// dumpPath).
func NarFile(contents []byte, executable bool) []byte {
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

// BigNar returns a NAR of size bytes, of one file with varied contents,
// for benchmarks.
func BigNar(size int) []byte {
	contents := make([]byte, size-128) // the NAR's framing is 128 bytes
	for i := range contents {
		contents[i] = byte(i * 7)
	}
	return NarFile(contents, false)
}

// NarHash returns "sha256:<nix32>" of nar, as stores send it.
func NarHash(nar []byte) string {
	return store.FormatSHA256(sha256.Sum256(nar))
}

// RandomStorePath returns a store path with a random hash part.
func RandomStorePath(name string) string {
	var h [20]byte
	rand.Read(h[:])
	return "/nix/store/" + nixbase32.EncodeToString(h[:]) + "-" + name
}

// Tail keeps the last bytes written to it, like the SSH layer keeps the
// last lines of a remote's stderr. It is safe for concurrent use.
type Tail struct {
	mu   sync.Mutex
	buf  []byte
	done chan struct{}
}

// NewTail returns an empty Tail.
func NewTail() *Tail { return &Tail{done: make(chan struct{})} }

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 8<<10 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-4<<10:]...)
	}
	return len(p), nil
}

func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Close says the stream has ended.
func (t *Tail) Close() error {
	close(t.done)
	return nil
}

// Wait returns the tail once the stream has ended, or after a short while:
// what a client's Options.Stderr wants.
func (t *Tail) Wait() string {
	select {
	case <-t.done:
	case <-time.After(2 * time.Second):
	}
	return t.String()
}

// Store is a private Nix store for tests. Its nix.conf lies in the store
// directory, at /nix/etc inside the namespace, where users other than root
// can read it too.
type Store struct {
	// Dir holds nix/ (with nix/etc/nix.conf), home/ and work/, the
	// scratch directory that scripts know as $W.
	Dir string
}

// NewStore makes an empty store, or skips the test if this machine cannot
// run the given Nix programs in a private mount namespace.
func NewStore(t testing.TB, programs ...string) *Store {
	t.Helper()
	for _, tool := range append([]string{"unshare", "nix-instantiate"}, programs...) {
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
	s := &Store{Dir: t.TempDir()}
	for _, d := range []string{"nix/etc", "home", "work"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := "build-users-group =\nsandbox = false\nsubstituters =\n"
	if err := os.WriteFile(filepath.Join(s.Dir, "nix", "etc", "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// Command returns a command that runs script in the store's namespace,
// with $D naming s.Dir and $W the scratch directory s.Dir/work.
func (s *Store) Command(script string) *exec.Cmd {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-euc", `mount --bind "$D/nix" /nix; `+script)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"D=" + s.Dir,
		"W=" + filepath.Join(s.Dir, "work"),
		"HOME=" + filepath.Join(s.Dir, "home"),
		"NIX_CONF_DIR=/nix/etc",
	}
	return cmd
}

// Run runs script in the store's namespace and returns its stdout.
func (s *Store) Run(t testing.TB, script string) string {
	t.Helper()
	cmd := s.Command(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	return string(out)
}

// Path maps a store path to where it lies on the host.
func (s *Store) Path(p string) string {
	return filepath.Join(s.Dir, p)
}

// mkNix defines mk for the expressions Instantiate reads: mk name script is
// a derivation that runs script with /bin/sh.
const mkNix = `let mk = name: script: derivation {
  inherit name;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" script ];
};
in `

// Instantiate writes expr, a Nix expression of an attribute set of
// derivations, into the store and instantiates the attributes names.
// expr may use mk name script, a derivation that runs script with
// /bin/sh. It returns their parsed contents by name, with their .drv
// paths.
func (s *Store) Instantiate(t testing.TB, expr string, names ...string) (map[string]*drv.Derivation, map[string]string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, "work", "drvs.nix"), []byte(mkNix+expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out := s.Run(t, `for a in `+strings.Join(names, " ")+`; do nix-instantiate --quiet "$W/drvs.nix" -A $a 2>/dev/null; done`)
	paths := strings.Fields(out)
	if len(paths) != len(names) {
		t.Fatalf("nix-instantiate printed %q, want %d paths", out, len(names))
	}
	drvs := map[string]*drv.Derivation{}
	drvPaths := map[string]string{}
	for i, n := range names {
		d, err := drv.ReadFile(s.Path(paths[i]))
		if err != nil {
			t.Fatal(err)
		}
		drvs[n], drvPaths[n] = d, paths[i]
	}
	return drvs, drvPaths
}

// Process is a store program running in the store's namespace, for a
// client to talk to.
type Process struct {
	// Stdin is the program's stdin; closing it ends the program.
	Stdin io.WriteCloser
	// Stdout is its stdout, through Rec when recording.
	Stdout io.Reader
	// Stderr keeps the end of its stderr.
	Stderr *Tail
	// Rec, when recording, holds every byte the program sent on stdout.
	Rec *bytes.Buffer
}

// Start runs script, which ends by starting a store program (named by what
// in the test's log), in the store's namespace. With record, every byte it
// sends is kept in Process.Rec. When the test ends, its stdin is closed and
// it gets ten seconds to exit before it is killed.
func (s *Store) Start(t testing.TB, script, what string, record bool) *Process {
	t.Helper()
	cmd := s.Command(script)
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
	p := &Process{Stdin: stdin, Stdout: stdout, Stderr: NewTail()}
	go func() {
		io.Copy(p.Stderr, errPipe)
		p.Stderr.Close()
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
		if s := strings.TrimSpace(p.Stderr.String()); s != "" {
			t.Logf("%s stderr:\n%s", what, s)
		}
	})
	if record {
		p.Rec = new(bytes.Buffer)
		p.Stdout = io.TeeReader(stdout, p.Rec)
	}
	return p
}

// Closure is three store paths, a → b → c and a → c, with their NARs.
type Closure struct {
	Infos []store.PathInfo // dependencies first: c, b, a
	NARs  [][]byte
}

// MakeClosure returns a closure of new paths; a's NAR is several 64 KiB
// buffers long.
func MakeClosure() Closure {
	c, b, a := RandomStorePath("up-c"), RandomStorePath("up-b"), RandomStorePath("up-a")
	var cl Closure
	add := func(path string, contents string, exec bool, refs ...string) {
		nar := NarFile([]byte(contents), exec)
		cl.Infos = append(cl.Infos, store.PathInfo{
			Path:       path,
			References: refs,
			NarSize:    uint64(len(nar)),
			NarHash:    NarHash(nar),
		})
		cl.NARs = append(cl.NARs, nar)
	}
	add(c, "leaf\n", false)
	add(b, "uses "+c+"\n", true, c)
	add(a, strings.Repeat("uses "+b+" and "+c+"\n", 10000), false, b, c)
	return cl
}

// Open returns the NAR of Infos[i], as AddToStoreNars wants it.
func (cl Closure) Open(i int) (io.Reader, error) { return bytes.NewReader(cl.NARs[i]), nil }

// Paths returns the closure's store paths.
func (cl Closure) Paths() []string {
	var ps []string
	for _, p := range cl.Infos {
		ps = append(ps, p.Path)
	}
	return ps
}

// Sorted returns a sorted copy of s.
func Sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// CheckFailed fails t unless res is the failure of the test derivation
// "fail", which exits 1.
func CheckFailed(t testing.TB, res store.BuildResult) {
	t.Helper()
	if res.Status != store.PermanentFailure || res.Success() || !strings.Contains(res.ErrorMsg, "failed with exit code 1") {
		t.Errorf("BuildDerivation(fail) = %+v, want PermanentFailure with the exit code", res)
	}
}

// CheckTimedOut fails t unless res, of the test derivation "sleep" begun
// at start with a max-silent-time of 1 s, timed out well before its 30 s
// sleep ended.
func CheckTimedOut(t testing.TB, res store.BuildResult, start time.Time) {
	t.Helper()
	if res.Status != store.TimedOut {
		t.Errorf("BuildDerivation(sleep, max-silent-time 1) = %+v, want TimedOut", res)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timed-out build took %v", d)
	}
}

// Replies cuts what a server sent into its replies, by name, to seed fuzz
// targets.
type Replies struct {
	rec  *bytes.Buffer
	last int
	Got  map[string][]byte
}

// NewReplies cuts the bytes recorded in rec, from what is there now on.
func NewReplies(rec *bytes.Buffer) *Replies {
	return &Replies{rec: rec, last: rec.Len(), Got: map[string][]byte{}}
}

// Mark names the bytes received since the last mark; "" drops them.
func (r *Replies) Mark(name string) {
	b := r.rec.Bytes()
	if name != "" {
		r.Got[name] = slices.Clone(b[r.last:])
	}
	r.last = len(b)
}

// repliesDir is where Save keeps the replies, in the test's package.
var repliesDir = filepath.Join("testdata", "replies")

// Save writes each reply to testdata/replies/<name>.bin.
func (r *Replies) Save(t testing.TB) {
	t.Helper()
	dir := repliesDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range r.Got {
		if err := os.WriteFile(filepath.Join(dir, name+".bin"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadReplies returns the replies Save wrote whose names begin with
// prefix, to seed a fuzz target. It fails t if there are none.
func ReadReplies(t testing.TB, prefix string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repliesDir, prefix+"*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no %s*.bin", filepath.Join(repliesDir, prefix))
	}
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Drv is a derivation with one output and nothing else a builder needs,
// for clients fed made-up replies.
var Drv = &drv.Derivation{
	Outputs:  []drv.Output{{Name: "out", Path: "/nix/store/00000000000000000000000000000000-p"}},
	Platform: "x86_64-linux",
	Builder:  "/bin/sh",
}

// Discard is a writer that drops what it is given. Unlike io.Discard it
// is only an io.Writer, so copies into it take the plain path.
type Discard struct{}

func (Discard) Write(p []byte) (int, error) { return len(p), nil }

// CheckDecodedBuildResult fails t if res, decoded from fuzzed bytes, has
// an error message longer than maxErrorMsg or an output whose name is not
// the end of its id.
func CheckDecodedBuildResult(t testing.TB, res store.BuildResult, maxErrorMsg int) {
	t.Helper()
	if len(res.ErrorMsg) > maxErrorMsg {
		t.Fatalf("error message of %d bytes passed the cap", len(res.ErrorMsg))
	}
	for _, o := range res.BuiltOutputs {
		if !strings.HasSuffix(o.ID, "!"+o.Name) {
			t.Fatalf("output %+v: name not taken from the id", o)
		}
	}
}

// signalWriter counts what it is given and says when it has want bytes.
type signalWriter struct {
	mu      sync.Mutex
	n, want int
	got     chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(p)
	if w.n >= w.want && w.got != nil {
		close(w.got)
		w.got = nil
	}
	return len(p), nil
}

// AnswerNAR is a fake server's answer to a request for a NAR: it reads the
// request, an operation word and a store path, from r, then writes the
// words pre (the daemon's STDERR_LAST) and nar to w. It returns the first
// error of either stream.
func AnswerNAR(r *wire.Reader, w *wire.Writer, nar []byte, pre ...uint64) error {
	if _, err := r.Uint64(); err != nil {
		return err
	}
	if _, err := r.String(); err != nil {
		return err
	}
	for _, x := range pre {
		w.Uint64(x)
	}
	if err := w.Raw(nar); err != nil {
		return err
	}
	return w.Flush()
}

// fetchPath is the store path the NAR fetches of PassedOn and BenchFetch
// ask for.
const fetchPath = "/nix/store/00000000000000000000000000000000-p"

// PassedOn checks that fetch, a client's call that copies a NAR into w,
// passes on the sent bytes a server sent without waiting for the rest: it
// asks for a NAR 4096 bytes longer, as a server that announced a larger
// NAR and then stays silent would have it, and such a server must not
// have what it did send held back. name names fetch in messages.
func PassedOn(t testing.TB, name string, sent int, fetch func(path string, w io.Writer, narSize uint64) error) {
	t.Helper()
	w := &signalWriter{want: sent, got: make(chan struct{})}
	got := w.got
	done := make(chan error, 1)
	go func() { done <- fetch(fetchPath, w, uint64(sent)+4096) }()
	select {
	case <-got:
	case err := <-done:
		t.Fatalf("%s returned %v before passing on the %d bytes sent", name, err, sent)
	case <-time.After(5 * time.Second):
		w.mu.Lock()
		defer w.mu.Unlock()
		t.Fatalf("the writer got %d of the %d bytes sent within 5 s", w.n, sent)
	}
}

// Upload sends the closure cl with add, the client's AddToStoreNars, with
// a progress callback set through setProgress for the upload. It fails t if
// the callback reports more done than a path's size, or is called less
// than once per path.
func (cl Closure) Upload(t testing.TB, setProgress func(func(path string, done, size uint64)), add func([]store.PathInfo, func(int) (io.Reader, error)) error) {
	t.Helper()
	var calls int
	setProgress(func(path string, done, size uint64) {
		if done > size {
			t.Errorf("Progress(%s, %d, %d): done > size", path, done, size)
		}
		calls++
	})
	defer setProgress(nil)
	if err := add(cl.Infos, cl.Open); err != nil {
		t.Fatal(err)
	}
	if calls < len(cl.Infos) {
		t.Errorf("Progress called %d times, want at least once per path", calls)
	}
}

// CheckNoneValid fails t unless query, a client's QueryValidPaths, finds
// none of the closure's paths valid.
func (cl Closure) CheckNoneValid(t testing.TB, query func([]string) ([]string, error)) {
	t.Helper()
	valid, err := query(cl.Paths())
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) != 0 {
		t.Errorf("QueryValidPaths(new paths) = %q, want none", valid)
	}
}

// CheckAllValid fails t unless query, a client's QueryValidPaths, finds
// the closure's paths valid and missing not.
func (cl Closure) CheckAllValid(t testing.TB, query func([]string) ([]string, error), missing string) {
	t.Helper()
	valid, err := query(append(cl.Paths(), missing))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(Sorted(valid), Sorted(cl.Paths())) {
		t.Errorf("QueryValidPaths after upload = %q, want %q", valid, cl.Paths())
	}
}

// CheckShellNoise fails t unless err is the handshake error of a client
// whose remote shell printed "Welcome to builder1!" before program
// started, on the builder named test-builder.
func CheckShellNoise(t testing.TB, err error, program string) {
	t.Helper()
	if err == nil {
		t.Fatal("handshake through a chatty shell succeeded")
	}
	for _, want := range []string{`"Welcome to builder1!\n`, "before '" + program + "' started", ".bashrc", "test-builder: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("handshake error = %v; want it to contain %q", err, want)
		}
	}
}

// CheckUploaded fails t unless the closure's first two files are in the
// store with their contents and modes.
func (s *Store) CheckUploaded(t testing.TB, cl Closure) {
	t.Helper()
	if b, err := os.ReadFile(s.Path(cl.Infos[0].Path)); err != nil || string(b) != "leaf\n" {
		t.Errorf("uploaded %s reads %q, %v", cl.Infos[0].Path, b, err)
	}
	if fi, err := os.Stat(s.Path(cl.Infos[1].Path)); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("uploaded %s: %v; want executable", cl.Infos[1].Path, err)
	}
}

// CheckBuilt fails t unless res is the result of a first, successful
// build whose one output "out" is out.
func CheckBuilt(t testing.TB, res store.BuildResult, out string) {
	t.Helper()
	if res.Status != store.Built || !res.Success() || res.ErrorMsg != "" {
		t.Fatalf("BuildDerivation(ok) = %+v, want Built", res)
	}
	if res.StartTime.IsZero() || res.StopTime.Before(res.StartTime) || res.TimesBuilt != 1 {
		t.Errorf("BuildDerivation(ok) times = %v, %v, built %d", res.StartTime, res.StopTime, res.TimesBuilt)
	}
	if len(res.BuiltOutputs) != 1 || res.BuiltOutputs[0].Name != "out" || res.BuiltOutputs[0].OutPath != filepath.Base(out) {
		t.Errorf("BuiltOutputs = %+v, want out → %s", res.BuiltOutputs, filepath.Base(out))
	}
}

// CheckOutput fails t unless info, what a client reported about the
// output of the test derivation "ok", describes a file saying hi, and
// fetch, the client's call that copies a NAR into w, gives that NAR, which
// hashes as Nix's own tools say.
func (s *Store) CheckOutput(t testing.TB, info store.PathInfo, fetch func(path string, w io.Writer, narSize uint64) error) {
	t.Helper()
	want := NarFile([]byte("hi\n"), false)
	if info.NarSize != uint64(len(want)) || info.NarHash != NarHash(want) {
		t.Errorf("path info of %s = %+v, want the NAR of a file saying hi", info.Path, info)
	}
	var nar bytes.Buffer
	if err := fetch(info.Path, &nar, info.NarSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(nar.Bytes(), want) {
		t.Errorf("NAR of %s = %q, want %q", info.Path, nar.Bytes(), want)
	}
	digest, err := info.NarDigest()
	if err != nil || sha256.Sum256(nar.Bytes()) != digest {
		t.Errorf("sha256 of the NAR of %s does not match its narHash %s (%v)", info.Path, info.NarHash, err)
	}
	dumpSum := strings.Fields(s.Run(t, "nix-store --dump "+info.Path+" | sha256sum"))[0]
	if hex.EncodeToString(digest[:]) != dumpSum {
		t.Errorf("NarDigest(%s) = %x, nix-store --dump | sha256sum = %s", info.Path, digest, dumpSum)
	}
	if b32 := strings.TrimSpace(s.Run(t, "nix-hash --type sha256 --to-base32 "+dumpSum)); "sha256:"+b32 != info.NarHash {
		t.Errorf("nix-hash --to-base32 %s = %s, the client reported %s", dumpSum, b32, info.NarHash)
	}
}

// BenchFetch runs fetch, a client's call that copies a NAR into w, b.N
// times, each for nar, which the server sends whole.
func BenchFetch(b *testing.B, nar []byte, fetch func(path string, w io.Writer, narSize uint64) error) {
	Bench(b, len(nar), func() error { return fetch(fetchPath, io.Discard, uint64(len(nar))) })
}

// Bench runs op b.N times, each moving n bytes, and fails b at op's first
// error.
func Bench(b *testing.B, n int, op func() error) {
	b.SetBytes(int64(n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
}
