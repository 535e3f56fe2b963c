// SPDX-License-Identifier: MIT

package serve

import (
	"bytes"
	"slices"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Fuzz targets for the reply decoders, seeded with replies captured from
// the real nix-store --serve (testdata/replies, rewritten by
// `go test -run TestRealServe -update`) and the hand-made tables.

func FuzzReadBuildResult(f *testing.F) {
	for _, b := range nixtest.ReadReplies(f, "build-") {
		f.Add(b, uint8(7))
	}
	f.Add(buildResultBytes(0x202, store.PermanentFailure, "boom", nil), uint8(2))
	f.Add(buildResultBytes(0x205, store.Built, "", nil), uint8(5))
	f.Add(buildResultBytes(0x207, store.Built, "", map[string]string{"sha256:abc!out": `{"outPath":"xyz-t"}`}), uint8(7))
	f.Fuzz(func(t *testing.T, b []byte, minor uint8) {
		var sbuf []byte
		res, _ := readBuildResult(newDecoder(wire.NewReader(bytes.NewReader(b)), &sbuf), 0x200|uint64(minor))
		nixtest.CheckDecodedBuildResult(t, res, maxErrorMsg)
	})
}

func FuzzReadPathInfos(f *testing.F) {
	for _, b := range nixtest.ReadReplies(f, "pathinfos") {
		f.Add(b)
	}
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	w.String("/nix/store/00000000000000000000000000000000-p")
	w.String("")
	w.Uint64(1 << 40)
	w.Flush()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		var sbuf []byte
		infos, _ := readPathInfos(newDecoder(wire.NewReader(bytes.NewReader(b)), &sbuf), ClientVersion, nil)
		seen := map[string]bool{}
		for _, p := range infos {
			if p.Path == "" || seen[p.Path] {
				t.Fatalf("path %q empty or repeated", p.Path)
			}
			seen[p.Path] = true
			if len(p.Path) > maxPath || len(p.NarHash) > maxShort {
				t.Fatalf("string past its cap: %+v", p)
			}
		}
	})
}

// FuzzClient feeds arbitrary server output to a client running a
// session's worth of commands: whatever the server sends, the client must
// return errors, never panic or hang.
func FuzzClient(f *testing.F) {
	hello := serverHello(0x207)
	session := slices.Clone(hello)
	for _, name := range []string{"validpaths", "pathinfos", "build-built"} {
		session = append(session, nixtest.ReadReplies(f, name)[0]...)
	}
	f.Add(session)
	f.Add(append(hello, nixtest.ReadReplies(f, "build-failed")[0]...))
	f.Add([]byte("Welcome!\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := New(bytes.NewReader(b), nixtest.Discard{}, Options{})
		if err != nil {
			return
		}
		paths := []string{"/nix/store/00000000000000000000000000000000-p"}
		c.QueryValidPaths(paths, true, false)
		c.QueryPathInfos(paths)
		c.BuildDerivation("/nix/store/00000000000000000000000000000000-p.drv", nixtest.Drv, nil, store.BuildOptions{})
		c.DumpStorePath(paths[0], nixtest.Discard{}, 1000)
	})
}
