// SPDX-License-Identifier: MIT

package serve

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// fake is an in-process server for the cases a real nix-store never
// produces: hostile lengths, truncated streams, wrong magic.
type fake struct {
	r *wire.Reader // what the client sent
	w *wire.Writer // to the client
}

const fakeStderr = "error: the fake server gave up"

// startFake runs serve as the server side of a new connection and returns
// the client's end. serve gets the raw streams; the connection closes when
// serve returns.
func startFake(t testing.TB, serve func(f *fake)) (io.Reader, io.Writer) {
	t.Helper()
	c2sR, c2sW := io.Pipe()
	s2cR, s2cW := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f := &fake{r: wire.NewReader(c2sR), w: wire.NewWriter(s2cW)}
		serve(f)
		f.w.Flush()
		s2cW.Close()
		c2sR.Close()
	}()
	t.Cleanup(func() {
		// Unblock a server still writing or reading, then wait for it.
		s2cR.Close()
		c2sW.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("fake server did not finish")
		}
	})
	return s2cR, c2sW
}

// handshake answers the client's greeting with version v.
// serverHello is what a server of version v answers the handshake with.
func serverHello(v uint64) []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.Uint64(magic2)
	w.Uint64(v)
	w.Flush()
	return b.Bytes()
}

func (f *fake) handshake(t testing.TB, v uint64) bool {
	m, err := f.r.Uint64()
	if err != nil || m != magic1 {
		t.Errorf("fake: magic = %#x, %v", m, err)
		return false
	}
	cv, err := f.r.Uint64()
	if err != nil || cv != ClientVersion {
		t.Errorf("fake: client version = %#x, %v", cv, err)
		return false
	}
	f.w.Uint64(magic2)
	f.w.Uint64(v)
	f.w.Flush()
	return true
}

