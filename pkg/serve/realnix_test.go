// SPDX-License-Identifier: MIT

package serve

// Tests against the real `nix-store --serve --write` of the local Nix (2.8
// on the development machine). Each test gets its own empty store: a temp
// directory bind-mounted over /nix in a private mount namespace
// (unshare --mount), with NIX_CONF_DIR pointing at a nix.conf that turns
// off build users and the sandbox. They need root, unshare and nix-store,
// and skip without them.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
)

var update = flag.Bool("update", false, "rewrite testdata/replies from the real nix-store --serve")

const drvsNix = `
let mk = name: script: derivation {
  inherit name;
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" script ];
};
in {
  ok = mk "ok" "echo hi > $out";
  fail = mk "fail" "echo going to fail >&2; exit 1";
  sleep = mk "sleep" "/bin/sleep 30";
  multi = derivation {
    name = "multi";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    outputs = [ "out" "dev" ];
    args = [ "-c" "echo out > $out; echo dev > $dev" ];
  };
}
`

// instantiate writes the test derivations into the store and returns their
// parsed contents by attribute name, with their .drv paths.
func instantiate(t *testing.T, s *nixStore) (map[string]*drv.Derivation, map[string]string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "work", "drvs.nix"), []byte(drvsNix), 0o644); err != nil {
		t.Fatal(err)
	}
	out := s.run(t, `for a in ok fail sleep multi; do nix-instantiate --quiet "$W/drvs.nix" -A $a 2>/dev/null; done`)
	paths := strings.Fields(out)
	names := []string{"ok", "fail", "sleep", "multi"}
	if len(paths) != len(names) {
		t.Fatalf("nix-instantiate printed %q, want %d paths", out, len(names))
	}
	drvs := map[string]*drv.Derivation{}
	drvPaths := map[string]string{}
	for i, n := range names {
		d, err := drv.ReadFile(s.path(paths[i]))
		if err != nil {
			t.Fatal(err)
		}
		drvs[n], drvPaths[n] = d, paths[i]
	}
	return drvs, drvPaths
}

// closure is three store paths, a → b → c and a → c, with their NARs.
type closure struct {
	infos []store.PathInfo // dependencies first: c, b, a
	nars  [][]byte
}

func makeClosure() closure {
	c, b, a := randomStorePath("up-c"), randomStorePath("up-b"), randomStorePath("up-a")
	var cl closure
	add := func(path string, contents string, exec bool, refs ...string) {
		nar := narFile([]byte(contents), exec)
		cl.infos = append(cl.infos, store.PathInfo{
			Path:       path,
			References: refs,
			NarSize:    uint64(len(nar)),
			NarHash:    narHash(nar),
		})
		cl.nars = append(cl.nars, nar)
	}
	add(c, "leaf\n", false)
	add(b, "uses "+c+"\n", true, c)
	// A bigger one, several buffers long.
	add(a, strings.Repeat("uses "+b+" and "+c+"\n", 10000), false, b, c)
	return cl
}

func (cl closure) open(i int) (io.Reader, error) { return bytes.NewReader(cl.nars[i]), nil }

