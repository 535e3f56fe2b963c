// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/store"
)

// Fetching on the builder (fetch-on-builder): an input the builder lacks
// that is the output of a fixed-output derivation (a source tarball, a
// git checkout) is built there from its derivation instead of uploaded.
// The builder downloads it itself, usually over a far better link than
// the board's, and its hash is fixed, so the path and its contents are the
// ones the board has. Only the fetcher's own inputs the builder lacks are
// uploaded (none for builtin:fetchurl), and only when they cost fewer
// bytes than the output itself. Whatever goes wrong here (no .drv on the
// board, the builder cannot reach the URL) leaves the input to the upload,
// said at -v (Talkative); it never fails the build. After a fetch failed,
// the builder's next noFetchHold chances are uploads (kept with its link
// measure in the slot file).
//
// The derivation is sent as a BasicDerivation (BuildDerivation), so no
// .drv file needs to be on the builder, the way Nix's build-remote sends
// the main one (and buildThere): with the input closure as its input
// sources when it has input derivations, whose outputs would otherwise be
// missing from it (Nix 2.8 src/build-remote/build-remote.cc, "Hijack the
// inputs paths"). Over
// ssh-ng:// an untrusted user may build it too: the daemon allows
// BuildDerivation of content-addressed derivations to anyone (Nix 2.8
// src/libstore/daemon.cc, wopBuildDerivation).

// noFetchHold is how many hooks with inputs the builder could fetch
// upload them without trying after a fetch there failed: a builder
// without network access (fetch-on-builder left on) may take minutes to
// fail each one (Nix retries a download download-attempts times, and a
// connection that nobody refuses waits for connect-timeout). A fetch
// that failed for its own reason (a dead URL) costs the next ones their
// upload.
const noFetchHold = slots.MaxNoFetch

// fetchPlan is one missing input to realise on the builder.
type fetchPlan struct {
	out     string // the output path, as the .drv names it
	drvPath string
	d       *drv.Derivation
	// needs is the closure of the fetcher's inputs (its input sources and
	// the outputs of its input derivations).
	needs []string
	// size is the output's NAR size: what uploading it would cost.
	size uint64
	// skip is set when a fetcher's input is not in the local store.
	skip bool
	// chosen is set when it is fetched on the builder.
	chosen bool
}

// inputSrcs returns the input sources p's derivation is sent with: its
// own (nil), or the closure of its inputs when it has input derivations.
func (p *fetchPlan) inputSrcs() []string {
	if len(p.d.InputDrvs) == 0 {
		return nil
	}
	return p.needs
}

