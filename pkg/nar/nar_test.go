// SPDX-License-Identifier: MIT

package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/offload-nix/offload/internal/testenv"
)

// makeTree builds the tree that testdata/mknars.sh dumps into tree.nar.
func makeTree(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	for _, d := range []string{"emptydir", "sub/deeper"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		name, data string
		mode       os.FileMode
	}{
		{"hello", "hello\n", 0o644},
		{"run.sh", "#!/bin/sh\necho hi\n", 0o755},
		{"empty", "", 0o644},
		{"sub/deeper/file", "nested\n", 0o644},
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("hello", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "sub/abs")); err != nil {
		t.Fatal(err)
	}
	return root
}

var fixtures = []struct{ file, path string }{
	{"tree.nar", ""},
	{"file.nar", "hello"},
	{"exec.nar", "run.sh"},
	{"empty.nar", "empty"},
	{"symlink.nar", "link"},
	{"emptydir.nar", "emptydir"},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDump(t *testing.T) {
	root := makeTree(t, t.TempDir())
	nixStore, _ := exec.LookPath("nix-store")
	for _, fx := range fixtures {
		p := filepath.Join(root, fx.path)
		var buf bytes.Buffer
		res, err := Dump(&buf, p)
		if err != nil {
			t.Fatalf("Dump(%s): %v", fx.path, err)
		}
		want := readFixture(t, fx.file)
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("Dump(%s) differs from testdata/%s (%d bytes, want %d)", fx.path, fx.file, buf.Len(), len(want))
		}
		if res.Size != uint64(buf.Len()) || res.SHA256 != sha256.Sum256(buf.Bytes()) {
			t.Errorf("Dump(%s) = %+v, does not describe the %d bytes written", fx.path, res, buf.Len())
		}
		if nixStore == "" {
			continue
		}
		live, err := exec.Command(nixStore, "--dump", p).Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		if !bytes.Equal(buf.Bytes(), live) {
			t.Errorf("Dump(%s) differs from nix-store --dump", fx.path)
		}
	}
}

func TestDumpUnsupported(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		testenv.Skip(t, "%v", err)
	}
	if _, err := Dump(io.Discard, p); err == nil {
		t.Error("Dump(fifo) succeeded")
	}
}

func TestRestoreFixtures(t *testing.T) {
	for _, fx := range fixtures {
		in := readFixture(t, fx.file)
		for _, size := range []uint64{0, uint64(len(in))} {
			dst := filepath.Join(t.TempDir(), "out")
			var last uint64
			res, err := Restore(bytes.NewReader(in), dst, Options{Size: size, Progress: func(n uint64) {
				if n < last {
					t.Errorf("progress went back from %d to %d", last, n)
				}
				last = n
			}})
			if err != nil {
				t.Fatalf("Restore(%s, size %d): %v", fx.file, size, err)
			}
			want := Result{Size: uint64(len(in)), SHA256: sha256.Sum256(in)}
			if res != want {
				t.Errorf("Restore(%s) = %x, want %x", fx.file, res, want)
			}
			if last != uint64(len(in)) {
				t.Errorf("Restore(%s): last progress %d, want %d", fx.file, last, len(in))
			}
			var again bytes.Buffer
			if _, err := Dump(&again, dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), in) {
				t.Errorf("Dump(Restore(%s)) differs from the input", fx.file)
			}
		}
	}
}

func TestRestoreModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := Restore(bytes.NewReader(readFixture(t, "tree.nar")), dst, Options{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		"":         fs.ModeDir | 0o755,
		"hello":    0o644,
		"run.sh":   0o755,
		"emptydir": fs.ModeDir | 0o755,
		"link":     fs.ModeSymlink | 0o777,
	} {
		fi, err := os.Lstat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %q = %v, want %v", name, fi.Mode(), want)
		}
	}
}

