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
