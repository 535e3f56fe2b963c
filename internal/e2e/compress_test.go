// SPDX-License-Identifier: MIT

package e2e

// Compressed copies back from the builder (internal/builder's Squashed):
// the builder's zstd, its gzip where it has no zstd, none where it has
// neither, and streams that the builder's zstd cut short or corrupted.
// What the hook did shows at -v: "copied … with zstd", "not compressing
// copies from …".

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// compressibleOut writes about 2 MB of text lines as $out: enough to go
// compressed (internal/builder squashMin is 1 MiB).
const compressibleOut = `i=0; while [ $i -lt 60000 ]; do echo "line $i of an output that compresses well"; i=$((i+1)); done > $out`

// fakeTools writes the given scripts into a new directory and returns a
// PATH line for a builder's sessions that finds them first.
func fakeTools(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return "PATH=" + dir + ":/usr/local/bin:/usr/bin:/bin"
}

// toolsWithout returns a PATH line for a builder's sessions that finds
// Nix's commands and the usual tools there but none of missing.
func toolsWithout(t *testing.T, missing ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"nix", "nix-store", "nix-daemon", "zstd", "gzip", "cat", "head", "mktemp", "dd", "wc", "rm"} {
		if slices.Contains(missing, name) {
			continue
		}
		if err := os.Symlink(filepath.Join("/usr/bin", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return "PATH=" + dir
}

// checkOut fails unless r is a successful build of compressibleOut,
// valid in c's store with the right contents.
func checkOut(t *testing.T, c *client, r result) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
	}
	got := c.run(defaultTimeout, "tail", "-n", "1", r.Out).Out
	if got != "line 59999 of an output that compresses well" {
		t.Errorf("the output's last line = %q", got)
	}
	c.mustVerify()
}

// zstdLogged starts a builder whose zstd writes its words to the file
// log, one line a run, and then runs.
func zstdLogged(t *testing.T) (b *builder, log string) {
	t.Helper()
	log = filepath.Join(t.TempDir(), "zstd.log")
	b = startBuilder(t, "b1", builderOpts{Env: fakeTools(t, map[string]string{
		"zstd": `echo "$@" >>` + log + `; exec /usr/bin/zstd "$@"`,
	})})
	return b, log
}

// The builder's zstd (it logs its words): the output arrives whole, on
// both protocols and both client Nixes, at compress-level, under the
// default, auto (a link not measured yet), and compress=on.
func TestCompressedCopyBack(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1, log := zstdLogged(t)
	// The group ends when its parallel cells have.
	t.Run("group", func(t *testing.T) {
		matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
			c := m.client(t, b1)
			// The default, auto, on a link not measured yet: compressed,
			// at compress-level (3).
			r := m.build(t, c, drv("squashed-auto", "x86_64-linux", compressibleOut, salt()), m.machines(b1, "x86_64-linux"), "-v")
			checkOut(t, c, r)
			wantAll(t, "nix-build's stderr", r.Stderr, "with zstd: ")
			c.Env = []string{"OFFLOAD_COMPRESS=on", "OFFLOAD_COMPRESS_LEVEL=5"}
			r = m.build(t, c, drv("squashed", "x86_64-linux", compressibleOut, salt()), m.machines(b1, "x86_64-linux"), "-v")
			checkOut(t, c, r)
			wantAll(t, "nix-build's stderr", r.Stderr, "with zstd: ", "'"+m.uri(b1)+"'")
			if r.Out != "" && !strings.Contains(r.Stderr, "copied "+r.Out+" from") {
				t.Errorf("nix-build's stderr does not say %s was copied compressed:\n%s", r.Out, r.Stderr)
			}
		})
	})
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	wantAll(t, "the builder's zstd's words", string(b), "-q -c -5", "-q -c -3")
}

