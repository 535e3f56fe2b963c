// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

// errCopyStopped ends a NAR stream that its reader gave up on.
var errCopyStopped = errors.New("copy stopped")

// connect dials the builder and starts its store protocol there, all
// within the connect timeout (internal/builder).
func (h *hook) connect(ctx context.Context, m *spec.Machine) (*builder.Conn, error) {
	if err := builder.Supported(m); err != nil {
		return nil, err
	}
	id := h.log.Start(hookproto.LvlTalkative, hookproto.ActUnknown, fmt.Sprintf("connecting to '%s'", m.URI))
	defer h.log.Stop(id)
	return builder.Dial(ctx, m, h.dialOptions())
}

// dialOptions are how this hook reaches builders.
func (h *hook) dialOptions() builder.Options {
	o := builder.Options{
		ConnectTimeout: h.cfg.ConnectTimeout(),
		Getenv:         h.env.Getenv,
		Logf:           h.log.Warnf,
		// Why the relay was not used: one line at -v.
		Debugf:     func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) },
		Substitute: h.settings["builders-use-substitutes"] == "true",
	}
	if p := h.cfg.Duration("connect-persist"); p > 0 {
		o.Relay, o.Persist = builder.RelayDir(h.env.Getenv, h.cfg.StateDir()), p
	}
	return o
}

// build runs an accepted build to its end and returns the exit code. A
// build that fails on a builder emulating its system is built again on a
// native one (emulation.go). slot is the caller's reservation's, which it
// releases.
func (h *hook) build(ctx context.Context, c *builder.Conn, m *spec.Machine, slot *slots.Slot, req *hookproto.Request, j *job) int {
	inputs, wanted, err := hookproto.ReadAccepted(h.in)
	if err != nil {
		h.log.Errorf("%v", err)
		c.Close()
		return exitFailed
	}
	defer func() { j.reg.Abort() }()
	i := h.decision.Index
	code, failed := h.buildOn(ctx, c, m, slot, req, j, inputs, wanted)
	if failed == nil || ctx.Err() != nil || !h.retryable(i, failed.Status) {
		return code
	}
	return h.retryNative(ctx, i, req, j, inputs, wanted, code)
}

// buildOn copies the inputs to c's builder, builds there and brings the
// outputs home, then closes c and releases slot. It returns the exit code,
// and the build's result when the build itself failed.
func (h *hook) buildOn(ctx context.Context, c *builder.Conn, m *spec.Machine, slot *slots.Slot, req *hookproto.Request, j *job, inputs, wanted []string) (int, *store.BuildResult) {
	// On SIGTERM (Nix ≥ 2.35 sends it 500 ms before SIGKILL) the session
	// closes at once, since it was started with ctx (pkg/ssh): whatever
	// waits on the builder returns, and the builder's nix-store --serve
	// sees the hangup and stops the build (TestHookKilledMidBuild).
	defer c.Close()
	ok := false
	var sent, received int64
	defer func() {
		if slot != nil {
			slot.Release()
		}
		if h.state != nil {
			h.state.BuildDone(m.URI, ok, sent, received)
		}
	}()
	phase := func(p slots.Phase) {
		if slot != nil {
			slot.SetPhase(p)
		}
	}
	// From here on the builder's stderr is the build log.
	if h.env.BuildLog != nil {
		c.Tail.SetSink(h.env.BuildLog)
	}

	// Outputs the builder has already (another board built them there,
	// or an earlier run whose copy back failed) are copied back without
	// uploading the inputs or asking for a build.
	missing, built, err := h.present(c, j, inputs, wanted)
	if err != nil {
		h.log.Errorf("copying inputs of %s to '%s': %v", req.DrvPath, m.URI, err)
		return exitFailed, nil
	}
	if built {
		h.log.Msg(hookproto.LvlInfo, "'%s' has the outputs of %s already: copying them back without building", m.URI, decide.DrvName(req.DrvPath))
	} else {
		phase(slots.PhaseUploading)
		n, err := h.upload(ctx, c, j, missing, slot)
		sent = n
		if err != nil {
			h.log.Errorf("copying inputs of %s to '%s': %v", req.DrvPath, m.URI, err)
			return exitFailed, nil
		}
		// The nix-store that registers the outputs starts now, beside
		// the build, instead of after it; not during the upload, whose
		// local nix-store --serve runs then (the peak memory stays).
		if j.reg == nil {
			j.reg = j.store.StartRegistrar()
		}
		phase(slots.PhaseBuilding)
		res, broken := h.buildThere(ctx, c, m, req, j, inputs)
		if res != nil {
			return exitCode(res.Status), res
		}
		if broken {
			return exitFailed, nil
		}
	}

	phase(slots.PhaseDownloading)
	n, err := h.download(ctx, c, j, req.DrvPath, inputs, wanted, slot)
	received = n
	if err != nil {
		h.log.Errorf("copying outputs of '%s' from '%s': %v", req.DrvPath, m.URI, err)
		return exitFailed, nil
	}
	ok = true
	return exitOK, nil
}

