// SPDX-License-Identifier: MIT

package hook

import (
	"context"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/hookproto"
)

// autoLevel is compress=auto's level: zstd's fastest, which on machine
// code gives nearly what its default level 3 does.
const autoLevel = 1

// squashed is c.Store with copies from the builder compressed as the
// compress setting and the machine say (internal/builder's Squashed): off,
// never; auto, at autoLevel until the outputs turn out incompressible; on,
// or a machine that asks for compression (?compress=true), at
// compress-level.
func (h *hook) squashed(ctx context.Context, c *builder.Conn) builder.Remote {
	mode := h.cfg.String("compress")
	if mode == config.CompressOff {
		return c.Store
	}
	o := builder.SquashOptions{Level: autoLevel, Auto: true,
		Logf: func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) }}
	if mode == config.CompressOn || c.Machine.Params["compress"] == "true" {
		o.Level, o.Auto = h.cfg.Int("compress-level"), false
	}
	return c.Squashed(ctx, o)
}
