// SPDX-License-Identifier: MIT

package hook

import (
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// reservation is a build slot taken on a builder for one derivation, and
// the way a build reports to the slot file: its phase, its bytes and its
// end. Its owner defers release right after reserve, so the slot is free
// again on every path out; release is idempotent (slots.Slot.Release is),
// so a build that gives the slot back at its end (done) never frees it
// twice. Without shared state there is no slot and every method does
// nothing.
type reservation struct {
	state *slots.File
	uri   string
	slot  *slots.Slot
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

// phase marks the slot's build as being in phase p.
func (r *reservation) phase(p slots.Phase) {
	if r.slot != nil {
		r.slot.SetPhase(p)
	}
}

// addBytes counts n bytes copied for the slot's build.
func (r *reservation) addBytes(n int64) {
	if r.slot != nil {
		r.slot.AddBytes(n)
	}
}

// done releases the slot at the build's end and counts the build (ok: its
// outputs are home) and the bytes it sent and received for the builder.
func (r *reservation) done(ok bool, sent, received int64) {
	r.release()
	if r.state != nil {
		r.state.BuildDone(r.uri, ok, sent, received)
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
	return reservation{state: h.state, uri: m.URI, slot: &s}, true
}
