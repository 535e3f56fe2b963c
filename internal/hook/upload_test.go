// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

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
