// SPDX-License-Identifier: MIT

// Package localstore puts build outputs into the local Nix store while Nix
// holds their locks.
//
// While a build hook runs, Nix holds a flock on every output's
// "<out>.lock", so every ordinary import (nix-store --import, a local
// nix-store --serve, AddToStoreNar to the daemon) waits for it forever.
// [Store.Import] instead unpacks each output's NAR straight into its store
// path, checks its size and SHA-256 against the path info, and registers
// all outputs at once with `nix-store --register-validity --hash-given`,
// which takes no path locks in any Nix version (nix-store.cc,
// registerValidity; docs/internals.md). The parent's temporary roots keep
// the garbage collector away from the half-written paths meanwhile.
//
// The package needs the store owner's rights: Nix runs the hook as root
// under nix-daemon, or as the user of a single-user store.
package localstore

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// DefaultStoreDir is the logical store directory unless NIX_STORE_DIR or a
// store URI says otherwise.
const DefaultStoreDir = "/nix/store"

// ErrUnsupported is returned, wrapped, when outputs cannot be put into the
// configured store: a store that is not local, or a chroot store the
// installed Nix cannot register paths in. The hook declines the build.
var ErrUnsupported = errors.New("localstore: unsupported store")

// PathInfo describes one store path to import.
type PathInfo struct {
	// Path is the store path, e.g. /nix/store/<hash>-hello.
	Path string
	// Deriver is the .drv that built it, or "".
	Deriver string
	// References are the store paths it refers to, maybe itself.
	References []string
	// NarHash is the SHA-256 of its NAR serialisation.
	NarHash [32]byte
	// NarSize is the size of its NAR serialisation.
	NarSize uint64
}

// Store is a local Nix store that outputs can be imported into.
type Store struct {
	// StoreDir is the logical store directory that store paths name,
	// normally /nix/store.
	StoreDir string
	// RealDir is where the files of StoreDir really are: StoreDir itself,
	// or <root>/nix/store for a chroot store "local?root=<root>".
	RealDir string
	// URI is passed to nix-store as --store. It always names a local store
	// so that NIX_REMOTE or nix.conf cannot redirect nix-store to a daemon,
	// where --register-validity is refused.
	URI string
	// NixStore runs nix-store: NixStore[0] is the executable and the rest
	// are leading arguments. The process gets argv[0] "nix-store", which
	// the multi-call nix binary dispatches on (see FindNixStore).
	NixStore []string
	// Fallback, if set, lists other nix-store commands (see Candidates):
	// NixStore was not checked, and when a command fails, NixStore is
	// checked with --version and replaced by the first working one.
	Fallback [][]string
	// Logf, if not nil, receives progress and warnings.
	Logf func(format string, args ...any)

	version string // of NixStore, once known
	checked bool   // NixStore checked after a failure
}

