// SPDX-License-Identifier: MIT

package pick

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/spec"
)

// machine builds a spec.Machine from a machines-file line: URI, systems,
// key, max-jobs, speed factor, supported and mandatory features ("-" for
// empty). It stands in for spec's parser so these tests depend only on the
// Machine type.
func machine(t testing.TB, line string) spec.Machine {
	t.Helper()
	f := strings.Fields(line)
	for len(f) < 7 {
		f = append(f, "-")
	}
	list := func(s string) []string {
		if s == "-" || s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	uri := f[0]
	if !strings.Contains(uri, "://") {
		uri = "ssh://" + uri
	}
	host := strings.TrimPrefix(uri, "ssh://")
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	m := spec.Machine{URI: uri, Scheme: "ssh", Host: host, Name: host, MaxJobs: 1, SpeedFactor: 1,
		Systems: list(f[1]), SupportedFeatures: list(f[5]), MandatoryFeatures: list(f[6])}
	if f[3] != "-" {
		n, err := strconv.Atoi(f[3])
		if err != nil {
			t.Fatalf("machine %q: %v", line, err)
		}
		m.MaxJobs = n
	}
	if f[4] != "-" {
		x, err := strconv.ParseFloat(f[4], 64)
		if err != nil {
			t.Fatalf("machine %q: %v", line, err)
		}
		m.SpeedFactor = x
	}
	return m
}

func machines(t testing.TB, lines ...string) []spec.Machine {
	var ms []spec.Machine
	for _, l := range lines {
		ms = append(ms, machine(t, l))
	}
	return ms
}

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// The Nix manual's example machines (doc/manual, "Remote Builds"):
// poochie only does builds that require benchmark (with or without kvm);
// itchy cannot do kvm builds and scratchy can; for regular builds itchy is
// preferred over scratchy for its higher speed factor.
var manual = []string{
	"nix@scratchy.labs.cs.uu.nl i686-linux /home/nix/.ssh/id_scratchy_auto 8 1 kvm",
	"nix@itchy.labs.cs.uu.nl    i686-linux /home/nix/.ssh/id_scratchy_auto 8 2",
	"nix@poochie.labs.cs.uu.nl  i686-linux /home/nix/.ssh/id_scratchy_auto 1 2 kvm benchmark",
}

// board is a local machine that cannot build i686-linux or x86_64-linux.
var board = Local{System: "aarch64-linux", SpeedFactor: 1}

type chooseTest struct {
	name     string
	machines []string
	loads    []Load
	req      Request
	local    Local
	opts     Options
	want     Answer
	chosen   string   // name, "" for none
	why      string   // the one-line Why, "" to skip
	reasons  []string // every Reason.Why, nil to skip
}

var chooseTests = []chooseTest{
	{
		name: "no machines", req: Request{System: "x86_64-linux"}, local: board,
		want: DeclinePermanently, why: "no builders configured",
	},
	// The Nix manual's cases.
	{
		name: "manual regular build goes to itchy", machines: manual,
		req: Request{System: "i686-linux"}, local: board,
		want: Accept, chosen: "itchy.labs.cs.uu.nl",
		reasons: []string{
			"scratchy.labs.cs.uu.nl: eligible, 0/8 slots busy, speed 1, score 0",
			"itchy.labs.cs.uu.nl: chosen, 0/8 slots busy, speed 2, score 0",
			"poochie.labs.cs.uu.nl: mandatory feature benchmark not requested",
		},
	},
	{
		name: "manual kvm build goes to scratchy", machines: manual,
		req: Request{System: "i686-linux", Features: []string{"kvm"}}, local: board,
		want: Accept, chosen: "scratchy.labs.cs.uu.nl",
		reasons: []string{
			"scratchy.labs.cs.uu.nl: chosen, 0/8 slots busy, speed 1, score 0",
			"itchy.labs.cs.uu.nl: lacks feature kvm",
			"poochie.labs.cs.uu.nl: mandatory feature benchmark not requested",
		},
	},
	{
		name: "manual benchmark build goes to poochie", machines: manual,
		req: Request{System: "i686-linux", Features: []string{"benchmark"}}, local: board,
		want: Accept, chosen: "poochie.labs.cs.uu.nl",
		reasons: []string{
			"scratchy.labs.cs.uu.nl: lacks feature benchmark",
			"itchy.labs.cs.uu.nl: lacks feature benchmark",
			"poochie.labs.cs.uu.nl: chosen, 0/1 slots busy, speed 2, score 0",
		},
	},
	{
		name: "manual benchmark and kvm build goes to poochie", machines: manual,
		req: Request{System: "i686-linux", Features: []string{"benchmark", "kvm"}}, local: board,
		want: Accept, chosen: "poochie.labs.cs.uu.nl",
	},
	{
		name: "manual itchy busy, regular build still itchy at 3 busy", machines: manual,
		// itchy 3/2 = 1.5 vs scratchy 2/1 = 2.
		loads: []Load{{Busy: 2}, {Busy: 3}},
		req:   Request{System: "i686-linux"}, local: board,
		want: Accept, chosen: "itchy.labs.cs.uu.nl",
	},
	{
		name: "manual poochie full: postpone", machines: manual,
		loads: []Load{{}, {}, {Busy: 1}},
		req:   Request{System: "i686-linux", Features: []string{"benchmark"}}, local: board,
		want: Postpone,
		why:  "all builders for i686-linux with feature benchmark are busy or unhealthy: poochie.labs.cs.uu.nl 1/1 busy",
	},
	{
		name: "manual x86_64 build fits nobody", machines: manual,
		req: Request{System: "x86_64-linux", Features: []string{"kvm"}}, local: board,
		want: Decline,
		why:  "no builder for x86_64-linux with feature kvm: scratchy.labs.cs.uu.nl lacks x86_64-linux; itchy.labs.cs.uu.nl lacks x86_64-linux; poochie.labs.cs.uu.nl lacks x86_64-linux",
	},

	// Eligibility.
	{
		name: "system and feature reasons",
		machines: []string{
			"b1 aarch64-linux - 2 1",
			"b2 x86_64-linux - 2 1 kvm",
		},
		req: Request{System: "aarch64-linux", Features: []string{"kvm"}}, local: board,
		want: Decline,
		why:  "no builder for aarch64-linux with feature kvm: b1 lacks kvm; b2 lacks aarch64-linux",
		reasons: []string{
			"b1: lacks feature kvm",
			"b2: lacks system aarch64-linux (has x86_64-linux)",
		},
	},
	{
		name:     "several missing features are all named",
		machines: []string{"b1 x86_64-linux - 2 1 kvm"},
		req:      Request{System: "x86_64-linux", Features: []string{"big-parallel", "kvm", "nixos-test"}}, local: board,
		want: Decline,
		why:  "no builder for x86_64-linux with features big-parallel,kvm,nixos-test: b1 lacks big-parallel,nixos-test",
		reasons: []string{
			"b1: lacks features big-parallel, nixos-test",
		},
	},
	{
		name:     "mandatory features count as supported",
		machines: []string{"b1 x86_64-linux - 2 1 - benchmark"},
		req:      Request{System: "x86_64-linux", Features: []string{"benchmark"}}, local: board,
		want: Accept, chosen: "b1",
	},
	{
		name:     "builtin fits every machine",
		machines: []string{"b1 riscv64-linux - 2 1"},
		req:      Request{System: "builtin"}, local: board,
		want: Accept, chosen: "b1",
	},
	{
		name:     "full machine is skipped",
		machines: []string{"b1 x86_64-linux - 2 4", "b2 x86_64-linux - 2 1"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b2",
		reasons: []string{"b1: 2/2 slots busy", "b2: chosen, 0/2 slots busy, speed 1, score 0"},
	},
	{
		name:     "busy beyond max-jobs is full",
		machines: []string{"b1 x86_64-linux - 2 4"},
		loads:    []Load{{Busy: 5}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Postpone,
	},
	{
		name:     "all full, local cannot: postpone",
		machines: []string{"b1 aarch64-linux - 2 1"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux", LocalWilling: true},
		local:    Local{System: "x86_64-linux"},
		want:     Postpone,
		why:      "all builders for aarch64-linux are busy or unhealthy: b1 2/2 busy",
		reasons:  []string{"b1: 2/2 slots busy"},
	},
	{
		name:     "all full, local can and is willing: decline",
		machines: []string{"b1 aarch64-linux - 2 1"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux", LocalWilling: true}, local: board,
		want: Decline,
		why:  "all builders for aarch64-linux are busy or unhealthy, building locally: b1 2/2 busy",
	},
	{
		name:     "all full, local can but is not willing: postpone",
		machines: []string{"b1 aarch64-linux - 2 1"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux"}, local: board,
		want: Postpone,
	},
	{
		name:     "local lacks a feature: postpone",
		machines: []string{"b1 aarch64-linux - 2 1 kvm"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux", Features: []string{"kvm"}, LocalWilling: true}, local: board,
		want: Postpone,
	},
	{
		name:     "unhealthy",
		machines: []string{"b4 x86_64-linux - 2 1"},
		loads:    []Load{{UnhealthyUntil: now.Add(39500 * time.Millisecond), Failures: 3}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want:    Postpone,
		why:     "all builders for x86_64-linux are busy or unhealthy: b4 unhealthy for 40 s",
		reasons: []string{"b4: unhealthy for 40 s more after 3 failed connects"},
	},
	{
		name:     "unhealthy with last error, for minutes",
		machines: []string{"b4 x86_64-linux - 2 1"},
		loads:    []Load{{UnhealthyUntil: now.Add(5 * time.Minute), Failures: 1, LastError: "connection refused"}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want:    Postpone,
		reasons: []string{"b4: unhealthy for 5 min more after 1 failed connect (connection refused)"},
	},
	{
		// Nix's own hook disables a machine it failed to connect to and
		// declines when nothing else fits (build-remote.cc); postponing
		// would wait out a dead builder's backoff again and again.
		name:     "unreachable from this hook: decline, not postpone",
		machines: []string{"b4 x86_64-linux - 2 1", "b5 aarch64-linux - 2 1"},
		loads:    []Load{{Unreachable: true, LastError: "connect", UnhealthyUntil: now.Add(time.Minute)}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want:    Decline,
		reasons: []string{"b4: cannot connect (connect)"},
	},
	{
		name:     "unhealthy mark has expired",
		machines: []string{"b4 x86_64-linux - 2 1"},
		loads:    []Load{{UnhealthyUntil: now, Failures: 3}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b4",
	},
	{
		name:     "drained is declined, not postponed",
		machines: []string{"b5 x86_64-linux - 2 1"},
		loads:    []Load{{Drained: true}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want:    Decline,
		why:     "no builder for x86_64-linux: b5 drained",
		reasons: []string{"b5: drained"},
	},
	{
		name:     "drained one skipped",
		machines: []string{"b5 x86_64-linux - 2 9", "b6 x86_64-linux - 2 1"},
		loads:    []Load{{Drained: true}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b6",
	},
	{
		name:     "max-jobs 0",
		machines: []string{"b1 x86_64-linux - 0 1"},
		req:      Request{System: "x86_64-linux"}, local: board,
		want:    Decline,
		why:     "no builder for x86_64-linux: b1 has max-jobs 0",
		reasons: []string{"b1: max-jobs is 0"},
	},
	{
		name:     "only by name",
		machines: []string{"b1 x86_64-linux - 2 9", "b2 x86_64-linux - 2 1"},
		req:      Request{System: "x86_64-linux"}, local: board,
		opts: Options{Only: []string{"b2"}},
		want: Accept, chosen: "b2",
		reasons: []string{"b1: not in OFFLOAD_ONLY", "b2: chosen, 0/2 slots busy, speed 1, score 0"},
	},
	{
		name:     "avoid by URI",
		machines: []string{"root@b1 x86_64-linux - 2 9", "b2 x86_64-linux - 2 1"},
		req:      Request{System: "x86_64-linux"}, local: board,
		opts: Options{Avoid: []string{"ssh://root@b1"}},
		want: Accept, chosen: "b2",
		reasons: []string{"b1: listed in OFFLOAD_AVOID", "b2: chosen, 0/2 slots busy, speed 1, score 0"},
	},
	{
		name:     "only names nobody who fits",
		machines: []string{"b1 x86_64-linux - 2 1", "b2 x86_64-linux - 2 1"},
		req:      Request{System: "x86_64-linux"}, local: board,
		opts: Options{Only: []string{"b3"}},
		want: Decline,
		why:  "no builder for x86_64-linux: b1 not in OFFLOAD_ONLY; b2 not in OFFLOAD_ONLY",
	},
	{
		name:     "system mismatch is reported before drained",
		machines: []string{"b1 x86_64-linux - 2 1"},
		loads:    []Load{{Drained: true, Busy: 2}},
		req:      Request{System: "riscv64-linux"}, local: board,
		want:    Decline,
		reasons: []string{"b1: lacks system riscv64-linux (has x86_64-linux)"},
	},
	{
		name: "summary stops after five machines",
		machines: []string{
			"b1 x86_64-linux", "b2 x86_64-linux", "b3 x86_64-linux", "b4 x86_64-linux",
			"b5 x86_64-linux", "b6 x86_64-linux", "b7 x86_64-linux",
		},
		req: Request{System: "riscv64-linux"}, local: board,
		want: Decline,
		why:  "no builder for riscv64-linux: b1 lacks riscv64-linux; b2 lacks riscv64-linux; b3 lacks riscv64-linux; b4 lacks riscv64-linux; b5 lacks riscv64-linux; and 2 more",
	},

	// Ranking.
	{
		name: "real division: idle slow beats half-busy fast",
		// Nix 2.8 divides integers: 1/2 = 0 ties with 0/1 and the faster
		// b2 wins. With real division b1 scores 0, b2 0.5.
		machines: []string{"b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 2"},
		loads:    []Load{{}, {Busy: 1}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b1",
		reasons: []string{
			"b1: chosen, 0/4 slots busy, speed 1, score 0",
			"b2: eligible, 1/4 slots busy, speed 2, score 0.5",
		},
	},
	{
		name:     "lower score wins",
		machines: []string{"b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 3"},
		loads:    []Load{{Busy: 1}, {Busy: 2}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b2",
	},
	{
		name:     "equal score: higher speed wins",
		machines: []string{"b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 3"},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b2",
	},
	{
		name:     "equal everything: file order",
		machines: []string{"b1 x86_64-linux - 4 2", "b2 x86_64-linux - 4 2"},
		loads:    []Load{{Busy: 1}, {Busy: 1}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b1",
	},
	{
		name:     "speed factor 0 means 1",
		machines: []string{"b1 x86_64-linux - 4 0", "b2 x86_64-linux - 4 1"},
		loads:    []Load{{Busy: 1}, {Busy: 1}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b1",
		reasons: []string{
			"b1: chosen, 1/4 slots busy, speed 1, score 1",
			"b2: eligible, 1/4 slots busy, speed 1, score 1",
		},
	},

	// Emulation.
	{
		name:     "prefer: emulating x86 server wins a tie",
		machines: []string{"pi5 aarch64-linux - 4 1", "server x86_64-linux,aarch64-linux - 16 1"},
		req:      Request{System: "aarch64-linux"}, local: board,
		want: Accept, chosen: "server",
		reasons: []string{
			"pi5: eligible, 0/4 slots busy, speed 1, score 0",
			"server: chosen, 0/16 slots busy, speed 1 (emulated, presumed), score 0",
		},
	},
	{
		name:     "prefer ignores the order of the systems list",
		machines: []string{"pi5 aarch64-linux - 4 1", "server aarch64-linux,x86_64-linux - 16 1"},
		req:      Request{System: "aarch64-linux"}, local: board,
		want: Accept, chosen: "server",
	},
	{
		name:     "prefer with i686-linux",
		machines: []string{"pi5 armv7l-linux - 4 1", "old i686-linux,armv7l-linux - 2 1"},
		req:      Request{System: "armv7l-linux"}, local: board,
		want: Accept, chosen: "old",
	},
	{
		name:     "neutral: file order",
		machines: []string{"pi5 aarch64-linux - 4 1", "server x86_64-linux,aarch64-linux - 16 1"},
		req:      Request{System: "aarch64-linux"}, local: board,
		opts: Options{Emulation: EmulationNeutral},
		want: Accept, chosen: "pi5",
	},
	{
		name:     "avoid: native first",
		machines: []string{"server x86_64-linux,aarch64-linux - 16 1", "pi5 aarch64-linux - 4 1"},
		req:      Request{System: "aarch64-linux"}, local: board,
		opts: Options{Emulation: EmulationAvoid},
		want: Accept, chosen: "pi5",
	},
	{
		name:     "prefer does not beat a lower score",
		machines: []string{"pi5 aarch64-linux - 4 1", "server x86_64-linux,aarch64-linux - 16 1"},
		loads:    []Load{{}, {Busy: 1}},
		req:      Request{System: "aarch64-linux"}, local: board,
		want: Accept, chosen: "pi5",
	},
	{
		name:     "prefer does not beat a higher speed factor",
		machines: []string{"pi5 aarch64-linux - 4 2", "server x86_64-linux,aarch64-linux - 16 1"},
		req:      Request{System: "aarch64-linux"}, local: board,
		want: Accept, chosen: "pi5",
	},
	{
		name:     "penalty divides the emulated speed",
		machines: []string{"pi5 aarch64-linux - 4 1", "server x86_64-linux,aarch64-linux - 16 4"},
		loads:    []Load{{Busy: 1}, {Busy: 4}},
		req:      Request{System: "aarch64-linux"}, local: board,
		// server: 4 busy / (4/2) = 2 > pi5: 1 busy / 1 = 1.
		opts: Options{EmulationPenalty: 2},
		want: Accept, chosen: "pi5",
		reasons: []string{
			"pi5: chosen, 1/4 slots busy, speed 1, score 1",
			"server: eligible, 4/16 slots busy, speed 2 (emulated, presumed), score 2",
		},
	},
	{
		name:     "penalty does not touch x86 builds",
		machines: []string{"pi5 x86_64-linux - 4 1", "server x86_64-linux,aarch64-linux - 16 4"},
		loads:    []Load{{Busy: 1}, {Busy: 4}},
		req:      Request{System: "x86_64-linux"}, local: board,
		opts: Options{EmulationPenalty: 8},
		want: Accept, chosen: "server",
		reasons: []string{
			"pi5: eligible, 1/4 slots busy, speed 1, score 1",
			"server: chosen, 4/16 slots busy, speed 4, score 1",
		},
	},
	{
		name:     "known native overrides the presumption",
		machines: []string{"pi5 aarch64-linux - 4 1", "arm x86_64-linux,aarch64-linux - 16 1"},
		loads:    []Load{{}, {Exec: []SystemExec{{System: "aarch64-linux", Exec: Native}}}},
		req:      Request{System: "aarch64-linux"}, local: board,
		opts: Options{EmulationPenalty: 4},
		// Both native at speed 1: no preference, file order.
		want: Accept, chosen: "pi5",
		reasons: []string{
			"pi5: chosen, 0/4 slots busy, speed 1, score 0",
			"arm: eligible, 0/16 slots busy, speed 1 (native), score 0",
		},
	},
	{
		name:     "known emulated, with the emulator named",
		machines: []string{"server x86_64-linux,riscv64-linux - 16 6"},
		loads:    []Load{{Busy: 3, Exec: []SystemExec{{System: "x86_64-linux", Exec: Native}, {System: "riscv64-linux", Exec: Emulated, Via: "qemu-riscv64"}}}},
		req:      Request{System: "riscv64-linux"}, local: board,
		opts: Options{EmulationPenalty: 4},
		want: Accept, chosen: "server",
		reasons: []string{
			"server: chosen, 3/16 slots busy, speed 1.5 (emulated qemu-riscv64), score 2",
		},
	},
	{
		name:     "known emulated on a non-x86 machine gets the penalty, not the preference",
		machines: []string{"big aarch64-linux,riscv64-linux - 8 2", "vf2 riscv64-linux - 4 1"},
		loads:    []Load{{Exec: []SystemExec{{System: "riscv64-linux", Exec: Emulated}}}},
		req:      Request{System: "riscv64-linux"}, local: board,
		opts: Options{EmulationPenalty: 2},
		// big: speed 1, vf2: speed 1; no preference: file order.
		want: Accept, chosen: "big",
	},
	{
		name:     "no presumption for darwin",
		machines: []string{"mac x86_64-darwin,aarch64-darwin - 8 1", "mini aarch64-darwin - 8 1"},
		req:      Request{System: "aarch64-darwin"}, local: board,
		opts: Options{EmulationPenalty: 4},
		want: Accept, chosen: "mac",
		reasons: []string{
			"mac: chosen, 0/8 slots busy, speed 1, score 0",
			"mini: eligible, 0/8 slots busy, speed 1, score 0",
		},
	},

	// Local versus remote (the worked example in doc.go).
	{
		name:     "worked example: server faster than the Pi",
		machines: []string{"server x86_64-linux,aarch64-linux - 8 4"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux", LocalWilling: true},
		local:    Local{System: "aarch64-linux", SpeedFactor: 1, LoadPerCPU: 0.5},
		opts:     Options{EmulationPenalty: 3},
		want:     Accept, chosen: "server",
	},
	{
		name:     "worked example: Pi faster than the emulating server",
		machines: []string{"server x86_64-linux,aarch64-linux - 8 4"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux", LocalWilling: true},
		local:    Local{System: "aarch64-linux", SpeedFactor: 1, LoadPerCPU: 0.5},
		opts:     Options{EmulationPenalty: 5},
		want:     Decline,
		why:      "local machine is faster: it would give a new build speed 0.67 (load 0.5 per CPU), the best builder server 0.64 (2/8 slots busy, speed 0.8 (emulated, presumed), score 2.5)",
	},
	{
		name:     "local faster but Nix not willing: accept",
		machines: []string{"server x86_64-linux,aarch64-linux - 8 4"},
		loads:    []Load{{Busy: 2}},
		req:      Request{System: "aarch64-linux"},
		local:    Local{System: "aarch64-linux", SpeedFactor: 1, LoadPerCPU: 0.5},
		opts:     Options{EmulationPenalty: 5},
		want:     Accept, chosen: "server",
	},
	{
		name:     "local faster but lacks the feature: accept",
		machines: []string{"b1 aarch64-linux - 8 1 big-parallel"},
		req:      Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true},
		local:    Local{System: "aarch64-linux", SpeedFactor: 8},
		want:     Accept, chosen: "b1",
	},
	{
		name:     "local has the feature and is faster: decline",
		machines: []string{"b1 aarch64-linux - 8 1 big-parallel"},
		req:      Request{System: "aarch64-linux", Features: []string{"big-parallel"}, LocalWilling: true},
		local:    Local{System: "aarch64-linux", SpeedFactor: 8, Features: []string{"big-parallel", "kvm"}},
		want:     Decline,
	},
	{
		name:     "defaults, all idle: tie goes remote",
		machines: []string{"b1 aarch64-linux - 4 1"},
		req:      Request{System: "aarch64-linux", LocalWilling: true}, local: board,
		want: Accept, chosen: "b1",
	},
	{
		name:     "same speed, remote half busy, local idle: local",
		machines: []string{"b1 aarch64-linux - 2 1"},
		loads:    []Load{{Busy: 1}},
		req:      Request{System: "aarch64-linux", LocalWilling: true}, local: board,
		want: Decline,
	},
	{
		name:     "local speed factor 0 means 1",
		machines: []string{"b1 aarch64-linux - 4 1"},
		req:      Request{System: "aarch64-linux", LocalWilling: true},
		local:    Local{System: "aarch64-linux"},
		want:     Accept, chosen: "b1",
	},
	{
		name:     "local busy: remote",
		machines: []string{"b1 aarch64-linux - 2 1"},
		loads:    []Load{{Busy: 1}},
		req:      Request{System: "aarch64-linux", LocalWilling: true},
		local:    Local{System: "aarch64-linux", SpeedFactor: 1, LoadPerCPU: 1},
		// remote 1/(1+0.5) = 0.67, local 1/(1+1) = 0.5.
		want: Accept, chosen: "b1",
	},
	{
		name:     "extra platform locally is emulated too",
		machines: []string{"b1 x86_64-linux - 4 1"},
		req:      Request{System: "x86_64-linux", LocalWilling: true},
		// The board emulates x86_64 at speed 3/4 < 1.
		local: Local{System: "aarch64-linux", ExtraPlatforms: []string{"x86_64-linux"}, SpeedFactor: 3},
		opts:  Options{EmulationPenalty: 4},
		want:  Accept, chosen: "b1",
	},
	{
		name:     "equal scores: the builder that built the inputs lately",
		machines: []string{"b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 1", "b3 x86_64-linux - 4 1"},
		loads:    []Load{{}, {InputsThere: 1}, {InputsThere: 2}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b3",
		reasons: []string{
			"b1: eligible, 0/4 slots busy, speed 1, score 0",
			"b2: eligible, 0/4 slots busy, speed 1, score 0, built 1 input lately",
			"b3: chosen, 0/4 slots busy, speed 1, score 0, built 2 inputs lately",
		},
	},
	{
		name:     "inputs there do not beat a better score",
		machines: []string{"b1 x86_64-linux - 4 1", "b2 x86_64-linux - 4 1"},
		loads:    []Load{{}, {Busy: 1, InputsThere: 3}},
		req:      Request{System: "x86_64-linux"}, local: board,
		want: Accept, chosen: "b1",
	},
	{
		name:     "failed under emulation: native first, even slower",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8", "pi5 aarch64-linux - 4 1"},
		loads:    []Load{{}, {Busy: 2}},
		req:      Request{System: "aarch64-linux", EmulationFailed: true}, local: board,
		want: Accept, chosen: "pi5",
		reasons: []string{
			"x86: emulates aarch64-linux, where this derivation failed lately",
			"pi5: chosen, 2/4 slots busy, speed 1, score 2",
		},
	},
	{
		name:     "failed under emulation, the native builder full: wait for it",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8", "pi5 aarch64-linux - 4 1"},
		loads:    []Load{{}, {Busy: 4}},
		req:      Request{System: "aarch64-linux", EmulationFailed: true}, local: board,
		want: Postpone,
	},
	{
		name:     "failed under emulation, no native builder, local can: local",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8"},
		req:      Request{System: "aarch64-linux", EmulationFailed: true, LocalWilling: true}, local: board,
		want: Decline,
		why:  "failed under emulation lately and no builder runs aarch64-linux natively: building locally",
	},
	{
		name:     "failed under emulation, no native builder, local unwilling: emulation after all",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8", "x86b x86_64-linux,aarch64-linux - 16 4"},
		req:      Request{System: "aarch64-linux", EmulationFailed: true}, local: board,
		want: Accept, chosen: "x86",
	},
	{
		name:     "failed under emulation, the native builder drained: emulation after all",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8", "pi5 aarch64-linux - 4 1"},
		loads:    []Load{{}, {Drained: true}},
		req:      Request{System: "aarch64-linux", EmulationFailed: true}, local: Local{System: "riscv64-linux"},
		want: Accept, chosen: "x86",
	},
	{
		name:     "failed under emulation: a known-native x86 machine counts as native",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8", "ampere x86_64-linux,aarch64-linux - 16 2"},
		loads:    []Load{{}, {Exec: []SystemExec{{System: "aarch64-linux", Exec: Native}}}},
		req:      Request{System: "aarch64-linux", EmulationFailed: true}, local: board,
		want: Accept, chosen: "ampere",
	},
	{
		name:     "emulated pair slower than the idle board: local",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8"},
		loads:    []Load{{Exec: []SystemExec{{System: "aarch64-linux", Exec: Emulated, Via: "qemu-aarch64"}}}},
		req:      Request{System: "aarch64-linux", LocalWilling: true}, local: board,
		// 8/10 = 0.8 < the board's 1.
		opts: Options{EmulationPenalty: 10},
		want: Decline,
	},
	{
		name:     "emulated pair faster than the idle board: remote",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 8"},
		loads:    []Load{{Exec: []SystemExec{{System: "aarch64-linux", Exec: Emulated, Via: "qemu-aarch64"}}}},
		req:      Request{System: "aarch64-linux", LocalWilling: true}, local: board,
		opts: Options{EmulationPenalty: 4},
		want: Accept, chosen: "x86",
	},
	{
		name:     "native builder against an emulated faster one, by effective speed",
		machines: []string{"x86 x86_64-linux,aarch64-linux - 16 16", "pi5 aarch64-linux - 4 2"},
		loads:    []Load{{Busy: 2, Exec: []SystemExec{{System: "aarch64-linux", Exec: Emulated}}}, {Busy: 1}},
		req:      Request{System: "aarch64-linux"}, local: board,
		// x86: 2 busy / (16/4) = 0.5; pi5: 1 busy / 2 = 0.5; ties go
		// to the faster: x86 at 4 over pi5 at 2.
		opts: Options{EmulationPenalty: 4},
		want: Accept, chosen: "x86",
	},
	{
		name:     "extra platform of the same family is native speed",
		machines: []string{"b1 armv7l-linux - 4 1"},
		req:      Request{System: "armv7l-linux", LocalWilling: true},
		local:    Local{System: "aarch64-linux", ExtraPlatforms: []string{"armv7l-linux"}, SpeedFactor: 3},
		opts:     Options{EmulationPenalty: 4},
		want:     Decline,
	},
}

func TestChoose(t *testing.T) {
	for _, tt := range chooseTests {
		t.Run(tt.name, func(t *testing.T) {
			ms := machines(t, tt.machines...)
			var d Decision
			Choose(&d, ms, tt.loads, tt.req, tt.local, tt.opts, now)
			if d.Answer != tt.want {
				t.Errorf("Answer = %v, want %v (why: %s)", d.Answer, tt.want, d.Why())
			}
			chosen := ""
			if d.Index >= 0 {
				chosen = ms[d.Index].Name
			}
			if chosen != tt.chosen {
				t.Errorf("chosen %q, want %q (why: %s)", chosen, tt.chosen, d.Why())
			}
			if (d.Answer == Accept) != (d.Index >= 0) {
				t.Errorf("Answer %v with Index %d", d.Answer, d.Index)
			}
			if tt.why != "" && d.Why() != tt.why {
				t.Errorf("Why() =\n\t%s\nwant\n\t%s", d.Why(), tt.why)
			}
			if len(d.Reasons) != len(ms) {
				t.Fatalf("%d reasons for %d machines", len(d.Reasons), len(ms))
			}
			if tt.reasons != nil {
				for i, want := range tt.reasons {
					got := d.Reasons[i].appendWhy(nil, i == d.Index)
					if string(got) != want {
						t.Errorf("reason %d =\n\t%s\nwant\n\t%s", i, got, want)
					}
				}
			}
			for i := range d.Reasons {
				r := &d.Reasons[i]
				if r.Eligible != (r.Reject == RejectNone) {
					t.Errorf("reason %d: Eligible %v with Reject %d", i, r.Eligible, r.Reject)
				}
			}
		})
	}
}

func TestChooseReusesDecision(t *testing.T) {
	ms := machines(t, manual...)
	var d Decision
	Choose(&d, ms, nil, Request{System: "i686-linux", Features: []string{"kvm"}}, board, Options{}, now)
	first := d.Why()
	Choose(&d, ms[:1], []Load{{Busy: 8}}, Request{System: "i686-linux"}, board, Options{}, now)
	if d.Answer != Postpone || len(d.Reasons) != 1 || d.Reasons[0].Reject != RejectFull {
		t.Fatalf("second decision: %v %+v", d.Answer, d.Reasons)
	}
	Choose(&d, ms, nil, Request{System: "i686-linux", Features: []string{"kvm"}}, board, Options{}, now)
	if got := d.Why(); got != first {
		t.Errorf("Why() after reuse = %q, want %q", got, first)
	}
	Choose(&d, nil, nil, Request{System: "i686-linux"}, board, Options{}, now)
	if d.Answer != DeclinePermanently || len(d.Reasons) != 0 || d.Index != -1 {
		t.Errorf("no machines after reuse: %v, %d reasons, index %d", d.Answer, len(d.Reasons), d.Index)
	}
}

func TestAnswerString(t *testing.T) {
	for a, want := range map[Answer]string{
		Accept: "accept", Postpone: "postpone", Decline: "decline",
		DeclinePermanently: "decline-permanently", NoAnswer: "none", 9: "answer(9)",
	} {
		if got := a.String(); got != want {
			t.Errorf("Answer(%d).String() = %q, want %q", a, got, want)
		}
	}
}

func TestParseEmulation(t *testing.T) {
	tests := []struct {
		in   string
		want Emulation
		ok   bool
	}{
		{"", EmulationPrefer, true},
		{"prefer", EmulationPrefer, true},
		{"neutral", EmulationNeutral, true},
		{"avoid", EmulationAvoid, true},
		{"Avoid", EmulationPrefer, false},
		{"off", EmulationPrefer, false},
	}
	for _, tt := range tests {
		got, err := ParseEmulation(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseEmulation(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in && tt.in != "" {
			t.Errorf("ParseEmulation(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestWriteText(t *testing.T) {
	ms := machines(t, manual...)
	var d Decision
	Choose(&d, ms, nil, Request{System: "i686-linux", Features: []string{"kvm"}}, board, Options{}, now)
	var buf bytes.Buffer
	if err := d.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	want := `accept ssh://nix@scratchy.labs.cs.uu.nl
why: scratchy.labs.cs.uu.nl: chosen, 0/8 slots busy, speed 1, score 0
* scratchy.labs.cs.uu.nl: chosen, 0/8 slots busy, speed 1, score 0
  itchy.labs.cs.uu.nl: lacks feature kvm
  poochie.labs.cs.uu.nl: mandatory feature benchmark not requested
`
	if buf.String() != want {
		t.Errorf("WriteText =\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestWriteJSON(t *testing.T) {
	ms := machines(t, "b1 aarch64-linux - 2 1", "b2 x86_64-linux,aarch64-linux - 2 2 kvm", "b3 aarch64-linux - 2 1")
	loads := []Load{{Busy: 2}, {Busy: 1}, {UnhealthyUntil: now.Add(time.Second), LastError: "say \"no\"\n\x01\xff\u2028"}}
	var d Decision
	for _, req := range []Request{
		{System: "aarch64-linux"},
		{System: "riscv64-linux"},
		{System: "aarch64-linux", Features: []string{"kvm"}},
	} {
		Choose(&d, ms, loads, req, board, Options{}, now)
		var buf bytes.Buffer
		if err := d.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Answer  string `json:"answer"`
			Builder string `json:"builder"`
			Why     string `json:"why"`
			Reasons []struct {
				URI      string  `json:"uri"`
				Name     string  `json:"name"`
				Eligible bool    `json:"eligible"`
				Why      string  `json:"why"`
				Score    float64 `json:"score"`
				Speed    float64 `json:"speed"`
				Busy     int     `json:"busy"`
				MaxJobs  int     `json:"max_jobs"`
				Else     int     `json:"elsewhere"`
				Exec     string  `json:"exec"`
				Presumed bool    `json:"presumed"`
				Inputs   int     `json:"inputs_there"`
			} `json:"reasons"`
		}
		dec := json.NewDecoder(&buf)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: WriteJSON output does not decode: %v", req.System, err)
		}
		if got.Answer != d.Answer.String() || got.Builder != d.Chosen() || got.Why != d.Why() {
			t.Errorf("%s: answer %q builder %q why %q; want %q %q %q", req.System,
				got.Answer, got.Builder, got.Why, d.Answer, d.Chosen(), d.Why())
		}
		if len(got.Reasons) != len(d.Reasons) {
			t.Fatalf("%s: %d reasons, want %d", req.System, len(got.Reasons), len(d.Reasons))
		}
		for i, r := range got.Reasons {
			w := &d.Reasons[i]
			if r.URI != w.URI || r.Name != w.Name || r.Eligible != w.Eligible || r.Score != w.Score ||
				r.Speed != w.Speed || r.Busy != w.Busy || r.MaxJobs != w.MaxJobs ||
				r.Exec != w.Exec.String() || r.Presumed != w.Presumed ||
				r.Why != strings.ToValidUTF8(string(w.appendWhy(nil, i == d.Index)), "\uFFFD") {
				t.Errorf("%s: reason %d = %+v, want %+v", req.System, i, r, w)
			}
		}
	}
	// b1 is full and b3 unhealthy: b2 emulates aarch64-linux.
	Choose(&d, ms, loads, Request{System: "aarch64-linux"}, board, Options{}, now)
	if d.Chosen() != "ssh://b2" || !strings.Contains(d.Reasons[2].Why(), `(say "no"`) {
		t.Errorf("chosen %q, b3: %q", d.Chosen(), d.Reasons[2].Why())
	}
}

func TestAppendFloat(t *testing.T) {
	for in, want := range map[float64]string{
		0: "0", 1: "1", 0.5: "0.5", 2.0 / 3: "0.67", 4.0 / 3: "1.33", 1000: "1000", 0.001: "0",
		1.999: "2", 12.5: "12.5",
	} {
		if got := string(appendFloat(nil, in)); got != want {
			t.Errorf("appendFloat(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestReasonWhyStandalone(t *testing.T) {
	// A Reason not made by Choose still explains itself.
	for rej := RejectNone; rej <= RejectBusyElsewhere; rej++ {
		r := Reason{Name: "b1", Reject: rej}
		if got := r.Why(); !strings.HasPrefix(got, "b1: ") {
			t.Errorf("Reason{Reject: %d}.Why() = %q", rej, got)
		}
		if got := string(r.appendShort(nil)); !strings.HasPrefix(got, "b1 ") {
			t.Errorf("Reason{Reject: %d}.appendShort = %q", rej, got)
		}
	}
}

func TestLocalCanBuild(t *testing.T) {
	ms := machines(t, "b1 x86_64-linux")
	tests := []struct {
		req   Request
		local Local
		want  bool
	}{
		{Request{System: "aarch64-linux"}, board, true},
		{Request{System: "builtin"}, board, true},
		{Request{System: "x86_64-linux"}, board, false},
		{Request{System: "x86_64-linux"}, Local{System: "aarch64-linux", ExtraPlatforms: []string{"x86_64-linux"}}, true},
		{Request{System: "aarch64-linux", Features: []string{"kvm"}}, board, false},
		{Request{System: "aarch64-linux", Features: []string{"kvm"}}, Local{System: "aarch64-linux", Features: []string{"kvm"}}, true},
	}
	for _, tt := range tests {
		for _, ms := range [][]spec.Machine{ms, nil} {
			var d Decision
			Choose(&d, ms, nil, tt.req, tt.local, Options{}, now)
			if got := d.LocalCanBuild(); got != tt.want {
				t.Errorf("LocalCanBuild for %+v on %+v with %d machines = %v, want %v",
					tt.req, tt.local, len(ms), got, tt.want)
			}
		}
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"b1", []string{"b1"}},
		{"b1, ssh://root@b2 ,,b3", []string{"b1", "ssh://root@b2", "b3"}},
	}
	for _, tt := range tests {
		if got := ParseList(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ParseList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
