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
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
)

var update = flag.Bool("update", false, "rewrite testdata/replies from the real nix-store --serve")

// drvsNix are the derivations the tests build; nixtest.Instantiate
// defines mk.
const drvsNix = `{
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

var drvNames = []string{"ok", "fail", "sleep", "multi"}

func TestRealServe(t *testing.T) {
	s := nixtest.NewStore(t, "nix-store")
	drvs, drvPaths := s.Instantiate(t, drvsNix, drvNames...)
	sess, err := serveIn(t, s, "", true)
	if err != nil {
		t.Fatal(err)
	}
	rec := nixtest.NewReplies(sess.Rec)
	rec.Mark("")

	// Handshake: Nix 2.8 announces 2.7.
	if v := sess.ServerVersion(); v != 0x207 {
		t.Errorf("ServerVersion() = %#x, want 0x207 (Nix 2.8)", v)
	}
	if v := sess.Version(); v != 0x207 {
		t.Errorf("Version() = %#x, want 0x207", v)
	}

	cl := nixtest.MakeClosure()
	queryValid := func(p []string) ([]string, error) { return sess.QueryValidPaths(p, true, false) }
	cl.CheckNoneValid(t, queryValid)

	cl.Upload(t, func(p func(string, uint64, uint64)) { sess.opts.Progress = p }, sess.AddToStoreNars)
	rec.Mark("")

	cl.CheckAllValid(t, queryValid, nixtest.RandomStorePath("missing"))
	rec.Mark("validpaths")

	infos, err := sess.QueryPathInfos(append(cl.Paths(), nixtest.RandomStorePath("missing")))
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("pathinfos")
	if len(infos) != len(cl.Infos) {
		t.Fatalf("QueryPathInfos returned %d infos, want %d: %+v", len(infos), len(cl.Infos), infos)
	}
	for _, want := range cl.Infos {
		i := slices.IndexFunc(infos, func(p store.PathInfo) bool { return p.Path == want.Path })
		if i < 0 {
			t.Errorf("QueryPathInfos lacks %s", want.Path)
			continue
		}
		got := infos[i]
		if got.NarHash != want.NarHash || got.NarSize != want.NarSize ||
			!slices.Equal(nixtest.Sorted(got.References), nixtest.Sorted(want.References)) {
			t.Errorf("QueryPathInfos(%s) = %+v, want %+v", want.Path, got, want)
		}
		digest, err := got.NarDigest()
		if err != nil {
			t.Fatal(err)
		}
		if nar := cl.NARs[slices.IndexFunc(cl.Infos, func(p store.PathInfo) bool { return p.Path == want.Path })]; digest != sha256.Sum256(nar) {
			t.Errorf("NarDigest(%s) = %x, want sha256 of the NAR", want.Path, digest)
		}
	}
	// The uploaded files are really there, in the private store.
	s.CheckUploaded(t, cl)

	closure, err := sess.QueryClosure([]string{cl.Infos[2].Path}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nixtest.Sorted(closure), nixtest.Sorted(cl.Paths())) {
		t.Errorf("QueryClosure(a) = %q, want %q", closure, cl.Paths())
	}
	rec.Mark("")

	// A successful build, then the output copied back.
	res, err := sess.BuildDerivation(drvPaths["ok"], drvs["ok"], nil, store.BuildOptions{MaxSilentTime: time.Minute, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-built")
	out := drvs["ok"].Outputs[0].Path
	nixtest.CheckBuilt(t, res, out)
	outInfos, err := sess.QueryPathInfos([]string{out})
	if err != nil || len(outInfos) != 1 {
		t.Fatalf("QueryPathInfos(%s) = %+v, %v", out, outInfos, err)
	}
	s.CheckOutput(t, outInfos[0], sess.DumpStorePath)
	rec.Mark("")

	// Two outputs, sent sorted by name.
	res, err = sess.BuildDerivation(drvPaths["multi"], drvs["multi"], nil, store.BuildOptions{})
	if err != nil || res.Status != store.Built || len(res.BuiltOutputs) != 2 {
		t.Fatalf("BuildDerivation(multi) = %+v, %v; want Built with 2 outputs", res, err)
	}
	rec.Mark("build-multi")

	// A failing build: the session survives.
	res, err = sess.BuildDerivation(drvPaths["fail"], drvs["fail"], nil, store.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-failed")
	nixtest.CheckFailed(t, res)
	// The log travels on the remote's stderr, a separate stream, so it
	// may arrive a little after the result.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(sess.Stderr.String(), "going to fail") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(sess.Stderr.String(), "going to fail") {
		t.Errorf("the build log did not reach the remote's stderr: %q", sess.Stderr.String())
	}

	// max-silent-time on the builder.
	start := time.Now()
	res, err = sess.BuildDerivation(drvPaths["sleep"], drvs["sleep"], nil, store.BuildOptions{MaxSilentTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec.Mark("build-timedout")
	t.Logf("timed-out build took %v", time.Since(start))
	nixtest.CheckTimedOut(t, res, start)

	if _, err := sess.QueryValidPaths([]string{out}, false, false); err != nil {
		t.Errorf("session unusable after failed builds: %v", err)
	}

	if *update {
		rec.Save(t)
	}
}

// TestRealServeInvalidDump: asking for the NAR of an invalid path makes the
// server exit; the error carries its message and the session is dead.
func TestRealServeInvalidDump(t *testing.T) {
	s := nixtest.NewStore(t, "nix-store")
	sess, err := serveIn(t, s, "", false)
	if err != nil {
		t.Fatal(err)
	}
	missing := nixtest.RandomStorePath("missing")
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
	s := nixtest.NewStore(t, "nix-store")
	sess, err := serveIn(t, s, "", false)
	if err != nil {
		t.Fatal(err)
	}
	cl := nixtest.MakeClosure()
	cl.Infos[1].NarHash = nixtest.NarHash([]byte("something else"))
	err = sess.AddToStoreNars(cl.Infos, cl.Open)
	if err == nil {
		t.Fatal("AddToStoreNars with a wrong hash succeeded")
	}
	if !strings.Contains(err.Error(), cl.Infos[1].Path) || !strings.Contains(err.Error(), "hash mismatch") {
		t.Errorf("AddToStoreNars error = %v; want the path %s and the server's hash mismatch", err, cl.Infos[1].Path)
	}
	sess2, err := serveIn(t, s, "", false)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := sess2.QueryValidPaths(cl.Paths(), false, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(valid, cl.Paths()[:1]) {
		t.Errorf("valid after failed upload = %q, want only %q", valid, cl.Paths()[:1])
	}
}

// TestRealServeChattyShell: a shell startup file that prints to stdout
// before nix-store starts.
func TestRealServeChattyShell(t *testing.T) {
	s := nixtest.NewStore(t, "nix-store")
	_, err := serveIn(t, s, `echo "Welcome to builder1!"`, false)
	nixtest.CheckShellNoise(t, err, "nix-store --serve")
}

// TestRealServeNotFound: the remote command does not exist. The error has
// the remote shell's message.
func TestRealServeNotFound(t *testing.T) {
	s := nixtest.NewStore(t, "nix-store")
	_, err := serveIn(t, s, `PATH=/nonexistent`, false)
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
	s := nixtest.NewStore(t, "nix-store")
	cl := nixtest.MakeClosure()
	rw, err := serveIn(t, s, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.AddToStoreNars(cl.Infos, cl.Open); err != nil {
		t.Fatal(err)
	}
	ro, err := startIn(t, s, "exec nix-store --serve", false)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := ro.QueryPathInfos(cl.Paths())
	if err != nil || len(infos) != len(cl.Infos) {
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
	err = ro.AddToStoreNars([]store.PathInfo{{Path: nixtest.RandomStorePath("x"), NarSize: 1, NarHash: nixtest.NarHash(nil)}},
		func(int) (io.Reader, error) { return strings.NewReader("x"), nil })
	if err == nil || !strings.Contains(err.Error(), "importing paths is not allowed") {
		t.Errorf("AddToStoreNars without --write = %v, want the server's refusal", err)
	}
}
