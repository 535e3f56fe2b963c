// SPDX-License-Identifier: MIT

package localstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
)

// FindNixStore returns a nix-store to run, as for Store.NixStore, and
// checks it by running `nix-store --version` once.
//
// It prefers the executable of the process ppid, normally the hook's
// parent (nix-daemon, nix-build or nix: all one multi-call binary that
// dispatches on argv[0]), so that nix-store is the parent's own version
// even when the daemon's PATH has none (src/nix/main.cc, mainWrapped). The link
// /proc/<ppid>/exe is resolved now, because the parent may be replaced
// later; if the parent's file was already deleted by an upgrade, the
// /proc link itself is used, which still reaches it while the parent
// lives. It falls back to nix-store on PATH and then to well-known places.
func FindNixStore(ctx context.Context, ppid int) ([]string, error) {
	var errs []error
	for _, argv := range candidates(ppid, false) {
		if _, err := Version(ctx, argv); err != nil {
			errs = append(errs, err)
			continue
		}
		return argv, nil
	}
	return nil, fmt.Errorf("localstore: no working nix-store: %w", errors.Join(errs...))
}

// Candidates returns the nix-store commands FindNixStore would try, best
// first, without running any: for a hook, whose every process delays Nix,
// the first is used as it is, and a Store set up with them checks its pick
// only when a command fails (see Store.Fallback). The parent's executable
// comes first only when its name is a Nix one ("nix", "nix-daemon",
// "nix-build", …): any other program, run with nix-store's arguments,
// could do anything.
func Candidates(ppid int) [][]string {
	return candidates(ppid, true)
}

func candidates(ppid int, named bool) [][]string {
	var out [][]string
	if ppid > 0 {
		link := fmt.Sprintf("/proc/%d/exe", ppid)
		if exe, err := os.Readlink(link); err == nil {
			real, deleted := strings.CutSuffix(exe, " (deleted)")
			if deleted {
				exe = link
			}
			base := path.Base(real)
			nixName := base == "nix" || strings.HasPrefix(base, "nix-")
			// Unchecked, the path must also exist here: a parent in
			// another root (a chroot) names a file this process
			// cannot run.
			if _, err := os.Stat(exe); !named || (nixName && err == nil) {
				out = append(out, []string{exe})
			}
		}
	}
	if p, err := exec.LookPath("nix-store"); err == nil {
		out = append(out, []string{p})
	}
	for _, p := range []string{
		"/usr/bin/nix-store",
		"/nix/var/nix/profiles/default/bin/nix-store",
		"/run/current-system/sw/bin/nix-store",
	} {
		if named {
			if _, err := os.Stat(p); err != nil {
				continue
			}
		}
		out = append(out, []string{p})
	}
	return out
}

// runNix runs a nix-store command made by mk from s.NixStore. When it
// fails and s.Fallback is set, the pick is checked with --version (once):
// if it is not a working nix-store, the first working command of Fallback
// replaces it and the command runs again. Commands run this way must be
// safe to repeat (queries, and --register-validity, which is idempotent).
func (s *Store) runNix(ctx context.Context, mk func(argv []string) *exec.Cmd, run func(cmd *exec.Cmd) error) error {
	cmd := mk(s.NixStore)
	err := run(cmd)
	if err == nil || s.checked || len(s.Fallback) == 0 {
		return err
	}
	s.checked = true
	if _, verr := Version(ctx, s.NixStore); verr == nil {
		return err
	}
	for _, argv := range s.Fallback {
		if _, verr := Version(ctx, argv); verr != nil {
			continue
		}
		s.logf("%v is not a working nix-store, using %v", s.NixStore, argv)
		s.NixStore = argv
		return run(mk(argv))
	}
	return err
}

// command returns an exec.Cmd running nix-store with args; argv[0] is
// "nix-store" whatever file runs.
func command(ctx context.Context, nixStore []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, nixStore[0])
	cmd.Args = append(append([]string{"nix-store"}, nixStore[1:]...), args...)
	return cmd
}

