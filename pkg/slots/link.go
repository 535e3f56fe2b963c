// SPDX-License-Identifier: MIT

package slots

import "math"

// Link is what the large copies to and from a builder measured of the
// link to it, shared by every process on the host. The zero Link is
// unknown. Which copies go compressed is the caller's policy; the file
// only keeps the numbers.
type Link struct {
	// Rate is the link's throughput in KiB of wire bytes per second (0:
	// unknown).
	Rate uint32
	// Ratio is the last compressed copy's size in thousandths of its
	// uncompressed size (0: none yet), at most MaxRatio.
	Ratio uint16
	// Plain is how many more large copies go uncompressed.
	Plain uint8
	// Since counts the compressed copies since the last uncompressed one,
	// at most SinceNone-1; SinceNone: no uncompressed copy measured Rate.
	Since uint8
	// NoFetch is how many more times inputs that the builder could fetch
	// go up without its trying, after a fetch there failed; at most
	// MaxNoFetch.
	NoFetch uint8
}

// Limits of a Link's fields in the file.
const (
	MaxRatio   = 1<<12 - 1
	SinceNone  = math.MaxUint8
	MaxNoFetch = 1<<4 - 1
)

func (l Link) word() uint64 {
	return uint64(l.Rate) | uint64(min(l.Ratio, MaxRatio))<<32 | uint64(l.Plain)<<44 | uint64(l.Since)<<52 |
		uint64(min(l.NoFetch, MaxNoFetch))<<60
}

func linkOf(w uint64) Link {
	return Link{
		Rate:    uint32(w),
		Ratio:   uint16(field(w, 32, 12)),
		Plain:   uint8(field(w, 44, 8)),
		Since:   uint8(field(w, 52, 8)),
		NoFetch: uint8(field(w, 60, 4)),
	}
}

// UpdateLink replaces the link measure of uri with next(the current one),
// in one compare-and-swap (next may run more than once, so it must have
// no side effects), and returns what it stored. ok is false, and next not
// called, for a builder without a record or a read-only File.
func (f *File) UpdateLink(uri string, next func(Link) Link) (l Link, ok bool) {
	m, r, found := f.record(uri)
	if !found {
		return Link{}, false
	}
	for {
		old := m.load(r + rLink)
		l = next(linkOf(old))
		if m.cas(r+rLink, old, l.word()) {
			return linkOf(l.word()), true
		}
	}
}
