// SPDX-License-Identifier: MIT

package spec

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/machines")

const machinesDir = "../../testdata/machines"

// noFiles makes Lint's key checks independent of the machine running
// the test: every key file is missing.
func noFiles(name string) (fs.FileInfo, error) {
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// inputs lists the testdata inputs: every file without a golden suffix.
func inputs(t testing.TB) []string {
	ents, err := os.ReadDir(machinesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".err") || strings.HasSuffix(n, ".warnings") {
			continue
		}
		names = append(names, n)
	}
	return names
}

// parseTestdata parses one testdata input as offload machines would: a
// "*.setting" file holds a builders setting value, any other file is the
// target of "@name". Paths are relative to the testdata directory.
func parseTestdata(name string, lenient bool) ([]Machine, []Warning, error) {
	o := Options{LocalSystem: "x86_64-linux", Lenient: lenient}
	if strings.HasSuffix(name, ".setting") {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, nil, err
		}
		return ParseBuilders(strings.TrimSuffix(string(data), "\n"), o)
	}
	return ParseBuilders("@"+name, o)
}

// TestGolden checks each input in testdata/machines against its goldens:
// name.json is the --json output (of the lenient parse, as in hook mode,
// when the strict parse fails), name.err the strict parse error, and
// name.warnings the parser's and Lint's warnings. Regenerate them with
// go test ./pkg/spec -update.
func TestGolden(t *testing.T) {
	names := inputs(t)
	if len(names) < 10 {
		t.Fatalf("found %d inputs in %s, want the full set", len(names), machinesDir)
	}
	t.Chdir(machinesDir)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			ms, ws, err := parseTestdata(name, false)
			var errText []byte
			if err != nil {
				errText = []byte(err.Error() + "\n")
				ms, ws, err = parseTestdata(name, true)
				if err != nil {
					t.Fatalf("lenient parse: %v", err)
				}
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, ms); err != nil {
				t.Fatal(err)
			}
			var wt bytes.Buffer
			for _, w := range append(ws, Lint(ms, noFiles)...) {
				wt.WriteString(w.String() + "\n")
			}
			golden(t, name+".json", js.Bytes())
			golden(t, name+".err", errText)
			golden(t, name+".warnings", wt.Bytes())
		})
	}
}

// golden compares got with the file name; an empty got means the file
// must not exist.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	if *update {
		if len(got) == 0 {
			os.Remove(name)
			return
		}
		if err := os.WriteFile(name, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if os.IsNotExist(err) && len(got) == 0 {
		return
	}
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/spec -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden:\n--- got\n%s\n--- want\n%s", filepath.Base(name), got, want)
	}
}