func (cl closure) paths() []string {
	var ps []string
	for _, p := range cl.infos {
		ps = append(ps, p.Path)
	}
	return ps
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// replies records the bytes of each reply the server sends, to seed the
// fuzz targets (written to testdata/replies with -update).
type replies struct {
	sess *session
	last int
	got  map[string][]byte
}

func (r *replies) mark(name string) {
	b := r.sess.rec.Bytes()
	if name != "" {
		r.got[name] = slices.Clone(b[r.last:])
	}
	r.last = len(b)
}

func TestRealServe(t *testing.T) {
	s := newNixStore(t)
	drvs, drvPaths := instantiate(t, s)
	sess, err := s.serve(t, "", true)
	if err != nil {
		t.Fatal(err)
	}
	rec := &replies{sess: sess, got: map[string][]byte{}}
	rec.mark("")

	// Handshake: Nix 2.8 announces 2.7.
	if v := sess.ServerVersion(); v != 0x207 {
		t.Errorf("ServerVersion() = %#x, want 0x207 (Nix 2.8)", v)
	}
	if v := sess.Version(); v != 0x207 {
		t.Errorf("Version() = %#x, want 0x207", v)
	}

	cl := makeClosure()
	valid, err := sess.QueryValidPaths(cl.paths(), true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) != 0 {
		t.Errorf("QueryValidPaths(new paths) = %q, want none", valid)
	}

	var progress uint64
	sess.opts.Progress = func(path string, done, size uint64) {
		if done > size {
			t.Errorf("Progress(%s, %d, %d): done > size", path, done, size)
		}
		progress++
	}
	if err := sess.AddToStoreNars(cl.infos, cl.open); err != nil {
		t.Fatal(err)
	}
	sess.opts.Progress = nil
	if progress < 3 {
		t.Errorf("Progress called %d times, want at least once per path", progress)
	}
	rec.mark("")

	valid, err = sess.QueryValidPaths(append(cl.paths(), randomStorePath("missing")), true, false)
	if err != nil {
		t.Fatal(err)
	}
	rec.mark("validpaths")
	if !slices.Equal(sorted(valid), sorted(cl.paths())) {
		t.Errorf("QueryValidPaths after upload = %q, want %q", valid, cl.paths())
	}

	infos, err := sess.QueryPathInfos(append(cl.paths(), randomStorePath("missing")))
	if err != nil {
		t.Fatal(err)
	}
	rec.mark("pathinfos")
	if len(infos) != len(cl.infos) {
		t.Fatalf("QueryPathInfos returned %d infos, want %d: %+v", len(infos), len(cl.infos), infos)
	}
	for _, want := range cl.infos {
		i := slices.IndexFunc(infos, func(p store.PathInfo) bool { return p.Path == want.Path })
		if i < 0 {
			t.Errorf("QueryPathInfos lacks %s", want.Path)
			continue
		}
		got := infos[i]
		if got.NarHash != want.NarHash || got.NarSize != want.NarSize ||
			!slices.Equal(sorted(got.References), sorted(want.References)) {
			t.Errorf("QueryPathInfos(%s) = %+v, want %+v", want.Path, got, want)
		}
		digest, err := got.NarDigest()
		if err != nil {
			t.Fatal(err)
		}
		if nar := cl.nars[slices.IndexFunc(cl.infos, func(p store.PathInfo) bool { return p.Path == want.Path })]; digest != sha256.Sum256(nar) {
			t.Errorf("NarDigest(%s) = %x, want sha256 of the NAR", want.Path, digest)
		}
	}
	// The uploaded files are really there, in the private store.
	if b, err := os.ReadFile(s.path(cl.infos[0].Path)); err != nil || string(b) != "leaf\n" {
		t.Errorf("uploaded %s reads %q, %v", cl.infos[0].Path, b, err)
	}
	if fi, err := os.Stat(s.path(cl.infos[1].Path)); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("uploaded %s: %v, mode %v; want executable", cl.infos[1].Path, err, fi.Mode())
	}

	closure, err := sess.QueryClosure([]string{cl.infos[2].Path}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(closure), sorted(cl.paths())) {
		t.Errorf("QueryClosure(a) = %q, want %q", closure, cl.paths())
	}
	rec.mark("")

	// A successful build, then the output copied back.
	res, err := sess.BuildDerivation(drvPaths["ok"], drvs["ok"], nil, store.BuildOptions{MaxSilentTime: time.Minute, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rec.mark("build-built")
	if res.Status != store.Built || !res.Success() || res.ErrorMsg != "" {
		t.Fatalf("BuildDerivation(ok) = %+v, want store.Built", res)
	}
	if res.StartTime.IsZero() || res.StopTime.Before(res.StartTime) || res.TimesBuilt != 1 {
		t.Errorf("BuildDerivation(ok) times = %v, %v, built %d", res.StartTime, res.StopTime, res.TimesBuilt)
	}
	out := drvs["ok"].Outputs[0].Path
	if len(res.BuiltOutputs) != 1 || res.BuiltOutputs[0].Name != "out" || res.BuiltOutputs[0].OutPath != filepath.Base(out) {
		t.Errorf("BuiltOutputs = %+v, want out → %s", res.BuiltOutputs, filepath.Base(out))
	}
	outInfos, err := sess.QueryPathInfos([]string{out})
	if err != nil || len(outInfos) != 1 {
		t.Fatalf("QueryPathInfos(%s) = %+v, %v", out, outInfos, err)
	}
	wantNar := narFile([]byte("hi\n"), false)
	if outInfos[0].NarSize != uint64(len(wantNar)) || outInfos[0].NarHash != narHash(wantNar) {
		t.Errorf("QueryPathInfos(%s) = %+v, want the NAR of a file saying hi", out, outInfos[0])
	}
	var nar bytes.Buffer
	if err := sess.DumpStorePath(out, &nar, outInfos[0].NarSize); err != nil {
		t.Fatal(err)
	}
	if digest, _ := outInfos[0].NarDigest(); sha256.Sum256(nar.Bytes()) != digest {
		t.Errorf("sha256 of DumpStorePath(%s) does not match its narHash", out)
	}
	// The hash decoding agrees with Nix's own tools.
	dumpSum := strings.Fields(s.run(t, "nix-store --dump "+out+" | sha256sum"))[0]
	if digest, _ := outInfos[0].NarDigest(); hex.EncodeToString(digest[:]) != dumpSum {
		t.Errorf("NarDigest(%s) = %x, nix-store --dump | sha256sum = %s", out, digest, dumpSum)
	}
	if b32 := strings.TrimSpace(s.run(t, "nix-hash --type sha256 --to-base32 "+dumpSum)); "sha256:"+b32 != outInfos[0].NarHash {
		t.Errorf("nix-hash --to-base32 %s = %s, server sent %s", dumpSum, b32, outInfos[0].NarHash)
	}
	if !bytes.Equal(nar.Bytes(), wantNar) {
		t.Errorf("DumpStorePath(%s) = %q, want %q", out, nar.Bytes(), wantNar)
	}
	rec.mark("")

	// Two outputs, sent sorted by name.
	res, err = sess.BuildDerivation(drvPaths["multi"], drvs["multi"], nil, store.BuildOptions{})
	if err != nil || res.Status != store.Built || len(res.BuiltOutputs) != 2 {
		t.Fatalf("BuildDerivation(multi) = %+v, %v; want store.Built with 2 outputs", res, err)
	}
	rec.mark("build-multi")

	// A failing build: the session survives.
	res, err = sess.BuildDerivation(drvPaths["fail"], drvs["fail"], nil, store.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.mark("build-failed")
	if res.Status != store.PermanentFailure || res.Success() || !strings.Contains(res.ErrorMsg, "failed with exit code 1") {
		t.Errorf("BuildDerivation(fail) = %+v, want store.PermanentFailure with the exit code", res)
	}
	// The log travels on the remote's stderr, a separate stream, so it
	// may arrive a little after the result.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(sess.stderr.String(), "going to fail") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(sess.stderr.String(), "going to fail") {
		t.Errorf("the build log did not reach the remote's stderr: %q", sess.stderr.String())
	}

	// max-silent-time on the builder.
	start := time.Now()
	res, err = sess.BuildDerivation(drvPaths["sleep"], drvs["sleep"], nil, store.BuildOptions{MaxSilentTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec.mark("build-timedout")
	if res.Status != store.TimedOut {
		t.Errorf("BuildDerivation(sleep, max-silent-time 1) = %+v, want store.TimedOut", res)
	}
	t.Logf("timed-out build took %v", time.Since(start))
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("timed-out build took %v", d)
	}

	if _, err := sess.QueryValidPaths([]string{out}, false, false); err != nil {
		t.Errorf("session unusable after failed builds: %v", err)
	}

	if *update {
		dir := filepath.Join("testdata", "replies")
		os.MkdirAll(dir, 0o755)
		for name, b := range rec.got {
			if err := os.WriteFile(filepath.Join(dir, name+".bin"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRealServeInvalidDump: asking for the NAR of an invalid path makes the
// server exit; the error carries its message and the session is dead.
func TestRealServeInvalidDump(t *testing.T) {
	s := newNixStore(t)
	sess, err := s.serve(t, "", false)
	if err != nil {
		t.Fatal(err)
	}
	missing := randomStorePath("missing")
	err = sess.DumpStorePath(missing, io.Discard, 1000)
	if err == nil {
		t.Fatal("DumpStorePath(invalid path) succeeded")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), missing) ||
		!strings.Contains(err.Error(), "is not valid") {
		t.Errorf("DumpStorePath(invalid) error = %v; want ErrUnexpectedEOF naming the path and the remote's reason", err)
	}
	if _, err := sess.QueryValidPaths([]string{missing}, false, false); !errors.Is(err, ErrBroken) {
		t.Errorf("QueryValidPaths after a dead session: %v, want ErrBroken", err)
	}
}

// TestRealServeBadHash: the second of three pipelined uploads has a wrong
// narHash. The server refuses it and exits; the error names that path and
// carries the server's message; the first path is valid and the others are
// not.
func TestRealServeBadHash(t *testing.T) {
	s := newNixStore(t)
	sess, err := s.serve(t, "", false)
	if err != nil {
		t.Fatal(err)
	}
	cl := makeClosure()
	cl.infos[1].NarHash = narHash([]byte("something else"))
	err = sess.AddToStoreNars(cl.infos, cl.open)
	if err == nil {
		t.Fatal("AddToStoreNars with a wrong hash succeeded")
	}
	if !strings.Contains(err.Error(), cl.infos[1].Path) || !strings.Contains(err.Error(), "hash mismatch") {
		t.Errorf("AddToStoreNars error = %v; want the path %s and the server's hash mismatch", err, cl.infos[1].Path)
	}
	sess2, err := s.serve(t, "", false)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := sess2.QueryValidPaths(cl.paths(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(valid, cl.paths()[:1]) {
		t.Errorf("valid after failed upload = %q, want only %q", valid, cl.paths()[:1])
	}
}

// TestRealServeChattyShell: a shell startup file that prints to stdout
// before nix-store starts.
func TestRealServeChattyShell(t *testing.T) {
	s := newNixStore(t)
	_, err := s.serve(t, `echo "Welcome to builder1!"`, false)
	if err == nil {
		t.Fatal("handshake through a chatty shell succeeded")
	}
	for _, want := range []string{`"Welcome to builder1!\n`, "before 'nix-store --serve' started", ".bashrc", "test-builder: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("handshake error = %v; want it to contain %q", err, want)
		}
	}
}

// TestRealServeNotFound: the remote command does not exist. The error has
// the remote shell's message.
func TestRealServeNotFound(t *testing.T) {
	s := newNixStore(t)
	_, err := s.serve(t, `PATH=/nonexistent`, false)
	if err == nil {
		t.Fatal("handshake without nix-store succeeded")
	}
	if !strings.Contains(err.Error(), "remote closed the connection") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("handshake error = %v; want EOF with the shell's 'not found'", err)
	}
}

// TestRealServeReadOnly: without --write, as the hook reads the local
// store, queries and dumps work and uploads are refused.
func TestRealServeReadOnly(t *testing.T) {
	s := newNixStore(t)
	cl := makeClosure()
	rw, err := s.serve(t, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.AddToStoreNars(cl.infos, cl.open); err != nil {
		t.Fatal(err)
	}
	ro, err := s.start(t, "exec nix-store --serve", false)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := ro.QueryPathInfos(cl.paths())
	if err != nil || len(infos) != len(cl.infos) {
		t.Fatalf("QueryPathInfos = %+v, %v", infos, err)
	}
	for _, info := range infos {
		h := sha256.New()
		if err := ro.DumpStorePath(info.Path, h, info.NarSize); err != nil {
			t.Fatal(err)
		}
		if digest, _ := info.NarDigest(); !bytes.Equal(h.Sum(nil), digest[:]) {
			t.Errorf("DumpStorePath(%s) does not hash to its narHash", info.Path)
		}
	}
	err = ro.AddToStoreNars([]store.PathInfo{{Path: randomStorePath("x"), NarSize: 1, NarHash: narHash(nil)}},
		func(int) (io.Reader, error) { return strings.NewReader("x"), nil })
	if err == nil || !strings.Contains(err.Error(), "importing paths is not allowed") {
		t.Errorf("AddToStoreNars without --write = %v, want the server's refusal", err)
	}
}
