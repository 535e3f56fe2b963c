// SPDX-License-Identifier: MIT

package pick

import (
	"github.com/offload-nix/offload/internal/testenv"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// pick is pure (see its package comment): it imports pkg/spec and a few
// standard packages, and nothing that could open a file, a connection or a
// process, or read the slot file behind the hook's back.

// allowedImports are the packages pick's own (non-test) files may import.
var allowedImports = []string{
	"bytes", "errors", "io", "math", "strconv", "strings", "time", "unicode/utf8",
	"github.com/offload-nix/offload/internal/jsonstr",
	"github.com/offload-nix/offload/pkg/spec",
}

// forbiddenDeps must not be among pick's dependencies at all.
var forbiddenDeps = []string{
	"os/exec", "net/http", "syscall/js",
	"github.com/offload-nix/offload/pkg/slots",
	"github.com/offload-nix/offload/pkg/ssh",
	"github.com/offload-nix/offload/pkg/remote",
}

// forbiddenOwnDeps must not be among the dependencies pick adds to those of
// pkg/spec. (pkg/spec reaches net and os through golang.org/x/crypto/ssh's
// key parser, which pick does not control.)
var forbiddenOwnDeps = []string{"net", "os", "fmt", "encoding/json", "log"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		testenv.Skip(t, "no go command: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list"}, args...)...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, ee.Stderr)
		}
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return strings.Fields(string(out))
}

func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, ".") {
		if !slices.Contains(allowedImports, imp) {
			t.Errorf("pkg/pick imports %s; allowed: %v", imp, allowedImports)
		}
	}
	deps := goList(t, "-deps", "-f", "{{.ImportPath}}", ".")
	for _, d := range forbiddenDeps {
		if slices.Contains(deps, d) {
			t.Errorf("pkg/pick depends on %s", d)
		}
	}
	specDeps := goList(t, "-deps", "-f", "{{.ImportPath}}", "../spec")
	for _, d := range forbiddenOwnDeps {
		if slices.Contains(deps, d) && !slices.Contains(specDeps, d) {
			t.Errorf("pkg/pick depends on %s (not through pkg/spec)", d)
		}
	}
}

// TestNoClock keeps the clock out: Choose compares against the time it is
// given, so decisions replay exactly.
func TestNoClock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := []string{"Now", "Since", "Until", "Sleep", "After", "Tick", "NewTimer", "NewTicker", "AfterFunc"}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" && slices.Contains(banned, sel.Sel.Name) {
				t.Errorf("%s: time.%s: pick takes the time from its caller", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
