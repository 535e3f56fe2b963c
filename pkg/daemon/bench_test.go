// SPDX-License-Identifier: MIT

package daemon

import (
	"bytes"
	"io"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
)

// BenchmarkNarFromPath copies a 64 MiB NAR from a fake daemon over an
// in-memory pipe.
func BenchmarkNarFromPath(b *testing.B) {
	nar := nixtest.BigNar(64 << 20)
	c := newFakeClient(b, 0x123, Options{}, func(f *fake) {
		for nixtest.AnswerNAR(f.r, f.w, nar, stderrLast) == nil {
		}
	})
	nixtest.BenchFetch(b, nar, c.NarFromPath)
}

// BenchmarkAddToStoreNars uploads a 64 MiB NAR and a small one with
// AddMultipleToStore to a fake daemon over an in-memory pipe.
func BenchmarkAddToStoreNars(b *testing.B) {
	nar := nixtest.BigNar(64 << 20)
	small := nixtest.NarFile([]byte("small\n"), false)
	infos := []store.PathInfo{
		{Path: "/nix/store/00000000000000000000000000000000-small", NarSize: uint64(len(small)), NarHash: nixtest.NarHash(small)},
		{Path: "/nix/store/00000000000000000000000000000000-big", NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)},
	}
	c := newFakeClient(b, 0x123, Options{}, func(f *fake) {
		buf := make([]byte, bufSize)
		lr := &io.LimitedReader{}
		for {
			op, err := f.r.Uint64()
			if err != nil {
				return
			}
			switch op {
			case opQueryValidPaths:
				f.r.Strings()
				f.r.Uint64()
				f.msg(stderrLast, 0)
			case opAddMultipleToStore:
				f.r.Uint64()
				f.r.Uint64()
				for {
					n, err := f.r.Uint64()
					if err != nil {
						return
					}
					if n == 0 {
						break
					}
					lr.R, lr.N = f.r.Underlying(), int64(n)
					if _, err := io.CopyBuffer(io.Discard, lr, buf); err != nil {
						return
					}
				}
				f.msg(stderrLast)
			}
			if f.w.Flush() != nil {
				return
			}
		}
	})
	readers := []*bytes.Reader{bytes.NewReader(small), bytes.NewReader(nar)}
	open := func(i int) (io.Reader, error) {
		readers[i].Seek(0, io.SeekStart)
		return readers[i], nil
	}
	nixtest.Bench(b, len(nar)+len(small), func() error { return c.AddToStoreNars(infos, open) })
}
