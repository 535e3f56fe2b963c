// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/ssh"
)

// Under compress=auto each copy of at least internal/builder's squashMin
// (1 MiB), either way, decides from what earlier copies measured of the
// builder's link (slots.Link, shared by every hook on the host through
// the slot file): a hook is one connection, so what one connection
// learnt alone would be paid for again by the next. Deciding reads and
// swaps one word, never asks the builder:
//   - Unknown link: compress, and measure.
//   - After a compressed copy came out at more than poorRatio of its
//     size, the next poorHold copies go as is: the data did not compress,
//     and compressing more like it costs both ends time for nothing (on a
//     slow link too). The copy after them is measured compressed again.
//   - A link measured at linkFast or more: as is; compression cannot pay.
//   - A rate known only from compressed copies is a lower bound (the
//     compressor may have been the slower), so one copy goes as is to
//     measure the link: the first after the link became known, and one
//     in every remeasureEvery compressed copies after; but only a copy
//     that takes at most measureBudget as is at that lower bound. A
//     larger one goes compressed and leaves the measure to a later one:
//     on a slow link a large copy as is costs far more than any
//     measure is worth (50 MiB at 20 Mbit: 22 s, against 6 s
//     compressed).
//   - Otherwise: compress.
//
// Every copy of at least squashMin measures: an uncompressed one moves
// the rate a quarter of the way to its own (the link's real rate), or
// sets it when only compressed copies measured it before; a
// compressed one raises it to its wire bytes per second when that is
// higher, and sets the ratio.
const (
	// linkFast is the rate (KiB/s of an uncompressed copy) from which
	// copies go as is. zstd -3 compresses some 50-100 MiB/s on one core
	// of a builder, and the copy waits for it: where the link moves 50
	// MiB/s as is, a compressed copy can at best keep pace (a loopback
	// or gigabit builder), and pays the compressor's and decompressor's
	// time; below, what compression saves on the wire grows as the link
	// slows (100 Mbit: ~12 MiB/s; 20 Mbit: ~2.4 MiB/s).
	linkFast = 50 << 10
	// poorRatio is the compressed size, in thousandths of the
	// uncompressed one, above which a copy compressed poorly.
	poorRatio = 900
	// poorHold is how many large copies go as is after a poor one.
	poorHold = 16
	// remeasureEvery is how many compressed copies pass between two copies
	// as is that measure the link's real rate.
	remeasureEvery = 64
	// measureBudget is the longest a copy that measures the link may
	// take as is, at the rate compressed copies measured. It lets a
	// gigabit or loopback link, where compressed copies of binaries move
	// some 10-20 MiB/s of wire bytes, be measured with copies of 80 MiB
	// and more, and a 20 Mbit one with copies of up to ~18 MiB.
	measureBudget = 8 * time.Second
	// sinceMeasuring in a measure's Since says that a hook decided to
	// measure a link that only compressed copies measured before.
	sinceMeasuring = slots.SinceNone - 1
)

// compressNext decides whether the next large copy, of raw bytes, on a
// link measured l goes compressed, and returns the measure to store: it
// counts down the copies that go as is. why says why a copy goes as is.
func compressNext(l slots.Link, raw int64) (next slots.Link, compress bool, why string) {
	switch {
	case l.Rate == 0:
		return l, true, ""
	case l.Plain > 0:
		l.Plain--
		return l, false, fmt.Sprintf("a copy compressed only to %.1f%% lately", float64(l.Ratio)/10)
	case l.Rate >= linkFast:
		return l, false, fmt.Sprintf("its link moves %s", rate(l.Rate))
	case (l.Since == slots.SinceNone || l.Since >= remeasureEvery && l.Since < sinceMeasuring) &&
		float64(raw) <= float64(l.Rate)*1024*measureBudget.Seconds():
		why = fmt.Sprintf("measuring its link, which compressed copies moved at least %s", rate(l.Rate))
		if l.Since == slots.SinceNone {
			l.Since = sinceMeasuring // one hook measures; the others compress meanwhile
		} else {
			l.Since = 0
		}
		return l, false, why
	}
	return l, true, ""
}

