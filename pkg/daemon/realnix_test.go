// SPDX-License-Identifier: MIT

package daemon

// Tests against the real `nix-daemon --stdio` of the local Nix (2.8 on the
// development machine). Each test gets its own empty store: a temp
// directory bind-mounted over /nix in a private mount namespace
// (unshare --mount), with NIX_CONF_DIR pointing at a nix.conf that turns
// off build users and the sandbox. Run as root, `nix-daemon --stdio` opens
// that store directly and trusts its client; run as nobody it splices the
// connection to a socket `nix-daemon` in the same namespace, which does
// not. They need root, unshare, setpriv and nix-daemon, and skip without
// them.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/store"
)

var update = flag.Bool("update", false, "rewrite testdata/replies from the real nix-daemon --stdio")

// drvsNix are the derivations the tests build; nixtest.Instantiate
// defines mk.
const drvsNix = `{
  ok = mk "ok" "echo hi > $out";
  logs = mk "logs" ''
    echo first line
    echo '@nix {"action":"setPhase","phase":"slowPhase"}'
    /bin/sleep 1
    echo second line >&2
    echo done > $out
  '';
  fail = mk "fail" "echo going to fail >&2; exit 1";
  sleep = mk "sleep" "echo sleeping; /bin/sleep 30";
}
`

var drvNames = []string{"ok", "logs", "fail", "sleep"}

// logRecorder collects what the Client passes to Options.Log and
// Options.Phase, with the time each arrived.
type logRecorder struct {
	mu     sync.Mutex
	lines  []string
	times  []time.Time
	phases []string
}

func (l *logRecorder) log(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(line))
	l.times = append(l.times, time.Now())
}

func (l *logRecorder) phase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phases = append(l.phases, p)
}

func (l *logRecorder) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines, l.times, l.phases = nil, nil, nil
}

// find returns when the first line containing s arrived.
func (l *logRecorder) find(s string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, line := range l.lines {
		if strings.Contains(line, s) {
			return l.times[i], true
		}
	}
	return time.Time{}, false
}