// Under auto, an output that does not compress ends compression for the
// connection: the second output comes as is. -C in NIX_SSHOPTS asks for
// compression whatever the data: both come compressed.
func TestCompressedCopyBackIncompressible(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	c := newClient(t, b1)
	noise := func() string {
		return drv("noise", "x86_64-linux",
			`/bin/dd if=/dev/urandom of=$out bs=1M count=2 2>/dev/null; /bin/dd if=/dev/urandom of=$b bs=1M count=2 2>/dev/null`,
			salt()+` outputs = [ "out" "b" ];`)
	}
	for _, tt := range []struct {
		sshopts    string
		compressed int
	}{{"", 1}, {"-C ", 2}} {
		c.Env = []string{"NIX_SSHOPTS=" + tt.sshopts + "-F " + filepath.Join(c.Dir, "ssh_config")}
		r := c.build(noise(), "ssh://b1 x86_64-linux", "-v")
		if r.Code != 0 {
			t.Fatalf("NIX_SSHOPTS %q: nix-build exit %d\n%s", tt.sshopts, r.Code, r.Stderr)
		}
		if n := strings.Count(r.Stderr, "with zstd: "); n != tt.compressed {
			t.Errorf("NIX_SSHOPTS %q: %d outputs were copied compressed, want %d:\n%s", tt.sshopts, n, tt.compressed, r.Stderr)
		}
		if tt.compressed == 1 {
			wantAll(t, "nix-build's stderr", r.Stderr, "not compressing more copies to or from 'ssh://b1'")
		}
	}
	c.mustVerify()
}

