// SPDX-License-Identifier: MIT

package daemon

import (
	"io"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
)

// A daemon that announces a larger narSize than it sends and then stays
// silent: the bytes it did send must reach the writer at once, as
// pkg/serve's DumpStorePath passes them on (TestDumpStorePathStalled), so
// that a consumer that checks the NAR as it goes (nar.Restore) sees its
// end and can give up, and a watchdog that counts bytes sees where they
// stopped. Holding back a partial chunk hid both.
func TestNarFromPathStalled(t *testing.T) {
	nar := nixtest.NarFile([]byte("a small file\n"), false)
	c := newFakeClient(t, 0x123, Options{}, func(f *fake) {
		nixtest.AnswerNAR(f.r, f.w, nar, stderrLast)
		io.Copy(io.Discard, f.r.Underlying()) // until the client hangs up
	})
	nixtest.PassedOn(t, "NarFromPath", len(nar), c.NarFromPath)
}