// raw encodes tokens as wire strings.
func raw(tokens ...string) []byte {
	var b bytes.Buffer
	for _, s := range tokens {
		b.Write(u64(uint64(len(s))))
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b.Bytes()
}

func u64(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

// mk encodes an archive: the magic, then tokens.
func mk(tokens ...[]string) []byte {
	all := []string{magic}
	for _, t := range tokens {
		all = append(all, t...)
	}
	return raw(all...)
}

func file(data string) []string { return []string{"(", "type", "regular", "contents", data, ")"} }
func link(target string) []string {
	return []string{"(", "type", "symlink", "target", target, ")"}
}

func directory(entries ...[]string) []string {
	out := []string{"(", "type", "directory"}
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, ")")
}

func entry(name string, node []string) []string {
	out := []string{"entry", "(", "name", name, "node"}
	out = append(out, node...)
	return append(out, ")")
}

func nest(depth int) []string {
	n := file("x")
	for range depth {
		n = directory(entry("d", n))
	}
	return n
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

type hostile struct {
	name string
	in   []byte
	size uint64
	err  string // substring of the error; "" means success
}

func hostileCases() []hostile {
	good := mk(directory(entry("a", file("A")), entry("b", file("B"))))
	return []hostile{
		{"ok", good, 0, ""},
		{"ok sized", good, uint64(len(good)), ""},
		{"dotdot", mk(directory(entry("..", file("x")))), 0, "invalid file name"},
		{"dot", mk(directory(entry(".", file("x")))), 0, "invalid file name"},
		{"empty name", mk(directory(entry("", file("x")))), 0, "invalid file name"},
		{"slash", mk(directory(entry("a/b", file("x")))), 0, "invalid file name"},
		{"absolute", mk(directory(entry("/etc", file("x")))), 0, "invalid file name"},
		{"nul", mk(directory(entry("a\x00b", file("x")))), 0, "invalid file name"},
		{"name 255", mk(directory(entry(strings.Repeat("n", 255), file("x")))), 0, ""},
		{"name 256", mk(directory(entry(strings.Repeat("n", 256), file("x")))), 0, "longer than 255"},
		// A symlink out of the tree, then a write through it: by name
		// (rejected as a name) or by reusing the name (rejected as
		// unsorted, and O_EXCL|O_NOFOLLOW would refuse it anyway).
		{"symlink then write through", mk(directory(entry("a", link("/tmp")), entry("a/x", file("x")))), 0, "invalid file name"},
		{"symlink then dir of same name", mk(directory(entry("a", link("..")), entry("a", directory(entry("x", file("x")))))), 0, "not sorted"},
		{"unsorted", mk(directory(entry("b", file("B")), entry("a", file("A")))), 0, "not sorted"},
		{"duplicate", mk(directory(entry("a", file("A")), entry("a", file("A")))), 0, "not sorted"},
		{"bad magic", raw("nix-archive-2", "(", "type", "regular", "contents", "", ")"), 0, "not a Nix archive"},
		{"empty stream", nil, 0, "truncated"},
		{"unknown type", mk([]string{"(", "type", "fifo", ")"}), 0, "unknown file type"},
		{"executable with value", mk([]string{"(", "type", "regular", "executable", "1", "contents", "", ")"}), 0, "executable marker"},
		{"contents then executable", mk([]string{"(", "type", "regular", "contents", "", "executable", "", ")"}), 0, `expected ")"`},
		{"two types", mk([]string{"(", "type", "regular", "type", "symlink", ")"}), 0, `expected "contents"`},
		{"missing paren", mk([]string{"type", "regular", "contents", "", ")"}), 0, `expected "("`},
		{"empty target", mk(link("")), 0, "invalid symlink target"},
		{"nul target", mk(link("a\x00b")), 0, "invalid symlink target"},
		{"target 4095", mk(link(strings.Repeat("t", 4095))), 0, ""},
		{"target 4096", mk(link(strings.Repeat("t", 4096))), 0, "longer than 4095"},
		{"depth 63", mk(nest(63)), 0, ""},
		{"depth 64", mk(nest(64)), 0, "nesting deeper"},
		{"non-zero padding", cat(raw(magic, "(", "type", "regular", "contents"), u64(1), []byte("x\x00\x00\x00\x00\x00\x00\x01"), raw(")")), 0, "non-zero padding"},
		{"huge tag", cat(raw(magic), u64(1<<62)), 0, "longer than 32"},
		{"huge name", cat(raw(magic, "(", "type", "directory", "entry", "(", "name"), u64(1<<62)), 0, "longer than 255"},
		{"huge target", cat(raw(magic, "(", "type", "symlink", "target"), u64(1<<62)), 0, "longer than 4095"},
		{"huge file unsized", cat(raw(magic, "(", "type", "regular", "contents"), u64(1<<62), []byte("abc")), 0, "truncated"},
		{"huge file sized", cat(raw(magic, "(", "type", "regular", "contents"), u64(1<<62), []byte("abc")), 4096, "larger than expected"},
		{"size too small", good, uint64(len(good)) - 8, "larger than expected"},
		{"trailing garbage", cat(good, []byte("garbage!")), uint64(len(good)) + 8, "archive ended after"},
		{"truncated", good[:len(good)-8], 0, "truncated"},
	}
}

// checkOnly fails unless the only thing under dir is dst (or nothing when
// dst is empty).
func checkOnly(t testing.TB, dir, dst string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir || dst != "" && (p == dst || strings.HasPrefix(p, dst+"/")) {
			return nil
		}
		t.Errorf("unexpected %s", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestoreHostile(t *testing.T) {
	for _, tt := range hostileCases() {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "out")
			_, err := Restore(bytes.NewReader(tt.in), dst, Options{Size: tt.size})
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Restore: %v", err)
				}
				checkOnly(t, dir, dst)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Restore = %v, want error containing %q", err, tt.err)
			}
			if !strings.HasPrefix(err.Error(), "nar: ") {
				t.Errorf("error %q lacks the nar: prefix", err)
			}
			checkOnly(t, dir, "")
		})
	}
}

