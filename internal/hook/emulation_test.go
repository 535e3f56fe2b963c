// SPDX-License-Identifier: MIT

package hook

import (
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
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
		status serve.Status
		want   bool
	}{
		{0, serve.PermanentFailure, true},
		{1, serve.PermanentFailure, true},
		{1, serve.TransientFailure, true},
		{1, serve.MiscFailure, true},
		{1, serve.TimedOut, false},
		{1, serve.LogLimitExceeded, false},
		{1, serve.OutputRejected, false},
		{1, serve.NotDeterministic, false},
		{1, serve.InputRejected, false},
		{1, serve.DependencyFailed, false},
		{2, serve.PermanentFailure, false}, // native: final
		{3, serve.PermanentFailure, false}, // nothing known: final
		{-1, serve.PermanentFailure, false},
		{4, serve.PermanentFailure, false},
	} {
		if got := h.retryable(tt.i, tt.status); got != tt.want {
			t.Errorf("retryable(%d, %v) = %v, want %v", tt.i, tt.status, got, tt.want)
		}
	}
}

func TestExecOf(t *testing.T) {
	m := spec.Machine{URI: "ssh://big", Name: "big", Systems: []string{"x86_64-linux", "aarch64-linux", "riscv64-linux"}}
	var b slots.Builder
	over := []ExecOverride{{Builder: "big", System: "riscv64-linux", Native: true}}
	if e, via := ExecOf(&m, nil, "aarch64-linux", over); e != pick.Unknown || via != "" {
		t.Errorf("nothing known: %v %q", e, via)
	}
	if e, _ := ExecOf(&m, &b, "riscv64-linux", over); e != pick.Native {
		t.Errorf("system-exec native: %v", e)
	}
	if e, _ := ExecOf(&m, &b, "riscv64-linux", []ExecOverride{{Builder: "ssh://big", System: "riscv64-linux"}}); e != pick.Emulated {
		t.Errorf("system-exec emulated, by URI: %v", e)
	}
	// A probe, through the slot file.
	f, err := slots.Open(t.TempDir()+"/slots", []spec.Machine{m}, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.SetExec(m.URI, time.Now(), []slots.SystemExec{{System: "aarch64-linux", Exec: slots.ExecEmulated, Qemu: true}, {System: "x86_64-linux", Exec: slots.ExecNative}})
	snap := f.Snapshot(nil)
	if e, via := ExecOf(&m, &snap[0], "aarch64-linux", nil); e != pick.Emulated || via != "qemu-aarch64" {
		t.Errorf("probed emulated: %v %q", e, via)
	}
	if e, _ := ExecOf(&m, &snap[0], "aarch64-linux", []ExecOverride{{Builder: "big", System: "aarch64-linux", Native: true}}); e != pick.Native {
		t.Errorf("system-exec does not beat the probe: %v", e)
	}
	for sys, want := range map[string]string{"aarch64-linux": "qemu-aarch64", "armv7l-linux": "qemu-arm", "armv6l-linux": "qemu-arm",
		"riscv64-linux": "qemu-riscv64", "i686-linux": "qemu-i386", "powerpc64le-linux": "qemu-ppc64le"} {
		if got := QemuName(sys); got != want {
			t.Errorf("QemuName(%q) = %q, want %q", sys, got, want)
		}
	}
}
