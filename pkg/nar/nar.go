// SPDX-License-Identifier: MIT

// Package nar reads and writes Nix archives (NAR, "nix-archive-1").
//
// [Restore] unpacks one archive from a stream onto the file system while
// hashing it, with a fixed buffer, so memory does not grow with the size of
// the files. It validates the archive as strictly as current Nix (2.35 and
// later) does and never follows a symbolic link while writing: a hostile
// archive cannot write outside the destination. [Dump] writes a file tree
// as an archive, byte for byte what `nix-store --dump` writes.
//
// Format (Nix src/libutil/archive.cc): every token is a wire string (a
// little-endian 64-bit length, the bytes, zero padding to a multiple of 8):
//
//	nar     := "nix-archive-1" node
//	node    := "(" "type" ( "regular" ["executable" ""] "contents" data
//	                      | "symlink" "target" target
//	                      | "directory" entry* ) ")"
//	entry   := "entry" "(" "name" name "node" node ")"
package nar

import (
	"crypto/sha256"
	"errors"
)

// Limits that current Nix enforces when it parses an archive (archive.cc,
// narMaxDepth, narMaxName, narMaxTarget, narMaxTag).
const (
	// MaxDepth bounds nesting: the root is at depth 0 and a node at depth
	// MaxDepth or deeper is rejected.
	MaxDepth = 64
	// MaxName is the longest directory entry name, in bytes.
	MaxName = 255
	// MaxTarget is the longest symbolic link target, in bytes.
	MaxTarget = 4095
	// maxTag is the longest keyword token accepted; keywords are at most
	// 13 bytes ("nix-archive-1").
	maxTag = 32
)

const magic = "nix-archive-1"

// Result describes an archive that was read or written.
type Result struct {
	// Size is the length of the archive in bytes.
	Size uint64
	// SHA256 is the SHA-256 of the archive bytes, Nix's narHash.
	SHA256 [32]byte
}

// ErrTooLarge is returned by Restore when the stream carries more bytes
// than Options.Size allows.
var ErrTooLarge = errors.New("nar: archive is larger than expected")

// sum returns the digest as an array.
func sum(h interface{ Sum([]byte) []byte }) (out [32]byte) {
	var b [sha256.Size]byte
	copy(out[:], h.Sum(b[:0]))
	return out
}
