// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"fmt"
	"html"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// raw holds the records of a run: scenario → hook → metric → rep → values.
type raw struct {
	v     map[string]map[string]map[string]map[string][]float64
	notes map[string]string // "scenario hook metric" → last note
}

func readRaw(path string) (*raw, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &raw{v: map[string]map[string]map[string]map[string][]float64{}, notes: map[string]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// scenario, hook, rep, metric, value, note
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 5 {
			continue
		}
		x, err := strconv.ParseFloat(fs[4], 64)
		if err != nil {
			continue
		}
		s, h, rep, m := fs[0], fs[1], fs[2], fs[3]
		if r.v[s] == nil {
			r.v[s] = map[string]map[string]map[string][]float64{}
		}
		if r.v[s][h] == nil {
			r.v[s][h] = map[string]map[string][]float64{}
		}
		if r.v[s][h][m] == nil {
			r.v[s][h][m] = map[string][]float64{}
		}
		r.v[s][h][m][rep] = append(r.v[s][h][m][rep], x)
		if len(fs) > 5 && fs[5] != "" {
			r.notes[s+" "+h+" "+m] = fs[5]
		}
	}
	// work_ms: from the answer to the end of the hook's stderr, per
	// repetition (for accepted builds: inputs up, build, outputs back).
	for _, hs := range r.v {
		for _, ms := range hs {
			for rep, done := range ms["done_ms"] {
				ans := ms["answer_ms"][rep]
				if len(done) == 1 && len(ans) == 1 {
					if ms["work_ms"] == nil {
						ms["work_ms"] = map[string][]float64{}
					}
					ms["work_ms"][rep] = []float64{done[0] - ans[0]}
				}
			}
		}
	}
	return r, sc.Err()
}

// med is the median over repetitions of each repetition's largest value
// (a repetition may hold several hooks' records); NaN when there is none.
func (r *raw) med(s, h, m string) float64 {
	var per []float64
	for _, vs := range r.v[s][h][m] {
		mx := math.Inf(-1)
		for _, x := range vs {
			mx = math.Max(mx, x)
		}
		per = append(per, mx)
	}
	if len(per) == 0 {
		return math.NaN()
	}
	return median(per)
}

// failures counts repetitions whose nix-build or hook exited non-zero.
func (r *raw) failures(s, h string) (failed, total int) {
	for rep, vs := range r.v[s][h]["status"] {
		total++
		bad := false
		for _, x := range vs {
			bad = bad || x != 0
		}
		for _, x := range r.v[s][h]["hook_exit"][rep] {
			bad = bad || x != 0
		}
		if bad {
			failed++
		}
	}
	return failed, total
}

type row struct {
	name, unit  string
	off, br     float64
	cm          float64 // build-remote with ControlPersist; NaN when not measured
	lowerBetter bool
	scen        []string // scenarios whose failures the row reports
}

func (w row) ratio() float64 { return w.off / w.br }

// better is how many times better offload is than build-remote (above 1:
// offload wins).
func (w row) better() float64 { return betterThan(w.off, w.br, w.lowerBetter) }

func betterThan(off, other float64, lowerBetter bool) float64 {
	if lowerBetter {
		return other / off
	}
	return off / other
}

// winner names who is better, offload or other (named name), by more
// than 5%; "—" when a value is missing.
func winner(off, other float64, lowerBetter bool, name string) string {
	g := betterThan(off, other, lowerBetter)
	switch {
	case math.IsNaN(off) || math.IsNaN(other):
		return "—"
	case off == other:
		return "even"
	case g > 1.05: // +Inf too: offload's 0 against more
		return "offload"
	case g < 1/1.05:
		return name
	default:
		return "even"
	}
}