// Under auto, a copy back decides from what earlier copies measured of
// the builder's link, as the slot file keeps it for every hook: a fast
// link (a loopback or LAN builder) gets the output as is, without the
// builder's zstd (it logs its words), a slow one compressed. Either copy
// leaves its own measure.
func TestCompressedCopyBackMeasuredLink(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1, log := zstdLogged(t)
	c := newClient(t, b1)
	state := t.TempDir()
	c.Env = []string{"OFFLOAD_STATE_DIR=" + state, "OFFLOAD_LOAD_AWARE=false"}
	const machines = "ssh://b1 x86_64-linux"
	ms, _, err := spec.ParseBuilders(machines, spec.Options{LocalSystem: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	// link stores l as the builder's measure, or reads it (nil).
	link := func(l *slots.Link) slots.Link {
		f, err := slots.Open(filepath.Join(state, "slots"), ms, slots.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if l != nil {
			f.UpdateLink(ms[0].URI, func(slots.Link) slots.Link { return *l })
		}
		return f.Snapshot(nil)[0].Link
	}
	for _, tt := range []struct {
		name       string
		link       slots.Link
		compressed bool
		want       string
	}{
		{"fast", slots.Link{Rate: 800 << 10}, false, "copying as is to or from 'ssh://b1': its link moves 800.0 MiB/s"},
		{"slow", slots.Link{Rate: 2 << 10, Ratio: 300}, true, "with zstd: "},
	} {
		link(&tt.link)
		os.Remove(log)
		r := c.build(drv("link-"+tt.name, "x86_64-linux", compressibleOut, salt()), machines, "-v")
		checkOut(t, c, r)
		wantAll(t, tt.name+": nix-build's stderr", r.Stderr, tt.want)
		_, err := os.Stat(log)
		if got := strings.Contains(r.Stderr, "with zstd: "); got != tt.compressed || (err == nil) != tt.compressed {
			t.Errorf("%s link: copied compressed %v, the builder's zstd ran %v; want %v", tt.name, got, err == nil, tt.compressed)
		}
		if l := link(nil); l == tt.link || l.Rate == 0 {
			t.Errorf("%s link: the copy left the measure %+v", tt.name, l)
		}
	}
}

// A builder without zstd: gzip, both ways. The unstable root (Nix 2.34)
// has gzip and no zstd; the Nix 2.8 builder's zstd is a command not
// found.
func TestCompressedCopyBackGzip(t *testing.T) {
	requireSid(t)
	t.Parallel()
	bs := []*builder{
		startBuilder(t, "b28", builderOpts{Env: toolsWithout(t, "zstd")}),
		startBuilder(t, "b234", builderOpts{Sid: true}),
	}
	dep := startBuilder(t, "dep", builderOpts{})
	for _, b := range bs {
		matrix(t, tagged(cells([]string{"2.34"}, protos, directOnly), func(cell) string { return b.Name }), func(t *testing.T, m cell) {
			c := m.client(t, b, dep)
			c.Env = []string{"OFFLOAD_COMPRESS=on"}
			r := m.build(t, c, drv("gzipped", "x86_64-linux", compressibleOut, salt()), m.machines(b, "x86_64-linux"), "-v")
			checkOut(t, c, r)
			wantAll(t, "nix-build's stderr", r.Stderr, "with gzip: ")
			uploadScenario(t, m, c, dep, b, "gzip")
		})
	}
}

// A builder with neither zstd nor gzip, and one whose sessions run only
// Nix's own command (a forced command, as NixOS's nix.sshServe sets):
// the copy comes uncompressed, said once at -v, and the build succeeds.
func TestCompressedCopyBackUnavailable(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	none := startBuilder(t, "none", builderOpts{Env: toolsWithout(t, "zstd", "gzip")})
	forced := startBuilder(t, "forced", builderOpts{})
	session := filepath.Join(forced.Dir, "session")
	b, err := os.ReadFile(session)
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the client asks for, the builder runs nix-store --serve
	// --write (ssh://) or nix-daemon --stdio (ssh-ng://).
	forcedScript := strings.Replace(string(b), `/bin/sh -c "$SSH_ORIGINAL_COMMAND"`,
		`/bin/sh -c 'case "$SSH_ORIGINAL_COMMAND" in *nix-daemon*) exec nix-daemon --stdio ;; *) exec nix-store --serve --write ;; esac'`, 1)
	if forcedScript == string(b) {
		t.Fatalf("%s has no exec line to replace:\n%s", session, b)
	}
	writeFile(t, session, forcedScript)
	for _, b := range []*builder{none, forced} {
		matrix(t, tagged(cells([]string{"2.8"}, protos, directOnly), func(cell) string { return b.Name }), func(t *testing.T, m cell) {
			c := m.client(t, b)
			c.Env = []string{"OFFLOAD_COMPRESS=on"}
			r := m.build(t, c, drv("plain", "x86_64-linux", compressibleOut, salt()), m.machines(b, "x86_64-linux"), "-v")
			checkOut(t, c, r)
			wantAll(t, "nix-build's stderr", r.Stderr, "not compressing copies from '"+m.uri(b)+"'")
			if strings.Contains(r.Stderr, "copied "+r.Out) {
				t.Errorf("nix-build's stderr says the output came compressed:\n%s", r.Stderr)
			}
		})
	}
}

// A compressed stream cut short, or with a byte changed on the way, fails
// the build cleanly: nothing of the output in the client's store, and the
// slot free. One cut before its first word (the NAR's first block) has
// given the local store nothing yet: the output comes uncompressed.
func TestCompressedCopyBackBroken(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	const half = `f=$(mktemp); /usr/bin/zstd "$@" >"$f"; n=$(($(wc -c <"$f") / 2)); `
	for _, tt := range []struct {
		name, zstd, want string
		ok               bool
	}{
		{"cut", half + `head -c $n "$f"; rm -f "$f"`, "unexpected EOF", false},
		{"corrupt", half + `printf '\125\252' | dd of="$f" bs=1 seek=$n conv=notrunc 2>/dev/null; cat "$f"; rm -f "$f"`, "compressed copy of", false},
		{"cut-early", `/usr/bin/zstd "$@" | head -c 200`, "not compressing copies from", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := startBuilder(t, "b1", builderOpts{Env: fakeTools(t, map[string]string{"zstd": tt.zstd})})
			for _, proto := range protos {
				c := newClient(t, b)
				c.Env = []string{"OFFLOAD_COMPRESS=on"}
				builders := proto + "://b1 x86_64-linux"
				expr := drv("broken-"+tt.name, "x86_64-linux", compressibleOut, salt())
				out := c.outPath(t, expr)
				before := c.storeNames(t)
				r := c.build(expr, builders, "-v")
				if tt.ok {
					checkOut(t, c, r)
					wantAll(t, "nix-build's stderr", r.Stderr, tt.want)
					continue
				}
				if r.Code == 0 {
					t.Fatalf("%s: nix-build succeeded with a %s stream\n%s", proto, tt.name, r.Stderr)
				}
				wantAll(t, "nix-build's stderr", r.Stderr, "copying outputs of", tt.want)
				noHookCrash(t, r.Stderr)
				if v := c.nixStore("--check-validity", out); v.Code == 0 {
					t.Errorf("%s: %s is valid after a %s stream", proto, out, tt.name)
				}
				// Nix's own lock file of the output may stay.
				for _, n := range c.storeNames(t) {
					if !slices.Contains(before, n) && n != filepath.Base(out)+".lock" {
						t.Errorf("%s: the client's store gained %s", proto, n)
					}
				}
				for _, s := range c.slotSnapshot(t, builders) {
					if s.Busy != 0 {
						t.Errorf("%s: %d slots of %s still held", proto, s.Busy, s.URI)
					}
				}
				c.mustVerify()
			}
		})
	}
}

// uploadScenario builds a derivation on dep, then one that needs its
// output on b, which lacks it: the hook uploads it compressed (-v says
// with what, want), and b registers it with the references and deriver
// the client's store has.
func uploadScenario(t *testing.T, m cell, c *client, dep, b *builder, want string) {
	t.Helper()
	depExpr, top := uploadExprs()
	r := m.build(t, c, depExpr, m.machines(dep, "x86_64-linux"))
	checkOut(t, c, r)
	depOut := r.Out
	r = m.build(t, c, top, m.machines(b, "x86_64-linux"), "-v")
	checkOut(t, c, r)
	wantAll(t, "nix-build's stderr", r.Stderr, "copied 1 paths to '"+m.uri(b)+"' with "+want)
	for _, q := range []string{"--references", "--deriver"} {
		local := c.nixStore("-q", q, depOut)
		there, err := b.exec(t, "nix-store", "-q", q, depOut)
		if err != nil || local.Code != 0 || strings.TrimSpace(there) != local.Out {
			t.Errorf("nix-store -q %s %s: %q on %s (%v), %q on the client", q, depOut, there, b.Name, err, local.Out)
		}
	}
}

// uploadExprs returns a new derivation of compressibleOut, dep, and one
// that reads its output, top: built on a builder that lacks dep's
// output, top needs it uploaded.
func uploadExprs() (dep, top string) {
	u := unique()
	dep = fmt.Sprintf(`derivation { name = "updep"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" %q ]; u = %q; }`, compressibleOut, u)
	top = fmt.Sprintf(`derivation { name = "uptop"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/bin/cat ${%s} > $out" ]; u = %q; }`, dep, u)
	return dep, top
}

// Uploads go compressed too, with the builder's zstd, on both protocols
// and both client Nixes.
func TestCompressedUpload(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	dep := startBuilder(t, "dep", builderOpts{})
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		c := m.client(t, dep, b1)
		uploadScenario(t, m, c, dep, b1, "zstd")
	})
}

