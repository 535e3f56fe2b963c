// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// BenchmarkDecideLoad is the cost of one decision with the builders' load
// readings cached in the slot file (no extra round trip when a
// fresh reading exists), against the same decision with load awareness
// off. Each iteration does what try does before it connects: decide from
// the shared state, then the load checks (loadGate), which must find the
// reading current: no refresh, no wait.
func BenchmarkDecideLoad(b *testing.B) {
	ms, _, err := spec.ParseBuilders("ssh://b1 x86_64-linux - 4 1; ssh://b2 x86_64-linux - 4 2; ssh://b3 x86_64-linux,aarch64-linux - 8 1; ssh://b4 x86_64-linux - 2 1", spec.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		th   pick.Thresholds
	}{
		{"off", pick.Thresholds{}},
		{"cached", pick.DefaultThresholds},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := slots.Open(filepath.Join(b.TempDir(), "slots"), ms, slots.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			now := time.Now()
			for i := range ms {
				r := pick.Reading{Time: now, CPUs: 8, Load1: 1500 * (i + 1), Load5: 1000, Load15: 900,
					CPUPressure: 1200, MemoryPressure: 300, IOPressure: 100, MemAvailable: 8 << 30, MemTotal: 16 << 30,
					StoreFree: 50 << 30, StoreSize: 200 << 30, Builds: i}
				f.SetReading(ms[i].URI, r)
			}
			h := &hook{
				env:         Env{Now: time.Now, Getenv: func(string) string { return "" }},
				cfg:         testConfig(b, "load-refresh", "1h", "load-max-age", "1h"),
				machines:    ms,
				state:       f,
				loads:       make([]pick.Load, len(ms)),
				unreachable: make([]string, len(ms)),
				local:       pick.Local{System: "aarch64-linux"},
			}
			h.opts, _ = decide.Options(h.cfg, h.env.Getenv)
			h.opts.Thresholds = bc.th
			req := pick.Request{System: "x86_64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-x.drv", DrvName: "x"}
			h.decide(&req)
			if h.decision.Answer != pick.Accept {
				b.Fatalf("decision %v, want accept", h.decision.Answer)
			}
			ctx := context.Background()
			var lt loadTry
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.decide(&req)
				if h.loadGate(ctx, h.decision.Index, &lt) != gateGo {
					b.Fatal("a fresh reading asked for a refresh: a round trip on the accept path")
				}
			}
		})
	}
}
