// SPDX-License-Identifier: MIT

package localstore

// The NIX_HELD_LOCKS route (docs/internals.md, section 7): a local
// `nix-store --serve --write` fed AddToStoreNar. LocalStore::addToStore
// skips the path lock for paths listed in NIX_HELD_LOCKS, which Nix 2.0 to
// 2.28 read when a store is opened (removed in 2.29, NixOS/nix 78eed85).
// Nix itself parses the NAR, checks narHash and narSize, canonicalises and
// registers each path, so this route suits chroot stores, where
// --register-validity before 2.36 fails.

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/store"
)

// importServe adds infos[todo...], in that order, through a local
// nix-store --serve --write. Each path is registered as soon as Nix has
// checked it; a failure leaves the earlier ones valid and complete.
func (s *Store) importServe(ctx context.Context, infos []store.PathInfo, todo []int, open func(int) (io.ReadCloser, error)) (err error) {
	held := make([]string, len(todo))
	send := make([]store.PathInfo, len(todo))
	for k, i := range todo {
		held[k] = infos[i].Path // printed (logical) paths, as locksHeld holds them
		// Registered like the --register-validity route does: without
		// signatures or a content address.
		send[k] = infos[i]
		send[k].Sigs, send[k].CA = nil, ""
	}
	cmd := command(ctx, s.NixStore, "--store", s.URI, "--serve", "--write")
	cmd.Env = append(os.Environ(), "NIX_HELD_LOCKS="+strings.Join(held, " "))
	stderr := new(tailBuffer)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("localstore: %v: %w", cmd.Args, err)
	}
	defer func() {
		stdin.Close()
		werr := cmd.Wait()
		if err != nil {
			if werr != nil {
				err = fmt.Errorf("%w (%s)", err, cmdError(cmd, stderr, werr))
			}
		} else if werr != nil {
			err = cmdError(cmd, stderr, werr)
		}
	}()
	c, err := serve.New(stdout, stdin, serve.Options{})
	if err != nil {
		return fmt.Errorf("localstore: nix-store --serve: %w", err)
	}
	err = c.AddToStoreNars(send, func(k int) (io.Reader, error) {
		rc, err := open(todo[k])
		if err != nil {
			return nil, err
		}
		return ctxReadCloser{ctxReader{ctx, rc}, rc}, nil
	})
	if err != nil {
		return fmt.Errorf("localstore: nix-store --serve: %w", err)
	}
	for _, in := range send {
		s.logf("imported %s (%d bytes) through nix-store --serve", in.Path, in.NarSize)
	}
	return nil
}

// ctxReadCloser reads through a ctxReader and closes the NAR it reads.
type ctxReadCloser struct {
	ctxReader
	io.Closer
}
