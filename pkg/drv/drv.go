// SPDX-License-Identifier: MIT

// Package drv parses Nix derivation files (.drv), which Nix writes in the
// ATerm syntax
//
//	Derive([outputs],[inputDrvs],[inputSrcs],"platform","builder",[args],[env])
//
// (Nix 2.8 src/libstore/derivations.cc parseDerivation; current
// src/libstore/derivation/aterm.cc derivation::parse). The build hook reads
// the .drv of the derivation it is asked to build and sends it to the
// builder as a BasicDerivation.
//
// Parsing is bounded: the input is capped at MaxSize bytes and the parser
// allocates in proportion to its input. Derivations in other formats, such
// as the DrvWithVersion(...) form written for dynamic derivations, are
// rejected with ErrUnsupported rather than guessed at.
package drv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSize is the largest .drv that Parse and ReadFile accept. Real
// derivations are kilobytes; structured attributes can make them a few
// megabytes.
const MaxSize = 64 << 20

// ErrUnsupported is returned for derivation files in a format other than
// plain Derive(...), such as DrvWithVersion("xp-dyn-drv",...).
var ErrUnsupported = errors.New("drv: unsupported derivation format")

// Derivation is a parsed .drv file. Lists keep the order of the file.
type Derivation struct {
	Outputs   []Output
	InputDrvs []InputDrv
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       []EnvVar
}

// Output is one output of a derivation. Path is empty for floating
// content-addressed and deferred outputs; HashAlgo and Hash are set for
// fixed-output derivations (Nix 2.8 src/libstore/derivations.cc,
// writeDerivation).
type Output struct {
	Name     string
	Path     string
	HashAlgo string
	Hash     string
}

// InputDrv is an input derivation and the outputs of it that are used.
type InputDrv struct {
	Path    string
	Outputs []string
}

// EnvVar is one entry of the builder's environment.
type EnvVar struct {
	Key   string
	Value string
}

// ReadFile reads and parses the derivation file name.
func ReadFile(name string) (*Derivation, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("drv: %w", err)
	}
	d, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, name)
	}
	return d, nil
}

// Name returns the derivation's name as Nix derives it from the path of its
// .drv file (Derivation::nameFromPath): the base name without the hash part
// and the ".drv" suffix. If drvPath does not look like a store path, it
// falls back to the "name" environment variable.
func (d *Derivation) Name(drvPath string) string {
	base := drvPath[strings.LastIndexByte(drvPath, '/')+1:]
	if i := strings.IndexByte(base, '-'); i >= 0 && strings.HasSuffix(base, ".drv") && len(base)-4 > i+1 {
		return base[i+1 : len(base)-4]
	}
	return d.Getenv("name")
}

// IsFloatingCA reports whether some output has no path in the .drv, as
// floating content-addressed (and deferred) outputs do. The paths of such
// outputs are only known after the build.
func (d *Derivation) IsFloatingCA() bool {
	for _, o := range d.Outputs {
		if o.Path == "" {
			return true
		}
	}
	return false
}

// IsFixedOutput reports whether the derivation is a fixed-output derivation:
// a single output named "out" with a hash given in advance.
func (d *Derivation) IsFixedOutput() bool {
	return len(d.Outputs) == 1 && d.Outputs[0].Name == "out" && d.Outputs[0].Hash != "" && d.Outputs[0].Hash != "impure"
}

// Getenv returns the value of the environment variable key, or "" if it is
// not set. (It cannot be called Env: that is the field.)
func (d *Derivation) Getenv(key string) string {
	for _, e := range d.Env {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}

// Parse parses the contents of a .drv file.
func Parse(b []byte) (*Derivation, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("drv: derivation of %d bytes is larger than %d", len(b), MaxSize)
	}
	p := &parser{b: b}
	d, err := p.derivation()
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			return nil, err
		}
		return nil, fmt.Errorf("drv: at byte %d: %w", p.pos, err)
	}
	return d, nil
}

type parser struct {
	b   []byte
	pos int
}

func (p *parser) derivation() (*Derivation, error) {
	if !p.lit("Derive(") {
		if p.lit("DrvWithVersion(") {
			return nil, fmt.Errorf("%w: DrvWithVersion (dynamic derivations)", ErrUnsupported)
		}
		return nil, fmt.Errorf("%w: does not start with %q", ErrUnsupported, "Derive(")
	}
	// Derive(outputs, inputDrvs, inputSrcs, platform, builder, args, env)
	// (Nix src/libstore/derivations.cc, parseDerivation).
	d := &Derivation{}
	err := p.fields(
		named("outputs", func() error {
			err := p.list(func() error {
				var o Output
				if err := p.tuple(p.strTo(&o.Name), p.strTo(&o.Path), p.strTo(&o.HashAlgo), p.strTo(&o.Hash)); err != nil {
					return err
				}
				if o.Path != "" && o.Path[0] != '/' {
					return fmt.Errorf("bad output path %q", o.Path)
				}
				d.Outputs = append(d.Outputs, o)
				return nil
			})
			if err == nil && len(d.Outputs) == 0 {
				return errors.New("derivation has no outputs")
			}
			return err
		}),
		named("input derivations", func() error {
			return p.list(func() error {
				var in InputDrv
				err := p.tuple(
					func() (err error) { in.Path, err = p.path(); return err },
					func() (err error) { in.Outputs, err = p.strs(false); return err })
				d.InputDrvs = append(d.InputDrvs, in)
				return err
			})
		}),
		named("input sources", func() (err error) { d.InputSrcs, err = p.strs(true); return err }),
		named("platform", p.strTo(&d.Platform)),
		named("builder", p.strTo(&d.Builder)),
		named("args", func() (err error) { d.Args, err = p.strs(false); return err }),
		named("env", func() error {
			return p.list(func() error {
				var e EnvVar
				err := p.tuple(p.strTo(&e.Key), p.strTo(&e.Value))
				d.Env = append(d.Env, e)
				return err
			})
		}),
	)
	if err != nil {
		return nil, err
	}
	if err := p.expect(')'); err != nil {
		return nil, err
	}
	if p.pos != len(p.b) {
		return nil, fmt.Errorf("%d bytes of trailing data", len(p.b)-p.pos)
	}
	return d, nil
}

