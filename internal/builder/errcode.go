// SPDX-License-Identifier: MIT

package builder

import (
	"context"
	"errors"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/ssh"
)

// ErrCode is the shared state's class of a failure to reach a builder:
// the hook records it, and `offload check` records the same.
func ErrCode(err error) slots.ErrCode {
	// The relay's report of its own dial or connection: the code its
	// error had there.
	var re *relayError
	if errors.As(err, &re) {
		return re.code
	}
	var hk *ssh.HostKeyError
	if errors.As(err, &hk) {
		return slots.ErrHostKey
	}
	var se *ssh.Error
	if errors.As(err, &se) {
		switch se.Kind {
		case ssh.Refused, ssh.DNS:
			return slots.ErrConnect
		case ssh.Timeout:
			return slots.ErrTimeout
		case ssh.Auth:
			return slots.ErrAuth
		case ssh.HostKey:
			return slots.ErrHostKey
		case ssh.Protocol:
			return slots.ErrProtocol
		}
	}
	var ne *ssh.NoiseError
	if errors.As(err, &ne) {
		return slots.ErrProtocol
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return slots.ErrTimeout
	}
	return slots.ErrOther
}
