// SPDX-License-Identifier: MIT

package cli

// offload status: what every builder is doing, read from the slot file the
// hooks share (pkg/slots).
//
// It shows every builder the file knows, not only those of the
// configuration it reads: hooks started with nix-build --builders … (or
// an older machines file) put builders there that nix.conf does not name,
// and their builds and counters are as real as any. Those are marked "not
// in config".
//
// Rules: status only reads the configuration and the slot file, mapped
// read-only; it never creates the file and never connects anywhere, so it
// is fast enough for a shell prompt. Only --reset-counters writes, and it
// writes the file the hooks use or fails: it never falls back to a file of
// its own.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
)

type statusCmd struct {
	Format        string `help:"Print this text/template instead of the line, over the data --json shows (see below)." placeholder:"TEMPLATE"`
	JSON          bool   `name:"json" help:"Print the state as JSON."`
	Verbose       bool   `short:"v" help:"Print a table: counters per builder and what is building now."`
	Watch         bool   `help:"Print again every second until interrupted (in place on a terminal)."`
	Log           bool   `help:"Print the last decisions of the hooks: time, answer, derivation, builder, reason."`
	ResetCounters bool   `help:"Zero the build and byte counters of every builder (needs write access to the state: root under nix-daemon)."`
}

func (statusCmd) Help() string {
	return `Prints one line fit for a shell prompt, tmux or a status bar:

  offload 3/7 busy · b1 2/2 · b2 1/4 · b3 0/1 down 40s · 41 built 2 failed

busy/jobs per builder, "down 40s" for a builder the hooks avoid for 40 more
seconds after failed connections, "drained" for one drained with offload
drain, "not in config" for one that Nix's configuration (or --builders)
does not list but hooks used, e.g. with nix-build --builders @FILE; then
the builds done and failed on this machine. With many builders the line
gets fewer details and stays under 120 characters.

It reads only offload's state file, never the network. Exit status: 0 when
every builder is healthy, 1 when some is not, 2 when the configuration or
the state cannot be read.

--format takes a Go text/template over the data --json prints, with Go field
names: .Line (the line above), .Healthy, .NoState, .Totals.{Busy,MaxJobs,
Builds,Failures,Unhealthy,Drained}, and .Builders, each with .URI, .Name,
.MaxJobs, .Busy, .Healthy, .UnhealthyForSeconds, .LastError, .Builds,
.Failures, .BytesSent, .BytesReceived, .LastConnectMs, .Drained, .InConfig
(false: not in the configuration), .Running
(each .Drv, .Phase, .Since, .SinceUnix, .Bytes), .Reading (the builder's
last load reading, nil for none; its fields are -1 where unknown),
.ReadingAgeSeconds, .LinkBytesPerSecond and .CompressedRatio (nil for
none), .FetchPausedFor. Functions: json (a value as JSON), bytes (a count as
"1.2 MiB"), seconds (a count as "40s", "3m").

-v and --json also show each builder's real state, as the hooks last read
it over SSH when load-aware is on (and offload check reads it too): CPUs,
load, pressure, memory, free store space and the Nix builds running there
from every client, with the reading's age. "unknown" means the builder
did not tell (not Linux, a forced command, or the reading failed). They
show too the link to each builder as copies of 1 MiB or more measured it
(bytes on the wire per second) and how small the last compressed copy
came out, which compress = auto decides from, and, after a source failed
to download on a builder, for how many more builds that could fetch a
source there the hooks upload it instead (fetch-on-builder).

Examples:
  offload status
  offload status -v
  offload status --log
  offload status --json
  offload status --watch

  # tmux (~/.tmux.conf):
  set -g status-right '#(offload status --format "{{.Totals.Busy}}/{{.Totals.MaxJobs}}{{if not .Healthy}} !{{end}}")'
  set -g status-interval 2

  # waybar custom module ("return-type": "json", "interval": 2):
  "exec": "offload status --format '{\"text\": {{json (printf \"%d/%d\" .Totals.Busy .Totals.MaxJobs)}}, \"tooltip\": {{json .Line}}, \"class\": \"{{if .Healthy}}ok{{else}}down{{end}}\"}' || true"

docs/status.md has more.`
}

// Test seams.
var (
	testOnlyStatusNow     func() time.Time
	testOnlyWatchInterval time.Duration
)

