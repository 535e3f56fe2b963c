// SPDX-License-Identifier: MIT

package store

import (
	"encoding/hex"
	"fmt"
	"io"
)

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

// UploadHashes checks infos before an upload sends anything, so that a
// bad entry never leaves a server in the middle of a NAR, and returns
// their NAR hashes as Nix clients send them with a NAR: 64 hex digits
// without a prefix. The error names the first path that cannot be sent:
// a NarHash that does not parse, or a NarSize of 0 (no NAR is empty).
func UploadHashes(infos []PathInfo) ([]string, error) {
	hashes := make([]string, len(infos))
	for i := range infos {
		p := &infos[i]
		digest, err := p.NarDigest()
		if err != nil {
			return nil, fmt.Errorf("%s: narHash: %w", p.Path, err)
		}
		if p.NarSize == 0 {
			return nil, fmt.Errorf("%s: narSize is 0", p.Path)
		}
		hashes[i] = hex.EncodeToString(digest[:])
	}
	return hashes, nil
}

// NAREnd checks that r, which has given all narSize bytes of a NAR, has
// no more.
func NAREnd(r io.Reader, narSize uint64) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("NAR is longer than its narSize %d", narSize)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading NAR: %w", err)
		}
	}
}
