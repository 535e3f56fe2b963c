// SPDX-License-Identifier: MIT

package daemon

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// fake is the daemon end of an in-memory connection.
type fake struct {
	r *wire.Reader
	w *wire.Writer
}

// hello is what a daemon at version v sends after the client's greeting,
// up to and including the startup messages' LAST.
func hello(v, trust uint64) []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.Uint64(magic2)
	w.Uint64(v)
	if v >= 1<<8|33 {
		w.String("2.99.0")
	}
	if v >= 1<<8|35 {
		w.Uint64(trust)
	}
	w.Uint64(stderrLast)
	w.Flush()
	return b.Bytes()
}

// newFakeClient connects a Client to serve, which runs as the daemon
// after the handshake at version v.
func newFakeClient(tb testing.TB, v uint64, opts Options, serve func(f *fake)) *Client {
	tb.Helper()
	c, err := dialFake(tb, v, 0, opts, serve)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func dialFake(tb testing.TB, v, trust uint64, opts Options, serve func(f *fake)) (*Client, error) {
	tb.Helper()
	cr, sw := io.Pipe() // daemon → client
	sr, cw := io.Pipe() // client → daemon
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sw.Close()
		f := &fake{r: wire.NewReader(sr), w: wire.NewWriter(sw)}
		for range 2 { // magic, version
			if _, err := f.r.Uint64(); err != nil {
				return
			}
		}
		f.w.Raw(hello(v, trust)[:16])
		f.w.Flush()
		for range 2 { // CPU affinity, reserveSpace
			if _, err := f.r.Uint64(); err != nil {
				return
			}
		}
		f.w.Raw(hello(v, trust)[16:])
		f.w.Flush()
		serve(f)
	}()
	tb.Cleanup(func() {
		cw.Close()
		cr.Close()
		<-done
	})
	return New(cr, cw, opts)
}

func (f *fake) msg(code uint64, args ...any) {
	f.w.Uint64(code)
	for _, a := range args {
		switch a := a.(type) {
		case int:
			f.w.Uint64(uint64(a))
		case uint64:
			f.w.Uint64(a)
		case string:
			f.w.String(a)
		default:
			panic(a)
		}
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name        string
		v, trust    uint64
		known, ok   bool
		wantErr     string
		wantVersion uint64
	}{
		{name: "nix 2.8", v: 0x122, wantVersion: 0x122},
		{name: "trusted", v: 0x123, trust: 1, known: true, ok: true, wantVersion: 0x123},
		{name: "untrusted", v: 0x123, trust: 2, known: true, wantVersion: 0x123},
		{name: "newer", v: 0x126, trust: 1, known: true, ok: true, wantVersion: 0x123},
		{name: "bad trust", v: 0x123, trust: 3, wantErr: "invalid trust value 3"},
		{name: "old", v: 0x114, wantErr: "unsupported Nix daemon protocol version 1.20"},
		{name: "major 2", v: 0x207, wantErr: "unsupported Nix daemon protocol version 2.7"},
		{name: "oldest", v: 0x115, wantVersion: 0x115},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialFake(t, tt.v, tt.trust, Options{}, func(*fake) {})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Version() != tt.wantVersion {
				t.Errorf("Version() = %#x, want %#x", c.Version(), tt.wantVersion)
			}
			if known, ok := c.Trusted(); known != tt.known || ok != tt.ok {
				t.Errorf("Trusted() = %v, %v; want %v, %v", known, ok, tt.known, tt.ok)
			}
		})
	}
}

func TestHandshakeGarbage(t *testing.T) {
	var sink bytes.Buffer
	_, err := New(strings.NewReader("Welcome to builder1!\n"), &sink, Options{Host: "b1"})
	if err == nil || !strings.Contains(err.Error(), `"Welcome to builder1!\n"`) || !strings.Contains(err.Error(), "b1: ") {
		t.Errorf("New(garbage) = %v, want the garbage quoted", err)
	}
	_, err = New(strings.NewReader(""), &sink, Options{})
	if err == nil || !strings.Contains(err.Error(), "remote closed the connection") {
		t.Errorf("New(EOF) = %v, want remote closed", err)
	}
}

// TestStartupError: a daemon that refuses the client at the handshake, as
// Lix ≥2.94 does for clients older than 1.35.
func TestStartupError(t *testing.T) {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.Uint64(magic2)
	w.Uint64(0x123)
	w.String("2.94.0")
	w.Uint64(0)
	w.Uint64(stderrError)
	w.String("Error")
	w.Uint64(0)
	w.String("Error")
	w.String("the Nix client version is too old")
	w.Uint64(0)
	w.Uint64(0)
	w.Flush()
	_, err := New(&b, io.Discard, Options{Host: "lix"})
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "the Nix client version is too old" || !strings.Contains(err.Error(), "lix: handshake: ") {
		t.Errorf("New() = %v, want the daemon's refusal", err)
	}
}

