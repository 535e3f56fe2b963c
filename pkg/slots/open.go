// SPDX-License-Identifier: MIT

package slots

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/offload-nix/offload/pkg/spec"
)

// OpenFallback opens the slot file every hook of this user shares, at
// primary. When that cannot be written (a single-user Nix whose state
// directory belongs to someone else), it uses
// $XDG_STATE_HOME/offload/slots (~/.local/state/offload/slots) and says so
// through Logf when it creates that file. With ReadOnly it reads the first
// of the two that exists.
func OpenFallback(primary string, ms []spec.Machine, o Options) (*File, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	f, err := Open(primary, ms, o)
	if err == nil {
		return f, nil
	}
	denied := errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)
	if !denied && !(o.ReadOnly && errors.Is(err, fs.ErrNotExist)) {
		return nil, err
	}
	fb := fallbackPath(getenv)
	if fb == "" || fb == primary {
		return nil, err
	}
	_, statErr := os.Stat(fb)
	f, err2 := Open(fb, ms, o)
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	if !o.ReadOnly && errors.Is(statErr, fs.ErrNotExist) {
		f.o.Logf("slots: cannot write %s (%v); keeping builder load in %s", primary, err, fb)
	}
	return f, nil
}

func fallbackPath(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "offload", "slots")
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "offload", "slots")
	}
	return ""
}