// A content-addressed input (here from nix-store --add, as a source
// tarball is) goes up compressed too, and keeps its content address on
// the builder: the serve protocol's upload carries it.
func TestUploadContentAddressedCompressed(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	b1 := startBuilder(t, "b1", builderOpts{})
	matrix(t, cells(nixes, protos, directOnly), func(t *testing.T, m cell) {
		c := m.client(t, b1)
		var text strings.Builder
		for i := range 60000 {
			fmt.Fprintf(&text, "line %d of a source that compresses well %s\n", i, unique())
		}
		src := c.file("src.txt", text.String())
		add := c.nixStore("--add", src)
		if add.Code != 0 {
			t.Fatalf("nix-store --add: exit %d\n%s", add.Code, add.Stderr)
		}
		top := fmt.Sprintf(`derivation { name = "ca-up"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" "/usr/bin/tail -n 1 ${builtins.storePath %q} > $out" ]; %s }`, add.Out, salt())
		r := m.build(t, c, top, m.machines(b1, "x86_64-linux"), "-v")
		if r.Code != 0 {
			t.Fatalf("nix-build exit %d\n%s", r.Code, r.Stderr)
		}
		wantAll(t, "nix-build's stderr", r.Stderr, "copied 1 paths to '"+m.uri(b1)+"' with zstd")
		if got := c.run(defaultTimeout, "cat", r.Out).Out; !strings.HasPrefix(got, "line 59999 of a source") {
			t.Errorf("the output holds %q", got)
		}
		info, err := b1.exec(t, "nix", "--extra-experimental-features", "nix-command", "path-info", "--json", add.Out)
		if err != nil || !strings.Contains(info, `"ca":"fixed:r:sha256:`) {
			t.Errorf("%s on %s: %v\n%s; want its content address", add.Out, b1.Name, err, info)
		}
		c.mustVerify()
	})
}

