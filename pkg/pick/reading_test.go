// SPDX-License-Identifier: MIT

package pick

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

// reading returns an all-unknown reading taken age before now, changed by
// f.
func reading(age time.Duration, f func(r *Reading)) Reading {
	const u = ReadingUnknown
	r := Reading{Time: now.Add(-age), CPUs: u, Load1: u, Load5: u, Load15: u, CPUPressure: u,
		MemoryPressure: u, IOPressure: u, MemAvailable: u, MemTotal: u, StoreFree: u, StoreSize: u, Builds: u}
	if f != nil {
		f(&r)
	}
	return r
}

func TestThresholds(t *testing.T) {
	ms := machines(t, "b1 x86_64-linux - 2 1", "b2 x86_64-linux - 2 1")
	four := machines(t, "b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 1")
	x86 := Local{System: "x86_64-linux", SpeedFactor: 1}
	overloaded := reading(time.Second, func(r *Reading) {
		r.CPUs, r.Load1, r.MemoryPressure, r.Builds, r.StoreFree, r.StoreSize = 8, 7910, 4100, 9, 1<<20, 1<<40
	})
	def := DefaultThresholds
	tight := Thresholds{LoadPerCPU: 0.9, MemoryPressure: 20, CPUPressure: 50, StoreFree: 2 << 30}
	tests := []struct {
		name   string
		four   bool // machines with max jobs 4
		loads  []Load
		req    Request
		local  Local
		th     Thresholds
		answer Answer
		chosen string
		why    string // of the decision
		reason string // of b1
	}{
		{name: "off: as without readings", loads: []Load{{Reading: overloaded}}, th: Thresholds{},
			answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "builds from elsewhere fill max jobs", loads: []Load{{Reading: reading(time.Second, func(r *Reading) { r.Builds = 2 })}},
			th: def, answer: Accept, chosen: "ssh://b2",
			reason: "b1: busy elsewhere: 2 builds from elsewhere and 0/2 slots busy"},
		{name: "our own builds are not elsewhere", loads: []Load{{Busy: 1, ReadingOurs: 1, Reading: reading(time.Second, func(r *Reading) { r.Builds = 1 })}, {Busy: 1}},
			th: def, answer: Accept, chosen: "ssh://b1",
			reason: "b1: chosen, 1/2 slots busy, speed 1, score 1"},
		{name: "ours and elsewhere together", loads: []Load{{Busy: 1, ReadingOurs: 1, Reading: reading(time.Second, func(r *Reading) { r.Builds = 2 })}},
			th: def, answer: Accept, chosen: "ssh://b2",
			reason: "b1: busy elsewhere: 1 build from elsewhere and 1/2 slots busy"},
		{name: "our builds started after the reading", loads: []Load{{Busy: 2, ReadingOurs: 0, Reading: reading(time.Second, func(r *Reading) { r.Builds = 0 })}},
			th: def, answer: Accept, chosen: "ssh://b2", reason: "b1: 2/2 slots busy"},
		{name: "figures in the reason", loads: []Load{{Reading: overloaded}}, th: tight, answer: Accept, chosen: "ssh://b2",
			reason: "b1: store nearly full: 1 MiB free"},
		{name: "load and pressure", loads: []Load{{Reading: reading(0, func(r *Reading) { r.CPUs, r.Load1, r.MemoryPressure, r.CPUPressure = 8, 7910, 4100, 6000 })}},
			th: tight, answer: Accept, chosen: "ssh://b2",
			reason: "b1: busy elsewhere: load 7.9 on 8 CPUs, CPU pressure 60 %, memory pressure 41 %"},
		{name: "store", loads: []Load{{Reading: reading(0, func(r *Reading) { r.StoreFree, r.StoreSize = 1288490188, 1<<40 })}},
			th: tight, answer: Accept, chosen: "ssh://b2", reason: "b1: store nearly full: 1.2 GiB free"},
		{name: "at the thresholds is fine", loads: []Load{{Reading: reading(0, func(r *Reading) {
			r.CPUs, r.Load1, r.MemoryPressure, r.CPUPressure, r.StoreFree = 10, 9000, 2000, 5000, 2<<30
		})}}, th: tight, answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "stale reading counts as unknown", loads: []Load{{Reading: reading(61*time.Second, func(r *Reading) { *r = overloaded; r.Time = now.Add(-61 * time.Second) })}},
			th: def, answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "no age limit", loads: []Load{{Reading: reading(time.Hour, func(r *Reading) { r.Builds = 5 })}},
			th: Thresholds{Builds: true}, answer: Accept, chosen: "ssh://b2",
			reason: "b1: busy elsewhere: 5 builds from elsewhere and 0/2 slots busy"},
		{name: "unknown fields", loads: []Load{{Reading: reading(0, nil)}}, th: tight,
			answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "no reading", loads: []Load{{Reading: Reading{}}}, th: tight,
			answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "zero CPUs", loads: []Load{{Reading: reading(0, func(r *Reading) { r.CPUs, r.Load1 = 0, 99000 })}}, th: tight,
			answer: Accept, chosen: "ssh://b1", reason: "b1: chosen, 0/2 slots busy, speed 1, score 0"},
		{name: "all busy elsewhere: postpone", loads: []Load{{Reading: overloaded}, {Reading: overloaded}}, th: def,
			answer: Postpone,
			why:    "all builders for x86_64-linux are busy or unhealthy: b1 store nearly full (1 MiB free); b2 store nearly full (1 MiB free)",
			reason: "b1: store nearly full: 1 MiB free"},
		{name: "all busy elsewhere: local builds", loads: []Load{{Reading: reading(0, func(r *Reading) { r.Builds = 3 })}, {Busy: 2}},
			req: Request{System: "x86_64-linux", LocalWilling: true}, local: x86, th: def, answer: Decline,
			why:    "all builders for x86_64-linux are busy or unhealthy, building locally: b1 busy elsewhere (3 builds from elsewhere and 0/2 slots busy); b2 2/2 busy",
			reason: "b1: busy elsewhere: 3 builds from elsewhere and 0/2 slots busy"},
		{name: "builds elsewhere rank", four: true, loads: []Load{{Reading: reading(0, func(r *Reading) { r.Builds = 1 })}, {Busy: 1}},
			th: Thresholds{Builds: true}, answer: Accept, chosen: "ssh://b1",
			reason: "b1: chosen, 0/4 slots busy (+1 elsewhere), speed 1, score 1"},
		{name: "builds elsewhere rank lower", four: true, loads: []Load{{Reading: reading(0, func(r *Reading) { r.Builds = 2 })}, {Busy: 1}},
			th: Thresholds{Builds: true}, answer: Accept, chosen: "ssh://b2",
			reason: "b1: eligible, 0/4 slots busy (+2 elsewhere), speed 1, score 2"},
		{name: "builds elsewhere make local faster", four: true, loads: []Load{{Reading: reading(0, func(r *Reading) { r.Builds = 3 })}, {Busy: 4}},
			req: Request{System: "x86_64-linux", LocalWilling: true}, local: Local{System: "x86_64-linux", SpeedFactor: 0.6},
			th: Thresholds{Builds: true}, answer: Decline,
			why:    "local machine is faster: it would give a new build speed 0.6 (load 0 per CPU), the best builder b1 0.57 (0/4 slots busy (+3 elsewhere), speed 1, score 3)",
			reason: "b1: eligible, 0/4 slots busy (+3 elsewhere), speed 1, score 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mach := ms
			if tt.four {
				mach = four
			}
			req := tt.req
			if req.System == "" {
				req.System = "x86_64-linux"
			}
			local := tt.local
			if local.System == "" {
				local = board
			}
			var d Decision
			Choose(&d, mach, tt.loads, req, local, Options{Thresholds: tt.th}, now)
			if d.Answer != tt.answer || d.Chosen() != tt.chosen {
				t.Errorf("Choose = %v %q, want %v %q: %s", d.Answer, d.Chosen(), tt.answer, tt.chosen, d.Why())
			}
			if tt.why != "" && d.Why() != tt.why {
				t.Errorf("Why() = %q\nwant    %q", d.Why(), tt.why)
			}
			if got := string(d.Reasons[0].appendWhy(nil, d.Index == 0)); got != tt.reason {
				t.Errorf("b1: Why() = %q\nwant          %q", got, tt.reason)
			}
		})
	}
}

