// SPDX-License-Identifier: MIT

package daemon

import (
	"fmt"
	"io"

	"github.com/offload-nix/offload/pkg/wire"
)

// Caps on what a daemon may send. A store path is at most a store directory
// plus 1+32+1+211 bytes; the other short strings (hashes, content
// addresses, signatures, output names, versions) are far shorter than
// maxShort.
const (
	maxPath     = 4 << 10
	maxShort    = 4 << 10
	maxLogLine  = 1 << 20 // one log line or message
	maxErrorMsg = 1 << 20 // an error includes the last log lines
	maxTrace    = 64 << 10
	maxTraces   = 1024
	maxFields   = 64 // fields of one activity or result
	maxJSON     = 64 << 10
	maxList     = 1 << 20  // entries of any list
	maxReply    = 16 << 20 // bytes of strings in one reply, all told
	// strOverhead is what a string costs beyond its bytes, for the budget.
	strOverhead = 16
)

// decoder reads one reply with a total allocation budget, so that a
// hostile daemon cannot make the client allocate without bound even with
// lists of maximal strings.
type decoder struct {
	r       *wire.Reader
	scratch *[]byte
	budget  int64
}

func newDecoder(r *wire.Reader, scratch *[]byte) *decoder {
	return &decoder{r: r, scratch: scratch, budget: maxReply}
}

func (d *decoder) u64() (uint64, error) { return d.r.Uint64() }

// bool reads a boolean as Nix writes it: 0 or 1.
func (d *decoder) bool() (bool, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return false, err
	}
	if n > 1 {
		return false, fmt.Errorf("boolean value %d", n)
	}
	return n == 1, nil
}

// bytes reads a string of at most max bytes into the scratch buffer, which
// the result aliases.
func (d *decoder) bytes(what string, max uint64) ([]byte, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%s of %d bytes is longer than %d", what, n, max)
	}
	d.budget -= int64(n) + strOverhead
	if d.budget < 0 {
		return nil, fmt.Errorf("reply is larger than %d bytes", maxReply)
	}
	if n == 0 {
		return nil, nil
	}
	if uint64(cap(*d.scratch)) < n {
		*d.scratch = make([]byte, n)
	}
	b := (*d.scratch)[:n]
	if _, err := io.ReadFull(d.r.Underlying(), b); err != nil {
		return nil, noEOF(err)
	}
	return b, d.r.Padding(n)
}

// str reads a string of at most max bytes.
func (d *decoder) str(what string, max uint64) (string, error) {
	b, err := d.bytes(what, max)
	return string(b), err
}

// count reads a list length of at most max entries.
func (d *decoder) count(what string, max uint64) (int, error) {
	n, err := d.r.Uint64()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("%s of %d entries is longer than %d", what, n, max)
	}
	d.budget -= int64(n) * strOverhead
	if d.budget < 0 {
		return 0, fmt.Errorf("reply is larger than %d bytes", maxReply)
	}
	return int(n), nil
}

// strs reads a list of at most maxN strings of at most maxLen bytes each.
func (d *decoder) strs(what string, maxN, maxLen uint64) ([]string, error) {
	n, err := d.count(what, maxN)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, 1024))
	for range n {
		s, err := d.str(what+" entry", maxLen)
		if err != nil {
			return nil, noEOF(err)
		}
		out = append(out, s)
	}
	return out, nil
}

// noEOF turns an EOF in the middle of a value into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
