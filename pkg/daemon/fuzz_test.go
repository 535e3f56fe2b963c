// SPDX-License-Identifier: MIT

package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
	"github.com/offload-nix/offload/pkg/wire"
)

// Fuzz targets for the decoders, seeded with replies captured from the
// real nix-daemon --stdio (testdata/replies, rewritten by
// `go test -run TestReal ./pkg/daemon -args -update`) and hand-made
// messages.

// readerClient is a Client reading b at version v, for the decoders.
func readerClient(b []byte, v uint64, opts Options) *Client {
	c := &Client{opts: opts, peer: store.Peer{Proto: "daemon", Version: v}}
	c.br = bufioReader(bytes.NewReader(b))
	c.r = wire.NewReader(c.br)
	c.w = wire.NewWriter(io.Discard)
	return c
}

func checkLine(t *testing.T, line []byte) {
	if len(line) > maxLogLine {
		t.Fatalf("log line of %d bytes passed the cap", len(line))
	}
}

// FuzzStderrBuildResult decodes a BuildDerivation reply: the messages up to
// LAST, then the BuildResult.
func FuzzStderrBuildResult(f *testing.F) {
	for _, b := range nixtest.ReadReplies(f, "build-") {
		f.Add(b, uint8(34))
	}
	f.Add(nixtest.ReadReplies(f, "untrusted-upload")[0], uint8(35))
	f.Add([]byte{}, uint8(25))
	f.Fuzz(func(t *testing.T, b []byte, minor uint8) {
		c := readerClient(b, 1<<8|uint64(minor), Options{Log: func(l []byte) { checkLine(t, l) }, Phase: func(string) {}})
		err := c.processStderr("BuildDerivation", "")
		var re *RemoteError
		if errors.As(err, &re) {
			if len(re.Msg) > maxErrorMsg || len(re.Traces) > maxTraces || strings.Contains(re.Msg, "\x1b[") {
				t.Fatalf("error past its caps or with escapes: %d bytes, %d traces", len(re.Msg), len(re.Traces))
			}
			return
		}
		if err != nil {
			return
		}
		res, err := readBuildResult(newDecoder(c.r, &c.sbuf), c.peer.Version)
		if err != nil {
			return
		}
		nixtest.CheckDecodedBuildResult(t, res, maxErrorMsg)
	})
}

// FuzzPathInfo decodes a QueryPathInfo reply.
func FuzzPathInfo(f *testing.F) {
	for _, b := range nixtest.ReadReplies(f, "pathinfo") {
		f.Add(b, uint8(34))
	}
	f.Add(nixtest.ReadReplies(f, "pathinfo")[0], uint8(16))
	f.Fuzz(func(t *testing.T, b []byte, minor uint8) {
		c := readerClient(b, 1<<8|uint64(minor), Options{})
		if err := c.processStderr("QueryPathInfo", ""); err != nil {
			return
		}
		info, ok, err := readPathInfo(newDecoder(c.r, &c.sbuf), c.peer.Version, "/nix/store/x")
		if err != nil || !ok {
			return
		}
		if _, err := info.NarDigest(); err != nil {
			t.Fatalf("NarHash %q from a decoded reply does not parse: %v", info.NarHash, err)
		}
		if len(info.Deriver) > maxPath || len(info.CA) > maxShort {
			t.Fatalf("string past its cap: %+v", info)
		}
	})
}

// FuzzClient feeds arbitrary daemon output to a client running a
// session's worth of operations: whatever the daemon sends, the client
// must return errors, never panic or hang.
func FuzzClient(f *testing.F) {
	var session []byte
	for _, name := range []string{"handshake", "setoptions", "validpaths", "pathinfo", "build-logs"} {
		session = append(session, nixtest.ReadReplies(f, name)[0]...)
	}
	f.Add(session)
	f.Add(append(nixtest.ReadReplies(f, "handshake")[0], nixtest.ReadReplies(f, "build-failed")[0]...))
	f.Add([]byte("Welcome!\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := New(bytes.NewReader(b), nixtest.Discard{}, Options{Log: func([]byte) {}})
		if err != nil {
			return
		}
		paths := []string{"/nix/store/00000000000000000000000000000000-p"}
		c.SetOptions(Settings{})
		c.QueryValidPaths(paths, false)
		c.QueryPathInfo(paths[0])
		c.BuildDerivation("/nix/store/00000000000000000000000000000000-p.drv", nixtest.Drv, nil)
		c.NarFromPath(paths[0], nixtest.Discard{}, 1000)
		nar := nixtest.NarFile([]byte("x"), false)
		c.AddToStoreNars([]store.PathInfo{
			{Path: paths[0], NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)},
			{Path: paths[0] + "2", NarSize: uint64(len(nar)), NarHash: nixtest.NarHash(nar)},
		}, func(int) (io.Reader, error) { return bytes.NewReader(nar), nil })
	})
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, bufSize) }
