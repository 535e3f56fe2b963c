// SPDX-License-Identifier: MIT

package serve

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/store"
)

// heldUntilEnd is a server that reads nothing before its input has ended,
// as one behind a decompressor may not: Upload must not wait for it.
const heldUntilEnd = `cat >"$W/in"; exec nix-store --serve --write <"$W/in"`

// uploadIn runs Upload into a server started by script in s.
func uploadIn(t *testing.T, s *nixtest.Store, script string, infos []store.PathInfo, open func(int) (io.Reader, error)) error {
	t.Helper()
	p := s.Start(t, script, "nix-store --serve", false)
	return Upload(p.Stdout, p.Stdin, Options{Host: "test-builder", Stderr: p.Stderr.Wait}, infos, open)
}

// Upload to a server that reads only once its input has ended registers
// every path with what the path info says, a content address and
// signatures included: a source added with nix-store --add in one store
// arrives content-addressed in the other.
func TestRealServeUpload(t *testing.T) {
	src := nixtest.NewStore(t, "nix-store")
	added := strings.TrimSpace(src.Run(t, `printf 'a source\n' >"$W/src"; nix-store --add "$W/src"`))
	from, err := serveIn(t, src, "", false)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := from.QueryPathInfos([]string{added})
	if err != nil || len(infos) != 1 || !strings.HasPrefix(infos[0].CA, "fixed:") {
		t.Fatalf("QueryPathInfos(%s) = %+v, %v; want it content-addressed", added, infos, err)
	}
	var nar bytes.Buffer
	if err := from.DumpStorePath(added, &nar, infos[0].NarSize); err != nil {
		t.Fatal(err)
	}

	cl := nixtest.MakeClosure()
	cl.Infos[2].Sigs = []string{"test-key:" + strings.Repeat("A", 86) + "=="}
	all := append(slices.Clone(cl.Infos), infos[0])
	open := func(i int) (io.Reader, error) {
		if i == len(cl.Infos) {
			return bytes.NewReader(nar.Bytes()), nil
		}
		return cl.Open(i)
	}
	dst := nixtest.NewStore(t, "nix-store")
	if err := uploadIn(t, dst, heldUntilEnd, all, open); err != nil {
		t.Fatal(err)
	}
	dst.CheckUploaded(t, cl)
	to, err := serveIn(t, dst, "", false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := to.QueryPathInfos(append(cl.Paths(), added))
	if err != nil || len(got) != len(all) {
		t.Fatalf("QueryPathInfos after Upload = %+v, %v", got, err)
	}
	for _, g := range got {
		i := slices.IndexFunc(all, func(p store.PathInfo) bool { return p.Path == g.Path })
		want := all[i]
		if g.NarHash != want.NarHash || g.CA != want.CA || !slices.Equal(g.Sigs, want.Sigs) ||
			!slices.Equal(nixtest.Sorted(g.References), nixtest.Sorted(want.References)) {
			t.Errorf("%s uploaded as %+v, want %+v", g.Path, g, want)
		}
	}
}

// A NAR the server finds wrong fails Upload with the server's reason and
// the path; the paths before it are valid, it and the ones after are not.
func TestRealServeUploadBadHash(t *testing.T) {
	s := nixtest.NewStore(t, "nix-store")
	cl := nixtest.MakeClosure()
	cl.Infos[1].NarHash = nixtest.NarHash([]byte("something else"))
	err := uploadIn(t, s, heldUntilEnd, cl.Infos, cl.Open)
	if err == nil || !strings.Contains(err.Error(), cl.Infos[1].Path) || !strings.Contains(err.Error(), "hash mismatch") {
		t.Errorf("Upload with a wrong hash = %v; want the path %s and the server's hash mismatch", err, cl.Infos[1].Path)
	}
	sess, err := serveIn(t, s, "", false)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := sess.QueryValidPaths(cl.Paths(), false, false)
	if err != nil || !slices.Equal(valid, cl.Paths()[:1]) {
		t.Errorf("valid after a failed Upload = %q, %v; want only %q", valid, err, cl.Paths()[:1])
	}
}

// A NAR shorter than its info says is a local failure: Upload says so and
// does not wait for the server, which is left in the middle of the NAR.
func TestUploadShortNAR(t *testing.T) {
	cl := nixtest.MakeClosure()
	pr, pw := io.Pipe()
	defer pr.Close()
	go io.Copy(io.Discard, pr)
	open := func(i int) (io.Reader, error) { return bytes.NewReader(cl.NARs[i][:len(cl.NARs[i])-1]), nil }
	err := Upload(strings.NewReader(""), pw, Options{}, cl.Infos, open)
	if err == nil || !strings.Contains(err.Error(), "NAR has") {
		t.Errorf("Upload of a short NAR = %v, want its size named", err)
	}
}
