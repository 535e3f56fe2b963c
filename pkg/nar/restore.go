// SPDX-License-Identifier: MIT

package nar

// Rules for Restore:
//   - Read exactly the archive's bytes from r and no more, so a caller can
//     keep reading a connection after it (the serve protocol's
//     DumpStorePath reply is a bare NAR).
//   - Every byte read is hashed and counted before it is interpreted.
//   - Every object is created relative to an open directory fd, with
//     O_EXCL|O_NOFOLLOW, mkdirat or symlinkat, which never follow a link:
//     a symlink "a -> /etc" followed by "a/x" cannot happen (names carry no
//     '/') and a second "a" fails to be created.
//   - Memory is bounded by constants: one content buffer, one string
//     buffer, one directory fd and one name per level of nesting.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Options tune Restore.
type Options struct {
	// Size, when non-zero, is the exact size the archive must have (the
	// narSize the sender announced). Restore reads at most Size bytes from
	// r, fails with ErrTooLarge as soon as the archive would need more, and
	// fails if the archive ends before Size bytes (the rest would be
	// trailing data).
	Size uint64
	// Progress, if not nil, is called with the number of bytes read so far
	// after each chunk of file contents (at most every 64 KiB) and at the
	// end. It must be quick.
	Progress func(read uint64)
}

const bufSize = 64 << 10

// restorer holds the state of one Restore: the stream, its digest and the
// fixed buffers.
type restorer struct {
	r        io.Reader
	h        hash.Hash
	n        uint64
	limit    uint64
	progress func(uint64)
	small    [8]byte
	str      [MaxTarget + 1]byte
	buf      []byte
}

// Restore reads one archive from r and creates it at dst, which must not
// exist while its parent directory must. Files get mode 0644, or 0755 when
// marked executable, and directories 0755, whatever the umask; Nix
// canonicalises them when the path is registered. On error Restore removes
// whatever it created at dst.
//
// Restore reads exactly the archive's bytes from r, never more, so r may go
// on with other data; it does not buffer, so give it a buffered reader when
// r is a pipe or socket.
func Restore(r io.Reader, dst string, o Options) (Result, error) {
	dst = filepath.Clean(dst)
	parent, base := filepath.Split(dst)
	if base == "" || base == "." || base == ".." || base == "/" {
		return Result{}, fmt.Errorf("nar: invalid destination %q", dst)
	}
	if parent == "" {
		parent = "."
	}
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("nar: %w", &os.PathError{Op: "open", Path: parent, Err: err})
	}
	defer unix.Close(pfd)

	d := &restorer{r: r, h: sha256.New(), limit: o.Size, progress: o.Progress}
	created := false
	err = d.archive(pfd, base, &created)
	if err == nil && d.limit != 0 && d.n != d.limit {
		err = fmt.Errorf("nar: archive ended after %d bytes, expected %d", d.n, d.limit)
	}
	if err != nil {
		if created {
			if rerr := os.RemoveAll(dst); rerr != nil {
				err = fmt.Errorf("%w (and removing it: %v)", err, rerr)
			}
		}
		return Result{}, err
	}
	if d.progress != nil {
		d.progress(d.n)
	}
	return Result{Size: d.n, SHA256: sum(d.h)}, nil
}

func (d *restorer) archive(pfd int, base string, created *bool) error {
	if err := d.expect(magic, "/"); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		return fmt.Errorf("nar: not a Nix archive: %w", err)
	}
	return d.node(pfd, base, "", 0, created)
}

// read fills p from the stream, hashing and counting it.
func (d *restorer) read(p []byte) error {
	if d.limit != 0 && uint64(len(p)) > d.limit-d.n {
		return ErrTooLarge
	}
	n, err := io.ReadFull(d.r, p)
	d.h.Write(p[:n])
	d.n += uint64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("nar: archive truncated after %d bytes: %w", d.n, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fmt.Errorf("nar: reading: %w", err)
	}
	return nil
}

func (d *restorer) u64() (uint64, error) {
	if err := d.read(d.small[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.small[:]), nil
}

// padding reads and checks the zero bytes after n bytes of data.
func (d *restorer) padding(n uint64) error {
	p := (8 - n%8) % 8
	if p == 0 {
		return nil
	}
	if err := d.read(d.small[:p]); err != nil {
		return err
	}
	for _, c := range d.small[:p] {
		if c != 0 {
			return errors.New("nar: non-zero padding")
		}
	}
	return nil
}

// string reads a string of at most max bytes into the fixed buffer. The
// result is valid until the next call.
func (d *restorer) string(max int) ([]byte, error) {
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("nar: string of %d bytes is longer than %d", n, max)
	}
	b := d.str[:n]
	if err := d.read(b); err != nil {
		return nil, err
	}
	return b, d.padding(n)
}

func (d *restorer) tag() ([]byte, error) { return d.string(maxTag) }

func (d *restorer) expect(want, at string) error {
	got, err := d.tag()
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("nar: %s: expected %q, got %q", display(at), want, got)
	}
	return nil
}

func display(at string) string {
	if at == "" {
		return "/"
	}
	return at
}

