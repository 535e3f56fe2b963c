// SPDX-License-Identifier: MIT

package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// statusTime is the clock of every status test: the state is written and
// read at this time.
var statusTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func init() {
	testOnlyStatusNow = func() time.Time { return statusTime }
}

// statusEnv is a private environment for in-process runs: no machine
// file is read, the state lives in dir/state.
func statusEnv(dir string) map[string]string {
	return map[string]string{
		"NIX_CONF_DIR":      filepath.Join(dir, "etc"),
		"HOME":              filepath.Join(dir, "home"),
		"XDG_STATE_HOME":    filepath.Join(dir, "home", ".local", "state"),
		"OFFLOAD_CONF":      filepath.Join(dir, "offload.conf"),
		"OFFLOAD_STATE_DIR": filepath.Join(dir, "state"),
	}
}

func TestStatusScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/status",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(e *testscript.Env) error {
			for k, v := range statusEnv(e.WorkDir) {
				e.Setenv(k, v)
			}
			return os.WriteFile(filepath.Join(e.WorkDir, "offload.conf"), nil, 0o644)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"offload":   cmdOffload,
			"exitcode":  cmdExitCode,
			"slotstate": cmdSlotState,
		},
	})
}

// cmdOffload runs offload in-process. Its exit code is kept for exitcode.
func cmdOffload(ts *testscript.TestScript, neg bool, args []string) {
	code := Main(context.Background(), append([]string{"offload"}, args...), Env{
		Stdin:  strings.NewReader(""),
		Stdout: ts.Stdout(),
		Stderr: ts.Stderr(),
		Getenv: ts.Getenv,
	})
	ts.Setenv("OFFLOAD_EXIT", strconv.Itoa(code))
	if (code != 0) != neg {
		ts.Fatalf("offload exit code %d", code)
	}
}

// exitcode N checks the exit code of the last offload.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: exitcode N")
	}
	if got := ts.Getenv("OFFLOAD_EXIT"); got != args[0] {
		ts.Fatalf("offload exit code %s, want %s", got, args[0])
	}
}

// slotstate FILE writes the slot file of $OFFLOAD_STATE_DIR the way hooks
// do, from a script of lines (# starts a comment):
//
//	builders SPEC                      the machines (Nix's builders syntax)
//	at DURATION                        later lines happen at statusTime+DURATION
//	acquire URI DRV PHASE BYTES        a hook takes a slot (held by this test process)
//	success URI MS                     a connection took MS milliseconds
//	fail URI CODE BACKOFF              a connection failed (ErrCode name)
//	done URI ok|failed SENT RECV [N]   N builds finished
//	drain URI
//	decide ANSWER DRV BUILDER REASON…  a logged decision (- for no builder)
//	reading URI LINE|LINE…             a load reading taken now: the lines
//	                                   of the remote script's output
//	                                   (pkg/remoteload), or "garbage"
//	link URI KIBPS PERMILLE [NOFETCH]  copies measured the link (0: unknown);
//	                                   NOFETCH builds upload instead of
//	                                   fetching there
func cmdSlotState(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: slotstate FILE")
	}
	f, err := writeSlotState(ts.ReadFile(args[0]), filepath.Join(ts.Getenv("OFFLOAD_STATE_DIR"), "slots"))
	ts.Check(err)
	ts.Defer(func() { f.Close() })
}

