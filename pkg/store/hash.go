// SPDX-License-Identifier: MIT

package store

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// ParseSHA256 returns the 32-byte digest of a SHA-256 hash in any form
// Nix's Hash::parseAny accepts (src/libutil/hash.cc): "sha256:" followed by
// 64 hex digits, 52 Nix base32 characters (as stores send it) or 44 base64
// characters; one of those encodings bare, told apart by length; or SRI
// "sha256-<base64>".
func ParseSHA256(s string) ([32]byte, error) {
	var d [32]byte
	body, sri := strings.CutPrefix(s, "sha256-")
	if !sri {
		if algo, h, ok := strings.Cut(s, ":"); ok {
			if algo != "sha256" {
				return d, fmt.Errorf("store: hash %q is not sha256", s)
			}
			body = h
		}
	}
	var b []byte
	var err error
	switch {
	case len(body) == 44:
		b, err = base64.StdEncoding.Strict().DecodeString(body)
	case sri:
		return d, fmt.Errorf("store: bad SRI hash %q", s)
	case len(body) == 64:
		b, err = hex.DecodeString(body)
	case len(body) == 52:
		b, err = nixbase32.DecodeString(body)
	default:
		return d, fmt.Errorf("store: hash %q has the wrong length for sha256", s)
	}
	if err == nil && len(b) != len(d) {
		err = fmt.Errorf("%d bytes", len(b))
	}
	if err != nil {
		return d, fmt.Errorf("store: bad hash %q: %v", s, err)
	}
	copy(d[:], b)
	return d, nil
}

// FormatSHA256 returns the form of a SHA-256 digest that stores send:
// "sha256:" and 52 Nix base32 characters.
func FormatSHA256(d [32]byte) string {
	return "sha256:" + nixbase32.EncodeToString(d[:])
}

// CheckPath reports whether p is a well-formed store path in storeDir:
// 32 Nix base32 characters, a dash and a name of 1 to 211 characters from
// [A-Za-z0-9+-._?=] (Nix src/libstore/path.cc).
func CheckPath(storeDir, p string) error {
	base, ok := strings.CutPrefix(p, storeDir+"/")
	if !ok {
		return fmt.Errorf("store: %q is not in %s", p, storeDir)
	}
	if len(base) < 34 || base[32] != '-' {
		return fmt.Errorf("store: %q is not a store path", p)
	}
	for i := 0; i < 32; i++ {
		if !nixbase32.Is(base[i]) {
			return fmt.Errorf("store: %q is not a store path", p)
		}
	}
	name := base[33:]
	if len(name) > 211 || name == "." || name == ".." {
		return fmt.Errorf("store: %q has an invalid name", p)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return fmt.Errorf("store: %q has an invalid name", p)
		}
	}
	return nil
}