// isTerminal reports whether w is a terminal, where --watch redraws in
// place. A variable so tests can pretend.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// maxLine is the longest the one-line form may be, in characters.
const maxLine = 119

// statusInfo is the data every form shows: --json prints it (the fields
// with JSON names), --format templates read it.
type statusInfo struct {
	Builders []builderStatus `json:"builders"`
	Totals   statusTotals    `json:"totals"`
	// Line is the one-line form.
	Line string `json:"-"`
	// Healthy is false when some builder is unhealthy.
	Healthy bool `json:"-"`
	// NoState is true when no hook has written the state file yet.
	NoState bool `json:"-"`
	// Time is when the state was read.
	Time time.Time `json:"-"`

	decisions []slots.Decision
}

type statusTotals struct {
	Busy     int    `json:"busy"`
	MaxJobs  int    `json:"maxJobs"`
	Builds   uint64 `json:"builds"`
	Failures uint64 `json:"failures"`
	// Unhealthy and Drained count builders.
	Unhealthy int `json:"-"`
	Drained   int `json:"-"`
}

type builderStatus struct {
	URI     string `json:"uri"`
	Name    string `json:"name"`
	MaxJobs int    `json:"maxJobs"`
	Busy    int    `json:"busy"`
	// Healthy is false while the hooks avoid the builder after failed
	// connections, for UnhealthyForSeconds more.
	Healthy             bool   `json:"healthy"`
	UnhealthyForSeconds int64  `json:"unhealthyForSeconds"`
	LastError           string `json:"lastError"`
	// Builds and Failures count finished builds that succeeded and failed.
	Builds        uint64          `json:"builds"`
	Failures      uint64          `json:"failures"`
	BytesSent     uint64          `json:"bytesSent"`
	BytesReceived uint64          `json:"bytesReceived"`
	LastConnectMs int64           `json:"lastConnectMs"`
	Drained       bool            `json:"drained"`
	InConfig      bool            `json:"inConfig"` // false: the configuration read does not list it
	Running       []runningStatus `json:"running"`
	// Reading is the builder's last load reading, shared by the hooks
	// (nil: none yet); ReadingAgeSeconds is its age (nil with it).
	Reading           *pick.Reading `json:"reading"`
	ReadingAgeSeconds *int64        `json:"readingAgeSeconds"`
	// LinkBytesPerSecond is the link's rate as large copies measured it,
	// CompressedRatio the last compressed copy's size over its
	// uncompressed size (nil: none yet).
	LinkBytesPerSecond *int64   `json:"linkBytesPerSecond"`
	CompressedRatio    *float64 `json:"compressedRatio"`
	// FetchPausedFor is how many more builds upload the inputs the
	// builder could fetch, after a fetch there failed (0: none).
	FetchPausedFor int `json:"fetchPausedFor"`
}

type runningStatus struct {
	Drv       string    `json:"drv"`
	Phase     string    `json:"phase"`
	SinceUnix int64     `json:"sinceUnix"`
	Bytes     int64     `json:"bytes"`
	Since     time.Time `json:"-"`
}

func (c statusCmd) Run(rc *runContext) error {
	forms := 0
	for _, on := range []bool{c.Format != "", c.JSON, c.Verbose, c.Log, c.ResetCounters} {
		if on {
			forms++
		}
	}
	if forms > 1 {
		return usageErr(errors.New("status: --format, --json, -v, --log and --reset-counters exclude each other"), "")
	}
	if c.ResetCounters {
		if c.Watch {
			return usageErr(errors.New("status: --reset-counters with --watch"), "")
		}
		return rc.resetCounters()
	}
	var tmpl *template.Template
	if c.Format != "" {
		var err error
		tmpl, err = template.New("format").Funcs(statusFuncs).Parse(c.Format)
		if err != nil {
			return usageErr(fmt.Errorf("status: --format: %w", err), "see offload status --help for the fields")
		}
	}
	render := func(w *bytes.Buffer) (int, error) {
		st, err := rc.readStatus(c.Log)
		if err != nil {
			return ExitUsage, err
		}
		switch {
		case tmpl != nil:
			if err := tmpl.Execute(w, st.printable()); err != nil {
				return ExitUsage, usageErr(fmt.Errorf("status: --format: %w", err), "see offload status --help for the fields")
			}
			if b := w.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
				w.WriteByte('\n')
			}
		case c.JSON:
			b, err := json.Marshal(st)
			if err != nil {
				return ExitFailed, err
			}
			w.Write(printableJSON(b))
			w.WriteByte('\n')
		case c.Verbose:
			writeTable(w, st)
			rc.writeRelay(w)
		case c.Log:
			writeLog(w, st)
		default:
			w.WriteString(st.Line)
			w.WriteByte('\n')
		}
		if !st.Healthy {
			return ExitFailed, nil
		}
		return ExitOK, nil
	}
	if c.Watch {
		return rc.watch(render)
	}
	var buf bytes.Buffer
	code, err := render(&buf)
	if err != nil {
		return err
	}
	rc.env.Stdout.Write(buf.Bytes())
	if code != ExitOK {
		return silentExit(code)
	}
	return nil
}

