// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/builder"
	"github.com/offload-nix/offload/pkg/daemon"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/serve"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// testNar is the NAR of a file holding "stalled\n".
func testNar() []byte {
	var b []byte
	str := func(s string) {
		var l [8]byte
		for i := range 8 {
			l[i] = byte(len(s) >> (8 * i))
		}
		b = append(append(b, l[:]...), s...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents", "stalled\n", ")"} {
		str(s)
	}
	return b
}

// stallBuilder is a builder's store over in-memory pipes whose server
// side, speaking proto ("ssh" or "ssh-ng"), answers the handshake and
// then serve.
type stallBuilder struct {
	r     *wire.Reader
	w     *wire.Writer
	store builder.Remote
	prog  *builder.Progress
	hang  func() // hangs up the client's side, as ending the session does
}

func newStallBuilder(t *testing.T, proto string, serveFn func(b *stallBuilder)) *stallBuilder {
	t.Helper()
	cr, sw := io.Pipe() // builder → hook
	sr, cw := io.Pipe() // hook → builder
	b := &stallBuilder{r: wire.NewReader(sr), w: wire.NewWriter(sw), prog: &builder.Progress{}}
	b.hang = func() {
		cr.CloseWithError(io.ErrClosedPipe)
		cw.CloseWithError(io.ErrClosedPipe)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sw.Close()
		b.r.Uint64() // magic
		b.r.Uint64() // version
		if proto == "ssh-ng" {
			b.w.Uint64(0x6478696f)
			b.w.Uint64(1<<8 | 21)
			b.w.Flush()
			b.r.Uint64()           // CPU affinity
			b.r.Uint64()           // reserveSpace
			b.w.Uint64(0x616c7473) // STDERR_LAST
		} else {
			b.w.Uint64(0x5452eecb)
			b.w.Uint64(0x207)
		}
		b.w.Flush()
		serveFn(b)
		io.Copy(io.Discard, sr) // until the hook hangs up
	}()
	t.Cleanup(func() {
		b.hang()
		sr.Close()
		<-done
	})
	var err error
	if proto == "ssh-ng" {
		var dc *daemon.Client
		dc, err = daemon.New(b.prog.Reader(cr), b.prog.Writer(cw), daemon.Options{})
		b.store = builder.DaemonStore(dc, "ssh-ng://b1")
	} else {
		b.store, err = serve.New(b.prog.Reader(cr), b.prog.Writer(cw), serve.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stallHook is a hook with a slot file holding one builder, and a guarded
// store for it.
func stallHook(t *testing.T, uri string, b *stallBuilder, timeout time.Duration) (*hook, *guarded) {
	t.Helper()
	m := spec.Machine{URI: uri, Name: "b1", Host: "b1", Scheme: "ssh", MaxJobs: 1}
	h := &hook{
		env:   Env{Now: time.Now},
		cfg:   testConfig(t, "stall-timeout", timeout.String(), "unhealthy-backoff", "1m", "unhealthy-backoff-max", "1h"),
		log:   hookproto.NewLogger(io.Discard, 0),
		state: openState(t, filepath.Join(t.TempDir(), "slots"), []spec.Machine{m}),
	}
	c := builder.NewConn(&m, b.store, b.prog)
	g := h.guard(context.Background(), c).(*guarded)
	g.end = b.hang
	return h, g
}

// A builder that announces a larger NAR than it sends and then stays
// silent (its sshd still answering keepalives, which nothing here can
// see) loses the connection after the stall timeout, on both protocols,
// and is marked unhealthy for every hook. The NAR stops mid-file, so the
// unpacker cannot tell its end either.
func TestStalledNAR(t *testing.T) {
	nar := testNar()
	for _, proto := range []string{"ssh", "ssh-ng"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			const timeout = 300 * time.Millisecond
			b := newStallBuilder(t, proto, func(b *stallBuilder) {
				b.r.Uint64() // DumpStorePath or NarFromPath
				b.r.String()
				if proto == "ssh-ng" {
					b.w.Uint64(0x616c7473)
				}
				b.w.Raw(nar[:len(nar)-16])
				b.w.Flush()
			})
			uri := proto + "://b1"
			h, g := stallHook(t, uri, b, timeout)
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				done <- g.DumpStorePath("/nix/store/00000000000000000000000000000000-p", io.Discard, uint64(len(nar))+4096)
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("DumpStorePath still waits on a silent builder after 10 s (stall timeout %v)", timeout)
			}
			took := time.Since(start)
			var se *stallError
			if !errors.As(err, &se) {
				t.Fatalf("DumpStorePath = %v, want a *stallError", err)
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("DumpStorePath returned after %v, want about %v", took, timeout)
			}
			snap := h.state.Snapshot(nil)
			if len(snap) != 1 || !snap[0].UnhealthyUntil.After(time.Now()) || snap[0].LastError != slots.ErrTimeout {
				t.Errorf("after the stall: %+v, want %s unhealthy with a timeout", snap, uri)
			}
			t.Logf("%s: %v after %v", proto, err, took.Round(time.Millisecond))
		})
	}
}

