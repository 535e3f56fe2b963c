// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

var stripTests = []struct {
	in, want string
}{
	{"", ""},
	{"plain", "plain"},
	// Nix 2.8's BuildResult.errorMsg, as a builder sends it.
	{"builder for '\x1b[35;1m/nix/store/x-f.drv\x1b[0m' failed with exit code 3", "builder for '/nix/store/x-f.drv' failed with exit code 3"},
	{"\x1b[31;1merror:\x1b[0m x", "error: x"},
	{"a\x1b(Bb", "aBb"},
	{"cut \x1b[1", "cut "},
	{"end\x1b", "end"},
}

func TestStripANSI(t *testing.T) {
	for _, tt := range stripTests {
		if got := stripANSI(tt.in); got != tt.want {
			t.Errorf("stripANSI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzStripANSI(f *testing.F) {
	for _, tt := range stripTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := stripANSI(s)
		if strings.IndexByte(got, 0x1b) >= 0 {
			t.Errorf("stripANSI(%q) = %q, still has ESC", s, got)
		}
		if len(got) > len(s) {
			t.Errorf("stripANSI(%q) = %q, longer than its input", s, got)
		}
	})
}

func openState(t *testing.T, path string, ms []spec.Machine) *slots.File {
	t.Helper()
	f, err := slots.Open(path, ms, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The upload token serialises uploads to one builder: a hook waits while
// another holds it, takes it when it is released, says it waited (so it
// asks the builder again), and gives up waiting after uploadWait.
func TestUploadToken(t *testing.T) {
	defer func(w, p time.Duration) { uploadWait, uploadPoll = w, p }(uploadWait, uploadPoll)
	uploadWait, uploadPoll = 2*time.Second, 5*time.Millisecond

	ms := []spec.Machine{{URI: "ssh://b1", Name: "b1", Host: "b1", Scheme: "ssh", MaxJobs: 2}}
	path := filepath.Join(t.TempDir(), "slots")
	other := openState(t, path, ms)
	h := &hook{
		env:   Env{Now: time.Now},
		log:   hookproto.NewLogger(io.Discard, 0),
		state: openState(t, path, ms),
	}
	ctx := context.Background()

	rel, waited := h.uploadToken(ctx, &ms[0])
	if waited {
		t.Errorf("uploadToken waited for a free token")
	}
	rel()

	held, ok := other.TryUpload("ssh://b1")
	if !ok {
		t.Fatal("TryUpload on a free token failed")
	}
	start := time.Now() // before the timer starts, so the release is 100 ms after it at least
	time.AfterFunc(100*time.Millisecond, held)
	rel, waited = h.uploadToken(ctx, &ms[0])
	if !waited || time.Since(start) < 100*time.Millisecond {
		t.Errorf("uploadToken returned after %v, waited=%v; want a wait for the holder", time.Since(start), waited)
	}
	if _, ok := other.TryUpload("ssh://b1"); ok {
		t.Errorf("the token is free while uploadToken's caller holds it")
	}
	rel()

	// A holder that never lets go is waited for only uploadWait.
	uploadWait = 150 * time.Millisecond
	held, ok = other.TryUpload("ssh://b1")
	if !ok {
		t.Fatal("TryUpload after release failed")
	}
	defer held()
	start = time.Now()
	_, waited = h.uploadToken(ctx, &ms[0])
	if d := time.Since(start); !waited || d < uploadWait || d > 5*time.Second {
		t.Errorf("uploadToken gave up after %v (waited=%v), want about %v", d, waited, uploadWait)
	}

	// Cancelling ends the wait at once.
	uploadWait = time.Minute
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	h.uploadToken(cctx, &ms[0])
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("uploadToken took %v after its context was cancelled", d)
	}

	// Without shared state there is nothing to wait for.
	h.state = nil
	if _, waited := h.uploadToken(ctx, &ms[0]); waited {
		t.Errorf("uploadToken without state waited")
	}
}