// present asks c's builder, in one round trip, which of the inputs it
// lacks, and whether it has every wanted output of j's derivation already
// (another board built it there, or an earlier copy back failed): then
// nothing is uploaded or built. It asks with lock set, so the builder keeps
// what it has (a temporary GC root) until the build's end; with
// builders-use-substitutes it may substitute what it lacks.
func (h *hook) present(c *builder.Conn, j *job, inputs, wanted []string) (missing []string, built bool, err error) {
	outs := wantedOutputs(j.drv, wanted)
	if outs == nil {
		for _, o := range j.drv.Outputs {
			outs = append(outs, o.Path)
		}
	}
	subst := h.settings["builders-use-substitutes"] == "true"
	all := append(append(make([]string, 0, len(inputs)+len(outs)), inputs...), outs...)
	if len(all) == 0 {
		return nil, false, nil
	}
	gone, err := h.missingOn(c, all, subst)
	if err != nil {
		return nil, false, err
	}
	lacking := make(map[string]bool, len(gone))
	for _, p := range gone {
		lacking[p] = true
	}
	built = len(outs) > 0
	for _, p := range outs {
		built = built && !lacking[p]
	}
	for _, p := range inputs {
		if lacking[p] {
			missing = append(missing, p)
		}
	}
	return missing, built, nil
}

// buildThere builds j's derivation on c's builder. It returns the result
// when the build failed as a build, and broken when the connection or the
// protocol failed (said in the log).
func (h *hook) buildThere(ctx context.Context, c *builder.Conn, m *spec.Machine, req *hookproto.Request, j *job, inputs []string) (failed *store.BuildResult, broken bool) {
	endProbe := h.probeBeside(ctx, c)
	inputSrcs := j.drv.InputSrcs
	if len(j.drv.InputDrvs) > 0 {
		inputSrcs = inputs
	}
	res, err := c.Store.BuildDerivation(req.DrvPath, j.drv, inputSrcs, h.buildOptions())
	endProbe()
	if err != nil {
		if ctx.Err() == nil {
			h.log.Errorf("build of '%s' on '%s': %v", req.DrvPath, m.URI, err)
		}
		return nil, true
	}
	if !res.Success() {
		msg := strings.TrimSpace(stripANSI(res.ErrorMsg))
		if msg == "" {
			msg = res.Status.String()
		}
		h.log.Errorf("build of '%s' on '%s' failed: %s", req.DrvPath, m.URI, msg)
		return &res, false
	}
	return nil, false
}

// exitCode maps a failed build's status to the hook's exit code, so Nix
// 2.8 … 2.28 reports it as what it is (DerivationGoal::buildDone in Nix
// 2.8 src/libstore/build/derivation-goal.cc; the statuses are
// BuildResult::Status in src/libstore/build-result.hh).
func exitCode(s store.Status) int {
	switch s {
	case store.TimedOut:
		return exitTimedOut
	case store.PermanentFailure, store.TransientFailure, store.OutputRejected, store.NotDeterministic:
		return exitBuildFailed
	}
	return exitFailed
}

