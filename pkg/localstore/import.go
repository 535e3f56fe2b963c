// SPDX-License-Identifier: MIT

package localstore

// Rules for Import (docs/internals.md, section 7):
//   - Never delete or overwrite a valid path: outputs that are valid
//     already are left alone, and after a failed registration only paths
//     that are still invalid are removed (a registration killed after its
//     commit must not leave valid paths without files).
//   - Never register a path whose bytes were not all checked against the
//     path info: size first (nar.Options.Size), then SHA-256.
//   - Never stage under another name in the store directory: the garbage
//     collector deletes unknown names there, while the parent's temporary
//     roots protect the output paths themselves.
//   - Take no locks: the parent holds them for us.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/offload-nix/offload/pkg/nar"
	"github.com/offload-nix/offload/pkg/store"
)

// registerTimeout bounds `nix-store --register-validity`, which is one
// SQLite transaction and is not cancelled with the caller's context: once
// the outputs are complete and checked, registering them is the quickest
// way to a consistent store.
const registerTimeout = 5 * time.Minute

// Import puts the paths described by infos into the store: open(i) must
// return the NAR of infos[i]; it is called once per path that is not valid
// yet, in dependency order (references first), and its result is closed
// before the next call. Each NAR is unpacked straight into the path's real
// location (removing a leftover there first) and checked against NarSize
// and NarHash; then all of them are registered in one
// `nix-store --register-validity --hash-given`, with their deriver and
// references. On any error nothing is registered and every path Import
// wrote is removed.
//
// Import refuses paths outside StoreDir and references that are neither
// valid in the store nor part of infos. Paths that are valid already are
// skipped.
//
// In a chroot store with Nix 2.28 or older, Import streams the NARs to a
// local `nix-store --serve --write` instead, with NIX_HELD_LOCKS naming the
// outputs; Nix then checks and registers each path on its own, so a
// failure can leave earlier paths of the batch valid (and complete). See
// CheckImport for the stores Import cannot serve.
func (s *Store) Import(ctx context.Context, infos []store.PathInfo, open func(i int) (io.ReadCloser, error)) error {
	return s.ImportWith(ctx, infos, ImportOptions{}, open)
}

// ImportOptions is what the caller of ImportWith knows of the store
// already, so that Import asks nix-store less: every process it starts
// after a build delays the build's end.
type ImportOptions struct {
	// Valid lists paths known to be valid in the store and to stay so,
	// e.g. a build's input closure, which Nix keeps from the garbage
	// collector while the build runs: references to them are not checked.
	Valid []string
	// Registrar, if not nil, registers the paths (StartRegistrar): its
	// nix-store has started already.
	Registrar *Registrar
}

