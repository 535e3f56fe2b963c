// SPDX-License-Identifier: MIT

package hook

// Rules for this file (a builder's real load, docs/choosing-builders.md):
//   - No round trip between Nix's try and the answer when the chosen
//     builder's shared reading is younger than load-refresh and accounts for
//     this host's builds: loadGate then decides from the snapshot alone.
//   - One hook at a time reads a builder (the slot file's refresh token);
//     the others wait for its reading, at most the connect timeout, and
//     decide again on it: none accepts without the reading it waited for.
//   - For the builds rule a reading counts only when it accounts for this
//     host's builds: none of them is still on its way to the builder, and
//     each one running there was running when the reading was taken. A
//     build on its way shows in no reading, so another host deciding
//     meanwhile cannot count it; allowing one such build per host at a
//     time bounds the builder's overshoot to the race between the hosts'
//     readings.
//   - Every wait is bounded: a request waits at most postpone-wait for this
//     host's builds to reach the builder, and at most the connect timeout
//     for another hook's reading; then the answer is postpone.

import (
	"context"
	"fmt"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// gate is what loadGate and refresh tell try to do next.
type gate uint8

const (
	// gateGo: decide on the shared state as it is.
	gateGo gate = iota
	// gateAgain: the shared state changed (a new reading, a slot, a
	// builder found unreachable): decide again.
	gateAgain
	// gatePostpone: answer postpone, for loadTry.why.
	gatePostpone
)

// Bounds of the load checks of one request.
var (
	// maxLoadRefreshes bounds the readings one request takes or waits
	// for: each is a round trip, or a wait on another hook's.
	maxLoadRefreshes = 6
	// loadPoll is the step of the waits for another hook's reading and
	// for a build's start: the slot file wakes waiters on releases only.
	loadPoll = 20 * time.Millisecond
	// accountGap is how long after a reading a hook reads the builder
	// again because a build of this host started since: a builder's
	// process shows there shortly after the build command was sent.
	accountGap = 150 * time.Millisecond
)

// testOnlyReadLoad, when set, stands in for connecting to a builder and
// reading its load.
var testOnlyReadLoad func(ctx context.Context, m *spec.Machine) (pick.Reading, error)

// loadTry is the state of one request's load checks.
type loadTry struct {
	refreshes int
	// waitUntil ends the request's waits on the slot file (postpone-wait
	// in all); zero until the first wait.
	waitUntil time.Time
	// why is the reason of a gatePostpone.
	why string
}

// loadAware reports whether builders' readings take part in the choice.
func (h *hook) loadAware() bool {
	return h.state != nil && h.cfg.LoadRefresh() > 0 && h.opts.Thresholds != (pick.Thresholds{})
}

// builder returns machine i's record in the last snapshot, or nil.
func (h *hook) builder(i int) *slots.Builder {
	uri := h.machines[i].URI
	for k := range h.snap {
		if h.snap[k].URI == uri {
			if !h.snap[k].Known {
				return nil
			}
			return &h.snap[k]
		}
	}
	return nil
}

// ourPhases counts this host's builds on b that are on their way there
// (connecting or uploading) and those that run there.
func ourPhases(b *slots.Builder) (pending, building int) {
	for k := range b.Running {
		switch p := b.Running[k].Phase; {
		case p < slots.PhaseBuilding:
			pending++
		case p == slots.PhaseBuilding:
			building++
		}
	}
	return pending, building
}

// accounts reports whether b's reading accounts for this host's builds: no
// build is on its way, every build running now was running when the
// reading was stored (ReadingOurs), and the builder saw at least those.
// Slots downloading count in Busy, not here: their builds have ended there.
func accounts(b *slots.Builder) bool {
	pending, building := ourPhases(b)
	return pending == 0 && b.ReadingOurs >= building && b.Reading.Builds >= b.ReadingOurs
}

// loadGate checks, before try takes a slot on machine i (the decision's
// choice), that the decision stands on a reading it may stand on. It
// reads the builder when the shared reading is older than load-refresh or,
// for the builds rule, does not account for this host's builds; it waits
// for this host's builds on their way there to start. Without load
// awareness, or with a current reading, it returns gateGo at once.
func (h *hook) loadGate(ctx context.Context, i int, lt *loadTry) gate {
	if !h.loadAware() {
		return gateGo
	}
	b := h.builder(i)
	if b == nil {
		return gateGo
	}
	r := &b.Reading
	age := h.env.Now().Sub(r.Time)
	maxAge := h.cfg.LoadRefresh()
	if !r.Time.IsZero() && age < h.cfg.LoadRefresh() {
		if !h.opts.Thresholds.Builds || r.Builds < 0 || accounts(b) {
			return gateGo
		}
		m := &h.machines[i]
		if pending, _ := ourPhases(b); pending > 0 {
			// No reading shows a build before it runs on the builder:
			// wait for it to start (or end) there.
			return h.waitSlots(ctx, lt, time.Time{},
				fmt.Sprintf("a build of this machine is still on its way to '%s'", m.URI))
		}
		if age < accountGap {
			return h.waitSlots(ctx, lt, r.Time.Add(accountGap),
				fmt.Sprintf("waiting for '%s' to show this machine's builds", m.URI))
		}
		// A build of this host started after the reading: read again,
		// whatever load-refresh says, unless a newer reading appears.
		maxAge = age
	}
	if lt.refreshes >= maxLoadRefreshes {
		lt.why = fmt.Sprintf("no current load reading of '%s' after %d tries", h.machines[i].URI, lt.refreshes)
		return gatePostpone
	}
	lt.refreshes++
	return h.refresh(ctx, i, maxAge, lt)
}

// refreshRejected reads again, on the way to a postpone or a decline, the
// first builder the decision turned down as busy elsewhere on a reading
// older than load-refresh: a builder busy a while ago may be idle now, and
// the next try (this one, decided again) sees its current state. It
// returns gateGo when there is none.
func (h *hook) refreshRejected(ctx context.Context, d *pick.Decision, lt *loadTry) gate {
	if !h.loadAware() || lt.refreshes >= maxLoadRefreshes {
		return gateGo
	}
	now := h.env.Now()
	for i := range d.Reasons {
		if d.Reasons[i].Reject != pick.RejectBusyElsewhere {
			continue
		}
		b := h.builder(i)
		if b == nil || now.Sub(b.Reading.Time) < h.cfg.LoadRefresh() {
			continue
		}
		lt.refreshes++
		if g := h.refresh(ctx, i, h.cfg.LoadRefresh(), lt); g != gateGo {
			return g
		}
	}
	return gateGo
}

// staleAt returns when the first reading on which d turned a builder down
// as busy elsewhere gets older than load-refresh, so that a postponing
// hook can wait for it and read the builder again; zero when there is
// none in the future, or the request has taken its readings.
func (h *hook) staleAt(d *pick.Decision, lt *loadTry) time.Time {
	var at time.Time
	if !h.loadAware() || lt.refreshes >= maxLoadRefreshes {
		return at
	}
	now := h.env.Now()
	for i := range d.Reasons {
		if d.Reasons[i].Reject != pick.RejectBusyElsewhere {
			continue
		}
		if b := h.builder(i); b != nil && !b.Reading.Time.IsZero() {
			t := b.Reading.Time.Add(h.cfg.LoadRefresh())
			if t.After(now) && (at.IsZero() || t.Before(at)) {
				at = t
			}
		}
	}
	return at
}

// waitSlots waits for a change of the slot file, until the time given
// (zero: one poll step) and at most until the request's postpone-wait ends.
// It returns gateAgain, or gatePostpone with why when postpone-wait is
// over.
func (h *hook) waitSlots(ctx context.Context, lt *loadTry, until time.Time, why string) gate {
	now := time.Now() // real time: WaitChange sleeps in it
	if lt.waitUntil.IsZero() {
		lt.waitUntil = now.Add(h.cfg.PostponeWait())
	}
	left := lt.waitUntil.Sub(now)
	if left <= 0 || ctx.Err() != nil {
		lt.why = why
		return gatePostpone
	}
	d := loadPoll
	if !until.IsZero() {
		d = max(until.Sub(h.env.Now()), time.Millisecond)
	}
	h.state.WaitChange(ctx, h.gen, min(d, left))
	return gateAgain
}

// refresh reads machine i's load for every hook on the host and stores it,
// when its shared reading is older than maxAge and no other hook is reading
// it; when another one is, it waits for that reading. It returns gateAgain
// after a new reading (or a failed connection), gatePostpone when the
// other hook's reading did not come within the connect timeout, and gateGo
// when there is nothing to read (no record) or nobody reads it after all.
func (h *hook) refresh(ctx context.Context, i int, maxAge time.Duration, lt *loadTry) gate {
	m := &h.machines[i]
	var seen time.Time
	if b := h.builder(i); b != nil {
		seen = b.Reading.Time
	}
	release, ok := h.state.TryRefresh(m.URI, maxAge)
	if !ok {
		return h.awaitReading(ctx, i, seen, lt)
	}
	defer release()
	now := h.env.Now()
	var r pick.Reading
	if testOnlyReadLoad != nil {
		got, err := testOnlyReadLoad(ctx, m)
		if err != nil {
			h.connectFailed(i, err)
			return gateAgain
		}
		r = got
	} else {
		c, _ := h.takeSpare(m)
		if c == nil {
			start := h.env.Now()
			var err error
			c, err = h.connect(ctx, m)
			if err != nil {
				h.connectFailed(i, err)
				return gateAgain
			}
			h.state.RecordSuccess(m.URI, h.env.Now().Sub(start))
		}
		r = h.readLoad(ctx, c, m)
		// Kept for the build, should this builder win the decision.
		h.spare = c
	}
	r.Time = now
	h.state.SetReading(m.URI, r)
	return gateAgain
}

// awaitReading waits, at most the connect timeout, for the reading of
// machine i to differ from the one taken at seen, or for the hook reading
// it to give up (gateGo), polling the slot file.
func (h *hook) awaitReading(ctx context.Context, i int, seen time.Time, lt *loadTry) gate {
	m := &h.machines[i]
	timeout := h.cfg.ConnectTimeout()
	deadline := time.Now().Add(timeout)
	for {
		gen := h.state.Generation()
		h.snap = h.state.Snapshot(h.snap[:0])
		b := h.builder(i)
		if b == nil {
			return gateGo
		}
		if !b.Reading.Time.Equal(seen) {
			return gateAgain
		}
		if !b.Refreshing {
			// Nobody reads it: the holder gave up (its failed
			// connection is in the shared health), or the file is
			// read-only. Decide on what there is.
			return gateGo
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			lt.why = fmt.Sprintf("no load reading of '%s' within %v: another build is reading it", m.URI, timeout)
			return gatePostpone
		}
		h.state.WaitChange(ctx, gen, min(left, loadPoll))
	}
}

// readLoad runs the load command over c, within the connect timeout. A
// failed reading is all unknown: stored all the same, so that other hooks
// do not retry at once. The builder's platform comes with it, and is
// stored when it tells something.
func (h *hook) readLoad(ctx context.Context, c *builder.Conn, m *spec.Machine) pick.Reading {
	got, pl, err := h.runLoadScript(ctx, c)
	if err != nil {
		h.log.Debugf("reading the load of '%s': %v", m.URI, err)
		return pick.ReadingUnknownAt(h.env.Now())
	}
	if pl.Known() {
		h.storePlatform(m, pl)
	}
	return got
}

// runLoadScript runs remoteload's script over c, within the connect
// timeout.
func (h *hook) runLoadScript(ctx context.Context, c *builder.Conn) (pick.Reading, remoteload.Platform, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ConnectTimeout())
	defer cancel()
	return c.ReadLoad(ctx)
}

