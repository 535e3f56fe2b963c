// SPDX-License-Identifier: MIT

package slots

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapping is one mapped slot file. It stays mapped until the File is closed,
// also after a rebuild replaced it, because Slots may still point into it.
type mapping struct {
	f    *os.File
	data []byte
	g    geometry
	ino  uint64
	dev  uint64
	ro   bool
}

// mapFile maps f (whose header has been checked to describe g).
func mapFile(f *os.File, g geometry, ro bool) (*mapping, error) {
	prot := unix.PROT_READ
	if !ro {
		prot |= unix.PROT_WRITE
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(g.fileSize()), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, &fs.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	return &mapping{f: f, data: data, g: g, ino: uint64(st.Ino), dev: uint64(st.Dev), ro: ro}, nil
}

func (m *mapping) unmap() error {
	var err error
	if m.data != nil {
		if e := unix.Munmap(m.data); e != nil {
			err = &fs.PathError{Op: "munmap", Path: m.f.Name(), Err: e}
		}
		m.data = nil
	}
	if e := m.f.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

// word returns the 64-bit word at off. Every access to the mapping goes
// through here or word32: off must be 8-byte aligned and inside the file.
func (m *mapping) word(off int) *uint64 {
	if off < 0 || off+8 > len(m.data) || off&7 != 0 {
		panic(fmt.Sprintf("slots: word offset %d out of range [0,%d)", off, len(m.data)))
	}
	return (*uint64)(unsafe.Pointer(&m.data[off]))
}

func (m *mapping) word32(off int) *uint32 {
	if off < 0 || off+4 > len(m.data) || off&3 != 0 {
		panic(fmt.Sprintf("slots: word offset %d out of range [0,%d)", off, len(m.data)))
	}
	return (*uint32)(unsafe.Pointer(&m.data[off]))
}

func (m *mapping) load(off int) uint64 { return atomic.LoadUint64(m.word(off)) }

func (m *mapping) store(off int, v uint64) {
	if m.ro {
		return
	}
	atomic.StoreUint64(m.word(off), v)
}

// clear stores 0 unless the word is 0 already (a load is much cheaper
// than an atomic store).
func (m *mapping) clear(off int) {
	if m.load(off) != 0 {
		m.store(off, 0)
	}
}

func (m *mapping) add(off int, d uint64) uint64 {
	if m.ro {
		return m.load(off)
	}
	return atomic.AddUint64(m.word(off), d)
}

func (m *mapping) cas(off int, old, new uint64) bool {
	if m.ro {
		return false
	}
	return atomic.CompareAndSwapUint64(m.word(off), old, new)
}

// or sets bits in a word.
func (m *mapping) or(off int, bits uint64) {
	if m.ro {
		return
	}
	atomic.OrUint64(m.word(off), bits)
}

// andNot clears bits in a word.
func (m *mapping) andNot(off int, bits uint64) {
	if m.ro {
		return
	}
	atomic.AndUint64(m.word(off), ^bits)
}

func (m *mapping) moved() bool { return m.load(hMoved) != 0 }

// putText stores s, cut to n bytes (a multiple of 8) and NUL-padded, one
// word at a time.
func (m *mapping) putText(off, n int, s string) {
	s = cut(s, n)
	for i := 0; i < n; i += 8 {
		m.store(off+i, textWord(s, i))
	}
}

// textWord is the word of s, NUL-padded, that putText stores at byte i of
// the field.
func textWord(s string, i int) uint64 {
	var w [8]byte
	if i < len(s) {
		copy(w[:], s[i:])
	}
	return binary.NativeEndian.Uint64(w[:])
}

// text reads a field written by putText.
func (m *mapping) text(off, n int) string {
	buf := make([]byte, 0, n)
	var w [8]byte
	for i := 0; i < n; i += 8 {
		binary.NativeEndian.PutUint64(w[:], m.load(off+i))
		for _, c := range w {
			if c == 0 {
				return string(buf)
			}
			buf = append(buf, c)
		}
	}
	return string(buf)
}

// textEqual reports whether the field at off holds s (cut to n), without
// allocating.
func (m *mapping) textEqual(off, n int, s string) bool {
	s = cut(s, n)
	for i := 0; i < n; i += 8 {
		if m.load(off+i) != textWord(s, i) {
			return false
		}
	}
	return true
}

func (m *mapping) load32(off int) uint32 { return atomic.LoadUint32(m.word32(off)) }

func (m *mapping) add32(off int, d uint32) uint32 {
	if m.ro {
		return m.load32(off)
	}
	return atomic.AddUint32(m.word32(off), d)
}
