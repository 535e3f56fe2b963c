// SPDX-License-Identifier: MIT

package e2e

// Fetching on the builder (fetch-on-builder, internal/hook/fetch.go): an
// input that a fixed-output derivation made is built on the builder from
// its .drv instead of uploaded. An HTTP server on loopback stands in for
// the internet; the client and the builders share the test's network.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/slots"
)

// srcServer serves one file per path and counts the requests for each;
// a path marked gone answers 404.
type srcServer struct {
	addr string
	srv  *http.Server
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
	s := &srcServer{addr: l.Addr().String(), srv: &http.Server{}, body: map[string]string{}, hits: map[string]int{}, gone: map[string]bool{}}
	s.srv.Handler = s
	go s.srv.Serve(l)
	t.Cleanup(s.stop)
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

// stop closes the server: connections to its port are refused.
func (s *srcServer) stop() { s.srv.Close() }

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
// uploaded; when the builder cannot fetch it (404, connection refused) or
// fetch-on-builder is off, the input is uploaded; after a failed fetch,
// the next input it could fetch goes up without its trying; the build
// succeeds each way. Direct and through a daemon (the setting only
// direct: it is set in the client's environment).
func TestFetchOnBuilder(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	srv := startSrcServer(t)
	matrix(t, cells(nixes, protos, modes), func(t *testing.T, m cell) {
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
		stopped bool // the server is gone
		env     []string
		fetched bool
		// held: after the failed fetch before it, not tried (the
		// client's slot file keeps the failure).
		held bool
		// fresh: on a client of its own, which knows of no failed
		// fetch.
		fresh bool
	}{
		{name: "fetched", fetched: true},
		{name: "404", gone: true},
		{name: "held", held: true},
		{name: "refused", stopped: true, fresh: true},
		{name: "off", env: []string{"OFFLOAD_FETCH_ON_BUILDER=false"}},
	} {
		if m.Daemon && tt.env != nil {
			// A daemon's hook does not see the client's environment.
			continue
		}
		if tt.fresh {
			c.mustVerify()
			c = m.client(t, b1)
		}
		t.Run(tt.name, func(t *testing.T) {
			u := unique()
			name := "src-" + u
			body := strings.Repeat("source "+u+"\n", 1<<14)
			srv := srv
			if tt.stopped {
				srv = startSrcServer(t)
			}
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
			if tt.stopped {
				srv.stop()
			}
			before := srv.count(name)
			sentBefore := sentTo(t, c, builders, m.uri(b1))
			c.Env = tt.env
			defer func() { c.Env = nil }()
			expr := fmt.Sprintf(`let src = %s; in %s`, fetch,
				drv("use-"+u, "x86_64-linux", `/bin/cp ${src} $out`, ""))
			start := time.Now()
			r = m.build(t, c, expr, builders, "-v")
			if r.Code != 0 {
				t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
			}
			sent := sentTo(t, c, builders, m.uri(b1)) - sentBefore
			t.Logf("remote build of a %d-byte source: %v, %d NAR bytes sent", len(body), time.Since(start).Round(time.Millisecond), sent)
			if tt.fetched && sent != 0 || !tt.fetched && sent < uint64(len(body)) {
				t.Errorf("%d NAR bytes sent to b1 for a %d-byte source, fetched there: %v", sent, len(body), tt.fetched)
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
			if (tt.gone || tt.stopped) && !strings.Contains(r.Stderr, "uploading it") {
				t.Errorf("the failed fetch was not said at -v\n%s", r.Stderr)
			}
			if tt.gone && (asked != 1 || !strings.Contains(r.Stderr, "uploading it")) {
				t.Errorf("builder's requests %d, want 1, with the reason said at -v\n%s", asked, r.Stderr)
			}
			if (tt.env != nil || tt.held) && asked != 0 {
				t.Errorf("%s: the builder asked %d times", tt.name, asked)
			}
			if tt.held && !strings.Contains(r.Stderr, "a fetch failed there lately") {
				t.Errorf("the upload without a fetch was not said at -v\n%s", r.Stderr)
			}
			// offload status counts the builds that upload instead.
			paused := map[string]int{"fetched": 0, "404": slots.MaxNoFetch, "held": slots.MaxNoFetch - 1, "refused": slots.MaxNoFetch}
			if want, ok := paused[tt.name]; ok {
				out, _ := statusOf(t, c, builders, "--json")
				var st statusJSON
				if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Builders) != 1 || st.Builders[0].FetchPausedFor != want {
					t.Errorf("status --json: fetchPausedFor, want %d (%v):\n%s", want, err, out)
				}
				out, _ = statusOf(t, c, builders, "-v")
				if line := fmt.Sprintf("paused for %d more builds", want); want > 0 && !strings.Contains(out, line) {
					t.Errorf("status -v does not say %q:\n%s", line, out)
				}
			}
		})
	}
	c.mustVerify()
}

// A fixed-output derivation that needs inputs of its own (a tool built by
// another derivation, as nixpkgs' fetchurl needs curl): the builder makes
// the output when the tool costs fewer bytes to upload than the output,
// and the output is uploaded when the tool costs more.
func TestFetchOnBuilderWithInputs(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		builders := m.machines(b1, "x86_64-linux")
		for _, tt := range []struct {
			name    string
			lines   int // of the output
			pad     int // lines of 100-byte comments after the tool's script
			fetched bool
		}{
			{name: "tool-cheaper", lines: 20000, fetched: true},
			{name: "tool-dearer", lines: 20, pad: 10000},
		} {
			t.Run(tt.name, func(t *testing.T) {
				u := unique()
				var want strings.Builder
				for i := 0; i < tt.lines; i++ {
					fmt.Fprintf(&want, "line %d %s\n", i, u)
				}
				sum := sha256.Sum256([]byte(want.String()))
				script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo \"line $i %s\"; i=$((i+1)); done > $out\n", tt.lines, u)
				pad := fmt.Sprintf(`/bin/cp ${script} $out; i=0; while [ $i -lt %d ]; do echo "# %s"; i=$((i+1)); done >> $out`, tt.pad, strings.Repeat("x", 97))
				gen := fmt.Sprintf(`let script = builtins.toFile "gen.sh" %s; tool = %s; in derivation { name = "gen-%s"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ tool ]; outputHash = %q; outputHashAlgo = "sha256"; outputHashMode = "flat"; }`,
					nixString(script), drv("tool-"+u, "x86_64-linux", pad, ""), u, hex.EncodeToString(sum[:]))
				f := c.file("gen-"+u+".nix", gen)
				r := c.run(defaultTimeout, "nix-build", "--no-out-link", f, "--max-jobs", "1", "--builders", "")
				if r.Code != 0 {
					t.Fatalf("local build of the fixed-output derivation: exit %d\n%s", r.Code, r.Stderr)
				}
				out := r.Out
				r = m.build(t, c, fmt.Sprintf(`let gen = %s; in %s`, gen, drv("use-"+u, "x86_64-linux", `/bin/cp ${gen} $out`, "")), builders, "-v")
				if r.Code != 0 {
					t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
				}
				if got := c.run(defaultTimeout, "cat", r.Out).Out; got != strings.TrimSpace(want.String()) {
					t.Errorf("output differs (%d bytes, want %d)", len(got), want.Len())
				}
				uploaded := strings.Contains(r.Stderr, "copying path '"+out+"' to")
				fetched := strings.Contains(r.Stderr, "fetching '"+out+"' on")
				if uploaded == tt.fetched || fetched != tt.fetched {
					t.Errorf("uploaded %v, fetched %v; want fetched %v\n%s", uploaded, fetched, tt.fetched, r.Stderr)
				}
			})
		}
		c.mustVerify()
	})
}

// nixString quotes s as a Nix string.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// sentTo returns the NAR bytes the client's hooks have sent to uri, from
// its slot file (none before the first build).
func sentTo(t *testing.T, c *client, builders, uri string) uint64 {
	t.Helper()
	if _, err := os.Stat(filepath.Join(c.Dir, "nix/var/nix/offload/slots")); errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	for _, b := range c.slotSnapshot(t, builders) {
		if b.URI == uri {
			return b.BytesSent
		}
	}
	return 0
}
