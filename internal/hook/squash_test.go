// SPDX-License-Identifier: MIT

package hook

import (
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/slots"
)

// link plays copies of raw bytes over a link of rate bytes/s whose
// compressor (when compressing) moves zrate raw bytes/s down to ratio of
// their size, each decided by compressNext from the measure the copies
// before it left, as hooks one after another do through the slot file.
type link struct {
	l                  slots.Link
	rate, zrate, ratio float64
}

// copy decides and measures one copy and reports whether it went
// compressed.
func (k *link) copy(raw int64) bool {
	l, compress, _ := compressNext(k.l, raw)
	cp := builder.Copy{Raw: raw, Wire: raw, Compressed: compress}
	secs := float64(raw) / k.rate
	if compress {
		cp.Wire = int64(float64(raw) * k.ratio)
		secs = max(float64(raw)/k.zrate, float64(cp.Wire)/k.rate)
	}
	cp.Took = time.Duration(secs * float64(time.Second))
	k.l = measure(l, cp)
	return compress
}

// plays returns which of n copies of raw bytes go compressed, as a
// string of c (compressed) and p (as is).
func (k *link) plays(n int, raw int64) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = "pc"[map[bool]int{true: 1}[k.copy(raw)]]
	}
	return string(b)
}

func TestCompressNext(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name               string
		rate, zrate, ratio float64
		raw                int64 // 0: 50 MiB
		want               string
	}{
		// The measured case: loopback, incompressible. One compressed
		// copy, then as is for good (once the link is measured fast).
		{"loopback-random", 800 * mib, 300 * mib, 1.0, 0, "cpppppppppppppppppppppppppppppppp"},
		// Loopback, compressible, the compressor the slower: its wire
		// rate is only a lower bound, so the next copy measures the
		// link as is, and finds it fast.
		{"loopback-text", 800 * mib, 60 * mib, 0.3, 0, "cpppppppppppppppppppppppppppppppp"},
		// Gigabit: as loopback.
		{"gigabit-text", 110 * mib, 60 * mib, 0.3, 0, "cpppppppppppppppppppppppppppppppp"},
		// 20 Mbit, compressible, copies of 4 MiB: compressed but for
		// one copy that measures the link, at first and then every
		// remeasureEvery.
		{"20mbit-text-4MiB", 2.4 * mib, 60 * mib, 0.3, 4 * mib, "cp" + rep('c', remeasureEvery) + "p" + rep('c', 31-remeasureEvery)},
		// Copies of 50 MiB there would take 21 s as is, more than
		// measureBudget: all compressed.
		{"20mbit-text", 2.4 * mib, 60 * mib, 0.3, 0, rep('c', 100)},
		// 100 Mbit, compressible: compressed, but for the one copy
		// that measures the link (4 s as is).
		{"100mbit-text", 12 * mib, 60 * mib, 0.3, 0, "cp" + rep('c', 31)},
		// 20 Mbit, incompressible: poorHold copies as is after each
		// compressed one.
		{"20mbit-random", 2.4 * mib, 300 * mib, 1.0, 0, "c" + rep('p', poorHold) + "c" + rep('p', 15)},
	} {
		k := &link{rate: tt.rate, zrate: tt.zrate, ratio: tt.ratio}
		raw := tt.raw
		if raw == 0 {
			raw = 50 * mib
		}
		if got := k.plays(len(tt.want), raw); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s (last measure %+v)", tt.name, got, tt.want, k.l)
		}
	}
}

func rep(c byte, n int) string {
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// The measure left by earlier copies decides alone; an uncompressed
// copy's rate moves the measure a quarter of the way.
func TestCompressNextFromMeasure(t *testing.T) {
	for _, tt := range []struct {
		l    slots.Link
		want bool
	}{
		{slots.Link{}, true},
		{slots.Link{Rate: linkFast}, false},
		{slots.Link{Rate: linkFast - 1}, true},
		{slots.Link{Rate: 2 << 10, Since: remeasureEvery - 1}, true},
		{slots.Link{Rate: 2 << 10, Since: remeasureEvery}, false},
		{slots.Link{Rate: 2 << 10, Since: slots.SinceNone}, false},
		{slots.Link{Rate: 2 << 10, Since: sinceMeasuring}, true},
		{slots.Link{Rate: 2 << 10, Ratio: 990, Plain: 1}, false},
	} {
		if _, got, _ := compressNext(tt.l, 1<<20); got != tt.want {
			t.Errorf("compressNext(%+v, 1 MiB) = %v, want %v", tt.l, got, tt.want)
		}
	}
	// A copy that would take more than measureBudget as is does not
	// measure; it leaves the measure to the next.
	l := slots.Link{Rate: 2 << 10, Since: slots.SinceNone}
	if next, got, _ := compressNext(l, 17<<20); !got || next != l {
		t.Errorf("compressNext(%+v, 17 MiB) = %+v, %v; want compressed, the measure left as it was", l, next, got)
	}
	if _, got, _ := compressNext(l, 16<<20); got {
		t.Errorf("compressNext(%+v, 16 MiB) compresses; want the copy that measures", l)
	}
	l = measure(slots.Link{Rate: 1000, Since: 7}, builder.Copy{Raw: 5000 << 10, Wire: 5000 << 10, Took: time.Second})
	if l.Rate != 2000 || l.Since != 0 {
		t.Errorf("after a copy as is at 5000 KiB/s on 1000: %+v, want rate 2000, since 0", l)
	}
}
