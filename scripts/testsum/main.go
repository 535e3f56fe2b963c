// SPDX-License-Identifier: MIT

// Command testsum reads `go test -json` on its standard input and prints
// what a person needs from it: a line per package as go test prints it,
// the whole output of every failed test, every skipped test with its
// reason, and a closing count, "N passed, N failed, N skipped".
//
// It exits 1 when a test or a package failed and, under CI (CI=true), when
// a test skipped that internal/testenv.Allowed does not list: there a
// skip means a missing install step.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/offload-nix/offload/internal/testenv"
)

type event struct {
	Action      string
	Package     string
	ImportPath  string
	Test        string
	Output      string
	Elapsed     float64
	FailedBuild string
}

type summary struct {
	out      io.Writer
	output   map[string]*strings.Builder // by package and test
	passed   int
	failed   int
	skipped  []string // "pkg.Test: reason"
	badSkips int
	pkgFails int
	failedIn map[string]int // failed tests by package
}

func main() {
	s := &summary{out: os.Stdout, output: map[string]*strings.Builder{}, failedIn: map[string]int{}}
	if err := s.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(1)
	}
	if !s.close() {
		os.Exit(1)
	}
}

func (s *summary) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(s.out, "%s\n", line) // not an event: go's own message
			continue
		}
		s.event(e)
	}
	return sc.Err()
}

func (s *summary) event(e event) {
	key := e.Package + "." + e.Test
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
	case "output":
		b := s.output[key]
		if b == nil {
			b = new(strings.Builder)
			s.output[key] = b
		}
		b.WriteString(e.Output)
		if e.Test == "" && (strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL\t") || strings.HasPrefix(e.Output, "?")) {
			fmt.Fprint(s.out, e.Output)
		}
	case "pass":
		if e.Test != "" {
			s.passed++
		}
		delete(s.output, key)
	case "skip":
		if e.Test == "" {
			delete(s.output, key)
			return
		}
		why := lastLine(s.output[key])
		name := e.Package + "." + e.Test
		mark := ""
		if testenv.CI() && testenv.Allowed[name] == "" {
			s.badSkips++
			mark = " (not allowed under CI: see internal/testenv)"
		}
		s.skipped = append(s.skipped, fmt.Sprintf("%s: %s%s", name, why, mark))
		delete(s.output, key)
	case "fail":
		if e.Test != "" {
			s.failed++
			s.failedIn[e.Package]++
			fmt.Fprintf(s.out, "--- FAIL: %s (%s)\n%s", e.Test, e.Package, text(s.output[key]))
		} else {
			s.pkgFails++
			if b := s.output[key]; b != nil && s.failedIn[e.Package] == 0 {
				fmt.Fprint(s.out, b.String()) // a panic, a timeout or TestMain's own failure
			}
		}
		delete(s.output, key)
	}
}

// close prints the skips and the count, and reports whether the run passed.
func (s *summary) close() bool {
	sort.Strings(s.skipped)
	for _, sk := range s.skipped {
		fmt.Fprintf(s.out, "skipped %s\n", sk)
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, len(s.skipped))
	if s.badSkips > 0 {
		fmt.Fprintf(s.out, "testsum: %d tests skipped under CI; install what they need (scripts/deps.sh) or list them in internal/testenv.Allowed with why\n", s.badSkips)
	}
	return s.failed == 0 && s.pkgFails == 0 && s.badSkips == 0
}

func text(b *strings.Builder) string {
	if b == nil {
		return ""
	}
	return b.String()
}

// lastLine returns the last line of a skipped test's output other than
// its "--- SKIP" line: the reason it gave.
func lastLine(b *strings.Builder) string {
	lines := strings.Split(strings.TrimRight(text(b), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.HasPrefix(l, "--- SKIP") && !strings.HasPrefix(l, "=== ") {
			return l
		}
	}
	return "(no reason given)"
}
