// SPDX-License-Identifier: MIT

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// testHome is a private configuration for one in-process run: Nix's
// configuration directory, offload.conf, the state directory and a fake
// /proc/loadavg, with nothing read from the machine's own files.
type testHome struct {
	dir string
	env map[string]string
}

func newTestHome(t *testing.T, nixConf string) *testHome {
	t.Helper()
	dir := t.TempDir()
	h := &testHome{dir: dir, env: map[string]string{
		"NIX_CONF_DIR":      filepath.Join(dir, "etc"),
		"HOME":              filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME":   filepath.Join(dir, "home", ".config"),
		"XDG_CONFIG_DIRS":   filepath.Join(dir, "xdg"),
		"XDG_STATE_HOME":    filepath.Join(dir, "home", ".local", "state"),
		"OFFLOAD_CONF":      filepath.Join(dir, "etc", "offload.conf"),
		"OFFLOAD_STATE_DIR": filepath.Join(dir, "state"),
	}}
	h.write(t, "etc/nix.conf", nixConf)
	h.write(t, "etc/offload.conf", "")
	h.write(t, "loadavg", "0.00 0.00 0.00 1/100 1\n")
	old := loadavgPath
	loadavgPath = filepath.Join(dir, "loadavg")
	t.Cleanup(func() { loadavgPath = old })
	return h
}

