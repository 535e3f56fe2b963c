// SPDX-License-Identifier: MIT

package hook

import (
	"fmt"
	"io"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
)

// progressEvery is how often a copy's progress is reported at most.
const progressEvery = 200 * time.Millisecond

// copyProgress shows one path's copy the way Nix shows its own: an
// actCopyPath activity with byte progress, which `nix build` draws as
// "x/y MiB copied", and the bytes in the slot, which `offload status -v`
// shows as they move.
type copyProgress struct {
	h        *hook
	in       io.Reader
	id       uint64
	res      *reservation
	size     uint64
	done     uint64
	reported time.Time
}

// startCopy begins the activity for path, copied from src to dst, and
// returns a reader that counts what passes through in, for the
// activity and for res.
func (h *hook) startCopy(in io.Reader, path, src, dst string, size uint64, res *reservation) *copyProgress {
	verb := "to"
	where := dst
	if dst == "local" {
		verb, where = "from", src
	}
	id := h.log.Start(hookproto.LvlTalkative, hookproto.ActCopyPath,
		fmt.Sprintf("copying path '%s' %s '%s'", path, verb, where), path, src, dst)
	return &copyProgress{h: h, in: in, id: id, res: res, size: size}
}

func (p *copyProgress) Read(b []byte) (int, error) {
	n, err := p.in.Read(b)
	if n > 0 {
		p.done += uint64(n)
		p.res.addBytes(int64(n))
		if now := time.Now(); now.Sub(p.reported) >= progressEvery || p.done == p.size {
			p.reported = now
			p.h.log.Result(p.id, hookproto.ResProgress, p.done, p.size, 0, 0)
		}
	}
	return n, err
}

// finish ends the activity.
func (p *copyProgress) finish() {
	if p.id != 0 {
		p.h.log.Stop(p.id)
		p.id = 0
	}
}
