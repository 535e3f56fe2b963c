// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/hookproto"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

func TestSlotMayFree(t *testing.T) {
	tests := []struct {
		rejects []pick.Reject
		want    bool
	}{
		{nil, false},
		{[]pick.Reject{pick.RejectFull}, true},
		{[]pick.Reject{pick.RejectUnhealthy}, false},
		{[]pick.Reject{pick.RejectUnhealthy, pick.RejectSystem}, false},
		{[]pick.Reject{pick.RejectUnhealthy, pick.RejectFull}, true},
		{[]pick.Reject{pick.RejectDrained, pick.RejectUnreachable}, false},
	}
	for _, tt := range tests {
		d := &pick.Decision{Answer: pick.Postpone}
		for _, r := range tt.rejects {
			d.Reasons = append(d.Reasons, pick.Reason{Reject: r})
		}
		if got := slotMayFree(d); got != tt.want {
			t.Errorf("slotMayFree(%v) = %v, want %v", tt.rejects, got, tt.want)
		}
	}
}

// acceptOn owns the slot it reserves: every way out that does not build
// leaves the builder's slots as they were.
func TestAcceptOnReleases(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // refused from now on
	ms, _, err := spec.ParseBuilders(fmt.Sprintf("ssh://root@127.0.0.1:%d x86_64-linux - 2", port), spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := slots.Open(filepath.Join(t.TempDir(), "slots"), ms, slots.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &hook{
		env:         Env{Now: time.Now, Getenv: func(string) string { return "" }},
		cfg:         testConfig(t, "connect-timeout", "2s"),
		log:         hookproto.NewLogger(io.Discard, 0),
		machines:    ms,
		state:       f,
		unreachable: make([]string, len(ms)),
	}
	busy := func() int { return f.Snapshot(nil)[0].Busy }
	req := &hookproto.Request{System: "x86_64-linux", DrvPath: "/nix/store/00000000000000000000000000000000-x.drv"}

	if _, out := h.acceptOn(context.Background(), 0, req, &job{}, "x", "test"); out != unreachable {
		t.Errorf("acceptOn to a closed port = %v, want unreachable", out)
	}
	if n := busy(); n != 0 {
		t.Errorf("%d slots busy after a failed connect, want 0", n)
	}

	// Both slots held elsewhere: nothing to reserve, nothing to free.
	a, _ := f.Acquire(ms[0].URI)
	b, _ := f.Acquire(ms[0].URI)
	if _, out := h.acceptOn(context.Background(), 0, req, &job{}, "x", "test"); out != full {
		t.Errorf("acceptOn to a full builder = %v, want full", out)
	}
	if n := busy(); n != 2 {
		t.Errorf("%d slots busy after a full builder, want the 2 held elsewhere", n)
	}
	a.Release()
	b.Release()

	// Released once by its owner, a slot is not released again by a
	// second call (which would free another hook's).
	r, ok := h.reserve(&ms[0])
	if !ok {
		t.Fatal("reserve on a free builder failed")
	}
	r.release()
	c, _ := f.Acquire(ms[0].URI)
	r.release()
	if n := busy(); n != 1 {
		t.Errorf("%d slots busy after a second release, want the 1 taken since", n)
	}
	c.Release()
}
