// SPDX-License-Identifier: MIT

package serve

import (
	"io"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/nixtest"
)

// signalWriter counts what it is given and says when it has want bytes.
type signalWriter struct {
	n, want int
	got     chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.n >= w.want && w.got != nil {
		close(w.got)
		w.got = nil
	}
	return len(p), nil
}

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
	w := &signalWriter{want: len(nar), got: make(chan struct{})}
	got := w.got
	done := make(chan error, 1)
	go func() { done <- c.DumpStorePath(p, w, uint64(len(nar))+4096) }()
	select {
	case <-got:
	case err := <-done:
		t.Fatalf("DumpStorePath returned %v before passing on the %d bytes sent", err, len(nar))
	case <-time.After(5 * time.Second):
		t.Fatalf("the writer got %d of the %d bytes sent within 5 s", w.n, len(nar))
	}
}
