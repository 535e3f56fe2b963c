// SPDX-License-Identifier: MIT

package squash

import (
	"math/rand"
	"os"
	"strings"
	"testing"
)

// machineCode is the first TuneSample bytes of the test binary.
func machineCode(t *testing.T) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return b[:min(len(b), TuneSample)]
}

func TestTune(t *testing.T) {
	code := machineCode(t)
	random := make([]byte, TuneSample)
	rand.New(rand.NewSource(1)).Read(random)
	for _, tt := range []struct {
		name   string
		m      Method
		from   int
		sample []byte
		rate   float64
		want   int
		tried  int // levels that why names
	}{
		// Nothing measured: from, untried.
		{"unknown link", Zstd, 3, code, 0, 3, 0},
		{"no sample", Zstd, 3, nil, 1e6, 3, 0},
		// A link no compressor here keeps up with: from alone.
		{"fast link", Zstd, 3, code, 1e15, 3, 1},
		{"fast link, gzip", Gzip, 3, code, 1e15, 3, 1},
		// A link of a KiB a second: the smallest stream wins, if it is
		// smaller by tuneGain.
		{"slow link", Zstd, 3, code, 1 << 10, 12, 3},
		{"slow link, gzip", Gzip, 1, code, 1 << 10, 9, 3},
		{"slow link, incompressible", Zstd, 3, random, 1 << 10, 3, 3},
		{"slow link, from the top", Zstd, 12, code, 1 << 10, 12, 1},
	} {
		got, why, err := Tune(tt.m, tt.from, tt.sample, tt.rate)
		if err != nil || got != tt.want {
			t.Errorf("%s: Tune = %d, %v; want %d (%s)", tt.name, got, err, tt.want, why)
		}
		if n := strings.Count(why, " makes "); n != tt.tried {
			t.Errorf("%s: Tune tried %d levels, want %d: %s", tt.name, n, tt.tried, why)
		}
	}
}

func BenchmarkTune(b *testing.B) {
	code := machineCode(&testing.T{})
	for b.Loop() {
		Tune(Zstd, 3, code, 2.5e6)
	}
}
