// SPDX-License-Identifier: MIT

package spec

// Rules, from Nix's src/libstore/machines.cc (current: expandBuilderLines,
// parseBuilderLine, Machine::Machine; 2.8: the same names):
//
//   - The setting is split on "\n". Each line loses everything from its
//     first '#', then is split on ';'. Each piece is trimmed of " \t\n\r"
//     and skipped if empty. (2.8 split on "\n;" before removing comments;
//     we warn where that reads differently.)
//   - A piece starting with '@' names a file whose contents are expanded
//     the same way, recursively. A missing file is empty. Nix has no cycle
//     check (it recurses until the stack overflows); we report the cycle.
//   - Every other piece is one machine: fields split on runs of " \t\n\r"
//     (not other whitespace); "-" or absence means the default; fields past
//     the eighth are ignored.
//   - A URI without "://" or '/' that is not auto, daemon, local or one of
//     those followed by '?' (or starting with '?') gets "ssh://" in front.
//   - Field 3 and field 8 win over ?ssh-key= and
//     ?base64-ssh-public-host-key= in the URI (completeStoreReference).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	gossh "golang.org/x/crypto/ssh"
)

const (
	// maxInput caps the bytes read for one setting, includes counted.
	maxInput = 16 << 20
	// maxIncludeDepth caps '@' nesting; cycles are caught before it.
	maxIncludeDepth = 32
	// maxMaxJobs is the largest max jobs accepted. Nix takes any unsigned
	// int; an int on 32-bit boards stops at this.
	maxMaxJobs = math.MaxInt32
)

// Options control ParseBuilders and Parse.
type Options struct {
	// LocalSystem is the system of a machine whose line names none
	// (Nix's `system` setting). Empty means the system offload was built
	// for, as LocalSystem reports it.
	LocalSystem string
	// ReadFile reads '@' includes. Nil means os.ReadFile. A missing file
	// (an error matching fs.ErrNotExist) is empty, as in Nix.
	ReadFile func(name string) ([]byte, error)
	// Lenient skips a bad line with a Warning naming file:line instead of
	// failing. Hook mode uses it, so one typo does not stop every build.
	Lenient bool
	// Name is what an inline setting is called in Source and errors
	// ("builders" if empty): a machine on its second line is "builders:2".
	Name string
}

// Warning is something a human should know about a machines file that is
// not an error to current Nix.
type Warning struct {
	// Source is "file:line" (or "builders:N").
	Source string
	Msg    string
	// OlderNix is true for a line offload reads as current Nix does but
	// that Nix's own build-remote of an older version reads differently.
	// It matters where build-remote may read the file (Nix without
	// offload, another machine), not to offload's own hook.
	OlderNix bool
}

func (w Warning) String() string { return w.Source + ": " + w.Msg }

// ParseError is a located error in a machines file or builders setting.
type ParseError struct {
	File string // file name, or Options.Name for an inline setting
	Line int    // 1-based line number
	// Field names the column ("max jobs", "store URI", …) or is "include";
	// empty when the error concerns the whole line.
	Field string
	// Value is the text of the field, shown quoted after Field.
	Value string
	Err   error
}

func (e *ParseError) Error() string {
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.msg()
}

// msg is the error without its location.
func (e *ParseError) msg() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Value != "" {
			v := e.Value
			if len(v) > 60 {
				v = v[:57] + "..."
			}
			b.WriteByte(' ')
			b.WriteString(strconv.QuoteToASCII(v))
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ErrIncludeCycle is wrapped by the ParseError for an '@' include that
// includes itself, directly or not.
var ErrIncludeCycle = errors.New("include cycle")

// ErrTooLarge is returned when a setting and its includes exceed 16 MiB.
var ErrTooLarge = errors.New("spec: builders setting and its includes exceed 16 MiB")

// ParseBuilders expands Nix's builders setting (newline- or
// ';'-separated machines, '#' comments, '@FILE' includes) and parses
// every machine in it, as current Nix does. Warnings name what older Nix
// (2.8) reads differently. Machines come back in the order Nix lists them.
func ParseBuilders(setting string, o Options) ([]Machine, []Warning, error) {
	name := o.Name
	if name == "" {
		name = "builders"
	}
	p := newParser(o)
	if len(setting) > maxInput {
		return nil, nil, ErrTooLarge
	}
	p.read = int64(len(setting))
	err := p.expand(setting, name)
	return p.ms, p.ws, err
}

// Parse reads one machines file from r and parses it as ParseBuilders
// parses the setting "@name": sources are "name:line", and '@' lines in
// it include further files.
func Parse(r io.Reader, name string, o Options) ([]Machine, []Warning, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, nil, fmt.Errorf("spec: reading %s: %w", name, err)
	}
	if len(data) > maxInput {
		return nil, nil, ErrTooLarge
	}
	p := newParser(o)
	p.read = int64(len(data))
	p.chain = append(p.chain, filepath.Clean(name))
	err = p.expand(string(data), name)
	return p.ms, p.ws, err
}

