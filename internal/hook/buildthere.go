// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/store"
)

// buildThere is the step between upload and download: it builds rn's
// derivation on its builder. It returns exitOK when the build succeeded;
// otherwise the exit code, with the result when the build failed as a
// build (and none when the connection or the protocol failed), said in the
// log.
func (h *hook) buildThere(ctx context.Context, rn *run) (code int, failed *store.BuildResult) {
	j := rn.j
	// The nix-store that registers the outputs starts now, beside the
	// build, instead of after it; not during the upload, whose local
	// nix-store --serve runs then (the peak memory stays).
	if j.reg == nil {
		j.reg = j.store.StartRegistrar()
	}
	rn.r.phase(slots.PhaseBuilding)
	endProbe := h.probeBeside(ctx, rn.c)
	inputSrcs := j.drv.InputSrcs
	if len(j.drv.InputDrvs) > 0 {
		inputSrcs = rn.inputs
	}
	res, err := rn.c.Store.BuildDerivation(rn.req.DrvPath, j.drv, inputSrcs, h.buildOptions())
	endProbe()
	if err != nil {
		if ctx.Err() == nil {
			h.log.Errorf("build of '%s' on '%s': %v", rn.req.DrvPath, rn.m.URI, err)
		}
		return exitFailed, nil
	}
	if !res.Success() {
		msg := strings.TrimSpace(store.StripANSI(res.ErrorMsg))
		if msg == "" {
			msg = res.Status.String()
		}
		h.log.Errorf("build of '%s' on '%s' failed: %s", rn.req.DrvPath, rn.m.URI, msg)
		return exitCode(res.Status), &res
	}
	return exitOK, nil
}

// exitCode maps a failed build's status to the hook's exit code, so Nix
// 2.8 … 2.28 reports it as what it is (DerivationGoal::buildDone in Nix
// 2.8 src/libstore/build/derivation-goal.cc; the statuses are
// BuildResult::Status in src/libstore/build-result.hh).
func exitCode(s store.Status) int {
	switch s {
	case store.TimedOut:
		return exitTimedOut
	case store.PermanentFailure, store.TransientFailure, store.OutputRejected, store.NotDeterministic:
		return exitBuildFailed
	}
	return exitFailed
}

func (h *hook) buildOptions() store.BuildOptions {
	secs := func(k string) time.Duration {
		var n int64
		fmt.Sscan(h.settings[k], &n)
		return time.Duration(n) * time.Second
	}
	var logSize uint64
	fmt.Sscan(h.settings["max-build-log-size"], &logSize)
	return store.BuildOptions{
		MaxSilentTime: secs("max-silent-time"),
		Timeout:       secs("timeout"),
		MaxLogSize:    logSize,
		KeepFailed:    h.settings["keep-failed"] == "true",
	}
}