// fetchOnBuilder realises on rn's builder the missing inputs that cost
// less to fetch there than to upload. It uploads the fetchers' inputs the
// builder lacks first, and returns the inputs still to upload and the NAR
// bytes it sent.
func (h *hook) fetchOnBuilder(ctx context.Context, rn *run, missing []string) (still []string, sent int64) {
	if len(missing) == 0 || h.cfg == nil || !h.cfg.Bool("fetch-on-builder") {
		return missing, 0
	}
	plans, extra, err := h.planFetches(ctx, rn, missing)
	if err != nil {
		// The local nix-store may be out of step: the upload starts
		// another.
		rn.j.closeLocal()
		h.log.Msg(hookproto.LvlTalkative, "uploading every input to '%s': %v", rn.m.URI, err)
		return missing, 0
	}
	if len(plans) == 0 {
		return missing, 0
	}
	var left uint8
	h.updateLink(rn.m.URI, func(l slots.Link) slots.Link {
		left = l.NoFetch
		if l.NoFetch > 0 {
			l.NoFetch--
		}
		return l
	})
	if left > 0 {
		h.log.Msg(hookproto.LvlTalkative, "uploading every input to '%s' without fetching there: a fetch failed there lately (%d more times before it tries again)", rn.m.URI, left-1)
		return missing, 0
	}
	sent, err = h.upload(ctx, rn.c, rn.j, extra, rn.r)
	if err != nil {
		rn.j.closeLocal()
		h.log.Msg(hookproto.LvlTalkative, "uploading the fetchers' inputs to '%s': %v", rn.m.URI, err)
		return missing, sent
	}
	done := extra
	for _, p := range plans {
		h.log.Msg(hookproto.LvlInfo, "fetching '%s' on '%s' instead of uploading it", p.out, rn.m.URI)
		res, err := rn.c.Store.BuildDerivation(p.drvPath, p.d, p.inputSrcs(), h.buildOptions())
		if err != nil {
			// The connection failed, not the fetch: the upload that
			// follows says so.
			h.log.Msg(hookproto.LvlTalkative, "fetching '%s' on '%s': %v", p.out, rn.m.URI, err)
			break
		}
		if !res.Success() {
			msg := strings.TrimSpace(store.StripANSI(res.ErrorMsg))
			if msg == "" {
				msg = res.Status.String()
			}
			// Most likely the builder cannot reach the network (or not
			// quickly): the next noFetchHold hooks with inputs it could
			// fetch upload them without trying.
			h.updateLink(rn.m.URI, func(l slots.Link) slots.Link { l.NoFetch = noFetchHold; return l })
			h.log.Msg(hookproto.LvlTalkative, "fetching '%s' on '%s' failed, uploading it (and without trying, the next %d times there): %s", p.out, rn.m.URI, noFetchHold, msg)
			break
		}
		done = append(done, p.out)
	}
	return without(missing, done), sent
}

// planFetches finds which of the missing inputs to realise on the
// builder, and the paths to upload for them first (the fetchers' inputs
// the builder lacks, and the missing inputs among them, which would be
// uploaded anyway).
func (h *hook) planFetches(ctx context.Context, rn *run, missing []string) (plans []fetchPlan, extra []string, err error) {
	local, err := h.openLocal(ctx, rn.j)
	if err != nil {
		return nil, nil, err
	}
	infos, err := local.serve.QueryPathInfos(missing)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the local store: %w", err)
	}
	var cands []fetchPlan
	var ins []string
	for _, in := range infos {
		if in.Deriver == "" {
			continue
		}
		p, err := readFetcher(rn.j.store, in.Path, in.Deriver)
		if err != nil {
			h.log.Msg(hookproto.LvlTalkative, "uploading '%s': %v", in.Path, err)
		}
		if p.d == nil {
			continue
		}
		if sys := p.d.Platform; sys != "builtin" && !slices.Contains(rn.m.Systems, sys) {
			// Its build would fail there, after its inputs went up.
			h.log.Msg(hookproto.LvlTalkative, "uploading '%s': '%s' does not build for %s", in.Path, rn.m.URI, sys)
			continue
		}
		p.size = in.NarSize
		cands = append(cands, p)
		ins = append(ins, p.needs...)
	}
	if len(cands) == 0 {
		return nil, nil, nil
	}
	// Every input of a fetcher must be valid here: nix-store --serve
	// fails on the closure of an invalid path.
	var valid []string
	if len(ins) > 0 {
		valid, err = local.serve.QueryValidPaths(ins, false, false)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the local store: %w", err)
		}
	}
	var all []string
	for i := range cands {
		p := &cands[i]
		if lacks := without(p.needs, valid); len(lacks) > 0 {
			h.log.Msg(hookproto.LvlTalkative, "uploading '%s': its fetcher's input '%s' is not in the local store", p.out, lacks[0])
			p.skip = true
			continue
		}
		if len(p.needs) > 0 {
			p.needs, err = local.serve.QueryClosure(p.needs, false)
			if err != nil {
				return nil, nil, fmt.Errorf("reading the local store: %w", err)
			}
		}
		all = append(all, p.needs...)
	}
	sizes := make(map[string]uint64)
	if len(all) > 0 {
		slices.Sort(all)
		all = slices.Compact(all)
		needInfos, err := local.serve.QueryPathInfos(all)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the local store: %w", err)
		}
		for _, in := range needInfos {
			sizes[in.Path] = in.NarSize
		}
		lacking, err := h.missingOn(rn.c, all, h.settings["builders-use-substitutes"] == "true")
		if err != nil {
			return nil, nil, err
		}
		all = lacking
	}
	plans, extra = choose(cands, missing, all, sizes)
	for _, p := range cands {
		if !p.skip && !p.chosen {
			h.log.Msg(hookproto.LvlTalkative, "uploading '%s' (%d bytes): fetching it on '%s' needs more", p.out, p.size, rn.m.URI)
		}
	}
	return plans, extra, nil
}

