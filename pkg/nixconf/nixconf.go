// SPDX-License-Identifier: MIT

// Package nixconf reads Nix's configuration the way Nix reads it: nix.conf
// syntax ("key = value" lines, '#' comments, include and !include), the
// files Nix loads and their order, and the NIX_CONFIG environment
// variable. It answers where the builders setting comes from.
//
// Sources: NixOS/nix src/libutil/configuration.cc (parseConfigFiles;
// AbstractConfig::applyConfig in 2.8) for the syntax, and
// src/libstore/globals.cc (loadConfFile, nixUserConfFiles, and the
// NIX_REMOTE_SYSTEMS rule in Settings::Settings) for the files.
package nixconf

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Syntax rules (parseConfigFiles):
//
//   - A line is cut at its first '#' and split into words on runs of
//     " \t\n\r". No words: skipped.
//   - "include PATH" and "!include PATH" read PATH, relative to the
//     directory of the including file. A missing PATH is an error for
//     include and ignored for !include; a PATH that exists but cannot be
//     read is ignored.
//   - Otherwise the second word must be "=": "key=value" without spaces
//     is a syntax error. The value is the remaining words joined by single
//     spaces, so runs of whitespace inside a value collapse.
//   - "extra-KEY = …" appends to a list setting KEY; for a setting that is
//     not a list (builders is a plain string) Nix ignores it as unknown.

const (
	maxSize  = 16 << 20 // bytes read for one Load, includes counted
	maxDepth = 32       // include nesting; Nix itself has no limit
)

// Entry is one "key = value" line.
type Entry struct {
	Key, Value string
	File       string // the file, or "NIX_CONFIG"
	Line       int
}

// Origin is "file:line".
func (e Entry) Origin() string { return e.File + ":" + strconv.Itoa(e.Line) }

// Error is a syntax or include error at a place in a file.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Parse reads nix.conf syntax from r. name is the file's name: errors and
// entries carry it, and relative includes are read from its directory.
func Parse(r io.Reader, name string) ([]Entry, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("nixconf: reading %s: %w", name, err)
	}
	p := &parser{}
	if err := p.parse(data, name, 0); err != nil {
		return nil, err
	}
	return p.entries, nil
}

type parser struct {
	entries []Entry
	read    int
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

func (p *parser) parse(data []byte, name string, depth int) error {
	p.read += len(data)
	if p.read > maxSize {
		return fmt.Errorf("nixconf: %s: configuration exceeds %d bytes", name, maxSize)
	}
	lineNo := 0
	for rest := data; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		lineNo++
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		words := strings.FieldsFunc(string(line), isSpace)
		if len(words) == 0 {
			continue
		}
		fail := func(format string, args ...any) error {
			return &Error{File: name, Line: lineNo, Err: fmt.Errorf(format, args...)}
		}
		if len(words) < 2 || (words[1] != "=" && words[0] != "include" && words[0] != "!include") {
			if bytes.IndexByte(line, '=') >= 0 {
				return fail("syntax error in configuration line %q (want \"key = value\", with spaces around '=')", strings.TrimSpace(string(line)))
			}
			return fail("syntax error in configuration line %q", strings.TrimSpace(string(line)))
		}
		if words[0] == "include" || words[0] == "!include" {
			if len(words) != 2 {
				return fail("syntax error in configuration line %q", strings.TrimSpace(string(line)))
			}
			path := words[1]
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(name), path)
			}
			if depth >= maxDepth {
				return fail("includes nested more than %d deep", maxDepth)
			}
			if _, err := os.Stat(path); err != nil {
				if words[0] == "!include" {
					continue
				}
				return fail("file %s included from %s not found", path, name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				continue // Nix ignores a file it sees but cannot read
			}
			if err := p.parse(data, path, depth+1); err != nil {
				return err
			}
			continue
		}
		p.entries = append(p.entries, Entry{Key: words[0], Value: strings.Join(words[2:], " "), File: name, Line: lineNo})
	}
	return nil
}

// Conf is Nix's configuration: every entry from every file Nix reads, in
// the order Nix applies them, so a later entry wins.
type Conf struct {
	Entries []Entry
	// Files lists the configuration files Nix would read, in order,
	// whether or not they exist.
	Files []string
	// ConfDir is $NIX_CONF_DIR, or /etc/nix.
	ConfDir string
}

// ConfDir returns Nix's configuration directory: $NIX_CONF_DIR if set and
// not empty, else /etc/nix.
func ConfDir(env func(string) string) string {
	if d := env("NIX_CONF_DIR"); d != "" {
		return filepath.Clean(d)
	}
	return "/etc/nix"
}

