// SPDX-License-Identifier: MIT

package offload_test

// Rules for this file:
//   - Every package of the module has an entry in rules: a new package
//     fails the test until its arrows are stated.
//   - The rules are about what the packages' own (non-test) files import;
//     tests may import what they need.
//   - An arrow that is allowed only for now goes in knownExceptions with
//     the reason, never into a package's imports.

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/offload-nix/offload/internal/testenv"
)

const module = "github.com/offload-nix/offload"

// rule states the arrows out of one package. Import paths of the module are
// written without the module's path: "pkg/spec".
type rule struct {
	// imports are the packages of the module the package may import.
	imports []string
	// std, if not nil, are the only packages from outside the module
	// (the standard library included) the package may import.
	std []string
	// notStd are packages from outside the module the package may not
	// import itself.
	notStd []string
	// never are packages that may not be among the package's dependencies
	// at all, through any other.
	never []string
}

// pure are the standard packages a package that does no I/O may import.
var pure = []string{"bytes", "errors", "io", "math", "strconv", "strings", "time", "unicode/utf8"}

// processes are what starts a process or opens a connection.
var processes = []string{"os/exec", "net", "net/http"}

var rules = map[string]rule{
	// The bottom: machines files and settings.
	"pkg/spec":    {notStd: processes},
	"pkg/nixconf": {notStd: processes},
	"pkg/config":  {imports: []string{"pkg/nixconf"}, notStd: processes},
	// Pure: machines, a request, loads and a clock in, a choice out.
	"pkg/pick": {
		imports: []string{"pkg/spec", "internal/jsonstr"},
		std:     pure,
		never: []string{"os/exec", "net/http", "syscall/js",
			module + "/pkg/slots", module + "/pkg/ssh", module + "/pkg/remoteload"},
	},
	"internal/jsonstr": {std: []string{"unicode/utf8"}},
	// Formats and the vocabulary of the store protocols.
	"pkg/wire":  {notStd: processes},
	"pkg/drv":   {imports: []string{"pkg/wire"}, notStd: processes},
	"pkg/nar":   {notStd: processes},
	"pkg/store": {imports: []string{"pkg/wire"}, notStd: append([]string{"os"}, processes...)},
	// The protocols speak over streams they are given.
	"pkg/serve":     {imports: []string{"pkg/drv", "pkg/store", "pkg/wire"}, notStd: append([]string{"os"}, processes...)},
	"pkg/daemon":    {imports: []string{"pkg/drv", "pkg/store", "pkg/wire"}, notStd: append([]string{"os"}, processes...)},
	"pkg/hookproto": {imports: []string{"pkg/pick", "pkg/wire", "internal/jsonstr"}, notStd: append([]string{"os"}, processes...)},
	// The local store runs nix-store, and through pkg/serve speaks to it.
	"pkg/localstore": {imports: []string{"pkg/nar", "pkg/serve", "pkg/store"}, notStd: []string{"net", "net/http"}},
	// Shared state, load readings and connections.
	"pkg/slots":      {imports: []string{"pkg/pick", "pkg/spec"}, notStd: processes},
	"pkg/remoteload": {imports: []string{"pkg/pick"}, notStd: append([]string{"os"}, processes...)},
	"pkg/ssh":        {imports: []string{"pkg/spec"}},
	"pkg/mux":        {notStd: []string{"os/exec", "net/http"}},
	// Compressed streams, given and returned.
	"pkg/squash": {notStd: append([]string{"os"}, processes...)},
	// One way to reach a builder (dial, handshake of either protocol, log
	// tail, probes), and one assembly of pick's inputs: the hook and the
	// commands share both, so what check and pick show is what the hook
	// does.
	"internal/builder": {imports: []string{
		"pkg/daemon", "pkg/drv", "pkg/mux", "pkg/pick", "pkg/remoteload", "pkg/serve",
		"pkg/slots", "pkg/spec", "pkg/squash", "pkg/ssh", "pkg/store", "pkg/wire",
	}, notStd: []string{"net", "net/http"}},
	"internal/decide": {imports: []string{"pkg/config", "pkg/drv", "pkg/pick", "pkg/slots", "pkg/spec"}, notStd: processes},
	// The hook wires the parts together; the commands wire the hook. The
	// hook speaks the serve protocol only to the local store; builders it
	// reaches through internal/builder. The commands speak no store
	// protocol and touch no store themselves (no pkg/serve, pkg/daemon,
	// pkg/localstore or pkg/wire).
	"internal/hook": {imports: []string{
		"internal/builder", "internal/decide", "pkg/config", "pkg/drv", "pkg/hookproto",
		"pkg/localstore", "pkg/pick", "pkg/remoteload", "pkg/serve", "pkg/slots", "pkg/spec",
		"pkg/ssh", "pkg/store", "pkg/wire",
	}},
	"internal/cli": {imports: []string{
		"internal/builder", "internal/decide", "internal/hook", "pkg/config", "pkg/drv",
		"pkg/nixconf", "pkg/pick", "pkg/remoteload", "pkg/slots", "pkg/spec", "pkg/ssh",
	}},
	"cmd/offload": {imports: []string{"internal/cli"}},
	// Test support and tools.
	"internal/testenv": {},
	"internal/nixtest": {imports: []string{"internal/testenv", "pkg/drv", "pkg/store", "pkg/wire"}, notStd: []string{"net", "net/http"}},
	"internal/e2e":     {},
	"bench/benchtool":  {},
	"bench/emulation":  {},
	"scripts/elfcheck": {},
	"scripts/testsum":  {imports: []string{"internal/testenv"}},
	// The module's root holds only this test.
	".": {},
}