func (h *hook) buildOptions() store.BuildOptions {
	secs := func(k string) time.Duration {
		var n int64
		fmt.Sscan(h.settings[k], &n)
		return time.Duration(n) * time.Second
	}
	var logSize uint64
	fmt.Sscan(h.settings["max-build-log-size"], &logSize)
	return store.BuildOptions{
		MaxSilentTime: secs("max-silent-time"),
		Timeout:       secs("timeout"),
		MaxLogSize:    logSize,
		KeepFailed:    h.settings["keep-failed"] == "true",
	}
}

// upload copies the inputs the builder lacks (missing), from a local
// `nix-store --serve` (read-only), in one pipelined stream.
func (h *hook) upload(ctx context.Context, c *builder.Conn, j *job, missing []string, slot *slots.Slot) (int64, error) {
	if len(missing) == 0 {
		return 0, nil
	}
	subst := h.settings["builders-use-substitutes"] == "true"
	var err error
	// One hook at a time uploads to a builder, so that two builds that
	// need the same closure do not send it twice at once; the second
	// asks again afterwards and sends only what is still missing.
	release, waited := h.uploadToken(ctx, c.Machine)
	defer release()
	if waited {
		missing, err = h.missingOn(c, missing, subst)
		if err != nil || len(missing) == 0 {
			return 0, err
		}
	}
	local, err := h.startLocalServe(ctx, j.store)
	if err != nil {
		return 0, err
	}
	defer local.Close()
	infos, err := local.serve.QueryPathInfos(missing)
	if err != nil {
		return 0, fmt.Errorf("reading the local store: %w", err)
	}
	if len(infos) != len(missing) {
		return 0, fmt.Errorf("the local store lacks %d of the %d inputs", len(missing)-len(infos), len(missing))
	}
	sortByReferences(infos)
	var total uint64
	for i := range infos {
		total += infos[i].NarSize
	}
	id := h.log.Start(hookproto.LvlInfo, hookproto.ActCopyPaths, fmt.Sprintf("copying %d paths to '%s'", len(infos), c.Machine.URI))
	defer h.log.Stop(id)

	var prev chan struct{}
	var cur *copyProgress
	var curR *io.PipeReader
	err = c.Store.AddToStoreNars(infos, func(i int) (io.Reader, error) {
		if prev != nil {
			<-prev
		}
		if cur != nil {
			cur.finish()
		}
		done := make(chan struct{})
		prev = done
		pr, pw := io.Pipe()
		curR = pr
		go func() {
			defer close(done)
			pw.CloseWithError(local.serve.DumpStorePath(infos[i].Path, pw, infos[i].NarSize))
		}()
		h.log.Result(id, hookproto.ResProgress, i, len(infos), 1, 0)
		cur = h.startCopy(pr, infos[i].Path, "local", c.Machine.URI, infos[i].NarSize, slot)
		return cur, nil
	})
	// When the upload stopped early (the builder went away), nobody reads
	// the current NAR any more: close it so the local dump stops instead
	// of waiting forever to write.
	if curR != nil {
		curR.CloseWithError(errCopyStopped)
	}
	if prev != nil {
		<-prev
	}
	if cur != nil {
		cur.finish()
	}
	if err != nil {
		return 0, err
	}
	h.log.Result(id, hookproto.ResProgress, len(infos), len(infos), 0, 0)
	return int64(total), nil
}

