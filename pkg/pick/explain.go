// SPDX-License-Identifier: MIT

package pick

// Rules for this file:
//   - Everything here formats on demand, after Choose; nothing here is on
//     the accept path.
//   - No fmt and no encoding/json: both pull in package os, and pick must
//     not be able to do I/O (deps_test.go). strconv and appends suffice.
//   - Lines are for people reading Nix's output: name first, then what is
//     wrong, in words ("b2: lacks feature kvm"), not a table.

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/offload-nix/offload/internal/jsonstr"
	"github.com/offload-nix/offload/pkg/spec"
)

// maxListed is how many machines a one-line summary names before "and N
// more".
const maxListed = 5

// Why returns what Choose found about this machine as one line, e.g.
// "b2: lacks feature kvm" or "b1: 2/2 slots busy".
func (r *Reason) Why() string { return string(r.appendWhy(nil, false)) }

func (r *Reason) label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.URI
}

func (r *Reason) appendWhy(b []byte, chosen bool) []byte {
	b = append(b, r.label()...)
	b = append(b, ": "...)
	switch r.Reject {
	case RejectNone:
		if chosen {
			b = append(b, "chosen, "...)
		} else {
			b = append(b, "eligible, "...)
		}
		b = r.appendRating(b)
	case RejectSystem:
		b = append(b, "lacks system "...)
		b = append(b, r.system()...)
		b = append(b, " (has "...)
		if r.m == nil || len(r.m.Systems) == 0 {
			b = append(b, "none"...)
		} else {
			b = appendList(b, r.m.Systems, ",")
		}
		b = append(b, ')')
	case RejectFeature:
		missing := r.missing()
		b = append(b, "lacks feature"...)
		if len(missing) > 1 {
			b = append(b, 's')
		}
		b = append(b, ' ')
		b = appendList(b, missing, ", ")
	case RejectMandatory:
		extra := r.unrequested()
		b = append(b, "mandatory feature"...)
		if len(extra) > 1 {
			b = append(b, 's')
		}
		b = append(b, ' ')
		b = appendList(b, extra, ", ")
		b = append(b, " not requested"...)
	case RejectNoJobs:
		b = append(b, "max-jobs is 0"...)
	case RejectOnly:
		b = append(b, "not in OFFLOAD_ONLY"...)
	case RejectAvoid:
		b = append(b, "listed in OFFLOAD_AVOID"...)
	case RejectDrained:
		b = append(b, "drained"...)
	case RejectUnreachable:
		b = append(b, "cannot connect"...)
		if e := r.load().LastError; e != "" {
			b = append(b, " ("...)
			b = append(b, e...)
			b = append(b, ')')
		}
	case RejectUnhealthy:
		b = append(b, "unhealthy for "...)
		b = appendDuration(b, r.unhealthyFor())
		b = append(b, " more"...)
		if n := r.load().Failures; n > 0 {
			b = append(b, " after "...)
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, " failed connect"...)
			if n > 1 {
				b = append(b, 's')
			}
		}
		if e := r.load().LastError; e != "" {
			b = append(b, " ("...)
			b = append(b, e...)
			b = append(b, ')')
		}
	case RejectFull:
		b = r.appendSlots(b)
	case RejectStoreFull:
		b = append(b, "store nearly full: "...)
		b = appendBytes(b, r.load().Reading.StoreFree)
		b = append(b, " free"...)
	case RejectBusyElsewhere:
		b = append(b, "busy elsewhere: "...)
		b = r.appendOver(b)
	case RejectEmulationFailed:
		b = append(b, "emulates "...)
		b = append(b, r.system()...)
		b = append(b, ", where this derivation failed lately"...)
	}
	return b
}

