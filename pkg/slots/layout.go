// SPDX-License-Identifier: MIT

package slots

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Layout constants; doc.go has the table they implement.
const (
	magic   = 0x746f6c736c66666f // "offlslot" as a little-endian word
	version = 1

	headerSize    = 4096
	recHeadSize   = 512
	slotSize      = 128
	decisionSize  = 256
	drvEntrySize  = 128
	decisionCount = 64
	drvCount      = 64

	minRecords = 16
	maxRecords = 4096
	minSlots   = 8
	// MaxSlots is the largest capacity a builder can have; a machines file
	// asking for more jobs is clamped to it.
	MaxSlots = 256

	maxFileSize = 64 << 20
)

// Header fields.
const (
	hMagic       = 0
	hVersion     = 8
	hHeaderSize  = 16
	hRecords     = 24
	hRecSize     = 32
	hSlots       = 40
	hSlotSize    = 48
	hRingOff     = 56
	hRingN       = 64
	hRingSize    = 72
	hDrvOff      = 80
	hDrvN        = 88
	hDrvSize     = 96
	hFileSize    = 104
	hMoved       = 112
	hChange      = 120 // uint32
	hWaiters     = 124 // uint32
	hConfigGen   = 128
	hRingHead    = 136
	hCreated     = 144
	hFirstUnused = 152
)

// Record fields, relative to the record.
const (
	rHash          = 0
	rFlags         = 8
	rMaxJobs       = 16
	rStarted       = 24
	rSucceeded     = 32
	rFailed        = 40
	rSent          = 48
	rReceived      = 56
	rConsecFail    = 64
	rUnhealthy     = 72
	rLastErr       = 80
	rConnectNs     = 88
	rConnectAt     = 96
	rUpload        = 104
	rLoad          = 112 // Load1, Load5, Load15: 21 bits each, value+1
	rLoadAt        = 120 // reading time (Unix ns); readingBusy while written
	rSystems       = 128
	rURI           = 256
	rURILen        = 128
	rName          = 384
	rNameLen       = 64
	rRefresh       = 448 // refresh token owner
	rReadCounts    = 456 // CPUs+1, Builds+1, ours: 20 bits each
	rPressure      = 464 // CPU, memory, IO pressure + 1: 16 bits each
	rMemAvail      = 472 // +1
	rMemTotal      = 480 // +1
	rStoreFree     = 488 // +1
	rStoreSize     = 496 // +1
	rLink          = 504 // the link's measure (Link)
	rCountersBegin = rStarted
	rCountersEnd   = rSystems
)

// Record flags.
const (
	flagListed  = 1
	flagDrained = 2
)

// Slot entry fields, relative to the entry.
const (
	sOwner   = 0
	sAt      = 8
	sPhase   = 16
	sBytes   = 24
	sDrv     = 48
	sDrvLen  = 80
	sKeepLen = 48 // words of an entry carried across a rebuild
)

// Decision entry fields.
const (
	dSeq        = 0
	dTime       = 8
	dAnswer     = 16
	dHash       = 24
	dDrv        = 32
	dDrvLen     = 96
	dBuilder    = 128
	dBuilderLen = 64
	dReason     = 192
	dReasonLen  = 64
)

// geometry is the shape of one file, as its header describes it.
type geometry struct {
	records, slots uint64
}

func (g geometry) recSize() uint64  { return recHeadSize + g.slots*slotSize }
func (g geometry) ringOff() uint64  { return headerSize + g.records*g.recSize() }
func (g geometry) drvOff() uint64   { return g.ringOff() + decisionCount*decisionSize }
func (g geometry) fileSize() uint64 { return g.drvOff() + drvCount*drvEntrySize }

func (g geometry) recOff(i int) int { return headerSize + i*int(g.recSize()) }

func (g geometry) slotOff(rec, j int) int {
	return g.recOff(rec) + recHeadSize + j*slotSize
}

// geometryFor sizes a new file for n builders of at most maxJobs jobs each,
// with room to grow.
func geometryFor(n, maxJobs int) geometry {
	return geometry{
		records: uint64(max(minRecords, ceilPow2(2*n))),
		slots:   uint64(min(MaxSlots, max(minSlots, ceilPow2(maxJobs)))),
	}
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// header reads the geometry of a file from its first bytes (read with
// plain loads: the file is not trusted yet). It returns the layout version
// and an error saying what is wrong when the header does not describe a file
// this package can use.
func parseHeader(b []byte, size int64) (g geometry, ver uint64, err error) {
	if len(b) < hFirstUnused {
		return g, 0, fmt.Errorf("short file (%d bytes)", size)
	}
	w := func(off int) uint64 { return binary.NativeEndian.Uint64(b[off:]) }
	if w(hMagic) != magic {
		return g, 0, fmt.Errorf("bad magic %#x", w(hMagic))
	}
	ver = w(hVersion)
	g = geometry{records: w(hRecords), slots: w(hSlots)}
	if ver > version {
		return g, ver, nil
	}
	switch {
	case w(hHeaderSize) != headerSize:
		err = fmt.Errorf("header size %d", w(hHeaderSize))
	case g.records < 1 || g.records > maxRecords:
		err = fmt.Errorf("record count %d", g.records)
	case g.slots < 1 || g.slots > MaxSlots:
		err = fmt.Errorf("slots per record %d", g.slots)
	case w(hRecSize) != g.recSize() || w(hSlotSize) != slotSize:
		err = fmt.Errorf("record size %d", w(hRecSize))
	case w(hRingOff) != g.ringOff() || w(hRingN) != decisionCount || w(hRingSize) != decisionSize:
		err = fmt.Errorf("decision ring at %d", w(hRingOff))
	case w(hDrvOff) != g.drvOff() || w(hDrvN) != drvCount || w(hDrvSize) != drvEntrySize:
		err = fmt.Errorf("derivation table at %d", w(hDrvOff))
	case w(hFileSize) != g.fileSize():
		err = fmt.Errorf("declared size %d", w(hFileSize))
	case uint64(size) < g.fileSize():
		err = fmt.Errorf("truncated: %d of %d bytes", size, g.fileSize())
	}
	return g, ver, err
}

// putHeader writes a fresh header into b (a new file not yet visible).
func putHeader(b []byte, g geometry, created int64) {
	p := func(off int, v uint64) { binary.NativeEndian.PutUint64(b[off:], v) }
	p(hMagic, magic)
	p(hVersion, version)
	p(hHeaderSize, headerSize)
	p(hRecords, g.records)
	p(hRecSize, g.recSize())
	p(hSlots, g.slots)
	p(hSlotSize, slotSize)
	p(hRingOff, g.ringOff())
	p(hRingN, decisionCount)
	p(hRingSize, decisionSize)
	p(hDrvOff, g.drvOff())
	p(hDrvN, drvCount)
	p(hDrvSize, drvEntrySize)
	p(hFileSize, g.fileSize())
	p(hCreated, uint64(created))
}

// hashURI is FNV-1a 64, never zero (zero marks a free record).
func hashURI(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	if h == 0 {
		h = 1
	}
	return h
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
