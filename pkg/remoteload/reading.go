// SPDX-License-Identifier: MIT

package remoteload

// Rules for this file:
//   - Parse never trusts the builder: every number is range-checked, the
//     input is bounded, and a field that does not parse is unknown, not an
//     error.
//   - A reading is a pick.Reading, the one type that pkg/slots shares and
//     pkg/pick weighs, so nothing converts between them.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
)

// unknown is the value of a Reading field the builder did not tell.
const unknown = pick.ReadingUnknown

// MaxOutput is the most output of [Script] that [Parse] accepts. The script
// prints well under 1 KiB.
const MaxOutput = 16 << 10

// Limits of plausible values; anything beyond is unknown.
const (
	maxCPUs   = 1 << 16
	maxLoad   = 1_000_000_000 // thousandths: a load of one million
	maxBuilds = 1 << 16
)

// ErrFormat is returned by Parse for output that is not the script's
// format at all: its header line is missing.
var ErrFormat = errors.New("remoteload: output lacks the offload-load header")

// Parse reads the output of [Script]. Fields it cannot find or parse are
// [pick.ReadingUnknown]. It returns an error only when out is longer than
// [MaxOutput] or has no header line, and then the Reading is all unknown as
// well.
func Parse(out []byte) (pick.Reading, error) {
	return parse(out, nil)
}

// ParseAll reads the output of [Script] into a Reading (as [Parse]) and a
// Platform (as [ParsePlatform]).
func ParseAll(out []byte) (pick.Reading, Platform, error) {
	var pl Platform
	r, err := parse(out, &pl)
	if err != nil {
		pl = Platform{}
	}
	return r, pl, err
}

func parse(out []byte, pl *Platform) (pick.Reading, error) {
	r := pick.ReadingUnknownAt(time.Time{})
	if len(out) > MaxOutput {
		return r, fmt.Errorf("remoteload: output longer than %d bytes", MaxOutput)
	}
	// A last line without its newline was cut short.
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[:i+1]
	} else {
		out = nil
	}
	var p parser
	var st platformState
	header := false
	for len(out) > 0 {
		i := bytes.IndexByte(out, '\n')
		line := string(bytes.TrimSuffix(out[:i], []byte{'\r'}))
		out = out[i+1:]
		key, val, _ := strings.Cut(line, " ")
		if !header {
			// Lines before the header come from the remote shell's
			// startup files.
			if key == "offload-load" {
				if v, ok := atoi(val, 1, math.MaxInt32); ok && v >= 1 {
					header = true
				}
			}
			continue
		}
		if key == "end" {
			break
		}
		p.line(key, val)
		if pl != nil {
			platformLine(pl, &st, key, val)
		}
	}
	if !header {
		return r, ErrFormat
	}
	p.fill(&r)
	if pl != nil {
		st.finish(pl)
	}
	return r, nil
}

// parser collects the values of each key; a key seen twice is spoiled.
type parser struct {
	seen               map[string]int
	cpus               string
	load               string
	psi                [3]string
	memTotal, memAvail string
	df                 string
	procfs, uid        string
	builds             string
}

func (p *parser) set(dst *string, key, val string) {
	if p.seen == nil {
		p.seen = make(map[string]int)
	}
	p.seen[key]++
	*dst = val
}

func (p *parser) line(key, val string) {
	switch key {
	case "cpus":
		p.set(&p.cpus, key, val)
	case "loadavg":
		p.set(&p.load, "load", val)
	case "vm.loadavg":
		val = strings.TrimSpace(val)
		val = strings.TrimSuffix(strings.TrimPrefix(val, "{"), "}")
		p.set(&p.load, "load", val)
	case "pressure":
		res, rest, _ := strings.Cut(val, " ")
		kind, rest, _ := strings.Cut(rest, " ")
		if kind != "some" {
			return
		}
		for i, name := range [...]string{"cpu", "memory", "io"} {
			if res == name {
				p.set(&p.psi[i], "pressure "+name, rest)
			}
		}
	case "meminfo":
		name, rest, _ := strings.Cut(val, " ")
		switch name {
		case "MemTotal:":
			p.set(&p.memTotal, name, rest)
		case "MemAvailable:":
			p.set(&p.memAvail, name, rest)
		}
	case "df":
		if dfLine(val) >= 0 {
			p.set(&p.df, key, val)
		}
	case "procfs":
		p.set(&p.procfs, key, val)
	case "uid":
		p.set(&p.uid, key, val)
	case "builds":
		p.set(&p.builds, key, val)
	}
}

func (p *parser) once(key string) bool { return p.seen[key] == 1 }

