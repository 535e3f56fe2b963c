// SPDX-License-Identifier: MIT

package hook

import (
	"strconv"
	"time"
)

const (
	// envPersist overrides connect-persist (a Go duration; 0: off).
	envPersist = "OFFLOAD_CONNECT_PERSIST"
	// DefaultConnectPersist is connect-persist when unset: off for now,
	// until the end-to-end tests that count hook processes and compare
	// error messages know the relay.
	DefaultConnectPersist = 0
)

// persist returns how long connections outlive their hook, in the relay
// (internal/builder); 0 is off.
func (h *hook) persist() time.Duration {
	d := h.cfg.ConnectPersist
	if d == 0 {
		d = DefaultConnectPersist
	}
	if v := h.env.Getenv(envPersist); v != "" {
		if p, err := time.ParseDuration(v); err == nil {
			d = p
		} else if n, err := strconv.Atoi(v); err == nil {
			d = time.Duration(n) * time.Second
		}
	}
	return max(d, 0)
}

// stateDir is offload's state directory: the slot file's, and the relay's
// of a user without a runtime directory.
func (h *hook) stateDir() string {
	base := h.cfg.StateDir
	if base == "" {
		base = h.env.Getenv("OFFLOAD_STATE_DIR")
	}
	if base == "" {
		base = "/nix/var/nix/offload"
	}
	return base
}
