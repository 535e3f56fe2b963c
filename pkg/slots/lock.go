// SPDX-License-Identifier: MIT

package slots

// Rules for the lock that serialises changes to the file's shape:
//   - Never flock(2) the slot file or anything else another user can open:
//     Linux lets a process flock a file it may only read, so a lock on the
//     world-readable slot file could be held by any local user, and every
//     hook (root under nix-daemon) would wait for them before answering Nix.
//   - The lock is <slot file>.lock, mode 0600, owned by the owner of the
//     slot file (the user the hooks run as), opened with O_NOFOLLOW and
//     checked after opening: only that user's processes (and root) can
//     hold it. One root creates is handed to the slot file's owner, so that
//     root typing `offload drain` on a single-user Nix does not lock that
//     user's hooks out.
//   - Every wait is bounded (lockWait); readers never lock, they poll.

import (
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockWait bounds every wait for the lock or for a rebuild. Holders only
// change a few words or write one small file, so this is never reached
// unless a holder is stopped.
var lockWait = 5 * time.Second

// lockPath is the lock file of the slot file at path.
func lockPath(path string) string { return path + ".lock" }

// lock takes the exclusive lock of f's file, open as slot, waiting at most
// lockWait, and returns the function that gives it back.
func (f *File) lock(slot *os.File) (unlock func(), err error) {
	var owner unix.Stat_t
	if err := unix.Fstat(int(slot.Fd()), &owner); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: f.path, Err: err}
	}
	p := lockPath(f.path)
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	if err := checkLockFile(fd, p, owner.Uid, owner.Gid); err != nil {
		unix.Close(fd)
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	pause := time.Millisecond
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			unix.Close(fd)
			return nil, &fs.PathError{Op: "flock", Path: p, Err: err}
		}
		if time.Now().After(deadline) {
			unix.Close(fd)
			return nil, fmt.Errorf("slots: %s: still locked after %v", p, lockWait)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
	return func() { unix.Close(fd) }, nil // closing drops the lock
}

// checkLockFile refuses a lock file that a user other than uid, the slot
// file's owner, could open: not a regular file, owned by someone else, or
// open to group or others. Root hands a lock file of its own to uid.
func checkLockFile(fd int, p string, uid, gid uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("slots: %s: not a regular file", p)
	}
	if st.Uid != uid && st.Uid == 0 && os.Geteuid() == 0 {
		if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
			return &fs.PathError{Op: "chown", Path: p, Err: err}
		}
		st.Uid = uid
	}
	switch {
	case st.Uid != uid:
		return fmt.Errorf("slots: %s: owned by uid %d, not by the slot file's owner %d; remove it", p, st.Uid, uid)
	case st.Mode&0o077 != 0:
		return fmt.Errorf("slots: %s: mode %#o lets other users open it; remove it", p, st.Mode&0o777)
	}
	return nil
}

// waitRebuild returns once the rebuild that marked the file open as fd
// "moved" has put the new file in place, or after lockWait. It polls the
// path rather than taking the lock, so it works for readers who cannot
// open the lock file, and nobody can make it wait longer.
func waitRebuild(fd *os.File, path string) {
	deadline := time.Now().Add(lockWait)
	for samePath(fd, path) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
