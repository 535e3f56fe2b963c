// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/ssh"
)

// Rules: check runs only fixed remote commands (the serve command Nix
// itself runs, internal/builder's probeCommands, and remoteload's fixed
// script): nothing from the configuration is put into a remote shell line
// by this file. Every step (connecting, the serve handshake and round
// trip, asking Nix) has a deadline of the connect timeout, so a dead
// builder costs at most that once, and a builder that stalls after
// connecting at most three times.

type checkCmd struct {
	Only    []string `arg:"" optional:"" name:"builder" help:"Check only these builders (names or URIs); default: all."`
	JSON    bool     `help:"Print JSON: an array with one object per builder."`
	Explain string   `help:"Print how the SSH settings of HOST (a builder's name or URI, or any host) are resolved and where each comes from, without connecting." placeholder:"HOST"`
	Jobs    int      `default:"8" help:"Check at most this many builders at once."`
}

func (checkCmd) Help() string {
	return `Connects to every builder, in parallel, as the hook would: SSH with host
key verification, then Nix's serve protocol (nix-store --serve --write),
or for ssh-ng:// builders the daemon protocol (nix-daemon --stdio), whose
handshake also says whether the builder trusts the SSH user (Nix 2.15 and
later; "unknown" before).
For each it reports the remote Nix version, the protocol version, the time
to connect (SSH, then the serve handshake) and one request's round trip;
and it asks the builder which systems and features it has (nix config
show, or nix show-config where that fails, as on Nix before 2.20) and
compares them with the machines file: a system or feature the machines
file claims but the builder lacks would make its builds fail there. Extra
ones are fine; a builder that will not say is fine with "unknown".

It also reads the builder's real state, as the hooks do when load-aware
is on: CPUs, load, pressure, memory, free store space and the Nix builds
running there from every client. "unknown" (with why) is no failure: the
hooks then choose as if there were no reading.

Each step has the connect timeout (connect-timeout in offload.conf, or
ConnectTimeout in ssh_config) to finish. --explain HOST only prints the SSH
settings; run offload check HOST to connect.

The result is recorded in the shared builder state when it is writable,
so a builder found unreachable is skipped by the hooks for a while, and
one found working is tried again at once; the reading of its real state
is stored there too, for the hooks, offload pick and offload status.

Exit code 0 when every builder checked is fine, 1 otherwise, 2 on bad
input or configuration.

Tested with Nix 2.8 and 2.34, as client and builder, direct and through
nix-daemon; Lix 2.94 and later cannot use offload (offload setup says so).

Example:
  offload check
  offload check b1 --json
  offload check --explain b1`
}

