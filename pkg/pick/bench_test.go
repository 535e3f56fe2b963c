// SPDX-License-Identifier: MIT

package pick

import (
	"strconv"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

// fleet returns n machines of mixed kinds, with loads: native aarch64
// boards, x86 servers that also list aarch64-linux, x86-only servers, some
// with mandatory features, some full or unhealthy.
func fleet(n int) ([]spec.Machine, []Load) {
	ms := make([]spec.Machine, n)
	loads := make([]Load, n)
	for i := range ms {
		name := "b" + strconv.Itoa(i)
		m := spec.Machine{URI: "ssh://root@" + name, Scheme: "ssh", User: "root", Host: name, Name: name,
			MaxJobs: 1 + i%8, SpeedFactor: float64(1 + i%4),
			SupportedFeatures: []string{"benchmark", "big-parallel", "kvm", "nixos-test"}}
		switch i % 4 {
		case 0:
			m.Systems = []string{"aarch64-linux"}
		case 1:
			m.Systems = []string{"aarch64-linux", "i686-linux", "x86_64-linux"}
		case 2:
			m.Systems = []string{"i686-linux", "x86_64-linux"}
		case 3:
			m.Systems = []string{"aarch64-linux", "armv7l-linux"}
			m.MandatoryFeatures = []string{"benchmark"}
		}
		ms[i] = m
		loads[i] = Load{Busy: i % 5}
		if i%11 == 0 {
			loads[i].UnhealthyUntil = now.Add(time.Minute)
			loads[i].Failures = 2
		}
		if i%13 == 0 {
			loads[i].Exec = []SystemExec{{System: "x86_64-linux", Exec: Native}, {System: "aarch64-linux", Exec: Emulated, Via: "qemu-aarch64"}}
		}
	}
	return ms, loads
}

func TestFleetAccepts(t *testing.T) {
	ms, loads := fleet(64)
	var d Decision
	Choose(&d, ms, loads, Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true}, board, Options{}, now)
	if d.Answer != Accept {
		t.Fatalf("fleet: %v, want accept: %s", d.Answer, d.Why())
	}
	eligible := 0
	for i := range d.Reasons {
		if d.Reasons[i].Eligible {
			eligible++
		}
	}
	if eligible < 10 {
		t.Errorf("only %d eligible machines; the benchmark should rank many", eligible)
	}
}

func TestChooseAllocs(t *testing.T) {
	ms, loads := fleet(64)
	req := Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true}
	var d Decision
	Choose(&d, ms, loads, req, board, Options{}, now)
	if n := testing.AllocsPerRun(100, func() {
		Choose(&d, ms, loads, req, board, Options{}, now)
	}); n != 0 {
		t.Errorf("Choose allocates %v times per accept, want 0", n)
	}
}

func BenchmarkChoose64(b *testing.B) {
	ms, loads := fleet(64)
	req := Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true}
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		Choose(&d, ms, loads, req, board, Options{}, now)
	}
	if d.Answer != Accept {
		b.Fatalf("answer %v", d.Answer)
	}
}

func BenchmarkDecline64(b *testing.B) {
	ms, loads := fleet(64)
	req := Request{System: "riscv64-linux", Features: []string{"kvm"}}
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		Choose(&d, ms, loads, req, board, Options{}, now)
		_ = d.Why()
	}
}