// A compressed upload cut short, or with bytes changed on the way, fails
// the build cleanly: the path is not valid on the builder, and the slot
// is free.
func TestCompressedUploadBroken(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	// The builder's decompressor (zstd -dc) gets the first 20000 bytes
	// of the stream, and then nothing or two bytes changed and the rest;
	// its check that it decompresses (a stream of a few bytes) is
	// untouched.
	const first = `case "$1" in -dc) f=$(mktemp); head -c 20000 >"$f"; if [ $(wc -c <"$f") -lt 20000 ]; then exec /usr/bin/zstd "$@" <"$f"; fi; `
	for _, tt := range []struct{ name, zstd string }{
		{"cut", first + `/usr/bin/zstd "$@" <"$f"; s=$?; cat >/dev/null; exit $s;; esac; exec /usr/bin/zstd "$@"`},
		{"corrupt", first + `{ cat "$f"; printf '\125\252'; tail -c +3; } | /usr/bin/zstd "$@";; esac; exec /usr/bin/zstd "$@"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dep := startBuilder(t, "dep", builderOpts{})
			b := startBuilder(t, "b1", builderOpts{Env: fakeTools(t, map[string]string{"zstd": tt.zstd})})
			for _, proto := range protos {
				c := newClient(t, dep, b)
				c.Env = []string{"OFFLOAD_COMPRESS=on"}
				depExpr, top := uploadExprs()
				r := c.build(depExpr, proto+"://dep x86_64-linux")
				checkOut(t, c, r)
				depOut := r.Out
				builders := proto + "://b1 x86_64-linux"
				r = c.build(top, builders, "-v")
				if r.Code == 0 {
					t.Fatalf("%s: nix-build succeeded with a %s upload\n%s", proto, tt.name, r.Stderr)
				}
				wantAll(t, "nix-build's stderr", r.Stderr, "compressed copy: ")
				noHookCrash(t, r.Stderr)
				if b.has(t, depOut) {
					t.Errorf("%s: %s is valid on the builder after a %s upload", proto, depOut, tt.name)
				}
				// What nix-store restored of it before it failed stays
				// there invalid, as after any failed copy into a Nix
				// store, until its next copy or the garbage collector
				// deletes it.
				for _, l := range strings.Split(r.Stderr, "\n") {
					if strings.Contains(l, "compressed copy: ") {
						t.Logf("%s: %s", proto, l)
					}
				}
				for _, s := range c.slotSnapshot(t, builders) {
					if s.Busy != 0 {
						t.Errorf("%s: %d slots of %s still held", proto, s.Busy, s.URI)
					}
				}
			}
		})
	}
}