// measure adds a copy's measure to l.
func measure(l slots.Link, c builder.Copy) slots.Link {
	kib := float64(c.Wire) / 1024 / max(c.Took.Seconds(), 1e-6)
	r := uint32(min(max(kib, 1), math.MaxUint32))
	if !c.Compressed {
		if l.Rate == 0 || l.Since >= sinceMeasuring {
			l.Rate = r // the first real rate
		} else {
			l.Rate = uint32(int64(l.Rate) + (int64(r)-int64(l.Rate))/4)
		}
		l.Since = 0
		return l
	}
	switch {
	case l.Rate == 0 || l.Since == sinceMeasuring:
		// No copy as is measured the link (or the one deciding to
		// was lost): the next copy does.
		l.Since = slots.SinceNone
	case l.Since < sinceMeasuring-1:
		l.Since++
	}
	l.Rate = max(l.Rate, r)
	l.Ratio = uint16(min(max(c.Wire*1000/max(c.Raw, 1), 1), slots.MaxRatio))
	if l.Ratio > poorRatio {
		l.Plain = poorHold
	}
	return l
}

// rate is a link's rate for people.
func rate(kib uint32) string {
	return fmt.Sprintf("%.1f MiB/s", float64(kib)/1024)
}

// squashed is c.Store with copies to and from the builder compressed at
// compress-level (auto: internal/builder's SquashOptions.Level) as the
// compress setting and the machine say
// (internal/builder's Squashed): off, never; on, always; auto, as the
// link's measure says (above), unless the machine's SSH settings ask for
// compression (?compress=true in its URI, -C in NIX_SSHOPTS, Compression
// yes in ssh_config), which is on. Every large copy is measured, for auto
// and for offload status.
func (h *hook) squashed(ctx context.Context, c *builder.Conn) builder.Remote {
	mode := h.cfg.String("compress")
	if mode == config.CompressOff {
		return c.Store
	}
	uri := c.Machine.URI
	logf := func(format string, args ...any) { h.log.Msg(hookproto.LvlTalkative, format, args...) }
	// Read once, and only for a large copy: reading the SSH settings
	// costs a small build's copy back time.
	auto := sync.OnceValue(func() bool { return mode == config.CompressAuto && !h.sshCompression(c) })
	o := builder.SquashOptions{
		Level: h.cfg.Int("compress-level"),
		Measured: func(cp builder.Copy) {
			l := h.updateLink(uri, func(l slots.Link) slots.Link { return measure(l, cp) })
			if cp.Compressed && l.Plain == poorHold && auto() {
				logf("not compressing more copies to or from '%s' for now: one compressed only to %.1f%%", uri, float64(l.Ratio)/10)
			}
		},
		// What the link moved: uncompressed copies' rate, or a lower
		// bound of it from compressed ones, which is what a level is
		// chosen against.
		LinkRate: func() float64 {
			return float64(h.updateLink(uri, func(l slots.Link) slots.Link { return l }).Rate) * 1024
		},
		Logf: logf,
	}
	if mode == config.CompressAuto {
		o.Compress = func(raw int64) bool {
			if !auto() {
				return true
			}
			var compress bool
			var why string
			h.updateLink(uri, func(l slots.Link) slots.Link {
				l, compress, why = compressNext(l, raw)
				return l
			})
			if !compress {
				logf("copying as is to or from '%s': %s", uri, why)
			}
			return compress
		}
	}
	return c.Squashed(ctx, o)
}

// updateLink replaces the link measure of the builder uri with next(the
// current one) in the shared state, or in this process's own without
// one, and returns what it stored. next may run more than once.
func (h *hook) updateLink(uri string, next func(slots.Link) slots.Link) slots.Link {
	if h.state != nil {
		if l, ok := h.state.UpdateLink(uri, next); ok {
			return l
		}
	}
	h.linksMu.Lock()
	defer h.linksMu.Unlock()
	if h.links == nil {
		h.links = map[string]slots.Link{}
	}
	l := next(h.links[uri])
	h.links[uri] = l
	return l
}

// sshCompression reports whether the SSH settings for c's machine ask for
// compression. Settings that cannot be read ask for nothing here: the
// connection that was made with them says why.
func (h *hook) sshCompression(c *builder.Conn) bool {
	s, err := ssh.Resolve(*c.Machine, ssh.Options{Env: h.env.Getenv})
	return err == nil && s.Compression
}
