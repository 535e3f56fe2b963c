// SPDX-License-Identifier: MIT

package squash

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
)

// TuneSample is how much of a copy Tune compresses at each level it
// tries: enough for the encoders' speed to show, little enough that
// trying three levels costs a small part of a copy worth tuning.
const TuneSample = 256 << 10

// TuneTime is the least time a copy would take as is on its link for
// Tune to be worth its cost: on this machine up to some 250 ms, most of
// it setting up the highest level's encoder (which the copy would pay
// anyway), several times that on a board; what a higher level saves is
// a tenth of the compressed copy at most.
const TuneTime = 5 * time.Second

// tuneGain is how much more a higher level must move, per second, than
// the level below it to be taken: timing a small sample on a shared
// machine is noisy, and a level that only ties costs CPU for nothing.
const tuneGain = 1.05

// tuneLevels are the levels Tune tries above its first for m: where the
// Go encoder's next strategies start (klauspost/compress/zstd
// EncoderLevelFromZstd: 6-9 "better", 10 and up "best"), gzip's
// default and its best.
func tuneLevels(m Method) []int {
	switch m {
	case Zstd:
		return []int{7, 12}
	case Gzip:
		return []int{6, 9}
	}
	return nil
}

// Tune chooses the level at which to compress, here, a copy like sample
// with m onto a link that moves rate bytes a second: from, or the higher
// level that moves the copy fastest, if by tuneGain. A level moves
// min(its speed on sample, rate ÷ its ratio on sample) bytes of the copy
// a second, since the compressor and the link work at once; above a
// level that keeps the link waiting, none is tried (a higher one is
// slower, and its smaller stream cannot make up for it). So a fast
// link, a slow processor or data that compresses no better at a higher
// level keep from. why says what was measured, for -v.
func Tune(m Method, from int, sample []byte, rate float64) (level int, why string, err error) {
	from = clampLevel(m, from)
	if len(sample) == 0 || rate <= 0 {
		return from, "", nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the link moves %.1f MiB/s; on the first %d KiB", rate/(1<<20), len(sample)>>10)
	moves := func(level int) (moved float64, cpuBound bool, err error) {
		speed, ratio, err := trial(m, level, sample)
		if err != nil {
			return 0, false, err
		}
		fmt.Fprintf(&b, ", level %d makes %.0f MiB/s to %.1f%%", level, speed/(1<<20), 100*ratio)
		wire := rate / max(ratio, 1e-3)
		return min(speed, wire), speed < wire, nil
	}
	first, cpuBound, err := moves(from)
	if err != nil || cpuBound {
		return from, b.String(), err
	}
	level, best := from, first*tuneGain
	for _, next := range tuneLevels(m) {
		if next <= from {
			continue
		}
		moved, cpuBound, err := moves(next)
		if err != nil {
			return from, "", err
		}
		if moved >= best {
			level, best = next, moved
		}
		if cpuBound {
			break // a slower level keeps the link waiting longer
		}
	}
	return level, b.String(), nil
}

// trial compresses sample with m at level twice and returns the bytes
// the second pass compressed a second and the compressed size over the
// size: the first pass pays for the encoder's fresh memory, which a long
// copy pays once.
func trial(m Method, level int, sample []byte) (speed, ratio float64, err error) {
	var n Counter
	n.W = io.Discard
	w, err := NewWriter(&n, m, level)
	if err != nil {
		return 0, 0, err
	}
	r, ok := w.(interface{ Reset(io.Writer) })
	if !ok {
		return 0, 0, fmt.Errorf("squash: cannot tune %v", m)
	}
	var took float64
	for pass := range 2 {
		n.N = 0
		r.Reset(&n)
		t0 := time.Now()
		if _, err := w.Write(sample); err != nil {
			return 0, 0, err
		}
		if err := w.Close(); err != nil {
			return 0, 0, err
		}
		if pass == 1 {
			took = max(time.Since(t0).Seconds(), 1e-6)
		}
	}
	if e, ok := w.(*zstd.Encoder); ok {
		e.Reset(nil)
		tried[zstd.EncoderLevelFromZstd(clampLevel(m, level))].Put(e)
	}
	return float64(len(sample)) / took, float64(n.N) / float64(len(sample)), nil
}
