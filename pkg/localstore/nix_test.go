// SPDX-License-Identifier: MIT

package localstore

// TestNix runs Import against the real nix-store on this machine without
// touching its store: it re-executes the test binary in a private mount
// namespace (CLONE_NEWNS, which Go makes private recursively) where a
// scratch directory is bind-mounted over /nix, with NIX_CONF_DIR pointing
// at a nix.conf of its own. It needs root, nix-store on PATH and an
// existing /nix to mount over; otherwise it is skipped.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/nar"
	"github.com/offload-nix/offload/pkg/store"
)

const (
	envInner   = "LOCALSTORE_TEST_INNER"
	envScratch = "LOCALSTORE_TEST_SCRATCH"
	marker     = "/nix/.localstore-test-scratch"
)

func TestMain(m *testing.M) {
	if os.Getenv(envInner) == "1" {
		if err := enterScratch(os.Getenv(envScratch)); err != nil {
			fmt.Fprintln(os.Stderr, "localstore test setup:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// enterScratch mounts scratch over /nix; it runs only in the private
// mount namespace.
func enterScratch(scratch string) error {
	if scratch == "" {
		return errors.New("no scratch directory")
	}
	for _, d := range []string{"nix/store", "nix/var/nix", "conf"} {
		if err := os.MkdirAll(filepath.Join(scratch, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount(filepath.Join(scratch, "nix"), "/nix", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting over /nix: %w", err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return err
	}
	conf := "build-users-group =\nsandbox = false\nsubstituters =\n"
	if err := os.WriteFile(filepath.Join(scratch, "conf/nix.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	os.Setenv("NIX_CONF_DIR", filepath.Join(scratch, "conf"))
	os.Unsetenv("NIX_REMOTE")
	os.Unsetenv("NIX_STORE_DIR")
	return nil
}

func TestNix(t *testing.T) {
	if os.Getenv(envInner) != "1" {
		runInner(t)
		return
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("not in the scratch store: %v", err)
	}
	t.Run("import with locks held", testImportLocked)
	t.Run("hash mismatch", testHashMismatch)
	t.Run("truncated", testTruncated)
	t.Run("missing reference", testMissingReference)
	t.Run("chroot store", testChroot)
	t.Run("one nix-store when references are known", testImportKnown)
	t.Run("unchecked nix-store that fails", testFallback)
	t.Run("registrar started ahead", testRegistrar)
}

// runInner re-executes TestNix in a private mount namespace.
func runInner(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root for a private mount namespace")
	}
	if _, err := exec.LookPath("nix-store"); err != nil {
		testenv.Skip(t, "no nix-store on PATH")
	}
	if fi, err := os.Stat("/nix"); err != nil || !fi.IsDir() {
		testenv.Skip(t, "no /nix to mount a scratch store over")
	}
	args := []string{"-test.run=^TestNix$", "-test.timeout=60s"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envInner+"=1", envScratch+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
}

type output struct {
	info store.PathInfo
	nar  []byte
}

// makeOutput builds a tree with build (outside the store), dumps it and
// describes it as path.
func makeOutput(t *testing.T, path string, refs []string, build func(dir string)) output {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "o")
	build(dir)
	var buf bytes.Buffer
	res, err := nar.Dump(&buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	return output{
		info: store.PathInfo{Path: path, References: refs, NarHash: store.FormatSHA256(res.SHA256), NarSize: res.Size},
		nar:  buf.Bytes(),
	}
}

func write(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// chain makes three outputs a -> b -> c, listed a, b, c.
func chain(t *testing.T) []output {
	c, b, a := nixtest.RandomStorePath("c"), nixtest.RandomStorePath("b"), nixtest.RandomStorePath("a")
	oc := makeOutput(t, c, nil, func(d string) { write(t, d, "leaf\n", 0o644) })
	ob := makeOutput(t, b, []string{c}, func(d string) {
		write(t, filepath.Join(d, "share/data"), "uses "+c+"\n", 0o644)
		write(t, filepath.Join(d, "empty"), "", 0o644)
		if err := os.Symlink(c, filepath.Join(d, "leaf")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(d, "emptydir"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	oa := makeOutput(t, a, []string{a, b}, func(d string) {
		write(t, filepath.Join(d, "bin/a"), "#!/bin/sh\nexec "+b+"/share/data "+a+"\n", 0o755)
	})
	drv := nixtest.RandomStorePath("a.drv")
	for _, o := range []*output{&oa, &ob, &oc} {
		o.info.Deriver = drv
	}
	return []output{oa, ob, oc}
}

func infosOf(outs []output) []store.PathInfo {
	var infos []store.PathInfo
	for _, o := range outs {
		infos = append(infos, o.info)
	}
	return infos
}

func newStore(t *testing.T, setting string) *Store {
	t.Helper()
	s, err := New(setting, []string{mustLookPath(t, "nix-store")}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLookPath(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func nixStore(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("nix-store", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %w: %s", cmd.Args, err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		return string(out), fmt.Errorf("%v printed %s", cmd.Args, s)
	}
	return string(out), nil
}

// holdLock starts a process that holds flock on path, as Nix does on
// "<out>.lock" while the hook runs, and waits until it holds it.
func holdLock(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("flock", path, "sleep", "300")
	if err := cmd.Start(); err != nil {
		testenv.Skip(t, "flock: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for range 200 {
		f, err := os.Open(path)
		if err == nil {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("flock %s never took the lock", path)
}

// opener serves the NARs of outs and records the order of requests.
func opener(outs []output, order *[]string) func(int) (io.ReadCloser, error) {
	return func(i int) (io.ReadCloser, error) {
		*order = append(*order, outs[i].info.Path)
		return io.NopCloser(bytes.NewReader(outs[i].nar)), nil
	}
}

func testImportLocked(t *testing.T) {
	outs := chain(t)
	for _, o := range outs {
		holdLock(t, o.info.Path+".lock")
	}
	s := newStore(t, "auto")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var order []string
	if err := s.Import(ctx, infosOf(outs), opener(outs, &order)); err != nil {
		t.Fatalf("Import: %v", err)
	}
	a, b, c := outs[0].info.Path, outs[1].info.Path, outs[2].info.Path
	if !slices.Equal(order, []string{c, b, a}) {
		t.Errorf("NARs opened in order %v, want references first %v", order, []string{c, b, a})
	}
	verify := exec.Command("nix-store", "--verify", "--check-contents")
	if out, err := verify.CombinedOutput(); err != nil || bytes.Contains(out, []byte("modified")) ||
		bytes.Contains(out, []byte("error")) || bytes.Contains(out, []byte("warning")) {
		t.Errorf("store does not verify: %v\n%s", err, out)
	}
	for _, o := range outs {
		out, err := nixStore(t, "-q", "--references", o.info.Path)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Fields(out)
		want := slices.Clone(o.info.References)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("references of %s = %v, want %v", o.info.Path, got, want)
		}
		if out, err := nixStore(t, "-q", "--deriver", o.info.Path); err != nil || strings.TrimSpace(out) != o.info.Deriver {
			t.Errorf("deriver of %s = %q, %v, want %s", o.info.Path, out, err, o.info.Deriver)
		}
	}
	// Canonicalised by nix-store, and what Nix dumps is what was sent.
	if fi, err := os.Stat(a + "/bin/a"); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("mode of %s/bin/a = %v, %v, want 0555", a, fi.Mode(), err)
	}
	for _, o := range outs {
		cmd := exec.Command("nix-store", "--dump", o.info.Path)
		if got, err := cmd.Output(); err != nil || !bytes.Equal(got, o.nar) {
			t.Errorf("nix-store --dump %s differs from the imported NAR (%v)", o.info.Path, err)
		}
	}
	if valid, err := s.Valid(ctx, []string{a, b, c, nixtest.RandomStorePath("nope")}); err != nil || !slices.Equal(valid, []string{a, b, c}) {
		t.Errorf("Valid = %v, %v, want %v", valid, err, []string{a, b, c})
	}

	// Importing again skips the valid paths and opens nothing.
	order = nil
	if err := s.Import(ctx, infosOf(outs), opener(outs, &order)); err != nil || len(order) != 0 {
		t.Errorf("second Import = %v, opened %v; want nil, nothing", err, order)
	}
}

// checkAbsent fails unless none of outs exists or is valid.
func checkAbsent(t *testing.T, s *Store, outs []output) {
	t.Helper()
	var paths []string
	for _, o := range outs {
		paths = append(paths, o.info.Path)
		if _, err := os.Lstat(s.realPath(o.info.Path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was left behind (%v)", s.realPath(o.info.Path), err)
		}
	}
	valid, err := s.Valid(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(valid) != 0 {
		t.Errorf("registered after a failed import: %v", valid)
	}
}

func testHashMismatch(t *testing.T) {
	outs := chain(t)
	corruptHash(&outs[0].info) // a, opened last
	s := newStore(t, "local")
	var order []string
	err := s.Import(context.Background(), infosOf(outs), opener(outs, &order))
	if err == nil || !strings.Contains(err.Error(), "NAR has hash") {
		t.Fatalf("Import = %v, want a hash mismatch", err)
	}
	if len(order) != 3 {
		t.Errorf("opened %v, want all three", order)
	}
	checkAbsent(t, s, outs)
}

func testTruncated(t *testing.T) {
	outs := chain(t)
	full := outs[1].nar // b, opened second
	outs[1].nar = full[:len(full)/2]
	s := newStore(t, "local")
	var order []string
	err := s.Import(context.Background(), infosOf(outs), opener(outs, &order))
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Import = %v, want a truncation error", err)
	}
	checkAbsent(t, s, outs)

	// Longer than announced: stopped at NarSize.
	outs[1].nar = append(slices.Clone(full), make([]byte, 64)...)
	outs[1].info.NarSize -= 8
	err = s.Import(context.Background(), infosOf(outs), opener(outs, &order))
	if !errors.Is(err, nar.ErrTooLarge) {
		t.Fatalf("Import = %v, want ErrTooLarge", err)
	}
	checkAbsent(t, s, outs)
}

func testMissingReference(t *testing.T) {
	outs := chain(t)
	outs = outs[:2] // a and b, but b refers to c
	s := newStore(t, "local")
	var order []string
	err := s.Import(context.Background(), infosOf(outs), opener(outs, &order))
	if err == nil || !strings.Contains(err.Error(), "not valid in the local store") {
		t.Fatalf("Import = %v, want a missing reference error", err)
	}
	if len(order) != 0 {
		t.Errorf("opened %v before checking references", order)
	}
	checkAbsent(t, s, outs)
}

func testChroot(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, "local?root="+root)
	if err := os.MkdirAll(s.RealDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := Version(ctx, s.NixStore)
	if err != nil {
		t.Fatal(err)
	}
	serve, err := s.useServe(ctx)
	if err != nil {
		if versionAtLeast(v, 2, 29) && !versionAtLeast(v, 2, 36) && errors.Is(err, ErrUnsupported) {
			t.Skipf("Nix %s cannot import into chroot stores: %v", v, err)
		}
		t.Fatal(err)
	}
	t.Logf("Nix %s, through nix-store --serve: %v", v, serve)

	outs := chain(t)
	for _, o := range outs {
		holdLock(t, s.realPath(o.info.Path)+".lock")
	}
	var order []string
	if err := s.Import(ctx, infosOf(outs), opener(outs, &order)); err != nil {
		t.Fatalf("Import into %s: %v", s.URI, err)
	}
	verify := exec.Command("nix-store", "--store", s.URI, "--verify", "--check-contents")
	if out, err := verify.CombinedOutput(); err != nil || bytes.Contains(out, []byte("modified")) ||
		bytes.Contains(out, []byte("error")) || bytes.Contains(out, []byte("warning")) {
		t.Errorf("store does not verify: %v\n%s", err, out)
	}
	a, b := outs[0].info.Path, outs[1].info.Path
	if out, err := nixStore(t, "--store", s.URI, "-q", "--references", a); err != nil || !slices.Contains(strings.Fields(out), b) {
		t.Errorf("references of %s = %q, %v, want %s among them", a, out, err, b)
	}

	// A NAR that does not match its hash: nothing valid, nothing left.
	bad := chain(t)
	corruptHash(&bad[0].info)
	err = s.Import(ctx, infosOf(bad[:1]), opener(bad[:1], &order))
	if err == nil {
		t.Fatal("Import of a NAR with the wrong hash succeeded")
	}
	checkAbsent(t, s, bad[:1])

	if !serve {
		return
	}
	// Why 2.8 goes through serve: its --register-validity looks for the
	// logical path. Force that route to show it, and that the failed
	// registration leaves nothing behind.
	s.version = "2.36.0"
	outs = chain(t)
	order = nil
	err = s.Import(ctx, infosOf(outs), opener(outs, &order))
	if err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Fatalf("register-validity in a chroot store with Nix %s = %v, want ENOENT (if it works, Nix was fixed: widen useServe)", v, err)
	}
	if len(order) != 3 {
		t.Errorf("opened %v, want all three", order)
	}
	checkAbsent(t, s, outs)
}

// countingStore returns a store whose nix-store is a script that logs
// each run to the returned file.
func countingStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	script := filepath.Join(dir, "nix-store")
	body := "#!/bin/sh\necho \"$*\" >> " + log + "\nexec " + mustLookPath(t, "nix-store") + " \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := New("auto", []string{script}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return s, log
}

func runs(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// A build's new outputs whose references are its inputs (valid) or each
// other take one nix-store run, the registration; a reference outside what
// the caller vouches for is still checked.
func testImportKnown(t *testing.T) {
	outs := chain(t) // a -> b -> c
	ctx := context.Background()
	s, log := countingStore(t)
	var order []string
	// c is an input, valid already.
	if err := s.Import(ctx, infosOf(outs[2:]), opener(outs[2:], &order)); err != nil {
		t.Fatal(err)
	}
	os.Remove(log)
	err := s.ImportWith(ctx, infosOf(outs[:2]), ImportOptions{Valid: []string{outs[2].info.Path}}, opener(outs[:2], &order))
	if err != nil {
		t.Fatalf("ImportWith: %v", err)
	}
	if r := runs(t, log); len(r) != 1 || !strings.Contains(r[0], "--register-validity") {
		t.Errorf("nix-store ran %q, want only --register-validity", r)
	}
	if valid, err := s.Valid(ctx, []string{outs[0].info.Path, outs[1].info.Path}); err != nil || len(valid) != 2 {
		t.Errorf("Valid after ImportWith = %v, %v", valid, err)
	}

	// Not vouched for: asked, and refused when invalid.
	more := chain(t)
	os.Remove(log)
	err = s.ImportWith(ctx, infosOf(more[1:2]), ImportOptions{Valid: []string{outs[2].info.Path}}, opener(more[1:2], &order))
	if err == nil || !strings.Contains(err.Error(), "not valid in the local store") {
		t.Errorf("ImportWith with an unknown invalid reference = %v", err)
	}
	if r := runs(t, log); len(r) != 1 || !strings.Contains(r[0], "--check-validity") {
		t.Errorf("nix-store ran %q, want one --check-validity", r)
	}
}

// A pick that is no nix-store is found out on the first failure and
// replaced by the first working fallback.
func testFallback(t *testing.T) {
	outs := chain(t)
	s, err := New("auto", []string{"/bin/false"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	s.Fallback = [][]string{{"/bin/true"}, {mustLookPath(t, "nix-store")}}
	var order []string
	if err := s.Import(context.Background(), infosOf(outs), opener(outs, &order)); err != nil {
		t.Fatalf("Import with a broken pick: %v", err)
	}
	if got := s.NixStore[0]; got != mustLookPath(t, "nix-store") {
		t.Errorf("NixStore after a failure = %v, want the working fallback", s.NixStore)
	}
}

// A Registrar started ahead registers the import with its own nix-store:
// no other runs. One aborted registers nothing and exits; one whose
// nix-store died before it was used leaves the registration to a new run.
func testRegistrar(t *testing.T) {
	ctx := context.Background()
	s, log := countingStore(t)
	outs := chain(t)
	reg := s.StartRegistrar()
	if reg == nil {
		t.Fatal("StartRegistrar = nil")
	}
	var order []string
	if err := s.ImportWith(ctx, infosOf(outs), ImportOptions{Registrar: reg}, opener(outs, &order)); err != nil {
		t.Fatalf("ImportWith: %v", err)
	}
	reg.Abort()
	if r := runs(t, log); len(r) != 1 || !strings.Contains(r[0], "--register-validity") {
		t.Errorf("nix-store ran %q, want only the registrar's --register-validity", r)
	}
	if valid, err := s.Valid(ctx, []string{outs[0].info.Path, outs[1].info.Path, outs[2].info.Path}); err != nil || len(valid) != 3 {
		t.Errorf("Valid after ImportWith = %v, %v", valid, err)
	}

	// Aborted unused: nothing registered, the process gone.
	reg = s.StartRegistrar()
	done := make(chan struct{})
	go func() { reg.Abort(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Abort of an unused registrar did not return")
	}
	if reg.cmd.ProcessState == nil || !reg.cmd.ProcessState.Exited() {
		t.Errorf("the aborted registrar's process: %v", reg.cmd.ProcessState)
	}

	// Died before use: Import registers with a run of its own.
	more := chain(t)
	broken, err := New("auto", []string{"/bin/true"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	dead := broken.StartRegistrar()
	<-dead.done
	if err := s.ImportWith(ctx, infosOf(more), ImportOptions{Registrar: dead}, opener(more, &order)); err != nil {
		t.Fatalf("ImportWith with a dead registrar: %v", err)
	}
	if valid, err := s.Valid(ctx, []string{more[0].info.Path}); err != nil || len(valid) != 1 {
		t.Errorf("Valid after ImportWith with a dead registrar = %v, %v", valid, err)
	}
}

// corruptHash flips a bit of info's NAR hash.
func corruptHash(info *store.PathInfo) {
	d, err := info.NarDigest()
	if err != nil {
		panic(err)
	}
	d[0] ^= 1
	info.NarHash = store.FormatSHA256(d)
}