// newFakeClient returns a client connected to a fake server at version
// 2.7 that runs serve after the handshake.
func newFakeClient(t testing.TB, serve func(f *fake)) *Client {
	t.Helper()
	r, w := startFake(t, func(f *fake) {
		if f.handshake(t, 0x207) {
			serve(f)
		}
	})
	c, err := New(r, w, Options{Host: "fake", Stderr: func() string { return fakeStderr + "\n" }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHandshakeGarbage(t *testing.T) {
	tests := []struct {
		name, out, want string
	}{
		{"motd", "Welcome to the builder!\nHave fun.\n", `"Welcome to the builder!\nHave fun.\n"`},
		{"short", "hi\n", `"hi\n"`},
		{"magic after text", "hi\n\xcb\xee\x52\x54\x00\x00\x00\x00", `"hi\n\xcb\xeeRT\x00\x00\x00\x00"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w := startFake(t, func(f *fake) {
				f.r.Uint64()
				f.r.Uint64()
				f.w.Raw([]byte(tt.out))
			})
			_, err := New(r, w, Options{Host: "b1"})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, want := range []string{"serve: b1: ", tt.want, "before 'nix-store --serve' started", ".bashrc"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New() error = %v\nwant it to contain %s", err, want)
				}
			}
		})
	}
}

func TestHandshakeVersions(t *testing.T) {
	tests := []struct {
		server, want uint64 // want 0: refused
	}{
		{0x204, 0},
		{0x205, 0x205},
		{0x206, 0x206},
		{0x207, 0x207},
		{0x208, 0x207}, // Nix ≥ 2.35
		{0x2ff, 0x207},
		{0x105, 0},
		{0x307, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%#x", tt.server), func(t *testing.T) {
			r, w := startFake(t, func(f *fake) { f.handshake(t, tt.server) })
			c, err := New(r, w, Options{})
			if tt.want == 0 {
				if err == nil || !strings.Contains(err.Error(), "unsupported 'nix-store --serve' protocol version") {
					t.Errorf("New(server %#x) error = %v, want unsupported version", tt.server, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(server %#x): %v", tt.server, err)
			}
			if c.Version() != tt.want || c.ServerVersion() != tt.server {
				t.Errorf("New(server %#x): Version() = %#x, ServerVersion() = %#x; want %#x", tt.server, c.Version(), c.ServerVersion(), tt.want)
			}
		})
	}
}

func TestHandshakeEOF(t *testing.T) {
	r, w := startFake(t, func(f *fake) {})
	_, err := New(r, w, Options{Stderr: func() string { return "bash: nix-store: command not found\n" }})
	if err == nil || !strings.Contains(err.Error(), "remote closed the connection") ||
		!strings.Contains(err.Error(), "remote stderr: bash: nix-store: command not found") {
		t.Errorf("New() error = %v, want EOF with the remote's stderr", err)
	}
}

// skipQueryPathInfos reads a QueryPathInfos request.
func (f *fake) skipQueryPathInfos(t *testing.T) {
	if op, _ := f.r.Uint64(); op != cmdQueryPathInfos {
		t.Errorf("fake: op %d, want QueryPathInfos", op)
	}
	f.r.Strings()
}

// allocated returns the bytes allocated while running fn.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxRefs is a QueryPathInfos reply for path with n references of the
// longest length allowed; it stops when the client stops reading.
func maxRefs(path string, n int) func(w *wire.Writer) {
	return func(w *wire.Writer) {
		w.String(path)
		w.String("")
		w.Uint64(uint64(n))
		s := strings.Repeat("x", maxPath)
		for range n {
			if w.String(s) != nil {
				return
			}
		}
	}
}

func TestHostileReplies(t *testing.T) {
	const p = "/nix/store/00000000000000000000000000000000-p"
	tests := []struct {
		name  string
		reply func(w *wire.Writer)
		err   string
		alloc uint64 // at most this many bytes allocated
	}{
		{
			name:  "huge path",
			reply: func(w *wire.Writer) { w.Uint64(1 << 60) },
			err:   "path of 1152921504606846976 bytes is longer than 4096",
			alloc: 1 << 20,
		},
		{
			name: "huge reference list",
			reply: func(w *wire.Writer) {
				w.String(p)
				w.String("")
				w.Uint64(1 << 40)
			},
			err:   "references of 1099511627776 entries is longer than",
			alloc: 1 << 20,
		},
		{
			name: "long narHash",
			reply: func(w *wire.Writer) {
				w.String(p)
				w.String("")
				w.Uint64(0)
				w.Uint64(1)
				w.Uint64(1)
				w.Uint64(1 << 20)
			},
			err:   "narHash of 1048576 bytes is longer than 4096",
			alloc: 1 << 20,
		},
		{
			// A million references of 4 KiB each: stopped by the reply
			// budget, not by the per-string or per-list caps.
			name:  "reply budget",
			reply: maxRefs(p, maxList),
			err:   "reply is larger than",
			alloc: 2 * maxReply,
		},
		{
			// 5000 references of 4 KiB each: a short list, each string
			// within its cap, the strings together over the budget.
			name:  "reply budget by strings",
			reply: maxRefs(p, 5000),
			err:   "reply is larger than",
			alloc: 2 * maxReply,
		},
		{
			name: "unasked path",
			reply: func(w *wire.Writer) {
				w.String("/nix/store/11111111111111111111111111111111-q")
			},
			err: "was not asked for",
		},
		{
			name:  "truncated",
			reply: func(w *wire.Writer) { w.String(p); w.Uint64(10); w.Raw([]byte("abc")) },
			err:   "remote closed the connection (unexpected EOF); remote stderr: " + fakeStderr,
		},
		{
			name:  "bad padding",
			reply: func(w *wire.Writer) { w.Uint64(3); w.Raw([]byte("abc\x00\x00\x01\x00\x00")) },
			err:   "non-zero padding",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClient(t, func(f *fake) {
				f.skipQueryPathInfos(t)
				tt.reply(f.w)
			})
			var err error
			n := allocated(func() { _, err = c.QueryPathInfos([]string{p}) })
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("QueryPathInfos error = %v, want %q", err, tt.err)
			}
			if tt.alloc != 0 && n > tt.alloc {
				t.Errorf("QueryPathInfos allocated %d bytes, want at most %d", n, tt.alloc)
			}
			if _, err := c.QueryValidPaths([]string{p}, false, false); !errors.Is(err, ErrBroken) {
				t.Errorf("QueryValidPaths after a failure: %v, want ErrBroken", err)
			}
		})
	}
}

func TestDumpStorePathShort(t *testing.T) {
	const p = "/nix/store/00000000000000000000000000000000-p"
	nar := nixtest.NarFile([]byte(strings.Repeat("x", 200000)), false)
	c := newFakeClient(t, func(f *fake) {
		f.r.Uint64()
		f.r.String()
		f.w.Raw(nar[:len(nar)/2])
	})
	var got bytes.Buffer
	err := c.DumpStorePath(p, &got, uint64(len(nar)))
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), p) ||
		!strings.Contains(err.Error(), fmt.Sprintf("after %d of %d bytes", len(nar)/2, len(nar))) {
		t.Errorf("DumpStorePath(short stream) = %v, want ErrUnexpectedEOF with the path and the counts", err)
	}
	if !bytes.Equal(got.Bytes(), nar[:len(nar)/2]) {
		t.Errorf("DumpStorePath wrote %d bytes, want the %d received", got.Len(), len(nar)/2)
	}
}

// readAddToStoreNar reads one AddToStoreNar request and its NAR.
func (f *fake) readAddToStoreNar() (store.PathInfo, []byte, error) {
	var p store.PathInfo
	op, err := f.r.Uint64()
	if err != nil {
		return p, nil, err
	}
	if op != cmdAddToStoreNar {
		return p, nil, fmt.Errorf("op %d, want AddToStoreNar", op)
	}
	p.Path, _ = f.r.String()
	p.Deriver, _ = f.r.String()
	p.NarHash, _ = f.r.String()
	p.References, _ = f.r.Strings()
	if rt, _ := f.r.Uint64(); rt != 0 {
		return p, nil, fmt.Errorf("registrationTime %d", rt)
	}
	p.NarSize, _ = f.r.Uint64()
	if ultimate, _ := f.r.Uint64(); ultimate != 0 {
		return p, nil, fmt.Errorf("ultimate %d", ultimate)
	}
	p.Sigs, _ = f.r.Strings()
	p.CA, err = f.r.String()
	if err != nil {
		return p, nil, err
	}
	nar := make([]byte, p.NarSize)
	_, err = io.ReadFull(f.r.Underlying(), nar)
	return p, nar, err
}

// TestAddToStoreNarsPipelined: the fake server reads every request before
// it acknowledges any, which deadlocks a client that waits for each reply.
func TestAddToStoreNarsPipelined(t *testing.T) {
	cl := nixtest.MakeClosure()
	cl.Infos[2].Deriver = "/nix/store/22222222222222222222222222222222-a.drv"
	cl.Infos[2].Sigs = []string{"cache:sig"}
	cl.Infos[0].CA = "fixed:r:sha256:1111111111111111111111111111111111111111111111111111"
	got := make(chan []store.PathInfo, 1)
	c := newFakeClient(t, func(f *fake) {
		var infos []store.PathInfo
		for i := range cl.Infos {
			p, nar, err := f.readAddToStoreNar()
			if err != nil {
				t.Errorf("fake: request %d: %v", i, err)
				return
			}
			if !bytes.Equal(nar, cl.NARs[i]) {
				t.Errorf("fake: NAR %d differs", i)
			}
			infos = append(infos, p)
		}
		got <- infos
		for range cl.Infos {
			f.w.Uint64(1)
		}
	})
	done := make(chan error, 1)
	go func() { done <- c.AddToStoreNars(cl.Infos, cl.Open) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AddToStoreNars did not pipeline: it is waiting for a reply the server sends only after all requests")
	}
	infos := <-got
	for i, p := range infos {
		want := cl.Infos[i]
		digest, _ := want.NarDigest()
		want.NarHash = hex.EncodeToString(digest[:]) // sent as bare hex, as Nix clients do
		if fmt.Sprint(p) != fmt.Sprint(want) {
			t.Errorf("request %d = %+v, want %+v", i, p, want)
		}
	}
}

func TestAddToStoreNarsErrors(t *testing.T) {
	const p0 = "/nix/store/00000000000000000000000000000000-p"
	nar := nixtest.NarFile([]byte("x"), false)
	good := store.PathInfo{Path: p0, NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)}
	tests := []struct {
		name   string
		info   store.PathInfo
		open   func(int) (io.Reader, error)
		ack    uint64
		err    string
		usable bool // the client still works afterwards
	}{
		{name: "bad hash", info: store.PathInfo{Path: p0, NarSize: 1, NarHash: "md5:xyz"}, err: "not sha256", usable: true},
		{name: "zero size", info: store.PathInfo{Path: p0, NarHash: nixtest.NarHash(nil)}, err: "narSize is 0", usable: true},
		{name: "open fails", info: good, open: func(int) (io.Reader, error) { return nil, errors.New("no such file") }, err: "opening NAR: no such file"},
		{name: "short", info: good, open: func(int) (io.Reader, error) { return bytes.NewReader(nar[:50]), nil }, err: fmt.Sprintf("NAR has 50 bytes, want %d", len(nar))},
		{name: "long", info: good, open: func(int) (io.Reader, error) { return io.MultiReader(bytes.NewReader(nar), strings.NewReader("!")), nil }, err: "longer than its narSize"},
		{name: "bad ack", info: good, ack: 7, err: "AddToStoreNar " + p0 + ": unexpected reply 7"},
		{name: "eof", info: good, ack: 0, err: "AddToStoreNar " + p0 + ": remote closed the connection (unexpected EOF); remote stderr: " + fakeStderr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClient(t, func(f *fake) {
				if _, _, err := f.readAddToStoreNar(); err != nil {
					return
				}
				if tt.ack != 0 {
					f.w.Uint64(tt.ack)
				}
			})
			open := tt.open
			if open == nil {
				open = func(int) (io.Reader, error) { return bytes.NewReader(nar), nil }
			}
			err := c.AddToStoreNars([]store.PathInfo{tt.info}, open)
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "serve: ") {
				t.Fatalf("AddToStoreNars error = %v, want %q", err, tt.err)
			}
			_, err = c.QueryValidPaths(nil, false, false)
			if tt.usable != !errors.Is(err, ErrBroken) {
				t.Errorf("after %q: QueryValidPaths error = %v, want usable = %v", tt.name, err, tt.usable)
			}
		})
	}
}

// buildResultBytes encodes a store.BuildResult as a server at version v does.
func buildResultBytes(v uint64, st store.Status, msg string, outputs map[string]string) []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.Uint64(uint64(st))
	w.String(msg)
	if v >= 0x203 {
		w.Uint64(1)
		w.Bool(false)
		w.Uint64(1700000000)
		w.Uint64(1700000005)
	}
	if v >= 0x206 {
		w.Uint64(uint64(len(outputs)))
		for id, j := range outputs {
			w.String(id)
			w.String(j)
		}
	}
	w.Flush()
	return b.Bytes()
}

func TestReadBuildResult(t *testing.T) {
	dummy := "sha256:0000000000000000000000000000000000000000000000000000000000000000!out"
	tests := []struct {
		name    string
		version uint64
		in      []byte
		want    string // fmt %v of the result, or the error
	}{
		{"2.2", 0x202, buildResultBytes(0x202, store.PermanentFailure, "boom", nil), "{PermanentFailure boom 0 false 0001-01-01 00:00:00 +0000 UTC 0001-01-01 00:00:00 +0000 UTC []}"},
		{"2.5", 0x205, buildResultBytes(0x205, store.Built, "", nil), "{Built  1 false 2023-11-14 22:13:20 +0000 UTC 2023-11-14 22:13:25 +0000 UTC []}"},
		{"2.7", 0x207, buildResultBytes(0x207, store.Built, "", map[string]string{"sha256:abc!out": `{"id":"sha256:abc!out","outPath":"xyz-t","signatures":[]}`}),
			"{Built  1 false 2023-11-14 22:13:20 +0000 UTC 2023-11-14 22:13:25 +0000 UTC [{out sha256:abc!out xyz-t {\"id\":\"sha256:abc!out\",\"outPath\":\"xyz-t\",\"signatures\":[]}}]}"},
		// Nix ≥ 2.35 talking to a 2.7 client: a dummy hash, no signatures.
		{"2.35 server", 0x207, buildResultBytes(0x207, store.Built, "", map[string]string{dummy: `{"id":"` + dummy + `","outPath":"xyz-t"}`}),
			"{Built  1 false 2023-11-14 22:13:20 +0000 UTC 2023-11-14 22:13:25 +0000 UTC [{out " + dummy + " xyz-t {\"id\":\"" + dummy + "\",\"outPath\":\"xyz-t\"}}]}"},
		{"bad id", 0x207, buildResultBytes(0x207, store.Built, "", map[string]string{"noname": "{}"}), `invalid derivation output id "noname"`},
		{"unknown status", 0x207, buildResultBytes(0x207, 99, "?", nil), "{Status(99) ? 1 false"},
		{"truncated", 0x207, buildResultBytes(0x207, store.Built, "", nil)[:20], "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sbuf []byte
			d := newDecoder(wire.NewReader(bytes.NewReader(tt.in)), &sbuf)
			res, err := readBuildResult(d, tt.version)
			got := fmt.Sprintf("%v", res)
			if err != nil {
				got = err.Error()
			} else {
				for _, tm := range []*time.Time{&res.StartTime, &res.StopTime} {
					if !tm.IsZero() {
						*tm = tm.UTC()
					}
				}
				got = fmt.Sprintf("%v", res)
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("readBuildResult(%s) = %s, want %s", tt.name, got, tt.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	for s := store.Status(0); s < 16; s++ {
		want := s == store.Built || s == store.Substituted || s == store.AlreadyValid || s == store.ResolvesToAlreadyValid
		if s.Success() != want {
			t.Errorf("%v.Success() = %v, want %v", s, s.Success(), want)
		}
	}
	if store.TimedOut.String() != "TimedOut" || store.NoSubstituters.String() != "NoSubstituters" || store.Status(15).String() != "Status(15)" {
		t.Errorf("Status names: %v %v %v", store.TimedOut, store.NoSubstituters, store.Status(15))
	}
}

// TestBuildDerivationRequest decodes what BuildDerivation sends, for each
// negotiated version, as Nix 2.8's opServe and readDerivation read it.
func TestBuildDerivationRequest(t *testing.T) {
	d := &drv.Derivation{
		Outputs: []drv.Output{
			{Name: "out", Path: "/nix/store/o-x"},
			{Name: "dev", Path: "/nix/store/d-x-dev"},
		},
		InputDrvs: []drv.InputDrv{{Path: "/nix/store/i.drv", Outputs: []string{"out"}}},
		InputSrcs: []string{"/nix/store/s1"},
		Platform:  "aarch64-linux",
		Builder:   "/bin/sh",
		Args:      []string{"-c", "true"},
		Env:       []drv.EnvVar{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}},
	}
	opts := store.BuildOptions{MaxSilentTime: 1500 * time.Millisecond, Timeout: time.Hour, MaxLogSize: 1 << 20, KeepFailed: true}
	tests := []struct {
		version uint64
		options []uint64
	}{
		{0x205, []uint64{2, 3600, 1 << 20, 0, 0}},
		{0x207, []uint64{2, 3600, 1 << 20, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(store.VersionString(tt.version), func(t *testing.T) {
			r, w := startFake(t, func(f *fake) {
				if !f.handshake(t, tt.version) {
					return
				}
				var got []string
				op, _ := f.r.Uint64()
				path, _ := f.r.String()
				got = append(got, fmt.Sprint(op), path)
				n, _ := f.r.Uint64()
				for range n {
					for range 4 {
						s, _ := f.r.String()
						got = append(got, s)
					}
				}
				srcs, _ := f.r.Strings()
				platform, _ := f.r.String()
				builder, _ := f.r.String()
				args, _ := f.r.Strings()
				got = append(got, fmt.Sprint(srcs), platform, builder, fmt.Sprint(args))
				n, _ = f.r.Uint64()
				for range n {
					k, _ := f.r.String()
					v, _ := f.r.String()
					got = append(got, k+"="+v)
				}
				for range tt.options {
					o, _ := f.r.Uint64()
					got = append(got, fmt.Sprint(o))
				}
				want := []string{"8", "/nix/store/i-x.drv",
					"dev", "/nix/store/d-x-dev", "", "",
					"out", "/nix/store/o-x", "", "",
					"[/nix/store/s0 /nix/store/s1]", "aarch64-linux", "/bin/sh", "[-c true]",
					"a=2", "z=1"}
				for _, o := range tt.options {
					want = append(want, fmt.Sprint(o))
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("request at %s:\n got %q\nwant %q", store.VersionString(tt.version), got, want)
				}
				f.w.Raw(buildResultBytes(tt.version, store.Built, "", nil))
			})
			c, err := New(r, w, Options{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.BuildDerivation("/nix/store/i-x.drv", d, []string{"/nix/store/s1", "/nix/store/s0", "/nix/store/s1"}, opts)
			if err != nil || res.Status != store.Built {
				t.Errorf("BuildDerivation = %+v, %v", res, err)
			}
		})
	}
}

// writeLog records each Write call.
type writeLog struct{ writes [][]byte }

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestHandshakeOneWrite: magic and version go out in a single write, as
// Nix clients send them (a server that reads the magic and answers before
// reading the version must not see them split across packets).
func TestHandshakeOneWrite(t *testing.T) {
	var w writeLog
	if _, err := New(bytes.NewReader(serverHello(0x207)), &w, Options{}); err != nil {
		t.Fatal(err)
	}
	want := []byte{0xeb, 0x9d, 0x0c, 0x39, 0, 0, 0, 0, 0x07, 0x02, 0, 0, 0, 0, 0, 0}
	if len(w.writes) != 1 || !bytes.Equal(w.writes[0], want) {
		t.Errorf("handshake writes = %x, want one write of %x", w.writes, want)
	}
}

func TestDumpStorePathZeroSize(t *testing.T) {
	c := newFakeClient(t, func(f *fake) {
		if op, err := f.r.Uint64(); err == nil {
			t.Errorf("fake: got op %d, want nothing sent", op)
		}
	})
	if err := c.DumpStorePath("/nix/store/x", io.Discard, 0); err == nil || !strings.Contains(err.Error(), "narSize is 0") {
		t.Errorf("DumpStorePath(narSize 0) = %v, want an error", err)
	}
	if err := c.g.Err(); err != nil {
		t.Errorf("client broken after a local error: %v", err)
	}
}