// New returns the local store for the hook's `store` setting:
//
//   - "", "auto" or "local": the store at StoreDir (NIX_STORE_DIR or
//     /nix/store);
//   - "local?root=/x" or "/x": a chroot store whose files are under
//     /x/nix/store; the parameters "store" and "real" are honoured too;
//   - "daemon" or "unix://…": the local store the daemon serves. The hook
//     may write it directly because Nix runs it as the store's owner (root
//     under nix-daemon), and must, because the daemon would wait for the
//     locks that its own build holds;
//   - anything else (ssh://, https://, file://, …): an error wrapping
//     ErrUnsupported.
//
// nixStore is as for Store.NixStore; see FindNixStore.
func New(setting string, nixStore []string, logf func(format string, args ...any)) (*Store, error) {
	storeDir := DefaultStoreDir
	if d := os.Getenv("NIX_STORE_DIR"); d != "" {
		storeDir = path.Clean(d)
	}
	s := &Store{StoreDir: storeDir, RealDir: storeDir, URI: "local", NixStore: nixStore, Logf: logf}
	setting = strings.TrimSpace(setting)
	scheme, query, _ := strings.Cut(setting, "?")
	switch {
	case scheme == "" || scheme == "auto" || scheme == "daemon" || strings.HasPrefix(scheme, "unix://"):
		return s, nil
	case scheme == "local" || strings.HasPrefix(scheme, "/"):
	default:
		return nil, fmt.Errorf("%w: %q is not a local store", ErrUnsupported, setting)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("localstore: store %q: %w", setting, err)
	}
	if strings.HasPrefix(scheme, "/") {
		if params.Has("root") {
			return nil, fmt.Errorf("localstore: store %q: a path and a root", setting)
		}
		params.Set("root", scheme)
	}
	if d := params.Get("store"); d != "" {
		s.StoreDir = path.Clean(d)
	}
	s.RealDir = s.StoreDir
	if root := params.Get("root"); root != "" {
		if !path.IsAbs(root) {
			return nil, fmt.Errorf("localstore: store %q: root %q is not absolute", setting, root)
		}
		s.RealDir = path.Join(root, s.StoreDir)
	}
	if real := params.Get("real"); real != "" {
		s.RealDir = path.Clean(real)
	}
	if !path.IsAbs(s.StoreDir) || !path.IsAbs(s.RealDir) {
		return nil, fmt.Errorf("localstore: store %q: directories must be absolute", setting)
	}
	if len(params) > 0 {
		s.URI = "local?" + params.Encode()
	}
	return s, nil
}

func (s *Store) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// realPath maps a store path to where its files are.
func (s *Store) realPath(p string) string {
	return s.RealDir + "/" + path.Base(p)
}

// checkPath reports whether p is a well-formed store path under StoreDir:
// 32 Nix base32 characters, a dash and a name of 1 to 211 characters from
// [A-Za-z0-9+-._?=] (Nix src/libstore/path.cc).
func (s *Store) checkPath(p string) error {
	base, ok := strings.CutPrefix(p, s.StoreDir+"/")
	if !ok {
		return fmt.Errorf("localstore: %q is not in %s", p, s.StoreDir)
	}
	if len(base) < 34 || base[32] != '-' {
		return fmt.Errorf("localstore: %q is not a store path", p)
	}
	for i := 0; i < 32; i++ {
		if !nixbase32.Is(base[i]) {
			return fmt.Errorf("localstore: %q is not a store path", p)
		}
	}
	name := base[33:]
	if len(name) > 211 || name == "." || name == ".." {
		return fmt.Errorf("localstore: %q has an invalid name", p)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return fmt.Errorf("localstore: %q has an invalid name", p)
		}
	}
	return nil
}

// ParseNarHash parses a SHA-256 hash in any form Nix's Hash::parseAny
// accepts (src/libutil/hash.cc): "sha256:" followed by 64 hex digits, 52
// Nix base32 characters or 44 base64 characters; the same without the
// prefix; or SRI "sha256-<base64>".
func ParseNarHash(s string) ([32]byte, error) {
	var out [32]byte
	rest, sri := strings.CutPrefix(s, "sha256-")
	if !sri {
		if algo, h, ok := strings.Cut(s, ":"); ok {
			if algo != "sha256" {
				return out, fmt.Errorf("localstore: hash %q: not sha256", s)
			}
			rest = h
		}
	}
	var b []byte
	var err error
	switch {
	case sri && len(rest) == 44, !sri && len(rest) == 44:
		b, err = base64.StdEncoding.Strict().DecodeString(rest)
	case !sri && len(rest) == 64:
		b, err = hex.DecodeString(rest)
	case !sri && len(rest) == 52:
		b, err = nixbase32.DecodeString(rest)
	default:
		return out, fmt.Errorf("localstore: hash %q: wrong length for sha256", s)
	}
	if err == nil && len(b) != len(out) {
		err = errors.New("wrong length")
	}
	if err != nil {
		return out, fmt.Errorf("localstore: hash %q: %v", s, err)
	}
	copy(out[:], b)
	return out, nil
}
