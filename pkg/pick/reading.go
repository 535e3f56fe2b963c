// SPDX-License-Identifier: MIT

package pick

import (
	"strconv"
	"time"
)

// ReadingUnknown is the value of a Reading field the machine did not tell.
const ReadingUnknown = -1

// Reading is one look at a machine's real state: pkg/remoteload reads it
// from the builder, pkg/slots shares it between the processes of the host,
// and Choose weighs it. A field is [ReadingUnknown] (-1) when the machine
// did not tell it. The zero Reading has a zero Time: no reading at all,
// whatever its fields say.
type Reading struct {
	// Time is when the reading was taken.
	Time time.Time
	// CPUs is the number of online CPUs.
	CPUs int
	// Load1, Load5 and Load15 are the load averages in thousandths
	// (7.91 is 7910).
	Load1, Load5, Load15 int
	// CPUPressure, MemoryPressure and IOPressure are the "some avg10"
	// pressure stall figures in hundredths of a percent (41.5 % is
	// 4150): the share of the last ten seconds in which at least one
	// task waited for the resource.
	CPUPressure, MemoryPressure, IOPressure int
	// MemAvailable and MemTotal are in bytes (MemAvailable is the
	// kernel's estimate of memory available without swapping).
	MemAvailable, MemTotal int64
	// StoreFree and StoreSize are the free space available to users and
	// the size, in bytes, of the filesystem of the store.
	StoreFree, StoreSize int64
	// Builds is the number of Nix builds running on the machine, from
	// every client.
	Builds int
}

// ReadingUnknownAt returns a Reading taken at t with every field unknown:
// what a failed or garbled reading leaves.
func ReadingUnknownAt(t time.Time) Reading {
	return Reading{Time: t, CPUs: ReadingUnknown, Load1: ReadingUnknown, Load5: ReadingUnknown, Load15: ReadingUnknown,
		CPUPressure: ReadingUnknown, MemoryPressure: ReadingUnknown, IOPressure: ReadingUnknown,
		MemAvailable: ReadingUnknown, MemTotal: ReadingUnknown, StoreFree: ReadingUnknown, StoreSize: ReadingUnknown,
		Builds: ReadingUnknown}
}

// Empty reports whether every field is unknown.
func (r Reading) Empty() bool {
	u := ReadingUnknownAt(r.Time)
	return r == u
}

// String describes the reading for people, leaving out what is unknown:
//
//	8 CPUs, load 7.91 6.02 5.1, pressure cpu 65.36 % memory 41 % io 3.17 %, memory 8.7 GiB available of 15.6 GiB, store 73.7 GiB free of 252 GiB, 2 builds
//
// A reading with every field unknown is "unknown".
func (r Reading) String() string { return string(r.AppendText(nil)) }

// AppendText appends [Reading.String] to b.
func (r Reading) AppendText(b []byte) []byte {
	start := len(b)
	sep := func() {
		if len(b) > start {
			b = append(b, ", "...)
		}
	}
	if r.CPUs != ReadingUnknown {
		b = strconv.AppendInt(b, int64(r.CPUs), 10)
		b = append(b, " CPU"...)
		if r.CPUs != 1 {
			b = append(b, 's')
		}
	}
	if r.Load1 != ReadingUnknown {
		sep()
		b = append(b, "load "...)
		b = appendFixed(b, int64(r.Load1), 3)
		b = append(b, ' ')
		b = appendFixed(b, int64(r.Load5), 3)
		b = append(b, ' ')
		b = appendFixed(b, int64(r.Load15), 3)
	}
	if r.CPUPressure != ReadingUnknown || r.MemoryPressure != ReadingUnknown || r.IOPressure != ReadingUnknown {
		sep()
		b = append(b, "pressure"...)
		for i, v := range [...]int{r.CPUPressure, r.MemoryPressure, r.IOPressure} {
			if v == ReadingUnknown {
				continue
			}
			b = append(b, ' ')
			b = append(b, [...]string{"cpu", "memory", "io"}[i]...)
			b = append(b, ' ')
			b = appendFixed(b, int64(v), 2)
			b = append(b, " %"...)
		}
	}
	if r.MemAvailable != ReadingUnknown || r.MemTotal != ReadingUnknown {
		sep()
		b = append(b, "memory "...)
		if r.MemAvailable != ReadingUnknown {
			b = AppendBytes(b, r.MemAvailable)
			b = append(b, " available"...)
			if r.MemTotal != ReadingUnknown {
				b = append(b, " of "...)
			}
		}
		if r.MemTotal != ReadingUnknown {
			b = AppendBytes(b, r.MemTotal)
		}
	}
	if r.StoreFree != ReadingUnknown {
		sep()
		b = append(b, "store "...)
		b = AppendBytes(b, r.StoreFree)
		b = append(b, " free of "...)
		b = AppendBytes(b, r.StoreSize)
	}
	if r.Builds != ReadingUnknown {
		sep()
		b = strconv.AppendInt(b, int64(r.Builds), 10)
		b = append(b, " build"...)
		if r.Builds != 1 {
			b = append(b, 's')
		}
	}
	if len(b) == start {
		b = append(b, "unknown"...)
	}
	return b
}

