// SPDX-License-Identifier: MIT

package serve

import (
	"io"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
)

// A server that announces a larger narSize than it sends and then stays
// silent: the bytes it did send must reach the writer at once,
// so that a consumer that checks the NAR as it goes (nar.Restore) sees its
// end and can give up, instead of both sides waiting forever.
func TestDumpStorePathStalled(t *testing.T) {
	const p = "/nix/store/00000000000000000000000000000000-p"
	nar := nixtest.NarFile([]byte("a small file\n"), false)
	c := newFakeClient(t, func(f *fake) {
		f.r.Uint64()
		f.r.String()
		f.w.Raw(nar)
		f.w.Flush()
		io.Copy(io.Discard, f.r.Underlying()) // until the client hangs up
	})
	nixtest.PassedOn(t, "DumpStorePath", len(nar), func(w io.Writer) error {
		return c.DumpStorePath(p, w, uint64(len(nar))+4096)
	})
}