type parser struct {
	o     Options
	read  int64
	chain []string // include chain, outermost first
	ms    []Machine
	ws    []Warning
	buf   []byte // scratch for Source strings
	// lists interns parsed comma lists: a site's machines repeat the same
	// systems and features on every line.
	lists map[string][]string
	local []string // the default systems list
}

// list parses a comma list through the intern table. Machines from one
// parse may share a list's backing array, so lists are read-only.
func (p *parser) list(s string) []string {
	if l, ok := p.lists[s]; ok {
		return l
	}
	l := splitList(s)
	if p.lists == nil {
		p.lists = make(map[string][]string)
	}
	if len(p.lists) < 256 {
		p.lists[s] = l
	}
	return l
}

func newParser(o Options) *parser {
	if o.LocalSystem == "" {
		o.LocalSystem = LocalSystem()
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	return &parser{o: o}
}

// Kinds of per-file warnings that are reported once per file, with a count,
// so that a CRLF file does not warn on every blank line.
const (
	kindSemicolonComment = iota
	kindBlankPiece
	kindIndentedInclude
	numKinds
)

var kindMsgs = [numKinds]string{
	kindSemicolonComment: "a ';' inside a '#' comment starts a new machine on Nix before 2.28.2 (e.g. 2.8), which then reads the rest of the comment as a builder",
	kindBlankPiece:       "a line or ';'-piece holding only whitespace (an indented comment, a trailing \"; \", a CRLF blank line) fails every build on Nix before 2.28.2 (e.g. 2.8) with \"store URL was not found\"",
	kindIndentedInclude:  "an '@' include after leading whitespace is read as a machine named \"@…\" by Nix before 2.28.2 (e.g. 2.8)",
}

func (p *parser) expand(text, name string) error {
	// Each kind is reported at its first place, with a count of the others.
	var at, count [numKinds]int
	note := func(kind int, line int) {
		if count[kind] == 0 {
			at[kind] = len(p.ws)
			p.ws = append(p.ws, Warning{Source: p.source(name, line), Msg: kindMsgs[kind], OlderNix: true})
		}
		count[kind]++
	}
	defer func() {
		for k, n := range count {
			if n > 1 {
				p.ws[at[k]].Msg += fmt.Sprintf(" (%d places in %s)", n, name)
			}
		}
	}()
	if p.ms == nil {
		p.ms = make([]Machine, 0, min(strings.Count(text, "\n")+1, 4096))
	}
	lineNo := 0
	for rest := text; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		lineNo++
		code := line
		if i := strings.IndexByte(line, '#'); i >= 0 {
			code = line[:i]
			if strings.IndexByte(line[i:], ';') >= 0 {
				note(kindSemicolonComment, lineNo)
			}
		}
		check28(line, func(kind int) { note(kind, lineNo) })
		for piece := range strings.SplitSeq(code, ";") {
			e := trim(piece)
			if e == "" {
				continue
			}
			if e[0] == '@' {
				if err := p.include(trim(e[1:]), name, lineNo); err != nil {
					return err
				}
				continue
			}
			m, err := p.parseMachine(e, name, lineNo)
			if err != nil {
				if p.o.Lenient {
					p.ws = append(p.ws, Warning{Source: p.source(name, lineNo), Msg: trimLoc(err) + "; line skipped"})
					continue
				}
				return err
			}
			p.ms = append(p.ms, m)
		}
	}
	return nil
}

// trimLoc returns err's text without its location, for a warning whose
// Source already says where.
func trimLoc(err error) string {
	if pe, ok := err.(*ParseError); ok {
		return pe.msg()
	}
	return err.Error()
}

// check28 reports how Nix before 2.28.2 reads line: it split the whole
// setting on "\n" and ';' first, then cut each piece at '#' without
// trimming it (Nix 2.8 src/libstore/machines.cc, expandBuilderLines).
func check28(line string, note func(kind int)) {
	for piece := range strings.SplitSeq(line, ";") {
		if piece == "" {
			continue // 2.8's tokenizeString drops empty pieces
		}
		q := piece
		if i := strings.IndexByte(q, '#'); i >= 0 {
			q = q[:i]
		}
		if q == "" {
			continue
		}
		t := trim(q)
		switch {
		case t == "":
			note(kindBlankPiece)
		case t[0] == '@' && q[0] != '@':
			note(kindIndentedInclude)
		}
	}
}

