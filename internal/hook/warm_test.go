// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"io"
	"testing"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

// A hook waiting for a full builder connects to it meanwhile; the result,
// a connection or why there is none, goes to the accept that follows, for
// that builder only.
func TestWarmUp(t *testing.T) {
	ms := []spec.Machine{
		{URI: "bogus://b1", Name: "b1", Scheme: "bogus", MaxJobs: 1},
		{URI: "bogus://b2", Name: "b2", Scheme: "bogus", MaxJobs: 1},
	}
	h := &hook{machines: ms, log: hookproto.NewLogger(io.Discard, 0)}
	ctx := context.Background()

	// Nothing only full: nothing to warm up.
	h.warmUp(ctx, &pick.Decision{Reasons: []pick.Reason{{Reject: pick.RejectUnhealthy}, {Reject: pick.RejectSystem}}})
	if h.warm != nil {
		t.Fatal("warmed up without a full builder")
	}

	// b2 is full (b1 unhealthy): b2 is connected to.
	d := &pick.Decision{Reasons: []pick.Reason{{Reject: pick.RejectUnhealthy}, {Reject: pick.RejectFull}}}
	h.warmUp(ctx, d)
	if h.warm == nil || h.warm.m.URI != "bogus://b2" {
		t.Fatalf("warm = %+v, want b2", h.warm)
	}
	first := h.warm
	h.warmUp(ctx, d) // a second wait: the same connect
	if h.warm != first {
		t.Error("a second wait started a second connect")
	}
	// Its failure is the accept's failed connect, not a reason to try
	// again.
	c, ok, err := h.takeWarm(&ms[1])
	if !ok || c != nil || err == nil {
		t.Errorf("takeWarm(b2) = %v, %v, %v; want the failed connect", c, ok, err)
	}
	if h.warm != nil {
		t.Error("the warm connection was not handed over")
	}

	// A warm connection to another builder is closed, not used.
	h.warmUp(ctx, d)
	if c, ok, err := h.takeWarm(&ms[0]); ok || c != nil || err != nil {
		t.Errorf("takeWarm(b1) with b2 warm = %v, %v, %v", c, ok, err)
	}
	if h.warm != nil {
		t.Error("the warm connection to b2 is still kept")
	}
}
