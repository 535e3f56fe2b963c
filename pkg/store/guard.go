// SPDX-License-Identifier: MIT

package store

import (
	"errors"
	"fmt"
	"sync"
)

// Guard keeps the state of a store-protocol client's stream that does not
// depend on the protocol: it runs one operation at a time, and once an
// operation has failed in a way that leaves the stream out of step, every
// later one fails. The zero value is ready for use.
type Guard struct {
	mu  sync.Mutex
	err error // set once the stream is unusable
}

// Err returns the error that made the stream unusable, or nil.
func (g *Guard) Err() error { return g.err }

// Begin starts an operation, waiting for the one before to end. If the
// stream is unusable it fails with an error that wraps broken, the
// package's sentinel, and the first failure.
func (g *Guard) Begin(broken error) error {
	g.mu.Lock()
	if g.err != nil {
		err := g.err
		g.mu.Unlock()
		return fmt.Errorf("%w: %v", broken, err)
	}
	return nil
}

// End ends the operation begun by Begin and returns err. An err other than
// nil makes the stream unusable unless it is a local error (see Local) or
// inStep, if set, reports that the stream is still in step after it.
func (g *Guard) End(err error, inStep func(error) bool) error {
	if err != nil && !IsLocal(err) && (inStep == nil || !inStep(err)) {
		g.err = err
	}
	g.mu.Unlock()
	return err
}

// Do runs op as one operation: it begins it (see Begin), runs op and ends
// it with op's error (see End).
func (g *Guard) Do(broken error, inStep func(error) bool, op func() error) error {
	if err := g.Begin(broken); err != nil {
		return err
	}
	return g.End(op(), inStep)
}

// Run is Do for an operation that returns a value: it returns op's value
// with its error, or the zero value if the operation could not begin.
func Run[T any](g *Guard, broken error, inStep func(error) bool, op func() (T, error)) (T, error) {
	if err := g.Begin(broken); err != nil {
		var zero T
		return zero, err
	}
	v, err := op()
	return v, g.End(err, inStep)
}

// localError marks an error found before anything was sent, which leaves
// the stream usable.
type localError struct{ error }

func (e localError) Unwrap() error { return e.error }

// Local marks err as found before anything was sent, which leaves the
// stream usable.
func Local(err error) error { return localError{err} }

// IsLocal reports whether err was marked by Local.
func IsLocal(err error) bool {
	var l localError
	return errors.As(err, &l)
}
