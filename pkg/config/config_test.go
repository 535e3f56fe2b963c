// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// noDefaultFile points DefaultFile at a path that does not exist.
func noDefaultFile(t *testing.T) {
	testOnlyDefaultFile = filepath.Join(t.TempDir(), "offload.conf")
	t.Cleanup(func() { testOnlyDefaultFile = "" })
}

func TestDefaults(t *testing.T) {
	noDefaultFile(t)
	c, err := Load(envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnectTimeout() != 10*time.Second || c.StateDir() != "/nix/var/nix/offload" || c.Emulation() != EmulationPrefer ||
		c.LocalSpeedFactor() != 1 || c.UnhealthyBackoff() != 30*time.Second || c.UnhealthyBackoffMax() != 10*time.Minute ||
		c.PostponeWait() != 2*time.Second {
		t.Errorf("defaults = %+v", c.Entries())
	}
	for _, e := range c.Entries() {
		if e.Origin != "default" {
			t.Errorf("%s origin = %q, want default", e.Name, e.Origin)
		}
	}
}

func TestRegistryDefaultsParse(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings() {
		if seen[s.Name] {
			t.Errorf("setting %s listed twice", s.Name)
		}
		seen[s.Name] = true
		if _, err := s.parse(s.Default); err != nil {
			t.Errorf("%s: default %q does not parse: %v", s.Name, s.Default, err)
		}
		if s.Doc == "" || strings.Contains(s.Doc, "\n") {
			t.Errorf("%s: doc %q, want one line", s.Name, s.Doc)
		}
	}
	if got := EnvName("connect-timeout"); got != "OFFLOAD_CONNECT_TIMEOUT" {
		t.Errorf("EnvName = %q", got)
	}
}

func TestFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "offload.conf")
	os.WriteFile(conf, []byte("# offload\nconnect-timeout = 3\nemulation = avoid\nstate-dir = /var/lib/offload\npostpone-wait = 1.5\n"), 0o644)
	env := map[string]string{"OFFLOAD_CONF": conf, "OFFLOAD_EMULATION": "neutral", "OFFLOAD_LOCAL_SPEED_FACTOR": "0.5"}
	c, err := Load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{"connect-timeout", "3s", conf + ":2"},
		{"state-dir", "/var/lib/offload", conf + ":4"},
		{"emulation", "neutral", "env OFFLOAD_EMULATION"},
		{"local-speed-factor", "0.5", "env OFFLOAD_LOCAL_SPEED_FACTOR"},
		{"unhealthy-backoff", "30s", "default"},
		{"unhealthy-backoff-max", "10m", "default"},
		{"connect-persist", "1m", "default"},
		{"postpone-wait", "1.5s", conf + ":5"},
		{"emulation-penalty", "1", "default"},
		{"emulation-retry", "true", "default"},
		{"emulation-failure-memory", "168h", "default"},
		{"system-exec", "", "default"},
		{"fetch-on-builder", "true", "default"},
		{"compress", "auto", "default"},
		{"compress-level", "auto", "default"},
		{"stall-timeout", "10m", "default"},
		{"load-aware", "true", "default"},
		{"load-refresh", "5s", "default"},
		{"load-max-age", "1m", "default"},
		{"load-max-per-cpu", "2", "default"},
		{"cpu-pressure-max", "0", "default"},
		{"memory-pressure-max", "20", "default"},
		{"store-free-min", "1G", "default"},
	}
	got := c.Entries()
	if len(got) != len(want) {
		t.Fatalf("Entries = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Entries[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if c.ConnectTimeout() != 3*time.Second || c.PostponeWait() != 1500*time.Millisecond {
		t.Errorf("ConnectTimeout, PostponeWait = %v, %v", c.ConnectTimeout(), c.PostponeWait())
	}

	var b bytes.Buffer
	WriteTable(&b, c)
	if !strings.HasPrefix(b.String(), "SETTING                   VALUE             ORIGIN\nconnect-timeout           3s                "+conf+":2\n") {
		t.Errorf("WriteTable =\n%s", b.String())
	}
}

