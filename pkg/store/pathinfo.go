// SPDX-License-Identifier: MIT

package store

// PathInfo describes a valid store path, as a store reports it and as an
// upload or an import sends it.
type PathInfo struct {
	// Path is the store path, e.g. /nix/store/<hash>-hello.
	Path string
	// Deriver is the .drv that built it, or "".
	Deriver string
	// References are the store paths it refers to, maybe itself.
	References []string
	// NarSize is the size of its NAR serialisation.
	NarSize uint64
	// NarHash is the SHA-256 of its NAR serialisation in any form
	// ParseSHA256 accepts; stores send "sha256:<nix32>".
	NarHash string
	// CA is its content address, or "".
	CA string
	// Sigs are its signatures.
	Sigs []string
}

// NarDigest returns the raw 32-byte SHA-256 digest of NarHash.
func (p *PathInfo) NarDigest() ([32]byte, error) {
	return ParseSHA256(p.NarHash)
}