// Open maps the slot file at path, creating it (and its directory) if
// needed, and records the builders ms (see Sync). A damaged file or one of
// an older layout is rebuilt with a warning, keeping what can be read; a file
// of a newer layout gives ErrNewerLayout.
func Open(path string, ms []spec.Machine, o Options) (*File, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	f := &File{path: path, o: o, self: testOnlyOwner}
	if f.self == 0 {
		f.self = selfOwner()
	}
	mach := f.machines(ms)
	if !o.ReadOnly {
		if err := makeDir(filepath.Dir(path)); err != nil {
			return nil, err
		}
	}
	m, err := f.openMapping(mach)
	if err != nil {
		return nil, err
	}
	f.cur.Store(f.newView(m, mach))
	if !o.ReadOnly {
		f.mu.Lock()
		err = f.syncLocked(mach)
		f.mu.Unlock()
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// testOnlyOwner replaces the owner word of this process in tests.
var testOnlyOwner uint64

func makeDir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The umask must not hide the load from other users' status.
	return os.Chmod(dir, 0o755)
}

// openMapping opens, checks and maps the file at f.path, creating or
// rebuilding it as needed.
func (f *File) openMapping(mach []machine) (*mapping, error) {
	flag := os.O_RDWR
	if f.o.ReadOnly {
		flag = os.O_RDONLY
	}
	for range 50 {
		fd, err := os.OpenFile(f.path, flag|syscall.O_CLOEXEC, 0)
		if errors.Is(err, fs.ErrNotExist) && !f.o.ReadOnly {
			if err := f.create(mach); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		m, bad, err := f.check(fd)
		if err != nil {
			fd.Close()
			return nil, err
		}
		if m != nil {
			if !m.moved() {
				return m, nil
			}
			// A rebuild is under way or was interrupted.
			if f.o.ReadOnly {
				waitRebuild(fd, f.path)
				if samePath(fd, f.path) {
					// Interrupted: this is the only file there is.
					return m, nil
				}
			} else {
				err = f.rebuild(fd, m, m.g, "")
			}
			m.unmap()
			if err != nil {
				return nil, err
			}
			continue
		}
		if f.o.ReadOnly {
			fd.Close()
			return nil, fmt.Errorf("slots: %s: %s", f.path, bad)
		}
		err = f.rebuild(fd, nil, f.geometryFor(mach), bad)
		fd.Close()
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("slots: %s: file keeps changing", f.path)
}

// check reads fd's header. It returns a mapping for a good file, a reason for
// a damaged or old one, or an error (I/O, or a newer layout).
func (f *File) check(fd *os.File) (*mapping, string, error) {
	st, err := fd.Stat()
	if err != nil {
		return nil, "", err
	}
	b := make([]byte, min(st.Size(), headerSize))
	if _, err := fd.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, "", err
	}
	g, ver, bad := parseHeader(b, st.Size())
	switch {
	case ver > version:
		return nil, "", fmt.Errorf("%w (%s has version %d, this offload knows %d)", ErrNewerLayout, f.path, ver, version)
	case bad != nil:
		return nil, bad.Error(), nil
	case ver < version:
		return nil, "older layout version " + strconv.FormatUint(ver, 10), nil
	}
	m, err := mapFile(fd, g, f.o.ReadOnly)
	return m, "", err
}

func (f *File) geometryFor(mach []machine) geometry {
	most := 0
	for _, mc := range mach {
		most = max(most, mc.maxJobs)
	}
	return geometryFor(len(mach), most)
}

// create makes a new file and links it into place unless another process
// was quicker; either way the caller opens what is at the path.
func (f *File) create(mach []machine) error {
	img := make([]byte, f.geometryFor(mach).fileSize())
	putHeader(img, f.geometryFor(mach), f.o.Now().UnixNano())
	tmp, err := f.writeTemp(img)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, f.path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// writeTemp writes img to a new file next to f.path, mode 0644.
func (f *File) writeTemp(img []byte) (string, error) {
	tmp := f.path + ".tmp." + strconv.Itoa(os.Getpid()) + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	fd, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return "", err
	}
	err = fd.Chmod(0o644) // whatever the umask
	if err == nil {
		_, err = fd.Write(img)
	}
	if err == nil {
		err = fd.Sync()
	}
	if e := fd.Close(); err == nil {
		err = e
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// samePath reports whether path still names the file open as fd.
func samePath(fd *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(fd.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// rebuild replaces the file open as fd (mapped as live, or nil when it
// cannot be mapped) by a new one of geometry at least g holding every
// counter and slot owner it can read. why, when not "", is logged. If
// another process rebuilt it first, rebuild does nothing.
func (f *File) rebuild(fd *os.File, live *mapping, g geometry, why string) error {
	unlock, err := f.lock(fd)
	if err != nil {
		return err
	}
	defer unlock()
	return f.rebuildLocked(fd, live, g, why)
}

// rebuildLocked is rebuild for a caller holding the lock.
func (f *File) rebuildLocked(fd *os.File, live *mapping, g geometry, why string) error {
	if !samePath(fd, f.path) {
		return nil
	}
	var old []byte
	if live != nil {
		// From here on, processes that take or give back a slot in
		// the old file see "moved" and repeat it in the new one.
		live.store(hMoved, 1)
		old = make([]byte, len(live.data))
		for off := 0; off < len(old); off += 8 {
			binary.NativeEndian.PutUint64(old[off:], live.load(off))
		}
	} else {
		st, err := fd.Stat()
		if err != nil {
			return err
		}
		old = make([]byte, min(st.Size(), maxFileSize))
		if _, err := fd.ReadAt(old, 0); err != nil && err != io.EOF {
			return err
		}
	}
	g = carryGeometry(old, g)
	img := make([]byte, g.fileSize())
	putHeader(img, g, f.o.Now().UnixNano())
	kept := carry(old, img, g)
	if why != "" {
		f.o.Logf("slots: %s: %s; rebuilt it keeping %d builder records", f.path, why, kept)
		if live == nil {
			// Keep the damaged file for a post-mortem.
			os.Remove(f.path + ".bad")
			os.Link(f.path, f.path+".bad")
		}
	}
	tmp, err := f.writeTemp(img)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// oldShape reads the geometry words of an old or damaged image, trusting
// them only as far as they are consistent with each other.
type oldShape struct {
	ok                                bool
	records, recSize, slots, slotSize int
}

func shapeOf(old []byte) oldShape {
	if len(old) < hFirstUnused {
		return oldShape{}
	}
	w := func(off int) uint64 { return binary.NativeEndian.Uint64(old[off:]) }
	s := oldShape{
		records:  int(min(w(hRecords), maxRecords)),
		recSize:  int(min(w(hRecSize), maxFileSize)),
		slots:    int(min(w(hSlots), MaxSlots*4)),
		slotSize: int(min(w(hSlotSize), maxFileSize)),
	}
	s.ok = w(hMagic) == magic && w(hHeaderSize) == headerSize &&
		s.slotSize >= sKeepLen && s.slotSize%8 == 0 && s.recSize%8 == 0 &&
		s.recSize >= recHeadSize+s.slots*s.slotSize
	return s
}

// carryGeometry grows g so that everything readable in old fits.
func carryGeometry(old []byte, g geometry) geometry {
	s := shapeOf(old)
	if !s.ok {
		return g
	}
	g.records = max(g.records, uint64(ceilPow2(s.records)))
	g.slots = max(g.slots, uint64(min(s.slots, MaxSlots)))
	for g.fileSize() > maxFileSize && g.records > minRecords {
		g.records /= 2
	}
	return g
}

// carry copies the records (counters, texts, slot owners and slot
// details), and the decision ring, from an old image into a new one of
// geometry g. It returns the number of records copied.
func carry(old, img []byte, g geometry) int {
	s := shapeOf(old)
	if !s.ok {
		return 0
	}
	w := func(off int) uint64 { return binary.NativeEndian.Uint64(old[off:]) }
	kept := 0
	for i := 0; i < s.records && kept < int(g.records); i++ {
		ro := headerSize + i*s.recSize
		if ro+recHeadSize > len(old) || w(ro+rHash) == 0 {
			continue
		}
		no := g.recOff(kept)
		kept++
		copy(img[no:no+recHeadSize], old[ro:ro+recHeadSize])
		if mj := binary.NativeEndian.Uint64(img[no+rMaxJobs:]); mj > g.slots {
			binary.NativeEndian.PutUint64(img[no+rMaxJobs:], g.slots)
		}
		for j := 0; j < s.slots && j < int(g.slots); j++ {
			so := ro + recHeadSize + j*s.slotSize
			n := min(s.slotSize, slotSize)
			if so+n > len(old) {
				break
			}
			copy(img[no+recHeadSize+j*slotSize:], old[so:so+n])
		}
	}
	// The decision ring, when it is where this layout puts it.
	ro := int(w(hRingOff))
	if w(hRingN) == decisionCount && w(hRingSize) == decisionSize &&
		ro >= headerSize && ro+decisionCount*decisionSize <= len(old) {
		copy(img[g.ringOff():], old[ro:ro+decisionCount*decisionSize])
		binary.NativeEndian.PutUint64(img[hRingHead:], w(hRingHead))
	}
	return kept
}