func randCaseSeed(seed uint64) propCase { return randCase(rand.New(rand.NewPCG(seed, 3))) }

// TestThresholdsOffIsToday checks that zero thresholds ignore readings
// entirely, on the property test's random cases.
func TestThresholdsOffIsToday(t *testing.T) {
	for it := range 2000 {
		c := randCaseSeed(uint64(it))
		var with, without Decision
		Choose(&without, c.ms, c.loads, c.req, c.local, Options{Emulation: c.opts.Emulation, EmulationPenalty: c.opts.EmulationPenalty, Only: c.opts.Only, Avoid: c.opts.Avoid}, now)
		for i := range c.loads {
			c.loads[i].Reading = reading(0, func(r *Reading) { r.CPUs, r.Load1, r.Builds, r.StoreFree, r.MemoryPressure = 1, 99000, 99, 0, 9999 })
		}
		c.opts.Thresholds = Thresholds{}
		Choose(&with, c.ms, c.loads, c.req, c.local, c.opts, now)
		if with.Answer != without.Answer || with.Index != without.Index || with.Why() != without.Why() {
			t.Fatalf("case %d: with readings and no thresholds %v %d %q; without %v %d %q", it,
				with.Answer, with.Index, with.Why(), without.Answer, without.Index, without.Why())
		}
	}
}

// readingFleet is 64 machines, each with a reading of its own, and a
// request with thresholds on, for the allocation test and benchmark.
func readingFleet() ([]spec.Machine, []Load, Request, Options) {
	ms, loads := fleet(64)
	for i := range loads {
		loads[i].Reading = reading(time.Second, func(r *Reading) {
			r.CPUs, r.Load1, r.Builds, r.StoreFree, r.MemoryPressure = 8, 4000+i*300, i%3, int64(i)<<28, i*100
		})
	}
	req := Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true}
	o := Options{Thresholds: DefaultThresholds}
	return ms, loads, req, o
}

func TestChooseAllocsThresholds(t *testing.T) {
	ms, loads, req, o := readingFleet()
	var d Decision
	Choose(&d, ms, loads, req, board, o, now)
	if d.Answer != Accept {
		t.Fatalf("fleet with readings: %v, want accept: %s", d.Answer, d.Why())
	}
	busyElsewhere := 0
	for i := range d.Reasons {
		if d.Reasons[i].Reject == RejectBusyElsewhere || d.Reasons[i].Reject == RejectStoreFull {
			busyElsewhere++
		}
	}
	if busyElsewhere == 0 {
		t.Errorf("no machine kept away by its reading; the test proves little")
	}
	if n := testing.AllocsPerRun(100, func() {
		Choose(&d, ms, loads, req, board, o, now)
	}); n != 0 {
		t.Errorf("Choose with readings allocates %v times per accept, want 0", n)
	}
}

func BenchmarkChoose64Readings(b *testing.B) {
	ms, loads, req, o := readingFleet()
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		Choose(&d, ms, loads, req, board, o, now)
	}
	if d.Answer != Accept {
		b.Fatalf("answer %v", d.Answer)
	}
}
