// SPDX-License-Identifier: MIT

package e2e

// Fetching on the builder (fetch-on-builder, internal/hook/fetch.go): an
// input that a fixed-output derivation made is built on the builder from
// its .drv instead of uploaded. An HTTP server on loopback stands in for
// the internet; the client and the builders share the test's network.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// srcServer serves one file per path and counts the requests for each;
// a path marked gone answers 404.
type srcServer struct {
	addr string
	mu   sync.Mutex
	body map[string]string
	hits map[string]int
	gone map[string]bool
}

func startSrcServer(t *testing.T) *srcServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &srcServer{addr: l.Addr().String(), body: map[string]string{}, hits: map[string]int{}, gone: map[string]bool{}}
	srv := &http.Server{Handler: s}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *srcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	body, ok := s.body[r.URL.Path]
	gone := s.gone[r.URL.Path]
	s.mu.Unlock()
	if !ok || gone {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Write([]byte(body))
}

// add serves body at /name and returns a <nix/fetchurl.nix> expression
// (builtin:fetchurl: the builder needs no curl) that fetches it.
func (s *srcServer) add(name, body string) string {
	s.mu.Lock()
	s.body["/"+name] = body
	s.mu.Unlock()
	sum := sha256.Sum256([]byte(body))
	return fmt.Sprintf(`import <nix/fetchurl.nix> { name = %q; url = "http://%s/%s"; sha256 = %q; }`, name, s.addr, name, hex.EncodeToString(sum[:]))
}

func (s *srcServer) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits["/"+name]
}

func (s *srcServer) remove(name string) {
	s.mu.Lock()
	s.gone["/"+name] = true
	s.mu.Unlock()
}

// A derivation whose input a fixed-output derivation made, that the
// board built first: the builder fetches the input itself and nothing is
// uploaded; when the builder cannot fetch it (404) or fetch-on-builder is
// off, the input is uploaded; the build succeeds each way.
func TestFetchOnBuilder(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	srv := startSrcServer(t)
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		fetchScenario(t, m, b1, srv)
	})
}

// The same on a builder that runs current Nix, whose builtin:fetchurl
// and BuildDerivation are those of Nix 2.34.
func TestFetchOnCurrentNixBuilder(t *testing.T) {
	requireSid(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{Sid: true})
	srv := startSrcServer(t)
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		fetchScenario(t, m, b1, srv)
	})
}

func fetchScenario(t *testing.T, m cell, b1 *builder, srv *srcServer) {
	t.Helper()
	c := m.client(t, b1)
	builders := m.machines(b1, "x86_64-linux")
	for _, tt := range []struct {
		name    string
		gone    bool
		env     []string
		fetched bool
	}{
		{name: "fetched", fetched: true},
		{name: "404", gone: true},
		{name: "off", env: []string{"OFFLOAD_FETCH_ON_BUILDER=false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := unique()
			name := "src-" + u
			body := strings.Repeat("source "+u+"\n", 1<<14)
			fetch := srv.add(name, body)
			// Built on the board first (builtin derivations always
			// build locally), so the board has the source.
			f := c.file("src-"+u+".nix", fetch)
			r := c.run(defaultTimeout, "nix-build", "--no-out-link", f, "--max-jobs", "1", "--builders", "")
			if r.Code != 0 {
				t.Fatalf("local fetch: exit %d\n%s", r.Code, r.Stderr)
			}
			src := r.Out
			if tt.gone {
				srv.remove(name)
			}
			before := srv.count(name)
			c.Env = tt.env
			defer func() { c.Env = nil }()
			expr := fmt.Sprintf(`let src = %s; in %s`, fetch,
				drv("use-"+u, "x86_64-linux", `/bin/cp ${src} $out`, ""))
			r = m.build(t, c, expr, builders, "-v")
			if r.Code != 0 {
				t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
			}
			if got := c.run(defaultTimeout, "cat", r.Out).Out; got != strings.TrimSpace(body) {
				t.Errorf("output differs from the source (%d bytes, want %d)", len(got), len(body))
			}
			if !b1.has(t, src) {
				t.Errorf("the source %s is not on b1", src)
			}
			uploaded := strings.Contains(r.Stderr, "copying 1 paths to '"+m.uri(b1)+"'")
			asked := srv.count(name) - before
			if tt.fetched {
				if uploaded || asked != 1 {
					t.Errorf("source uploaded %v, builder's requests %d; want not uploaded and 1 request\n%s", uploaded, asked, r.Stderr)
				}
			} else if !uploaded {
				t.Errorf("the source was not uploaded\n%s", r.Stderr)
			}
			if tt.gone && (asked != 1 || !strings.Contains(r.Stderr, "uploading it")) {
				t.Errorf("builder's requests %d, want 1, with the reason said at -v\n%s", asked, r.Stderr)
			}
			if tt.env != nil && asked != 0 {
				t.Errorf("fetch-on-builder off: the builder asked %d times", asked)
			}
		})
	}
	c.mustVerify()
}