func (h *testHome) write(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs offload in-process with args and returns its exit code,
// stdout and stderr.
func (h *testHome) run(t *testing.T, extraEnv map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := Env{
		Stdin:  strings.NewReader(""),
		Stdout: &stdout,
		Stderr: &stderr,
		Getenv: func(k string) string {
			if v, ok := extraEnv[k]; ok {
				return v
			}
			return h.env[k]
		},
	}
	code := Main(context.Background(), append([]string{"offload"}, args...), env)
	return code, stdout.String(), stderr.String()
}

// slotFile opens the slot file the commands of h read.
func (h *testHome) slotFile(t *testing.T, builders string) (*slots.File, []spec.Machine) {
	t.Helper()
	ms, _, err := spec.ParseBuilders(builders, spec.Options{LocalSystem: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(h.env["OFFLOAD_STATE_DIR"], "slots"), ms, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ms
}

type pickJSON struct {
	Answer  string `json:"answer"`
	Builder string `json:"builder"`
	Reasons []struct {
		URI      string  `json:"uri"`
		Eligible bool    `json:"eligible"`
		Why      string  `json:"why"`
		Score    float64 `json:"score"`
	} `json:"reasons"`
}

const pickNixConf = "system = x86_64-linux\nextra-platforms = i686-linux\nsystem-features = benchmark big-parallel\n"

// The machines of the Nix manual's example (doc/manual, "Remote Builds"),
// with their keys left out: scratchy has kvm, itchy is twice as fast,
// poochie has kvm and takes only derivations that require benchmark.
const manualMachines = `nix@scratchy.labs.cs.uu.nl  i686-linux  -  8 1 kvm
nix@itchy.labs.cs.uu.nl     i686-linux  -  8 2
nix@poochie.labs.cs.uu.nl   i686-linux  -  1 2 kvm benchmark`

func TestPick(t *testing.T) {
	tests := []struct {
		name     string
		builders string
		args     []string
		env      map[string]string
		conf     string // offload.conf
		loadavg  string
		// state prepares the slot file, if set.
		state func(t *testing.T, f *slots.File)

		code        int
		answer      string // "" when no JSON is expected
		builder     string
		eligible    []bool
		whyContains []string // in stdout (text) or the reasons' why (JSON)
		stderr      string
	}{
		{
			name:     "manual plain goes to the fastest idle",
			builders: manualMachines,
			args:     []string{"--system", "i686-linux", "--json"},
			answer:   "accept", builder: "ssh://nix@itchy.labs.cs.uu.nl",
			eligible:    []bool{true, true, false},
			whyContains: []string{"poochie.labs.cs.uu.nl: mandatory feature benchmark not requested"},
		},
		{
			name:     "manual kvm",
			builders: manualMachines,
			args:     []string{"--system", "i686-linux", "--features", "kvm", "--json"},
			answer:   "accept", builder: "ssh://nix@scratchy.labs.cs.uu.nl",
			eligible:    []bool{true, false, false},
			whyContains: []string{"itchy.labs.cs.uu.nl: lacks feature kvm"},
		},
		{
			name:     "manual benchmark needs poochie, whose one slot is busy",
			builders: manualMachines,
			args:     []string{"--system", "i686-linux", "--features", "benchmark", "--json"},
			state: func(t *testing.T, f *slots.File) {
				s, ok := f.Acquire("ssh://nix@poochie.labs.cs.uu.nl")
				if !ok {
					t.Fatal("Acquire(poochie) failed")
				}
				t.Cleanup(s.Release)
			},
			answer: "postpone", builder: "",
			eligible:    []bool{false, false, false},
			whyContains: []string{"1/1 slots busy"},
		},
		{
			name:     "mandatory feature not requested",
			builders: "ssh://b1 x86_64-linux - 2 1 kvm,benchmark benchmark",
			args:     []string{"--system", "x86_64-linux", "--json"},
			answer:   "decline", eligible: []bool{false},
			whyContains: []string{"benchmark"},
		},
		{
			name:     "features split on commas and spaces",
			builders: "ssh://b1 x86_64-linux - 2 1 kvm ; ssh://b2 x86_64-linux - 2 1 kvm,big-parallel",
			args:     []string{"--system", "x86_64-linux", "--features", "kvm,big-parallel", "--json"},
			answer:   "accept", builder: "ssh://b2", eligible: []bool{false, true},
		},
		{
			name:     "unhealthy and drained from the slot file",
			builders: "ssh://b1 x86_64-linux - 2 ; ssh://b2 x86_64-linux - 2 ; ssh://b3 x86_64-linux - 2",
			args:     []string{"--system", "x86_64-linux", "--json"},
			state: func(t *testing.T, f *slots.File) {
				f.RecordFailure("ssh://b1", slots.ErrConnect, time.Hour, time.Hour)
				if err := f.SetDrained("ssh://b2", true); err != nil {
					t.Fatal(err)
				}
			},
			answer: "accept", builder: "ssh://b3", eligible: []bool{false, false, true},
			whyContains: []string{"b1: unhealthy", "b2: drained"},
		},
		{
			name:     "OFFLOAD_ONLY",
			builders: "ssh://b1 x86_64-linux ; ssh://b2 x86_64-linux",
			args:     []string{"--system", "x86_64-linux", "--json"},
			env:      map[string]string{"OFFLOAD_ONLY": "b2"},
			answer:   "accept", builder: "ssh://b2", eligible: []bool{false, true},
		},
		{
			name:     "OFFLOAD_AVOID",
			builders: "ssh://b1 x86_64-linux ; ssh://b2 x86_64-linux",
			args:     []string{"--system", "x86_64-linux", "--json"},
			env:      map[string]string{"OFFLOAD_AVOID": "ssh://b1"},
			answer:   "accept", builder: "ssh://b2", eligible: []bool{false, true},
		},
		{
			name:     "faster local machine keeps a build it can do",
			builders: "ssh://b1 i686-linux - 4 1",
			args:     []string{"--system", "i686-linux", "--local-willing", "--json"},
			conf:     "local-speed-factor = 4\n",
			answer:   "decline", eligible: []bool{true},
		},
		{
			name:     "busy local machine sends it away",
			builders: "ssh://b1 i686-linux - 4 1",
			args:     []string{"--system", "i686-linux", "--local-willing", "--json"},
			conf:     "local-speed-factor = 4\n",
			loadavg:  "99999 0 0 1/1 1\n",
			answer:   "accept", builder: "ssh://b1", eligible: []bool{true},
		},
		{
			name:     "local cannot build aarch64-linux, so the remote keeps it",
			builders: "ssh://b1 aarch64-linux - 4 1",
			args:     []string{"--system", "aarch64-linux", "--local-willing", "--json"},
			conf:     "local-speed-factor = 4\n",
			answer:   "accept", builder: "ssh://b1", eligible: []bool{true},
		},
		{
			name:     "unwilling local machine",
			builders: "ssh://b1 i686-linux - 4 1",
			args:     []string{"--system", "i686-linux", "--json"},
			conf:     "local-speed-factor = 4\n",
			answer:   "accept", builder: "ssh://b1", eligible: []bool{true},
		},
		{
			name:     "no builders",
			builders: "",
			args:     []string{"--system", "x86_64-linux", "--json"},
			answer:   "decline-permanently", eligible: []bool{},
		},
		{
			name:        "text",
			builders:    "ssh://b1 x86_64-linux - 2 2 ; ssh://b2 aarch64-linux",
			args:        []string{"--system", "x86_64-linux"},
			whyContains: []string{"accept ssh://b1\n", "* b1: chosen", "  b2: lacks system x86_64-linux"},
		},
		{
			name:     "a broken line is skipped with a warning, as the hook does",
			builders: "ssh://b1 x86_64-linux - x ; ssh://b2 x86_64-linux",
			args:     []string{"--system", "x86_64-linux", "--json"},
			answer:   "accept", builder: "ssh://b2", eligible: []bool{true},
			stderr: "warning",
		},
		{
			name:   "missing system",
			args:   []string{},
			code:   ExitUsage,
			stderr: "--system",
		},
		{
			name:   "two systems",
			args:   []string{"--system", "x86_64-linux,i686-linux"},
			code:   ExitUsage,
			stderr: "one system",
		},
		{
			name:   "bad emulation setting",
			args:   []string{"--system", "x86_64-linux"},
			env:    map[string]string{"OFFLOAD_EMULATION": "sometimes"},
			code:   ExitUsage,
			stderr: "emulation",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHome(t, pickNixConf)
			if tt.conf != "" {
				h.write(t, "etc/offload.conf", tt.conf)
			}
			if tt.loadavg != "" {
				h.write(t, "loadavg", tt.loadavg)
			}
			if tt.state != nil {
				f, _ := h.slotFile(t, tt.builders)
				tt.state(t, f)
			}
			args := append([]string{"pick", "--builders", tt.builders}, tt.args...)
			code, stdout, stderr := h.run(t, tt.env, args...)
			if code != tt.code {
				t.Fatalf("offload %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tt.code, stdout, stderr)
			}
			if tt.stderr != "" && !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.stderr)
			}
			if tt.stderr == "" && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
			if code != ExitOK {
				return
			}
			if tt.answer == "" {
				for _, w := range tt.whyContains {
					if !strings.Contains(stdout, w) {
						t.Errorf("stdout does not contain %q:\n%s", w, stdout)
					}
				}
				return
			}
			var got pickJSON
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
			}
			if got.Answer != tt.answer || got.Builder != tt.builder {
				t.Errorf("answer, builder = %q, %q; want %q, %q\n%s", got.Answer, got.Builder, tt.answer, tt.builder, stdout)
			}
			if len(got.Reasons) != len(tt.eligible) {
				t.Fatalf("%d reasons, want %d\n%s", len(got.Reasons), len(tt.eligible), stdout)
			}
			var whys strings.Builder
			for i, r := range got.Reasons {
				if r.Eligible != tt.eligible[i] {
					t.Errorf("reasons[%d] (%s) eligible = %v, want %v: %s", i, r.URI, r.Eligible, tt.eligible[i], r.Why)
				}
				if r.URI == "" || r.Why == "" {
					t.Errorf("reasons[%d] = %+v: want uri and why", i, r)
				}
				whys.WriteString(r.Why + "\n")
			}
			for _, w := range tt.whyContains {
				if !strings.Contains(whys.String(), w) {
					t.Errorf("reasons do not contain %q:\n%s", w, whys.String())
				}
			}
		})
	}
}

