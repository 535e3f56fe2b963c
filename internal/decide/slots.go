// SPDX-License-Identifier: MIT

package decide

import (
	"path/filepath"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// SlotPath is the slot file in offload's state directory stateDir (the
// state-dir setting, /nix/var/nix/offload by default): the file every
// hook of the host shares and the commands read.
func SlotPath(stateDir string) string {
	return filepath.Join(stateDir, "slots")
}

// OpenSlots opens the slot file in stateDir, or this user's own when that
// cannot be written (slots.OpenFallback).
func OpenSlots(stateDir string, ms []spec.Machine, o slots.Options) (*slots.File, error) {
	return slots.OpenFallback(SlotPath(stateDir), ms, o)
}
