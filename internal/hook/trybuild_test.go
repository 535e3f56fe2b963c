// SPDX-License-Identifier: MIT

package hook

// The try path in process: a hook runs a request from its settings to its
// exit code against builders that are Go values (memBuilder, given to the
// hook through its dial field), and imports into a chroot store of its own
// with this machine's nix-store. No SSH and no builder's Nix are involved;
// internal/e2e runs the same path against real ones.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// memBuilder is a builder's store in memory. It has the paths in have;
// a build adds the derivation's outputs, whose NARs are in nars, unless
// build says otherwise; dump, if set, replaces the copy of a NAR.
type memBuilder struct {
	mu    sync.Mutex
	have  map[string]bool
	nars  map[string][]byte
	added map[string][]byte // the NARs uploaded
	build func(drvPath string) (store.BuildResult, error)
	dump  func(nar []byte, w io.Writer) error
	ops   []string
}

func newMemBuilder(nars map[string][]byte) *memBuilder {
	return &memBuilder{have: map[string]bool{}, nars: nars, added: map[string][]byte{}}
}

func (f *memBuilder) op(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, s)
}

// Ops returns the operations the builder was asked for, in order.
func (f *memBuilder) Ops() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.ops, " ")
}

func (f *memBuilder) QueryValidPaths(paths []string, lock, substitute bool) ([]string, error) {
	f.op("query-valid")
	f.mu.Lock()
	defer f.mu.Unlock()
	var valid []string
	for _, p := range paths {
		if f.have[p] {
			valid = append(valid, p)
		}
	}
	return valid, nil
}

func (f *memBuilder) QueryPathInfos(paths []string) ([]store.PathInfo, error) {
	f.op("query-infos")
	f.mu.Lock()
	defer f.mu.Unlock()
	var infos []store.PathInfo
	for _, p := range paths {
		if nar, ok := f.nars[p]; ok && f.have[p] {
			infos = append(infos, store.PathInfo{Path: p, NarHash: nixtest.NarHash(nar), NarSize: uint64(len(nar))})
		}
	}
	return infos, nil
}

func (f *memBuilder) AddToStoreNars(infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	f.op("add")
	for i := range infos {
		r, err := open(i)
		if err != nil {
			return err
		}
		nar, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.have[infos[i].Path] = true
		f.added[infos[i].Path] = nar
		f.mu.Unlock()
	}
	return nil
}

func (f *memBuilder) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error) {
	f.op("build")
	if f.build != nil {
		if res, err := f.build(drvPath); err != nil || !res.Success() {
			return res, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range d.Outputs {
		f.have[o.Path] = true
	}
	return store.BuildResult{Status: store.Built}, nil
}

func (f *memBuilder) DumpStorePath(path string, w io.Writer, narSize uint64) error {
	f.op("dump")
	f.mu.Lock()
	nar, ok := f.nars[path]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: no such path", path)
	}
	if f.dump != nil {
		return f.dump(nar, w)
	}
	_, err := w.Write(nar)
	return err
}

// tryEnv is what a hook runs in here: a chroot store (its root) holding a
// derivation with one output, out, whose NAR the builders have; the
// builders line; and the slot file, opened as another hook on the host
// sees it.
type tryEnv struct {
	root, stateDir string
	builders       string
	drvPath, out   string
	nar            []byte
	state          *slots.File
	// inputs is the input closure Nix sends after accept.
	inputs []string
	// conf is more settings, name and value.
	conf []string
}

func newTryEnv(t *testing.T, builders string) *tryEnv {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		testenv.Skip(t, "skipping: nix-store not found (the hook imports with it)")
	}
	if os.Geteuid() != 0 {
		testenv.Skip(t, "skipping: a chroot store needs root")
	}
	e := &tryEnv{
		root:     t.TempDir(),
		stateDir: t.TempDir(),
		builders: builders,
		drvPath:  nixtest.RandomStorePath("x.drv"),
		out:      nixtest.RandomStorePath("x"),
		nar:      nixtest.NarFile([]byte("built remotely\n"), false),
	}
	d := &drv.Derivation{
		Outputs:  []drv.Output{{Name: "out", Path: e.out}},
		Platform: "x86_64-linux",
		Builder:  "/bin/sh",
		Env:      []drv.EnvVar{{Key: "out", Value: e.out}},
	}
	if err := os.MkdirAll(filepath.Join(e.root, "nix/store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, e.drvPath), d.Format(), 0o444); err != nil {
		t.Fatal(err)
	}
	ms, _, err := spec.ParseBuilders(builders, spec.Options{LocalSystem: "x86_64-linux", Lenient: true, Name: "builders"})
	if err != nil {
		t.Fatal(err)
	}
	e.state, err = decide.OpenSlots(e.stateDir, ms, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.state.Close() })
	// Probed already: a probe beside the build would need a session.
	for _, m := range ms {
		e.state.SetExec(m.URI, time.Now(), nil)
	}
	return e
}

