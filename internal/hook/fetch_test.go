// SPDX-License-Identifier: MIT

package hook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/nixtest"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/localstore"
	"github.com/offload-nix/offload/pkg/store"
)

func TestChooseFetches(t *testing.T) {
	sizes := map[string]uint64{"curl": 300, "bash": 200, "big": 5000}
	tests := []struct {
		name    string
		cands   []fetchPlan
		missing []string
		lacking []string
		want    []string // chosen outputs
		extra   []string
	}{
		{
			name:  "builtin fetcher needs nothing",
			cands: []fetchPlan{{out: "src", size: 1000}},
			want:  []string{"src"},
		},
		{
			name:    "fetcher inputs cheaper than the output",
			cands:   []fetchPlan{{out: "src", size: 1000, needs: []string{"curl", "bash"}}},
			lacking: []string{"curl", "bash"},
			want:    []string{"src"},
			extra:   []string{"curl", "bash"},
		},
		{
			name:    "fetcher inputs dearer than the output",
			cands:   []fetchPlan{{out: "src", size: 1000, needs: []string{"curl", "big"}}},
			lacking: []string{"curl", "big"},
		},
		{
			name:  "builder has the fetcher's inputs",
			cands: []fetchPlan{{out: "src", size: 10, needs: []string{"curl", "big"}}},
			want:  []string{"src"},
		},
		{
			name:    "inputs the build uploads anyway cost nothing but go first",
			cands:   []fetchPlan{{out: "src", size: 100, needs: []string{"big"}}},
			missing: []string{"src", "big"},
			lacking: []string{"big"},
			want:    []string{"src"},
			extra:   []string{"big"},
		},
		{
			name: "a second fetcher shares the first one's inputs",
			cands: []fetchPlan{
				{out: "a", size: 600, needs: []string{"curl", "bash"}},
				{out: "b", size: 50, needs: []string{"curl", "bash"}},
			},
			lacking: []string{"curl", "bash"},
			want:    []string{"a", "b"},
			extra:   []string{"curl", "bash"},
		},
		{
			name:  "skipped",
			cands: []fetchPlan{{out: "src", size: 1000, skip: true}},
		},
		{
			name:  "equal cost uploads",
			cands: []fetchPlan{{out: "src", size: 300, needs: []string{"curl"}}}, lacking: []string{"curl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plans, extra := choose(tt.cands, tt.missing, tt.lacking, sizes)
			var got []string
			for _, p := range plans {
				got = append(got, p.out)
			}
			if !reflect.DeepEqual(got, tt.want) || !reflect.DeepEqual(extra, tt.extra) {
				t.Errorf("choose = %q, %q; want %q, %q", got, extra, tt.want, tt.extra)
			}
		})
	}
}

