// SPDX-License-Identifier: MIT

package e2e

// The rest of the hook's acceptance tests, on Nix 2.8 over ssh://: max
// jobs, a builder that is down, and concurrent uploads. Each test has
// builders and clients of its own, so they run in parallel. (Host keys, a
// hook killed mid-build, forwarded timeouts, builds through nix-daemon and
// the output import while Nix holds the output's lock are scenarios of the
// matrix, in build_test.go.)

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// Twenty independent derivations on a builder with max jobs 2: Nix starts
// a hook for each at once (max-jobs 0 locally), and never more than two
// run on the builder at the same time. Each build appends its start and
// end times to a file the test reads (no sandbox: builds can write it),
// and holds until another build runs, so that a hook that let a third
// one in would be seen.
func TestFanOutRespectsMaxJobs(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	logFile := filepath.Join(t.TempDir(), "times")
	expr := drvs("fan", 20, `''
    L=`+logFile+`
    echo start $(/bin/date +%s.%N) >> $L
    # Hold until a second build runs (or 2 s pass), then 1 s more: the
    # builds overlap whenever the hook lets them.
    i=0
    while [ $(/bin/grep -c start $L) -le $(( $(/bin/grep -c end $L) + 1 )) ] && [ $i -lt 20 ]; do
      /bin/sleep 0.1; i=$((i + 1))
    done
    /bin/sleep 1
    echo end $(/bin/date +%s.%N) >> $L
    echo ${toString i} > $out
  ''`)
	start := time.Now()
	r := c.build(expr, "ssh://b1 x86_64-linux - 2")
	wall := time.Since(start)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if outs := strings.Fields(r.Out); len(outs) != 20 {
		t.Errorf("nix-build printed %d outputs, want 20", len(outs))
	}
	starts, maxOverlap, err := overlap(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if starts != 20 {
		t.Errorf("%d builds started on the builder, want 20", starts)
	}
	if maxOverlap > 2 {
		t.Errorf("up to %d builds ran at once on a builder with max jobs 2", maxOverlap)
	}
	if maxOverlap < 2 {
		t.Errorf("never more than %d build at once: the builder's two slots were not used", maxOverlap)
	}
	t.Logf("20 derivations of about 1 s, max jobs 2: wall time %v, at most %d at once", wall.Round(10*time.Millisecond), maxOverlap)
}

// overlap reads "start T" and "end T" lines and returns how many builds
// started and the most that ran at once.
func overlap(path string) (starts, most int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	type ev struct {
		t     float64
		delta int
	}
	var evs []ev
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, ts, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseFloat(ts, 64)
		if !ok || err != nil || (kind != "start" && kind != "end") {
			return 0, 0, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		d := -1
		if kind == "start" {
			d = 1
			starts++
		}
		evs = append(evs, ev{v, d})
	}
	// At equal times an end comes first: a build that ends as another
	// starts does not overlap it.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].delta < evs[j].delta
	})
	n := 0
	for _, e := range evs {
		n += e.delta
		most = max(most, n)
	}
	return starts, most, sc.Err()
}

// slotSnapshot reads the client's slot file, as `offload status` does.
func (c *client) slotSnapshot(t *testing.T, builders string) []slots.Builder {
	t.Helper()
	ms, _, err := spec.ParseBuilders(builders, spec.Options{LocalSystem: "x86_64-linux", Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(c.Dir, "nix/var/nix/offload/slots"), ms, slots.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("opening the client's slot file: %v", err)
	}
	defer f.Close()
	return f.Snapshot(nil)
}

// Two builders, the preferred one down: every build goes to the other,
// and the down one is marked unhealthy in the shared slot file, so the
// hooks of later derivations do not try it again.
func TestOneBuilderDown(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b2 := startBuilder(t, "b2", builderOpts{})
	c := newClient(t, b2)
	cfg, err := os.ReadFile(filepath.Join(c.Dir, "ssh_config"))
	if err != nil {
		t.Fatal(err)
	}
	c.file("ssh_config", string(cfg)+fmt.Sprintf("Host bdown\n\tHostName 127.0.0.1\n\tPort %d\n\tUser root\n\tIdentityFile %s\n\tBatchMode yes\n", testenv.ClosedPort(t), b2.Key))
	builders := "ssh://bdown x86_64-linux - 4 10\nssh://b2 x86_64-linux - 4 1"
	// A backoff longer than the build, however slow the machine: within
	// it, no hook may try bdown again.
	c.Env = []string{"OFFLOAD_UNHEALTHY_BACKOFF=5m"}
	expr := drvs("d", 4, `"echo ${toString i} > $out"`)
	r := c.build(expr, builders)
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	outs := strings.Fields(r.Out)
	if len(outs) != 4 {
		t.Fatalf("nix-build printed %d outputs, want 4", len(outs))
	}
	for _, o := range outs {
		if !b2.has(t, o) {
			t.Errorf("%s was not built on b2", o)
		}
	}
	if n := strings.Count(r.Stderr, "cannot build on 'ssh://bdown'"); n != 1 {
		t.Errorf("the hooks tried the down builder %d times in 4 derivations, want 1:\n%s", n, r.Stderr)
	}
	for _, b := range c.slotSnapshot(t, builders) {
		switch b.URI {
		case "ssh://bdown":
			if b.ConsecutiveFailures < 1 || !b.UnhealthyUntil.After(time.Now()) || b.LastError != slots.ErrConnect {
				t.Errorf("bdown in the slot file: %d failures, unhealthy until %v, last error %v; want unhealthy after a connect failure",
					b.ConsecutiveFailures, b.UnhealthyUntil, b.LastError)
			}
		case "ssh://b2":
			if b.Succeeded != 4 || b.Busy != 0 || !b.UnhealthyUntil.IsZero() {
				t.Errorf("b2 in the slot file: %d succeeded, %d busy, unhealthy until %v; want 4, 0, healthy", b.Succeeded, b.Busy, b.UnhealthyUntil)
			}
		}
	}
}

// Two builds that need the same big local input, started together: the
// second hook waits for the first one's upload (the builder's upload token
// in the slot file) and then sends nothing, instead of sending the same
// closure a second time at once.
func TestConcurrentUploadsOnce(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	const size = 64 << 20
	big := make([]byte, size)
	for i := range big {
		big[i] = byte(i * 7)
	}
	copy(big, unique())
	c.file("big.bin", string(big))
	expr := drvs("uses-big", 2, `"/usr/bin/wc -c < ${./big.bin} > $out"`)
	r := c.build(expr, "ssh://b1 x86_64-linux - 4")
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	if n := strings.Count(r.Stderr, "copying 1 paths to 'ssh://b1'"); n != 1 {
		t.Errorf("the big input was uploaded %d times, want 1:\n%s", n, r.Stderr)
	}
	for _, b := range c.slotSnapshot(t, "ssh://b1 x86_64-linux - 4") {
		if b.URI == "ssh://b1" && (b.BytesSent < size || b.BytesSent > size+size/2) {
			t.Errorf("%d bytes sent to b1, want one copy of %d", b.BytesSent, size)
		}
	}
	t.Logf("second hook waited for the first one's upload: %v", strings.Contains(r.Stderr, "waiting for another build's upload"))
}