// UserFiles returns the user configuration files in the order Nix applies
// them (nixUserConfFiles, read back to front by loadConfFile, so the first
// in the list wins): NIX_USER_CONF_FILES if set, else
// $XDG_CONFIG_DIRS/nix/nix.conf (default /etc/xdg) last to first, then
// $NIX_CONFIG_HOME/nix.conf or $XDG_CONFIG_HOME/nix/nix.conf (default
// ~/.config/nix/nix.conf). An empty variable counts as unset.
func UserFiles(env func(string) string) []string {
	var files []string
	if s := env("NIX_USER_CONF_FILES"); s != "" {
		for f := range strings.SplitSeq(s, ":") {
			if f != "" {
				files = append(files, f)
			}
		}
	} else {
		home := env("NIX_CONFIG_HOME")
		if home == "" {
			if x := env("XDG_CONFIG_HOME"); x != "" {
				home = filepath.Join(x, "nix")
			} else if h := env("HOME"); h != "" {
				home = filepath.Join(h, ".config", "nix")
			}
		}
		if home != "" {
			files = append(files, filepath.Join(home, "nix.conf"))
		}
		dirs := env("XDG_CONFIG_DIRS")
		if dirs == "" {
			dirs = "/etc/xdg"
		}
		for d := range strings.SplitSeq(dirs, ":") {
			if d != "" {
				files = append(files, filepath.Join(d, "nix", "nix.conf"))
			}
		}
	}
	// Applied back to front.
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	return files
}

// Load reads the configuration Nix would read, in Nix's order
// (loadConfFile in src/libstore/globals.cc): $NIX_CONF_DIR/nix.conf, then
// the user files (UserFiles), then the contents of $NIX_CONFIG. A file
// that is missing or unreadable is skipped, as Nix skips it; a syntax
// error or a missing include is an error.
func Load(env func(string) string) (*Conf, error) {
	c := &Conf{ConfDir: ConfDir(env)}
	c.Files = append([]string{filepath.Join(c.ConfDir, "nix.conf")}, UserFiles(env)...)
	p := &parser{}
	for _, f := range c.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // applyConfigFile catches every SystemError
		}
		if err := p.parse(data, f, 0); err != nil {
			return nil, err
		}
	}
	if s := env("NIX_CONFIG"); s != "" {
		if err := p.parse([]byte(s), "NIX_CONFIG", 0); err != nil {
			return nil, err
		}
	}
	c.Entries = p.entries
	return c, nil
}

// Get returns the value of the last "key = …" entry and its origin.
// extra-key entries are not counted: see List.
func (c *Conf) Get(key string) (value, origin string, ok bool) {
	for i := len(c.Entries) - 1; i >= 0; i-- {
		if e := c.Entries[i]; e.Key == key {
			return e.Value, e.Origin(), true
		}
	}
	return "", "", false
}

// List returns a list setting as Nix builds it: the words of the last
// "key = …" entry followed by those of every later "extra-key = …" entry.
func (c *Conf) List(key string) []string {
	var words []string
	for _, e := range c.Entries {
		switch e.Key {
		case key:
			words = strings.Fields(e.Value)
		case "extra-" + key:
			words = append(words, strings.Fields(e.Value)...)
		}
	}
	return words
}

// Builders returns Nix's builders setting and where it came from. Its
// default is "@$NIX_CONF_DIR/machines" (origin "default"); when
// NIX_REMOTE_SYSTEMS is set, Settings::Settings replaces that default with
// one "@file" line per colon-separated file (origin "env
// NIX_REMOTE_SYSTEMS"; Nix 2.8 joined them with spaces, which only works
// for one file); a builders entry in the configuration wins over both.
func (c *Conf) Builders(env func(string) string) (value, origin string) {
	if v, o, ok := c.Get("builders"); ok {
		return v, o
	}
	if s := env("NIX_REMOTE_SYSTEMS"); s != "" {
		var lines []string
		for f := range strings.SplitSeq(s, ":") {
			if f != "" {
				lines = append(lines, "@"+f)
			}
		}
		return strings.Join(lines, "\n"), "env NIX_REMOTE_SYSTEMS"
	}
	dir := c.ConfDir
	if dir == "" {
		dir = ConfDir(env)
	}
	return "@" + filepath.Join(dir, "machines"), "default"
}

// Warnings lists entries that look meaningful but that Nix ignores; today
// extra-builders, since builders is not a list setting.
func (c *Conf) Warnings() []string {
	var ws []string
	for _, e := range c.Entries {
		if e.Key == "extra-builders" {
			ws = append(ws, e.Origin()+": extra-builders is ignored by Nix (builders is not a list setting); add the machines to builders or to the machines file")
		}
	}
	return ws
}
