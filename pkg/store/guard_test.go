// SPDX-License-Identifier: MIT

package store

import (
	"errors"
	"testing"
)

func TestGuard(t *testing.T) {
	errBroken := errors.New("broken")
	errRemote := errors.New("remote")
	inStep := func(err error) bool { return errors.Is(err, errRemote) }
	tests := []struct {
		name  string
		err   error
		inOK  func(error) bool
		broke bool
	}{
		{"success", nil, nil, false},
		{"local", Local(errors.New("narSize is 0")), nil, false},
		{"in step", errRemote, inStep, false},
		{"transport", errors.New("EOF"), inStep, true},
		{"transport without inStep", errors.New("EOF"), nil, true},
	}
	for _, tt := range tests {
		var g Guard
		if err := g.Begin(errBroken); err != nil {
			t.Fatalf("%s: first Begin = %v", tt.name, err)
		}
		if got := g.End(tt.err, tt.inOK); got != tt.err {
			t.Errorf("%s: End = %v, want %v", tt.name, got, tt.err)
		}
		err := g.Begin(errBroken)
		if tt.broke != errors.Is(err, errBroken) {
			t.Errorf("%s: Begin after End = %v, want broken %v", tt.name, err, tt.broke)
		}
		if err == nil {
			g.End(nil, nil)
		}
		if tt.broke != (g.Err() != nil) {
			t.Errorf("%s: Err() = %v, want set %v", tt.name, g.Err(), tt.broke)
		}
	}
}

func TestLocal(t *testing.T) {
	inner := errors.New("x")
	if err := Local(inner); !IsLocal(err) || !errors.Is(err, inner) || err.Error() != "x" {
		t.Errorf("Local(%v) = %v: IsLocal %v, Is %v", inner, err, IsLocal(err), errors.Is(err, inner))
	}
	if IsLocal(inner) {
		t.Errorf("IsLocal(%v) = true", inner)
	}
}

// TestRun: an operation that breaks the stream is the last one that runs;
// the ones after it fail with broken and a zero value, without running.
func TestRun(t *testing.T) {
	errBroken := errors.New("broken")
	errEOF := errors.New("EOF")
	var g Guard
	if v, err := Run(&g, errBroken, nil, func() (int, error) { return 1, nil }); v != 1 || err != nil {
		t.Errorf("Run = %v, %v; want 1, nil", v, err)
	}
	if v, err := Run(&g, errBroken, nil, func() (int, error) { return 2, errEOF }); v != 2 || err != errEOF {
		t.Errorf("Run(failing) = %v, %v; want 2, %v", v, err, errEOF)
	}
	ran := false
	v, err := Run(&g, errBroken, nil, func() (int, error) { ran = true; return 3, nil })
	if v != 0 || !errors.Is(err, errBroken) || ran {
		t.Errorf("Run after a transport error = %v, %v (ran %v); want 0, broken, not run", v, err, ran)
	}
	if err := g.Do(errBroken, nil, func() error { ran = true; return nil }); !errors.Is(err, errBroken) || ran {
		t.Errorf("Do after a transport error = %v (ran %v); want broken, not run", err, ran)
	}
}

// TestDo: an error inStep accepts leaves the stream usable.
func TestDo(t *testing.T) {
	errRemote := errors.New("remote")
	inStep := func(err error) bool { return err == errRemote }
	var g Guard
	if err := g.Do(errors.New("broken"), inStep, func() error { return errRemote }); err != errRemote {
		t.Errorf("Do = %v, want %v", err, errRemote)
	}
	if err := g.Do(errors.New("broken"), inStep, func() error { return nil }); err != nil {
		t.Errorf("Do after an in-step error = %v, want nil", err)
	}
}