func (p *parser) include(path, from string, line int) error {
	fail := func(err error) error {
		pe := &ParseError{File: from, Line: line, Field: "include", Value: path, Err: err}
		if p.o.Lenient && !errors.Is(err, ErrTooLarge) {
			p.ws = append(p.ws, Warning{Source: p.source(from, line), Msg: trimLoc(pe) + "; include skipped"})
			return nil
		}
		return pe
	}
	clean := filepath.Clean(path)
	if i := slices.Index(p.chain, clean); i >= 0 {
		chain := append(slices.Clone(p.chain[i:]), clean)
		return fail(fmt.Errorf("%w: %s", ErrIncludeCycle, strings.Join(chain, " -> ")))
	}
	if len(p.chain) >= maxIncludeDepth {
		return fail(fmt.Errorf("includes nested more than %d deep", maxIncludeDepth))
	}
	data, err := p.o.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // Nix: "cannot find machines file", at debug level
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fail(err)
	}
	p.read += int64(len(data))
	if p.read > maxInput {
		return ErrTooLarge
	}
	p.chain = append(p.chain, clean)
	err = p.expand(string(data), path)
	p.chain = p.chain[:len(p.chain)-1]
	return err
}

func (p *parser) source(name string, line int) string {
	p.buf = append(p.buf[:0], name...)
	p.buf = append(p.buf, ':')
	p.buf = strconv.AppendInt(p.buf, int64(line), 10)
	return string(p.buf)
}

