// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

// sendInputs is the first step of a build: it copies the inputs rn's
// builder lacks there. built is true when the builder has the outputs
// already (another board built them there, or an earlier run whose copy
// back failed): then they are copied back without uploading the inputs or
// asking for a build.
func (h *hook) sendInputs(ctx context.Context, rn *run) (built bool, err error) {
	missing, built, err := h.present(rn.c, rn.j, rn.inputs, rn.wanted)
	if err != nil {
		return false, err
	}
	if built {
		h.log.Msg(hookproto.LvlInfo, "'%s' has the outputs of %s already: copying them back without building", rn.m.URI, decide.DrvName(rn.req.DrvPath))
		return true, nil
	}
	rn.r.phase(slots.PhaseUploading)
	defer rn.j.closeLocal()
	missing, fetched := h.fetchOnBuilder(ctx, rn, missing)
	rn.sent, err = h.upload(ctx, rn.c, rn.j, missing, rn.r)
	rn.sent += fetched
	return false, err
}

// present asks c's builder, in one round trip, which of the inputs it
// lacks, and whether it has every wanted output of j's derivation already
// (another board built it there, or an earlier copy back failed): then
// nothing is uploaded or built. It asks with lock set, so the builder keeps
// what it has (a temporary GC root) until the build's end; with
// builders-use-substitutes it may substitute what it lacks.
func (h *hook) present(c *builder.Conn, j *job, inputs, wanted []string) (missing []string, built bool, err error) {
	outs := j.outputs(wanted)
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

// upload copies the inputs the builder lacks (missing), from a local
// `nix-store --serve` (read-only), in one pipelined stream. It returns the
// NAR bytes sent.
func (h *hook) upload(ctx context.Context, c *builder.Conn, j *job, missing []string, res *reservation) (int64, error) {
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
	local, err := h.openLocal(ctx, j)
	if err != nil {
		return 0, err
	}
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

	cp := narCopy{h: h, id: id, n: len(infos), src: "local", dst: c.Machine.URI, res: res}
	err = c.Store.AddToStoreNars(infos, func(i int) (io.Reader, error) {
		r, _ := cp.next(i, infos[i].Path, infos[i].NarSize, local.serve.DumpStorePath)
		return r, nil
	})
	cp.stop()
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
	return without(paths, valid), nil
}

// without returns the paths that are not in have, in their order.
func without(paths, have []string) []string {
	in := make(map[string]bool, len(have))
	for _, p := range have {
		in[p] = true
	}
	var out []string
	for _, p := range paths {
		if !in[p] {
			out = append(out, p)
		}
	}
	return out
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