func TestMessages(t *testing.T) {
	var lines, phases []string
	opts := Options{
		Log:   func(l []byte) { lines = append(lines, string(l)) },
		Phase: func(p string) { phases = append(phases, p) },
	}
	c := newFakeClient(t, 0x123, opts, func(f *fake) {
		f.r.Uint64()
		f.r.String()
		f.msg(stderrNext, "a warning\n")
		f.msg(stderrStartActivity, 7, 3, 105, "building '/nix/store/x.drv'", 2, fieldString, "/nix/store/x.drv", fieldInt, 1, 0)
		f.msg(stderrResult, 7, resBuildLogLine, 1, fieldString, "compiling foo")
		f.msg(stderrResult, 7, resSetPhase, 1, fieldString, "buildPhase")
		f.msg(stderrResult, 7, 105, 4, fieldInt, 1, fieldInt, 2, fieldInt, 3, fieldInt, 4)
		f.msg(stderrResult, 7, resBuildLogLine, 1, fieldString, "")
		f.msg(stderrStopActivity, 7)
		f.msg(stderrLast, 1)
		f.w.Flush()
	})
	ok, err := c.IsValidPath("/nix/store/00000000000000000000000000000000-x")
	if err != nil || !ok {
		t.Fatalf("IsValidPath() = %v, %v", ok, err)
	}
	if want := []string{"a warning", "compiling foo", ""}; !equal(lines, want) {
		t.Errorf("Log lines = %q, want %q", lines, want)
	}
	if want := []string{"buildPhase"}; !equal(phases, want) {
		t.Errorf("phases = %q, want %q", phases, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRemoteErrors(t *testing.T) {
	tests := []struct {
		name    string
		v       uint64
		send    func(f *fake)
		want    string
		trusted bool // matches ErrNotTrusted
		fatal   bool
		hangUp  bool // the daemon closes the stream after send
	}{
		{
			name: "error struct",
			v:    0x123,
			send: func(f *fake) {
				f.msg(stderrError, "Error", 0, "Error", "path '\x1b[35;1m/nix/store/x\x1b[0m' is not valid\n", 0, 2, 0, "while doing a", 0, "while doing b")
			},
			want: "daemon: h: IsValidPath /nix/store/00000000000000000000000000000000-x: path '/nix/store/x' is not valid\n… while doing a\n… while doing b",
		},
		{
			name: "old error",
			v:    0x119,
			send: func(f *fake) {
				f.msg(stderrError, "cannot add path '/nix/store/x' because it lacks a valid signature", 1)
			},
			want:    "lacks a valid signature; the SSH user on the builder is not trusted: add it to trusted-users there, or set require-sigs = false",
			trusted: true,
		},
		{
			name: "not privileged",
			v:    0x123,
			send: func(f *fake) {
				f.msg(stderrError, "Error", 0, "Error", "you are not privileged to build input-addressed derivations", 0, 0)
			},
			want:    "add it to trusted-users there",
			trusted: true,
		},
		{
			name:  "unknown message",
			v:     0x123,
			send:  func(f *fake) { f.msg(0x12345678) },
			want:  "unknown message type 0x12345678",
			fatal: true,
		},
		{
			name:  "position",
			v:     0x123,
			send:  func(f *fake) { f.msg(stderrError, "Error", 0, "Error", "x", 1) },
			want:  "error with a position",
			fatal: true,
		},
		{
			name:  "huge log line",
			v:     0x123,
			send:  func(f *fake) { f.msg(stderrNext, uint64(1<<40)) },
			want:  "log message of 1099511627776 bytes is longer than",
			fatal: true,
		},
		{
			name:  "many fields",
			v:     0x123,
			send:  func(f *fake) { f.msg(stderrResult, 1, 101, 1<<30) },
			want:  "fields of 1073741824 entries",
			fatal: true,
		},
		{
			name:  "read outside upload",
			v:     0x123,
			send:  func(f *fake) { f.msg(stderrRead, 100) },
			want:  "STDERR_READ",
			fatal: true,
		},
		{
			name:   "eof",
			v:      0x123,
			send:   func(f *fake) { f.msg(stderrNext) },
			want:   "remote closed the connection",
			fatal:  true,
			hangUp: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClient(t, tt.v, Options{Host: "h"}, func(f *fake) {
				f.r.Uint64()
				f.r.String()
				tt.send(f)
				f.w.Flush()
				if tt.hangUp {
					return
				}
				// A second request, if the stream is still in step.
				if _, err := f.r.Uint64(); err == nil {
					f.r.String()
					f.msg(stderrLast, 0)
					f.w.Flush()
				}
			})
			_, err := c.IsValidPath("/nix/store/00000000000000000000000000000000-x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("IsValidPath() error = %v, want %q", err, tt.want)
			}
			if got := errors.Is(err, ErrNotTrusted); got != tt.trusted {
				t.Errorf("errors.Is(%v, ErrNotTrusted) = %v, want %v", err, got, tt.trusted)
			}
			_, err = c.IsValidPath("/nix/store/00000000000000000000000000000000-x")
			if got := errors.Is(err, ErrBroken); got != tt.fatal {
				t.Errorf("second call: %v; broken = %v, want %v", err, got, tt.fatal)
			}
		})
	}
}

// TestUploadRead: daemons at 1.21 and 1.22 pull the NAR of AddToStoreNar
// with STDERR_READ.
func TestUploadRead(t *testing.T) {
	nar := nixtest.NarFile(bytes.Repeat([]byte("x"), 100000), false)
	info := store.PathInfo{Path: nixtest.RandomStorePath("p"), NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)}
	var got bytes.Buffer
	c := newFakeClient(t, 0x115, Options{}, func(f *fake) {
		if op, _ := f.r.Uint64(); op != opAddToStoreNar {
			t.Errorf("op %d, want AddToStoreNar", op)
		}
		for range 3 {
			f.r.String()
		}
		f.r.Strings()
		f.r.Uint64()
		f.r.Uint64()
		f.r.Uint64()
		f.r.Strings()
		f.r.String()
		f.r.Uint64()
		f.r.Uint64()
		for got.Len() < len(nar) {
			f.msg(stderrRead, 30000)
			f.w.Flush()
			b, err := f.r.BytesMax(nil, 30000)
			if err != nil || len(b) == 0 {
				t.Errorf("read answer: %d bytes, %v", len(b), err)
				return
			}
			got.Write(b)
		}
		f.msg(stderrLast)
		f.w.Flush()
	})
	if err := c.AddToStoreNar(info, bytes.NewReader(nar)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), nar) {
		t.Errorf("daemon got %d bytes, want the %d of the NAR", got.Len(), len(nar))
	}
}

