// SPDX-License-Identifier: MIT

package serve

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/drv"
)

// BuildOptions are the settings sent with BuildDerivation (Nix 2.8
// src/nix-store/nix-store.cc, opServe; current
// src/libstore/serve-protocol.cc,
// ServeProto::Serialise<ServeProto::BuildOptions>). Nix applies neither
// max-silent-time nor timeout to hook builds itself, so the hook forwards
// them to the builder.
type BuildOptions struct {
	// MaxSilentTime fails the build if it prints nothing for this long; 0
	// means no limit. Sent in whole seconds, rounded up.
	MaxSilentTime time.Duration
	// Timeout fails the build if it runs longer; 0 means no limit.
	Timeout time.Duration
	// MaxLogSize fails the build once its log exceeds this many bytes; 0
	// means no limit.
	MaxLogSize uint64
	// KeepFailed keeps the build directory of a failed build on the
	// builder.
	KeepFailed bool
}

// seconds encodes a duration as the server reads it: readInt, at most
// 2³²−1.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64((d + time.Second - 1) / time.Second)
	return min(s, math.MaxUint32)
}

// Status is the outcome of a build (BuildResult::Status; the numbers are
// the same in every Nix version).
type Status uint64

// Build statuses (BuildResult::Status in Nix 2.8
// src/libstore/build-result.hh).
const (
	Built                  Status = 0
	Substituted            Status = 1
	AlreadyValid           Status = 2
	PermanentFailure       Status = 3
	InputRejected          Status = 4
	OutputRejected         Status = 5
	TransientFailure       Status = 6
	CachedFailure          Status = 7
	TimedOut               Status = 8
	MiscFailure            Status = 9
	DependencyFailed       Status = 10
	LogLimitExceeded       Status = 11
	NotDeterministic       Status = 12
	ResolvesToAlreadyValid Status = 13
	NoSubstituters         Status = 14
)

var statusNames = [...]string{
	"Built", "Substituted", "AlreadyValid", "PermanentFailure", "InputRejected",
	"OutputRejected", "TransientFailure", "CachedFailure", "TimedOut", "MiscFailure",
	"DependencyFailed", "LogLimitExceeded", "NotDeterministic", "ResolvesToAlreadyValid",
	"NoSubstituters",
}

func (s Status) String() string {
	if s < Status(len(statusNames)) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint64(s))
}

// Success reports whether the status means the outputs are there.
func (s Status) Success() bool {
	return s == Built || s == Substituted || s == AlreadyValid || s == ResolvesToAlreadyValid
}

// BuildResult is the server's answer to BuildDerivation (current Nix:
// src/libstore/serve-protocol.cc, ServeProto::Serialise<BuildResult>).
type BuildResult struct {
	Status   Status
	ErrorMsg string
	// Sent by servers at protocol 2.3 and later.
	TimesBuilt         uint64
	IsNonDeterministic bool
	StartTime          time.Time // zero if not sent
	StopTime           time.Time
	// BuiltOutputs lists the realisations the server reports, at protocol
	// 2.6 and later. For input-addressed derivations the output paths are
	// in the .drv already.
	BuiltOutputs []BuiltOutput
}

// Success reports whether r.Status means the outputs are there.
func (r *BuildResult) Success() bool { return r.Status.Success() }

// BuiltOutput is one entry of BuildResult.BuiltOutputs.
type BuiltOutput struct {
	// Name is the output name, taken from ID.
	Name string
	// ID is the DrvOutput, "sha256:<hex>!<name>". Builders on Nix 2.35 and
	// later put a dummy hash here.
	ID string
	// OutPath is the output's store path as sent: the base name, without
	// the store directory. Empty if the realisation could not be read.
	OutPath string
	// Realisation is the JSON the server sent.
	Realisation string
}

// BuildDerivation builds a derivation on the server. d is the parsed .drv
// at drvPath; inputSrcs replaces its input sources (Nix's build-remote sends
// the whole input closure when the derivation has input derivations, which
// the server never sees); nil means d.InputSrcs. The server must already have every input.
//
// The build log streams on the remote's stderr meanwhile. Closing the
// transport interrupts the build.
func (c *Client) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o BuildOptions) (BuildResult, error) {
	if err := c.begin(); err != nil {
		return BuildResult{}, err
	}
	res, err := c.buildDerivation(drvPath, d, inputSrcs, o)
	return res, c.end(err)
}