func TestRealDaemon(t *testing.T) {
	s := nixtest.NewStore(t, "nix-daemon")
	drvs, drvPaths := s.Instantiate(t, drvsNix, drvNames...)
	logs := &logRecorder{}
	sess, err := stdioIn(t, s, Options{Log: logs.log, Phase: logs.phase}, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := nixtest.NewReplies(sess.Rec)
	rec.Mark("handshake")

	// Handshake: Nix 2.8 announces 1.34 and its version, and no trust
	// byte (that came with 1.35).
	if v := sess.DaemonVersion(); v != 0x122 {
		t.Errorf("DaemonVersion() = %#x, want 0x122 (1.34, Nix 2.8)", v)
	}
	if v := sess.Version(); v != 0x122 {
		t.Errorf("Version() = %#x, want 0x122", v)
	}
	if v := sess.NixVersion(); v != "2.8.0" {
		t.Errorf("NixVersion() = %q, want 2.8.0", v)
	}
	if known, _ := sess.Trusted(); known {
		t.Errorf("Trusted() known = true from a 1.34 daemon")
	}

	// Verbose enough that the daemon's own messages arrive too.
	if err := sess.SetOptions(Settings{Verbosity: LvlInfo}); err != nil {
		t.Fatal(err)
	}
	rec.Mark("setoptions")

	cl := nixtest.MakeClosure()
	cl.CheckNoneValid(t, func(p []string) ([]string, error) { return sess.QueryValidPaths(p, false) })
	rec.Mark("")

	cl.Upload(t, func(p func(string, uint64, uint64)) { sess.opts.Progress = p }, sess.AddToStoreNars)
	rec.Mark("upload")
	for _, p := range cl.Infos {
		if err := sess.AddTempRoot(p.Path); err != nil {
			t.Fatal(err)
		}
	}
	rec.Mark("")

	missing := nixtest.RandomStorePath("missing")
	cl.CheckAllValid(t, func(p []string) ([]string, error) { return sess.QueryValidPaths(p, true) }, missing)
	rec.Mark("validpaths")
	if ok, err := sess.IsValidPath(cl.Infos[0].Path); err != nil || !ok {
		t.Errorf("IsValidPath(%s) = %v, %v; want true", cl.Infos[0].Path, ok, err)
	}
	if ok, err := sess.IsValidPath(missing); err != nil || ok {
		t.Errorf("IsValidPath(missing) = %v, %v; want false", ok, err)
	}
	rec.Mark("")

	for i, want := range cl.Infos {
		got, ok, err := sess.QueryPathInfo(want.Path)
		if err != nil || !ok {
			t.Fatalf("QueryPathInfo(%s) = %v, %v", want.Path, ok, err)
		}
		if i == 2 {
			rec.Mark("pathinfo")
		}
		if got.Path != want.Path || got.NarHash != want.NarHash || got.NarSize != want.NarSize ||
			!slices.Equal(nixtest.Sorted(got.References), nixtest.Sorted(want.References)) {
			t.Errorf("QueryPathInfo(%s) = %+v, want %+v", want.Path, got, want)
		}
		if digest, err := got.NarDigest(); err != nil || digest != sha256.Sum256(cl.NARs[i]) {
			t.Errorf("NarDigest(%s) = %x, %v; want sha256 of the NAR", want.Path, digest, err)
		}
	}
	if _, ok, err := sess.QueryPathInfo(missing); err != nil || ok {
		t.Errorf("QueryPathInfo(missing) = %v, %v; want not valid", ok, err)
	}
	rec.Mark("pathinfo-invalid")
	infos, err := sess.QueryPathInfos(append(cl.Paths(), missing))
	if err != nil || len(infos) != 3 {
		t.Errorf("QueryPathInfos = %+v, %v; want the 3 uploaded paths", infos, err)
	}
	// The uploaded files are really there, in the private store.
	s.CheckUploaded(t, cl)
	rec.Mark("")

	// A successful build, then the output copied back.
	res, err := sess.BuildDerivation(drvPaths["ok"], drvs["ok"], nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-built")
	out := drvs["ok"].Outputs[0].Path
	nixtest.CheckBuilt(t, res, out)
	info, ok, err := sess.QueryPathInfo(out)
	if err != nil || !ok {
		t.Fatalf("QueryPathInfo(%s) = %v, %v", out, ok, err)
	}
	s.CheckOutput(t, info, sess.NarFromPath)
	// The uploaded big path comes back as it went.
	var nar bytes.Buffer
	if err := sess.NarFromPath(cl.Infos[2].Path, &nar, cl.Infos[2].NarSize); err != nil || !bytes.Equal(nar.Bytes(), cl.NARs[2]) {
		t.Errorf("NarFromPath(%s) = %d bytes, %v; want the uploaded NAR", cl.Infos[2].Path, nar.Len(), err)
	}
	rec.Mark("")

	// The log arrives while the build runs: the first line a second
	// before the build ends.
	logs.reset()
	res, err = sess.BuildDerivation(drvPaths["logs"], drvs["logs"], nil)
	returned := time.Now()
	if err != nil || res.Status != store.Built {
		t.Fatalf("BuildDerivation(logs) = %+v, %v; want Built", res, err)
	}
	rec.Mark("build-logs")
	first, ok1 := logs.find("first line")
	_, ok2 := logs.find("second line")
	if !ok1 || !ok2 {
		t.Errorf("log lines = %q, want first line and second line", logs.lines)
	} else if d := returned.Sub(first); d < 500*time.Millisecond {
		t.Errorf("first log line arrived %v before the build returned, want about 1s: not streamed", d)
	}
	for _, l := range logs.lines {
		if strings.HasSuffix(l, "\n") || strings.Contains(l, "@nix") {
			t.Errorf("log line %q: has a newline or a JSON message", l)
		}
	}
	if !slices.Equal(logs.phases, []string{"slowPhase"}) {
		t.Errorf("phases = %q, want [slowPhase]", logs.phases)
	}

	// A failing build: the session survives.
	logs.reset()
	res, err = sess.BuildDerivation(drvPaths["fail"], drvs["fail"], nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-failed")
	nixtest.CheckFailed(t, res)
	if strings.Contains(res.ErrorMsg, "\x1b") {
		t.Errorf("ErrorMsg has terminal escapes: %q", res.ErrorMsg)
	}
	if _, ok := logs.find("going to fail"); !ok {
		t.Errorf("log lines = %q, want going to fail", logs.lines)
	}

	// max-silent-time, sent with SetOptions. The verbosity drops to
	// LvlError, and build-log lines still arrive.
	if err := sess.SetOptions(Settings{Build: store.BuildOptions{MaxSilentTime: time.Second, Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	logs.reset()
	start := time.Now()
	res, err = sess.BuildDerivation(drvPaths["sleep"], drvs["sleep"], nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-timedout")
	nixtest.CheckTimedOut(t, res, start)
	if _, ok := logs.find("sleeping"); !ok {
		t.Errorf("log lines at LvlError = %q, want sleeping", logs.lines)
	}

	if _, err := sess.QueryValidPaths([]string{out}, false); err != nil {
		t.Errorf("session unusable after failed builds: %v", err)
	}

	// An invalid path's NAR: the daemon sends an error in its place and
	// exits.
	err = sess.NarFromPath(missing, io.Discard, 1000)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), missing) {
		t.Errorf("NarFromPath(invalid) = %v, want a *RemoteError naming the path", err)
	}
	if _, err := sess.QueryValidPaths([]string{out}, false); !errors.Is(err, ErrBroken) {
		t.Errorf("QueryValidPaths after the daemon exited = %v, want ErrBroken", err)
	}
	if *update {
		rec.Save(t)
	}
}

// TestRealDaemonBadUpload: the second of three paths has a wrong narHash,
// then a NAR shorter than its narSize. The daemon refuses each, the error
// names the cause, and the session goes on.
func TestRealDaemonBadUpload(t *testing.T) {
	s := nixtest.NewStore(t, "nix-daemon")
	sess, err := stdioIn(t, s, Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	cl := nixtest.MakeClosure()
	good := cl.Infos[1].NarHash
	cl.Infos[1].NarHash = nixtest.NarHash([]byte("something else"))
	err = sess.AddToStoreNars(cl.Infos, cl.Open)
	var re *RemoteError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "hash mismatch") || !strings.Contains(err.Error(), cl.Infos[1].Path) {
		t.Errorf("AddToStoreNars with a wrong hash = %v; want the daemon's hash mismatch for %s", err, cl.Infos[1].Path)
	}
	if errors.Is(err, ErrNotTrusted) {
		t.Errorf("hash mismatch matches ErrNotTrusted")
	}
	valid, err := sess.QueryValidPaths(cl.Paths(), false)
	if err != nil {
		t.Fatalf("session unusable after a refused upload: %v", err)
	}
	if !slices.Equal(valid, cl.Paths()[:1]) {
		t.Errorf("valid after failed upload = %q, want only %q", valid, cl.Paths()[:1])
	}

	// A NAR cut short on this side.
	cl.Infos[1].NarHash = good
	short := func(i int) (io.Reader, error) {
		if i == 2 {
			return bytes.NewReader(cl.NARs[i][:1000]), nil
		}
		return cl.Open(i)
	}
	err = sess.AddToStoreNars(cl.Infos, short)
	if err == nil || !strings.Contains(err.Error(), "NAR has 1000 bytes") {
		t.Errorf("AddToStoreNars with a short NAR = %v, want the short NAR named", err)
	}
	valid, err = sess.QueryValidPaths(cl.Paths(), false)
	if err != nil {
		t.Fatalf("session unusable after a short NAR: %v", err)
	}
	if !slices.Equal(nixtest.Sorted(valid), nixtest.Sorted(cl.Paths()[:2])) {
		t.Errorf("valid after a short NAR = %q, want %q", valid, cl.Paths()[:2])
	}
	// And a single path with AddToStoreNar.
	if err := sess.AddToStoreNar(cl.Infos[2], bytes.NewReader(cl.NARs[2])); err != nil {
		t.Fatal(err)
	}
	if ok, err := sess.IsValidPath(cl.Infos[2].Path); !ok || err != nil {
		t.Errorf("IsValidPath after AddToStoreNar = %v, %v", ok, err)
	}
}

// TestRealDaemonUntrusted: nobody's `nix-daemon --stdio` goes through the
// socket daemon, which does not trust it: unsigned uploads and
// input-addressed builds are refused with ErrNotTrusted and a hint.
func TestRealDaemonUntrusted(t *testing.T) {
	s := nixtest.NewStore(t, "nix-daemon")
	if _, err := exec.LookPath("setpriv"); err != nil {
		testenv.Skip(t, "skipping: setpriv not found")
	}
	drvs, drvPaths := s.Instantiate(t, drvsNix, drvNames...)
	script := `
nix-daemon </dev/null >/dev/null 2>"$W/daemon.log" &
daemon=$!
trap 'kill $daemon' EXIT
i=0; while [ ! -S /nix/var/nix/daemon-socket/socket ]; do i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.05; done
HOME=/nonexistent setpriv --reuid=nobody --regid=nogroup --clear-groups nix-daemon --stdio
`
	sess, err := startIn(t, s, script, Options{}, true)
	if err != nil {
		t.Fatal(err)
	}
	rec := nixtest.NewReplies(sess.Rec)
	rec.Mark("")
	cl := nixtest.MakeClosure()
	err = sess.AddToStoreNars(cl.Infos, cl.Open)
	rec.Mark("untrusted-upload")
	if !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("unsigned upload as an untrusted user = %v, want ErrNotTrusted", err)
	}
	for _, want := range []string{"lacks a valid signature", "trusted-users", "require-sigs = false", "test-builder: AddMultipleToStore"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Logf("untrusted upload: %v", err)
	if strings.Contains(err.Error(), "\x1b") {
		t.Errorf("error has terminal escapes: %q", err)
	}
	valid, err := sess.QueryValidPaths(cl.Paths(), false)
	if err != nil || len(valid) != 0 {
		t.Errorf("QueryValidPaths after the refused upload = %q, %v; want none, and the session alive", valid, err)
	}
	_, err = sess.BuildDerivation(drvPaths["ok"], drvs["ok"], nil)
	if !errors.Is(err, ErrNotTrusted) || !strings.Contains(err.Error(), "trusted-users") {
		t.Errorf("BuildDerivation as an untrusted user = %v, want ErrNotTrusted", err)
	}
	if *update {
		rec.Save(t)
	}
}

// TestRealDaemonChattyShell: a shell startup file that prints to stdout
// before nix-daemon starts.
func TestRealDaemonChattyShell(t *testing.T) {
	s := nixtest.NewStore(t, "nix-daemon")
	_, err := startIn(t, s, `echo "Welcome to builder1!"; exec nix-daemon --stdio`, Options{}, false)
	nixtest.CheckShellNoise(t, err, "nix-daemon --stdio")
}
