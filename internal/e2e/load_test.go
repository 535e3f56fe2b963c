// SPDX-License-Identifier: MIT

package e2e

// Real load of shared builders (load-aware): several boards share one
// builder, builders whose real state keeps builds away (busy elsewhere, a
// nearly full store), and builders whose state cannot be read.
//
// Every test builder runs on this one machine, so a real reading shows the
// machine's load, pressure and builds: everyone's, including other tests
// and whatever else runs here. Tests that count on a builder's state
// therefore either turn off the thresholds that would measure the rest of
// the machine (and say so), or script the reading: the builder's session
// answers the load command (remoteload.Command, "/bin/sh" with the script
// on stdin) with a file the test writes, while every other command (the
// serve protocol, nix) runs as before. That keeps the hook, the SSH
// session, the parser, the slot file and the choice real, and only the
// builder's answer scripted.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// newLoadClient is newClient with load awareness on, which the harness
// turns off for every other test.
func newLoadClient(t *testing.T, bs ...*builder) *client {
	t.Helper()
	c := newClient(t, bs...)
	c.Base = []string{"OFFLOAD_LOAD_AWARE=true"}
	return c
}

// offloadIn runs the offload binary with args as client c, in its
// namespace (so it reads the slot file c's hooks write), with c.Env.
func offloadIn(t *testing.T, c *client, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.command(ctx, append([]string{offloadBin}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("offload %q: timed out\n%s", args, errb.String())
	}
	if err != nil {
		code = -1
		if ee, ok := err.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

// scriptLoad makes b answer the load command with the contents of the file
// it returns (written by the caller, read at every session), or with what
// answer prints when answer is not empty; every other command runs as
// before. It edits the builder's forced-command script
// (scripts/test-builder.sh), which sshd runs afresh for every session.
func scriptLoad(t *testing.T, b *builder, answer string) string {
	t.Helper()
	file := filepath.Join(b.Dir, "load-answer")
	if answer == "" {
		answer = "cat '" + file + "'"
	}
	path := filepath.Join(b.Dir, "session")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\nexec ")
	if i < 0 {
		t.Fatalf("%s: no exec line:\n%s", path, s)
	}
	s = s[:i+1] + `if [ "$SSH_ORIGINAL_COMMAND" = /bin/sh ]; then ` + answer + "; exit $?; fi" + s[i:]
	if err := os.WriteFile(path, []byte(s), 0o755); err != nil {
		t.Fatal(err)
	}
	return file
}

// scriptIdle makes b read idle, whatever the machine does: a real reading
// of a test builder is this whole machine's, with the builds of other
// tests running at the same time, which could keep b away (busy
// elsewhere) from a build the test means it to take.
func scriptIdle(t *testing.T, b *builder) {
	t.Helper()
	if err := os.WriteFile(scriptLoad(t, b, ""), []byte(reading()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildOn builds a new derivation named name as c with builders, and
// fails unless b built it and avoided did not.
func buildOn(t *testing.T, c *client, builders, name string, b, avoided *builder) {
	t.Helper()
	r := c.build(drv(name, "x86_64-linux", `echo `+name+` > $out`, salt()), builders)
	if r.Code != 0 {
		t.Fatalf("nix-build of %s: exit %d\n%s", name, r.Code, r.Stderr)
	}
	if !b.has(t, r.Out) || avoided.has(t, r.Out) {
		t.Errorf("%s: built on %s %v, on %s %v; want on %[2]s only\n%[6]s", name, b.Name, b.has(t, r.Out), avoided.Name, avoided.has(t, r.Out), r.Stderr)
	}
}

// reading returns the output of the load script for a builder with these
// lines after the header; the rest is an idle 2-CPU Linux builder with
// plenty of memory and store space, so that each case shows one figure.
func reading(lines ...string) string {
	base := map[string]string{
		"cpus":                  "cpus 2",
		"loadavg":               "loadavg 0.10 0.10 0.10 1/100 123",
		"pressure cpu":          "pressure cpu some avg10=0.00 avg60=0.00 avg300=0.00 total=1",
		"pressure memory":       "pressure memory some avg10=0.00 avg60=0.00 avg300=0.00 total=1",
		"meminfo MemTotal:":     "meminfo MemTotal: 16314080 kB",
		"meminfo MemAvailable:": "meminfo MemAvailable: 9123456 kB",
		"df":                    "df /dev/vda 264212084 18170180 77331084 20% /",
		"builds":                "builds 0",
	}
	order := []string{"cpus", "loadavg", "pressure cpu", "pressure memory", "meminfo MemTotal:", "meminfo MemAvailable:", "df", "builds"}
	for _, l := range lines {
		for _, k := range order {
			if strings.HasPrefix(l, k+" ") {
				base[k] = l
			}
		}
	}
	var b strings.Builder
	b.WriteString("offload-load 1\n")
	for _, k := range order {
		b.WriteString(base[k] + "\n")
	}
	b.WriteString("procfs rw\nuid 0\nend\n")
	return b.String()
}

// overlapAfterFirstEnd reads overlap's "start T" and "end T" lines and
// returns the most builds that ran at once from the first end on.
func overlapAfterFirstEnd(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var starts, ends []float64
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		kind, ts, _ := strings.Cut(line, " ")
		v, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: bad line %q", path, line)
		}
		if kind == "start" {
			starts = append(starts, v)
		} else {
			ends = append(ends, v)
		}
	}
	if len(starts) != len(ends) || len(ends) == 0 {
		return 0, fmt.Errorf("%s: %d starts and %d ends", path, len(starts), len(ends))
	}
	sort.Float64s(starts)
	sort.Float64s(ends)
	first := ends[0]
	most := 0
	// The number running is highest just after a start; builds that
	// started are paired with ends in order, which gives the same counts.
	for _, t := range starts {
		if t < first {
			continue
		}
		n := 0
		for i := range starts {
			if starts[i] <= t && ends[i] > t {
				n++
			}
		}
		most = max(most, n)
	}
	return most, nil
}

// sleepers is an expression of n derivations that each append their start
// and end times to logFile and run for secs seconds.
func sleepers(prefix string, n int, secs float64, logFile string) string {
	return drvs(prefix, n, fmt.Sprintf(`''
    echo start $(/bin/date +%%s.%%N) >> %s
    /bin/sleep %g
    echo end $(/bin/date +%%s.%%N) >> %s
    echo ${toString i} > $out
  ''`, logFile, secs, logFile))
}

// buildAll runs nix-build for each client at once and returns the results
// in the same order. It does not fail the test from another goroutine.
func buildAll(t *testing.T, cs []*client, exprs []string, builders string) []result {
	t.Helper()
	res := make([]result, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		f := c.file(fmt.Sprintf("expr-%d.nix", i), exprs[i])
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := c.command(ctx, "nix-build", "--no-out-link", f, "--max-jobs", "0",
				"--option", "build-hook", offloadBin, "--builders", builders)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			res[i] = result{Out: strings.TrimSpace(stdout.String()), Stderr: stderr.String()}
			if err != nil {
				res[i].Code = -1
				if ee, ok := err.(interface{ ExitCode() int }); ok {
					res[i].Code = ee.ExitCode()
				}
				if ctx.Err() != nil {
					res[i].Stderr += "\n(timed out)"
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// Two boards on one machine share builder b1, each with max jobs 2 in its
// machines line and a slot file of its own (each client has its own /nix),
// and build 10 derivations each at once. Each build records its start and
// end on the builder, so the test sees how many ran there at once.
//
// Without load awareness each board fills its own 2 slots: 3 or 4 run at
// once (the builds take 3 s, so the boards' builds overlap for certain).
// With it, a board counts the other board's builds from the builder's
// reading against max jobs: never more than 2, plus at most 1 from the
// race between the two boards' readings, from the very start: a board
// sends a build only on a reading that accounts for its own builds (none
// on its way to b1, each running one shown), so each board has at most one
// build that the other board's readings cannot show yet.
//
// load-refresh is 1 s instead of 5 s: builds of 3 s would otherwise
// finish between two readings, and the test would measure the refresh
// interval instead of the rule. load-max-age keeps its default: a board
// that read b1 as busy elsewhere reads it again once its reading is older
// than load-refresh (internal/hook/remoteload.go). The thresholds on load
// per CPU and memory pressure are off: on this machine they measure
// everyone's load (other tests, the Go toolchain), not b1's, and this test
// is about the builds rule. Builds from other tests on this machine count
// as builds from elsewhere too; they can only lower the number seen here.
//
// Not parallel with the other tests: their builds would count as builds
// from elsewhere on b1 (the same machine) and hold the boards back.
func TestLoadTwoBoards(t *testing.T) {
	requireEnv(t)
	b1 := startBuilder(t, "b1", builderOpts{})
	const builders = "ssh://b1 x86_64-linux - 2"
	for _, aware := range []bool{false, true} {
		name := "unaware"
		if aware {
			name = "aware"
		}
		t.Run(name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "times")
			var cs []*client
			var exprs []string
			for i := range 2 {
				c := newLoadClient(t, b1)
				c.Env = []string{
					fmt.Sprintf("OFFLOAD_LOAD_AWARE=%v", aware),
					"OFFLOAD_LOAD_REFRESH=1s",
					"OFFLOAD_LOAD_MAX_PER_CPU=0",
					"OFFLOAD_MEMORY_PRESSURE_MAX=0",
				}
				cs = append(cs, c)
				exprs = append(exprs, sleepers(fmt.Sprintf("board%d-%s", i, name), 10, 3, logFile))
			}
			start := time.Now()
			res := buildAll(t, cs, exprs, builders)
			wall := time.Since(start)
			for i, r := range res {
				if r.Code != 0 {
					t.Errorf("board %d: nix-build exit %d\n%s", i, r.Code, r.Stderr)
				} else if n := len(strings.Fields(r.Out)); n != 10 {
					t.Errorf("board %d: %d outputs, want 10", i, n)
				}
			}
			starts, most, err := overlap(logFile)
			if err != nil {
				t.Fatal(err)
			}
			if starts != 20 {
				t.Errorf("%d builds started on b1, want 20", starts)
			}
			t.Logf("load-aware %v: at most %d builds at once on b1, wall time %v", aware, most, wall.Round(10*time.Millisecond))
			if !aware && most < 3 {
				t.Errorf("without load awareness at most %d builds ran at once on b1; want 3 or 4 (2 per board)", most)
			}
			if most > 4 {
				t.Errorf("%d builds ran at once on b1: more than the two boards' max jobs", most)
			}
			if aware {
				steady, err := overlapAfterFirstEnd(logFile)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("load-aware: at most %d at once after the first build ended", steady)
				if most > 3 {
					t.Errorf("with load awareness %d builds ran at once on b1; want at most 2, plus 1 from a race", most)
				}
				// Both boards' state shows b1's reading.
				out, _, _ := offloadIn(t, cs[0], "status", "-v", "--builders", builders)
				if !regexp.MustCompile(`(?m)^b1 +\d+ CPUs?, load [0-9.]+ `).MatchString(out) {
					t.Errorf("status -v on board 0 shows no reading of b1:\n%s", out)
				}
			}
		})
	}
}

// The thresholds, on a builder whose load command prints scripted
// readings (see the top of this file): bs is the faster builder (speed
// factor 2) and gets every build it may take; b2 is an ordinary one. For
// each rule, offload check reads bs over SSH and stores the reading in the
// client's slot file, and offload pick (the hook's own choice, from the
// same file) names the figure over the threshold. Two real builds show
// the hook acting on it: with a busy reading the build goes to b2 without
// the hook reading bs again (the reading is fresh), and once bs reads
// idle it takes the next one.
func TestLoadThresholds(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	bs := startBuilder(t, "bs", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	answer := scriptLoad(t, bs, "")
	scriptIdle(t, b2)
	c := newLoadClient(t, bs, b2)
	const builders = "ssh://bs x86_64-linux - 2 2; ssh://b2 x86_64-linux - 2"

	setReading := func(t *testing.T, out string, env ...string) {
		t.Helper()
		if err := os.WriteFile(answer, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Env = env
		stdout, stderr, code := offloadIn(t, c, "check", "--builders", builders, "bs")
		if code != 0 {
			t.Fatalf("offload check bs: exit %d\n%s\n%s", code, stdout, stderr)
		}
	}
	pickOf := func(t *testing.T) string {
		t.Helper()
		out, stderr, code := offloadIn(t, c, "pick", "--system", "x86_64-linux", "--builders", builders)
		if code != 0 {
			t.Fatalf("offload pick: exit %d\n%s", code, stderr)
		}
		return out
	}

	for _, tc := range []struct {
		name    string
		reading string
		env     []string
		want    string // in offload pick's output; "" means bs is chosen
	}{
		{"idle", reading(), nil, ""},
		{"load", reading("loadavg 7.90 6.00 5.00 9/812 40123"), nil, "bs: busy elsewhere: load 7.9 on 2 CPUs"},
		{"load under a raised threshold", reading("loadavg 7.90 6.00 5.00 9/812 40123"), []string{"OFFLOAD_LOAD_MAX_PER_CPU=4"}, ""},
		{"memory pressure", reading("pressure memory some avg10=41.00 avg60=12.00 avg300=3.00 total=123"), nil, "bs: busy elsewhere: memory pressure 41 %"},
		{"cpu pressure off by default", reading("pressure cpu some avg10=90.00 avg60=80.00 avg300=70.00 total=123"), nil, ""},
		{"cpu pressure", reading("pressure cpu some avg10=90.00 avg60=80.00 avg300=70.00 total=123"), []string{"OFFLOAD_CPU_PRESSURE_MAX=50"}, "bs: busy elsewhere: CPU pressure 90 %"},
		{"builds from elsewhere", reading("builds 2"), nil, "bs: busy elsewhere: 2 builds from elsewhere and 0/2 slots busy"},
		// Under max jobs, builds from elsewhere only rank bs lower: the
		// idle b2 wins.
		{"one build from elsewhere", reading("builds 1"), nil, "bs: eligible, 0/2 slots busy (+1 elsewhere), speed 2"}, // then "(native)" once a build probed it
		{"store", reading("df /dev/vda 1000000 999000 512 100% /"), nil, "bs: store nearly full: 512 KiB free"},
		{"several figures", reading("loadavg 7.90 6.00 5.00 9/812 40123", "pressure memory some avg10=41.00 avg60=12.00 avg300=3.00 total=123"), nil, "bs: busy elsewhere: load 7.9 on 2 CPUs, memory pressure 41 %"},
		{"thresholds off", reading("loadavg 7.90 6.00 5.00 9/812 40123", "builds 2"), []string{"OFFLOAD_LOAD_AWARE=false"}, ""},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			setReading(t, tc.reading, tc.env...)
			out := pickOf(t)
			first := strings.SplitN(out, "\n", 2)[0]
			if tc.want == "" {
				if !strings.HasPrefix(first, "accept") || !strings.Contains(first, "bs") {
					t.Errorf("offload pick: want bs chosen, got:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("offload pick: want %q, got:\n%s", tc.want, out)
			}
			if !strings.HasPrefix(first, "accept") || !strings.Contains(first, "b2") {
				t.Errorf("offload pick: want b2 chosen, got:\n%s", out)
			}
		})
	}

	// The hook, with a fresh busy reading: b2 builds, bs is not asked.
	setReading(t, reading("loadavg 7.90 6.00 5.00 9/812 40123"))
	buildOn(t, c, builders, "thresholds-busy", b2, bs)
	// And once bs reads idle, bs builds.
	setReading(t, reading())
	buildOn(t, c, builders, "thresholds-idle", bs, b2)
}

// A sanity check with real CPU-bound builds, not a timing bound: board A
// runs two builds that spin on the CPU on b1 until the test lets them
// finish; once both run there, board B's offload check reads b1 for real
// and sees them (and the CPUs this machine has), and board B's choice,
// with max jobs 2, is that b1 is busy elsewhere. The load and pressure
// thresholds are off: they would measure this whole machine.
func TestLoadRealBuilds(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	const builders = "ssh://b1 x86_64-linux - 2"
	env := []string{"OFFLOAD_LOAD_MAX_PER_CPU=0", "OFFLOAD_MEMORY_PRESSURE_MAX=0"}
	// Board A only needs its two builds on b1: without load awareness
	// builds of other tests on this machine cannot hold them back.
	a, b := newLoadClient(t, b1), newLoadClient(t, b1)
	a.Env, b.Env = []string{"OFFLOAD_LOAD_AWARE=false"}, env
	dir := t.TempDir()
	logFile, release := filepath.Join(dir, "times"), filepath.Join(dir, "release")
	expr := drvs("spin", 2, fmt.Sprintf(`''
    echo start $(/bin/date +%%s.%%N) >> %s
    # Spin until released, for at most 60 s.
    stop=$(( $(/bin/date +%%s) + 60 )) n=0
    while [ ! -e %s ] && [ $(/bin/date +%%s) -lt $stop ]; do
      i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done; n=$((n + 1))
    done
    echo end $(/bin/date +%%s.%%N) >> %s
    echo $n > $out
  ''`, logFile, release, logFile))
	done := make(chan result, 1)
	go func() { done <- buildAll(t, []*client{a}, []string{expr}, builders)[0] }()
	defer func() {
		os.WriteFile(release, nil, 0o644)
		r := <-done
		if r.Code != 0 {
			t.Errorf("board A: nix-build exit %d\n%s", r.Code, r.Stderr)
		}
	}()

	deadline := time.Now().Add(90 * time.Second)
	for {
		data, _ := os.ReadFile(logFile)
		if bytes.Count(data, []byte("start")) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two builds did not both start on b1:\n%s", data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, stderr, code := offloadIn(t, b, "check", "--json", "--builders", builders)
	var rows []struct {
		OK      bool
		Reading struct {
			CPUs   int
			Builds int
			Load   []float64
		}
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || code != 0 {
		t.Fatalf("offload check --json: exit %d, %v\n%s\n%s", code, err, out, stderr)
	}
	rd := rows[0].Reading
	ncpu := runtime.NumCPU()
	if rd.CPUs != ncpu || rd.Builds < 2 || len(rd.Load) != 3 {
		t.Errorf("board B's reading of b1 = %+v; want %d CPUs, at least the 2 builds of board A, a load", rd, ncpu)
	}
	pick, _, _ := offloadIn(t, b, "pick", "--system", "x86_64-linux", "--builders", builders)
	if !regexp.MustCompile(`b1: busy elsewhere: \d+ builds from elsewhere`).MatchString(pick) || !strings.HasPrefix(pick, "postpone") {
		t.Errorf("board B's offload pick with b1 running board A's builds:\n%s", pick)
	}
}

// A builder whose store filesystem is nearly full (a small tmpfs over its
// /nix/store, mounted in its own mount namespace, and filled) is avoided
// with the reason shown, and the other builder takes the work. The default
// store-free-min (1 GiB) applies; the real reading of b2 shows this
// machine's disk, which has more.
func TestLoadStoreFull(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	full := startBuilder(t, "full", builderOpts{})
	b2 := startBuilder(t, "b2", builderOpts{})
	if out, err := full.exec(t, "sh", "-c", "mount -t tmpfs -o size=16m,mode=1775 offload-test /nix/store && head -c 15728640 /dev/zero > /nix/store/.fill && df -k /nix/store"); err != nil {
		t.Fatalf("mounting a small store on the builder: %v\n%s", err, out)
	}
	scriptIdle(t, b2)
	c := newLoadClient(t, full, b2)
	// Load per CPU and pressure measure this whole machine: off.
	c.Env = []string{"OFFLOAD_LOAD_MAX_PER_CPU=0", "OFFLOAD_MEMORY_PRESSURE_MAX=0"}
	// full is the faster: without its reading it would get the build.
	const builders = "ssh://full x86_64-linux - 2 2; ssh://b2 x86_64-linux - 2"
	buildOn(t, c, builders, "store-full", b2, full)
	out, _, _ := offloadIn(t, c, "pick", "--system", "x86_64-linux", "--builders", builders)
	if !regexp.MustCompile(`full: store nearly full: \d+(\.\d)? (KiB|MiB) free`).MatchString(out) {
		t.Errorf("offload pick does not say why full is avoided:\n%s", out)
	}
	st, _, _ := offloadIn(t, c, "status", "-v", "--builders", builders)
	if !regexp.MustCompile(`(?m)^full +.*store \d+(\.\d)? (KiB|MiB) free of 16 MiB`).MatchString(st) {
		t.Errorf("status -v does not show full's store:\n%s", st)
	}
}

// A builder whose load command prints garbage, and one where it fails, are
// used as before, with "unknown" in offload status -v and offload check.
func TestLoadUnknown(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	garbage := startBuilder(t, "garbage", builderOpts{})
	failing := startBuilder(t, "failing", builderOpts{})
	scriptLoad(t, garbage, "echo 'this is not a reading'")
	scriptLoad(t, failing, "echo 'load: permission denied' >&2; false")
	c := newLoadClient(t, garbage, failing)
	const builders = "ssh://garbage x86_64-linux - 1; ssh://failing x86_64-linux - 1"
	for _, b := range []*builder{garbage, failing} {
		c.Env = []string{"OFFLOAD_ONLY=" + b.Name}
		r := c.build(drv("unknown-"+b.Name, "x86_64-linux", `echo hi > $out`, `u = "`+unique()+`";`), builders)
		if r.Code != 0 {
			t.Errorf("build on %s: nix-build exit %d\n%s", b.Name, r.Code, r.Stderr)
			continue
		}
		if !b.has(t, r.Out) {
			t.Errorf("the build did not go to %s", b.Name)
		}
	}
	c.Env = nil
	st, _, _ := offloadIn(t, c, "status", "-v", "--builders", builders)
	for _, name := range []string{"garbage", "failing"} {
		if !regexp.MustCompile(`(?m)^` + name + ` +unknown \(\d+ s ago\)$`).MatchString(st) {
			t.Errorf("status -v does not show %s's reading as unknown:\n%s", name, st)
		}
	}
	out, stderr, code := offloadIn(t, c, "check", "--builders", builders)
	if code != 0 {
		t.Errorf("offload check: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, name := range []string{"garbage", "failing"} {
		if !regexp.MustCompile(`(?m)^ +` + name + ` +unknown`).MatchString(out) {
			t.Errorf("offload check does not show %s's reading as unknown:\n%s", name, out)
		}
	}
}