// putSlotState writes the slot file status reads under dir, as
// writeSlotState does, and closes it when the test ends.
func putSlotState(t testing.TB, dir, script string) {
	t.Helper()
	f, err := writeSlotState(script, filepath.Join(dir, "state", "slots"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

func writeSlotState(script, path string) (*slots.File, error) {
	var f *slots.File
	at := statusTime
	sc := bufio.NewScanner(strings.NewReader(script))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		w := strings.Fields(line)
		bad := func(err error) (*slots.File, error) { return nil, fmt.Errorf("slotstate:%d: %s: %v", n, line, err) }
		if w[0] != "builders" && f == nil {
			return bad(fmt.Errorf("no builders line yet"))
		}
		var err error
		switch {
		case w[0] == "builders":
			var ms []spec.Machine
			ms, _, err = spec.ParseBuilders(strings.TrimPrefix(line, "builders "), spec.Options{})
			if err == nil {
				f, err = slots.Open(path, ms, slots.Options{Now: func() time.Time { return at }})
			}
		case w[0] == "at" && len(w) == 2:
			var d time.Duration
			d, err = time.ParseDuration(w[1])
			at = statusTime.Add(d)
		case w[0] == "acquire" && len(w) == 5:
			s, ok := f.Acquire(w[1])
			if !ok {
				return bad(fmt.Errorf("no free slot"))
			}
			s.SetDrv(w[2])
			s.SetPhase(phaseNamed(w[3]))
			b, _ := strconv.ParseInt(w[4], 10, 64)
			s.AddBytes(b)
		case w[0] == "success" && len(w) == 3:
			ms, _ := strconv.Atoi(w[2])
			f.RecordSuccess(w[1], time.Duration(ms)*time.Millisecond)
		case w[0] == "fail" && len(w) == 4:
			var d time.Duration
			d, err = time.ParseDuration(w[3])
			code := slots.ErrOther
			for c := slots.ErrNone; c <= slots.ErrProtocol; c++ {
				if c.String() == w[2] {
					code = c
				}
			}
			f.RecordFailure(w[1], code, d, d)
		case w[0] == "done" && (len(w) == 5 || len(w) == 6):
			count := 1
			if len(w) == 6 {
				count, _ = strconv.Atoi(w[5])
			}
			sent, _ := strconv.ParseInt(w[3], 10, 64)
			recv, _ := strconv.ParseInt(w[4], 10, 64)
			for range count {
				f.BuildDone(w[1], w[2] == "ok", sent, recv)
			}
		case w[0] == "reading" && len(w) >= 3:
			out := "offload-load 1\n" + strings.ReplaceAll(strings.Join(w[2:], " "), "|", "\n") + "\nend\n"
			r, perr := remoteload.Parse([]byte(out))
			if w[2] == "garbage" {
				perr = nil // what the hook stores for a failed reading
			}
			err = perr
			r.Time = at
			f.SetReading(w[1], r)
		case w[0] == "link" && (len(w) == 4 || len(w) == 5):
			rate, _ := strconv.ParseUint(w[2], 10, 32)
			ratio, _ := strconv.ParseUint(w[3], 10, 16)
			var noFetch uint64
			if len(w) == 5 {
				noFetch, _ = strconv.ParseUint(w[4], 10, 8)
			}
			f.UpdateLink(w[1], func(l slots.Link) slots.Link {
				l.Rate, l.Ratio, l.NoFetch = uint32(rate), uint16(ratio), uint8(noFetch)
				return l
			})
		case w[0] == "drain" && len(w) == 2:
			err = f.SetDrained(w[1], true)
		case w[0] == "decide" && len(w) >= 4:
			a := pick.NoAnswer
			for c := pick.NoAnswer; c <= pick.DeclinePermanently; c++ {
				if c.String() == w[1] {
					a = c
				}
			}
			builder := w[3]
			if builder == "-" {
				builder = ""
			}
			f.LogDecision(slots.Decision{Time: at, Answer: a, Drv: w[2], Builder: builder, Reason: strings.Join(w[4:], " ")})
		default:
			return bad(fmt.Errorf("unknown or malformed line"))
		}
		if err != nil {
			return bad(err)
		}
	}
	if f == nil {
		return nil, fmt.Errorf("slotstate: no builders line")
	}
	return f, nil
}

func phaseNamed(s string) slots.Phase {
	for p := slots.PhaseNone; p <= slots.PhaseDownloading; p++ {
		if p.String() == s {
			return p
		}
	}
	return slots.PhaseNone
}

// statusRun runs offload in-process in dir's environment.
func statusRun(ctx context.Context, dir string, stdout io.Writer, args ...string) (code int, stderr string) {
	env := statusEnv(dir)
	if _, err := os.Stat(env["OFFLOAD_CONF"]); err != nil {
		os.WriteFile(env["OFFLOAD_CONF"], nil, 0o644)
	}
	var errb bytes.Buffer
	code = Main(ctx, append([]string{"offload"}, args...), Env{
		Stdout: stdout,
		Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, errb.String()
}

// manyBuilders returns n builders named by name, and a slot script that
// gives builder i the state pattern[i%len(pattern)]: B busy with two
// builds, D down for an hour, R drained, I idle.
func manyBuilders(n int, name func(i int) string, pattern string) (spec string, script string) {
	var sp, sc strings.Builder
	for i := range n {
		fmt.Fprintf(&sp, "ssh://%s x86_64-linux - 4;", name(i))
	}
	fmt.Fprintf(&sc, "builders %s\n", sp.String())
	for i := range n {
		uri := "ssh://" + name(i)
		switch pattern[i%len(pattern)] {
		case 'B':
			fmt.Fprintf(&sc, "acquire %s hello-2.12.1 building 100\nacquire %s gcc-13.2.0 uploading 200\n", uri, uri)
		case 'D':
			fmt.Fprintf(&sc, "fail %s connect 1h\n", uri)
		case 'R':
			fmt.Fprintf(&sc, "drain %s\n", uri)
		}
		fmt.Fprintf(&sc, "done %s ok 1 1 %d\ndone %s failed 1 1 %d\n", uri, 100+i, uri, 10+i)
	}
	return sp.String(), sc.String()
}

// The one-liner is one line under 120 characters; for 8 builders it names
// every one of them, and for more builders, longer names or many in
// trouble it gives fewer details, never a longer line (docs/status.md).
func TestStatusOneLineWidth(t *testing.T) {
	short := func(i int) string { return "b" + strconv.Itoa(i+1) }
	host := func(i int) string { return fmt.Sprintf("builder%d.lan", i+1) }
	long := func(i int) string { return fmt.Sprintf("builder-%02d.build-farm.example.org", i+1) }
	tests := []struct {
		n       int
		name    func(int) string
		pattern string
		// want are parts the line must have: how much detail is left.
		want []string
		// unlisted is how many of the last builders status's
		// configuration leaves out: shown, "not in config".
		unlisted int
	}{
		{1, short, "B", []string{"offload 2/4 busy · b1 2/4 · 100 built 10 failed"}, 0},
		{4, short, "BDRI", []string{"offload 2/16 busy · b1 2/4 · b2 0/4 down 1h · b3 0/4 drained · b4 0/4 · 406 built 46 failed"}, 0},
		{8, short, "BBDRIIII", []string{"offload 4/32 busy · b1 2/4 · b2 2/4 · b3 down · b4 drained · b5 0/4 · b6 0/4 · b7 0/4 · b8 0/4 · 828 built 108 failed"}, 0},
		{8, host, "BBDRIIII", []string{"offload 4/32 busy · builder1 2/4 · builder2 2/4 · builder3 down · builder4 drained · +4 idle · 828 built 108 failed"}, 0},
		{8, long, "BBDRIIII", []string{"offload 4/32 busy · builder-03 down · builder-04 drained · 828 built 108 failed"}, 0},
		{8, short, "BDRI", []string{"offload 4/32 busy · b1 2/4 · b2 down · b3 drained · b5 2/4 · b6 down · b7 drained · +2 idle · 828 built 108 failed"}, 0},
		{8, long, "BDRI", []string{"offload 4/32 busy · builder-02 down · builder-03 drained · builder-06 down · builder-07 drained · 828 built 108 failed"}, 0},
		{12, short, "BIIDIR", []string{"offload 4/48 busy · b1 2/4 · b4 down · b6 drained · b7 2/4 · b10 down · b12 drained · +6 idle · 1266 built 186 failed"}, 0},
		{20, short, "BDRI", []string{"offload 10/80 busy · 5 down · 5 drained · 2190 built 390 failed"}, 0},
		{40, short, "BDRI", []string{"offload 20/160 busy · 10 down · 10 drained · 4780 built 1180 failed"}, 0},
		{200, long, "BDRI", []string{"offload 100/800 busy · 50 down · 50 drained · 39900 built 21900 failed"}, 0},
		{1, short, "B", []string{"offload 2/4 busy · b1 2/4 not in config · 100 built 10 failed"}, 1},
		// Builders the configuration does not list are shown while busy,
		// drained or tried lately (b4, idle and never reached, is not), and
		// only configured builders being down makes status exit 1.
		{4, short, "BDRI", []string{"offload 2/12 busy · b1 2/4 · b2 0/4 down 1h · b3 0/4 drained not in config · 303 built 33 failed"}, 2},
		{8, short, "BBDRIIII", []string{"offload 4/16 busy · b1 2/4 · b2 2/4 · b3 0/4 down 1h · b4 0/4 drained · 406 built 46 failed"}, 4},
		{8, host, "BBDRIIII", []string{"offload 4/16 busy · builder1 2/4 · builder2 2/4 · builder3 down · builder4 drained · 406 built 46 failed"}, 8},
		{20, short, "BDRI", []string{"offload 10/68 busy · 3 down · 5 drained · 1845 built 315 failed"}, 10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s-%s-%d", tt.n, tt.name(0), tt.pattern, tt.unlisted), func(t *testing.T) {
			dir := t.TempDir()
			sp, sc := manyBuilders(tt.n, tt.name, tt.pattern)
			if tt.unlisted > 0 {
				sp, _ = manyBuilders(tt.n-tt.unlisted, tt.name, tt.pattern)
			}
			putSlotState(t, dir, sc)
			var out bytes.Buffer
			code, stderr := statusRun(context.Background(), dir, &out, "status", "--builders", sp)
			wantCode := ExitOK
			for i := 0; i < tt.n-tt.unlisted; i++ {
				if tt.pattern[i%len(tt.pattern)] == 'D' {
					wantCode = ExitFailed // a configured builder is down
				}
			}
			if code != wantCode || stderr != "" {
				t.Errorf("exit %d, stderr %q; want %d and nothing", code, stderr, wantCode)
			}
			line, ok := strings.CutSuffix(out.String(), "\n")
			if !ok || strings.Contains(line, "\n") {
				t.Fatalf("output is not one line: %q", out.String())
			}
			if n := utf8.RuneCountInString(line); n >= 120 {
				t.Errorf("line is %d characters: %s", n, line)
			}
			for _, w := range tt.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q lacks %q", line, w)
				}
			}
			t.Logf("%d characters: %s", utf8.RuneCountInString(line), line)
		})
	}
}

func TestStatusJSONKeys(t *testing.T) {
	dir := t.TempDir()
	putSlotState(t, dir, "builders ssh://b1 x86_64-linux - 2\nacquire ssh://b1 hello building 5\n")
	var out bytes.Buffer
	if code, stderr := statusRun(context.Background(), dir, &out, "status", "--json", "--builders", "ssh://b1 x86_64-linux - 2"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var v struct {
		Builders []map[string]json.RawMessage
		Totals   map[string]json.RawMessage
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]json.RawMessage) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, " ")
	}
	if got, want := keys(v.Totals), "builds busy failures maxJobs"; got != want {
		t.Errorf("totals keys = %s, want %s", got, want)
	}
	if len(v.Builders) != 1 {
		t.Fatalf("%d builders, want 1", len(v.Builders))
	}
	if got, want := keys(v.Builders[0]), "builds busy bytesReceived bytesSent compressedRatio drained failures fetchPausedFor healthy inConfig lastConnectMs lastError linkBytesPerSecond maxJobs name reading readingAgeSeconds running unhealthyForSeconds uri"; got != want {
		t.Errorf("builder keys = %s, want %s", got, want)
	}
	var running []map[string]json.RawMessage
	json.Unmarshal(v.Builders[0]["running"], &running)
	if len(running) != 1 {
		t.Fatalf("running = %s, want one entry", v.Builders[0]["running"])
	}
	if got, want := keys(running[0]), "bytes drv phase sinceUnix"; got != want {
		t.Errorf("running keys = %s, want %s", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// --watch prints again on every tick, sees changes to the state, redraws
// in place only on a terminal, and stops when its context is cancelled.
func TestStatusWatch(t *testing.T) {
	defer func(d time.Duration, term func(io.Writer) bool) {
		testOnlyWatchInterval, isTerminal = d, term
	}(testOnlyWatchInterval, isTerminal)
	testOnlyWatchInterval = 5 * time.Millisecond
	const builders = "ssh://b1 x86_64-linux - 2"
	for _, term := range []bool{false, true} {
		t.Run(fmt.Sprintf("terminal=%v", term), func(t *testing.T) {
			isTerminal = func(io.Writer) bool { return term }
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			var out syncBuffer
			done := make(chan int)
			go func() {
				code, _ := statusRun(ctx, dir, &out, "status", "--watch", "--builders", builders)
				done <- code
			}()
			waitFor := func(s string) {
				t.Helper()
				for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), s); {
					if time.Now().After(deadline) {
						t.Fatalf("watch never printed %q; printed:\n%s", s, out.String())
					}
					time.Sleep(time.Millisecond)
				}
			}
			waitFor("no builds offloaded yet")
			putSlotState(t, dir, "builders "+builders+"\nacquire ssh://b1 hello building 5\n")
			waitFor("offload 1/2 busy · b1 1/2 · 0 built 0 failed\n")
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("watch exit %d after cancel, want 0", code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("watch did not stop when its context was cancelled")
			}
			got := out.String()
			if clears := strings.Count(got, "\x1b[H\x1b[2J"); term != (clears > 1) || (!term && clears != 0) {
				t.Errorf("terminal %v: %d screen redraws in\n%q", term, clears, got)
			}
			if n := strings.Count(got, "\n"); n < 2 {
				t.Errorf("%d lines printed, want one per tick:\n%s", n, got)
			}
		})
	}
}

