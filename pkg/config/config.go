// SPDX-License-Identifier: MIT

// Package config holds offload's own settings: one registry of names,
// defaults, descriptions and parsers, filled from /etc/nix/offload.conf
// (or the file named by OFFLOAD_CONF), in nix.conf syntax, and from
// OFFLOAD_<KEY> environment variables. The environment wins over the
// file, which wins over the defaults. The file works under nix-daemon,
// whose environment a user cannot set; the variables suit single-user
// setups and tests.
//
// To add a setting, add one entry to the registry below; typed getters
// (Duration, String, Float) read it by name.
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/offload-nix/offload/pkg/nixconf"
)

// DefaultFile is read when OFFLOAD_CONF is unset; it may be missing.
const DefaultFile = "/etc/nix/offload.conf"

// testOnlyDefaultFile replaces DefaultFile in tests.
var testOnlyDefaultFile = ""

// Emulation preferences: whether to send a build to a builder that runs
// the system under emulation (binfmt/qemu) when one runs it natively.
const (
	EmulationPrefer  = "prefer"
	EmulationNeutral = "neutral"
	EmulationAvoid   = "avoid"
)

// Values of compress: whether copies from builders are compressed
// (internal/builder's Squashed).
const (
	CompressAuto = "auto"
	CompressOn   = "on"
	CompressOff  = "off"
)

// Setting describes one setting.
type Setting struct {
	Name    string // as in the file: "connect-timeout"
	Default string
	Doc     string // one line
	// parse turns text into the typed value (time.Duration, string,
	// float64) or says why it cannot.
	parse func(string) (any, error)
}

// Env is the environment variable that sets s: OFFLOAD_ and the name in
// upper case with '-' as '_'.
func (s Setting) Env() string { return EnvName(s.Name) }