// choose picks the candidates whose fetchers' inputs cost fewer bytes to
// upload than their outputs: only the paths the builder lacks (lacking)
// count, and not those another chosen fetcher or the build itself
// (missing) needs anyway. It returns the chosen plans and every path to
// upload before their builds.
func choose(cands []fetchPlan, missing, lacking []string, sizes map[string]uint64) (plans []fetchPlan, extra []string) {
	lacks := make(map[string]bool, len(lacking))
	for _, p := range lacking {
		lacks[p] = true
	}
	free := make(map[string]bool, len(missing))
	for _, p := range missing {
		free[p] = true
	}
	taken := make(map[string]bool)
	for i := range cands {
		c := &cands[i]
		if c.skip {
			continue
		}
		var cost uint64
		for _, q := range c.needs {
			if lacks[q] && !free[q] && !taken[q] {
				cost += sizes[q]
			}
		}
		if cost >= c.size {
			continue
		}
		for _, q := range c.needs {
			if lacks[q] && !taken[q] {
				taken[q] = true
				extra = append(extra, q)
			}
		}
		c.chosen = true
		plans = append(plans, *c)
	}
	return plans, extra
}

// readFetcher reads the .drv that built out, drvPath, from the local
// store, and returns the plan to build it there. The plan has no
// derivation when out is not the output of a fixed-output derivation,
// with an error when the reason is worth a message (the .drv is gone).
func readFetcher(st *localstore.Store, out, drvPath string) (fetchPlan, error) {
	p := fetchPlan{out: out, drvPath: drvPath}
	d, err := drv.ReadFile(st.RealDir + strings.TrimPrefix(drvPath, st.StoreDir))
	if err != nil {
		return p, fmt.Errorf("reading its derivation: %w", err)
	}
	if !d.IsFixedOutput() {
		return p, nil
	}
	if d.Outputs[0].Path != out {
		return p, fmt.Errorf("its derivation '%s' makes '%s'", drvPath, d.Outputs[0].Path)
	}
	needs := append([]string(nil), d.InputSrcs...)
	for _, in := range d.InputDrvs {
		id, err := drv.ReadFile(st.RealDir + strings.TrimPrefix(in.Path, st.StoreDir))
		if err != nil {
			return p, fmt.Errorf("reading its fetcher's input derivation: %w", err)
		}
		for _, name := range in.Outputs {
			path := ""
			for _, o := range id.Outputs {
				if o.Name == name {
					path = o.Path
				}
			}
			if path == "" {
				return p, fmt.Errorf("its fetcher's input '%s' has no output path %q", in.Path, name)
			}
			needs = append(needs, path)
		}
	}
	p.d, p.needs = d, needs
	return p, nil
}

// openLocal returns j's local nix-store --serve, started on first use, so
// that planning the fetches and the uploads after it start one process,
// not three; closeLocal ends it.
func (h *hook) openLocal(ctx context.Context, j *job) (*localServe, error) {
	if j.local == nil {
		local, err := h.startLocalServe(ctx, j.store)
		if err != nil {
			return nil, err
		}
		j.local = local
	}
	return j.local, nil
}

// closeLocal ends j's local nix-store --serve, if one is open.
func (j *job) closeLocal() {
	if j.local != nil {
		j.local.Close()
		j.local = nil
	}
}
