// SPDX-License-Identifier: MIT

package cli

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The commands reach builders through internal/builder and assemble
// decisions through internal/decide (see internal/builder's package
// comment): they speak no store protocol and touch no store themselves, so
// what check and pick show is what the hook does.
var forbiddenImports = []string{
	"github.com/offload-nix/offload/pkg/daemon",
	"github.com/offload-nix/offload/pkg/localstore",
	"github.com/offload-nix/offload/pkg/serve",
	"github.com/offload-nix/offload/pkg/wire",
}

func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if slices.Contains(forbiddenImports, path) {
				t.Errorf("%s imports %s; reach builders through internal/builder", name, path)
			}
		}
	}
}