func (rc *runContext) now() time.Time {
	if testOnlyStatusNow != nil {
		return testOnlyStatusNow()
	}
	return time.Now()
}

// readStatus reads the builders and their state. A missing state file is
// no error: no hook has run yet, and every builder is idle and healthy.
func (rc *runContext) readStatus(withLog bool) (*statusInfo, error) {
	ms, _, _, err := rc.builders(true)
	if err != nil {
		return nil, err
	}
	now := rc.now()
	f, err := rc.openSlots(ms, true)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		snap := make([]slots.Builder, len(ms))
		for i, m := range ms {
			snap[i] = slots.Builder{URI: m.URI, Name: m.Name, MaxJobs: min(max(m.MaxJobs, 0), slots.MaxSlots)}
		}
		st := newStatus(dedup(snap), nil, now)
		st.NoState = true
		st.Line = oneLine(st)
		return st, nil
	}
	defer f.Close()
	st := newStatus(f.Snapshot(nil), f.Others(nil), now)
	if withLog {
		st.decisions = f.Decisions(nil)
	}
	st.Line = oneLine(st)
	return st, nil
}

// dedup drops repeated URIs, as the slot file does.
func dedup(bs []slots.Builder) []slots.Builder {
	out := bs[:0]
	seen := map[string]bool{}
	for _, b := range bs {
		if !seen[b.URI] {
			seen[b.URI] = true
			out = append(out, b)
		}
	}
	return out
}

// gone reports whether the process holding a slot has exited: a hook that
// was SIGKILLed cannot give its slot back, and the next hook's Acquire
// reclaims it, but until then status should not count it.
var gone = func(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH
}

// othersFor is how long a builder the configuration does not list stays
// in status after it was last tried: long enough to show what a
// `nix-build --builders …` run did today, short enough that a builder
// removed from the machines file leaves the list.
const othersFor = 24 * time.Hour