// appendOver appends the figures over their thresholds: "load 7.9 on 8
// CPUs, memory pressure 41 %".
func (r *Reason) appendOver(b []byte) []byte {
	rd := &r.load().Reading
	start := len(b)
	sep := func() {
		if len(b) > start {
			b = append(b, ", "...)
		}
	}
	if r.over&overBuilds != 0 {
		b = strconv.AppendInt(b, int64(r.Elsewhere), 10)
		b = append(b, " build"...)
		if r.Elsewhere != 1 {
			b = append(b, 's')
		}
		b = append(b, " from elsewhere and "...)
		b = r.appendSlots(b)
	}
	if r.over&overLoad != 0 {
		sep()
		b = append(b, "load "...)
		b = appendFloat1(b, float64(rd.Load1)/1000)
		b = append(b, " on "...)
		b = strconv.AppendInt(b, int64(rd.CPUs), 10)
		b = append(b, " CPU"...)
		if rd.CPUs != 1 {
			b = append(b, 's')
		}
	}
	if r.over&overCPU != 0 {
		sep()
		b = append(b, "CPU pressure "...)
		b = strconv.AppendInt(b, int64(rd.CPUPressure+50)/100, 10)
		b = append(b, " %"...)
	}
	if r.over&overMemory != 0 {
		sep()
		b = append(b, "memory pressure "...)
		b = strconv.AppendInt(b, int64(rd.MemoryPressure+50)/100, 10)
		b = append(b, " %"...)
	}
	return b
}

// appendRating appends "1/4 slots busy, speed 2, score 0.5", with the
// emulation state when it is not unknown.
func (r *Reason) appendRating(b []byte) []byte {
	b = r.appendSlots(b)
	b = append(b, ", speed "...)
	b = appendFloat(b, r.Speed)
	if r.Exec != Unknown {
		b = append(b, " ("...)
		b = append(b, r.Exec.String()...)
		if r.Via != "" {
			b = append(b, ' ')
			b = append(b, r.Via...)
		}
		if r.Presumed {
			b = append(b, ", presumed"...)
		}
		b = append(b, ')')
	}
	b = append(b, ", score "...)
	b = appendFloat(b, r.Score)
	if r.InputsThere > 0 {
		b = append(b, ", built "...)
		b = strconv.AppendInt(b, int64(r.InputsThere), 10)
		b = append(b, " input"...)
		if r.InputsThere > 1 {
			b = append(b, 's')
		}
		b = append(b, " lately"...)
	}
	return b
}

func (r *Reason) appendSlots(b []byte) []byte {
	b = strconv.AppendInt(b, int64(r.Busy), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(r.MaxJobs), 10)
	b = append(b, " slots busy"...)
	if r.Elsewhere > 0 && r.Reject != RejectBusyElsewhere {
		b = append(b, " (+"...)
		b = strconv.AppendInt(b, int64(r.Elsewhere), 10)
		b = append(b, " elsewhere)"...)
	}
	return b
}

// appendShort appends the few words a one-line summary gives a machine:
// "b1 lacks kvm", "b4 unhealthy for 40 s".
func (r *Reason) appendShort(b []byte) []byte {
	b = append(b, r.label()...)
	b = append(b, ' ')
	switch r.Reject {
	case RejectNone:
		b = append(b, "eligible"...)
	case RejectSystem:
		b = append(b, "lacks "...)
		b = append(b, r.system()...)
	case RejectFeature:
		b = append(b, "lacks "...)
		b = appendList(b, r.missing(), ",")
	case RejectMandatory:
		b = append(b, "requires "...)
		b = appendList(b, r.unrequested(), ",")
	case RejectNoJobs:
		b = append(b, "has max-jobs 0"...)
	case RejectOnly:
		b = append(b, "not in OFFLOAD_ONLY"...)
	case RejectAvoid:
		b = append(b, "in OFFLOAD_AVOID"...)
	case RejectDrained:
		b = append(b, "drained"...)
	case RejectUnreachable:
		b = append(b, "cannot connect"...)
	case RejectUnhealthy:
		b = append(b, "unhealthy for "...)
		b = appendDuration(b, r.unhealthyFor())
	case RejectFull:
		b = strconv.AppendInt(b, int64(r.Busy), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(r.MaxJobs), 10)
		b = append(b, " busy"...)
	case RejectStoreFull:
		b = append(b, "store nearly full ("...)
		b = appendBytes(b, r.load().Reading.StoreFree)
		b = append(b, " free)"...)
	case RejectBusyElsewhere:
		b = append(b, "busy elsewhere ("...)
		b = r.appendOver(b)
		b = append(b, ')')
	case RejectEmulationFailed:
		b = append(b, "emulates "...)
		b = append(b, r.system()...)
	}
	return b
}

// unhealthyFor returns how much longer the machine counts as unhealthy.
func (r *Reason) unhealthyFor() time.Duration {
	if r.d == nil {
		return 0
	}
	return r.load().UnhealthyUntil.Sub(r.d.now)
}

// load, system and features tolerate a Reason not made by Choose.
func (r *Reason) load() *Load {
	if r.ld == nil {
		return &zeroLoad
	}
	return r.ld
}