func report(rawPath, metaPath, mdPath, svgPath string) error {
	r, err := readRaw(rawPath)
	if err != nil {
		return err
	}
	meta := map[string]string{}
	if data, err := os.ReadFile(metaPath); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				meta[k] = v
			}
		}
	}
	const off, br, cm = "offload", "build-remote", "build-remote-cm"
	both := func(s, m string, scale float64) (float64, float64) {
		return r.med(s, off, m) * scale, r.med(s, br, m) * scale
	}
	withCM := func(s, m string, scale float64) (float64, float64, float64) {
		a, b := both(s, m, scale)
		return a, b, r.med(s, cm, m) * scale
	}
	rate := func(mib float64, s, m string) (float64, float64) {
		f := func(h string) float64 {
			d := (r.med(s, h, m) - r.med("trivial", h, m)) / 1000
			if d <= 0 {
				return math.NaN()
			}
			return mib / d
		}
		return f(off), f(br)
	}
	local := r.med("local", "local", "wall_ms")
	var rows []row
	add3 := func(name, unit string, lower bool, a, b, c float64, scen ...string) {
		rows = append(rows, row{name: name, unit: unit, off: a, br: b, cm: c, lowerBetter: lower, scen: scen})
	}
	add := func(name, unit string, lower bool, a, b float64, scen ...string) {
		add3(name, unit, lower, a, b, math.NaN(), scen...)
	}
	// addCM adds a time or count row with the ControlPersist column.
	addCM := func(name, unit, scen, metric string, scale float64) (a, b, c float64) {
		a, b, c = withCM(scen, metric, scale)
		add3(name, unit, true, a, b, c, scen)
		return a, b, c
	}
	a, b := both("decline", "wall_ms", 1)
	add("decline: nix-build wall time", "ms", true, a, b, "decline")
	a, b = both("decline", "answer_ms", 1)
	add("decline: hook start → `# decline`", "ms", true, a, b, "decline")
	addCM("hook start → `# accept` (trivial build)", "ms", "trivial", "answer_ms", 1)
	addCM("trivial remote build: hook's `# accept` → exit", "ms", "trivial", "work_ms", 1)
	a, b, c := addCM("trivial remote build: nix-build wall time", "ms", "trivial", "wall_ms", 1)
	add3("trivial remote build ÷ the same build local", "×", true, a/local, b/local, c/local, "trivial")
	addCM("first build of a burst (nothing warm): hook start → `# accept`", "ms", "first", "answer_ms", 1)
	addCM("first build of a burst: hook's `# accept` → exit", "ms", "first", "work_ms", 1)
	addCM("first build of a burst: nix-build wall time", "ms", "first", "wall_ms", 1)
	addCM("new SSH connections for 8 hooks starting at once on one builder (warm)", "count", "burst8", "new_ssh_conns", 1)
	addCM("8 hooks starting at once: wall time until all 8 nix-builds end", "s", "burst8", "wall_ms", 0.001)
	for _, c := range []struct {
		mib             float64
		scen, path, way string
	}{{50, "copy50", "output", "copy back"}, {200, "up200", "input", "upload"}} {
		size := fmt.Sprintf("%g MiB", c.mib)
		a, b = both(c.scen, "wall_ms", 1)
		add(size+" "+c.path+": nix-build wall time", "ms", true, a, b, c.scen)
		a, b = rate(c.mib, c.scen, "wall_ms")
		add(size+" "+c.way+": "+size+" ÷ (wall − trivial's wall)", "MiB/s", false, a, b, c.scen)
		a, b = both(c.scen, "work_ms", 1)
		add(size+" "+c.path+": hook's `# accept` → exit", "ms", true, a, b, c.scen)
		a, b = rate(c.mib, c.scen, "work_ms")
		add(size+" "+c.way+": "+size+" ÷ (accept → exit − trivial's)", "MiB/s", false, a, b, c.scen)
	}
	addCM("fan-out 20 × 1 s, max-jobs 2 (ideal 10 s)", "s", "fanout2", "wall_ms", 0.001)
	addCM("fan-out 20 × 1 s, max-jobs 4 (ideal 5 s)", "s", "fanout4", "wall_ms", 0.001)
	for _, s := range []struct{ scen, what string }{{"trivial", "trivial build"}, {"copy50", "50 MiB copy back"}, {"up200", "200 MiB upload"}} {
		a, b = both(s.scen, "hook_rss_kb", 1.0/1024)
		add("peak RSS, hook process ("+s.what+")", "MiB", true, a, b)
		a, b = both(s.scen, "tree_rss_kb", 1.0/1024)
		add("peak RSS, hook + child processes ("+s.what+")", "MiB", true, a, b)
	}
	a, b = both("size", "bytes", 1e-6)
	add("on disk: binary + shared libraries it loads", "MB", true, a, b)

	var md strings.Builder
	fmt.Fprintf(&md, `# offload vs Nix's build-remote: benchmark results

To rerun: on a Debian 12 machine with the README's set-up, as root, from the
repository's top directory run `+"`bench/run.sh`"+` (it calls scripts/deps.sh,
builds offload, starts a local sshd builder with its own store, and rewrites
bench/results.md, bench/results.svg, bench/results.tsv and
bench/results.meta). BENCH_REPS
(default 5) sets the repetitions of each measurement, BENCH_FANOUT_REPS
(default 1) those of the slow fan-out runs, BENCH_BURST_REPS (default 2)
those of the 8 hooks at once, BENCH_QEMU_RUNS (default 20) the
runs of each start-up command under qemu; BENCH_OUT=dir writes the results
elsewhere and BENCH_KEEP=1 keeps the scratch directory. It takes about %s
minutes on the machine below.

- Date: %s
- Machine: %s cores, %s, %s MiB RAM, %s; load average %s at the start, %s at the end
- Nix: %s (build-remote: %s)
- offload: %s, %s
- Repetitions: %s of each measurement, %s of each fan-out, %s of the 8 hooks at once, hooks alternating (the first hook alternates between repetitions); each build is a new derivation

A load average above the number of cores means other work shared the
machine during the run: absolute times are then inflated and noisy, and
the offload ÷ build-remote ratios of one run are what compare.

Medians over the repetitions. Ratio = offload ÷ build-remote (below 1 is
better for times, memory and size; above 1 is better for throughput).
"+ ControlPersist" is build-remote with OpenSSH's connection sharing in
NIX_SSHOPTS (`+"`-o ControlMaster=auto -o ControlPersist=60 -o ControlPath=DIR/%%C`"+`),
measured for the trivial build, the first build of a burst and the 8 hooks
at once; its ratio is offload ÷ that column.

| measurement | unit | offload | build-remote | ratio | better | build-remote + ControlPersist | ratio | better |
|---|---|--:|--:|--:|:-:|--:|--:|:-:|
`, meta["minutes"], meta["date"], meta["nproc"], meta["cpu"], meta["mem_mib"], meta["kernel"], meta["load_start"], meta["load_end"],
		meta["nix"], meta["build_remote"], meta["offload_version"], meta["go"], meta["reps"], meta["fanout_reps"], meta["burst_reps"])
	for _, w := range rows {
		note := ""
		for _, s := range w.scen {
			for _, h := range []string{off, br, cm} {
				if f, n := r.failures(s, h); f > 0 {
					note += fmt.Sprintf(" (%s: %d of %d runs failed)", h, f, n)
				}
			}
		}
		cmCols := "— | — | —"
		if !math.IsNaN(w.cm) {
			cmCols = fmt.Sprintf("%s | %s | %s", num(w.cm), num(w.off/w.cm), winner(w.off, w.cm, w.lowerBetter, "ControlPersist"))
		}
		fmt.Fprintf(&md, "| %s%s | %s | %s | %s | %s | %s | %s |\n", w.name, note, w.unit, num(w.off), num(w.br), num(w.ratio()), winner(w.off, w.br, w.lowerBetter, "build-remote"), cmCols)
	}
	fmt.Fprintf(&md, "\nReference: the trivial build built locally (max-jobs 1, no builders, `preferLocalBuild = true` so that Nix starts no hook): %s ms.\n", num(local))
	fmt.Fprintf(&md, "\nPeak RSS is each process's VmHWM from /proc, sampled every 5 ms by the\n"+
		"timing shim (bench/benchtool) that Nix runs as its hook and that runs the real\n"+
		"hook; \"hook + child processes\" is the largest sum of the peaks of the\n"+
		"processes of the hook's tree alive at one sample (OpenSSH's ssh for\n"+
		"build-remote; local nix-store processes for offload). RSS counts shared\n"+
		"library pages in every process. Processes and peaks (KiB) at that sample\n"+
		"in one trivial build: offload `%s`; build-remote `%s`.\n",
		r.notes["trivial offload tree_rss_kb"], r.notes["trivial build-remote tree_rss_kb"])
	fmt.Fprintf(&md, "Hook start is when the shim starts (Nix has forked it); the answer time is\n"+
		"when the shim reads the hook's first `# ` line. The shim costs both hooks the\n"+
		"same (a static Go process that execs the hook, and a monitor process that\n"+
		"relays the hook's stderr through a pipe). `# accept` → exit is the time\n"+
		"from the accept line to the end of the hook's stderr: inputs up, build,\n"+
		"outputs back. The copy rates subtract the trivial build's median from the\n"+
		"median of the big build, either in nix-build wall time (as the SSH\n"+
		"connection's set-up cancels out, noisy on a busy machine) or in accept →\n"+
		"exit (less noisy); both include writing the data on the builder (50 MiB\n"+
		"from /dev/urandom) or adding it to the builder's store.\n"+
		"The first build of a burst is the trivial build with nothing warm: offload's\n"+
		"relay stopped (`offload relay stop`, as root with the hooks' environment)\n"+
		"and ssh's control master stopped (`ssh -O exit`) just before; the other\n"+
		"trivial-build rows come after it, warm. For the 8 hooks at once, a second\n"+
		"builder runs with OpenSSH's default MaxSessions (10) and LogLevel VERBOSE;\n"+
		"after one build that warms it, 8 nix-build processes (one new trivial\n"+
		"derivation each, one client store, 8 slots on the builder) start\n"+
		"together, and the row counts the `Accepted publickey` lines its sshd\n"+
		"logged until the last ended.\n"+
		"On-disk size: offload's static binary (-s -w) against %s\n"+
		"and the shared libraries ldd lists for it (shared with other programs).\n", meta["nix_bin"])

	fmt.Fprintf(&md, "\n## offload's release binaries under qemu-user\n\n"+
		"Each command run %s times; median wall time, largest peak RSS (of the qemu\n"+
		"process, emulator included, from getrusage). `machines` is\n"+
		"`offload machines --builders 'ssh://b1 aarch64-linux,x86_64-linux - 4 2 kvm'`.\n\n"+
		"| binary | runs under | size (MiB) | `offload version` (ms) | `offload machines` (ms) | peak RSS (MiB) |\n|---|---|--:|--:|--:|--:|\n", meta["qemu_runs"])
	for _, arch := range []string{"amd64", "arm64", "riscv64"} {
		rss := math.Max(r.med("qemu", arch, "version_rss_kb"), r.med("qemu", arch, "machines_rss_kb")) / 1024
		fmt.Fprintf(&md, "| linux-%s | %s | %s | %s | %s | %s |\n", arch, meta["runner_"+arch],
			num(r.med("qemu", arch, "bytes")/(1<<20)), num(r.med("qemu", arch, "version_ms")), num(r.med("qemu", arch, "machines_ms")), num(rss))
	}
	fmt.Fprintf(&md, "\n![offload ÷ build-remote](results.svg)\n")
	// Sections after keptMarker come from other scripts (emulation.sh):
	// keep them.
	if old, err := os.ReadFile(mdPath); err == nil {
		if i := strings.Index(string(old), keptMarker); i >= 0 {
			md.WriteString("\n" + string(old[i:]))
		}
	}
	if err := os.WriteFile(mdPath, []byte(md.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(svgPath, []byte(chart(rows, meta)), 0o644)
}

// keptMarker starts the part of results.md that report keeps as it is.
const keptMarker = "<!-- written by other scripts: bench/run.sh keeps what follows -->"

func num(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "n/a"
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case math.Abs(x) >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}

// chart draws one horizontal bar per row: how many times better offload
// is than build-remote, on a log scale around 1.
func chart(rows []row, meta map[string]string) string {
	var ok []row
	for _, w := range rows {
		if g := w.better(); g > 0 && !math.IsInf(g, 0) && !math.IsNaN(g) {
			ok = append(ok, w)
		}
	}
	lo, hi := 0.5, 2.0
	for _, w := range ok {
		lo, hi = math.Min(lo, w.better()), math.Max(hi, w.better())
	}
	// Whole decades (and halves) around the data.
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo)*2)/2), math.Pow(10, math.Ceil(math.Log10(hi)*2)/2)
	const left, width, rowH, top = 450.0, 420.0, 26.0, 70.0
	x := func(v float64) float64 {
		return left + width*(math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	h := top + rowH*float64(len(ok)) + 50
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="13">
<rect width="100%%" height="100%%" fill="white"/>
<text x="10" y="22" font-size="16" font-weight="bold">How many times better offload is than Nix's build-remote</text>
<text x="10" y="42" fill="#555">%s · %s cores · Nix %s · medians · log scale; right of 1× offload wins</text>
`, left+width+90, h, html.EscapeString(meta["date"]), html.EscapeString(meta["nproc"]), html.EscapeString(meta["nix_short"]))
	var ticks []float64
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			if t := m * math.Pow(10, e); t >= lo*0.999 && t <= hi*1.001 {
				ticks = append(ticks, t)
			}
		}
	}
	sort.Float64s(ticks)
	bottom := top + rowH*float64(len(ok))
	for _, t := range ticks {
		stroke := "#ddd"
		if t == 1 {
			stroke = "#333"
		}
		fmt.Fprintf(&s, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s"/>
<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%s×</text>
`, x(t), top-8, x(t), bottom+4, stroke, x(t), bottom+20, strconv.FormatFloat(t, 'g', 3, 64))
	}
	for i, w := range ok {
		y := top + rowH*float64(i)
		g := w.better()
		x0, x1 := x(1), x(g)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		color := "#2e8b57"
		if g < 1 {
			color = "#c0392b"
		}
		label := strings.ReplaceAll(w.name, "`", "")
		fmt.Fprintf(&s, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>
<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>
<text x="%.1f" y="%.1f" fill="#333">%s×</text>
`, left-8, y+rowH/2+4, html.EscapeString(label), x0, y+4, math.Max(x1-x0, 1), rowH-8, color, math.Max(x(g), x(1))+4, y+rowH/2+4, num(g))
	}
	fmt.Fprintf(&s, `<text x="10" y="%.0f" fill="#555">times: build-remote ÷ offload; throughput: offload ÷ build-remote</text>
</svg>
`, bottom+40)
	return s.String()
}
