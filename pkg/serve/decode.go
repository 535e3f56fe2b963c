// SPDX-License-Identifier: MIT

package serve

import "github.com/offload-nix/offload/pkg/wire"

// Caps on what a server may send. A store path is at most a store directory
// plus 1+32+1+211 bytes; the other short strings (hashes, content
// addresses, signatures, output names) are far shorter than maxShort.
const (
	maxPath     = 4 << 10
	maxShort    = 4 << 10
	maxErrorMsg = 1 << 20  // a build error includes the last log lines
	maxJSON     = 64 << 10 // one realisation
	maxList     = 1 << 20  // entries of any list
	maxReply    = 16 << 20 // bytes of strings in one reply, all told
)

// newDecoder reads one reply with a budget of maxReply bytes.
func newDecoder(r *wire.Reader, scratch *[]byte) *wire.Decoder {
	return wire.NewDecoder(r, scratch, maxReply)
}