// ImportWith is Import with what the caller knows. A path of infos whose
// real location does not exist is known to be invalid without asking (a
// valid path always has its files); only the paths that exist and the
// references that are neither in infos nor in opts.Valid are queried, so
// importing new outputs whose references are known runs one nix-store,
// the registration.
func (s *Store) ImportWith(ctx context.Context, infos []store.PathInfo, opts ImportOptions, open func(i int) (io.ReadCloser, error)) error {
	serve, err := s.useServe(ctx)
	if err != nil {
		return err
	}
	order, err := s.sortInfos(infos)
	if err != nil {
		return err
	}

	// One validity query, if any, for the outputs that have files and
	// the references that are not known.
	known := make(map[string]bool, len(infos)+len(opts.Valid))
	for _, p := range opts.Valid {
		known[p] = true
	}
	batch := make(map[string]bool, len(infos))
	var query []string
	for _, in := range infos {
		batch[in.Path] = true
		if _, err := os.Lstat(s.realPath(in.Path)); !errors.Is(err, fs.ErrNotExist) {
			query = append(query, in.Path)
		}
	}
	seen := make(map[string]bool)
	for _, in := range infos {
		for _, r := range in.References {
			if !batch[r] && !known[r] && !seen[r] {
				seen[r] = true
				query = append(query, r)
			}
		}
	}
	isValid := make(map[string]bool, len(query))
	if len(query) > 0 {
		valid, err := s.Valid(ctx, query)
		if err != nil {
			return err
		}
		for _, p := range valid {
			isValid[p] = true
		}
	}
	for _, in := range infos {
		for _, r := range in.References {
			if !batch[r] && !known[r] && !isValid[r] {
				return fmt.Errorf("localstore: %s refers to %s, which is not valid in the local store", in.Path, r)
			}
		}
	}

	if serve {
		return s.importViaServe(ctx, infos, order, isValid, open)
	}

	var written []string // real paths
	fail := func(err error) error {
		for _, p := range written {
			if rerr := os.RemoveAll(p); rerr != nil {
				s.logf("removing %s: %v", p, rerr)
			}
		}
		return err
	}
	var todo []int
	for _, i := range order {
		in := infos[i]
		if isValid[in.Path] {
			s.logf("%s is valid already, leaving it alone", in.Path)
			continue
		}
		if err := ctx.Err(); err != nil {
			return fail(fmt.Errorf("localstore: importing %s: %w", in.Path, err))
		}
		real := s.realPath(in.Path)
		if err := os.RemoveAll(real); err != nil {
			return fail(fmt.Errorf("localstore: removing leftover %s: %w", real, err))
		}
		if err := s.restore(ctx, in, real, i, open); err != nil {
			return fail(err)
		}
		written = append(written, real)
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return nil
	}
	if err := s.register(ctx, infos, todo, opts.Registrar); err != nil {
		// Remove only what is still invalid: a registration that failed
		// after committing must not lose files of valid paths.
		paths := make([]string, len(todo))
		for k, i := range todo {
			paths[k] = infos[i].Path
		}
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		nowValid, verr := s.Valid(vctx, paths)
		if verr != nil {
			return fmt.Errorf("%w (leaving the unpacked paths in place: cannot tell which are valid: %v)", err, verr)
		}
		keep := make(map[string]bool)
		for _, p := range nowValid {
			keep[s.realPath(p)] = true
		}
		written = written[:0]
		for _, i := range todo {
			if p := s.realPath(infos[i].Path); !keep[p] {
				written = append(written, p)
			}
		}
		return fail(err)
	}
	return nil
}

// importViaServe imports the paths that are not valid yet through a local
// nix-store --serve and, on failure, removes the files of those that are
// still invalid (Nix leaves a path that fails its hash check on disk).
func (s *Store) importViaServe(ctx context.Context, infos []store.PathInfo, order []int, isValid map[string]bool, open func(int) (io.ReadCloser, error)) error {
	var todo []int
	var paths []string
	for _, i := range order {
		if isValid[infos[i].Path] {
			s.logf("%s is valid already, leaving it alone", infos[i].Path)
			continue
		}
		todo = append(todo, i)
		paths = append(paths, infos[i].Path)
	}
	if len(todo) == 0 {
		return nil
	}
	err := s.importServe(ctx, infos, todo, open)
	if err == nil {
		return nil
	}
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	nowValid, verr := s.Valid(vctx, paths)
	if verr != nil {
		return fmt.Errorf("%w (cannot tell which paths to clean up: %v)", err, verr)
	}
	keep := make(map[string]bool)
	for _, p := range nowValid {
		keep[p] = true
	}
	for _, p := range paths {
		if !keep[p] {
			if rerr := os.RemoveAll(s.realPath(p)); rerr != nil {
				s.logf("removing %s: %v", s.realPath(p), rerr)
			}
		}
	}
	return err
}

