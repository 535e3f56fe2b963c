// SPDX-License-Identifier: MIT

package builder

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/offload-nix/offload/pkg/daemon"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The daemon's log reaches the build log only after accept (SetSink), as
// lines, with phases as @nix lines; what came before is kept for error
// messages only.
func TestNGLogSink(t *testing.T) {
	tail := newPushTail()
	l := &ngLog{t: tail}
	l.line([]byte("before accept"))
	var sink lockedBuffer
	tail.SetSink(&sink)
	l.phase("buildPhase")
	l.line([]byte("a build line"))
	l.line(nil)
	l.phase(`odd "phase"`)
	close(tail.done)
	tail.Wait()
	want := "@nix {\"action\":\"setPhase\",\"phase\":\"buildPhase\"}\n" +
		"a build line\n" +
		"\n" +
		"@nix {\"action\":\"setPhase\",\"phase\":\"odd \\\"phase\\\"\"}\n"
	if got := sink.String(); got != want {
		t.Errorf("build log:\n%q\nwant\n%q", got, want)
	}
	if last := tail.Last(); !strings.HasPrefix(last, "before accept\n") {
		t.Errorf("tail = %q, want it to start with the line before accept", last)
	}
}

func TestNotTrustedError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  *notTrustedError
		want []string
	}{
		{"handshake", &notTrustedError{uri: "ssh-ng://b1", user: "builder"},
			[]string{`nix-daemon on 'ssh-ng://b1' does not trust the SSH user "builder"`, "trusted-users"}},
		{"no user", &notTrustedError{uri: "ssh-ng://b1"},
			[]string{"does not trust the SSH user:", "trusted-users"}},
		{"upload", &notTrustedError{uri: "ssh-ng://b1", user: "root", remote: &daemon.RemoteError{
			Op: "AddToStoreNar", Path: "/nix/store/x-dep", Msg: "cannot add path '/nix/store/x-dep' because it lacks a valid signature"}},
			[]string{"the builder refused AddToStoreNar: cannot add path '/nix/store/x-dep' because it lacks a valid signature; nix-daemon", "require-sigs = false there is not enough"}},
		{"build", &notTrustedError{uri: "ssh-ng://b1", remote: &daemon.RemoteError{
			Op: "BuildDerivation", Path: "/nix/store/x.drv", Msg: "you are not privileged to build input-addressed derivations"}},
			[]string{"refused BuildDerivation: /nix/store/x.drv: you are not privileged"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.err.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Error() = %q, lacks %q", got, w)
				}
			}
			if !errors.Is(tt.err, daemon.ErrNotTrusted) {
				t.Errorf("not ErrNotTrusted")
			}
		})
	}
}

// explain rewrites only refusals for lack of trust.
func TestNGExplain(t *testing.T) {
	s := &ngStore{uri: "ssh-ng://b1", user: "u"}
	other := &daemon.RemoteError{Op: "AddToStoreNar", Msg: "disk full"}
	if got := s.explain(other); got != error(other) {
		t.Errorf("explain(other) = %v, want it unchanged", got)
	}
	if got := s.explain(nil); got != nil {
		t.Errorf("explain(nil) = %v", got)
	}
	refused := &daemon.RemoteError{Op: "AddToStoreNar", Msg: "cannot add path '/nix/store/x' because it lacks a valid signature"}
	var nt *notTrustedError
	if got := s.explain(refused); !errors.As(got, &nt) || nt.remote != refused {
		t.Errorf("explain(refused) = %v, want a *notTrustedError", got)
	}
}

// A build-log line costs no allocation on its way to the pipe.
func BenchmarkNGLogLine(b *testing.B) {
	tail := newPushTail()
	tail.SetSink(io.Discard)
	l := &ngLog{t: tail}
	line := []byte("gcc -O2 -c foo.c -o foo.o -Wall -Wextra -I/nix/store/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-zlib-1.3/include")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)) + 1)
	for b.Loop() {
		l.line(line)
	}
}
