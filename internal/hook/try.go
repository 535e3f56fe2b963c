// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/pick"
)

// maxAttempts bounds how many builders one request tries to connect to.
const maxAttempts = 8

// try answers one request, in steps: decide (pick.Choose on the inputs
// internal/decide assembles), gate (the chosen builder's load,
// remoteload.go), prepare (the derivation, the local store), then acceptOn:
// reserve, connect, accept and build (buildOn: sendInputs, buildThere and
// bringOutputs, which downloads and registers). done is true when the hook
// process has finished its work (it accepted and built, or declined
// permanently) and must exit with code.
func (h *hook) try(ctx context.Context, req *hookproto.Request) (code int, done bool, err error) {
	name := decide.DrvName(req.DrvPath)
	h.lastReq = *req
	// A builder this process could not reach is skipped for the rest of
	// this request only; for later ones the shared health (backoff, and
	// decide.DownAfter failures) decides, so one slow handshake does not turn
	// every later derivation away.
	for i := range h.unreachable {
		h.unreachable[i] = ""
	}
	if len(h.machines) == 0 {
		h.recordDecision(name, pick.DeclinePermanently, "", "no builders")
		return exitOK, true, h.log.Answer(pick.DeclinePermanently)
	}
	preq := pick.Request{
		System:       req.System,
		Features:     req.Features,
		LocalWilling: req.AmWilling,
		DrvPath:      req.DrvPath,
		DrvName:      name,
	}
	// Nix asks again after a postpone only once build-poll-interval (5 s)
	// has passed, so a slot that frees sooner is better used now: the
	// hook waits on the slot file (a futex, woken by every release) for
	// up to postpone-wait in all, however many unrelated changes wake it
	// meanwhile. Nix's scheduler waits for the answer, but with every
	// slot busy it has nothing to start on this builder anyway; a wait
	// that outlasts the running builds only delays what Nix could do
	// locally, hence the bound. The same bound holds for a builder busy
	// elsewhere whose reading gets old enough to read again meanwhile,
	// and for the load checks (remoteload.go).
	var lt loadTry
	for attempt := 0; ; attempt++ {
		h.decide(&preq)
		d := &h.decision
		switch d.Answer {
		case pick.Accept:
		case pick.Postpone, pick.Decline:
			// A builder turned down on an old reading may be free
			// now: read it again before the answer (remoteload.go).
			if g := h.refreshRejected(ctx, d, &lt); g == gateAgain {
				attempt--
				continue
			}
			if d.Answer == pick.Postpone && h.cfg.PostponeWait() > 0 && h.state != nil {
				now := time.Now() // real time: WaitChange sleeps in it
				if lt.waitUntil.IsZero() {
					lt.waitUntil = now.Add(h.cfg.PostponeWait())
				}
				left := lt.waitUntil.Sub(now)
				if at := h.staleAt(d, &lt); !at.IsZero() {
					left = min(left, max(at.Sub(h.env.Now()), time.Millisecond))
				} else if !slotMayFree(d) {
					left = 0
				}
				if left > 0 && ctx.Err() == nil {
					h.warmUp(ctx, d)
					h.state.WaitChange(ctx, h.gen, left)
					attempt--
					continue
				}
			}
			h.closeSpare()
			if d.Answer != pick.Postpone {
				h.closeWarm()
			}
			return exitOK, false, h.answer(name, d)
		default:
			h.closeSpare()
			h.closeWarm()
			return exitOK, false, h.answer(name, d)
		}
		if attempt >= maxAttempts {
			h.log.Warnf("giving up on remote builders for %s after %d attempts", name, attempt)
			return exitOK, false, h.answerWhy(name, pick.Decline, "", "too many failed attempts")
		}

		i := d.Index
		switch h.loadGate(ctx, i, &lt) {
		case gateAgain:
			// A new reading, or a wait for one: decide again on it.
			if ctx.Err() != nil {
				h.closeSpare()
				return exitFailed, true, ctx.Err()
			}
			attempt--
			continue
		case gatePostpone:
			h.closeSpare()
			return exitOK, false, h.answerWhy(name, pick.Postpone, "", lt.why)
		}
		job, why := h.prepare(ctx, req)
		if job == nil {
			h.closeSpare()
			return exitOK, false, h.answerWhy(name, pick.Decline, "", why)
		}
		switch code, out := h.acceptOn(ctx, i, req, job, name, d.Why()); out {
		case accepted:
			return code, true, nil
		case othersFirst:
			attempt--
		case unreachable:
			if ctx.Err() != nil {
				return exitFailed, true, ctx.Err()
			}
		}
	}
}

// What came of acceptOn.
type outcome int

const (
	accepted    outcome = iota // answered "# accept"; the code is the build's
	full                       // another hook took the last slot since the snapshot
	othersFirst                // another hook of this host decided on the same reading and goes first
	unreachable                // the connection failed (recorded)
)