// isSpace is Nix's default tokenizeString separator set, " \t\n\r".
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trim(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	for s != "" && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// Field names, as errors show them.
var fieldNames = [8]string{"store URI", "systems", "SSH key", "max jobs", "speed factor", "supported features", "mandatory features", "host key"}

func (p *parser) parseMachine(line, file string, lineNo int) (Machine, error) {
	var tok [8]string
	n := 0
	for rest := line; n < len(tok); {
		for rest != "" && isSpace(rest[0]) {
			rest = rest[1:]
		}
		if rest == "" {
			break
		}
		i := 0
		for i < len(rest) && !isSpace(rest[i]) {
			i++
		}
		tok[n] = rest[:i]
		rest = rest[i:]
		n++
	}
	fail := func(field int, err error) (Machine, error) {
		pe := &ParseError{File: file, Line: lineNo, Err: err}
		if field >= 0 {
			pe.Field, pe.Value = fieldNames[field], tok[field]
		}
		return Machine{}, pe
	}
	set := func(i int) bool { return i < n && tok[i] != "-" }
	for i := range n {
		if err := checkText(tok[i]); err != nil {
			return fail(i, err)
		}
	}
	if !set(0) {
		return fail(-1, errors.New("no store URI in the first column"))
	}
	m := Machine{MaxJobs: 1, SpeedFactor: 1}
	portSet, err := m.setURI(tok[0])
	if err != nil {
		return fail(0, err)
	}
	src := p.source(file, lineNo)
	m.Source = src
	if portSet {
		p.ws = append(p.ws, Warning{Source: src, Msg: fmt.Sprintf("%s: Nix before 2.31 (e.g. 2.8) cannot take a port in the URI and runs ssh with %q as the host name; for older Nix use a Host alias with Port in root's ssh_config", m.URI, hostPort(m)), OlderNix: true})
	}
	if set(1) {
		m.Systems = p.list(tok[1])
	} else {
		if p.local == nil {
			p.local = []string{p.o.LocalSystem}
		}
		m.Systems = p.local
	}
	ssh := m.Scheme == "ssh" || m.Scheme == "ssh-ng"
	if set(2) {
		m.SSHKey = tok[2]
	} else if v, ok := m.Params["ssh-key"]; ok && ssh {
		m.SSHKey = v
	}
	if set(3) {
		j, err := parseWhole(tok[3])
		if err != nil {
			return fail(3, err)
		}
		m.MaxJobs = j
	}
	if set(4) {
		f, whole, err := parseSpeed(tok[4])
		if err != nil {
			return fail(4, err)
		}
		m.SpeedFactor = f
		if !whole {
			p.ws = append(p.ws, Warning{Source: src, Msg: fmt.Sprintf("speed factor %q is not a whole number: Nix before 2.20 (e.g. 2.8) rejects the line, and that fails every build", tok[4]), OlderNix: true})
		}
	}
	if set(5) {
		m.SupportedFeatures = p.list(tok[5])
	}
	if set(6) {
		m.MandatoryFeatures = p.list(tok[6])
	}
	if set(7) {
		if err := checkHostKey(tok[7]); err != nil {
			return fail(7, err)
		}
		m.PublicHostKey = tok[7]
	} else if v, ok := m.Params["base64-ssh-public-host-key"]; ok && ssh {
		if err := checkHostKey(v); err != nil {
			return Machine{}, &ParseError{File: file, Line: lineNo, Field: "base64-ssh-public-host-key", Value: v, Err: err}
		}
		m.PublicHostKey = v
	}
	return m, nil
}

// checkText rejects bytes no machine field can sensibly hold: invalid
// UTF-8 and control characters. Current Nix's URL parser rejects them in
// the URI too.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

func hostPort(m Machine) string {
	h := m.Host
	if strings.IndexByte(h, ':') >= 0 {
		h = "[" + h + "]"
	}
	if m.User != "" {
		h = m.User + "@" + h
	}
	return h + ":" + strconv.Itoa(m.Port)
}

// needsSSH reports whether Nix prepends "ssh://" to a store URI
// (Machine::Machine, both 2.8 and current).
func needsSSH(s string) bool {
	switch {
	case strings.Contains(s, "://"), strings.IndexByte(s, '/') >= 0,
		s == "auto", s == "daemon", s == "local",
		strings.HasPrefix(s, "auto?"), strings.HasPrefix(s, "daemon?"),
		strings.HasPrefix(s, "local?"), strings.HasPrefix(s, "?"):
		return false
	}
	return true
}

// setURI fills URI, Scheme, User, Host, Port, Name and Params from a
// machines-file store URI. It reports whether the URI names a port.
func (m *Machine) setURI(s string) (port bool, err error) {
	if needsSSH(s) {
		s = "ssh://" + s
	}
	base, query, hasQuery := strings.Cut(s, "?")
	if hasQuery {
		if m.Params, err = parseQuery(query); err != nil {
			return false, err
		}
	}
	scheme, auth, ok := strings.Cut(base, "://")
	if !ok || (scheme != "ssh" && scheme != "ssh-ng") {
		// A local store ("/path", "local?root=…", "auto", "daemon") or
		// another store type. Its parameters (root=…) say which store it
		// is, so they stay in the URI.
		if ok {
			m.Scheme = scheme
		}
		m.URI, m.Name = s, s
		return false, nil
	}
	m.Scheme = scheme
	if i := strings.IndexByte(auth, '/'); i >= 0 {
		return false, errors.New("unexpected path after the host")
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		m.User, auth = auth[:i], auth[i+1:]
		if m.User == "" {
			return false, errors.New("empty user name before '@'")
		}
		if m.User[0] == '-' {
			return false, errors.New("user name starts with '-'")
		}
	}
	hostPart, portPart, hasPort := auth, "", false
	if strings.HasPrefix(auth, "[") {
		end := strings.IndexByte(auth, ']')
		if end < 0 {
			return false, errors.New("missing ']' after IPv6 address")
		}
		hostPart = auth[1:end]
		if strings.IndexByte(hostPart, ':') < 0 {
			return false, errors.New("brackets around a host that is not an IPv6 address")
		}
		switch after := auth[end+1:]; {
		case after == "":
		case after[0] == ':':
			portPart, hasPort = after[1:], true
		default:
			return false, errors.New("unexpected text after ']'")
		}
	} else if i := strings.IndexByte(auth, ':'); i >= 0 {
		hostPart, portPart, hasPort = auth[:i], auth[i+1:], true
	}
	if hostPart == "" {
		return false, errors.New("no host name")
	}
	if hostPart[0] == '-' {
		return false, errors.New("host name starts with '-'")
	}
	if strings.ContainsAny(hostPart, "[]@") {
		return false, errors.New("bad host name")
	}
	m.Host, m.Name = hostPart, hostPart
	if hasPort {
		n, err := strconv.ParseUint(portPart, 10, 16)
		if err != nil || n == 0 || portPart[0] == '+' {
			return false, fmt.Errorf("bad port %q", portPart)
		}
		m.Port = int(n)
	}
	if hasPort && strconv.Itoa(m.Port) != portPart {
		m.URI = machineURI(m.Scheme, m.User, m.Host, m.Port)
	} else {
		m.URI = base // already in normal form; saves an allocation
	}
	return hasPort, nil
}

func machineURI(scheme, user, host string, port int) string {
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(user) + 1 + len(host) + 8)
	b.WriteString(scheme)
	b.WriteString("://")
	if user != "" {
		b.WriteString(user)
		b.WriteByte('@')
	}
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	return b.String()
}