func (p *parser) fill(r *pick.Reading) {
	if p.once("cpus") {
		r.CPUs = intOr(atoi(strings.TrimSpace(p.cpus), 1, maxCPUs))
	}
	if p.once("load") {
		f := strings.Fields(p.load)
		if len(f) >= 3 {
			l1, ok1 := fixed(f[0], 3, maxLoad)
			l5, ok5 := fixed(f[1], 3, maxLoad)
			l15, ok15 := fixed(f[2], 3, maxLoad)
			if ok1 && ok5 && ok15 {
				r.Load1, r.Load5, r.Load15 = int(l1), int(l5), int(l15)
			}
		}
	}
	for i, dst := range [...]*int{&r.CPUPressure, &r.MemoryPressure, &r.IOPressure} {
		name := [...]string{"cpu", "memory", "io"}[i]
		if !p.once("pressure " + name) {
			continue
		}
		for _, kv := range strings.Fields(p.psi[i]) {
			if v, ok := strings.CutPrefix(kv, "avg10="); ok {
				if x, ok := fixed(v, 2, 10000); ok {
					*dst = int(x)
				}
				break
			}
		}
	}
	if p.once("MemTotal:") {
		r.MemTotal = kib(p.memTotal, true)
	}
	if p.once("MemAvailable:") {
		r.MemAvailable = kib(p.memAvail, true)
	}
	if r.MemTotal != unknown && r.MemAvailable > r.MemTotal {
		r.MemAvailable = unknown
	}
	if p.once("df") {
		f := strings.Fields(p.df)
		i := dfLine(p.df)
		size, free := kib(f[i-3], false), kib(f[i-1], false)
		if size > 0 && free != unknown && free <= size {
			r.StoreSize, r.StoreFree = size, free
		}
	}
	if p.once("builds") && !p.hidden() {
		r.Builds = intOr(atoi(strings.TrimSpace(p.builds), 0, maxBuilds))
	}
}

// hidden reports whether /proc hides other users' processes from the
// login (mount option hidepid), so the build count would be too low.
func (p *parser) hidden() bool {
	if !p.once("procfs") {
		return false
	}
	for _, o := range strings.Split(strings.TrimSpace(p.procfs), ",") {
		v, ok := strings.CutPrefix(o, "hidepid=")
		if !ok || v == "0" || v == "off" {
			continue
		}
		uid, ok := atoi(strings.TrimSpace(p.uid), 0, math.MaxInt32)
		return !p.once("uid") || !ok || uid != 0
	}
	return false
}

// dfLine returns the index of the capacity field ("20%") of a df -P data
// line, after the filesystem name (which may contain spaces) and three
// whole numbers, or -1 for df's header line and anything else.
func dfLine(val string) int {
	f := strings.Fields(val)
	for i := 4; i < len(f); i++ {
		if pct, ok := strings.CutSuffix(f[i], "%"); ok {
			if _, ok := atoi(pct, 0, 100); !ok && pct != "-" {
				continue
			}
			if _, ok := atoi(f[i-3], 0, math.MaxInt64); !ok {
				continue
			}
			if _, ok := atoi(f[i-2], 0, math.MaxInt64); !ok {
				continue
			}
			if _, ok := atoi(f[i-1], 0, math.MaxInt64); !ok {
				continue
			}
			return i
		}
	}
	return -1
}

// kib parses a number of KiB ("16314080 kB" with unit, or bare) into
// bytes, or unknown.
func kib(s string, unit bool) int64 {
	f := strings.Fields(s)
	if len(f) != 1+btoi(unit) || unit && f[1] != "kB" {
		return unknown
	}
	v, ok := atoi(f[0], 0, math.MaxInt64/1024)
	if !ok {
		return unknown
	}
	return v * 1024
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func intOr(v int64, ok bool) int {
	if !ok {
		return unknown
	}
	return int(v)
}

// atoi parses a plain decimal in [lo, hi]. It works in int64 whatever the
// platform's int (32 bits on armv6/armv7 boards) and refuses what would
// overflow.
func atoi(s string, lo, hi int64) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var v int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if v > (math.MaxInt64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// fixed parses a plain decimal ("7.91", "0", "65.3") into a whole number of
// 10^-scale units, rounding further digits down, in [0, hi].
func fixed(s string, scale int, hi int64) (int64, bool) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || dot && frac == "" || len(whole) > 12 {
		return 0, false
	}
	v, ok := atoi(whole, 0, math.MaxInt64)
	if !ok {
		return 0, false
	}
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
	}
	for i := 0; i < scale; i++ {
		v *= 10
		if i < len(frac) {
			v += int64(frac[i] - '0')
		}
	}
	if v > hi {
		return 0, false
	}
	return v, true
}

// Run sends [Script] to a started [Command] and parses what it prints:
// stdin, stdout and stderr are the command's (an SSH session's, or a local
// process's). It closes stdin, discards stderr, and reads at most
// [MaxOutput]+1 bytes of stdout; a failed write (a forced command that does
// not read its input) is not an error in itself. The caller bounds the
// time by cancelling the session, and waits for it afterwards.
func Run(stdin io.WriteCloser, stdout, stderr io.Reader) (pick.Reading, error) {
	r, _, err := RunAll(stdin, stdout, stderr)
	return r, err
}

// RunAll is [Run] that also returns what the builder said about its
// platform (see [ParsePlatform]).
func RunAll(stdin io.WriteCloser, stdout, stderr io.Reader) (pick.Reading, Platform, error) {
	if stderr != nil {
		go io.Copy(io.Discard, stderr)
	}
	_, werr := io.WriteString(stdin, Script)
	stdin.Close()
	out, err := io.ReadAll(io.LimitReader(stdout, MaxOutput+1))
	r, pl, perr := ParseAll(out)
	switch {
	case perr == nil:
		return r, pl, nil
	case err != nil:
		return r, pl, fmt.Errorf("remoteload: reading the output: %w", err)
	case werr != nil && len(out) == 0:
		return r, pl, fmt.Errorf("remoteload: sending the script: %w", werr)
	}
	return r, pl, perr
}