// The JSON keys are what scripts read: answer, builder and reasons with
// uri, eligible, why and score.
func TestPickJSONKeys(t *testing.T) {
	h := newTestHome(t, pickNixConf)
	code, stdout, stderr := h.run(t, nil, "pick", "--builders", "ssh://b1 x86_64-linux", "--system", "x86_64-linux", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"answer", "builder", "reasons"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, stdout)
		}
	}
	rs, _ := m["reasons"].([]any)
	if len(rs) != 1 {
		t.Fatalf("reasons = %v", m["reasons"])
	}
	r, _ := rs[0].(map[string]any)
	for _, k := range []string{"uri", "eligible", "why", "score"} {
		if _, ok := r[k]; !ok {
			t.Errorf("reason has no %q: %s", k, stdout)
		}
	}
}

// The local machine comes from Nix's configuration: an extra-platforms
// entry makes a system buildable locally, and extra-system-features adds to
// system-features.
func TestLocalMachine(t *testing.T) {
	h := newTestHome(t, "system = aarch64-linux\nextra-platforms = armv7l-linux\nsystem-features = kvm\nextra-system-features = big-parallel\n")
	h.write(t, "loadavg", "3.5 1 1 1/1 1\n")
	rc := &runContext{ctx: context.Background(), env: Env{Getenv: func(k string) string { return h.env[k] }}, global: &Globals{}}
	l, err := rc.localMachine(2)
	if err != nil {
		t.Fatal(err)
	}
	if l.System != "aarch64-linux" || strings.Join(l.ExtraPlatforms, " ") != "armv7l-linux" ||
		strings.Join(l.Features, " ") != "kvm big-parallel" || l.SpeedFactor != 2 || l.LoadPerCPU <= 0 {
		t.Errorf("localMachine = %+v", l)
	}

	// With nothing set, Nix's defaults.
	h = newTestHome(t, "extra-system-features = foo\n")
	rc.env.Getenv = func(k string) string { return h.env[k] }
	l, err = rc.localMachine(1)
	if err != nil {
		t.Fatal(err)
	}
	if l.System != spec.LocalSystem() || !strings.Contains(strings.Join(l.Features, " "), "nixos-test benchmark big-parallel") || l.Features[len(l.Features)-1] != "foo" {
		t.Errorf("localMachine with defaults = %+v", l)
	}
}