// parseQuery decodes a store URI's query as Nix's decodeQuery does: '&'
// separates parameters, each percent-decoded; one without '=' is ignored;
// the first of several with the same name wins.
func parseQuery(q string) (map[string]string, error) {
	params := make(map[string]string)
	for item := range strings.SplitSeq(q, "&") {
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			continue // Nix: "dubious URI query … is missing equal sign", ignored
		}
		k, err := unescape(k)
		if err != nil {
			return nil, err
		}
		v, err = unescape(v)
		if err != nil {
			return nil, err
		}
		if _, dup := params[k]; !dup {
			params[k] = v
		}
	}
	if len(params) == 0 {
		return nil, nil
	}
	return params, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape %q in query", s[i:])
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad escape %q in query", s[i:i+3])
		}
		b = append(b, h<<4|l)
		i += 2
	}
	if err := checkText(string(b)); err != nil {
		return "", fmt.Errorf("query parameter %w", err)
	}
	return string(b), nil
}

// splitList splits a comma list into a sorted set, dropping empty items,
// as Nix's tokenizeString<StringSet>(s, ",") does. It returns nil for
// an empty set.
func splitList(s string) []string {
	n := strings.Count(s, ",") + 1
	out := make([]string, 0, n)
	for item := range strings.SplitSeq(s, ",") {
		if item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return nil
	}
	if len(out) > 1 {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out
}

// parseWhole parses max jobs like Nix's string2Int<unsigned int>: an
// optional '+', then decimal digits.
func parseWhole(s string) (int, error) {
	t := strings.TrimPrefix(s, "+")
	if t == "" {
		return 0, errors.New("not a whole number")
	}
	n := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c < '0' || c > '9' {
			return 0, errors.New("not a whole number")
		}
		n = n*10 + int(c-'0')
		if n > maxMaxJobs {
			return 0, errors.New("too large")
		}
	}
	return n, nil
}

// parseSpeed parses a speed factor like current Nix's string2Float<float>
// (decimals allowed, negative rejected, 0 means 1). whole reports whether
// Nix 2.8, which wanted an unsigned int, would have accepted it.
func parseSpeed(s string) (f float64, whole bool, err error) {
	t := s
	if t != "" && (t[0] == '+' || t[0] == '-') {
		t = t[1:]
	}
	if t == "" || !(t[0] >= '0' && t[0] <= '9' || t[0] == '.') || strings.ContainsAny(t, "_xXpP") {
		return 0, false, errors.New("not a number")
	}
	if _, err := strconv.ParseFloat(s, 32); err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, false, errors.New("out of range")
		}
		return 0, false, errors.New("not a number")
	}
	f, _ = strconv.ParseFloat(s, 64)
	if f < 0 {
		return 0, false, errors.New("must be >= 0")
	}
	whole = s[0] != '-' && strings.Trim(strings.TrimPrefix(s, "+"), "0123456789") == ""
	if f == 0 {
		f = 1
	}
	return f, whole, nil
}

// checkHostKey checks field 8: Nix only requires it to be base64; offload
// also requires it to decode to an SSH public key line, since anything
// else makes every connection fail host-key checking.
func checkHostKey(s string) error {
	raw, err := nixBase64Decode(s)
	if err != nil {
		return fmt.Errorf("not valid base64: %w", err)
	}
	_, _, _, rest, err := gossh.ParseAuthorizedKey(raw)
	if err != nil {
		if _, err2 := gossh.ParsePublicKey(raw); err2 == nil {
			return errors.New("this is the key's own base64 blob; field 8 is the base64 of the whole public key line (base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub)")
		}
		return errors.New("does not decode to an SSH public key line such as \"ssh-ed25519 AAAA… root@host\" (get it with base64 -w0 /etc/ssh/ssh_host_ed25519_key.pub)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("decodes to more than one line; give one public key")
	}
	return nil
}

// LocalSystem returns the Nix system type offload was built for, e.g.
// "x86_64-linux", "aarch64-linux", "armv7l-linux" or "riscv64-linux".
func LocalSystem() string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	case "386":
		arch = "i686"
	case "arm":
		arch = "armv7l"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && strings.HasPrefix(s.Value, "6") {
					arch = "armv6l"
				}
			}
		}
	case "ppc64le":
		arch = "powerpc64le"
	}
	return arch + "-" + runtime.GOOS
}