// EnvName maps "connect-timeout" to "OFFLOAD_CONNECT_TIMEOUT".
func EnvName(name string) string {
	return "OFFLOAD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// registry lists every setting, in the order offload config shows them.
var registry = []Setting{
	{Name: "connect-timeout", Default: "10s", Doc: "how long to wait for a builder's SSH handshake before trying another", parse: duration(1)},
	{Name: "state-dir", Default: "/nix/var/nix/offload", Doc: "directory for offload's slot file and builder health", parse: absPath},
	{Name: "emulation", Default: EmulationPrefer, Doc: "builders that emulate a system: prefer, neutral or avoid", parse: oneOf(EmulationPrefer, EmulationNeutral, EmulationAvoid)},
	{Name: "local-speed-factor", Default: "1", Doc: "speed of this machine, compared with the builders' speed factors", parse: positiveFloat},
	{Name: "unhealthy-backoff", Default: "30s", Doc: "how long to skip a builder after a failed connect; doubles on each failure", parse: duration(1)},
	{Name: "unhealthy-backoff-max", Default: "10m", Doc: "the longest a failing builder is skipped", parse: duration(1)},
	{Name: "connect-persist", Default: "1m", Doc: "how long a builder connection outlives the hook that opened it, in a relay process later hooks share, which also keeps two store sessions started ahead per builder (0: off; offload relay stop ends it)", parse: duration(0)},
	{Name: "postpone-wait", Default: "2s", Doc: "how long a hook waits for a busy builder's slot to free before answering postpone (Nix then asks again only after build-poll-interval)", parse: duration(0)},
	{Name: "emulation-penalty", Default: "1", Doc: "divides a builder's speed factor for systems it runs under emulation (qemu-user)", parse: positiveFloat},
	{Name: "emulation-retry", Default: "true", Doc: "a build that fails on a builder emulating its system is built again, once, on one that runs it natively, in the same run", parse: boolean},
	{Name: "emulation-failure-memory", Default: "168h", Doc: "how long a derivation name whose build failed under emulation, and then succeeded natively, goes to native builders first (0: not remembered)", parse: duration(0)},
	{Name: "system-exec", Default: "", Doc: "how builders run systems where probing cannot tell: BUILDER/SYSTEM=native or =emulated, space-separated (BUILDER: name or URI)", parse: execList},
	{Name: "fetch-on-builder", Default: "true", Doc: "an input the builder lacks that a fixed-output derivation makes (a source tarball, a checkout) is fetched by the builder when that costs less to upload than the input itself; false for builders without internet access", parse: boolean},
	{Name: "compress", Default: CompressAuto, Doc: "compress copies to and from builders with zstd (or gzip): on, off, or auto (on unless earlier copies measured the builder's link fast or the data incompressible); ?compress=true in the machine's URI, -C in NIX_SSHOPTS and Compression yes in ssh_config mean on", parse: oneOf(CompressAuto, CompressOn, CompressOff)},
	{Name: "compress-level", Default: LevelAuto, Doc: "the level of compressed copies: 1 (fastest) to 19 (smallest), zstd's levels, gzip's up to 9; or auto: 3, and for an upload on a link measured slow a higher level when this machine compresses fast enough to keep the link busy", parse: levelOrAuto},
	{Name: "stall-timeout", Default: "10m", Doc: "how long a builder may send and take no byte while offload waits on it (a copy, a query; a build: after max-silent-time) before the connection is closed and the builder marked unhealthy", parse: duration(1)},

	// Real load of shared builders (docs/choosing-builders.md). The
	// defaults and why are in pkg/pick's DefaultThresholds; keep the two
	// in step. A threshold of 0 is off, and load-aware false turns every
	// one off.
	{Name: "load-aware", Default: "true", Doc: "read each builder's real load (CPUs, load, pressure, memory, free store space, running builds) and keep builds away from one that is busy elsewhere", parse: boolean},
	{Name: "load-refresh", Default: "5s", Doc: "a hook that needs a builder's load reads it again when the shared reading is older than this", parse: duration(1)},
	{Name: "load-max-age", Default: "60s", Doc: "a load reading older than this counts as unknown (no effect on the choice)", parse: duration(1)},
	{Name: "load-max-per-cpu", Default: "2", Doc: "a builder whose one-minute load average per CPU is above this is busy elsewhere; 0: off", parse: nonNegativeFloat},
	{Name: "cpu-pressure-max", Default: "0", Doc: "a builder whose CPU pressure (some avg10, percent) is above this is busy elsewhere; 0: off", parse: percent},
	{Name: "memory-pressure-max", Default: "20", Doc: "a builder whose memory pressure (some avg10, percent) is above this is busy elsewhere; 0: off", parse: percent},
	{Name: "store-free-min", Default: "1G", Doc: "a builder whose store filesystem has less free space than this (bytes, or with K, M, G, T) is avoided; 0: off", parse: size},
}

// check runs cross-setting checks after everything is loaded.
func (c *Config) check() error {
	if lo, hi := c.Duration("unhealthy-backoff"), c.Duration("unhealthy-backoff-max"); hi < lo {
		return fmt.Errorf("config: unhealthy-backoff-max (%s, %s) is less than unhealthy-backoff (%s, %s)",
			formatDuration(hi), c.vals["unhealthy-backoff-max"].origin, formatDuration(lo), c.vals["unhealthy-backoff"].origin)
	}
	if lo, hi := c.Duration("load-refresh"), c.Duration("load-max-age"); hi < lo {
		return fmt.Errorf("config: load-max-age (%s, %s) is less than load-refresh (%s, %s): every reading would count as unknown",
			formatDuration(hi), c.vals["load-max-age"].origin, formatDuration(lo), c.vals["load-refresh"].origin)
	}
	return nil
}

// Settings returns the registry, for documentation.
func Settings() []Setting { return append([]Setting(nil), registry...) }

func lookup(name string) (Setting, bool) {
	for _, s := range registry {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

// duration accepts Go durations ("10s", "1m30s") and plain seconds ("10",
// "1.5"), not below min seconds.
func duration(min time.Duration) func(string) (any, error) {
	return func(s string) (any, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			f, ferr := strconv.ParseFloat(s, 64)
			if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xX_") {
				return nil, errors.New("not a duration (want e.g. 10s, 1m30s, or plain seconds)")
			}
			if f > float64(math.MaxInt64/time.Second) {
				return nil, errors.New("too long")
			}
			d = time.Duration(f * float64(time.Second))
		}
		if d < 0 {
			return nil, errors.New("must not be negative")
		}
		if min > 0 && d == 0 {
			return nil, errors.New("must be more than 0")
		}
		return d, nil
	}
}

// ExecEntry is one entry of the system-exec setting.
type ExecEntry struct {
	Builder, System string
	Native          bool
}

// ParseExecList parses the value of system-exec: entries
// BUILDER/SYSTEM=native or BUILDER/SYSTEM=emulated, separated by spaces.
func ParseExecList(s string) ([]ExecEntry, error) {
	var out []ExecEntry
	for _, f := range strings.Fields(s) {
		lhs, how, ok := strings.Cut(f, "=")
		i := strings.LastIndexByte(lhs, '/')
		if !ok || i <= 0 || i == len(lhs)-1 || how != "native" && how != "emulated" {
			return nil, fmt.Errorf("%q: want BUILDER/SYSTEM=native or BUILDER/SYSTEM=emulated", f)
		}
		out = append(out, ExecEntry{Builder: lhs[:i], System: lhs[i+1:], Native: how == "native"})
	}
	return out, nil
}

func execList(s string) (any, error) {
	if _, err := ParseExecList(s); err != nil {
		return nil, err
	}
	return strings.Join(strings.Fields(s), " "), nil
}

func absPath(s string) (any, error) {
	if !filepath.IsAbs(s) {
		return nil, errors.New("must be an absolute path")
	}
	return filepath.Clean(s), nil
}

func oneOf(choices ...string) func(string) (any, error) {
	return func(s string) (any, error) {
		for _, c := range choices {
			if s == c {
				return s, nil
			}
		}
		return nil, fmt.Errorf("must be one of %s", strings.Join(choices, ", "))
	}
}

// LevelAuto is compress-level's auto, which Int reads as 0.
const LevelAuto = "auto"

// level is compress-level's value: 1 to 19, or 0 for auto.
type level int

func (l level) String() string {
	if l == 0 {
		return LevelAuto
	}
	return strconv.Itoa(int(l))
}

// levelOrAuto accepts compress-level's values: auto or 1 to 19.
func levelOrAuto(s string) (any, error) {
	if s == LevelAuto {
		return level(0), nil
	}
	n, err := wholeNumber(1, 19)(s)
	if err != nil {
		return nil, fmt.Errorf("%w, or auto", err)
	}
	return level(n.(int)), nil
}

// wholeNumber accepts whole numbers from lo to hi.
func wholeNumber(lo, hi int) func(string) (any, error) {
	return func(s string) (any, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, errors.New("not a whole number")
		}
		if n < lo || n > hi {
			return nil, fmt.Errorf("must be from %d to %d", lo, hi)
		}
		return n, nil
	}
}