func TestRestoreSizedLeavesRest(t *testing.T) {
	in := readFixture(t, "file.nar")
	r := bytes.NewReader(cat(in, []byte("next message")))
	if _, err := Restore(r, filepath.Join(t.TempDir(), "out"), Options{Size: uint64(len(in))}); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "next message" {
		t.Errorf("after Restore the stream holds %q, want %q", rest, "next message")
	}
	// Without a size, too: the archive is self-delimiting.
	r = bytes.NewReader(cat(in, []byte("next")))
	if _, err := Restore(r, filepath.Join(t.TempDir(), "out"), Options{}); err != nil {
		t.Fatal(err)
	}
	if r.Len() != 4 {
		t.Errorf("Restore read %d bytes past the archive", 4-r.Len())
	}
}

// scratchDir returns a temporary directory on tmpfs when there is one:
// the tests that create thousands of small trees are bound by the file
// system, not by Restore.
func scratchDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "nar-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func TestRestoreTruncatedEverywhere(t *testing.T) {
	in := readFixture(t, "tree.nar")
	dir := scratchDir(t)
	for n := 0; n < len(in); n++ {
		if n%8 != 0 && n%8 != 3 {
			continue // tokens are 8-byte aligned: cut at each boundary and inside each word
		}
		_, err := Restore(bytes.NewReader(in[:n]), filepath.Join(dir, "out"), Options{})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Restore(first %d bytes) = %v, want a truncation error", n, err)
		}
		checkOnly(t, dir, "")
	}
}

func TestRestoreExistingDst(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "out")
	if err := os.WriteFile(dst, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bytes.NewReader(readFixture(t, "file.nar")), dst, Options{}); !errors.Is(err, fs.ErrExist) && !strings.Contains(err.Error(), "exists") {
		t.Fatalf("Restore over an existing file = %v, want an exists error", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "keep" {
		t.Errorf("existing destination was changed to %q", b)
	}
}

// TestRestoreNoFollow checks that a destination whose entries already lead
// outside (a planted symlink) is never written through.
func TestRestoreNoFollow(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out")
	if err := os.Symlink(outside, dst); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(bytes.NewReader(mk(directory(entry("x", file("x"))))), dst, Options{})
	if err == nil {
		t.Fatal("Restore over a symlink succeeded")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("Restore wrote through a symlink: %v", ents)
	}
}

func bigFile(size int) []byte {
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	return cat(raw(magic, "(", "type", "regular", "contents"), raw(string(data)), raw(")"))
}

// TestRestoreAllocs checks that allocations do not grow with file size.
func TestRestoreAllocs(t *testing.T) {
	dir := scratchDir(t)
	allocs := func(in []byte) float64 {
		return testing.AllocsPerRun(5, func() {
			dst := filepath.Join(dir, "out")
			if _, err := Restore(bytes.NewReader(in), dst, Options{}); err != nil {
				t.Fatal(err)
			}
			os.Remove(dst)
		})
	}
	small, large := allocs(bigFile(1<<10)), allocs(bigFile(8<<20))
	if large > small {
		t.Errorf("Restore allocates %v times for 1 KiB and %v for 8 MiB", small, large)
	}
}

func BenchmarkRestore(b *testing.B) {
	in := bigFile(64 << 20)
	dir := scratchDir(b)
	if d := os.Getenv("NAR_BENCH_DIR"); d != "" {
		dir = d
	}
	dst := filepath.Join(dir, "out")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Restore(bytes.NewReader(in), dst, Options{Size: uint64(len(in))}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(dst)
		b.StartTimer()
	}
}

func FuzzRestore(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(readFixture(f, fx.file))
	}
	for _, tt := range hostileCases() {
		f.Add(tt.in)
	}
	// Every input gets a fresh directory, on tmpfs when there is one: a
	// t.TempDir per input on a busy disk made the run a few inputs a
	// second, all of it mkdir, unlink and journal waits.
	base := scratchDir(f)
	n := 0
	f.Fuzz(func(t *testing.T, in []byte) {
		n++
		dir := filepath.Join(base, strconv.Itoa(n))
		sub := filepath.Join(dir, "sub")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		dst := filepath.Join(sub, "out")
		res, err := Restore(bytes.NewReader(in), dst, Options{})
		if err != nil {
			checkOnly(t, dir, sub)
			if ents, _ := os.ReadDir(sub); len(ents) != 0 {
				t.Fatalf("Restore failed (%v) but left %v", err, ents)
			}
			return
		}
		checkOnly(t, dir, sub)
		if ents, _ := os.ReadDir(sub); len(ents) != 1 {
			t.Fatalf("Restore left %v", ents)
		}
		// A valid archive is the canonical serialisation of what it made.
		var again bytes.Buffer
		if _, err := Dump(&again, dst); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), in[:res.Size]) {
			t.Fatalf("Dump(Restore(x)) != x")
		}
	})
}
