// SPDX-License-Identifier: MIT

package serve

import (
	"bytes"
	"io"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
)

// BenchmarkDumpStorePath copies a 64 MiB NAR from a fake server over an
// in-memory pipe.
func BenchmarkDumpStorePath(b *testing.B) {
	nar := nixtest.BigNar(64 << 20)
	c := newFakeClient(b, func(f *fake) {
		for nixtest.AnswerNAR(f.r, f.w, nar) == nil {
		}
	})
	nixtest.BenchFetch(b, nar, c.DumpStorePath)
}

// BenchmarkAddToStoreNars uploads a 64 MiB NAR to a fake server over an
// in-memory pipe.
func BenchmarkAddToStoreNars(b *testing.B) {
	nar := nixtest.BigNar(64 << 20)
	infos := []store.PathInfo{{
		Path:    "/nix/store/00000000000000000000000000000000-big",
		NarSize: uint64(len(nar)),
		NarHash: nixtest.NarHash(nar),
	}}
	c := newFakeClient(b, func(f *fake) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.r.Uint64(); err != nil {
				return
			}
			for range 3 {
				f.r.String()
			}
			f.r.Strings()
			f.r.Uint64()
			size, _ := f.r.Uint64()
			f.r.Uint64()
			f.r.Strings()
			f.r.String()
			if _, err := io.CopyBuffer(io.Discard, io.LimitReader(f.r.Underlying(), int64(size)), buf); err != nil {
				return
			}
			f.w.Uint64(1)
			if f.w.Flush() != nil {
				return
			}
		}
	})
	r := bytes.NewReader(nar)
	open := func(int) (io.Reader, error) {
		r.Reset(nar)
		return r, nil
	}
	nixtest.Bench(b, len(nar), func() error { return c.AddToStoreNars(infos, open) })
}