// othersOnTheirWay reports whether, besides r's slot (just taken),
// another build of this host is on its way to r's builder and took its
// slot first: two hooks that decided on the same reading at once must not
// both send a build that no reading shows yet (see the rules above).
func (h *hook) othersOnTheirWay(r *reservation) bool {
	if r.slot == nil || !h.loadAware() || !h.opts.Thresholds.Builds {
		return false
	}
	uri := r.uri
	h.snap = h.state.Snapshot(h.snap[:0])
	for k := range h.snap {
		b := &h.snap[k]
		if b.URI != uri || !b.Known || b.Reading.Builds < 0 {
			continue
		}
		ours := -1
		for j := range b.Running {
			if b.Running[j].Index == r.slot.Index() {
				ours = j
			}
		}
		if ours < 0 {
			return false
		}
		me := &b.Running[ours]
		for j := range b.Running {
			o := &b.Running[j]
			if j == ours || o.Phase >= slots.PhaseBuilding {
				continue
			}
			if o.Since.Before(me.Since) || o.Since.Equal(me.Since) && o.Index < me.Index {
				return true
			}
		}
	}
	return false
}

// takeSpare returns the connection kept from a load refresh when it goes to
// m, and closes it otherwise.
func (h *hook) takeSpare(m *spec.Machine) (*builder.Conn, error) {
	c := h.spare
	h.spare = nil
	if c == nil {
		return nil, nil
	}
	if c.Machine.URI == m.URI {
		return c, nil
	}
	c.Close()
	return nil, nil
}

func (h *hook) closeSpare() {
	if h.spare != nil {
		h.spare.Close()
		h.spare = nil
	}
}