// A slot whose hook was killed is not counted until a hook reclaims it.
func TestStatusDeadOwner(t *testing.T) {
	defer func(g func(int) bool) { gone = g }(gone)
	gone = func(pid int) bool { return pid == os.Getpid() }
	dir := t.TempDir()
	putSlotState(t, dir, "builders ssh://b1 x86_64-linux - 2\nacquire ssh://b1 hello building 5\n")
	var out bytes.Buffer
	statusRun(context.Background(), dir, &out, "status", "--builders", "ssh://b1 x86_64-linux - 2")
	if want := "offload 0/2 busy · b1 0/2 · 0 built 0 failed\n"; out.String() != want {
		t.Errorf("status = %q, want %q", out.String(), want)
	}
	gone = func(int) bool { return false }
	out.Reset()
	statusRun(context.Background(), dir, &out, "status", "--builders", "ssh://b1 x86_64-linux - 2")
	if want := "offload 1/2 busy · b1 1/2 · 0 built 0 failed\n"; out.String() != want {
		t.Errorf("status = %q, want %q", out.String(), want)
	}
}

// The real liveness check: this process is alive, a finished child is not.
func TestStatusGone(t *testing.T) {
	if gone(os.Getpid()) {
		t.Error("gone(self) = true")
	}
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	p.Wait()
	if !gone(p.Pid) {
		t.Errorf("gone(%d) = false for a reaped child", p.Pid)
	}
}