// missingOn returns the paths the builder does not have (or cannot
// substitute, with subst).
func (h *hook) missingOn(c *builder.Conn, paths []string, subst bool) ([]string, error) {
	valid, err := c.Store.QueryValidPaths(paths, true, subst)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(valid))
	for _, p := range valid {
		have[p] = true
	}
	var missing []string
	for _, p := range paths {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// Waiting for another hook's upload is bounded: after uploadWait the hook
// uploads anyway, as Nix's build-remote does after 15 minutes on its upload
// lock (Nix 2.8 src/build-remote/build-remote.cc, main_build_remote:
// alarm(15 * 60) around the upload-lock flock). A hook that died holding
// the token is no obstacle: TryUpload takes over a dead owner's token.
var (
	uploadWait = 60 * time.Second
	uploadPoll = 100 * time.Millisecond
)

// uploadToken takes the builder's upload token in the slot file, waiting
// while another live hook holds it. It returns the release function and
// whether it had to wait (the builder may have received the paths since).
// Without shared state, or after uploadWait, it goes ahead without the
// token.
func (h *hook) uploadToken(ctx context.Context, m *spec.Machine) (release func(), waited bool) {
	if h.state == nil {
		return func() {}, false
	}
	var deadline time.Time
	for {
		if rel, ok := h.state.TryUpload(m.URI); ok {
			return rel, waited
		}
		if !h.uploadBusy(m.URI) {
			// No record for the builder (the file is read-only or
			// was rebuilt without it): nothing to wait for.
			return func() {}, waited
		}
		now := h.env.Now()
		if !waited {
			waited = true
			deadline = now.Add(uploadWait)
			h.log.Msg(hookproto.LvlInfo, "waiting for another build's upload to '%s' to finish", m.URI)
		}
		if now.After(deadline) {
			h.log.Warnf("another build is still uploading to '%s' after %v; uploading anyway", m.URI, uploadWait)
			return func() {}, waited
		}
		t := time.NewTimer(uploadPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return func() {}, waited
		case <-t.C:
		}
	}
}

// uploadBusy reports whether the slot file shows uri's upload token held.
func (h *hook) uploadBusy(uri string) bool {
	h.snap = h.state.Snapshot(h.snap[:0])
	for i := range h.snap {
		if h.snap[i].URI == uri {
			return h.snap[i].Known && h.snap[i].Uploading
		}
	}
	return false
}

// stripANSI removes terminal escape sequences (Nix colours its error
// messages) from s, so the @nix message is plain text.
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		// CSI: ESC [ parameters… final byte in 0x40–0x7e.
		if i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		// Any other escape: drop ESC and the byte after it.
		i++
	}
	return b.String()
}

// sortByReferences orders infos so that every path comes after the paths
// it refers to, as the builder's store requires.
func sortByReferences(infos []store.PathInfo) {
	idx := make(map[string]int, len(infos))
	for i := range infos {
		idx[infos[i].Path] = i
	}
	sort.SliceStable(infos, func(a, b int) bool { return infos[a].Path < infos[b].Path })
	for i := range infos {
		idx[infos[i].Path] = i
	}
	out := make([]store.PathInfo, 0, len(infos))
	state := make([]uint8, len(infos)) // 0 new, 1 visiting, 2 done
	var visit func(i int)
	visit = func(i int) {
		if state[i] != 0 {
			return
		}
		state[i] = 1
		for _, r := range infos[i].References {
			if j, ok := idx[r]; ok && j != i {
				visit(j)
			}
		}
		state[i] = 2
		out = append(out, infos[i])
	}
	for i := range infos {
		visit(i)
	}
	copy(infos, out)
}

