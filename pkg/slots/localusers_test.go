// SPDX-License-Identifier: MIT

package slots

// Tests with a second, unprivileged user (nobody) on the same host: under
// nix-daemon the hooks run as root, and every other user can read the slot
// file. Linux lets a process flock(2) any file it can open, also one it may
// only read, so no writer may ever wait for a lock on such a file.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/offload-nix/offload/internal/testenv"
	"github.com/offload-nix/offload/pkg/spec"
)

// within runs fn and fails the test if it takes more than 10 s: generous,
// only there to turn a hang into a failure.
func within(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10s while nobody holds flocks", what)
	}
}

// A user who can only read the slot file holds flocks on it, its directory
// and everything in there it can open: opening, syncing, growing and
// repairing the file as root never waits for them, and the lock root does
// take is one nobody can open.
func TestFlockByOtherUser(t *testing.T) {
	for _, mode := range []string{"-s", "-x"} {
		t.Run(mode, func(t *testing.T) {
			testenv.Nobody(t, "flock")
			dir := filepath.Join(testenv.OpenDir(t), "offload")
			path := filepath.Join(dir, "slots")
			few := []spec.Machine{mach("ssh://a", 2)}
			f, err := Open(path, few, Options{Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
				t.Fatalf("slot file: %v, %v; want mode 0644 (status for everyone)", st, err)
			}

			_, refused, stop := testenv.NobodyFlocks(t, dir, mode)
			within(t, "Open with a new builder", func() error {
				f, err = Open(path, append(few, mach("ssh://b", 1)), Options{Logf: t.Logf})
				return err
			})
			defer f.Close()
			var many []spec.Machine
			for i := range 3 * minRecords {
				many = append(many, mach(fmt.Sprintf("ssh://m%d", i), 4))
			}
			within(t, "Sync that rebuilds the file larger", func() error { return f.Sync(many) })
			if b := f.Snapshot(nil); len(b) != len(many) {
				t.Fatalf("after Sync: %d builders, want %d", len(b), len(many))
			}
			if strings.Join(refused, " ") != "slots.lock" {
				t.Fatalf("nobody could not open %q; want only the lock file", refused)
			}

			// A rebuild interrupted after it marked the file moved: the
			// next writer finishes it, a reader reads on.
			stop()
			testenv.NobodyFlocks(t, dir, mode)
			defer func(d time.Duration) { lockWait = d }(lockWait)
			lockWait = time.Second
			f.cur.Load().m.store(hMoved, 1)
			within(t, "Open read-only during a rebuild", func() error {
				r, err := Open(path, many, Options{ReadOnly: true})
				if err == nil {
					r.Close()
				}
				return err
			})
			within(t, "Open finishing an interrupted rebuild", func() error {
				g, err := Open(path, many, Options{Logf: t.Logf})
				if err == nil {
					g.Close()
				}
				return err
			})
			if v := f.view(); v == nil || v.m.moved() || !samePath(v.m.f, path) {
				t.Errorf("the first File did not move to the rebuilt file")
			}
		})
	}
}

// The lock file is refused when another user could open it, so nobody can
// hold it either.
func TestLockFileChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slots")
	f := open(t, path, []spec.Machine{mach("ssh://a", 1)})
	lp := lockPath(path)
	st, err := os.Lstat(lp)
	if err != nil || st.Mode() != 0o600 {
		t.Fatalf("lock file: %v, %v; want mode 0600", st, err)
	}
	for _, tt := range []struct {
		name  string
		setup func() error
		want  string
	}{
		{"readable", func() error { return os.Chmod(lp, 0o644) }, "lets other users open it"},
		{"symlink", func() error {
			os.Remove(lp)
			return os.Symlink(path, lp)
		}, "too many levels of symbolic links"},
		{"directory", func() error {
			os.Remove(lp)
			return os.Mkdir(lp, 0o700)
		}, "is a directory"},
		{"fifo", func() error {
			os.Remove(lp)
			return syscall.Mkfifo(lp, 0o600)
		}, "not a regular file"},
	} {
		if err := tt.setup(); err != nil {
			t.Fatal(err)
		}
		err := f.Sync([]spec.Machine{mach("ssh://b", 1)})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s lock file: Sync = %v, want an error with %q", tt.name, err, tt.want)
		}
		os.RemoveAll(lp)
	}
	if os.Geteuid() == 0 {
		if err := os.WriteFile(lp, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(lp, 65534, 65534)
		if err := f.Sync([]spec.Machine{mach("ssh://b", 1)}); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("lock file of another user: Sync = %v", err)
		}
		// A single-user Nix's file (here nobody's) changed by root: the
		// lock file root creates goes to the file's owner.
		os.Remove(lp)
		os.Chown(path, 65534, 65534)
		if err := f.Sync([]spec.Machine{mach("ssh://b", 1)}); err != nil {
			t.Errorf("root changing nobody's file: Sync = %v", err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(lp, &st); err != nil || st.Uid != 65534 || st.Mode&0o777 != 0o600 {
			t.Errorf("lock file root made for nobody's file: uid %d, mode %#o, %v; want 65534, 0600", st.Uid, st.Mode&0o777, err)
		}
	}
}
