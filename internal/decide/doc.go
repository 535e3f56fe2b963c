// SPDX-License-Identifier: MIT

// Package decide assembles what pick.Choose takes: the machines, one
// pick.Load per machine from the slot file's snapshot, the local machine,
// and the choosing options from offload's settings and environment. The
// hook (internal/hook) and `offload pick` (internal/cli) both build their
// inputs here, so the dry run cannot drift from the real decision.
//
// It also owns where the slot file lives: offload's state directory (the
// state-dir setting, which OFFLOAD_STATE_DIR overrides; by default
// /nix/var/nix/offload) holds it, and [OpenSlots] is the one function
// that opens it for the hook and for the commands.
//
// See internal/builder for the layout of the internal packages.
package decide
