// SPDX-License-Identifier: MIT

package serve

import (
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
)

// session is a `nix-store --serve` process and a Client talking to it.
type session struct {
	*Client
	*nixtest.Process
}

// serveIn starts `nix-store --serve --write` in s's namespace after running
// setup, and connects a Client to it. With record, every byte the server
// sends is kept in session.Rec.
func serveIn(t *testing.T, s *nixtest.Store, setup string, record bool) (*session, error) {
	t.Helper()
	return startIn(t, s, setup+"\nexec nix-store --serve --write", record)
}

// startIn runs script, which ends by starting a serve-protocol server, in
// s's namespace, and connects a Client to it.
func startIn(t *testing.T, s *nixtest.Store, script string, record bool) (*session, error) {
	t.Helper()
	p := s.Start(t, script, "nix-store --serve", record)
	sess := &session{Process: p}
	c, err := New(p.Stdout, p.Stdin, Options{Host: "test-builder", Stderr: p.Stderr.Wait})
	if err != nil {
		return sess, err
	}
	sess.Client = c
	return sess, nil
}