// nars is what the builders can send: the output's NAR.
func (e *tryEnv) nars() map[string][]byte {
	return map[string][]byte{e.out: e.nar}
}

// run runs a hook on one request that Nix cannot build locally, with
// builders reached through dial, and returns its exit code, what it wrote
// on standard error and the hook. accept says whether Nix's answer to
// "# accept" (the inputs, e.inputs, and the wanted output) follows the
// request.
func (e *tryEnv) run(t *testing.T, ctx context.Context, accept bool, dial func(context.Context, *spec.Machine) (*builder.Conn, error)) (int, string, *hook) {
	t.Helper()
	var in bytes.Buffer
	w := wire.NewWriter(&in)
	settings := map[string]string{
		"builders": e.builders,
		"system":   "x86_64-linux",
		"store":    "local?root=" + e.root,
	}
	hookproto.WriteSettings(w, settings, []string{"builders", "system", "store"})
	hookproto.WriteRequest(w, &hookproto.Request{System: "x86_64-linux", DrvPath: e.drvPath})
	if accept {
		w.Strings(e.inputs)
		w.Strings([]string{"out"})
	}
	w.Flush()
	// Written under the logger's lock, read once the hook has returned.
	var stderr strings.Builder
	cfg := testConfig(t, append([]string{"state-dir", e.stateDir, "load-aware", "false", "unhealthy-backoff", "1m", "unhealthy-backoff-max", "1h"}, e.conf...)...)
	h := newHook(hookproto.LvlError, cfg, Env{
		Stdin:  &in,
		Stderr: &stderr,
		Getenv: func(string) string { return "" },
		Now:    time.Now,
	})
	h.dial = dial
	code := h.main(ctx)
	return code, stderr.String(), h
}

// dialMem reaches the builders in fakes by URI; any other refuses the
// connection.
func dialMem(fakes map[string]*memBuilder) func(context.Context, *spec.Machine) (*builder.Conn, error) {
	return func(ctx context.Context, m *spec.Machine) (*builder.Conn, error) {
		f, ok := fakes[m.URI]
		if !ok {
			return nil, fmt.Errorf("%s: connection refused", m.URI)
		}
		return builder.NewConn(m, f, nil), nil
	}
}

// checkFree fails the test unless the slot file shows no slot held on any
// builder.
func (e *tryEnv) checkFree(t *testing.T) {
	t.Helper()
	for _, b := range e.state.Snapshot(nil) {
		if b.Busy != 0 || len(b.Running) != 0 {
			t.Errorf("%s holds %d slots at the end: %+v", b.URI, b.Busy, b.Running)
		}
	}
}

// builder returns uri's record in the slot file.
func (e *tryEnv) builder(t *testing.T, uri string) slots.Builder {
	t.Helper()
	for _, b := range e.state.Snapshot(nil) {
		if b.URI == uri {
			return b
		}
	}
	t.Fatalf("no record for %s in the slot file", uri)
	return slots.Builder{}
}

