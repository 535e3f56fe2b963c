// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"io"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/store"
)

// bringOutputs is the last step of a build: it copies the outputs home
// and registers them (download).
func (h *hook) bringOutputs(ctx context.Context, rn *run) error {
	rn.r.phase(slots.PhaseDownloading)
	n, err := h.download(ctx, rn)
	rn.received = n
	return err
}

// download brings the derivation's outputs that are not valid locally into
// the local store, and returns the NAR bytes received.
//
// Nix says which: after accept it sends the names of the outputs that are
// not valid (wanted), and it holds their locks, so they stay invalid. Their
// references lie in the input closure, which is valid, or among the
// outputs; only when wanted names no output of the derivation does the
// hook ask the local store.
func (h *hook) download(ctx context.Context, rn *run) (int64, error) {
	c, j := rn.c, rn.j
	missing := wantedOutputs(j.drv, rn.wanted)
	if missing == nil {
		outs := outputPaths(j.drv)
		valid, err := j.store.Valid(ctx, outs)
		if err != nil {
			return 0, err
		}
		missing = without(outs, valid)
	}
	if len(missing) == 0 {
		return 0, nil
	}
	known := append(append(make([]string, 0, len(rn.inputs)+len(j.drv.Outputs)), rn.inputs...), outputPaths(j.drv)...)
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
			deriver = rn.req.DrvPath
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
	cp := narCopy{h: h, id: id, n: len(infos), src: c.Machine.URI, dst: "local", res: rn.r}
	err = j.store.ImportWith(ctx, local, localstore.ImportOptions{Valid: known, Registrar: j.reg}, func(i int) (io.ReadCloser, error) {
		r, pr := cp.next(i, local[i].Path, local[i].NarSize, c.Store.DumpStorePath)
		return struct {
			io.Reader
			io.Closer
		}{r, pr}, nil
	})
	cp.stop()
	if err != nil {
		return 0, err
	}
	return int64(total), nil
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

// outputPaths returns the paths of d's outputs.
func outputPaths(d *drv.Derivation) []string {
	var out []string
	for _, o := range d.Outputs {
		out = append(out, o.Path)
	}
	return out
}

// outputs returns the paths of the job's outputs that wanted names, or of
// all of them when wanted names none.
func (j *job) outputs(wanted []string) []string {
	if outs := wantedOutputs(j.drv, wanted); outs != nil {
		return outs
	}
	return outputPaths(j.drv)
}
