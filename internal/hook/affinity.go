// SPDX-License-Identifier: MIT

package hook

// Rules for this file (builders that already hold a derivation's inputs):
//   - No round trip and no process on the way to the answer: what a builder
//     holds is inferred from this host's recent decisions in the slot file
//     (the builders that built the derivation's inputs lately), read once
//     per request.
//   - It only breaks ties: pick ranks it after the score.

import (
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/drv"
)

// inputsThere counts, per machine, the input derivations of the request
// for drvPath that this host sent to that machine lately (the accepted
// decisions still in the slot file's ring): a builder that built them
// has their outputs already, and needs less uploaded. It is computed once
// per request and kept in h.inputs (nil: none anywhere).
func (h *hook) inputsThere(drvPath string) []int {
	if h.inputsFor == drvPath {
		return h.inputs
	}
	h.inputsFor, h.inputs = drvPath, nil
	if h.state == nil || len(h.machines) < 2 {
		return nil
	}
	d := h.readDrv(drvPath)
	if d == nil || len(d.InputDrvs) == 0 {
		return nil
	}
	h.ring = h.state.Decisions(h.ring[:0])
	h.inputs = decide.InputsThere(h.ring, h.machines, d)
	return h.inputs
}

// readDrv reads the derivation at drvPath, once per request (prepare uses
// it again), when the local store's files are where its paths say: not for
// a store elsewhere (a chroot store), where it returns nil.
func (h *hook) readDrv(drvPath string) *drv.Derivation {
	if h.drvPath == drvPath {
		return h.drv
	}
	switch h.settings["store"] {
	case "", "auto", "daemon", "local":
	default:
		return nil
	}
	d, err := drv.ReadFile(drvPath)
	if err != nil {
		return nil
	}
	h.drvPath, h.drv = drvPath, d
	return d
}