// lastDecision returns the last decision in the slot file's ring.
func (e *tryEnv) lastDecision(t *testing.T) slots.Decision {
	t.Helper()
	ds := e.state.Decisions(nil)
	if len(ds) == 0 {
		t.Fatal("no decision recorded")
	}
	return ds[len(ds)-1]
}

// imported reports whether out is valid in the local store, and fails the
// test if its files are there but it is not valid, or the other way round.
func (e *tryEnv) imported(t *testing.T, h *hook) bool {
	t.Helper()
	if h.store == nil {
		t.Fatalf("the hook opened no local store: %v", h.storeErr)
	}
	valid, err := h.store.Valid(context.Background(), []string{e.out})
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Lstat(filepath.Join(e.root, e.out))
	switch {
	case len(valid) == 1 && err != nil:
		t.Errorf("%s is valid but has no files: %v", e.out, err)
	case len(valid) == 0 && err == nil:
		t.Errorf("%s has files but is not valid: half imported", e.out)
	}
	return len(valid) == 1
}

// An accepted build: the hook accepts once connected, asks the builder
// what it lacks, builds, copies the output home and registers it, records
// the decision and the build, and frees its slot.
func TestTryBuilds(t *testing.T) {
	e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
	b1 := newMemBuilder(e.nars())
	code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
	if code != exitOK {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
	}
	if !strings.Contains(stderr, "# accept\nssh://b1\n") {
		t.Errorf("stderr lacks the accept of ssh://b1:\n%s", stderr)
	}
	if got, want := b1.Ops(), "query-valid build query-infos dump"; got != want {
		t.Errorf("builder operations %q, want %q", got, want)
	}
	if !e.imported(t, h) {
		t.Errorf("%s is not valid after the build", e.out)
	}
	if got, err := os.ReadFile(filepath.Join(e.root, e.out)); err != nil || string(got) != "built remotely\n" {
		t.Errorf("the output holds %q (%v), want what the builder built", got, err)
	}
	if d := e.lastDecision(t); d.Answer != pick.Accept || d.Builder != "ssh://b1" || d.Drv != decide.DrvName(e.drvPath) {
		t.Errorf("last decision %+v, want accept on ssh://b1 for %s", d, decide.DrvName(e.drvPath))
	}
	if b := e.builder(t, "ssh://b1"); b.Succeeded != 1 || b.Failed != 0 || b.BytesRecvd != uint64(len(e.nar)) {
		t.Errorf("ssh://b1 counts %d succeeded, %d failed, %d bytes received; want 1, 0, %d", b.Succeeded, b.Failed, b.BytesRecvd, len(e.nar))
	}
	e.checkFree(t)
}

