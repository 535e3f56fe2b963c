// SPDX-License-Identifier: MIT

package nar

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// Dump writes the file tree at path to w as an archive, as `nix-store
// --dump` does: directory entries in bytewise order, a regular file marked
// executable when its owner may execute it, and nothing else of the
// metadata. It fails on file types a NAR cannot hold (devices, sockets,
// pipes) and on a file whose size changes while it is read.
func Dump(w io.Writer, path string) (Result, error) {
	hw := &hashWriter{w: w, h: sha256.New()}
	e := &dumper{w: bufio.NewWriterSize(hw, bufSize)}
	e.str(magic)
	if err := e.node(path); err != nil {
		return Result{}, err
	}
	if err := e.w.Flush(); err != nil {
		return Result{}, fmt.Errorf("nar: writing: %w", err)
	}
	return Result{Size: hw.n, SHA256: sum(hw.h)}, nil
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n uint64
}

func (hw *hashWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += uint64(n)
	return n, err
}

type dumper struct {
	w   *bufio.Writer
	tmp [8]byte
	err error // first write error
}

func (e *dumper) write(b []byte) {
	if _, err := e.w.Write(b); err != nil && e.err == nil {
		e.err = fmt.Errorf("nar: writing: %w", err)
	}
}

var zeros [8]byte

// str writes one string token; the first write error is kept in e.err.
func (e *dumper) str(s string) {
	e.u64(uint64(len(s)))
	if _, err := e.w.WriteString(s); err != nil && e.err == nil {
		e.err = fmt.Errorf("nar: writing: %w", err)
	}
	e.pad(uint64(len(s)))
}

func (e *dumper) u64(n uint64) {
	binary.LittleEndian.PutUint64(e.tmp[:], n)
	e.write(e.tmp[:])
}

func (e *dumper) pad(n uint64) {
	if p := (8 - n%8) % 8; p != 0 {
		e.write(zeros[:p])
	}
}

func (e *dumper) node(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	e.str("(")
	e.str("type")
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		e.str("regular")
		if mode&0o100 != 0 {
			e.str("executable")
			e.str("")
		}
		e.str("contents")
		if err := e.file(path, fi.Size()); err != nil {
			return err
		}
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		e.str("symlink")
		e.str("target")
		e.str(target)
	case mode.IsDir():
		e.str("directory")
		ents, err := os.ReadDir(path) // sorted bytewise by name
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		for _, ent := range ents {
			if e.err != nil {
				return e.err
			}
			e.str("entry")
			e.str("(")
			e.str("name")
			e.str(ent.Name())
			e.str("node")
			if err := e.node(filepath.Join(path, ent.Name())); err != nil {
				return err
			}
			e.str(")")
		}
	default:
		return fmt.Errorf("nar: %s: unsupported file type %v", path, mode.Type())
	}
	e.str(")")
	return e.err
}

func (e *dumper) file(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	defer f.Close()
	e.u64(uint64(size))
	n, err := io.CopyN(e.w, f, size)
	if err == io.EOF {
		return fmt.Errorf("nar: %s: file shrank from %d to %d bytes while being read", path, size, n)
	}
	if err != nil {
		return fmt.Errorf("nar: %s: %w", path, err)
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k != 0 {
		return fmt.Errorf("nar: %s: file grew while being read", path)
	}
	e.pad(uint64(size))
	return nil
}
