// SPDX-License-Identifier: MIT

package drv

import (
	"cmp"
	"slices"
	"strings"

	"github.com/offload-nix/offload/pkg/wire"
)

// WriteBasic encodes d as the BasicDerivation that the serve and daemon
// protocols' BuildDerivation carry, as derivations.cc writeDerivation does:
// outputs sorted by name, inputSrcs (d.InputSrcs when nil) sorted and
// unique, environment sorted by key (current Nix: derivation::write in
// src/libstore/derivation/aterm.cc). The name is not
// sent and neither are the input derivations.
func (d *Derivation) WriteBasic(w *wire.Writer, inputSrcs []string) {
	outs := slices.Clone(d.Outputs)
	slices.SortStableFunc(outs, func(a, b Output) int { return strings.Compare(a.Name, b.Name) })
	w.Uint64(uint64(len(outs)))
	for _, o := range outs {
		w.String(o.Name)
		w.String(o.Path)
		w.String(o.HashAlgo)
		w.String(o.Hash)
	}
	if inputSrcs == nil {
		inputSrcs = d.InputSrcs
	}
	srcs := slices.Clone(inputSrcs)
	slices.Sort(srcs)
	w.Strings(slices.Compact(srcs))
	w.String(d.Platform)
	w.String(d.Builder)
	w.Strings(d.Args)
	env := slices.Clone(d.Env)
	slices.SortStableFunc(env, func(a, b EnvVar) int { return cmp.Compare(a.Key, b.Key) })
	w.Uint64(uint64(len(env)))
	for _, e := range env {
		w.String(e.Key)
		w.String(e.Value)
	}
}
