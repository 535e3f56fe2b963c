// SPDX-License-Identifier: MIT

package hook

// The hook's use of builders' load readings (load-aware), against a real slot
// file and a fake builder: testOnlyReadLoad answers the load command. Each
// request runs try as Nix's would, up to the answer; a request that gets
// past the load checks reaches prepare, which declines here (the test has
// no local store), so "# decline" with h.decision accepting means the hook
// went on to take the builder.

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

const loadBuilders = "ssh://b1 x86_64-linux - 2"

// loadHook is a hook with load awareness on (the default thresholds, load
// and pressure off as in the end-to-end test) over a slot file of its own.
func loadHook(t *testing.T, kv ...string) (*hook, *bytes.Buffer) {
	t.Helper()
	ms, _, err := spec.ParseBuilders(loadBuilders, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(t.TempDir(), "slots"), ms, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var stderr bytes.Buffer
	h := &hook{
		env:         Env{Now: time.Now, Getenv: func(string) string { return "" }},
		cfg:         loadConfig(t, kv...),
		log:         hookproto.NewLogger(&stderr, 0),
		machines:    ms,
		state:       f,
		loads:       make([]pick.Load, len(ms)),
		unreachable: make([]string, len(ms)),
		local:       pick.Local{System: "aarch64-linux"},
		storeErr:    errors.New("no local store in this test"),
	}
	h.opts, _ = decide.Options(h.cfg, h.env.Getenv)
	return h, &stderr
}

// loadConfig is the settings of loadHook: the defaults, with load and
// memory pressure off and no wait before a postpone, and kv.
func loadConfig(t *testing.T, kv ...string) *config.Config {
	return testConfig(t, append([]string{"load-max-per-cpu", "0", "memory-pressure-max", "0", "postpone-wait", "0"}, kv...)...)
}

// fakeBuilder makes testOnlyReadLoad answer with the reading readBuilds
// returns (nil: an idle builder), and counts the readings.
func fakeBuilder(t *testing.T, readBuilds func() int) *atomic.Int32 {
	t.Helper()
	var n atomic.Int32
	testOnlyReadLoad = func(ctx context.Context, m *spec.Machine) (pick.Reading, error) {
		n.Add(1)
		r := idleReading(time.Now())
		if readBuilds != nil {
			r.Builds = readBuilds()
		}
		return r, nil
	}
	t.Cleanup(func() { testOnlyReadLoad = nil })
	return &n
}

func idleReading(at time.Time) pick.Reading {
	return pick.Reading{Time: at, CPUs: 4, Load1: 100, Load5: 100, Load15: 100,
		CPUPressure: 0, MemoryPressure: 0, IOPressure: 0, MemAvailable: 8 << 30, MemTotal: 16 << 30,
		StoreFree: 50 << 30, StoreSize: 200 << 30, Builds: 0}
}

// setReading stores a reading of b1 taken at, with builds running there.
func setReading(h *hook, at time.Time, builds int) {
	r := idleReading(at)
	r.Builds = builds
	h.state.SetReading("ssh://b1", r)
}

// request runs one try for an x86_64-linux derivation and returns the
// answer line.
func request(t *testing.T, h *hook, stderr *bytes.Buffer) string {
	t.Helper()
	stderr.Reset()
	req := hookproto.Request{System: "x86_64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-x.drv"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _, err := h.try(ctx, &req)
	if err != nil {
		t.Fatalf("try: %v", err)
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "# ") {
			return l
		}
	}
	t.Fatalf("try wrote no answer:\n%s", stderr)
	return ""
}

func busyElsewhere(h *hook) bool {
	return len(h.decision.Reasons) == 1 && h.decision.Reasons[0].Reject == pick.RejectBusyElsewhere
}

// A fresh reading that accounts for this host's builds is decided on
// without a round trip.
func TestLoadFreshNoRoundTrip(t *testing.T) {
	h, stderr := loadHook(t)
	reads := fakeBuilder(t, nil)
	s, ok := h.state.Acquire("ssh://b1")
	if !ok {
		t.Fatal("Acquire failed")
	}
	defer s.Release()
	s.SetPhase(slots.PhaseBuilding)
	setReading(h, time.Now().Add(-time.Second), 1) // shows our build
	if got := request(t, h, stderr); got != "# decline" || h.decision.Answer != pick.Accept {
		t.Errorf("answer %q, decision %v; want the builder taken (declined at prepare)", got, h.decision.Answer)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("%d readings of b1 with a fresh one shared; want none", n)
	}
}

// Defect 1: a builder turned down as busy elsewhere on a reading older than
// load-refresh (but younger than load-max-age, so it still counts) is read
// again before the answer, and taken when it is free now. Before, it was
// postponed until the reading passed load-max-age.
func TestLoadRefreshRejected(t *testing.T) {
	h, stderr := loadHook(t, "load-refresh", "1s")
	reads := fakeBuilder(t, nil)
	setReading(h, time.Now().Add(-3*time.Second), 2)
	got := request(t, h, stderr)
	if n := reads.Load(); n != 1 {
		t.Errorf("%d readings of b1 turned down on a 3 s old reading; want 1", n)
	}
	if h.decision.Answer != pick.Accept || got == "# postpone" {
		t.Errorf("answer %q, decision %v after b1 read idle; want b1 taken", got, h.decision.Answer)
	}
	// A fresh busy reading is not read again: the answer is postpone at
	// once.
	setReading(h, time.Now(), 2)
	reads.Store(0)
	if got := request(t, h, stderr); got != "# postpone" || !busyElsewhere(h) {
		t.Errorf("answer %q with a fresh busy reading; want # postpone, busy elsewhere", got)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("%d readings with a fresh busy one; want none", n)
	}
}

// Defect 2: while another hook holds b1's refresh token, the hook waits for
// that hook's reading and decides on it: here b1 is busy elsewhere, so the
// answer is postpone. Before, it took b1 without a reading.
func TestLoadWaitsForRefresher(t *testing.T) {
	h, stderr := loadHook(t, "connect-timeout", "5s")
	reads := fakeBuilder(t, nil)
	other, err := slots.Open(h.state.Path(), h.machines, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	release, ok := other.TryRefresh("ssh://b1", time.Second)
	if !ok {
		t.Fatal("TryRefresh on a file without a reading failed")
	}
	start := time.Now()
	go func() {
		time.Sleep(200 * time.Millisecond)
		r := idleReading(time.Now())
		r.Builds = 2
		other.SetReading("ssh://b1", r)
		release()
	}()
	got := request(t, h, stderr)
	if got != "# postpone" || !busyElsewhere(h) {
		t.Errorf("answer %q, decision %v; want # postpone on the other hook's busy reading", got, h.decision.Answer)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("%d readings of b1 by the waiting hook; want none (the other hook read it)", n)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, before the other hook's reading", d)
	}
}

// The wait for another hook's reading is bounded by the connect timeout:
// then the answer is postpone, never an accept without a reading.
func TestLoadWaitsForRefresherBounded(t *testing.T) {
	h, stderr := loadHook(t, "connect-timeout", "300ms")
	fakeBuilder(t, nil)
	release, ok := h.state.TryRefresh("ssh://b1", time.Second)
	if !ok {
		t.Fatal("TryRefresh failed")
	}
	defer release()
	start := time.Now()
	if got := request(t, h, stderr); got != "# postpone" {
		t.Errorf("answer %q with the refresh token held throughout; want # postpone", got)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("answered after %v; want about the connect timeout (300ms)", d)
	}
}

// Defect 3: a reading that does not account for this host's builds is not
// decided on. Here a build of this host started on b1 after the reading
// (which showed b1 idle); the builder's current reading shows it and one
// from elsewhere, which fill max jobs 2. Before, the hook took b1 on the
// old reading: 1 busy slot + 0 from elsewhere < 2.
func TestLoadAccountsForOurBuilds(t *testing.T) {
	h, stderr := loadHook(t)
	reads := fakeBuilder(t, func() int { return 2 })
	setReading(h, time.Now().Add(-500*time.Millisecond), 0)
	s, ok := h.state.Acquire("ssh://b1")
	if !ok {
		t.Fatal("Acquire failed")
	}
	defer s.Release()
	s.SetPhase(slots.PhaseBuilding)
	if got := request(t, h, stderr); got != "# postpone" || !busyElsewhere(h) {
		t.Errorf("answer %q, decision %v; want # postpone, busy elsewhere on a current reading", got, h.decision.Answer)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d readings of b1; want 1", n)
	}
}

// Defect 3, the start of a run: while a build of this host is on its way to
// b1 (connecting or uploading), no reading shows it, so the hook waits for
// it to start there (postpone-wait at most) before it decides; here it
// never starts, and the answer is postpone. Before, the hook took b1 at
// once on the reading that showed it idle.
func TestLoadWaitsForOurBuildToStart(t *testing.T) {
	h, stderr := loadHook(t, "postpone-wait", "300ms")
	reads := fakeBuilder(t, func() int { return 1 })
	setReading(h, time.Now(), 0)
	s, ok := h.state.Acquire("ssh://b1")
	if !ok {
		t.Fatal("Acquire failed")
	}
	defer s.Release()
	s.SetPhase(slots.PhaseUploading)
	start := time.Now()
	if got := request(t, h, stderr); got != "# postpone" {
		t.Errorf("answer %q with a build on its way; want # postpone", got)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("answered after %v; want a wait of postpone-wait (300ms)", d)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("%d readings while the build is on its way; want none", n)
	}

	// Once it runs there, a new reading (showing it, and nothing from
	// elsewhere) lets the second build go.
	h.cfg = loadConfig(t, "postpone-wait", "5s")
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.SetPhase(slots.PhaseBuilding)
	}()
	if got := request(t, h, stderr); got != "# decline" || h.decision.Answer != pick.Accept {
		t.Errorf("answer %q, decision %v after our build started; want b1 taken", got, h.decision.Answer)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d readings after our build started; want 1", n)
	}
}

// Two hooks of one host that decided on the same reading at once: the one
// that took its slot first goes on, the other gives its slot back.
func TestOthersOnTheirWay(t *testing.T) {
	h, _ := loadHook(t)
	setReading(h, time.Now(), 0)
	a, ok1 := h.state.Acquire("ssh://b1")
	time.Sleep(time.Millisecond)
	b, ok2 := h.state.Acquire("ssh://b1")
	if !ok1 || !ok2 {
		t.Fatal("Acquire failed")
	}
	defer a.Release()
	defer b.Release()
	if h.othersOnTheirWay(&reservation{state: h.state, uri: "ssh://b1", slot: &a}) {
		t.Errorf("the first slot yields to the second")
	}
	if !h.othersOnTheirWay(&reservation{state: h.state, uri: "ssh://b1", slot: &b}) {
		t.Errorf("the second slot does not yield to the first")
	}
	a.SetPhase(slots.PhaseBuilding)
	if h.othersOnTheirWay(&reservation{state: h.state, uri: "ssh://b1", slot: &b}) {
		t.Errorf("the second slot yields to a build running on the builder")
	}
}