func TestReadFetcher(t *testing.T) {
	real := t.TempDir()
	st := &localstore.Store{StoreDir: "/nix/store", RealDir: real}
	const (
		src     = "/nix/store/00000000000000000000000000000000-src.tar.gz"
		curl    = "/nix/store/11111111111111111111111111111111-curl"
		curlDrv = "/nix/store/22222222222222222222222222222222-curl.drv"
		script  = "/nix/store/33333333333333333333333333333333-builder.sh"
	)
	write := func(p string, d *drv.Derivation) {
		if err := os.WriteFile(filepath.Join(real, strings.TrimPrefix(p, "/nix/store/")), d.Format(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fod := func(out string, inputs ...drv.InputDrv) *drv.Derivation {
		return &drv.Derivation{
			Outputs:   []drv.Output{{Name: "out", Path: out, HashAlgo: "sha256", Hash: strings.Repeat("ab", 32)}},
			InputDrvs: inputs,
			InputSrcs: []string{script},
			Platform:  "x86_64-linux",
			Builder:   "/bin/sh",
		}
	}
	write(curlDrv, &drv.Derivation{Outputs: []drv.Output{{Name: "bin", Path: curl}, {Name: "dev", Path: curl + "-dev"}}, Platform: "x86_64-linux", Builder: "/bin/sh"})
	write("/nix/store/44444444444444444444444444444444-src.drv", fod(src, drv.InputDrv{Path: curlDrv, Outputs: []string{"bin"}}))
	write("/nix/store/55555555555555555555555555555555-other.drv", fod("/nix/store/66666666666666666666666666666666-other"))
	write("/nix/store/77777777777777777777777777777777-plain.drv", &drv.Derivation{Outputs: []drv.Output{{Name: "out", Path: src}}, Platform: "x86_64-linux", Builder: "/bin/sh"})
	write("/nix/store/88888888888888888888888888888888-src.drv", fod(src, drv.InputDrv{Path: "/nix/store/99999999999999999999999999999999-gone.drv", Outputs: []string{"out"}}))

	tests := []struct {
		drvPath string
		needs   []string // nil: no plan
		err     string
	}{
		{drvPath: "/nix/store/44444444444444444444444444444444-src.drv", needs: []string{script, curl}},
		{drvPath: "/nix/store/55555555555555555555555555555555-other.drv", err: "makes"},
		{drvPath: "/nix/store/77777777777777777777777777777777-plain.drv"},
		{drvPath: "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-missing.drv", err: "reading its derivation"},
		{drvPath: "/nix/store/88888888888888888888888888888888-src.drv", err: "input derivation"},
	}
	for _, tt := range tests {
		p, err := readFetcher(st, src, tt.drvPath)
		if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("readFetcher(%s) error %v, want %q", tt.drvPath, err, tt.err)
		}
		if (p.d != nil) != (tt.needs != nil) || !reflect.DeepEqual(p.needs, tt.needs) {
			t.Errorf("readFetcher(%s) = drv %v, needs %q; want needs %q", tt.drvPath, p.d != nil, p.needs, tt.needs)
		}
	}
}

// addFetched puts into e's store a source that a fixed-output derivation
// for system made (builtin: builtin:fetchurl), with that derivation as its
// deriver, and returns the source's path and NAR and the derivation's
// path.
func addFetched(t *testing.T, e *tryEnv, system string) (src string, nar []byte, drvPath string) {
	t.Helper()
	src = nixtest.RandomStorePath("src.tar.gz")
	drvPath = nixtest.RandomStorePath("src.tar.gz.drv")
	contents := []byte("a source tarball\n")
	sum := sha256.Sum256(contents)
	d := &drv.Derivation{
		Outputs:  []drv.Output{{Name: "out", Path: src, HashAlgo: "sha256", Hash: hex.EncodeToString(sum[:])}},
		Platform: system,
		Builder:  "builtin:fetchurl",
		Env:      []drv.EnvVar{{Key: "out", Value: src}, {Key: "url", Value: "http://example.invalid/src.tar.gz"}},
	}
	if err := os.WriteFile(filepath.Join(e.root, drvPath), d.Format(), 0o444); err != nil {
		t.Fatal(err)
	}
	st, err := localstore.New("local?root="+e.root, []string{"nix-store"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	nar = nixtest.NarFile(contents, false)
	info := store.PathInfo{Path: src, Deriver: drvPath, NarHash: nixtest.NarHash(nar), NarSize: uint64(len(nar))}
	err = st.Import(context.Background(), []store.PathInfo{info}, func(int) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(nar)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return src, nar, drvPath
}

// A missing input that a fixed-output derivation made is built on the
// builder, not uploaded; when that build fails, or fetch-on-builder is
// off, it is uploaded; the build succeeds each way.
func TestTryFetchesOnBuilder(t *testing.T) {
	tests := []struct {
		name   string
		system string // of the fetcher; "" for builtin
		conf   []string
		fail   bool // the fetch fails on the builder
		ops    string
		fetch  bool
	}{
		{name: "fetched", ops: "query-valid build build query-infos dump", fetch: true},
		{name: "fetch fails", fail: true, ops: "query-valid build add build query-infos dump"},
		{name: "off", conf: []string{"fetch-on-builder", "false"}, ops: "query-valid add build query-infos dump"},
		{name: "builder's system", system: "x86_64-linux", ops: "query-valid build build query-infos dump", fetch: true},
		{name: "another system", system: "aarch64-linux", ops: "query-valid add build query-infos dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTryEnv(t, "ssh://b1 x86_64-linux - 1")
			e.conf = tt.conf
			system := tt.system
			if system == "" {
				system = "builtin"
			}
			src, nar, drvPath := addFetched(t, e, system)
			e.inputs = []string{src}
			b1 := newMemBuilder(e.nars())
			var built []string
			b1.build = func(p string) (store.BuildResult, error) {
				built = append(built, p)
				if tt.fail && p == drvPath {
					return store.BuildResult{Status: store.TransientFailure, ErrorMsg: "unable to download"}, nil
				}
				return store.BuildResult{Status: store.Built}, nil
			}
			code, stderr, h := e.run(t, context.Background(), true, dialMem(map[string]*memBuilder{"ssh://b1": b1}))
			if code != exitOK {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitOK, stderr)
			}
			if got := b1.Ops(); got != tt.ops {
				t.Errorf("builder operations %q, want %q", got, tt.ops)
			}
			if _, uploaded := b1.added[src]; uploaded == tt.fetch {
				t.Errorf("source uploaded %v, want %v", uploaded, !tt.fetch)
			} else if uploaded && !bytes.Equal(b1.added[src], nar) {
				t.Errorf("the builder got %q for %s, want %q", b1.added[src], src, nar)
			}
			if fetched := len(built) == 2 && built[0] == drvPath; fetched != (tt.fetch || tt.fail) {
				t.Errorf("builds %q: fetch asked for %v, want %v", built, fetched, tt.fetch || tt.fail)
			}
			if !e.imported(t, h) {
				t.Errorf("%s is not valid after the build", e.out)
			}
			e.checkFree(t)
		})
	}
}