// Format describes the reading and its age at now, for offload status and
// offload check: "8 CPUs, load 0.5 0.4 0.3, 0 builds (3 s ago)", "unknown
// (2 s ago)", or "no reading" when the reading's Time is zero.
func (r Reading) Format(now time.Time) string {
	if r.Time.IsZero() {
		return "no reading"
	}
	b := r.AppendText(nil)
	b = append(b, " ("...)
	b = appendAge(b, now.Sub(r.Time))
	b = append(b, " ago)"...)
	return string(b)
}

// AppendAge appends an age for people: "12 s", "5 min", "3 h".
func AppendAge(b []byte, d time.Duration) []byte { return appendAge(b, d) }

func appendAge(b []byte, d time.Duration) []byte {
	switch {
	case d < 0:
		return append(b, "0 s"...)
	case d < 2*time.Minute:
		return append(strconv.AppendInt(b, int64(d/time.Second), 10), " s"...)
	case d < 2*time.Hour:
		return append(strconv.AppendInt(b, int64(d/time.Minute), 10), " min"...)
	}
	return append(strconv.AppendInt(b, int64(d/time.Hour), 10), " h"...)
}

// AppendBytes appends a size in bytes for people: "812 MiB", "1.2 GiB",
// "3.4 TiB" (one decimal below 100, none above).
func AppendBytes(b []byte, n int64) []byte {
	if n < 0 {
		return append(b, "?"...)
	}
	units := [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	u := 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	prec := 1
	if u == 0 || f >= 100 {
		prec = 0
	}
	b = strconv.AppendFloat(b, f, 'f', prec, 64)
	if prec == 1 && b[len(b)-1] == '0' {
		b = b[:len(b)-2]
	}
	b = append(b, ' ')
	return append(b, units[u]...)
}

// appendFixed appends v/10^scale without trailing zeros: 7910 at scale 3
// is "7.91".
func appendFixed(b []byte, v int64, scale int) []byte {
	if v < 0 {
		return append(b, '?')
	}
	p := int64(1)
	for range scale {
		p *= 10
	}
	b = strconv.AppendInt(b, v/p, 10)
	frac := v % p
	if frac == 0 {
		return b
	}
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], p+frac, 10)[1:] // leading zeros kept
	for len(d) > 0 && d[len(d)-1] == '0' {
		d = d[:len(d)-1]
	}
	b = append(b, '.')
	return append(b, d...)
}

// MarshalJSON writes the reading as one JSON object, unknown fields as
// null, loads and pressures as numbers, sizes in bytes:
//
//	{"time":"2025-05-01T10:00:00Z","cpus":8,"load":[7.91,6.02,5.1],
//	 "pressure":{"cpu":65.36,"memory":41,"io":3.17},"mem_available":9342418944,
//	 "mem_total":16705617920,"store_free":79186010112,"store_size":270553174016,
//	 "builds":2}
//
// time is null for no reading.
func (r Reading) MarshalJSON() ([]byte, error) {
	b := append([]byte(nil), `{"time":`...)
	if r.Time.IsZero() {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"cpus":`...)
	b = appendJSONInt(b, int64(r.CPUs))
	b = append(b, `,"load":`...)
	if r.Load1 == ReadingUnknown {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		b = appendFixed(b, int64(r.Load1), 3)
		b = append(b, ',')
		b = appendFixed(b, int64(r.Load5), 3)
		b = append(b, ',')
		b = appendFixed(b, int64(r.Load15), 3)
		b = append(b, ']')
	}
	b = append(b, `,"pressure":{"cpu":`...)
	b = appendJSONFixed(b, r.CPUPressure, 2)
	b = append(b, `,"memory":`...)
	b = appendJSONFixed(b, r.MemoryPressure, 2)
	b = append(b, `,"io":`...)
	b = appendJSONFixed(b, r.IOPressure, 2)
	b = append(b, `},"mem_available":`...)
	b = appendJSONInt(b, r.MemAvailable)
	b = append(b, `,"mem_total":`...)
	b = appendJSONInt(b, r.MemTotal)
	b = append(b, `,"store_free":`...)
	b = appendJSONInt(b, r.StoreFree)
	b = append(b, `,"store_size":`...)
	b = appendJSONInt(b, r.StoreSize)
	b = append(b, `,"builds":`...)
	b = appendJSONInt(b, int64(r.Builds))
	return append(b, '}'), nil
}

func appendJSONInt(b []byte, v int64) []byte {
	if v < 0 {
		return append(b, "null"...)
	}
	return strconv.AppendInt(b, v, 10)
}

func appendJSONFixed(b []byte, v, scale int) []byte {
	if v < 0 {
		return append(b, "null"...)
	}
	return appendFixed(b, int64(v), scale)
}