// node reads one node and creates it as name in the directory dirfd. at is
// the node's path inside the archive, for messages.
func (d *restorer) node(dirfd int, name, at string, depth int, created *bool) error {
	if depth >= MaxDepth {
		return fmt.Errorf("nar: %s: nesting deeper than %d", display(at), MaxDepth-1)
	}
	if err := d.expect("(", at); err != nil {
		return err
	}
	if err := d.expect("type", at); err != nil {
		return err
	}
	typ, err := d.tag()
	if err != nil {
		return err
	}
	switch string(typ) {
	case "regular":
		err = d.regular(dirfd, name, at, created)
	case "symlink":
		err = d.symlink(dirfd, name, at, created)
	case "directory":
		// A directory's entries end with its closing ")".
		return d.directory(dirfd, name, at, depth, created)
	default:
		return fmt.Errorf("nar: %s: unknown file type %q", display(at), typ)
	}
	if err != nil {
		return err
	}
	return d.expect(")", at)
}

func (d *restorer) regular(dirfd int, name, at string, created *bool) error {
	tag, err := d.tag()
	if err != nil {
		return err
	}
	var mode uint32 = 0o644
	if string(tag) == "executable" {
		if _, err := d.string(0); err != nil {
			return fmt.Errorf("nar: %s: executable marker: %w", display(at), err)
		}
		mode = 0o755
		if tag, err = d.tag(); err != nil {
			return err
		}
	}
	if string(tag) != "contents" {
		return fmt.Errorf("nar: %s: expected \"contents\", got %q", display(at), tag)
	}
	size, err := d.u64()
	if err != nil {
		return err
	}
	if d.limit != 0 && size > d.limit-d.n {
		return fmt.Errorf("nar: %s: file of %d bytes: %w", display(at), size, ErrTooLarge)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("nar: %s: creating file: %w", display(at), err)
	}
	*created = true
	err = d.contents(fd, size, at)
	if err == nil {
		if err = unix.Fchmod(fd, mode); err != nil {
			err = fmt.Errorf("nar: %s: chmod: %w", display(at), err)
		}
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("nar: %s: closing: %w", display(at), cerr)
	}
	return err
}

func (d *restorer) contents(fd int, size uint64, at string) error {
	if d.buf == nil {
		d.buf = make([]byte, bufSize)
	}
	left := size
	for left > 0 {
		chunk := d.buf
		if left < uint64(len(chunk)) {
			chunk = chunk[:left]
		}
		if err := d.read(chunk); err != nil {
			return err
		}
		if err := writeAll(fd, chunk); err != nil {
			return fmt.Errorf("nar: %s: writing: %w", display(at), err)
		}
		left -= uint64(len(chunk))
		if d.progress != nil {
			d.progress(d.n)
		}
	}
	return d.padding(size)
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

func (d *restorer) symlink(dirfd int, name, at string, created *bool) error {
	if err := d.expect("target", at); err != nil {
		return err
	}
	target, err := d.string(MaxTarget)
	if err != nil {
		return fmt.Errorf("nar: %s: symlink target: %w", display(at), err)
	}
	if len(target) == 0 || bytes.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("nar: %s: invalid symlink target %q", display(at), target)
	}
	if err := unix.Symlinkat(string(target), dirfd, name); err != nil {
		return fmt.Errorf("nar: %s: creating symlink: %w", display(at), err)
	}
	*created = true
	return nil
}

func (d *restorer) directory(dirfd int, name, at string, depth int, created *bool) error {
	if err := unix.Mkdirat(dirfd, name, 0o755); err != nil {
		return fmt.Errorf("nar: %s: creating directory: %w", display(at), err)
	}
	*created = true
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("nar: %s: opening directory: %w", display(at), err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o755); err != nil {
		return fmt.Errorf("nar: %s: chmod: %w", display(at), err)
	}
	var prev []byte
	for {
		tag, err := d.tag()
		if err != nil {
			return err
		}
		if string(tag) == ")" {
			return nil
		}
		if string(tag) != "entry" {
			return fmt.Errorf("nar: %s: expected \"entry\" or \")\", got %q", display(at), tag)
		}
		if err := d.expect("(", at); err != nil {
			return err
		}
		if err := d.expect("name", at); err != nil {
			return err
		}
		nb, err := d.string(MaxName)
		if err != nil {
			return fmt.Errorf("nar: %s: entry name: %w", display(at), err)
		}
		if len(nb) == 0 || string(nb) == "." || string(nb) == ".." ||
			bytes.IndexByte(nb, '/') >= 0 || bytes.IndexByte(nb, 0) >= 0 {
			return fmt.Errorf("nar: %s: invalid file name %q", display(at), nb)
		}
		if prev != nil && bytes.Compare(nb, prev) <= 0 {
			return fmt.Errorf("nar: %s: directory is not sorted (%q after %q)", display(at), nb, prev)
		}
		entry := string(nb)
		prev = append(prev[:0], nb...)
		if err := d.expect("node", at); err != nil {
			return err
		}
		if err := d.node(fd, entry, at+"/"+entry, depth+1, created); err != nil {
			return err
		}
		if err := d.expect(")", at); err != nil {
			return err
		}
	}
}