// TestUploadEarlyError: a daemon that fails an upload before reading all
// of it (as current Nix does for an unsigned path) still gets the
// terminating frame, and the Client stays usable.
func TestUploadEarlyError(t *testing.T) {
	nar := nixtest.NarFile(bytes.Repeat([]byte("y"), 4<<20), false)
	infos := []store.PathInfo{
		{Path: nixtest.RandomStorePath("a"), NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)},
		{Path: nixtest.RandomStorePath("b"), NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)},
	}
	c := newFakeClient(t, 0x123, Options{}, func(f *fake) {
		// QueryValidPaths: none.
		f.r.Uint64()
		f.r.Strings()
		f.r.Uint64()
		f.msg(stderrLast, 0)
		f.w.Flush()
		if op, _ := f.r.Uint64(); op != opAddMultipleToStore {
			t.Errorf("op %d, want AddMultipleToStore", op)
		}
		f.r.Uint64()
		f.r.Uint64()
		f.msg(stderrError, "Error", 0, "Error", "cannot add path 'a' because it lacks a signature by a trusted key", 0, 0)
		f.w.Flush()
		// The client's writer is blocked on the pipe now; give its reader
		// time to see the error, as a real socket's buffer would, so that
		// the check below does not depend on how goroutines are scheduled.
		time.Sleep(100 * time.Millisecond)
		// Drain the frames, as FramedSource's destructor does.
		var total uint64
		for {
			n, err := f.r.Uint64()
			if err != nil {
				t.Errorf("draining frames: %v", err)
				return
			}
			if n == 0 {
				break
			}
			if n > bufSize {
				t.Errorf("frame of %d bytes", n)
			}
			io.CopyN(io.Discard, f.r.Underlying(), int64(n))
			total += n
		}
		if total >= 2*uint64(len(nar)) {
			t.Errorf("client sent all %d bytes after the error", total)
		}
		// The next request.
		f.r.Uint64()
		f.r.String()
		f.msg(stderrLast, 1)
		f.w.Flush()
	})
	err := c.AddToStoreNars(infos, func(int) (io.Reader, error) { return bytes.NewReader(nar), nil })
	if !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("AddToStoreNars() = %v, want ErrNotTrusted", err)
	}
	if ok, err := c.IsValidPath(infos[0].Path); err != nil || !ok {
		t.Errorf("IsValidPath after the refused upload = %v, %v", ok, err)
	}
}
