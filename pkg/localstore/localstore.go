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
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/offload-nix/offload/pkg/store"
)

// DefaultStoreDir is the logical store directory unless NIX_STORE_DIR or a
// store URI says otherwise.
const DefaultStoreDir = "/nix/store"

// ErrUnsupported is returned, wrapped, when outputs cannot be put into the
// configured store: a store that is not local, or a chroot store the
// installed Nix cannot register paths in. The hook declines the build.
var ErrUnsupported = errors.New("localstore: unsupported store")

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

// checkPath reports whether p is a well-formed store path under StoreDir.
func (s *Store) checkPath(p string) error {
	if err := store.CheckPath(s.StoreDir, p); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	return nil
}