// acceptOn is the way from a decision for machine i to a build: reserve a
// slot, connect, accept, build. The reservation is released on every path
// by one defer; "# accept" is written right where the decision to accept
// is recorded, once the builder is connected: afterwards nothing can fall
// back to a local build.
func (h *hook) acceptOn(ctx context.Context, i int, req *hookproto.Request, j *job, name, why string) (int, outcome) {
	m := &h.machines[i]
	r, ok := h.reserve(m)
	if !ok {
		return 0, full
	}
	defer r.release()
	if h.othersOnTheirWay(&r) {
		return 0, othersFirst
	}
	r.connecting(name)
	start := h.env.Now()
	c, err := h.takeSpare(m)
	if c == nil {
		var warm bool
		c, warm, err = h.takeWarm(m)
		if !warm {
			c, err = h.connect(ctx, m)
		}
	}
	if err != nil {
		h.connectFailed(i, err)
		return 0, unreachable
	}
	if h.state != nil {
		h.state.RecordSuccess(m.URI, h.env.Now().Sub(start))
	}
	h.recordDecision(name, pick.Accept, m.URI, why)
	if h.env.CloseFD5 != nil {
		h.env.CloseFD5()
	}
	if err := h.log.Accept(m.URI); err != nil {
		c.Close()
		return exitFailed, accepted
	}
	c.Store = h.guard(ctx, c)
	return h.build(ctx, &run{c: c, m: m, r: &r, req: req, j: j}), accepted
}

// slotMayFree reports whether some machine was turned down only because
// its slots are full: waiting for a slot can help then, and not when every
// machine is unhealthy (a wait there only blocks Nix, which waits for the
// answer with its whole scheduler).
func slotMayFree(d *pick.Decision) bool {
	for i := range d.Reasons {
		if d.Reasons[i].Reject == pick.RejectFull {
			return true
		}
	}
	return false
}

// answer writes a decline or postpone with its reason: a message for the
// user (at a level that depends on whether Nix can build it locally) and the
// decision ring.
func (h *hook) answer(name string, d *pick.Decision) error {
	return h.answerWhy(name, d.Answer, "", d.Why())
}

// canBuildLocally is Nix's own test (build-remote.cc, main_build_remote:
// canBuildLocally): willing, the system is the local one or an extra
// platform, and every required feature is a local system feature.
func (h *hook) canBuildLocally() bool {
	r := &h.lastReq
	if !r.AmWilling {
		return false
	}
	ok := r.System == h.local.System || r.System == "builtin"
	for _, p := range h.local.ExtraPlatforms {
		ok = ok || p == r.System
	}
	if !ok {
		return false
	}
	for _, f := range r.Features {
		found := false
		for _, g := range h.local.Features {
			found = found || f == g
		}
		if !found {
			return false
		}
	}
	return true
}

func (h *hook) answerWhy(name string, a pick.Answer, builder, why string) error {
	h.recordDecision(name, a, builder, why)
	level := hookproto.LvlTalkative
	if a == pick.Decline && !h.canBuildLocally() {
		level = hookproto.LvlWarn
	}
	if a == pick.Decline || a == pick.DeclinePermanently {
		h.log.Msg(level, "not building %s remotely: %s", name, why)
	}
	return h.log.Answer(a)
}

// job is what an accepted build needs from the local side.
type job struct {
	drv   *drv.Derivation
	store *localstore.Store
	// reg registers the outputs; its nix-store starts at accept, so
	// that the copy back does not wait for it (nil: a run of its own).
	reg *localstore.Registrar
	// local is the local nix-store --serve the upload's steps share
	// (fetch.go, upload.go), open between openLocal and closeLocal.
	local *localServe
}

// prepare reads the derivation and checks that its outputs can be brought
// home; it returns nil and a reason to decline otherwise. This happens
// before accept: afterwards nothing can fall back.
func (h *hook) prepare(ctx context.Context, req *hookproto.Request) (*job, string) {
	st, err := h.localStore(ctx)
	if err != nil {
		return nil, err.Error()
	}
	d := h.drv
	if h.drvPath != req.DrvPath || st.RealDir != st.StoreDir {
		real := st.RealDir + strings.TrimPrefix(req.DrvPath, st.StoreDir)
		d, err = drv.ReadFile(real)
		if err != nil {
			return nil, fmt.Sprintf("reading %s: %v", req.DrvPath, err)
		}
	}
	if d.IsFloatingCA() {
		return nil, "floating content-addressed derivations are not supported: their output paths are not known before the build"
	}
	return &job{drv: d, store: st}, ""
}

// localStore opens the local store once, from the store setting Nix sent.
func (h *hook) localStore(ctx context.Context) (*localstore.Store, error) {
	if h.store != nil || h.storeErr != nil {
		return h.store, h.storeErr
	}
	// No nix-store runs here: the pick is checked only if a command
	// fails (localstore.Candidates), as every process after accept
	// delays the build's end and before it delays Nix's scheduler.
	var err error
	ns := localstore.Candidates(h.env.PPID)
	if len(ns) == 0 {
		err = errors.New("no nix-store found")
	}
	if err == nil {
		h.store, err = localstore.New(h.settings["store"], ns[0], h.log.Debugf)
	}
	if err == nil {
		h.store.Fallback = ns[1:]
		err = h.store.CheckImport(ctx)
	}
	if err != nil {
		h.store, h.storeErr = nil, fmt.Errorf("the local store cannot take remote outputs: %w", err)
	}
	return h.store, h.storeErr
}

// connectFailed records a failed connection: this process stops trying the
// builder, and every hook on the host sees it unhealthy for a backoff that
// grows with each failure in a row.
func (h *hook) connectFailed(i int, err error) {
	m := &h.machines[i]
	h.unreachable[i] = builder.ErrCode(err).String()
	h.log.Errorf("cannot build on '%s': %v", m.URI, err)
	if h.state == nil {
		return
	}
	h.state.RecordFailure(m.URI, builder.ErrCode(err), h.cfg.UnhealthyBackoff(), h.cfg.UnhealthyBackoffMax())
}
