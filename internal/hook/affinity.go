// SPDX-License-Identifier: MIT

package hook

// Rules for this file (builders that already hold a derivation's inputs):
//   - No round trip and no process on the way to the answer: what a builder
//     holds is inferred from this host's recent decisions in the slot file
//     (the builders that built the derivation's inputs lately), read once
//     per request.
//   - It only breaks ties: pick ranks it after the score.

import (
	"strings"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
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
	h.inputs = InputsThere(h.ring, h.machines, d)
	return h.inputs
}

// InputsThere counts, per machine of ms, the input derivations of d that
// were accepted for that machine in ring (slots.File.Decisions); nil when
// none was. The hook and `offload pick --drv` both use it.
func InputsThere(ring []slots.Decision, ms []spec.Machine, d *drv.Derivation) []int {
	accepts := 0
	for i := range ring {
		if ring[i].Answer == pick.Accept && ring[i].Builder != "" {
			accepts++
		}
	}
	if accepts == 0 || len(d.InputDrvs) == 0 {
		return nil
	}
	counts := make([]int, len(ms))
	any := false
	for _, in := range d.InputDrvs {
		name := drvName(in.Path)
		for i := range ms {
			if builtOn(ring, name, ms[i].URI) {
				counts[i]++
				any = true
			}
		}
	}
	if !any {
		return nil
	}
	return counts
}

// builtOn reports whether ring has an accepted decision for derivation
// name on the builder uri (cut as the ring cuts it).
func builtOn(ring []slots.Decision, name, uri string) bool {
	for i := range ring {
		d := &ring[i]
		if d.Answer != pick.Accept || d.Drv != name {
			continue
		}
		if d.Builder == uri || len(d.Builder) >= 56 && strings.HasPrefix(uri, d.Builder) {
			return true
		}
	}
	return false
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
