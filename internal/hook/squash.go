// SPDX-License-Identifier: MIT

package hook

import (
	"context"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/ssh"
)

// squashed is c.Store with copies to and from the builder compressed at
// compress-level as the compress setting and the machine say
// (internal/builder's Squashed): off, never; on, always; auto, until the
// data turns out incompressible, unless the machine's SSH settings ask
// for compression (?compress=true in its URI, -C in NIX_SSHOPTS,
// Compression yes in ssh_config), which is on.
func (h *hook) squashed(ctx context.Context, c *builder.Conn) builder.Remote {
	mode := h.cfg.String("compress")
	if mode == config.CompressOff {
		return c.Store
	}
	return c.Squashed(ctx, builder.SquashOptions{
		Level: h.cfg.Int("compress-level"),
		// Asked only after a copy large enough to tell: reading the SSH
		// settings again costs a small build's copy back time.
		Auto: func() bool { return mode == config.CompressAuto && !h.sshCompression(c) },
		Logf: func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) },
	})
}

// sshCompression reports whether the SSH settings for c's machine ask for
// compression. Settings that cannot be read ask for nothing here: the
// connection that was made with them says why.
func (h *hook) sshCompression(c *builder.Conn) bool {
	s, err := ssh.Resolve(*c.Machine, ssh.Options{Env: h.env.Getenv})
	return err == nil && s.Compression
}
