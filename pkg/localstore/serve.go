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
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/wire"
)

const (
	serveMagic1      = 0x390c9deb
	serveMagic2      = 0x5452eecb
	serveVersion     = 0x207
	cmdAddToStoreNar = 9
)

// importServe adds infos[todo...], in that order, through a local
// nix-store --serve --write. Each path is registered as soon as Nix has
// checked it; a failure leaves the earlier ones valid and complete.
func (s *Store) importServe(ctx context.Context, infos []PathInfo, todo []int, open func(int) (io.ReadCloser, error)) (err error) {
	held := make([]string, len(todo))
	for k, i := range todo {
		held[k] = infos[i].Path // printed (logical) paths, as locksHeld holds them
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
	w := wire.NewWriter(stdin)
	r := wire.NewReader(bufio.NewReader(stdout))
	w.Uint64(serveMagic1)
	w.Uint64(serveVersion)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("localstore: nix-store --serve handshake: %w", err)
	}
	if m, err := r.Uint64(); err != nil || m != serveMagic2 {
		return fmt.Errorf("localstore: nix-store --serve handshake: magic %#x, %v", m, err)
	}
	v, err := r.Uint64()
	if err != nil {
		return fmt.Errorf("localstore: nix-store --serve handshake: %w", err)
	}
	if v>>8 != 2 || v&0xff < 5 {
		return fmt.Errorf("localstore: nix-store --serve speaks protocol %#x, need 2.5 or later", v)
	}
	for _, i := range todo {
		in := infos[i]
		w.Uint64(cmdAddToStoreNar)
		w.String(in.Path)
		w.String(in.Deriver)
		w.String(hex.EncodeToString(in.NarHash[:]))
		w.Strings(in.References)
		w.Uint64(uint64(time.Now().Unix()))
		w.Uint64(in.NarSize)
		w.Bool(false) // ultimate
		w.Strings(nil)
		w.String("") // ca
		rc, err := open(i)
		if err != nil {
			return fmt.Errorf("localstore: opening %s: %w", in.Path, err)
		}
		n, err := w.ReadFrom(io.LimitReader(ctxReader{ctx, rc}, int64(in.NarSize)))
		rc.Close()
		if err == nil && uint64(n) != in.NarSize {
			err = fmt.Errorf("NAR ended after %d bytes, expected %d: %w", n, in.NarSize, io.ErrUnexpectedEOF)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return fmt.Errorf("localstore: sending %s: %w", in.Path, err)
		}
		if ok, err := r.Uint64(); err != nil || ok != 1 {
			return fmt.Errorf("localstore: nix-store --serve refused %s (reply %d, %v)", in.Path, ok, err)
		}
		s.logf("imported %s (%d bytes) through nix-store --serve", in.Path, in.NarSize)
	}
	return nil
}
