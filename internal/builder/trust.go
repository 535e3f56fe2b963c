// SPDX-License-Identifier: MIT

package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"sync"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// trustProbePath is the store path the trust probe adds: always the same,
// so a trusted builder holds at most one, unreferenced, which its garbage
// collector removes. It and trustProbeNAR are made on first use, not at
// start: every hook process would pay for them, and only a check uses
// them.
var trustProbePath = sync.OnceValue(func() string {
	sum := sha256.Sum256([]byte("offload trust probe, version 1"))
	return "/nix/store/" + nixbase32.EncodeToString(sum[:20]) + "-offload-trust-probe"
})

// trustProbeNAR is the NAR of a regular file holding a short text.
var trustProbeNAR = sync.OnceValue(func() []byte {
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	for _, s := range []string{"nix-archive-1", "(", "type", "regular", "contents", "offload checks that this builder trusts its SSH user\n", ")"} {
		w.String(s)
	}
	w.Flush()
	return b.Bytes()
})

// ProbeTrust adds trustProbePath, unsigned, as a build's inputs are added
// (AddToStoreNar of the serve protocol for ssh://). The builder's Nix
// accepts it only from a trusted user (or with require-sigs off);
// otherwise its daemon refuses because the path "lacks a valid signature"
// (the words of Nix 2.8 and 2.34; some versions between say "lacks a
// signature by a trusted key"). trusted is "yes", "no" or "unknown", and
// detail says why when it is not "yes".
func (c *Conn) ProbeTrust() (trusted, detail string) {
	nar := trustProbeNAR()
	sum := sha256.Sum256(nar)
	info := store.PathInfo{Path: trustProbePath(), NarSize: uint64(len(nar)), NarHash: "sha256:" + hex.EncodeToString(sum[:]), References: []string{}}
	err := c.Store.AddToStoreNars([]store.PathInfo{info}, func(int) (io.Reader, error) { return bytes.NewReader(nar), nil })
	if err == nil {
		return "yes", ""
	}
	msg := err.Error()
	if strings.Contains(msg, "lacks a") && strings.Contains(msg, "signature") {
		return "no", "it refused an unsigned path: " + lastNixError(msg)
	}
	return "unknown", msg
}

// lastNixError returns the "error: …" part of a message that carries a
// remote's stderr, or msg.
func lastNixError(msg string) string {
	if i := strings.LastIndex(msg, "error: "); i >= 0 {
		return firstLine(msg[i:])
	}
	return msg
}