// download brings the derivation's outputs that are not valid locally into
// the local store.
//
// Nix says which: after accept it sends the names of the outputs that are
// not valid (wanted), and it holds their locks, so they stay invalid. Their
// references lie in the input closure, which is valid, or among the
// outputs; only when wanted names no output of the derivation does the
// hook ask the local store.
func (h *hook) download(ctx context.Context, c *builder.Conn, j *job, drvPath string, inputs, wanted []string, slot *slots.Slot) (int64, error) {
	missing := wantedOutputs(j.drv, wanted)
	if missing == nil {
		var outs []string
		for _, o := range j.drv.Outputs {
			outs = append(outs, o.Path)
		}
		valid, err := j.store.Valid(ctx, outs)
		if err != nil {
			return 0, err
		}
		have := make(map[string]bool, len(valid))
		for _, p := range valid {
			have[p] = true
		}
		for _, p := range outs {
			if !have[p] {
				missing = append(missing, p)
			}
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	known := make([]string, 0, len(inputs)+len(j.drv.Outputs))
	known = append(known, inputs...)
	for _, o := range j.drv.Outputs {
		known = append(known, o.Path)
	}
	infos, err := c.Store.QueryPathInfos(missing)
	if err != nil {
		return 0, err
	}
	if len(infos) != len(missing) {
		return 0, fmt.Errorf("the builder has %d of the %d outputs", len(infos), len(missing))
	}
	local := make([]store.PathInfo, len(infos))
	var total uint64
	for i := range infos {
		if _, err := infos[i].NarDigest(); err != nil {
			return 0, fmt.Errorf("%s: %w", infos[i].Path, err)
		}
		deriver := infos[i].Deriver
		if deriver == "" {
			deriver = drvPath
		}
		local[i] = store.PathInfo{
			Path:       infos[i].Path,
			Deriver:    deriver,
			References: infos[i].References,
			NarHash:    infos[i].NarHash,
			NarSize:    infos[i].NarSize,
		}
		total += infos[i].NarSize
	}
	id := h.log.Start(hookproto.LvlInfo, hookproto.ActCopyPaths, fmt.Sprintf("copying %d paths from '%s'", len(infos), c.Machine.URI))
	defer h.log.Stop(id)
	var prev chan struct{}
	var cur *copyProgress
	var curR *io.PipeReader
	err = j.store.ImportWith(ctx, local, localstore.ImportOptions{Valid: known, Registrar: j.reg}, func(i int) (io.ReadCloser, error) {
		if prev != nil {
			<-prev
		}
		if cur != nil {
			cur.finish()
		}
		done := make(chan struct{})
		prev = done
		pr, pw := io.Pipe()
		curR = pr
		go func() {
			defer close(done)
			pw.CloseWithError(c.Store.DumpStorePath(local[i].Path, pw, local[i].NarSize))
		}()
		h.log.Result(id, hookproto.ResProgress, i, len(infos), 1, 0)
		cur = h.startCopy(pr, local[i].Path, c.Machine.URI, "local", local[i].NarSize, slot)
		return struct {
			io.Reader
			io.Closer
		}{cur, pr}, nil
	})
	// The local store may have stopped reading a NAR (a bad one, or an
	// error): close it so the download goroutine does not wait forever.
	if curR != nil {
		curR.CloseWithError(errCopyStopped)
	}
	if prev != nil {
		<-prev
	}
	if cur != nil {
		cur.finish()
	}
	if err != nil {
		return 0, err
	}
	return int64(total), nil
}

// localServe is a local `nix-store --serve` (read-only), the way to read
// the local store's paths and NARs without its database.
type localServe struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	serve *serve.Client
}

func (h *hook) startLocalServe(ctx context.Context, st *localstore.Store) (*localServe, error) {
	args := append([]string{"nix-store"}, st.NixStore[1:]...)
	args = append(args, "--serve")
	if st.URI != "" {
		args = append(args, "--store", st.URI)
	}
	cmd := &exec.Cmd{Path: st.NixStore[0], Args: args}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	ls := &localServe{cmd: cmd, stdin: stdin}
	ls.serve, err = serve.New(stdout, stdin, serve.Options{Host: "local", Stderr: stderr.String})
	if err != nil {
		ls.Close()
		return nil, fmt.Errorf("%v: %w", cmd.Args, err)
	}
	return ls, nil
}

func (ls *localServe) Close() {
	ls.stdin.Close()
	done := make(chan struct{})
	go func() { ls.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		ls.cmd.Process.Kill()
		<-done
	}
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		q := p
		if len(q) > l.n {
			q = q[:l.n]
		}
		l.w.Write(q)
		l.n -= len(q)
	}
	return len(p), nil
}

// wantedOutputs returns the paths of d's outputs that wanted names, or nil
// when wanted names none of them (then the caller asks the store).
func wantedOutputs(d *drv.Derivation, wanted []string) []string {
	var out []string
	for _, o := range d.Outputs {
		for _, w := range wanted {
			if w == o.Name && o.Path != "" {
				out = append(out, o.Path)
				break
			}
		}
	}
	return out
}
