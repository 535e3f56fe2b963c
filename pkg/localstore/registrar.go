// SPDX-License-Identifier: MIT

package localstore

// Rules for this file:
//   - A Registrar only saves the start-up of the registering nix-store; it
//     never changes what is registered. Whenever it cannot be used (it
//     died, it is not a working nix-store, the store imports through
//     nix-store --serve), register starts one of its own as before.
//   - Empty input registers nothing: Abort closes its input before writing
//     anything, and a hook that dies leaves it reading EOF.

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"
)

// Registrar is a `nix-store --register-validity --hash-given` started ahead
// of the import that will use it, so that registering a build's outputs
// does not wait for Nix's start-up (about 40 ms, most of a small build's
// copy back). Start one when a build begins, pass it in
// ImportOptions.Registrar, and Abort it when done (also after use).
type Registrar struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	done   chan struct{}
	err    error // after done

	mu   sync.Mutex
	used bool // input written or closed
}

// StartRegistrar starts a Registrar for s, or returns nil when the store
// does not register paths this way (a chroot store on Nix up to 2.28) or
// the process cannot start. It asks nix-store nothing before starting.
func (s *Store) StartRegistrar() *Registrar {
	if len(s.NixStore) == 0 || s.RealDir != s.StoreDir {
		return nil
	}
	cmd := command(context.Background(), s.NixStore, "--store", s.URI, "--register-validity", "--hash-given")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil
	}
	r := &Registrar{cmd: cmd, stdin: stdin, stderr: new(tailBuffer), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r.stderr, r.stderr
	if err := cmd.Start(); err != nil {
		return nil
	}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	return r
}

// Abort ends the Registrar without registering anything, if it was not
// used, and waits for it. It is safe to call more than once and on nil.
func (r *Registrar) Abort() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if !r.used {
		r.used = true
		r.stdin.Close()
	}
	r.mu.Unlock()
	select {
	case <-r.done:
	case <-time.After(registerTimeout):
		r.cmd.Process.Kill()
		<-r.done
	}
}

// register writes input to the Registrar and waits for it to register.
// ok is false when the Registrar was not usable (used already, or it had
// exited): nothing was registered by it then, and the caller registers
// on its own.
func (r *Registrar) register(ctx context.Context, input string) (ok bool, err error) {
	if r == nil {
		return false, nil
	}
	r.mu.Lock()
	if r.used {
		r.mu.Unlock()
		return false, nil
	}
	select {
	case <-r.done:
		// It died before it got anything (not a working nix-store,
		// say): nothing was registered.
		r.used = true
		r.mu.Unlock()
		return false, nil
	default:
	}
	r.used = true
	_, werr := io.WriteString(r.stdin, input)
	r.stdin.Close()
	r.mu.Unlock()
	timer := time.NewTimer(registerTimeout)
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
		r.cmd.Process.Kill()
		<-r.done
	}
	if werr == nil && r.err == nil {
		return true, nil
	}
	// It may have registered before failing; the caller registers
	// again (idempotent) or checks validity.
	if r.err != nil {
		return true, cmdError(r.cmd, r.stderr, r.err)
	}
	return true, fmt.Errorf("localstore: writing to %v: %w", r.cmd.Args, werr)
}
