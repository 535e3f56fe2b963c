// SPDX-License-Identifier: MIT

package hook

// Rules for this file (a connection opened while waiting for a slot):
//   - A hook that waits for a full builder's slot (postpone-wait) opens
//     its connection to that builder meanwhile, so that the accept that
//     follows a freed slot does not wait for an SSH handshake while Nix's
//     whole scheduler waits for the answer.
//   - One such connection per hook process, kept across requests (Nix asks
//     an idle hook again), used only for its builder; any other is closed.

import (
	"context"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

// warmConn is a connection opened, or being opened, to a full builder
// while the hook waits for one of its slots.
type warmConn struct {
	m    *spec.Machine
	done chan struct{} // closed when the connect returned
	c    *builder.Conn
	err  error
}

// warmUp starts connecting to the best builder of d that is only full,
// unless a connection to it is spare or warm already.
func (h *hook) warmUp(ctx context.Context, d *pick.Decision) {
	i := -1
	for k := range d.Reasons {
		r := &d.Reasons[k]
		if r.Reject == pick.RejectFull && (i < 0 || r.Score < d.Reasons[i].Score) {
			i = k
		}
	}
	if i < 0 {
		return
	}
	m := &h.machines[i]
	if h.spare != nil && h.spare.Machine.URI == m.URI {
		return
	}
	if w := h.warm; w != nil {
		if w.m.URI == m.URI {
			return
		}
		h.closeWarm()
	}
	w := &warmConn{m: m, done: make(chan struct{})}
	h.warm = w
	go func() {
		defer close(w.done)
		w.c, w.err = h.connect(ctx, m)
		if w.err != nil {
			h.log.Debugf("connecting ahead to '%s': %v", m.URI, w.err)
		}
	}()
}

// takeWarm returns the warm connection to m, waiting for its connect to
// end: the connection, or why it could not be opened (which the caller
// takes as its own failed connect rather than trying again on the way to
// the answer). ok is false when there is none for m; a warm connection to
// another builder is closed then.
func (h *hook) takeWarm(m *spec.Machine) (c *builder.Conn, ok bool, err error) {
	w := h.warm
	if w == nil {
		return nil, false, nil
	}
	if w.m.URI != m.URI {
		h.closeWarm()
		return nil, false, nil
	}
	h.warm = nil
	<-w.done
	return w.c, true, w.err
}

// closeWarm closes the warm connection, once its connect has returned,
// without waiting for that.
func (h *hook) closeWarm() {
	w := h.warm
	if w == nil {
		return
	}
	h.warm = nil
	go func() {
		<-w.done
		if w.c != nil {
			w.c.Close()
		}
	}()
}