// restore unpacks and checks one path.
func (s *Store) restore(ctx context.Context, in store.PathInfo, real string, i int, open func(int) (io.ReadCloser, error)) error {
	rc, err := open(i)
	if err != nil {
		return fmt.Errorf("localstore: opening %s: %w", in.Path, err)
	}
	res, err := nar.Restore(ctxReader{ctx, rc}, real, nar.Options{Size: in.NarSize})
	cerr := rc.Close()
	if err != nil {
		return fmt.Errorf("localstore: unpacking %s: %w", in.Path, err)
	}
	want, _ := in.NarDigest() // checked by sortInfos
	bad := ""
	if res.Size != in.NarSize {
		bad = fmt.Sprintf("size %d, expected %d", res.Size, in.NarSize)
	} else if res.SHA256 != want {
		bad = fmt.Sprintf("hash sha256:%x, expected sha256:%x", res.SHA256, want)
	}
	if bad != "" {
		if rerr := os.RemoveAll(real); rerr != nil {
			s.logf("removing %s: %v", real, rerr)
		}
		return fmt.Errorf("localstore: %s: NAR has %s", in.Path, bad)
	}
	if cerr != nil {
		os.RemoveAll(real)
		return fmt.Errorf("localstore: closing the NAR of %s: %w", in.Path, cerr)
	}
	s.logf("unpacked %s (%d bytes)", in.Path, res.Size)
	return nil
}

// register runs one nix-store --register-validity for infos[todo...],
// the Registrar's when it is usable.
func (s *Store) register(ctx context.Context, infos []store.PathInfo, todo []int, reg *Registrar) error {
	var b strings.Builder
	for _, i := range todo {
		in := infos[i]
		digest, _ := in.NarDigest() // checked by sortInfos
		b.WriteString(in.Path + "\n")
		b.WriteString("sha256:" + hex.EncodeToString(digest[:]) + "\n")
		b.WriteString(strconv.FormatUint(in.NarSize, 10) + "\n")
		b.WriteString(in.Deriver + "\n")
		b.WriteString(strconv.Itoa(len(in.References)) + "\n")
		for _, r := range in.References {
			b.WriteString(r + "\n")
		}
	}
	if ok, err := reg.register(ctx, b.String()); ok && err == nil {
		return nil
	} else if ok {
		s.logf("registering with the nix-store started ahead: %v; once more on its own", err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registerTimeout)
	defer cancel()
	return s.runNix(rctx, func(argv []string) *exec.Cmd {
		return command(rctx, argv, "--store", s.URI, "--register-validity", "--hash-given")
	}, func(cmd *exec.Cmd) error {
		cmd.Stdin = strings.NewReader(b.String())
		stderr := new(tailBuffer)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return cmdError(cmd, stderr, err)
		}
		return nil
	})
}

// sortInfos checks infos and returns their indices with references first.
func (s *Store) sortInfos(infos []store.PathInfo) ([]int, error) {
	index := make(map[string]int, len(infos))
	for i, in := range infos {
		if err := s.checkPath(in.Path); err != nil {
			return nil, err
		}
		if _, dup := index[in.Path]; dup {
			return nil, fmt.Errorf("localstore: %s is listed twice", in.Path)
		}
		index[in.Path] = i
		if in.Deriver != "" {
			if err := s.checkPath(in.Deriver); err != nil {
				return nil, fmt.Errorf("localstore: deriver of %s: %w", in.Path, err)
			}
		}
		for _, r := range in.References {
			if err := s.checkPath(r); err != nil {
				return nil, fmt.Errorf("localstore: reference of %s: %w", in.Path, err)
			}
		}
		if in.NarSize == 0 {
			return nil, fmt.Errorf("localstore: %s: no NAR size", in.Path)
		}
		if _, err := in.NarDigest(); err != nil {
			return nil, fmt.Errorf("localstore: %s: narHash: %w", in.Path, err)
		}
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(infos))
	order := make([]int, 0, len(infos))
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("localstore: reference cycle through %s", infos[i].Path)
		}
		state[i] = visiting
		for _, r := range infos[i].References {
			if j, ok := index[r]; ok && j != i {
				if err := visit(j); err != nil {
					return err
				}
			}
		}
		state[i] = done
		order = append(order, i)
		return nil
	}
	for i := range infos {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