// newStatus makes the status of the configured builders snap, then of
// others, the builders only the state file knows: those with a build
// running, drained, or tried within othersFor (connected to, or still in
// or lately out of a failure's backoff). Only configured builders decide
// whether all is healthy.
func newStatus(snap, others []slots.Builder, now time.Time) *statusInfo {
	st := &statusInfo{Builders: make([]builderStatus, 0, len(snap)+len(others)), Healthy: true, Time: now}
	for i, b := range append(snap, others...) {
		bs := builderStatus{
			InConfig:      i < len(snap),
			URI:           b.URI,
			Name:          b.Name,
			MaxJobs:       b.MaxJobs,
			Healthy:       !b.UnhealthyUntil.After(now),
			Builds:        b.Succeeded,
			Failures:      b.Failed,
			BytesSent:     b.BytesSent,
			BytesReceived: b.BytesRecvd,
			LastConnectMs: b.LastConnect.Round(time.Millisecond).Milliseconds(),
			Drained:       b.Drained,
			Running:       make([]runningStatus, 0, len(b.Running)),
		}
		if bs.Name == "" {
			bs.Name = b.URI
		}
		if b.LastError != slots.ErrNone {
			bs.LastError = b.LastError.String()
		}
		if !bs.Healthy {
			bs.UnhealthyForSeconds = int64((b.UnhealthyUntil.Sub(now) + time.Second - 1) / time.Second)
		}
		for _, r := range b.Running {
			if gone(r.PID) {
				continue
			}
			bs.Running = append(bs.Running, runningStatus{
				Drv:       r.Drv,
				Phase:     r.Phase.String(),
				SinceUnix: r.Since.Unix(),
				Bytes:     r.Bytes,
				Since:     r.Since,
			})
		}
		bs.Busy = len(bs.Running)
		if !bs.InConfig && bs.Busy == 0 && !b.Drained &&
			now.Sub(b.LastConnectAt) > othersFor && now.Sub(b.UnhealthyUntil) > othersFor {
			continue
		}
		if !b.Reading.Time.IsZero() {
			r := b.Reading
			age := int64(max(now.Sub(r.Time), 0) / time.Second)
			bs.Reading, bs.ReadingAgeSeconds = &r, &age
		}
		if l := b.Link; l.Rate != 0 {
			rate := int64(l.Rate) * 1024
			bs.LinkBytesPerSecond = &rate
		}
		if l := b.Link; l.Ratio != 0 {
			ratio := float64(l.Ratio) / 1000
			bs.CompressedRatio = &ratio
		}
		bs.FetchPausedFor = int(b.Link.NoFetch)
		st.Builders = append(st.Builders, bs)

		t := &st.Totals
		t.Busy += bs.Busy
		t.MaxJobs += bs.MaxJobs
		t.Builds += bs.Builds
		t.Failures += bs.Failures
		if !bs.Healthy && bs.InConfig {
			t.Unhealthy++
			st.Healthy = false
		}
		if bs.Drained {
			t.Drained++
		}
	}
	return st
}

// oneLine is the prompt form. It tries ever shorter forms until one fits
// in maxLine characters: every builder in full; every builder with short
// names and shorter states; the same without how long a builder stays
// down; only the builders that are busy, down or drained; only those down
// or drained; totals alone.
func oneLine(st *statusInfo) string {
	t := st.Totals
	head := "offload " + strconv.Itoa(t.Busy) + "/" + strconv.Itoa(t.MaxJobs) + " busy"
	if len(st.Builders) == 0 {
		return "offload: no builders"
	}
	if st.NoState {
		return head + " · no builds offloaded yet on this machine"
	}
	tail := " · " + strconv.FormatUint(t.Builds, 10) + " built " + strconv.FormatUint(t.Failures, 10) + " failed"
	var b strings.Builder
	for level := 0; level < 5; level++ {
		b.Reset()
		b.WriteString(head)
		quiet := 0
		for i := range st.Builders {
			bs := &st.Builders[i]
			if level == 3 && bs.Busy == 0 && bs.Healthy && !bs.Drained {
				quiet++
				continue
			}
			if level == 4 && bs.Healthy && !bs.Drained {
				continue
			}
			b.WriteString(" · ")
			writeItem(&b, bs, level)
		}
		if quiet > 0 {
			b.WriteString(" · +" + strconv.Itoa(quiet) + " idle")
		}
		b.WriteString(tail)
		if utf8.RuneCountInString(b.String()) <= maxLine {
			return b.String()
		}
	}
	line := head
	if t.Unhealthy > 0 {
		line += " · " + strconv.Itoa(t.Unhealthy) + " down"
	}
	if t.Drained > 0 {
		line += " · " + strconv.Itoa(t.Drained) + " drained"
	}
	return line + tail
}

// writeItem writes one builder of the line at a level of detail (see
// oneLine): "b1 2/4", "b2 0/4 down 40s", "b3 0/1 drained", "b4 1/2 not in
// config"; from level 1 on an idle builder that is down or drained shows
// no count, and from level 3 on (only builders that are busy, down or
// drained) "not in config" is left out.
func writeItem(b *strings.Builder, bs *builderStatus, level int) {
	if level == 0 {
		b.WriteString(cutRunes(printable(bs.Name), 20))
	} else {
		b.WriteString(cutRunes(printable(shortName(bs.Name)), 10))
	}
	if level == 0 || (level < 4 && bs.Busy > 0) || (bs.Healthy && !bs.Drained) {
		b.WriteString(" " + strconv.Itoa(bs.Busy) + "/" + strconv.Itoa(bs.MaxJobs))
	}
	switch {
	case !bs.Healthy && level < 2:
		b.WriteString(" down " + fmtSeconds(bs.UnhealthyForSeconds))
	case !bs.Healthy:
		b.WriteString(" down")
	case bs.Drained:
		b.WriteString(" drained")
	}
	if !bs.InConfig && level < 3 {
		b.WriteString(" not in config")
	}
}

