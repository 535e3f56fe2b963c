// SPDX-License-Identifier: MIT

package serve

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/offload-nix/offload/pkg/store"
)

// Upload is AddToStoreNars on a stream of its own that the server reads
// only as a whole: a `nix-store --serve --write` behind a decompressor,
// which passes bytes on in blocks and the last of them only when its
// input ends. So nothing waits for the server before everything is
// sent: Upload writes the greeting, every AddToStoreNar and its NAR, and
// closes w; only then does it read the server's greeting and its
// acknowledgements from r. The server's answers are a few words in all,
// which the transport holds meanwhile.
//
// Errors are AddToStoreNars', with the remote's reason where it failed.
// After a local failure (open, a NAR of the wrong size) w is left open,
// in the middle of a NAR: the caller ends the stream without finishing
// it, and the path whose NAR was cut short never becomes valid.
func Upload(r io.Reader, w io.WriteCloser, opts Options, infos []store.PathInfo, open func(i int) (io.Reader, error)) error {
	const op = "AddToStoreNar"
	hashes, err := store.UploadHashes(infos)
	if err != nil {
		return store.Local(fmt.Errorf("serve: %s %w", op, err))
	}
	c := newClient(r, w, opts)
	hello.Send(c.w)
	var stop atomic.Bool
	werr := c.writeNars(infos, hashes, open, &stop)
	if werr == nil {
		if err := c.w.Flush(); err != nil {
			werr = &writeError{c.peer.IOErr(op, "", err)}
		} else if err := w.Close(); err != nil {
			werr = &writeError{c.peer.IOErr(op, "", err)}
		}
	}
	var we *writeError
	if werr != nil && !errors.As(werr, &we) {
		return werr
	}
	// Everything is sent, or the server stopped taking it: its answers,
	// or the end of its stream with its reason.
	v, err := hello.Answer(c.br, &c.peer)
	if err == nil {
		err = c.accept(v)
	}
	if err == nil {
		err = c.readAcks(infos, &stop)
	}
	if err != nil {
		return err
	}
	return werr
}