// named prefixes the errors of field with the field's name.
func named(name string, field func() error) func() error {
	return func() error {
		if err := field(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
}

// fields parses field ("," field)*, calling each field in turn.
func (p *parser) fields(fields ...func() error) error {
	for i, f := range fields {
		if i > 0 {
			if err := p.expect(','); err != nil {
				return err
			}
		}
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// tuple parses "(" field ("," field)* ")".
func (p *parser) tuple(fields ...func() error) error {
	if err := p.expect('('); err != nil {
		return err
	}
	if err := p.fields(fields...); err != nil {
		return err
	}
	return p.expect(')')
}

// strTo returns a field that parses a string into dst.
func (p *parser) strTo(dst *string) func() error {
	return func() (err error) {
		*dst, err = p.str()
		return err
	}
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.pos >= len(s) && string(p.b[p.pos:p.pos+len(s)]) == s {
		p.pos += len(s)
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if p.pos >= len(p.b) {
		return fmt.Errorf("expected %q, got end of input", c)
	}
	if p.b[p.pos] != c {
		return fmt.Errorf("expected %q, got %q", c, p.b[p.pos])
	}
	p.pos++
	return nil
}

// list parses "[" [elem ("," elem)*] "]", calling elem for each element.
func (p *parser) list(elem func() error) error {
	if err := p.expect('['); err != nil {
		return err
	}
	if p.pos < len(p.b) && p.b[p.pos] == ']' {
		p.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if p.pos >= len(p.b) {
			return errors.New("unterminated list")
		}
		switch p.b[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return fmt.Errorf("expected ',' or ']', got %q", p.b[p.pos])
		}
	}
}

func (p *parser) strs(paths bool) ([]string, error) {
	var out []string
	err := p.list(func() error {
		var s string
		var err error
		if paths {
			s, err = p.path()
		} else {
			s, err = p.str()
		}
		out = append(out, s)
		return err
	})
	return out, err
}

func (p *parser) path() (string, error) {
	s, err := p.str()
	if err != nil {
		return "", err
	}
	if s == "" || s[0] != '/' {
		return "", fmt.Errorf("bad path %q", s)
	}
	return s, nil
}

// str parses a quoted string. The escapes are \n, \r and \t; any other
// backslashed character stands for itself (derivations.cc parseString).
func (p *parser) str() (string, error) {
	if err := p.expect('"'); err != nil {
		return "", err
	}
	start := p.pos
	// Fast path: no escapes.
	for i := start; i < len(p.b); i++ {
		switch p.b[i] {
		case '"':
			p.pos = i + 1
			return string(p.b[start:i]), nil
		case '\\':
			return p.escaped(start)
		}
	}
	return "", errors.New("unterminated string")
}

func (p *parser) escaped(start int) (string, error) {
	var sb strings.Builder
	for i := start; i < len(p.b); i++ {
		c := p.b[i]
		switch c {
		case '"':
			p.pos = i + 1
			return sb.String(), nil
		case '\\':
			i++
			if i >= len(p.b) {
				return "", errors.New("unterminated string")
			}
			switch c = p.b[i]; c {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			}
		}
		sb.WriteByte(c)
	}
	return "", errors.New("unterminated string")
}

// Format returns d in the ATerm syntax, byte for byte as Nix writes it
// (derivations.cc unparse), so that Format(Parse(b)) == b for every .drv
// Nix produces.
func (d *Derivation) Format() []byte {
	b := []byte("Derive(")
	b = appendList(b, d.Outputs, func(b []byte, o Output) []byte {
		return appendTuple(b, o.Name, o.Path, o.HashAlgo, o.Hash)
	})
	b = append(b, ',')
	b = appendList(b, d.InputDrvs, func(b []byte, in InputDrv) []byte {
		b = appendStr(append(b, '('), in.Path)
		return append(appendStrs(append(b, ','), in.Outputs), ')')
	})
	b = append(b, ',')
	b = appendStrs(b, d.InputSrcs)
	b = append(b, ',')
	b = appendStr(b, d.Platform)
	b = append(b, ',')
	b = appendStr(b, d.Builder)
	b = append(b, ',')
	b = appendStrs(b, d.Args)
	b = append(b, ',')
	b = appendList(b, d.Env, func(b []byte, e EnvVar) []byte {
		return appendTuple(b, e.Key, e.Value)
	})
	return append(b, ')')
}

// appendSeq appends left elem ("," elem)* right, elem appending each of
// xs: a list is "[…]" and a tuple "(…)".
func appendSeq[T any](b []byte, left, right byte, xs []T, elem func([]byte, T) []byte) []byte {
	b = append(b, left)
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, right)
}

func appendList[T any](b []byte, xs []T, elem func([]byte, T) []byte) []byte {
	return appendSeq(b, '[', ']', xs, elem)
}

func appendStrs(b []byte, ss []string) []byte { return appendList(b, ss, appendStr) }

func appendTuple(b []byte, ss ...string) []byte { return appendSeq(b, '(', ')', ss, appendStr) }

// appendStr quotes s as derivations.cc printString does.
func appendStr(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
