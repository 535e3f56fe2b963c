// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"io"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
)

// Only a failure emulation can explain is built again: on a machine that
// emulated the system, and a failure of the build itself.
func TestRetryable(t *testing.T) {
	h := &hook{}
	h.decision.Reasons = []pick.Reason{
		{Exec: pick.Emulated, Presumed: true},
		{Exec: pick.Emulated},
		{Exec: pick.Native},
		{Exec: pick.Unknown},
	}
	for _, tt := range []struct {
		i      int
		status store.Status
		want   bool
	}{
		{0, store.PermanentFailure, true},
		{1, store.PermanentFailure, true},
		{1, store.TransientFailure, true},
		{1, store.MiscFailure, true},
		{1, store.TimedOut, false},
		{1, store.LogLimitExceeded, false},
		{1, store.OutputRejected, false},
		{1, store.NotDeterministic, false},
		{1, store.InputRejected, false},
		{1, store.DependencyFailed, false},
		{2, store.PermanentFailure, false}, // native: final
		{3, store.PermanentFailure, false}, // nothing known: final
		{-1, store.PermanentFailure, false},
		{4, store.PermanentFailure, false},
	} {
		if got := h.retryable(tt.i, tt.status); got != tt.want {
			t.Errorf("retryable(%d, %v) = %v, want %v", tt.i, tt.status, got, tt.want)
		}
	}
}

// The memory of failures under emulation is keyed by a name any user
// chooses, so a failure under emulation alone must not make it: a
// derivation that fails everywhere would steer everyone's builds of that
// name. Neither a failure with the retry off nor one no native builder
// could take again is proof; a native success after it is.
func TestEmulationMemoryNeedsProof(t *testing.T) {
	const name = "firefox-130.0"
	emu := spec.Machine{URI: "ssh://emu", Name: "emu", Host: "emu", Scheme: "ssh", MaxJobs: 2, SpeedFactor: 1,
		Systems: []string{"x86_64-linux", "aarch64-linux"}}
	for _, tt := range []struct {
		what  string
		retry bool
	}{
		{"retry off", false},
		{"no native builder", true},
	} {
		t.Run(tt.what, func(t *testing.T) {
			ms := []spec.Machine{emu}
			state := openState(t, filepath.Join(t.TempDir(), "slots"), ms)
			h := &hook{
				env:      Env{Now: time.Now},
				cfg:      testConfig(t, "emulation-retry", strconv.FormatBool(tt.retry), "emulation-failure-memory", "1h"),
				log:      hookproto.NewLogger(io.Discard, 0),
				state:    state,
				machines: ms,
				loads:    make([]pick.Load, len(ms)),
			}
			h.decision.Reasons = []pick.Reason{{Exec: pick.Emulated, Presumed: true}}
			req := &hookproto.Request{System: "aarch64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-" + name + ".drv"}
			if got := h.retryNative(context.Background(), 0, &run{req: req}, exitBuildFailed); got != exitBuildFailed {
				t.Errorf("retryNative = %d, want %d (the first failure stands)", got, exitBuildFailed)
			}
			if fl, _ := state.DrvFlags(name, time.Time{}); fl != 0 {
				t.Errorf("%s is remembered (flags %d) after a failure under emulation that nothing showed emulation caused", name, fl)
			}
		})
	}

	state := openState(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{emu})
	h := &hook{env: Env{Now: time.Now}, cfg: testConfig(t, "emulation-retry", "true", "emulation-failure-memory", "1h"), state: state}
	for _, code := range []int{exitBuildFailed, exitTimedOut, exitFailed} {
		h.rememberEmulated(name, code)
		if fl, _ := state.DrvFlags(name, time.Time{}); fl != 0 {
			t.Errorf("remembered after the native build ended with %d", code)
		}
	}
	h.rememberEmulated(name, exitOK)
	if fl, _ := state.DrvFlags(name, time.Time{}); fl != slots.DrvEmulationFailed {
		t.Errorf("DrvFlags after a native success = %d, want %d", fl, slots.DrvEmulationFailed)
	}
	h.cfg = testConfig(t, "emulation-retry", "true", "emulation-failure-memory", "0")
	h.rememberEmulated("other-1.0", exitOK)
	if fl, _ := state.DrvFlags("other-1.0", time.Time{}); fl != 0 {
		t.Errorf("remembered with emulation-failure-memory 0")
	}
}
