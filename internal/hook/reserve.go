// SPDX-License-Identifier: MIT

package hook

import (
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// reservation is a build slot taken on a builder for one derivation. Its
// owner defers release right after reserve, so the slot is free again on
// every path out; release is idempotent (slots.Slot.Release is), so code
// that gives the slot back early, as buildOn does at the build's end, never
// frees it twice. Without shared state there is no slot and release does
// nothing.
type reservation struct {
	slot *slots.Slot
}

func (r *reservation) release() {
	if r.slot != nil {
		r.slot.Release()
	}
}

// connecting marks the slot as taken for the derivation called name, on
// the way to its builder.
func (r *reservation) connecting(name string) {
	if r.slot != nil {
		r.slot.SetDrv(name)
		r.slot.SetPhase(slots.PhaseConnecting)
	}
}

// reserve takes a slot on m. ok is false when another hook took the last
// one since the snapshot.
func (h *hook) reserve(m *spec.Machine) (r reservation, ok bool) {
	if h.state == nil {
		return reservation{}, true
	}
	s, ok := h.state.Acquire(m.URI)
	if !ok {
		return reservation{}, false
	}
	return reservation{slot: &s}, true
}
