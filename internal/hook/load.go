// SPDX-License-Identifier: MIT

package hook

import (
	"strconv"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
)

// DownAfter is the number of failed connections in a row after which a
// builder still inside its backoff counts as down: requests that only it
// could serve are declined (Nix builds them locally, or fails with the
// reason) instead of postponed, so a dead builder fails a build after a few
// backoffs rather than making it wait forever, while one failed handshake
// only postpones.
const DownAfter = 3

// LoadOf is what a decision at now needs to know of builder b's shared
// state. The hook and `offload pick` both use it, so they agree.
func LoadOf(b *slots.Builder, now time.Time) pick.Load {
	l := pick.Load{
		Busy:           b.Busy,
		UnhealthyUntil: b.UnhealthyUntil,
		Failures:       b.ConsecutiveFailures,
		Drained:        b.Drained,
		Reading:        b.Reading,
		ReadingOurs:    b.ReadingOurs,
	}
	if b.LastError != slots.ErrNone {
		l.LastError = b.LastError.String()
	}
	if b.ConsecutiveFailures >= DownAfter && b.UnhealthyUntil.After(now) {
		l.Unreachable = true
		l.LastError += ", " + strconv.Itoa(b.ConsecutiveFailures) + " failed connects in a row"
	}
	return l
}

// PickOptions are the choosing options: offload's settings and the
// OFFLOAD_ONLY and OFFLOAD_AVOID lists of the environment.
func PickOptions(cfg Config, getenv func(string) string) pick.Options {
	return pick.Options{
		Emulation:        cfg.Emulation,
		EmulationPenalty: cfg.EmulationPenalty,
		Thresholds:       cfg.Thresholds,
		Only:             pick.ParseList(getenv("OFFLOAD_ONLY")),
		Avoid:            pick.ParseList(getenv("OFFLOAD_AVOID")),
	}
}
