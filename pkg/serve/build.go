// SPDX-License-Identifier: MIT

package serve

import (
	"math"
	"time"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// seconds encodes a duration as the server reads it: readInt, at most
// 2³²−1.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64((d + time.Second - 1) / time.Second)
	return min(s, math.MaxUint32)
}

// BuildDerivation builds a derivation on the server. d is the parsed .drv
// at drvPath; inputSrcs replaces its input sources (Nix's build-remote sends
// the whole input closure when the derivation has input derivations, which
// the server never sees); nil means d.InputSrcs. The server must already have every input.
//
// The build log streams on the remote's stderr meanwhile. Closing the
// transport interrupts the build.
func (c *Client) BuildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error) {
	return run(c, func() (store.BuildResult, error) { return c.buildDerivation(drvPath, d, inputSrcs, o) })
}

func (c *Client) buildDerivation(drvPath string, d *drv.Derivation, inputSrcs []string, o store.BuildOptions) (store.BuildResult, error) {
	const op = "BuildDerivation"
	c.w.Uint64(cmdBuildDerivation)
	c.w.String(drvPath)
	d.WriteBasic(c.w, inputSrcs)
	writeBuildOptions(c.w, c.peer.Version, o)
	if err := c.w.Flush(); err != nil {
		return store.BuildResult{}, c.peer.IOErr(op, drvPath, err)
	}
	res, err := readBuildResult(newDecoder(c.r, &c.sbuf), c.peer.Version)
	if err != nil {
		return store.BuildResult{}, c.peer.IOErr(op, drvPath, err)
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
func writeBuildOptions(w wireWriter, version uint64, o store.BuildOptions) {
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
func readBuildResult(d *wire.Decoder, version uint64) (store.BuildResult, error) {
	var res store.BuildResult
	st, err := d.Uint64()
	if err != nil {
		return res, err
	}
	res.Status = store.Status(st)
	if res.ErrorMsg, err = d.String("error message", maxErrorMsg); err != nil {
		return res, wire.NoEOF(err)
	}
	if version >= 0x203 {
		var start, stop uint64
		if res.TimesBuilt, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		nd, err := d.Uint64() // any non-zero word is true, as the server reads it
		if err != nil {
			return res, wire.NoEOF(err)
		}
		res.IsNonDeterministic = nd != 0
		if start, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		if stop, err = d.Uint64(); err != nil {
			return res, wire.NoEOF(err)
		}
		res.StartTime, res.StopTime = store.UnixTime(start), store.UnixTime(stop)
	}
	if version >= 0x206 {
		if res.BuiltOutputs, err = store.ReadBuiltOutputs(d, maxList, maxShort, maxJSON); err != nil {
			return res, err
		}
	}
	return res, nil
}