// checkResult is what check found about one builder; its JSON form is the
// --json output.
type checkResult struct {
	URI  string `json:"uri"`
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Reason is why the builder is not fine, or a note about a fine one.
	Reason string `json:"reason"`
	// Error classifies a failure to connect: refused, timeout, dns, auth,
	// host-key, protocol, other ("" when connected).
	Error string `json:"error,omitempty"`
	// Fingerprint is the host key offered, when it was refused.
	Fingerprint string `json:"host_key_fingerprint,omitempty"`
	NixVersion  string `json:"nix_version,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	// Trusted is, for ssh-ng:// builders, whether their nix-daemon
	// trusts the SSH user: "yes", "no", or "unknown" (daemons before
	// protocol 1.35, Nix 2.15, do not say).
	Trusted string `json:"trusted,omitempty"`
	// ConnectMS is the SSH connection (TCP, key exchange,
	// authentication); HandshakeMS the serve session and handshake after
	// it; RTTMS one QueryValidPaths round trip.
	ConnectMS   float64 `json:"connect_ms"`
	HandshakeMS float64 `json:"handshake_ms"`
	RTTMS       float64 `json:"rtt_ms"`
	// Capabilities is "reported" when the builder told its settings, else
	// "unknown" (see Reason).
	Capabilities   string   `json:"capabilities"`
	System         string   `json:"system,omitempty"`
	ExtraPlatforms []string `json:"extra_platforms"`
	Features       []string `json:"system_features"`
	// Problems are the differences between the machines file and the
	// builder that make it not fine.
	Problems []string `json:"problems"`
	// Reading is the builder's real state (pkg/remoteload), read once
	// connected (nil otherwise); ReadingError is why it is unknown.
	Reading      *pick.Reading `json:"reading"`
	ReadingError string        `json:"reading_error,omitempty"`
	// Exec says how the builder runs each system the machines file
	// lists for it: "native", "emulated", "emulated (qemu-aarch64)" or
	// "unknown", from its platform (kernel architecture, system and
	// extra-platforms, binfmt_misc interpreters).
	Exec map[string]string `json:"exec,omitempty"`

	platform *remoteload.Platform // for recordChecks
	machine  spec.Machine

	code slots.ErrCode // for RecordFailure
}

func (c checkCmd) Run(rc *runContext) error {
	settings, err := rc.settings()
	if err != nil {
		return err
	}
	if c.Explain != "" {
		return rc.explain(c.Explain, settings.ConnectTimeout())
	}
	ms, warnings, _, err := rc.builders(true)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		rc.warnf("%s: %s", w.Source, w.Msg)
	}
	all := ms
	if len(c.Only) > 0 {
		var sel []spec.Machine
		for _, name := range c.Only {
			i, err := spec.Find(ms, name)
			if err != nil {
				return usageErr(err, "`offload machines` lists the builders by name and URI")
			}
			sel = append(sel, ms[i])
		}
		ms = sel
	}
	if len(ms) == 0 {
		return failed(errors.New("check: no builders configured"), "add machines to /etc/nix/machines or Nix's builders setting, or pass --builders")
	}

	var logMu sync.Mutex
	opts := ssh.Options{
		ConnectTimeout: settings.ConnectTimeout(),
		Env:            rc.env.Getenv,
		Logf: func(format string, args ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			rc.warnf(format, args...)
		},
	}
	start := time.Now()
	results := checkAll(rc.ctx, ms, opts, c.Jobs)
	elapsed := time.Since(start)
	rc.recordChecks(all, results, settings.UnhealthyBackoff(), settings.UnhealthyBackoffMax())

	if c.JSON {
		enc := json.NewEncoder(rc.env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return failed(err, "")
		}
	} else if err := writeChecks(rc.env.Stdout, results, elapsed); err != nil {
		return failed(err, "")
	}
	for _, r := range results {
		if !r.OK {
			return silentExit(ExitFailed)
		}
	}
	return nil
}

// explain prints the resolved SSH settings of host without connecting.
func (rc *runContext) explain(host string, timeout time.Duration) error {
	var m spec.Machine
	found := false
	if ms, _, _, err := rc.builders(true); err == nil {
		if i, err := spec.Find(ms, host); err == nil {
			m, found = ms[i], true
		}
	}
	if !found {
		if strings.ContainsAny(host, " \t\n;") {
			return usageErr(fmt.Errorf("check: --explain %q: want one host, builder name or URI", host), "")
		}
		ms, _, err := spec.ParseBuilders(host, spec.Options{})
		if err != nil || len(ms) != 1 {
			return usageErr(fmt.Errorf("check: --explain %q: not a host or builder URI: %v", host, err), "")
		}
		m = ms[0]
	}
	s, err := ssh.Resolve(m, ssh.Options{ConnectTimeout: timeout, Env: rc.env.Getenv, Logf: rc.warnf})
	if err != nil {
		return usageErr(err, "")
	}
	w := rc.env.Stdout
	if found {
		fmt.Fprintf(w, "builder %s  (%s)\n", printable(m.URI), printable(m.Source))
	} else {
		fmt.Fprintf(w, "%s is not in the machines; settings for ssh://%s\n", printable(host), printable(strings.TrimPrefix(m.URI, "ssh://")))
	}
	if err := s.Explain(w); err != nil {
		return failed(err, "")
	}
	if !s.Local {
		fmt.Fprintf(w, "%-22s %s\n", "RemoteCommand", strings.Join(ssh.RemoteCommand(m, m.Scheme == "ssh-ng"), " "))
	}
	return nil
}

// checkAll checks ms with at most jobs at once and returns the results in
// the machines' order.
func checkAll(ctx context.Context, ms []spec.Machine, opts ssh.Options, jobs int) []checkResult {
	if jobs < 1 {
		jobs = 1
	}
	results := make([]checkResult, len(ms))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = checkOne(ctx, ms[i], opts)
		}()
	}
	wg.Wait()
	return results
}

// checkOne connects to m and sees what it is.
func checkOne(ctx context.Context, m spec.Machine, opts ssh.Options) (r checkResult) {
	r = checkResult{URI: m.URI, Name: m.Name, Capabilities: "unknown", ExtraPlatforms: []string{}, Features: []string{}, Problems: []string{}}
	defer func() { r.noteTrust() }()
	if m.Scheme != "ssh" && m.Scheme != "ssh-ng" {
		r.Reason = m.Scheme + ":// builders are not supported yet: offload builds over ssh:// (nix-store --serve)"
		r.Problems = append(r.Problems, r.Reason)
		return r
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = ssh.DefaultConnectTimeout
	}

	c, err := builder.Dial(ctx, &m, builder.Options{
		ConnectTimeout: opts.ConnectTimeout,
		Getenv:         opts.Env,
		Logf:           opts.Logf,
		AllowUntrusted: true, // reported below, as a problem
	})
	if err != nil {
		var he *builder.HandshakeError
		if errors.As(err, &he) {
			err = protocolErr(m, he.Argv, err)
		}
		r.fail(err)
		return r
	}
	defer c.Close()
	r.ConnectMS, r.HandshakeMS = ms(c.ConnectTime), ms(c.HandshakeTime)
	v := c.Version()
	r.Protocol = fmt.Sprintf("%d.%d", v>>8&0xff, v&0xff)
	if m.Scheme == "ssh-ng" {
		r.Trusted = "unknown"
		if known, trusted := c.Trusted(); known && trusted {
			r.Trusted = "yes"
		} else if known {
			r.Trusted = "no"
		}
	}

	// One round trip, and then the probes, get a deadline of their own
	// each: a builder that connects but never answers is as dead as one
	// that does not connect. Aborting the connection unblocks every read.
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, c.Abort)
	defer stop()
	t2 := time.Now()
	_, err = c.Store.QueryValidPaths(nil, false, false)
	r.RTTMS = ms(time.Since(t2))
	if err != nil {
		if ctx.Err() != nil {
			err = &ssh.Error{Kind: ssh.Timeout, Host: m.Host, Err: fmt.Errorf("no answer within %v after connecting: %w", timeout, err)}
		}
		r.fail(err)
		return r
	}
	r.OK = true

	// What the builder says it builds, from more sessions on the same
	// connection, with a deadline of their own. They run after the
	// handshake, not during it: the connect time is recorded for the
	// hooks and status, and nix processes started meanwhile on a small
	// builder would inflate it (measured: about 1.5× on a loaded host).
	stop()
	cancel()
	ctx, cancel = context.WithTimeout(parent, timeout)
	defer cancel()
	stop = context.AfterFunc(ctx, c.Abort)
	defer stop()
	var rd pick.Reading
	var pl remoteload.Platform
	var rdErr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		rd, pl, rdErr = c.ReadLoad(ctx)
	}()
	version, conf, why := c.ProbeNix(ctx)
	<-read
	r.Reading = &rd
	if rdErr != nil {
		r.ReadingError = rdErr.Error()
	}
	if conf != nil {
		// What Nix itself says beats the script's reading of nix.conf.
		pl.System = conf["system"]
		pl.ExtraPlatforms = strings.Fields(conf["extra-platforms"])
	}
	if pl.Known() {
		r.platform, r.machine = &pl, m
		r.Exec = map[string]string{}
		for _, sys := range m.Systems {
			e, via := pl.Exec(sys)
			r.Exec[sys] = e.String()
			if via != "" {
				r.Exec[sys] += " (" + via + ")"
			}
		}
	}
	r.NixVersion = version
	if conf == nil {
		r.Reason = "systems and features unknown: " + why
		return r
	}
	r.Capabilities = "reported"
	r.System = conf["system"]
	r.ExtraPlatforms = nonNilFields(conf["extra-platforms"])
	r.Features = nonNilFields(conf["system-features"])
	r.Problems = compareCapabilities(m, r.System, r.ExtraPlatforms, r.Features)
	if len(r.Problems) > 0 {
		r.OK = false
		r.Reason = strings.Join(r.Problems, "; ")
	}
	return r
}

// protocolErr classifies a failed handshake as a protocol error, unless it
// already says what it is.
func protocolErr(m spec.Machine, argv []string, err error) error {
	var se *ssh.Error
	var ne *ssh.NoiseError
	if !errors.As(err, &se) && !errors.As(err, &ne) {
		err = &ssh.Error{Kind: ssh.Protocol, Host: m.Host, Err: fmt.Errorf("%s: %w", strings.Join(argv, " "), err)}
	}
	return err
}

// noteTrust makes an ssh-ng builder whose nix-daemon does not trust the
// SSH user not fine: it refuses to build input-addressed derivations for
// such a user, and unsigned uploads unless require-sigs = false there.
func (r *checkResult) noteTrust() {
	if r.Trusted != "no" {
		return
	}
	p := "nix-daemon there does not trust the SSH user: add it to trusted-users in the builder's nix.conf (it builds input-addressed derivations only for trusted users)"
	r.Problems = append(r.Problems, p)
	if r.OK {
		r.OK = false
		r.Reason = p
	} else {
		r.Reason += "; " + p
	}
}

// fail records a failure to connect or to start the protocol.
func (r *checkResult) fail(err error) {
	r.OK = false
	r.Reason = err.Error()
	r.code = builder.ErrCode(err)
	r.Error = errClass(err)
	var hk *ssh.HostKeyError
	if errors.As(err, &hk) && hk.Key != nil {
		r.Fingerprint = hk.Fingerprint()
	}
	r.Problems = append(r.Problems, r.Reason)
}

// errClass names the kind of failure for --json.
func errClass(err error) string {
	var hk *ssh.HostKeyError
	if errors.As(err, &hk) {
		return "host-key"
	}
	var se *ssh.Error
	if errors.As(err, &se) {
		switch se.Kind {
		case ssh.Refused:
			return "refused"
		case ssh.DNS:
			return "dns"
		case ssh.Timeout:
			return "timeout"
		case ssh.Auth:
			return "auth"
		case ssh.HostKey:
			return "host-key"
		case ssh.Protocol:
			return "protocol"
		}
	}
	var ne *ssh.NoiseError
	if errors.As(err, &ne) {
		return "protocol"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "other"
}

// recordChecks notes each result in the shared builder state, when that
// can be written: a connection that worked makes the builder healthy again
// at once; one that failed marks it unhealthy with the configured backoff,
// as a hook's failed connection does. A builder whose capabilities differ
// from the machines file connected fine, so it counts as a success.
func (rc *runContext) recordChecks(all []spec.Machine, results []checkResult, backoff, max time.Duration) {
	if rc.ctx.Err() != nil {
		return // interrupted: the failures say nothing about the builders
	}
	var record []checkResult
	for _, r := range results {
		if r.Error != "" || r.Protocol != "" {
			record = append(record, r)
		}
	}
	if len(record) == 0 {
		return
	}
	f, err := rc.openForChange(all, "check", "offload check")
	if err != nil {
		return // check is useful without it, e.g. for a user who cannot write it
	}
	defer f.Close()
	for _, r := range record {
		if r.Error != "" {
			f.RecordFailure(r.URI, r.code, backoff, max)
		} else {
			f.RecordSuccess(r.URI, time.Duration((r.ConnectMS+r.HandshakeMS)*float64(time.Millisecond)))
		}
		if r.Reading != nil {
			f.SetReading(r.URI, *r.Reading)
		}
		if r.platform != nil {
			f.SetExec(r.URI, time.Now(), builder.Execs(&r.machine, *r.platform))
		}
	}
}

// compareCapabilities lists what the machines file claims for m that the
// builder does not have: systems that are neither its system nor among its
// extra platforms, and features missing from its system-features. A build
// sent there for such a system or feature fails on the builder.
func compareCapabilities(m spec.Machine, system string, extra, features []string) []string {
	problems := []string{}
	var sys []string
	for _, s := range m.Systems {
		if s != system && s != "builtin" && !slices.Contains(extra, s) {
			sys = append(sys, s)
		}
	}
	if len(sys) > 0 {
		problems = append(problems, fmt.Sprintf("the machines file lists %s, which it does not build (system %s, extra-platforms %s)",
			strings.Join(sys, ", "), system, orNone(extra)))
	}
	var feat []string
	for _, f := range slices.Concat(m.SupportedFeatures, m.MandatoryFeatures) { // sorted below
		if !slices.Contains(features, f) && !slices.Contains(feat, f) {
			feat = append(feat, f)
		}
	}
	if len(feat) > 0 {
		slices.Sort(feat)
		word := "feature"
		if len(feat) > 1 {
			word = "features"
		}
		problems = append(problems, fmt.Sprintf("the machines file lists %s %s, which it lacks (system-features %s)",
			word, strings.Join(feat, ", "), orNone(features)))
	}
	return problems
}

func orNone(words []string) string {
	if len(words) == 0 {
		return "none"
	}
	return strings.Join(words, " ")
}

func nonNilFields(s string) []string {
	f := strings.Fields(s)
	if f == nil {
		f = []string{}
	}
	return f
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// writeChecks prints one row per builder.
func writeChecks(w io.Writer, results []checkResult, elapsed time.Duration) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\tBUILDER\tNIX\tPROTO\tCONNECT\tRTT\tRESULT")
	bad := 0
	for _, r := range results {
		mark := "✓"
		if !r.OK {
			mark = "✗"
			bad++
		}
		nix, proto, conn, rtt := "-", "-", "-", "-"
		if r.NixVersion != "" {
			nix = r.NixVersion
		}
		if r.Protocol != "" {
			proto = r.Protocol
			conn = fmtMS(r.ConnectMS + r.HandshakeMS)
			rtt = fmtMS(r.RTTMS)
		} else if r.Error != "" {
			conn = r.Error
		}
		res := r.Reason
		if r.OK {
			res = "ok: " + r.capabilities()
			if r.Reason != "" {
				res = "ok; " + r.Reason
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, printable(r.Name), printable(nix), printable(proto), printable(conn), rtt, printable(res))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeReadingsChecked(w, results); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d of %d fine, in %s\n", len(results)-bad, len(results), elapsed.Round(time.Millisecond))
	return err
}

// writeReadingsChecked prints the real state of each builder that
// connected, under the table's builder column.
func writeReadingsChecked(w io.Writer, results []checkResult) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	header := false
	for _, r := range results {
		if r.Reading == nil {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(tw, "   BUILDER\tREAL STATE") // under the table's BUILDER
			header = true
		}
		text := r.Reading.String()
		if r.ReadingError != "" {
			text += ": " + r.ReadingError
		}
		fmt.Fprintf(tw, "   %s\t%s\n", printable(r.Name), printable(text))
		if len(r.Exec) > 0 {
			fmt.Fprintf(tw, "   \t%s\n", printable(execLine(r.Exec)))
		}
	}
	return tw.Flush()
}

func (r *checkResult) capabilities() string {
	s := r.System
	if len(r.ExtraPlatforms) > 0 {
		s += " +" + strings.Join(r.ExtraPlatforms, ",")
	}
	if len(r.Features) > 0 {
		s += "; features " + strings.Join(r.Features, ",")
	}
	if r.Trusted != "" {
		s += "; trusted " + r.Trusted
	}
	return s
}

func fmtMS(v float64) string {
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
}

// execLine is how a builder runs its systems, in one line: "runs
// aarch64-linux emulated (qemu-aarch64), x86_64-linux native".
func execLine(exec map[string]string) string {
	systems := make([]string, 0, len(exec))
	for sys := range exec {
		systems = append(systems, sys)
	}
	slices.Sort(systems)
	for i, sys := range systems {
		systems[i] = sys + " " + exec[sys]
	}
	return "runs " + strings.Join(systems, ", ")
}
