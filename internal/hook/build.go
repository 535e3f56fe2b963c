// SPDX-License-Identifier: MIT

package hook

import (
	"context"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

// run is one build of an accepted derivation on one builder: what its
// steps (upload.go, buildthere.go, download.go) share.
type run struct {
	c   *builder.Conn
	m   *spec.Machine
	r   *reservation
	req *hookproto.Request
	j   *job
	// inputs and wanted are what Nix sent after accept: the input closure
	// and the names of the outputs that are not valid locally.
	inputs, wanted []string
	// sent and received count the NAR bytes copied each way.
	sent, received int64
}

// build runs an accepted build to its end and returns the exit code. A
// build that fails on a builder emulating its system is built again on a
// native one (emulation.go). rn.inputs and rn.wanted are read here; rn's
// reservation stays the caller's to release, though buildOn gives the
// slot back at the build's end.
func (h *hook) build(ctx context.Context, rn *run) int {
	var err error
	rn.inputs, rn.wanted, err = hookproto.ReadAccepted(h.in)
	if err != nil {
		h.log.Errorf("%v", err)
		rn.c.Close()
		return exitFailed
	}
	defer func() { rn.j.reg.Abort() }()
	i := h.decision.Index
	code, failed := h.buildOn(ctx, rn)
	if failed == nil || ctx.Err() != nil || !h.retryable(i, failed.Status) {
		return code
	}
	return h.retryNative(ctx, i, rn, code)
}

// buildOn copies the inputs to rn's builder, builds there and brings the
// outputs home, then closes the connection and ends the reservation
// (reservation.done). It returns the exit code, and the build's result
// when the build itself failed.
func (h *hook) buildOn(ctx context.Context, rn *run) (int, *store.BuildResult) {
	// On SIGTERM (Nix ≥ 2.35 sends it 500 ms before SIGKILL) the session
	// closes at once, since it was started with ctx (pkg/ssh): whatever
	// waits on the builder returns, and the builder's nix-store --serve
	// sees the hangup and stops the build (TestHookKilledMidBuild).
	ok := false
	defer func() {
		if ok {
			rn.c.Leave()
		} else {
			rn.c.Close()
		}
	}()
	defer func() { rn.r.done(ok, rn.sent, rn.received) }()
	// From here on the builder's stderr is the build log.
	if h.env.BuildLog != nil {
		rn.c.Tail.SetSink(h.env.BuildLog)
	}
	built, err := h.sendInputs(ctx, rn)
	if err != nil {
		h.log.Errorf("copying inputs of %s to '%s': %v", rn.req.DrvPath, rn.m.URI, err)
		return exitFailed, nil
	}
	if !built {
		if code, failed := h.buildThere(ctx, rn); code != exitOK {
			return code, failed
		}
	}
	if err := h.bringOutputs(ctx, rn); err != nil {
		h.log.Errorf("copying outputs of '%s' from '%s': %v", rn.req.DrvPath, rn.m.URI, err)
		return exitFailed, nil
	}
	ok = true
	return exitOK, nil
}
