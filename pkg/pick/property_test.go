// SPDX-License-Identifier: MIT

package pick

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

var (
	propSystems  = []string{"x86_64-linux", "i686-linux", "aarch64-linux", "riscv64-linux", "armv7l-linux"}
	propFeatures = []string{"benchmark", "big-parallel", "kvm", "nixos-test"}
	propSpeeds   = []float64{0, 0.5, 1, 1.5, 2, 4}
)

func randSubset(r *rand.Rand, pool []string, p float64) []string {
	var out []string
	for _, s := range pool {
		if r.Float64() < p {
			out = append(out, s)
		}
	}
	return out
}

type propCase struct {
	ms    []spec.Machine
	loads []Load
	req   Request
	local Local
	opts  Options
}

func randCase(r *rand.Rand) propCase {
	var c propCase
	n := r.IntN(11)
	for i := range n {
		name := "b" + strconv.Itoa(i)
		c.ms = append(c.ms, spec.Machine{
			URI: "ssh://" + name, Scheme: "ssh", Host: name, Name: name,
			Systems:           randSubset(r, propSystems, 0.4),
			MaxJobs:           r.IntN(5),
			SpeedFactor:       propSpeeds[r.IntN(len(propSpeeds))],
			SupportedFeatures: randSubset(r, propFeatures, 0.4),
			MandatoryFeatures: randSubset(r, propFeatures, 0.08),
		})
	}
	for range r.IntN(n + 1) {
		l := Load{Busy: r.IntN(6) - r.IntN(2), Drained: r.IntN(10) == 0, Failures: r.IntN(3)}
		if r.IntN(5) == 0 {
			l.UnhealthyUntil = now.Add(time.Duration(r.IntN(60)-30) * time.Second)
		}
		for _, s := range randSubset(r, propSystems, 0.2) {
			l.Exec = append(l.Exec, SystemExec{System: s, Exec: Exec(r.IntN(3))})
		}
		if r.IntN(2) == 0 {
			l.Reading = randReading(r)
			l.ReadingOurs = r.IntN(max(l.Busy, 0) + 1)
		}
		c.loads = append(c.loads, l)
	}
	c.req = Request{
		System:       append(propSystems, "builtin")[r.IntN(len(propSystems)+1)],
		Features:     randSubset(r, propFeatures, 0.2),
		LocalWilling: r.IntN(2) == 0,
	}
	c.local = Local{
		System:         propSystems[r.IntN(len(propSystems))],
		ExtraPlatforms: randSubset(r, propSystems, 0.2),
		Features:       randSubset(r, propFeatures, 0.5),
		SpeedFactor:    propSpeeds[r.IntN(len(propSpeeds))],
		LoadPerCPU:     r.Float64() * 2,
	}
	c.opts = Options{Emulation: Emulation(r.IntN(3)), EmulationPenalty: []float64{0, 1, 2, 4}[r.IntN(4)]}
	if n > 0 && r.IntN(6) == 0 {
		c.opts.Only = []string{c.ms[r.IntN(n)].Name, "ssh://" + c.ms[r.IntN(n)].Name}
	}
	if n > 0 && r.IntN(6) == 0 {
		c.opts.Avoid = []string{c.ms[r.IntN(n)].URI}
	}
	switch r.IntN(3) {
	case 0:
		c.opts.Thresholds = DefaultThresholds
	case 1:
		c.opts.Thresholds = Thresholds{
			MaxAge:         time.Duration(r.IntN(3)) * 30 * time.Second,
			Builds:         r.IntN(2) == 0,
			LoadPerCPU:     []float64{0, 0.5, 1, 2}[r.IntN(4)],
			CPUPressure:    []float64{0, 10, 50}[r.IntN(3)],
			MemoryPressure: []float64{0, 10, 50}[r.IntN(3)],
			StoreFree:      []int64{0, 1 << 30}[r.IntN(2)],
		}
	}
	return c
}

// randReading returns a reading of random age with random fields, each
// unknown now and then.
func randReading(r *rand.Rand) Reading {
	pick := func(v int) int {
		if r.IntN(5) == 0 {
			return ReadingUnknown
		}
		return v
	}
	pick64 := func(v int64) int64 {
		if r.IntN(5) == 0 {
			return ReadingUnknown
		}
		return v
	}
	rd := Reading{
		Time:           now.Add(-time.Duration(r.IntN(120)) * time.Second),
		CPUs:           pick([]int{0, 1, 4, 8}[r.IntN(4)]),
		Load1:          pick(r.IntN(20000)),
		Load5:          pick(r.IntN(20000)),
		Load15:         pick(r.IntN(20000)),
		CPUPressure:    pick(r.IntN(10001)),
		MemoryPressure: pick(r.IntN(10001)),
		IOPressure:     pick(r.IntN(10001)),
		MemAvailable:   pick64(r.Int64N(1 << 30)),
		MemTotal:       pick64(1 << 30),
		StoreFree:      pick64(r.Int64N(3 << 30)),
		StoreSize:      pick64(4 << 30),
		Builds:         pick(r.IntN(6)),
	}
	if r.IntN(10) == 0 {
		rd.Time = time.Time{}
	}
	return rd
}

