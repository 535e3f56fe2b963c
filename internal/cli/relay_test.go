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
// one that does; status -v shows a running one.
func TestRelayStop(t *testing.T) {
	defer func(d string) { testOnlyRelayDir = d }(testOnlyRelayDir)
	testOnlyRelayDir = filepath.Join(t.TempDir(), "relay")
	out, errOut, code := run(t, nil, nil, "relay", "stop")
	if code != 0 || !strings.HasPrefix(out, "no relay runs at ") {
		t.Errorf("relay stop without a relay = %q, %q, exit %d", out, errOut, code)
	}

	served := make(chan error, 1)
	go func() { served <- builder.ServeRelay(context.Background(), testOnlyRelayDir, time.Minute) }()
	for i := 0; ; i++ {
		if _, err := builder.RelayStatus(context.Background(), testOnlyRelayDir); err == nil {
			break
		}
		if i == 500 {
			t.Fatal("the relay did not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// status -v ends with it.
	var b strings.Builder
	rc := &runContext{ctx: context.Background(), env: Env{Getenv: func(string) string { return "" }}}
	rc.writeRelay(&b)
	if want := "\nrelay " + testOnlyRelayDir + ":\n  no connections\n"; b.String() != want {
		t.Errorf("writeRelay = %q, want %q", b.String(), want)
	}

	out, errOut, code = run(t, nil, nil, "relay", "stop")
	if code != 0 || !strings.Contains(out, "stopping") {
		t.Errorf("relay stop = %q, %q, exit %d; want stopping", out, errOut, code)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeRelay = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the relay still runs 5 s after relay stop")
	}
}
