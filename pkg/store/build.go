// SPDX-License-Identifier: MIT

package store

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/wire"
)

// BuildOptions are the settings sent with a remote build (Nix 2.8
// src/nix-store/nix-store.cc, opServe; current
// src/libstore/serve-protocol.cc,
// ServeProto::Serialise<ServeProto::BuildOptions>; the worker protocol
// sends them with SetOptions). Nix applies neither max-silent-time nor
// timeout to hook builds itself, so the hook forwards them to the builder.
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

// Status is the outcome of a build (BuildResult::Status; the numbers are
// the same in every Nix version and in both protocols).
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

// BuildResult is a builder's answer to BuildDerivation (current Nix:
// src/libstore/serve-protocol.cc, ServeProto::Serialise<BuildResult>, and
// src/libstore/worker-protocol.cc, WorkerProto::Serialise<BuildResult>).
type BuildResult struct {
	Status   Status
	ErrorMsg string
	// Sent by serve servers at protocol 2.3 and later and by daemons at
	// 1.29 and later.
	TimesBuilt         uint64
	IsNonDeterministic bool
	StartTime          time.Time // zero if not sent
	StopTime           time.Time
	// BuiltOutputs lists the realisations the builder reports (serve 2.6,
	// worker 1.28 and later). For input-addressed derivations the output
	// paths are in the .drv already.
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
	// Realisation is the JSON the builder sent.
	Realisation string
}

// ReadBuiltOutputs reads the built outputs at the end of a BuildResult,
// which both store protocols send alike (serve 2.6 and worker 1.28 and
// later): a count of at most maxList, then each output's DrvOutput id, of
// at most maxID bytes, and its realisation as JSON, of at most maxJSON.
func ReadBuiltOutputs(d *wire.Decoder, maxList, maxID, maxJSON uint64) ([]BuiltOutput, error) {
	n, err := d.Count("built outputs", maxList)
	if err != nil {
		return nil, wire.NoEOF(err)
	}
	var outs []BuiltOutput
	for range n {
		id, err := d.String("output id", maxID)
		if err != nil {
			return outs, wire.NoEOF(err)
		}
		rj, err := d.String("realisation", maxJSON)
		if err != nil {
			return outs, wire.NoEOF(err)
		}
		out, err := parseBuiltOutput(id, rj)
		if err != nil {
			return outs, err
		}
		outs = append(outs, out)
	}
	return outs, nil
}

// parseBuiltOutput makes a BuiltOutput of the DrvOutput id and the
// realisation JSON a builder sent for it. Only a malformed id is an error;
// a realisation that does not parse leaves OutPath empty.
func parseBuiltOutput(id, realisation string) (BuiltOutput, error) {
	bang := strings.LastIndexByte(id, '!')
	if bang < 0 {
		return BuiltOutput{}, fmt.Errorf("invalid derivation output id %q", id)
	}
	out := BuiltOutput{Name: id[bang+1:], ID: id, Realisation: realisation}
	var j struct {
		OutPath string `json:"outPath"`
	}
	if json.Unmarshal([]byte(realisation), &j) == nil {
		out.OutPath = j.OutPath
	}
	return out, nil
}

// UnixTime converts the seconds since the epoch a builder sends to a
// time; 0, and anything beyond what a time.Time holds, mean none.
func UnixTime(s uint64) time.Time {
	if s == 0 || s > math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0)
}