// shortName is a host name's first label, unless that is a number (an
// IP address).
func shortName(s string) string {
	if i := strings.IndexByte(s, '.'); i > 0 {
		if _, err := strconv.Atoi(s[:i]); err != nil {
			return s[:i]
		}
	}
	return s
}

// cutRunes cuts s to n characters, marking the cut with "…".
func cutRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// fmtSeconds writes a count of seconds in one unit: 40s, 3m, 2h, 5d.
func fmtSeconds(s int64) string {
	switch {
	case s < 60:
		return strconv.FormatInt(s, 10) + "s"
	case s < 3600:
		return strconv.FormatInt(s/60, 10) + "m"
	case s < 86400:
		return strconv.FormatInt(s/3600, 10) + "h"
	}
	return strconv.FormatInt(s/86400, 10) + "d"
}

// fmtBytes writes a byte count in binary units: 512 B, 1.2 MiB.
func fmtBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, unit := float64(n)/1024, 0
	for v >= 1024 && unit < 5 {
		v /= 1024
		unit++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[unit]
}

var statusFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"bytes": func(v any) (string, error) {
		switch n := v.(type) {
		case uint64:
			return fmtBytes(n), nil
		case int64:
			return fmtBytes(uint64(max(n, 0))), nil
		case int:
			return fmtBytes(uint64(max(n, 0))), nil
		}
		return "", fmt.Errorf("bytes: %T is not a count", v)
	},
	"seconds": func(v any) (string, error) {
		switch n := v.(type) {
		case int64:
			return fmtSeconds(n), nil
		case int:
			return fmtSeconds(int64(n)), nil
		}
		return "", fmt.Errorf("seconds: %T is not a count", v)
	},
}

// writeTable is the -v form.
func writeTable(w io.Writer, st *statusInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILDER\tJOBS\tSTATE\tBUILT\tFAILED\tSENT\tRECEIVED\tCONNECT\tLAST ERROR\tURI")
	for _, b := range st.Builders {
		state := "ok"
		switch {
		case !b.Healthy:
			state = "down " + fmtSeconds(b.UnhealthyForSeconds)
		case b.Drained:
			state = "drained"
		}
		if b.Drained && !b.Healthy {
			state += ", drained"
		}
		if !b.InConfig {
			state += ", not in config"
		}
		conn, lastErr := "-", "-"
		if b.LastConnectMs > 0 {
			conn = strconv.FormatInt(b.LastConnectMs, 10) + "ms"
		}
		if b.LastError != "" {
			lastErr = b.LastError
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", printable(b.Name), b.Busy, b.MaxJobs, state,
			b.Builds, b.Failures, fmtBytes(b.BytesSent), fmtBytes(b.BytesReceived), conn, printable(lastErr), printable(b.URI))
	}
	tw.Flush()
	writeReadings(w, st)
	writeLinks(w, st)
	fmt.Fprintln(w)
	if st.NoState {
		fmt.Fprintln(w, "no builds offloaded yet on this machine")
		return
	}
	if st.Totals.Busy == 0 {
		fmt.Fprintln(w, "nothing building now")
		return
	}
	fmt.Fprintln(tw, "BUILDER\tDERIVATION\tPHASE\tSINCE\tBYTES")
	for _, b := range st.Builders {
		for _, r := range b.Running {
			drv := cutRunes(printable(r.Drv), 48)
			if drv == "" {
				drv = "-"
			}
			since := "-"
			if !r.Since.IsZero() {
				since = r.Since.In(st.Time.Location()).Format("15:04:05") +
					" (" + st.Time.Sub(r.Since).Round(time.Second).String() + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(b.Name), drv, r.Phase, since, fmtBytes(uint64(max(r.Bytes, 0))))
		}
	}
	tw.Flush()
}

// writeReadings is the -v form's table of load readings, left out when no
// builder has one (load-aware off, or no hook has connected yet).
func writeReadings(w io.Writer, st *statusInfo) {
	writeSideTable(w, st, "REAL STATE", func(b *builderStatus) (string, bool) {
		if b.Reading == nil {
			return "no reading", false
		}
		return b.Reading.Format(st.Time), true
	})
}