// Time the hook spends on its own side (a slow local store taking the
// NAR) is not the builder's silence; and a builder that sends, however
// slowly, is not stalled.
func TestStallNotLocal(t *testing.T) {
	nar := testNar()
	for _, proto := range []string{"ssh", "ssh-ng"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			const timeout = 200 * time.Millisecond
			b := newStallBuilder(t, proto, func(b *stallBuilder) {
				b.r.Uint64()
				b.r.String()
				if proto == "ssh-ng" {
					b.w.Uint64(0x616c7473)
				}
				for i := 0; i < len(nar); i += 8 {
					b.w.Raw(nar[i : i+8])
					b.w.Flush()
					time.Sleep(timeout / 4)
				}
			})
			h, g := stallHook(t, proto+"://b1", b, timeout)
			w := &slowWriter{delay: 3 * timeout}
			if err := g.DumpStorePath("/nix/store/00000000000000000000000000000000-p", w, uint64(len(nar))); err != nil {
				t.Fatalf("DumpStorePath = %v", err)
			}
			if w.n != len(nar) {
				t.Errorf("wrote %d bytes, want %d", w.n, len(nar))
			}
			if snap := h.state.Snapshot(nil); !snap[0].UnhealthyUntil.IsZero() {
				t.Errorf("the builder is marked unhealthy: %+v", snap[0])
			}
		})
	}
}

// slowWriter takes its first write after delay.
type slowWriter struct {
	n     int
	delay time.Duration
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		time.Sleep(w.delay)
	}
	w.n += len(p)
	return len(p), nil
}

// A build may be silent as long as the user allows, no longer: with
// max-silent-time set, a builder that never answers loses the
// connection after it and the stall timeout; without, the watch leaves
// the build alone.
func TestStalledBuild(t *testing.T) {
	for _, proto := range []string{"ssh", "ssh-ng"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			const timeout = 200 * time.Millisecond
			b := newStallBuilder(t, proto, func(b *stallBuilder) {})
			_, g := stallHook(t, proto+"://b1", b, timeout)
			d := testDrv()
			done := make(chan error, 1)
			go func() {
				_, err := g.BuildDerivation("/nix/store/00000000000000000000000000000000-x.drv", d, nil, store.BuildOptions{MaxSilentTime: time.Second})
				done <- err
			}()
			var se *stallError
			select {
			case err := <-done:
				if !errors.As(err, &se) {
					t.Errorf("BuildDerivation = %v, want a *stallError", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("BuildDerivation still waits on a silent builder after 10 s (max-silent-time 1 s)")
			}

			// No limits: the watch does not end it.
			b2 := newStallBuilder(t, proto, func(b *stallBuilder) {})
			_, g2 := stallHook(t, proto+"://b1", b2, timeout)
			go func() {
				_, err := g2.BuildDerivation("/nix/store/00000000000000000000000000000000-x.drv", d, nil, store.BuildOptions{})
				done <- err
			}()
			select {
			case err := <-done:
				t.Errorf("BuildDerivation without max-silent-time returned %v", err)
			case <-time.After(5 * timeout):
			}
		})
	}
}

func testDrv() *drv.Derivation {
	return &drv.Derivation{
		Outputs:  []drv.Output{{Name: "out", Path: "/nix/store/00000000000000000000000000000000-x"}},
		Platform: "x86_64-linux",
		Builder:  "/bin/sh",
	}
}
