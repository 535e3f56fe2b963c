// SPDX-License-Identifier: MIT

package daemon

import (
	"fmt"
	"math"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// BuildDerivation builds a derivation on the daemon (buildMode normal). d is
// the parsed .drv at drvPath; inputSrcs replaces its input sources (Nix's
// build-remote sends the whole input closure when the derivation has input
// derivations, which the daemon never sees); nil means d.InputSrcs. The
// daemon must already have every input.
//
// The build's log lines reach Options.Log, and its phases Options.Phase,
// while it runs. Limits such as max-silent-time are not part of the
// request: send them first with SetOptions. Closing the transport
// interrupts the build.
//
// A failed build is a BuildResult with a failing Status, not an error. A
// daemon that refuses the request (an untrusted user asking for an
// input-addressed derivation: ErrNotTrusted) gives a *RemoteError.
func (c *Client) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string) (store.BuildResult, error) {
	return run(c, func() (store.BuildResult, error) { return c.buildDerivation(drvPath, d, inputSrcs) })
}

func (c *Client) buildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string) (store.BuildResult, error) {
	const op = "BuildDerivation"
	c.w.Uint64(opBuildDerivation)
	c.w.String(drvPath)
	d.WriteBasic(c.w, inputSrcs)
	c.w.Uint64(0) // buildMode: bmNormal
	if err := c.flushAndWait(op, drvPath); err != nil {
		return store.BuildResult{}, err
	}
	res, err := readBuildResult(newDecoder(c.r, &c.sbuf), c.peer.Version)
	if err != nil {
		return store.BuildResult{}, c.peer.IOErr(op, drvPath, err)
	}
	return res, nil
}

// readBuildResult decodes the BuildResult of BuildDerivation at the
// negotiated version (src/libstore/worker-protocol.cc,
// WorkerProto::Serialise<BuildResult>; Nix 2.8 src/libstore/remote-store.cc,
// RemoteStore::buildDerivation): status and error message;
// from 1.29 timesBuilt, isNonDeterministic, startTime and stopTime; from
// 1.28 the built outputs as (DrvOutput id, realisation JSON) pairs. The CPU
// times of 1.37 and the outputs keyed by name of the
// realisation-with-path-not-hash feature are never negotiated, since the
// client claims 1.35.
func readBuildResult(d *wire.Decoder, version uint64) (store.BuildResult, error) {
	var res store.BuildResult
	st, err := d.Uint64()
	if err != nil {
		return res, wire.NoEOF(err)
	}
	if st > math.MaxUint8 {
		return res, fmt.Errorf("invalid build status %d", st)
	}
	res.Status = store.Status(st)
	if res.ErrorMsg, err = d.String("error message", maxErrorMsg); err != nil {
		return res, wire.NoEOF(err)
	}
	res.ErrorMsg = store.StripANSI(res.ErrorMsg)
	if version >= 1<<8|29 {
		var start, stop uint64
		if res.TimesBuilt, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		if res.IsNonDeterministic, err = d.Bool(); err != nil {
			return res, wire.NoEOF(err)
		}
		if start, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		if stop, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		res.StartTime, res.StopTime = store.UnixTime(start), store.UnixTime(stop)
	}
	if version >= 1<<8|28 {
		if res.BuiltOutputs, err = store.ReadBuiltOutputs(d, maxList, maxShort, maxJSON); err != nil {
			return res, err
		}
	}
	return res, nil
}