func (c *Client) buildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o BuildOptions) (BuildResult, error) {
	const op = "BuildDerivation"
	c.w.Uint64(cmdBuildDerivation)
	c.w.String(drvPath)
	d.WriteBasic(c.w, inputSrcs)
	writeBuildOptions(c.w, c.version, o)
	if err := c.w.Flush(); err != nil {
		return BuildResult{}, c.ioErr(op, drvPath, err)
	}
	res, err := readBuildResult(newDecoder(c.r, &c.sbuf), c.version)
	if err != nil {
		return BuildResult{}, c.ioErr(op, drvPath, err)
	}
	return res, nil
}

// wireWriter is what the encoders need of wire.Writer.
type wireWriter interface {
	Uint64(uint64) error
	Bool(bool) error
	String(string) error
	Strings([]string) error
}

// writeBuildOptions encodes o for a server at the given version.
func writeBuildOptions(w wireWriter, version uint64, o BuildOptions) {
	w.Uint64(seconds(o.MaxSilentTime))
	w.Uint64(seconds(o.Timeout))
	if version >= 0x202 {
		w.Uint64(o.MaxLogSize)
	}
	if version >= 0x203 {
		// nrRepeats must be 0: servers since 2.13 refuse anything else.
		w.Uint64(0)
		// enforceDeterminism: ignored since 2.13; 0 matches what current
		// clients send.
		w.Bool(false)
	}
	if version >= 0x207 {
		w.Bool(o.KeepFailed)
	}
}

// readBuildResult decodes a BuildResult sent at the negotiated version.
//
// builtOutputs: servers from Nix 2.4 to 2.10 test
// `GET_PROTOCOL_MINOR(clientVersion >= 6)` (misplaced parenthesis, so
// always true) and send them whatever the client claims; they all announce
// 2.7, so with 2.7 claimed the negotiated version says the same. Servers
// from 2.11 send them from 2.6 on, and servers since 2.35 (which announce
// 2.8) send the 2.6/2.7 form to a 2.7 client, with a dummy hash in the id
// (serve-protocol.cc Serialise<BuildResult>::write). The 2.8 form is never
// negotiated, since the client claims 2.7.
func readBuildResult(d *decoder, version uint64) (BuildResult, error) {
	var res BuildResult
	st, err := d.u64()
	if err != nil {
		return res, err
	}
	res.Status = Status(st)
	if res.ErrorMsg, err = d.str("error message", maxErrorMsg); err != nil {
		return res, noEOF(err)
	}
	if version >= 0x203 {
		var start, stop uint64
		if res.TimesBuilt, err = d.u64(); err != nil {
			return res, noEOF(err)
		}
		if res.IsNonDeterministic, err = d.bool(); err != nil {
			return res, noEOF(err)
		}
		if start, err = d.u64(); err != nil {
			return res, noEOF(err)
		}
		if stop, err = d.u64(); err != nil {
			return res, noEOF(err)
		}
		res.StartTime, res.StopTime = unixTime(start), unixTime(stop)
	}
	if version >= 0x206 {
		n, err := d.count("built outputs", maxList)
		if err != nil {
			return res, noEOF(err)
		}
		for range n {
			id, err := d.str("output id", maxShort)
			if err != nil {
				return res, noEOF(err)
			}
			rj, err := d.str("realisation", maxJSON)
			if err != nil {
				return res, noEOF(err)
			}
			bang := strings.LastIndexByte(id, '!')
			if bang < 0 {
				return res, fmt.Errorf("invalid derivation output id %q", id)
			}
			out := BuiltOutput{Name: id[bang+1:], ID: id, Realisation: rj}
			var j struct {
				OutPath string `json:"outPath"`
			}
			if json.Unmarshal([]byte(rj), &j) == nil {
				out.OutPath = j.OutPath
			}
			res.BuiltOutputs = append(res.BuiltOutputs, out)
		}
	}
	return res, nil
}

func unixTime(s uint64) time.Time {
	if s == 0 || s > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0)
}
