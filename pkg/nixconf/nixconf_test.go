// SPDX-License-Identifier: MIT

package nixconf

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func show(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key + "=" + e.Value + " @" + e.Origin()
	}
	return out
}

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{name: "empty", in: ""},
		{name: "comments_and_blank_lines", in: "# c\n\n   \n\t# indented\n"},
		{
			name: "key_value",
			in:   "builders = ssh://mac x86_64-darwin ; ssh://beastie x86_64-freebsd\nmax-jobs = 4\n",
			want: []string{"builders=ssh://mac x86_64-darwin ; ssh://beastie x86_64-freebsd @f:1", "max-jobs=4 @f:2"},
		},
		{name: "whitespace_in_value_collapses", in: "k =   a \t  b  \r\n", want: []string{"k=a b @f:1"}},
		{name: "trailing_comment_cut", in: "builders = ssh://a x86_64-linux # ; ssh://b", want: []string{"builders=ssh://a x86_64-linux @f:1"}},
		{name: "empty_value", in: "builders =", want: []string{"builders= @f:1"}},
		{name: "extra_kept_as_entry", in: "extra-substituters = a", want: []string{"extra-substituters=a @f:1"}},
		{name: "no_spaces_around_equals_is_an_error", in: "\nbuilders=@/etc/nix/machines", wantErr: `f:2: syntax error in configuration line "builders=@/etc/nix/machines" (want "key = value", with spaces around '=')`},
		{name: "lone_word", in: "builders", wantErr: `f:1: syntax error in configuration line "builders"`},
		{name: "include_with_two_paths", in: "include a b", wantErr: `f:1: syntax error in configuration line "include a b"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			es, err := Parse(strings.NewReader(tt.in), "f")
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := show(es); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestInclude(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "etc", "nix.conf")
	write(t, main, "a = 1\ninclude sub/more.conf\n!include missing.conf\nb = 2\n")
	write(t, filepath.Join(dir, "etc", "sub", "more.conf"), "# relative to the including file\nc = 3\n")
	f, _ := os.Open(main)
	defer f.Close()
	es, err := Parse(f, main)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"a=1 @" + main + ":1",
		"c=3 @" + filepath.Join(dir, "etc", "sub", "more.conf") + ":2",
		"b=2 @" + main + ":4",
	}
	if got := show(es); !slices.Equal(got, want) {
		t.Errorf("Parse = %q, want %q", got, want)
	}

	write(t, main, "include nope.conf\n")
	f2, _ := os.Open(main)
	defer f2.Close()
	_, err = Parse(f2, main)
	if want := main + ":1: file " + filepath.Join(dir, "etc", "nope.conf") + " included from " + main + " not found"; err == nil || err.Error() != want {
		t.Errorf("include of missing file: error = %v, want %q", err, want)
	}

	write(t, main, "include nix.conf\n")
	f3, _ := os.Open(main)
	defer f3.Close()
	if _, err = Parse(f3, main); err == nil || !strings.Contains(err.Error(), "nested more than 32 deep") {
		t.Errorf("self-include: error = %v, want depth error", err)
	}
}

func TestLoadOrder(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "conf")
	write(t, filepath.Join(confDir, "nix.conf"), "builders = @/sys\nsys-only = s\n")
	write(t, filepath.Join(dir, "xdg1", "nix", "nix.conf"), "builders = @/xdg1\n")
	write(t, filepath.Join(dir, "xdg2", "nix", "nix.conf"), "builders = @/xdg2\nx2 = yes\n")
	write(t, filepath.Join(dir, "home", ".config", "nix", "nix.conf"), "builders = @/home\n")
	env := map[string]string{
		"NIX_CONF_DIR":    confDir,
		"XDG_CONFIG_DIRS": filepath.Join(dir, "xdg1") + ":" + filepath.Join(dir, "xdg2"),
		"HOME":            filepath.Join(dir, "home"),
	}
	c, err := Load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{
		filepath.Join(confDir, "nix.conf"),
		filepath.Join(dir, "xdg2", "nix", "nix.conf"),
		filepath.Join(dir, "xdg1", "nix", "nix.conf"),
		filepath.Join(dir, "home", ".config", "nix", "nix.conf"),
	}
	if !slices.Equal(c.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", c.Files, wantFiles)
	}
	if v, o := c.Builders(envMap(env)); v != "@/home" || o != wantFiles[3]+":1" {
		t.Errorf("Builders = %q from %q, want @/home from the home file", v, o)
	}
	if v, _, ok := c.Get("x2"); !ok || v != "yes" {
		t.Errorf("Get(x2) = %q, %v", v, ok)
	}

	// XDG_CONFIG_HOME replaces ~/.config; NIX_CONFIG comes last.
	env["XDG_CONFIG_HOME"] = filepath.Join(dir, "xdghome")
	write(t, filepath.Join(dir, "xdghome", "nix", "nix.conf"), "builders = @/xdghome\n")
	env["NIX_CONFIG"] = "sys-only = env\nbuilders = @/env"
	c, err = Load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if v, o := c.Builders(envMap(env)); v != "@/env" || o != "NIX_CONFIG:2" {
		t.Errorf("Builders = %q from %q, want @/env from NIX_CONFIG:2", v, o)
	}
	delete(env, "NIX_CONFIG")
	c, _ = Load(envMap(env))
	if v, _ := c.Builders(envMap(env)); v != "@/xdghome" {
		t.Errorf("Builders = %q, want @/xdghome", v)
	}

	// NIX_USER_CONF_FILES replaces the XDG files; its first file wins.
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	write(t, a, "builders = @/a\n")
	write(t, b, "builders = @/b\n")
	env["NIX_USER_CONF_FILES"] = a + ":" + b + ":" + filepath.Join(dir, "missing.conf")
	c, err = Load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if v, o := c.Builders(envMap(env)); v != "@/a" || o != a+":1" {
		t.Errorf("Builders = %q from %q, want @/a from %s:1", v, o, a)
	}
}

func TestBuildersDefault(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"NIX_CONF_DIR": dir, "XDG_CONFIG_DIRS": dir, "HOME": dir}
	c, err := Load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	if v, o := c.Builders(envMap(env)); v != "@"+filepath.Join(dir, "machines") || o != "default" {
		t.Errorf("Builders = %q, %q; want @%s/machines, default", v, o, dir)
	}
	if v, _ := (&Conf{}).Builders(envMap(nil)); v != "@/etc/nix/machines" {
		t.Errorf("Builders without NIX_CONF_DIR = %q, want @/etc/nix/machines", v)
	}

	env["NIX_REMOTE_SYSTEMS"] = "/etc/nix/remote-systems.conf::/etc/more"
	if v, o := c.Builders(envMap(env)); v != "@/etc/nix/remote-systems.conf\n@/etc/more" || o != "env NIX_REMOTE_SYSTEMS" {
		t.Errorf("Builders with NIX_REMOTE_SYSTEMS = %q, %q", v, o)
	}

	// A builders entry in a file wins over NIX_REMOTE_SYSTEMS, which only
	// changes the default.
	write(t, filepath.Join(dir, "nix.conf"), "builders = ssh://b1\nextra-builders = ssh://b2\n")
	c, _ = Load(envMap(env))
	if v, o := c.Builders(envMap(env)); v != "ssh://b1" || o != filepath.Join(dir, "nix.conf")+":1" {
		t.Errorf("Builders = %q, %q; want ssh://b1 from nix.conf:1", v, o)
	}
	if ws := c.Warnings(); len(ws) != 1 || !strings.Contains(ws[0], "nix.conf:2: extra-builders is ignored by Nix") {
		t.Errorf("Warnings = %q, want one about extra-builders", ws)
	}
}

func TestLoadSyntaxError(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "nix.conf"), "ok = 1\nbad\n")
	_, err := Load(envMap(map[string]string{"NIX_CONF_DIR": dir, "XDG_CONFIG_DIRS": dir}))
	if want := filepath.Join(dir, "nix.conf") + `:2: syntax error in configuration line "bad"`; err == nil || err.Error() != want {
		t.Errorf("Load error = %v, want %q", err, want)
	}
	_, err = Load(envMap(map[string]string{"NIX_CONF_DIR": dir + "/none", "XDG_CONFIG_DIRS": dir + "/none", "NIX_CONFIG": "x=1"}))
	if err == nil || !strings.HasPrefix(err.Error(), "NIX_CONFIG:1: syntax error") {
		t.Errorf("Load with bad NIX_CONFIG: error = %v", err)
	}
}

func TestList(t *testing.T) {
	c := &Conf{Entries: []Entry{
		{Key: "extra-substituters", Value: "x"},
		{Key: "substituters", Value: "a b"},
		{Key: "extra-substituters", Value: "c"},
	}}
	if got := c.List("substituters"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("List = %q, want [a b c]", got)
	}
}