// A builder that cannot be reached is marked unhealthy for every hook and
// not tried again; the build goes to the next builder, or, with none
// left, is declined (Nix then builds it locally or fails it).
func TestTryConnectFails(t *testing.T) {
	t.Run("next", func(t *testing.T) {
		// b1 is faster: it is tried first.
		e := newTryEnv(t, "ssh://b1 x86_64-linux - 1 2\nssh://b2 x86_64-linux - 1 1")
		b2 := newMemBuilder(e.nars())
		code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b2": b2}))
		if code != exitOK {
			t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
		}
		if !strings.Contains(stderr, "cannot build on 'ssh://b1'") || !strings.Contains(stderr, "# accept\nssh://b2\n") {
			t.Errorf("stderr does not say b1 failed and b2 accepted:\n%s", stderr)
		}
		if b := e.builder(t, "ssh://b1"); !b.UnhealthyUntil.After(time.Now()) || b.ConsecutiveFailures != 1 {
			t.Errorf("ssh://b1 after a failed connect: %+v, want unhealthy", b)
		}
		if !e.imported(t, h) {
			t.Errorf("%s is not valid after the build on b2", e.out)
		}
		if d := e.lastDecision(t); d.Answer != pick.Accept || d.Builder != "ssh://b2" {
			t.Errorf("last decision %+v, want accept on ssh://b2", d)
		}
		e.checkFree(t)
	})
	t.Run("decline", func(t *testing.T) {
		e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
		code, stderr, h := e.run(t, context.Background(), false, dialMem(nil))
		if code != exitOK {
			t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
		}
		if strings.Contains(stderr, "# accept") || !strings.Contains(stderr, "# decline\n") {
			t.Errorf("stderr, want a decline and no accept:\n%s", stderr)
		}
		if b := e.builder(t, "ssh://b1"); !b.UnhealthyUntil.After(time.Now()) {
			t.Errorf("ssh://b1 after a failed connect: %+v, want unhealthy", b)
		}
		if d := e.lastDecision(t); d.Answer != pick.Decline {
			t.Errorf("last decision %+v, want a decline", d)
		}
		if h.store != nil && e.imported(t, h) {
			t.Errorf("%s is valid after a decline", e.out)
		}
		e.checkFree(t)
	})
}

// A build that fails on the builder ends the hook with the code Nix 2.8 …
// 2.28 reads as a build failure (100) or a timeout (101); nothing is
// copied back.
func TestTryBuildFails(t *testing.T) {
	for _, tt := range []struct {
		status store.Status
		code   int
	}{
		{store.PermanentFailure, exitBuildFailed},
		{store.TimedOut, exitTimedOut},
		{store.MiscFailure, exitFailed},
	} {
		t.Run(tt.status.String(), func(t *testing.T) {
			e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
			b1 := newMemBuilder(e.nars())
			b1.build = func(string) (store.BuildResult, error) {
				return store.BuildResult{Status: tt.status, ErrorMsg: "builder for '\x1b[35;1mx.drv\x1b[0m' failed with exit code 1"}, nil
			}
			code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, "on 'ssh://b1' failed: builder for 'x.drv' failed with exit code 1") {
				t.Errorf("stderr lacks the build's failure, without colours:\n%s", stderr)
			}
			if strings.Contains(b1.Ops(), "dump") {
				t.Errorf("a failed build's outputs were copied: %s", b1.Ops())
			}
			if e.imported(t, h) {
				t.Errorf("%s is valid after a failed build", e.out)
			}
			if b := e.builder(t, "ssh://b1"); b.Failed != 1 || b.Succeeded != 0 || !b.UnhealthyUntil.IsZero() {
				t.Errorf("ssh://b1 after a failed build: %+v, want one failure, healthy", b)
			}
			e.checkFree(t)
		})
	}
}

// A copy back that fails half way leaves nothing half imported: the output
// is neither valid nor present, and the slot is free.
func TestTryCopyBackFails(t *testing.T) {
	for _, tt := range []struct {
		name string
		dump func(nar []byte, w io.Writer) error
	}{
		// The NAR stops early but the stream ends cleanly.
		{"truncated", func(nar []byte, w io.Writer) error {
			_, err := w.Write(nar[:len(nar)/2])
			return err
		}},
		// The connection breaks mid-NAR.
		{"broken", func(nar []byte, w io.Writer) error {
			w.Write(nar[:len(nar)/2])
			return fmt.Errorf("reading from the builder: %w", io.ErrUnexpectedEOF)
		}},
		// Other bytes of the announced size.
		{"corrupt", func(nar []byte, w io.Writer) error {
			bad := bytes.Clone(nar)
			bad[len(bad)-20] ^= 1
			_, err := w.Write(bad)
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
			b1 := newMemBuilder(e.nars())
			b1.dump = tt.dump
			code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
			if code != exitFailed {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, stderr)
			}
			if !strings.Contains(stderr, "copying outputs of '"+e.drvPath+"' from 'ssh://b1'") {
				t.Errorf("stderr does not say the copy back failed:\n%s", stderr)
			}
			if e.imported(t, h) {
				t.Errorf("%s is valid after a failed copy back", e.out)
			}
			if b := e.builder(t, "ssh://b1"); b.Failed != 1 || b.Succeeded != 0 {
				t.Errorf("ssh://b1 counts %d succeeded, %d failed; want 0, 1", b.Succeeded, b.Failed)
			}
			e.checkFree(t)
		})
	}
}

