// SPDX-License-Identifier: MIT

package hook

import (
	"fmt"
	"io"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/slots"
)

// progressEvery is how often a copy's progress is reported at most.
const progressEvery = 200 * time.Millisecond

// copyProgress shows one path's copy the way Nix shows its own: an
// actCopyPath activity with byte progress, which `nix build` draws as
// "x/y MiB copied", and the bytes in the slot, which `offload status -v`
// shows as they move.
type copyProgress struct {
	h        *hook
	r        io.Reader
	id       uint64
	slot     *slots.Slot
	size     uint64
	done     uint64
	reported time.Time
}

// startCopy begins the activity for path, copied from src to dst, and
// returns a reader that counts what passes through r.
func (h *hook) startCopy(r io.Reader, path, src, dst string, size uint64, slot *slots.Slot) *copyProgress {
	verb := "to"
	where := dst
	if dst == "local" {
		verb, where = "from", src
	}
	id := h.log.Start(hookproto.LvlTalkative, hookproto.ActCopyPath,
		fmt.Sprintf("copying path '%s' %s '%s'", path, verb, where), path, src, dst)
	return &copyProgress{h: h, r: r, id: id, slot: slot, size: size}
}

func (p *copyProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += uint64(n)
		if p.slot != nil {
			p.slot.AddBytes(int64(n))
		}
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
