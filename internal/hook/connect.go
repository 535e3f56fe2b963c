// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/spec"
)

// connect dials the builder and starts its store protocol there, all
// within the connect timeout (internal/builder).
func (h *hook) connect(ctx context.Context, m *spec.Machine) (*builder.Conn, error) {
	if err := builder.Supported(m); err != nil {
		return nil, err
	}
	id := h.log.Start(hookproto.LvlTalkative, hookproto.ActUnknown, fmt.Sprintf("connecting to '%s'", m.URI))
	defer h.log.Stop(id)
	if h.dial != nil {
		return h.dial(ctx, m)
	}
	return builder.Dial(ctx, m, h.dialOptions())
}

// dialOptions are how this hook reaches builders.
func (h *hook) dialOptions() builder.Options {
	o := builder.Options{
		ConnectTimeout: h.cfg.ConnectTimeout(),
		Getenv:         h.env.Getenv,
		Logf:           h.log.Warnf,
		// Why the relay was not used: one line at -v.
		Debugf:     func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) },
		Substitute: h.settings["builders-use-substitutes"] == "true",
	}
	if p := h.cfg.Duration("connect-persist"); p > 0 {
		o.Relay, o.Persist = builder.RelayDir(h.env.Getenv, h.cfg.StateDir()), p
	}
	return o
}
