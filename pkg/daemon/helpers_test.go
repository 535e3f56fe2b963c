// SPDX-License-Identifier: MIT

package daemon

import (
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
)

// session is a `nix-daemon --stdio` process and a Client talking to it.
type session struct {
	*Client
	*nixtest.Process
}

// stdioIn starts `nix-daemon --stdio` as root in s's namespace, which opens
// the store directly and trusts its client.
func stdioIn(t testing.TB, s *nixtest.Store, opts Options, record bool) (*session, error) {
	t.Helper()
	return startIn(t, s, "exec nix-daemon --stdio", opts, record)
}

// startIn runs script, which ends by starting a worker-protocol server, in
// s's namespace, and connects a Client to it.
func startIn(t testing.TB, s *nixtest.Store, script string, opts Options, record bool) (*session, error) {
	t.Helper()
	p := s.Start(t, script, "nix-daemon", record)
	sess := &session{Process: p}
	if opts.Host == "" {
		opts.Host = "test-builder"
	}
	opts.Stderr = p.Stderr.Wait
	c, err := New(p.Stdout, p.Stdin, opts)
	if err != nil {
		return sess, err
	}
	sess.Client = c
	return sess, nil
}