// A hook stopped mid-build (Nix's SIGTERM cancels its context, and the
// session closes) returns at once and frees its slot.
func TestTryCancelled(t *testing.T) {
	e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
	b1 := newMemBuilder(e.nars())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b1.build = func(string) (store.BuildResult, error) {
		// The slot is held while the build runs.
		if b := e.builder(t, "ssh://b1"); b.Busy != 1 || len(b.Running) != 1 || b.Running[0].Phase != slots.PhaseBuilding {
			t.Errorf("during the build: %d busy, %+v; want one slot building", b.Busy, b.Running)
		}
		cancel()
		return store.BuildResult{}, errors.New("session closed")
	}
	code, stderr, h := e.run(t, ctx, true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
	if code != exitFailed {
		t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	if strings.Contains(b1.Ops(), "dump") {
		t.Errorf("a cancelled build's outputs were copied: %s", b1.Ops())
	}
	if e.imported(t, h) {
		t.Errorf("%s is valid after a cancelled build", e.out)
	}
	if b := e.builder(t, "ssh://b1"); !b.UnhealthyUntil.IsZero() {
		t.Errorf("ssh://b1 is marked unhealthy after the hook was stopped: %+v", b)
	}
	e.checkFree(t)
}

// Inputs the builder lacks are uploaded from the local store (its
// nix-store --serve) before the build, and counted as sent.
func TestTryUploads(t *testing.T) {
	src := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(src, []byte("an input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
	out, err := exec.Command("nix-store", "--store", "local?root="+e.root, "--add", src).Output()
	if err != nil {
		t.Fatalf("nix-store --add: %v", err)
	}
	in := strings.TrimSpace(string(out))
	e.inputs = []string{in}
	b1 := newMemBuilder(e.nars())
	code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
	if code != exitOK {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
	}
	if got, want := b1.Ops(), "query-valid add build query-infos dump"; got != want {
		t.Errorf("builder operations %q, want %q", got, want)
	}
	nar := nixtest.NarFile([]byte("an input\n"), false)
	if got := b1.added[in]; !bytes.Equal(got, nar) {
		t.Errorf("the builder got %q for %s, want its NAR %q", got, in, nar)
	}
	if !e.imported(t, h) {
		t.Errorf("%s is not valid after the build", e.out)
	}
	if b := e.builder(t, "ssh://b1"); b.BytesSent != uint64(len(nar)) || b.BytesRecvd != uint64(len(e.nar)) {
		t.Errorf("ssh://b1 counts %d bytes sent, %d received; want %d, %d", b.BytesSent, b.BytesRecvd, len(nar), len(e.nar))
	}
	e.checkFree(t)
}

// An output the builder has already (another board built it there) is
// copied back without uploading or building anything.
func TestTryBuiltAlready(t *testing.T) {
	e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
	b1 := newMemBuilder(e.nars())
	b1.have[e.out] = true
	code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
	if code != exitOK {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
	}
	if got, want := b1.Ops(), "query-valid query-infos dump"; got != want {
		t.Errorf("builder operations %q, want %q", got, want)
	}
	if !e.imported(t, h) {
		t.Errorf("%s is not valid after the copy back", e.out)
	}
	if b := e.builder(t, "ssh://b1"); b.Succeeded != 1 {
		t.Errorf("ssh://b1 counts %d builds succeeded, want 1", b.Succeeded)
	}
	e.checkFree(t)
}