// writeLinks is the -v form's table of link measures and paused fetches,
// left out when no builder has either (no copy of 1 MiB or more yet, or
// compress = off, and no failed fetch lately).
func writeLinks(w io.Writer, st *statusInfo) {
	writeSideTable(w, st, "LINK\tLAST COMPRESSED\tFETCHES", func(b *builderStatus) (string, bool) {
		link, ratio, fetch := "not measured", "-", "-"
		if b.LinkBytesPerSecond != nil {
			link = fmtBytes(uint64(*b.LinkBytesPerSecond)) + "/s"
		}
		if b.CompressedRatio != nil {
			ratio = "to " + strconv.FormatFloat(100**b.CompressedRatio, 'f', 1, 64) + " %"
		}
		if b.FetchPausedFor > 0 {
			fetch = "paused for " + strconv.Itoa(b.FetchPausedFor) + " more builds (one failed)"
			if b.FetchPausedFor == 1 {
				fetch = "paused for 1 more build (one failed)"
			}
		}
		return link + "\t" + ratio + "\t" + fetch, b.LinkBytesPerSecond != nil || b.CompressedRatio != nil || b.FetchPausedFor > 0
	})
}

// writeSideTable writes a table of one row per builder, the columns head
// and then row's text, after an empty line; it is left out when row
// reports no builder as known.
func writeSideTable(w io.Writer, st *statusInfo, head string, row func(b *builderStatus) (text string, known bool)) {
	rows := make([]string, len(st.Builders))
	some := false
	for i := range st.Builders {
		var known bool
		rows[i], known = row(&st.Builders[i])
		some = some || known
	}
	if !some {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILDER\t"+head)
	for i, b := range st.Builders {
		fmt.Fprintf(tw, "%s\t%s\n", printable(b.Name), rows[i])
	}
	tw.Flush()
}

// writeLog is the --log form, oldest decision first.
func writeLog(w io.Writer, st *statusInfo) {
	if st.NoState {
		fmt.Fprintln(w, "no builds offloaded yet on this machine")
		return
	}
	if len(st.decisions) == 0 {
		fmt.Fprintln(w, "no decisions logged yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tANSWER\tDERIVATION\tBUILDER\tREASON")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return printable(s)
	}
	for _, d := range st.decisions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Time.In(st.Time.Location()).Format("2006-01-02 15:04:05"),
			d.Answer, dash(d.Drv), dash(d.Builder), dash(d.Reason))
	}
	tw.Flush()
}

// watch prints render's output every second until interrupted: on a
// terminal it redraws the screen in place (as watch(1) does), elsewhere it
// prints one output after another. An unreadable state is shown and
// retried, not fatal.
func (rc *runContext) watch(render func(*bytes.Buffer) (int, error)) error {
	ctx, stop := signal.NotifyContext(rc.ctx, os.Interrupt)
	defer stop()
	every := time.Second
	if testOnlyWatchInterval > 0 {
		every = testOnlyWatchInterval
	}
	term := isTerminal(rc.env.Stdout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		buf.Reset()
		if term {
			buf.WriteString("\x1b[H\x1b[2J")
		}
		if _, err := render(&buf); err != nil {
			var ee *exitError
			if errors.As(err, &ee) && strings.HasPrefix(ee.err.Error(), "status: --format") {
				return err
			}
			buf.WriteString("offload: " + strings.TrimPrefix(err.Error(), "offload: ") + "\n")
		}
		rc.env.Stdout.Write(buf.Bytes())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// resetCounters zeroes the counters in the file the hooks use.
func (rc *runContext) resetCounters() error {
	ms, _, _, err := rc.builders(true)
	if err != nil {
		return err
	}
	ro, err := rc.openSlots(ms, true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintln(rc.env.Stdout, "no builds offloaded yet on this machine: no counters to reset")
			return nil
		}
		return err
	}
	ro.Close()
	f, err := rc.openForChange(ms, "status", "offload status --reset-counters")
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.ResetCounters(); err != nil {
		return failed(fmt.Errorf("status: resetting counters: %w", err), "")
	}
	fmt.Fprintf(rc.env.Stdout, "reset the counters of every builder in %s\n", f.Path())
	return nil
}
