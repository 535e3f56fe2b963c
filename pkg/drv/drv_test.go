// SPDX-License-Identifier: MIT

package drv

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var parseTests = []struct {
	name string
	in   string
	want *Derivation
	err  string // substring of the error; "" means success
}{
	{
		name: "minimal",
		in:   `Derive([("out","/nix/store/x-t","","")],[],[],"x86_64-linux","/bin/sh",[],[])`,
		want: &Derivation{
			Outputs:  []Output{{Name: "out", Path: "/nix/store/x-t"}},
			Platform: "x86_64-linux",
			Builder:  "/bin/sh",
		},
	},
	{
		name: "escapes",
		in:   `Derive([("out","/o","","")],[("/d.drv",["out","dev"])],["/s"],"p","b",["\"q\"","a\\b","\n\r\t","\x\$"],[("k","v")])`,
		want: &Derivation{
			Outputs:   []Output{{Name: "out", Path: "/o"}},
			InputDrvs: []InputDrv{{Path: "/d.drv", Outputs: []string{"out", "dev"}}},
			InputSrcs: []string{"/s"},
			Platform:  "p",
			Builder:   "b",
			Args:      []string{`"q"`, `a\b`, "\n\r\t", "x$"},
			Env:       []EnvVar{{"k", "v"}},
		},
	},
	{
		name: "floating ca",
		in:   `Derive([("out","","r:sha256","")],[],[],"p","b",[],[])`,
		want: &Derivation{
			Outputs:  []Output{{Name: "out", HashAlgo: "r:sha256"}},
			Platform: "p",
			Builder:  "b",
		},
	},
	{name: "dyn drv", in: `DrvWithVersion("xp-dyn-drv",[("out","","","")],[],[],"p","b",[],[])`, err: "unsupported derivation format"},
	{name: "empty", in: ``, err: "unsupported derivation format"},
	{name: "json", in: `{"out":{}}`, err: "unsupported derivation format"},
	{name: "no outputs", in: `Derive([],[],[],"p","b",[],[])`, err: "no outputs"},
	{name: "trailing", in: `Derive([("out","/o","","")],[],[],"p","b",[],[])x`, err: "trailing"},
	{name: "trailing newline", in: "Derive([(\"out\",\"/o\",\"\",\"\")],[],[],\"p\",\"b\",[],[])\n", err: "trailing"},
	{name: "unterminated string", in: `Derive([("out`, err: "unterminated string"},
	{name: "unterminated escape", in: `Derive([("out\`, err: "unterminated string"},
	{name: "truncated", in: `Derive([("out","/o","","")],[],[],"p","b",[],[]`, err: "end of input"},
	{name: "truncated list", in: `Derive([("out","/o","","")`, err: "unterminated list"},
	{name: "bad separator", in: `Derive([("out","/o","","");],[],[],"p","b",[],[])`, err: "expected ',' or ']'"},
	{name: "relative src", in: `Derive([("out","/o","","")],[],["s"],"p","b",[],[])`, err: "bad path"},
	{name: "relative output", in: `Derive([("out","o","","")],[],[],"p","b",[],[])`, err: "bad output path"},
	{name: "unquoted", in: `Derive([(out,"/o","","")],[],[],"p","b",[],[])`, err: `expected '"'`},
	{name: "leading comma", in: `Derive([,("out","/o","","")],[],[],"p","b",[],[])`, err: `expected '('`},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				if !strings.HasPrefix(err.Error(), "drv: ") {
					t.Errorf("Parse(%q) error %q lacks the drv: prefix", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestUnsupportedIsSentinel(t *testing.T) {
	_, err := Parse([]byte(`DrvWithVersion("xp-dyn-drv",[])`))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("Parse(DrvWithVersion) error = %v, want ErrUnsupported", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	b := make([]byte, MaxSize+1)
	if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse(%d bytes) error = %v, want size error", len(b), err)
	}
}

// TestGolden parses the .drv files made by the local Nix (testdata/make.sh)
// and compares them with the recorded parse results. It also checks that
// Format reproduces Nix's bytes exactly.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.drv")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 7 {
		t.Fatalf("found %d .drv fixtures, want at least 7 (run testdata/make.sh)", len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".drv")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse(%s): %v", f, err)
			}
			if got := d.Format(); !bytes.Equal(got, b) {
				t.Errorf("Format(Parse(%s)) =\n%s\nwant\n%s", f, got, b)
			}
			got, err := json.MarshalIndent(d, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(f, ".drv") + ".json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Parse(%s) =\n%s\nwant (%s)\n%s", f, got, golden, want)
			}
			pathB, err := os.ReadFile(strings.TrimSuffix(f, ".drv") + ".path")
			if err != nil {
				t.Fatal(err)
			}
			drvPath := strings.TrimSpace(string(pathB))
			wantName := d.Getenv("name")
			if wantName == "" { // structured attrs: the name is inside __json
				var attrs struct{ Name string }
				if err := json.Unmarshal([]byte(d.Getenv("__json")), &attrs); err != nil {
					t.Fatal(err)
				}
				wantName = attrs.Name
			}
			if got := d.Name(drvPath); got != wantName || got == "" {
				t.Errorf("Name(%q) = %q, want %q", drvPath, got, wantName)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	read := func(name string) *Derivation {
		t.Helper()
		d, err := ReadFile(filepath.Join("testdata", name+".drv"))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name          string
		fixed, float  bool
		envKey, value string
	}{
		{"simple", false, false, "builder", "/bin/sh"},
		{"multi", false, false, "outputs", "out dev lib"},
		{"fixed", true, false, "outputHashMode", "flat"},
		{"fixedrec", true, false, "outputHashAlgo", "sha256"},
		{"withinput", false, false, "missing", ""},
		{"structured", false, false, "name", ""},
	}
	for _, tt := range tests {
		d := read(tt.name)
		if got := d.IsFixedOutput(); got != tt.fixed {
			t.Errorf("%s: IsFixedOutput() = %v, want %v", tt.name, got, tt.fixed)
		}
		if got := d.IsFloatingCA(); got != tt.float {
			t.Errorf("%s: IsFloatingCA() = %v, want %v", tt.name, got, tt.float)
		}
		if got := d.Getenv(tt.envKey); got != tt.value {
			t.Errorf("%s: Getenv(%q) = %q, want %q", tt.name, tt.envKey, got, tt.value)
		}
	}
	float, err := Parse([]byte(`Derive([("out","","r:sha256","")],[],[],"p","b",[],[])`))
	if err != nil {
		t.Fatal(err)
	}
	if !float.IsFloatingCA() {
		t.Errorf("IsFloatingCA() = false for an output without a path")
	}
	if got := float.Name("not-a-store-path"); got != "" {
		t.Errorf("Name(not a drv path) = %q, want the (empty) name variable", got)
	}
	if _, err := ReadFile("testdata/does-not-exist.drv"); err == nil {
		t.Errorf("ReadFile(missing) succeeded")
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.in))
	}
	files, _ := filepath.Glob("testdata/*.drv")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "drv: ") {
				t.Errorf("error %q lacks the drv: prefix", err)
			}
			return
		}
		// Whatever parses must survive a round trip through Format.
		again, err := Parse(d.Format())
		if err != nil {
			t.Fatalf("Parse(Format(d)) failed: %v\n%s", err, d.Format())
		}
		if !reflect.DeepEqual(normalize(d), normalize(again)) {
			t.Errorf("Parse(Format(d)) = %+v, want %+v", again, d)
		}
	})
}

// normalize maps empty slices to nil so that DeepEqual compares content.
func normalize(d *Derivation) *Derivation {
	c := *d
	for i := range c.InputDrvs {
		if len(c.InputDrvs[i].Outputs) == 0 {
			c.InputDrvs[i].Outputs = nil
		}
	}
	if len(c.InputSrcs) == 0 {
		c.InputSrcs = nil
	}
	if len(c.Args) == 0 {
		c.Args = nil
	}
	return &c
}