func TestDefaultFileIsRead(t *testing.T) {
	testOnlyDefaultFile = filepath.Join(t.TempDir(), "offload.conf")
	t.Cleanup(func() { testOnlyDefaultFile = "" })
	os.WriteFile(testOnlyDefaultFile, []byte("unhealthy-backoff = 1m\n"), 0o644)
	c, err := Load(envMap(map[string]string{"OFFLOAD_UNHEALTHY_BACKOFF": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if c.UnhealthyBackoff() != time.Minute {
		t.Errorf("UnhealthyBackoff = %v, want 1m from the default file (an empty variable is unset)", c.UnhealthyBackoff())
	}
}

func TestErrors(t *testing.T) {
	noDefaultFile(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "offload.conf")
	for _, tt := range []struct {
		name, file string
		env        map[string]string
		wantErr    string
	}{
		{name: "missing_named_file", env: map[string]string{"OFFLOAD_CONF": filepath.Join(dir, "nope.conf")}, wantErr: "config: OFFLOAD_CONF names " + filepath.Join(dir, "nope.conf") + ": no such file or directory"},
		{name: "unknown_key", file: "\nconect-timeout = 3\n", wantErr: conf + `:2: unknown setting "conect-timeout"`},
		{name: "bad_duration", file: "connect-timeout = soon\n", wantErr: conf + `:1: connect-timeout "soon": not a duration (want e.g. 10s, 1m30s, or plain seconds)`},
		{name: "zero_timeout", file: "connect-timeout = 0\n", wantErr: conf + `:1: connect-timeout "0": must be more than 0`},
		{name: "negative_duration", file: "postpone-wait = -1s\n", wantErr: conf + `:1: postpone-wait "-1s": must not be negative`},
		{name: "bad_enum", file: "emulation = maybe\n", wantErr: conf + `:1: emulation "maybe": must be one of prefer, neutral, avoid`},
		{name: "relative_state_dir", file: "state-dir = var/offload\n", wantErr: conf + `:1: state-dir "var/offload": must be an absolute path`},
		{name: "bad_speed", file: "local-speed-factor = NaN\n", wantErr: conf + `:1: local-speed-factor "NaN": not a number`},
		{name: "bad_level", file: "compress-level = 22\n", wantErr: conf + `:1: compress-level "22": must be from 1 to 19, or auto`},
		{name: "level_not_number", file: "compress-level = fast\n", wantErr: conf + `:1: compress-level "fast": not a whole number, or auto`},
		{name: "syntax", file: "connect-timeout=3\n", wantErr: conf + `:1: syntax error in configuration line "connect-timeout=3" (want "key = value", with spaces around '=')`},
		{name: "bad_env", env: map[string]string{"OFFLOAD_CONNECT_TIMEOUT": "ten"}, wantErr: `env OFFLOAD_CONNECT_TIMEOUT: connect-timeout "ten": not a duration (want e.g. 10s, 1m30s, or plain seconds)`},
		{name: "backoff_max_below_backoff", env: map[string]string{"OFFLOAD_UNHEALTHY_BACKOFF_MAX": "10s"}, wantErr: "config: unhealthy-backoff-max (10s, env OFFLOAD_UNHEALTHY_BACKOFF_MAX) is less than unhealthy-backoff (30s, default)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if tt.file != "" {
				os.WriteFile(conf, []byte(tt.file), 0o644)
				env = map[string]string{"OFFLOAD_CONF": conf}
			}
			_, err := Load(envMap(env))
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Load error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDurationForms(t *testing.T) {
	p := duration(1)
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "10s": 10 * time.Second, "1m30s": 90 * time.Second, "0.25": 250 * time.Millisecond, "500ms": 500 * time.Millisecond} {
		got, err := p(in)
		if err != nil || got != want {
			t.Errorf("duration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "inf", "0x10", "1e300", "s"} {
		if got, err := p(in); err == nil {
			t.Errorf("duration(%q) = %v, want error", in, got)
		}
	}
}

func TestLoadSettings(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // Entries of the load settings, or the error
	}{
		{nil, "true 5s 1m 2 0 20 1G"},
		{map[string]string{"OFFLOAD_LOAD_AWARE": "false", "OFFLOAD_LOAD_MAX_PER_CPU": "0", "OFFLOAD_STORE_FREE_MIN": "0"}, "false 5s 1m 0 0 20 0"},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "512MiB", "OFFLOAD_MEMORY_PRESSURE_MAX": "35%", "OFFLOAD_CPU_PRESSURE_MAX": "90"}, "true 5s 1m 2 90 35 512M"},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "1.5G"}, "true 5s 1m 2 0 20 1536M"},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "1000"}, "true 5s 1m 2 0 20 1000"},
		{map[string]string{"OFFLOAD_LOAD_REFRESH": "2", "OFFLOAD_LOAD_MAX_AGE": "10s"}, "true 2s 10s 2 0 20 1G"},
		{map[string]string{"OFFLOAD_LOAD_AWARE": "yes"}, `env OFFLOAD_LOAD_AWARE: load-aware "yes": must be true or false`},
		{map[string]string{"OFFLOAD_MEMORY_PRESSURE_MAX": "101"}, `env OFFLOAD_MEMORY_PRESSURE_MAX: memory-pressure-max "101": must be at most 100 (percent)`},
		{map[string]string{"OFFLOAD_LOAD_MAX_PER_CPU": "-1"}, `env OFFLOAD_LOAD_MAX_PER_CPU: load-max-per-cpu "-1": must not be negative`},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "1X"}, `env OFFLOAD_STORE_FREE_MIN: store-free-min "1X": not a size (want bytes, or e.g. 512M, 1G)`},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "1e9"}, `env OFFLOAD_STORE_FREE_MIN: store-free-min "1e9": not a size (want bytes, or e.g. 512M, 1G)`},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "-1G"}, `env OFFLOAD_STORE_FREE_MIN: store-free-min "-1G": must not be negative`},
		{map[string]string{"OFFLOAD_STORE_FREE_MIN": "99999999T"}, `env OFFLOAD_STORE_FREE_MIN: store-free-min "99999999T": too large`},
		{map[string]string{"OFFLOAD_LOAD_MAX_AGE": "3s"}, "config: load-max-age (3s, env OFFLOAD_LOAD_MAX_AGE) is less than load-refresh (5s, default): every reading would count as unknown"},
		{map[string]string{"OFFLOAD_LOAD_REFRESH": "0"}, `env OFFLOAD_LOAD_REFRESH: load-refresh "0": must be more than 0`},
	}
	for _, tt := range tests {
		env := map[string]string{"OFFLOAD_CONF": filepath.Join(t.TempDir(), "none")}
		os.WriteFile(env["OFFLOAD_CONF"], nil, 0o644)
		for k, v := range tt.env {
			env[k] = v
		}
		c, err := Load(envMap(env))
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var vals []string
			for _, e := range c.Entries() {
				if strings.HasPrefix(e.Name, "load-") || strings.HasSuffix(e.Name, "-pressure-max") || e.Name == "store-free-min" {
					vals = append(vals, e.Value)
				}
			}
			got = strings.Join(vals, " ")
		}
		if got != tt.want {
			t.Errorf("Load(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
	c := Default()
	if !c.LoadAware() || c.LoadRefresh() != 5*time.Second || c.LoadMaxAge() != time.Minute || c.LoadMaxPerCPU() != 2 ||
		c.CPUPressureMax() != 0 || c.MemoryPressureMax() != 20 || c.StoreFreeMin() != 1<<30 {
		t.Errorf("defaults: %v %v %v %v %v %v %v", c.LoadAware(), c.LoadRefresh(), c.LoadMaxAge(), c.LoadMaxPerCPU(),
			c.CPUPressureMax(), c.MemoryPressureMax(), c.StoreFreeMin())
	}
}

func TestParseExecList(t *testing.T) {
	got, err := ParseExecList(" big-x86/aarch64-linux=emulated  ssh://pi@pi5/aarch64-linux=native\n")
	want := []ExecEntry{{"big-x86", "aarch64-linux", false}, {"ssh://pi@pi5", "aarch64-linux", true}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ParseExecList = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"b1", "b1/aarch64-linux", "b1/aarch64-linux=fast", "/aarch64-linux=native", "b1/=native"} {
		if _, err := ParseExecList(bad); err == nil {
			t.Errorf("ParseExecList(%q) took it", bad)
		}
	}
	conf := filepath.Join(t.TempDir(), "offload.conf")
	os.WriteFile(conf, nil, 0o644)
	env := map[string]string{"OFFLOAD_CONF": conf, "OFFLOAD_SYSTEM_EXEC": "b1/aarch64-linux=fast"}
	if _, err := Load(envMap(env)); err == nil || !strings.Contains(err.Error(), "OFFLOAD_SYSTEM_EXEC") {
		t.Errorf("Load with a bad system-exec: %v", err)
	}
}