// refElsewhere is the documented use of a reading, written independently
// of Choose: the builds from elsewhere counted against max-jobs, and
// whether the machine is kept away.
func refElsewhere(m *spec.Machine, l Load, o Options) (elsewhere int, kept bool) {
	th, rd := o.Thresholds, l.Reading
	if rd.Time.IsZero() || th.MaxAge > 0 && now.Sub(rd.Time) > th.MaxAge {
		return 0, false
	}
	if th.Builds && rd.Builds > l.ReadingOurs {
		elsewhere = rd.Builds - l.ReadingOurs
	}
	kept = th.Builds && max(l.Busy, 0)+elsewhere >= m.MaxJobs && rd.Builds > 0 ||
		th.LoadPerCPU > 0 && rd.CPUs > 0 && rd.Load1 >= 0 && float64(rd.Load1)/1000 > th.LoadPerCPU*float64(rd.CPUs) ||
		th.CPUPressure > 0 && rd.CPUPressure >= 0 && float64(rd.CPUPressure)/100 > th.CPUPressure ||
		th.MemoryPressure > 0 && rd.MemoryPressure >= 0 && float64(rd.MemoryPressure)/100 > th.MemoryPressure ||
		th.StoreFree > 0 && rd.StoreFree >= 0 && rd.StoreFree < th.StoreFree
	return elsewhere, kept
}

// refFits is the documented matching, written independently of Choose:
// system, features, mandatory features, max-jobs.
func refFits(m *spec.Machine, req Request) bool {
	if req.System != "builtin" && !slices.Contains(m.Systems, req.System) {
		return false
	}
	for _, f := range req.Features {
		if !slices.Contains(m.SupportedFeatures, f) && !slices.Contains(m.MandatoryFeatures, f) {
			return false
		}
	}
	for _, f := range m.MandatoryFeatures {
		if !slices.Contains(req.Features, f) {
			return false
		}
	}
	return m.MaxJobs > 0
}

func refExcluded(m *spec.Machine, l Load, o Options) bool {
	named := func(list []string) bool {
		return slices.Contains(list, m.Name) || slices.Contains(list, m.URI)
	}
	return (len(o.Only) > 0 && !named(o.Only)) || named(o.Avoid) || l.Drained
}

func refEligible(m *spec.Machine, l Load, c propCase) bool {
	_, kept := refElsewhere(m, l, c.opts)
	return refFits(m, c.req) && !refExcluded(m, l, c.opts) &&
		!l.UnhealthyUntil.After(now) && l.Busy < m.MaxJobs && !kept
}

func refScore(m *spec.Machine, l Load, c propCase) float64 {
	speed := m.SpeedFactor
	if speed == 0 {
		speed = 1
	}
	exec := Unknown
	for _, e := range l.Exec {
		if e.System == c.req.System {
			exec = e.Exec
			break
		}
	}
	x86 := slices.Contains(m.Systems, "x86_64-linux") || slices.Contains(m.Systems, "i686-linux")
	nonX86 := c.req.System == "aarch64-linux" || c.req.System == "riscv64-linux" || c.req.System == "armv7l-linux"
	if exec == Unknown && x86 && nonX86 {
		exec = Emulated
	}
	if exec == Emulated && c.opts.EmulationPenalty > 0 {
		speed /= c.opts.EmulationPenalty
	}
	elsewhere, _ := refElsewhere(m, l, c.opts)
	return float64(max(l.Busy, 0)+elsewhere) / speed
}

func refLocalCan(c propCase) bool {
	if c.req.System != "builtin" && c.req.System != c.local.System && !slices.Contains(c.local.ExtraPlatforms, c.req.System) {
		return false
	}
	for _, f := range c.req.Features {
		if !slices.Contains(c.local.Features, f) {
			return false
		}
	}
	return true
}

func TestChooseProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	iterations := 20000
	if testing.Short() {
		iterations = 2000
	}
	var reused Decision
	answers := map[Answer]int{}
	for it := range iterations {
		c := randCase(r)
		Choose(&reused, c.ms, c.loads, c.req, c.local, c.opts, now)
		d := &reused
		answers[d.Answer]++
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("case %d: %s\nmachines %+v\nloads %+v\nrequest %+v\nlocal %+v\noptions %+v\nwhy: %s",
				it, fmt.Sprintf(format, args...), c.ms, c.loads, c.req, c.local, c.opts, d.Why())
		}
		load := func(i int) Load {
			if i < len(c.loads) {
				return c.loads[i]
			}
			return Load{}
		}

		if (d.Answer == DeclinePermanently) != (len(c.ms) == 0) {
			fail("answer %v with %d machines", d.Answer, len(c.ms))
		}
		if len(d.Reasons) != len(c.ms) {
			fail("%d reasons", len(d.Reasons))
		}
		anyEligible, rightType := false, false
		for i := range c.ms {
			el := refEligible(&c.ms[i], load(i), c)
			if d.Reasons[i].Eligible != el {
				fail("reason %d: Eligible %v, reference %v (%s)", i, d.Reasons[i].Eligible, el, d.Reasons[i].Why())
			}
			anyEligible = anyEligible || el
			if refFits(&c.ms[i], c.req) && !refExcluded(&c.ms[i], load(i), c.opts) {
				rightType = true
			}
		}
		localWins := c.req.LocalWilling && refLocalCan(c)
		switch d.Answer {
		case Accept:
			i := d.Index
			if i < 0 || i >= len(c.ms) {
				fail("accept with index %d", i)
			}
			m, l := &c.ms[i], load(i)
			if !refEligible(m, l, c) {
				fail("chose ineligible %s", m.Name)
			}
			if l.Busy >= m.MaxJobs {
				fail("chose %s with %d/%d busy", m.Name, l.Busy, m.MaxJobs)
			}
			if e, _ := refElsewhere(m, l, c.opts); c.opts.Thresholds.Builds && l.Busy+e >= m.MaxJobs {
				fail("chose %s with %d/%d busy and %d builds from elsewhere", m.Name, l.Busy, m.MaxJobs, e)
			}
			if rd := l.Reading; !rd.Time.IsZero() && (c.opts.Thresholds.MaxAge == 0 || now.Sub(rd.Time) <= c.opts.Thresholds.MaxAge) &&
				c.opts.Thresholds.StoreFree > 0 && rd.StoreFree >= 0 && rd.StoreFree < c.opts.Thresholds.StoreFree {
				fail("chose %s with %d bytes free in its store", m.Name, rd.StoreFree)
			}
			for j := range c.ms {
				if refEligible(&c.ms[j], load(j), c) && refScore(&c.ms[j], load(j), c) < refScore(m, l, c) {
					fail("chose %s (score %v) over %s (score %v)", m.Name, refScore(m, l, c),
						c.ms[j].Name, refScore(&c.ms[j], load(j), c))
				}
			}
		case Postpone:
			if anyEligible || !rightType || localWins {
				fail("postpone with eligible %v, right type %v, local %v", anyEligible, rightType, localWins)
			}
		case Decline:
			if anyEligible && !localWins {
				fail("decline with an eligible machine and no local build")
			}
			if !anyEligible && rightType && !localWins {
				fail("decline where postpone was due")
			}
		}
		if d.Answer != Accept && d.Index != -1 {
			fail("%v with index %d", d.Answer, d.Index)
		}

		// Deterministic, and independent of the Decision's history.
		var fresh Decision
		Choose(&fresh, c.ms, c.loads, c.req, c.local, c.opts, now)
		if fresh.Answer != d.Answer || fresh.Index != d.Index || fresh.Why() != d.Why() {
			fail("fresh decision %v %d %q differs", fresh.Answer, fresh.Index, fresh.Why())
		}
		for i := range fresh.Reasons {
			if fresh.Reasons[i].Why() != d.Reasons[i].Why() {
				fail("reason %d differs: %q", i, fresh.Reasons[i].Why())
			}
		}
		if it%50 == 0 {
			var buf bytes.Buffer
			if err := d.WriteJSON(&buf); err != nil || !json.Valid(buf.Bytes()) {
				fail("WriteJSON: %v: %s", err, buf.Bytes())
			}
		}
	}
	// The generator must reach every answer, or the checks above prove
	// little.
	for _, a := range []Answer{Accept, Postpone, Decline, DeclinePermanently} {
		if answers[a] == 0 {
			t.Errorf("no %v in %d random cases: %v", a, iterations, answers)
		}
	}
	t.Logf("answers over %d cases: %v", iterations, answers)
}