// knownExceptions are arrows that break the rules above for now, with the
// reason.
var knownExceptions = map[[2]string]string{}

// symbolRules say which packages may use a function at all, whoever's
// package they reach it through: the rules of the layering that imports
// alone cannot state.
var symbolRules = []struct {
	what    string
	match   func(path, name string) bool
	allowed []string
}{
	{
		what: "opens a network connection",
		match: func(path, name string) bool {
			return path == "net" && (strings.HasPrefix(name, "Dial") || strings.HasPrefix(name, "Listen")) ||
				path == "golang.org/x/crypto/ssh" && name == "Dial"
		},
		// pkg/ssh dials builders (and the SSH agent); pkg/mux listens on
		// and dials its unix socket; internal/testenv, a helper of tests,
		// listens on loopback for a moment to find a closed port.
		allowed: []string{"pkg/ssh", "pkg/mux", "internal/testenv"},
	},
	{
		what: "maps memory",
		match: func(path, name string) bool {
			return (path == "syscall" || path == "golang.org/x/sys/unix") && (name == "Mmap" || name == "Munmap")
		},
		allowed: []string{"pkg/slots"},
	},
}

type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listModule(t *testing.T) []listedPackage {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "no go command: %v", err)
	}
	cmd := exec.Command(gobin, "list", "-json", "./...")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, ee.Stderr)
		}
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("%v listed no packages", cmd.Args)
	}
	return pkgs
}

// short returns path without the module's path, "." for the module's root,
// and whether path is in the module at all.
func short(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	return strings.CutPrefix(path, module+"/")
}

// TestDeps checks every package's arrows against rules.
func TestDeps(t *testing.T) {
	pkgs := listModule(t)
	seen := make(map[string]bool)
	usedExceptions := make(map[[2]string]bool)
	for _, p := range pkgs {
		name, _ := short(p.ImportPath)
		seen[name] = true
		r, ok := rules[name]
		if !ok {
			t.Errorf("%s has no entry in rules: state what it may import", name)
			continue
		}
		for _, imp := range p.Imports {
			if mod, ok := short(imp); ok {
				if slices.Contains(r.imports, mod) {
					continue
				}
				if why, ok := knownExceptions[[2]string{name, mod}]; ok {
					usedExceptions[[2]string{name, mod}] = true
					t.Logf("%s imports %s: known exception: %s", name, mod, why)
					continue
				}
				t.Errorf("%s imports %s; it may import only %v of the module", name, mod, r.imports)
				continue
			}
			if r.std != nil && !slices.Contains(r.std, imp) {
				t.Errorf("%s imports %s; from outside the module it may import only %v", name, imp, r.std)
			}
			if slices.Contains(r.notStd, imp) {
				t.Errorf("%s imports %s, which it may not", name, imp)
			}
		}
		for _, d := range r.never {
			if slices.Contains(p.Deps, d) {
				t.Errorf("%s depends on %s, which it may not even through other packages", name, d)
			}
		}
	}
	for name := range rules {
		if !seen[name] {
			t.Errorf("rules name %s, which is not a package of the module", name)
		}
	}
	for e := range knownExceptions {
		if !usedExceptions[e] {
			t.Errorf("known exception %s → %s is not needed any more: remove it", e[0], e[1])
		}
	}
}

// TestSymbols checks symbolRules in every package's own files.
func TestSymbols(t *testing.T) {
	pkgs := listModule(t)
	fset := token.NewFileSet()
	checked := 0
	for _, p := range pkgs {
		name, _ := short(p.ImportPath)
		for _, file := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, file), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			imports := make(map[string]string) // local name → path
			for _, is := range f.Imports {
				path := strings.Trim(is.Path.Value, `"`)
				local := filepath.Base(path)
				if is.Name != nil {
					local = is.Name.Name
				}
				imports[local] = path
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				id, ok := sel.X.(*ast.Ident)
				if !ok {
					return true
				}
				path, ok := imports[id.Name]
				if !ok {
					return true
				}
				for _, sr := range symbolRules {
					if sr.match(path, sel.Sel.Name) && !slices.Contains(sr.allowed, name) {
						t.Errorf("%s: %s.%s %s; only %v may", fset.Position(sel.Pos()), path, sel.Sel.Name, sr.what, sr.allowed)
					}
				}
				return true
			})
		}
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
