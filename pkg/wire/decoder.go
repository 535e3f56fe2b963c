// SPDX-License-Identifier: MIT

package wire

import (
	"fmt"
	"io"
)

// strOverhead is what a string or list entry costs a Decoder's budget
// beyond its bytes.
const strOverhead = 16

// Decoder reads one message of a store protocol with a total allocation
// budget, so that a hostile peer cannot make its reader allocate without
// bound even with lists of maximal strings: every string and list length
// is capped, and what they allocate in all is capped too. Strings are read
// through one scratch buffer that the caller keeps between messages.
type Decoder struct {
	r       *Reader
	scratch *[]byte
	budget  int64
	max     int64
}

// NewDecoder returns a Decoder reading from r, through *scratch, at most
// budget bytes of strings all told.
func NewDecoder(r *Reader, scratch *[]byte, budget int64) *Decoder {
	return &Decoder{r: r, scratch: scratch, budget: budget, max: budget}
}

// Uint64 reads one integer.
func (d *Decoder) Uint64() (uint64, error) { return d.r.Uint64() }

// Bool reads a boolean as Nix writes it: 0 or 1.
func (d *Decoder) Bool() (bool, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return false, err
	}
	if n > 1 {
		return false, fmt.Errorf("boolean value %d", n)
	}
	return n == 1, nil
}

// Bytes reads a string of at most max bytes, named what in errors, into
// the scratch buffer, which the result aliases until the next read.
func (d *Decoder) Bytes(what string, max uint64) ([]byte, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%s of %d bytes is longer than %d", what, n, max)
	}
	d.budget -= int64(n) + strOverhead
	if d.budget < 0 {
		return nil, fmt.Errorf("reply is larger than %d bytes", d.max)
	}
	if n == 0 {
		return nil, nil
	}
	if uint64(cap(*d.scratch)) < n {
		*d.scratch = make([]byte, n)
	}
	b := (*d.scratch)[:n]
	if _, err := io.ReadFull(d.r.Underlying(), b); err != nil {
		return nil, NoEOF(err)
	}
	return b, d.r.Padding(n)
}

// String reads a string of at most max bytes, named what in errors.
func (d *Decoder) String(what string, max uint64) (string, error) {
	b, err := d.Bytes(what, max)
	return string(b), err
}

// Count reads a list length of at most max entries, named what in errors.
func (d *Decoder) Count(what string, max uint64) (int, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("%s of %d entries is longer than %d", what, n, max)
	}
	d.budget -= int64(n) * strOverhead
	if d.budget < 0 {
		return 0, fmt.Errorf("reply is larger than %d bytes", d.max)
	}
	return int(n), nil
}

// Strings reads a list of at most maxN strings of at most maxLen bytes
// each, named what in errors.
func (d *Decoder) Strings(what string, maxN, maxLen uint64) ([]string, error) {
	n, err := d.Count(what, maxN)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, 1024))
	for range n {
		s, err := d.String(what+" entry", maxLen)
		if err != nil {
			return nil, NoEOF(err)
		}
		out = append(out, s)
	}
	return out, nil
}

// NoEOF turns an EOF in the middle of a value into io.ErrUnexpectedEOF:
// an EOF is a clean end only before the first word of a message.
func NoEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
