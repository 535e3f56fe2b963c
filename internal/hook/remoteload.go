// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// refreshLoad reads the builder's real load over the connection c already
// has, when the reading every hook on the host shares is older than
// load-refresh and no other hook is reading it now, and stores it. It
// reports whether it stored a new reading. It costs one round trip on an
// open connection, and happens only when the shared value is stale.
func (h *hook) refreshLoad(ctx context.Context, c *conn, m *spec.Machine) bool {
	if h.state == nil || h.cfg.LoadRefresh <= 0 || h.cfg.Thresholds == (pick.Thresholds{}) {
		return false
	}
	release, ok := h.state.TryRefresh(m.URI, h.cfg.LoadRefresh)
	if !ok {
		return false
	}
	defer release()
	timeout := h.cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	now := h.env.Now()
	r := remoteload.UnknownAt(now)
	sess, err := c.start(ctx, []string{remoteload.Command})
	if err == nil {
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				sess.end()
			case <-done:
			}
		}()
		got, rerr := remoteload.Run(sess.Stdin, sess.Stdout, sess.Stderr)
		close(done)
		sess.end()
		if rerr == nil {
			r = got
			r.Time = now
		} else {
			h.log.Debugf("reading the load of '%s': %v", m.URI, rerr)
		}
	} else {
		h.log.Debugf("reading the load of '%s': %v", m.URI, err)
	}
	h.state.SetReading(m.URI, slots.Reading(r))
	return true
}

// takeSpare returns the connection kept from a load refresh when it goes to
// m, and closes it otherwise.
func (h *hook) takeSpare(m *spec.Machine) (*conn, error) {
	c := h.spare
	h.spare = nil
	if c == nil {
		return nil, nil
	}
	if c.m.URI == m.URI {
		return c, nil
	}
	c.Close()
	return nil, nil
}

func (h *hook) closeSpare() {
	if h.spare != nil {
		h.spare.Close()
		h.spare = nil
	}
}
