// SPDX-License-Identifier: MIT

package hook

// Rules for this file (emulation-aware routing, docs/emulation.md):
//   - How a builder runs a system comes from the system-exec setting first,
//     then from the builder's last probe (the platform lines of the load
//     script, pkg/remoteload), then from pick's presumption.
//   - A probe never delays a build: it runs beside it, on the connection
//     the build uses, when the shared one is missing or old.
//   - Only a failure that emulation can explain is built again: the
//     builder emulated the system and the build failed as a build (not a
//     timeout, a log limit, a rejected output or a cancelled run). It is
//     built again once, on a builder that does not emulate the system;
//     a local retry is impossible after accept (Nix holds the output
//     locks).
//   - The memory of failures under emulation is keyed by derivation name,
//     which anyone can choose, and steers everyone's builds of that name:
//     a name is remembered only once the native build after a failure
//     under emulation succeeded.

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

// probeMaxAge is how old a builder's platform probe may be before a build
// there probes it again.
var probeMaxAge = 24 * time.Hour

// platformProbeGrace is how long a finished build waits for the probe beside it.
var platformProbeGrace = time.Second

// probeDue reports whether builder uri's platform was never probed, or
// longer ago than probeMaxAge.
func (h *hook) probeDue(uri string) bool {
	if h.state == nil {
		return false
	}
	for k := range h.snap {
		if h.snap[k].URI == uri {
			t := h.snap[k].ExecProbed()
			return t.IsZero() || h.env.Now().Sub(t) > probeMaxAge
		}
	}
	return false
}

// probe runs the load script on c and returns the builder's platform; ok
// is false when it could not be read.
func (h *hook) probe(ctx context.Context, c *builder.Conn) (remoteload.Platform, bool) {
	_, pl, err := h.runLoadScript(ctx, c)
	if err != nil {
		h.log.Debugf("probing '%s': %v", c.Machine.URI, err)
		return remoteload.Platform{}, false
	}
	return pl, true
}

// storePlatform records in the shared state how m runs each of its
// systems, as pl says.
func (h *hook) storePlatform(m *spec.Machine, pl remoteload.Platform) {
	if h.state == nil {
		return
	}
	h.state.SetExec(m.URI, h.env.Now(), builder.Execs(m, pl))
}