// Version runs `nix-store --version` and returns the version it prints,
// e.g. "2.8.0" for "nix-store (Nix) 2.8.0". Lix numbers its releases
// differently, so its versions come back as "lix-2.91.1".
func Version(ctx context.Context, nixStore []string) (string, error) {
	if len(nixStore) == 0 {
		return "", errors.New("localstore: no nix-store given")
	}
	cmd := command(ctx, nixStore, "--version")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("localstore: %v (%s): %w", cmd.Args, cmd.Path, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	if !strings.HasPrefix(line, "nix-store (") {
		return "", fmt.Errorf("localstore: %s is not nix-store: it says %q", cmd.Path, line)
	}
	f := strings.Fields(line)
	v := f[len(f)-1]
	if strings.Contains(line, "Lix") {
		v = "lix-" + v
	}
	return v, nil
}

// versionAtLeast compares dotted versions such as "2.8.0" or
// "2.36.0pre20260822"; a part that does not start with digits counts as 0.
func versionAtLeast(v string, want ...int) bool {
	parts := strings.Split(v, ".")
	for i, w := range want {
		n := 0
		if i < len(parts) {
			digits := parts[i]
			for j := 0; j < len(digits); j++ {
				if digits[j] < '0' || digits[j] > '9' {
					digits = digits[:j]
					break
				}
			}
			n, _ = strconv.Atoi(digits)
		}
		if n != w {
			return n > w
		}
	}
	return true
}

// cmdError describes a failed nix-store, with the end of its stderr.
func cmdError(cmd *exec.Cmd, stderr *tailBuffer, err error) error {
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		return fmt.Errorf("localstore: %v: %w", cmd.Args, err)
	}
	return fmt.Errorf("localstore: %v: %w: %s", cmd.Args, err, msg)
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// maxArgs bounds the paths per nix-store command line, far below ARG_MAX.
const maxArgs = 4096

// Valid returns those of paths that are valid in the store, in their
// order, asking nix-store once (`--check-validity --print-invalid`) unless
// there are thousands.
func (s *Store) Valid(ctx context.Context, paths []string) ([]string, error) {
	for _, p := range paths {
		if err := s.checkPath(p); err != nil {
			return nil, err
		}
	}
	invalid := make(map[string]bool)
	for start := 0; start < len(paths); start += maxArgs {
		chunk := paths[start:min(start+maxArgs, len(paths))]
		var stdout bytes.Buffer
		err := s.runNix(ctx, func(argv []string) *exec.Cmd {
			return command(ctx, argv, append([]string{"--store", s.URI, "--check-validity", "--print-invalid"}, chunk...)...)
		}, func(cmd *exec.Cmd) error {
			stdout.Reset()
			stderr := new(tailBuffer)
			cmd.Stdout, cmd.Stderr = &stdout, stderr
			if err := cmd.Run(); err != nil {
				return cmdError(cmd, stderr, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if line != "" {
				invalid[line] = true
			}
		}
	}
	var valid []string
	for _, p := range paths {
		if !invalid[p] {
			valid = append(valid, p)
		}
	}
	return valid, nil
}

// nixVersion returns the version of s.NixStore, running it once.
func (s *Store) nixVersion(ctx context.Context) (string, error) {
	if s.version == "" {
		v, err := Version(ctx, s.NixStore)
		for i := 0; err != nil && !s.checked && i < len(s.Fallback); i++ {
			if fv, ferr := Version(ctx, s.Fallback[i]); ferr == nil {
				s.logf("%v is not a working nix-store, using %v", s.NixStore, s.Fallback[i])
				s.NixStore, v, err = s.Fallback[i], fv, nil
			}
		}
		if err != nil {
			return "", err
		}
		s.checked = true
		s.version = v
	}
	return s.version, nil
}

// CheckImport reports whether Import can work with this store, without
// touching it, so that the hook can decline a build before accepting it.
func (s *Store) CheckImport(ctx context.Context) error {
	_, err := s.useServe(ctx)
	return err
}

// useServe tells how Import writes into s: false to unpack and run
// --register-validity, true to go through a local nix-store --serve with
// NIX_HELD_LOCKS.
//
// A chroot store (RealDir differs from StoreDir) needs a nix-store whose
// --register-validity looks at the real path: Nix before 2.36 lstats the
// logical path and fails (nix-store.cc, registerValidity; fixed by NixOS/nix
// d4248c87a4 "nix-store --register-validity: fix ENOENT under chroot
// stores"). Nix up to 2.28 honours NIX_HELD_LOCKS instead; 2.29 to 2.35
// can do neither.
func (s *Store) useServe(ctx context.Context) (bool, error) {
	if len(s.NixStore) == 0 {
		return false, errors.New("localstore: no nix-store to register paths with")
	}
	if s.RealDir == s.StoreDir {
		return false, nil
	}
	v, err := s.nixVersion(ctx)
	if err != nil {
		return false, err
	}
	switch {
	case versionAtLeast(v, 2, 36):
		return false, nil
	case !strings.HasPrefix(v, "lix-") && !versionAtLeast(v, 2, 29):
		return true, nil
	}
	return false, fmt.Errorf("%w: nix-store %s cannot register paths in the chroot store %s while Nix holds their locks (needs Nix 2.28 or older, or 2.36 or later)", ErrUnsupported, v, s.URI)
}
