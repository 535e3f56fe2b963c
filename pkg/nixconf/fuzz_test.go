// SPDX-License-Identifier: MIT

package nixconf

import (
	"strings"
	"testing"
)

// FuzzParse checks that nix.conf parsing never panics and that every entry
// and error names the file and a line within the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "# c\n\n   \n\t# indented\n",
		"builders = ssh://mac x86_64-darwin ; ssh://beastie x86_64-freebsd\nmax-jobs = 4\n",
		"k =   a \t  b  \r\n", "builders = ssh://a x86_64-linux # ; ssh://b", "builders =",
		"\nbuilders=@/etc/nix/machines", "include a b", "!include missing.conf\n",
	} {
		f.Add(s)
	}
	// Includes are read relative to the file: a name in an empty
	// directory keeps them inside it. Parse only reads, so one directory
	// serves every input (a t.TempDir each was most of the run's time).
	name := f.TempDir() + "/nix.conf"
	f.Fuzz(func(t *testing.T, in string) {
		es, err := Parse(strings.NewReader(in), name)
		lines := strings.Count(in, "\n") + 1
		if err != nil {
			if e, ok := err.(*Error); ok && e.File == name && (e.Line < 1 || e.Line > lines) {
				t.Errorf("Parse(%q): error at line %d of %d: %v", in, e.Line, lines, err)
			}
			return
		}
		for _, e := range es {
			if e.File == name && (e.Line < 1 || e.Line > lines) {
				t.Errorf("Parse(%q): entry %q at line %d of %d", in, e.Key, e.Line, lines)
			}
		}
	})
}
