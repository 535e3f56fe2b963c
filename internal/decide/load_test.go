// SPDX-License-Identifier: MIT

package decide

import (
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

func TestExecOf(t *testing.T) {
	m := spec.Machine{URI: "ssh://big", Name: "big", Systems: []string{"x86_64-linux", "aarch64-linux", "riscv64-linux"}}
	var b slots.Builder
	over := []config.ExecEntry{{Builder: "big", System: "riscv64-linux", Native: true}}
	if e, via := ExecOf(&m, nil, "aarch64-linux", over); e != pick.Unknown || via != "" {
		t.Errorf("nothing known: %v %q", e, via)
	}
	if e, _ := ExecOf(&m, &b, "riscv64-linux", over); e != pick.Native {
		t.Errorf("system-exec native: %v", e)
	}
	if e, _ := ExecOf(&m, &b, "riscv64-linux", []config.ExecEntry{{Builder: "ssh://big", System: "riscv64-linux"}}); e != pick.Emulated {
		t.Errorf("system-exec emulated, by URI: %v", e)
	}
	// A probe, through the slot file.
	f, err := slots.Open(t.TempDir()+"/slots", []spec.Machine{m}, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.SetExec(m.URI, time.Now(), []slots.SystemExec{{System: "aarch64-linux", Exec: pick.Emulated, Qemu: true}, {System: "x86_64-linux", Exec: pick.Native}})
	snap := f.Snapshot(nil)
	if e, via := ExecOf(&m, &snap[0], "aarch64-linux", nil); e != pick.Emulated || via != "qemu-aarch64" {
		t.Errorf("probed emulated: %v %q", e, via)
	}
	if e, _ := ExecOf(&m, &snap[0], "aarch64-linux", []config.ExecEntry{{Builder: "big", System: "aarch64-linux", Native: true}}); e != pick.Native {
		t.Errorf("system-exec does not beat the probe: %v", e)
	}
	for sys, want := range map[string]string{"aarch64-linux": "qemu-aarch64", "armv7l-linux": "qemu-arm", "armv6l-linux": "qemu-arm",
		"riscv64-linux": "qemu-riscv64", "i686-linux": "qemu-i386", "powerpc64le-linux": "qemu-ppc64le"} {
		if got := QemuName(sys); got != want {
			t.Errorf("QemuName(%q) = %q, want %q", sys, got, want)
		}
	}
}
