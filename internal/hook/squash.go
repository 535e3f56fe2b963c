// SPDX-License-Identifier: MIT

package hook

import (
	"context"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/ssh"
)

// autoLevel is compress=auto's level: zstd's fastest, which on machine
// code gives nearly what its default level 3 does.
const autoLevel = 1

// squashed is c.Store with copies to and from the builder compressed as
// the compress setting and the machine say (internal/builder's Squashed):
// off, never; auto, at autoLevel until the outputs turn out
// incompressible; on, or a machine whose SSH settings ask for compression
// (?compress=true in its URI, -C in NIX_SSHOPTS, Compression yes in
// ssh_config), at compress-level.
func (h *hook) squashed(ctx context.Context, c *builder.Conn) builder.Remote {
	mode := h.cfg.String("compress")
	if mode == config.CompressOff {
		return c.Store
	}
	o := builder.SquashOptions{Level: autoLevel, Auto: true,
		Logf: func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) }}
	if mode == config.CompressOn || h.sshCompression(c) {
		o.Level, o.Auto = h.cfg.Int("compress-level"), false
	}
	return c.Squashed(ctx, o)
}

// sshCompression reports whether the SSH settings for c's machine ask for
// compression. Settings that cannot be read ask for nothing here: the
// connection that was made with them says why.
func (h *hook) sshCompression(c *builder.Conn) bool {
	s, err := ssh.Resolve(*c.Machine, ssh.Options{Env: h.env.Getenv})
	return err == nil && s.Compression
}