// probeBeside probes c's builder beside the build when its shared probe is
// due; the returned wait ends the probe (call it before closing c).
func (h *hook) probeBeside(ctx context.Context, c *builder.Conn) (wait func()) {
	if !h.probeDue(c.Machine.URI) {
		return func() {}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if pl, ok := h.probe(ctx, c); ok {
			h.storePlatform(c.Machine, pl)
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return func() {
		// A probe still running well after the build is not worth
		// waiting for, and none is when the hook is stopping (SIGTERM):
		// cancelled, it ends by itself.
		select {
		case <-done:
		case <-parent.Done():
		case <-time.After(platformProbeGrace):
		}
		cancel()
	}
}

// retryable reports whether a build that ended with status on machine i
// (the accepted decision's choice) failed in a way emulation can explain:
// the machine emulates the system and the build failed as a build.
func (h *hook) retryable(i int, status store.Status) bool {
	if i < 0 || i >= len(h.decision.Reasons) || h.decision.Reasons[i].Exec != pick.Emulated {
		return false
	}
	switch status {
	case store.PermanentFailure, store.TransientFailure, store.MiscFailure:
		return true
	}
	return false
}

// Bounds of the native retry.
var (
	// retryWait bounds the wait for a native builder's free slot.
	retryWait = 10 * time.Minute
	// retryCandidates bounds the native builders tried.
	retryCandidates = 3
)

// retryNative builds the derivation again on a builder that does not
// emulate its system, after it failed on machine failed, which does, with
// the exit code code. It returns the code of the second build, or code
// when no native builder could take it. The derivation's name is
// remembered only when the second build succeeds (rememberEmulated).
func (h *hook) retryNative(ctx context.Context, failed int, prev *run, code int) int {
	req := prev.req
	name := decide.DrvName(req.DrvPath)
	fm := &h.machines[failed]
	if !h.cfg.Bool("emulation-retry") {
		return code
	}
	preq := pick.Request{System: req.System, Features: req.Features, DrvPath: req.DrvPath, DrvName: name}
	deadline := time.Now().Add(retryWait)
	tried := 0
	failedVia := ""
	if failed < len(h.decision.Reasons) {
		failedVia = h.decision.Reasons[failed].Via
	}
	for ctx.Err() == nil && tried < retryCandidates {
		// decide sets EmulationFailed from the memory, which may be
		// off; pick needs it set here whatever the memory says.
		h.decideRetry(&preq)
		d := &h.decision
		if d.Answer == pick.Postpone && time.Now().Before(deadline) && h.state != nil {
			h.state.WaitChange(ctx, h.gen, time.Until(deadline))
			continue
		}
		if d.Answer != pick.Accept || d.Index == failed || d.Reasons[d.Index].Exec == pick.Emulated {
			h.log.Errorf("build of '%s' failed on '%s', which emulates %s, and no builder that runs it natively can take it: %s",
				req.DrvPath, fm.URI, req.System, d.Why())
			return code
		}
		i := d.Index
		m := &h.machines[i]
		r, ok := h.reserve(m)
		if !ok {
			continue
		}
		tried++
		if code2, built := h.retryOn(ctx, r, i, prev, fm, failedVia); built {
			return code2
		}
	}
	return code
}

// retryOn builds prev's derivation again on machine i, which runs its
// system natively as far as known, holding r until the build's end (one
// deferred release). built is false when it could not connect there, or
// found that machine emulating the system too.
func (h *hook) retryOn(ctx context.Context, r reservation, i int, prev *run, fm *spec.Machine, failedVia string) (code int, built bool) {
	defer r.release()
	req := prev.req
	name := decide.DrvName(req.DrvPath)
	m := &h.machines[i]
	d := &h.decision
	r.connecting(name)
	start := h.env.Now()
	c, err := h.connect(ctx, m)
	if err != nil {
		h.connectFailed(i, err)
		return 0, false
	}
	if h.state != nil {
		h.state.RecordSuccess(m.URI, h.env.Now().Sub(start))
	}
	if d.Reasons[i].Exec == pick.Unknown {
		// Make sure before building there: a builder nobody
		// probed may emulate the system too.
		if pl, ok := h.probe(ctx, c); ok {
			h.storePlatform(m, pl)
			if e, _ := pl.Exec(req.System); e == pick.Emulated {
				h.log.Msg(hookproto.LvlInfo, "'%s' emulates %s too; not building %s there again", m.URI, req.System, name)
				c.Close()
				return 0, false
			}
		}
	}
	line := fmt.Sprintf("the build of %s failed on '%s', which runs %s under emulation%s; building it again on '%s', which runs it natively",
		name, fm.URI, req.System, via(failedVia), m.URI)
	// Into the build log, between the two attempts' logs, where
	// Nix shows it and `nix log` keeps it; else as a message.
	if h.env.BuildLog != nil {
		io.WriteString(h.env.BuildLog, "\n──── offload: "+line+" ────\n\n")
	} else {
		h.log.Msg(hookproto.LvlError, "%s", line)
	}
	h.recordDecision(name, pick.Accept, m.URI, "retry after a failure under emulation on "+fm.Name)
	c.Store = h.guard(ctx, c)
	code, _ = h.buildOn(ctx, &run{c: c, m: m, r: &r, req: req, j: prev.j, inputs: prev.inputs, wanted: prev.wanted})
	h.rememberEmulated(name, code)
	return code, true
}

// rememberEmulated notes the derivation name for every hook on the host
// when the native build after a failure under emulation ended with code
// exitOK. Only that proves that emulation was the cause: any user can
// build a derivation of any name, and one that fails everywhere (a
// builder of "exit 1" named firefox-130.0) would otherwise keep everyone's
// firefox-130.0 off emulating builders for emulation-failure-memory
// (TestEmulationMemoryNeedsProof, TestEmulationFailsEverywhereNotRemembered).
func (h *hook) rememberEmulated(name string, code int) {
	if code != exitOK || h.state == nil || h.cfg.Duration("emulation-failure-memory") <= 0 {
		return
	}
	h.state.RememberDrv(name, slots.DrvEmulationFailed, h.env.Now())
}

// decideRetry is decide for a build that failed under emulation: pick
// keeps emulating builders away while a native one fits.
func (h *hook) decideRetry(req *pick.Request) {
	h.decide(req)
	if !req.EmulationFailed {
		req.EmulationFailed = true
		pick.Choose(&h.decision, h.machines, h.loads, *req, h.local, h.opts, h.env.Now())
	}
}

func via(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
