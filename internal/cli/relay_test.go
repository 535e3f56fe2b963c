// SPDX-License-Identifier: MIT

package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/builder"
)

// TestMain keeps every test away from this user's real relay (root's in
// /run/offload/relay, with whatever else runs on the machine): status -v
// would show it.
func TestMain(m *testing.M) {
	testOnlyRelayDir = filepath.Join(os.TempDir(), fmt.Sprintf("offload-cli-test-%d", os.Getpid()), "relay")
	os.Exit(m.Run())
}

// TestRelayStop: offload relay stop says when no relay runs, and stops
// one that does, with the one another offload binary of the same user
// left beside it; status -v shows this binary's.
func TestRelayStop(t *testing.T) {
	defer func(d string) { testOnlyRelayDir = d }(testOnlyRelayDir)
	base := filepath.Join(t.TempDir(), "relay")
	testOnlyRelayDir = filepath.Join(base, "this")
	out, errOut, code := run(t, nil, nil, "relay", "stop")
	if code != 0 || !strings.HasPrefix(out, "no relay runs at ") {
		t.Errorf("relay stop without a relay = %q, %q, exit %d", out, errOut, code)
	}

	other := filepath.Join(base, "other")
	var served []chan error
	for _, dir := range []string{testOnlyRelayDir, other} {
		ch := make(chan error, 1)
		go func() { ch <- builder.ServeRelay(context.Background(), dir, time.Minute) }()
		served = append(served, ch)
		for i := 0; ; i++ {
			if _, err := builder.RelayStatus(context.Background(), dir); err == nil {
				break
			}
			if i == 500 {
				t.Fatalf("the relay in %s did not listen", dir)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// status -v ends with this binary's.
	var b strings.Builder
	rc := &runContext{ctx: context.Background(), env: Env{Getenv: func(string) string { return "" }}}
	rc.writeRelay(&b)
	if want := "\nrelay " + testOnlyRelayDir + ":\n  no connections\n"; b.String() != want {
		t.Errorf("writeRelay = %q, want %q", b.String(), want)
	}

	out, errOut, code = run(t, nil, nil, "relay", "stop")
	want := "relay at " + testOnlyRelayDir + " stopping\nrelay at " + other + " stopping\n"
	if code != 0 || out != want {
		t.Errorf("relay stop = %q, %q, exit %d; want %q", out, errOut, code, want)
	}
	for i, ch := range served {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("ServeRelay = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("relay %d still runs 5 s after relay stop", i)
		}
	}
}