func positiveFloat(s string) (any, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xX_") {
		return nil, errors.New("not a number")
	}
	if f <= 0 {
		return nil, errors.New("must be more than 0")
	}
	return f, nil
}

func nonNegativeFloat(s string) (any, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xX_") {
		return nil, errors.New("not a number")
	}
	if f < 0 {
		return nil, errors.New("must not be negative")
	}
	return f, nil
}

// percent accepts a number from 0 to 100, with or without "%".
func percent(s string) (any, error) {
	v, err := nonNegativeFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")))
	if err != nil {
		return nil, err
	}
	if v.(float64) > 100 {
		return nil, errors.New("must be at most 100 (percent)")
	}
	return v, nil
}

// boolean accepts true and false, as nix.conf does.
func boolean(s string) (any, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return nil, errors.New("must be true or false")
}

// sizeUnits are the suffixes size accepts, in bytes (binary, as df and
// Nix's min-free use them).
var sizeUnits = []struct {
	suffix string
	n      int64
}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}

// size accepts a number of bytes, or a number with K, M, G or T
// (optionally followed by "iB"): "1073741824", "512M", "1.5GiB".
func size(s string) (any, error) {
	bad := errors.New("not a size (want bytes, or e.g. 512M, 1G)")
	t, mult := s, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(strings.TrimSuffix(t, "iB"), u.suffix); ok {
			t, mult = rest, u.n
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(t, "xXeEpP_") {
		return nil, bad
	}
	if f < 0 {
		return nil, errors.New("must not be negative")
	}
	if f*float64(mult) >= math.MaxInt64 {
		return nil, errors.New("too large")
	}
	return int64(f * float64(mult)), nil
}

// formatSize writes a size with the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n != 0 && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

type value struct {
	v      any
	text   string
	origin string
}

// Config is offload's settings, each with its origin.
type Config struct {
	vals map[string]value
}

// Entry is one setting as offload config shows it.
type Entry struct {
	Name   string
	Value  string
	Origin string // "default", "/etc/nix/offload.conf:3", "env OFFLOAD_X"
}

// Default returns the configuration with every setting at its default.
func Default() *Config {
	c := &Config{vals: make(map[string]value, len(registry))}
	for _, s := range registry {
		v, err := s.parse(s.Default)
		if err != nil {
			panic("config: bad default for " + s.Name + ": " + err.Error())
		}
		c.vals[s.Name] = value{v: v, text: s.Default, origin: "default"}
	}
	return c
}

// Load reads the settings: defaults, then the file named by OFFLOAD_CONF
// (or DefaultFile, which may be missing), then OFFLOAD_<KEY> variables. A
// missing OFFLOAD_CONF file, an unknown key or a bad value is an error
// naming file:line or the variable.
func Load(env func(string) string) (*Config, error) {
	c := Default()
	path, named := env("OFFLOAD_CONF"), true
	if path == "" {
		path, named = DefaultFile, false
		if testOnlyDefaultFile != "" {
			path = testOnlyDefaultFile
		}
	}
	f, err := os.Open(path)
	switch {
	case err == nil:
		defer f.Close()
		entries, err := nixconf.Parse(f, path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if err := c.set(e.Key, e.Value, e.Origin()); err != nil {
				return nil, err
			}
		}
	case errors.Is(err, fs.ErrNotExist) && !named:
		// No file: defaults and environment only.
	case named:
		return nil, fmt.Errorf("config: OFFLOAD_CONF names %s: %w", path, unwrapPath(err))
	default:
		return nil, fmt.Errorf("config: %w", err)
	}
	for _, s := range registry {
		if v := env(s.Env()); v != "" {
			if err := c.set(s.Name, v, "env "+s.Env()); err != nil {
				return nil, err
			}
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (c *Config) set(name, text, origin string) error {
	s, ok := lookup(name)
	if !ok {
		return fmt.Errorf("%s: unknown setting %q", origin, name)
	}
	v, err := s.parse(text)
	if err != nil {
		return fmt.Errorf("%s: %s %q: %w", origin, name, text, err)
	}
	c.vals[name] = value{v: v, text: text, origin: origin}
	return nil
}

func (c *Config) get(name string) any {
	v, ok := c.vals[name]
	if !ok {
		panic("config: no setting " + name)
	}
	return v.v
}

// Duration returns a duration setting by name. It panics if name is not
// a duration setting: that is a bug, not a configuration error.
func (c *Config) Duration(name string) time.Duration { return c.get(name).(time.Duration) }

// String returns a string setting by name (panics like Duration).
func (c *Config) String(name string) string { return c.get(name).(string) }

// Float returns a number setting by name (panics like Duration).
func (c *Config) Float(name string) float64 { return c.get(name).(float64) }

// Bool returns a true/false setting by name (panics like Duration).
func (c *Config) Bool(name string) bool { return c.get(name).(bool) }

// Size returns a size setting in bytes by name (panics like Duration).
func (c *Config) Size(name string) int64 { return c.get(name).(int64) }

// Int returns a whole-number setting.
func (c *Config) Int(name string) int {
	if l, ok := c.get(name).(level); ok {
		return int(l) // compress-level: 0 for auto
	}
	return c.get(name).(int)
}

// LoadAware is load-aware.
func (c *Config) LoadAware() bool { return c.Bool("load-aware") }

// LoadRefresh is load-refresh.
func (c *Config) LoadRefresh() time.Duration { return c.Duration("load-refresh") }

// LoadMaxAge is load-max-age.
func (c *Config) LoadMaxAge() time.Duration { return c.Duration("load-max-age") }

// LoadMaxPerCPU is load-max-per-cpu (0: off).
func (c *Config) LoadMaxPerCPU() float64 { return c.Float("load-max-per-cpu") }

// CPUPressureMax is cpu-pressure-max in percent (0: off).
func (c *Config) CPUPressureMax() float64 { return c.Float("cpu-pressure-max") }

// MemoryPressureMax is memory-pressure-max in percent (0: off).
func (c *Config) MemoryPressureMax() float64 { return c.Float("memory-pressure-max") }

// StoreFreeMin is store-free-min in bytes (0: off).
func (c *Config) StoreFreeMin() int64 { return c.Size("store-free-min") }

// ConnectTimeout is connect-timeout.
func (c *Config) ConnectTimeout() time.Duration { return c.Duration("connect-timeout") }

// StateDir is state-dir.
func (c *Config) StateDir() string { return c.String("state-dir") }

// Emulation is emulation: EmulationPrefer, EmulationNeutral or
// EmulationAvoid.
func (c *Config) Emulation() string { return c.String("emulation") }

// LocalSpeedFactor is local-speed-factor.
func (c *Config) LocalSpeedFactor() float64 { return c.Float("local-speed-factor") }

// UnhealthyBackoff is unhealthy-backoff.
func (c *Config) UnhealthyBackoff() time.Duration { return c.Duration("unhealthy-backoff") }

// UnhealthyBackoffMax is unhealthy-backoff-max.
func (c *Config) UnhealthyBackoffMax() time.Duration { return c.Duration("unhealthy-backoff-max") }

// PostponeWait is postpone-wait.
func (c *Config) PostponeWait() time.Duration { return c.Duration("postpone-wait") }

// Entries returns every setting in registry order, with its value in
// normal form and its origin.
func (c *Config) Entries() []Entry {
	out := make([]Entry, 0, len(registry))
	for _, s := range registry {
		v := c.vals[s.Name]
		out = append(out, Entry{Name: s.Name, Value: format(v.v), Origin: v.origin})
	}
	return out
}

func format(v any) string {
	switch v := v.(type) {
	case time.Duration:
		return formatDuration(v)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return formatSize(v)
	}
	return fmt.Sprint(v)
}

// formatDuration writes 10m rather than 10m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// WriteTable writes every setting, its value and its origin as an
// aligned table, for offload config.
func WriteTable(w io.Writer, c *Config) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tORIGIN")
	for _, e := range c.Entries() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, e.Value, e.Origin)
	}
	return tw.Flush()
}