func (r *Reason) system() string {
	if r.d == nil {
		return ""
	}
	return r.d.system
}

func (r *Reason) features() []string {
	if r.d == nil {
		return nil
	}
	return r.d.features
}

// missing returns the required features the machine lacks.
func (r *Reason) missing() []string {
	var out []string
	for _, f := range r.features() {
		if r.m == nil || (!contains(r.m.SupportedFeatures, f) && !contains(r.m.MandatoryFeatures, f)) {
			out = append(out, f)
		}
	}
	return out
}

// unrequested returns the machine's mandatory features the request lacks.
func (r *Reason) unrequested() []string {
	var out []string
	if r.m != nil {
		for _, f := range r.m.MandatoryFeatures {
			if !contains(r.features(), f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// Why returns the decision in one line, the line to show the user, e.g.
// "no builder for aarch64-linux with features kvm: b1 lacks kvm; b2 lacks
// aarch64-linux".
func (d *Decision) Why() string { return string(d.appendWhy(nil)) }

func (d *Decision) appendWhy(b []byte) []byte {
	switch {
	case d.Answer == DeclinePermanently:
		return append(b, "no builders configured"...)
	case d.Answer == Accept && d.Index >= 0 && d.Index < len(d.Reasons):
		return d.Reasons[d.Index].appendWhy(b, true)
	case d.emulationLocal:
		b = append(b, "failed under emulation lately and no builder runs "...)
		b = append(b, d.system...)
		return append(b, " natively: building locally"...)
	case d.localFaster && d.best >= 0 && d.best < len(d.Reasons):
		r := &d.Reasons[d.best]
		b = append(b, "local machine is faster: it would give a new build speed "...)
		b = appendFloat(b, d.localSpeed)
		b = append(b, " (load "...)
		b = appendFloat(b, d.localUtil)
		b = append(b, " per CPU), the best builder "...)
		b = append(b, r.label()...)
		b = append(b, ' ')
		b = appendFloat(b, d.remoteSpeed)
		b = append(b, " ("...)
		b = r.appendRating(b)
		return append(b, ')')
	}

	// Nobody could take it now. Name the machines that fit but are full
	// or unhealthy when there are any; otherwise every machine.
	transient := false
	for i := range d.Reasons {
		if d.Reasons[i].Reject.transient() {
			transient = true
			break
		}
	}
	if transient {
		b = append(b, "all builders for "...)
		b = d.appendRequest(b)
		b = append(b, " are busy or unhealthy"...)
		if d.Answer == Decline {
			b = append(b, ", building locally"...)
		}
	} else {
		b = append(b, "no builder for "...)
		b = d.appendRequest(b)
	}
	b = append(b, ": "...)
	n := 0
	for i := range d.Reasons {
		r := &d.Reasons[i]
		if transient && !r.Reject.transient() {
			continue
		}
		if n >= maxListed {
			n++
			continue
		}
		if n > 0 {
			b = append(b, "; "...)
		}
		b = r.appendShort(b)
		n++
	}
	if n > maxListed {
		b = append(b, "; and "...)
		b = strconv.AppendInt(b, int64(n-maxListed), 10)
		b = append(b, " more"...)
	}
	return b
}

func (d *Decision) appendRequest(b []byte) []byte {
	b = append(b, d.system...)
	if len(d.features) > 0 {
		b = append(b, " with feature"...)
		if len(d.features) > 1 {
			b = append(b, 's')
		}
		b = append(b, ' ')
		b = appendList(b, d.features, ",")
	}
	return b
}

// WriteText writes the decision for people: the answer and the chosen URI,
// the one-line reason, then one line per machine, the chosen one marked
// with "*".
//
//	accept ssh://b1
//	why: b1: chosen, 0/8 slots busy, speed 2, score 0
//	* b1: chosen, 0/8 slots busy, speed 2, score 0
//	  b2: lacks feature kvm
//
// Names, systems and features come from files and derivations: each line
// is made printable with [spec.Printable].
func (d *Decision) WriteText(w io.Writer) error {
	line := append([]byte(nil), d.Answer.String()...)
	if u := d.Chosen(); u != "" {
		line = append(line, ' ')
		line = append(line, u...)
	}
	b := append([]byte(spec.Printable(string(line))), "\nwhy: "...)
	b = append(b, spec.Printable(string(d.appendWhy(nil)))...)
	b = append(b, '\n')
	for i := range d.Reasons {
		if i == d.Index {
			b = append(b, "* "...)
		} else {
			b = append(b, "  "...)
		}
		b = append(b, spec.Printable(string(d.Reasons[i].appendWhy(nil, i == d.Index)))...)
		b = append(b, '\n')
	}
	_, err := w.Write(b)
	return err
}

// WriteJSON writes the decision as one JSON object and a newline:
//
//	{"answer":"accept","builder":"ssh://b1","why":"…","reasons":[
//	  {"uri":"ssh://b1","name":"b1","eligible":true,"why":"…","score":0,
//	   "speed":2,"busy":0,"max_jobs":8,"elsewhere":0,"exec":"native",
//	   "presumed":false}]}
//
// answer is one of accept, postpone, decline, decline-permanently; builder
// is the chosen URI or ""; elsewhere is [Reason.Elsewhere].
func (d *Decision) WriteJSON(w io.Writer) error {
	b := append([]byte(nil), `{"answer":`...)
	b = jsonstr.Append(b, d.Answer.String())
	b = append(b, `,"builder":`...)
	b = jsonstr.Append(b, d.Chosen())
	b = append(b, `,"why":`...)
	b = jsonstr.Append(b, string(d.appendWhy(nil)))
	b = append(b, `,"reasons":[`...)
	for i := range d.Reasons {
		r := &d.Reasons[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"uri":`...)
		b = jsonstr.Append(b, r.URI)
		b = append(b, `,"name":`...)
		b = jsonstr.Append(b, r.Name)
		b = append(b, `,"eligible":`...)
		b = strconv.AppendBool(b, r.Eligible)
		b = append(b, `,"why":`...)
		b = jsonstr.Append(b, string(r.appendWhy(nil, i == d.Index)))
		b = append(b, `,"score":`...)
		b = appendJSONNumber(b, r.Score)
		b = append(b, `,"speed":`...)
		b = appendJSONNumber(b, r.Speed)
		b = append(b, `,"busy":`...)
		b = strconv.AppendInt(b, int64(r.Busy), 10)
		b = append(b, `,"max_jobs":`...)
		b = strconv.AppendInt(b, int64(r.MaxJobs), 10)
		b = append(b, `,"elsewhere":`...)
		b = strconv.AppendInt(b, int64(r.Elsewhere), 10)
		b = append(b, `,"exec":`...)
		b = jsonstr.Append(b, r.Exec.String())
		b = append(b, `,"presumed":`...)
		b = strconv.AppendBool(b, r.Presumed)
		b = append(b, `,"inputs_there":`...)
		b = strconv.AppendInt(b, int64(r.InputsThere), 10)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	_, err := w.Write(b)
	return err
}

func appendList(b []byte, list []string, sep string) []byte {
	for i, s := range list {
		if i > 0 {
			b = append(b, sep...)
		}
		b = append(b, s...)
	}
	return b
}

// appendFloat appends f rounded to two decimals, without trailing zeros:
// 2, 0.5, 1.33.
func appendFloat(b []byte, f float64) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', 2, 64)
	if bytes.IndexByte(b[start:], '.') >= 0 {
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
		if b[len(b)-1] == '.' {
			b = b[:len(b)-1]
		}
	}
	return b
}

// appendFloat1 appends f rounded to one decimal, without a trailing zero:
// 7.9, 8.
func appendFloat1(b []byte, f float64) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', 1, 64)
	if bytes.HasSuffix(b[start:], []byte(".0")) {
		b = b[:len(b)-2]
	}
	return b
}

// appendBytes appends a size for people: "812 MiB", "1.2 GiB".
func appendBytes(b []byte, n int64) []byte {
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(max(n, 0))
	u := 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 || f >= 100 {
		b = strconv.AppendFloat(b, f, 'f', 0, 64)
	} else {
		b = appendFloat1(b, f)
	}
	b = append(b, ' ')
	return append(b, units[u]...)
}

// appendDuration appends d rounded up, in seconds up to two minutes and in
// minutes beyond: "40 s", "5 min".
func appendDuration(b []byte, d time.Duration) []byte {
	s := int64((d + time.Second - 1) / time.Second)
	if s <= 120 {
		b = strconv.AppendInt(b, s, 10)
		return append(b, " s"...)
	}
	b = strconv.AppendInt(b, (s+59)/60, 10)
	return append(b, " min"...)
}

func appendJSONNumber(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		f = 0
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
