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
	nar := nixtest.NarFile([]byte("a small file\n"), false)
	c := newFakeClient(t, func(f *fake) {
		nixtest.AnswerNAR(f.r, f.w, nar)
		io.Copy(io.Discard, f.r.Underlying()) // until the client hangs up
	})
	nixtest.PassedOn(t, "DumpStorePath", len(nar), c.DumpStorePath)
}