// benchState makes the directory the status benchmarks run in, with a slot
// file of three builders, and returns it with the builders' spec.
func benchState(b *testing.B) (dir, builders string) {
	dir = b.TempDir()
	sp, sc := manyBuilders(3, func(i int) string { return "b" + strconv.Itoa(i+1) }, "BDI")
	putSlotState(b, dir, sc)
	return dir, sp
}

// BenchmarkStatus runs the whole command in-process, as a prompt would:
// configuration, the slot file mapped read-only, the line.
func BenchmarkStatus(b *testing.B) {
	dir, sp := benchState(b)
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"status", "-v"}} {
		b.Run(strings.Join(args, " "), func(b *testing.B) {
			args := append(args, "--builders", sp)
			b.ReportAllocs()
			for b.Loop() {
				if code, stderr := statusRun(context.Background(), dir, io.Discard, args...); code > ExitFailed {
					b.Fatalf("exit %d: %s", code, stderr)
				}
			}
		})
	}
}

// BenchmarkStatusRead is the part of status that is status's own: the
// configuration, the slot file mapped read-only and the line, without
// parsing the command line.
func BenchmarkStatusRead(b *testing.B) {
	dir, sp := benchState(b)
	env := statusEnv(dir)
	os.WriteFile(env["OFFLOAD_CONF"], nil, 0o644)
	rc := &runContext{ctx: context.Background(), global: &Globals{Builders: sp},
		env: Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string { return env[k] }}}
	b.ReportAllocs()
	for b.Loop() {
		st, err := rc.readStatus(false)
		if err != nil || st.Totals.Busy != 2 {
			b.Fatalf("readStatus: %v, %+v", err, st)
		}
	}
}
