// SPDX-License-Identifier: MIT

// Command emulation is the CPU-bound workload of bench/emulation.sh, which
// runs it natively and under qemu-user to measure the emulation penalty (the
// emulation-penalty setting).
//
// It does a fixed, deterministic amount of work of the kind a build step
// does: it generates semi-compressible text (words, numbers and
// punctuation from a seeded generator), compresses it with compress/flate
// at level 6, hashes the compressed bytes with SHA-256, runs a tight
// integer loop, and parses, type-checks and prints generated Go source with
// go/parser, go/types and go/format (branchy code with a large footprint,
// like a compiler's). It then prints one line:
//
//	work <s> gen <s> flate <s> sha256 <s> loop <s> compile <s> checksum <hex>
//
// The times are wall times measured inside the program, so process start-up
// (and the emulator's own start-up) is not counted. The checksum covers the
// compressed bytes and the loop's result, so runs on every architecture can
// be checked to have done the same work.
package main

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"strconv"
	"time"
)

func main() {
	mib := flag.Int("mib", 32, "MiB of text to generate and compress")
	loops := flag.Int("loop", 100_000_000, "iterations of the integer loop")
	funcs := flag.Int("funcs", 2000, "functions of Go source to parse, type-check and print")
	flag.Parse()
	if *mib <= 0 || *loops < 0 || *funcs < 0 {
		fmt.Fprintln(os.Stderr, "emulation: -mib must be positive, -loop and -funcs not negative")
		os.Exit(2)
	}

	start := time.Now()
	text := generate(*mib << 20)
	tGen := time.Now()

	var buf bytes.Buffer
	buf.Grow(len(text) / 3)
	zw, err := flate.NewWriter(&buf, 6)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulation:", err)
		os.Exit(1)
	}
	if _, err := zw.Write(text); err != nil {
		fmt.Fprintln(os.Stderr, "emulation:", err)
		os.Exit(1)
	}
	if err := zw.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "emulation:", err)
		os.Exit(1)
	}
	tFlate := time.Now()

	sum := sha256.Sum256(buf.Bytes())
	tSum := time.Now()

	acc := loop(uint64(*loops))
	tLoop := time.Now()

	printed, err := compile(*funcs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "emulation:", err)
		os.Exit(1)
	}
	end := time.Now()

	h := sha256.New()
	h.Write(sum[:])
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], acc)
	h.Write(b[:])
	binary.LittleEndian.PutUint64(b[:], uint64(buf.Len()))
	h.Write(b[:])
	h.Write(printed)

	fmt.Printf("work %.4f gen %.4f flate %.4f sha256 %.4f loop %.4f compile %.4f checksum %x\n",
		end.Sub(start).Seconds(),
		tGen.Sub(start).Seconds(),
		tFlate.Sub(tGen).Seconds(),
		tSum.Sub(tFlate).Seconds(),
		tLoop.Sub(tSum).Seconds(),
		end.Sub(tLoop).Seconds(),
		h.Sum(nil)[:16])
}

// words is the vocabulary of the generated text: identifiers and keywords of
// the kind found in source code and build logs.
var words = []string{
	"the", "build", "derivation", "output", "store", "path", "nix", "gcc",
	"-O2", "-Wall", "include", "static", "const", "return", "if", "else",
	"for", "while", "struct", "int", "char", "void", "unsigned", "long",
	"make[1]:", "Entering", "directory", "checking", "whether", "works...",
	"yes", "no", "configure:", "CC", "LD", "AR", "libfoo.a", "main.o",
	"error", "warning:", "note:", "in", "function", "of", "to", "and",
}

// generate returns n bytes of text from a fixed-seed generator: lines of
// words with numbers and hex strings mixed in, compressing to roughly a
// third of its size at flate level 6.
func generate(n int) []byte {
	out := make([]byte, 0, n+64)
	x := uint64(0x9E3779B97F4A7C15)
	col := 0
	for len(out) < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		switch r := x % 16; {
		case r < 11:
			out = append(out, words[(x>>8)%uint64(len(words))]...)
		case r < 14:
			out = strconv.AppendUint(out, (x>>8)%100000, 10)
		default:
			out = strconv.AppendUint(out, (x>>8)&0xffffffff, 16)
		}
		col++
		if col == 12 || (x>>40)%11 == 0 {
			out = append(out, '\n')
			col = 0
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

// loop runs n rounds of a multiply, shift, xor and data-dependent branch, the
// integer work of a compiler's or linker's inner loops.
func loop(n uint64) uint64 {
	var acc, x uint64 = 0, 88172645463325252
	for i := uint64(0); i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		if x&1 == 0 {
			acc += x >> 3
		} else {
			acc ^= x * 0x2545F4914F6CDD1D
		}
	}
	return acc
}

// compile generates a Go file of n small functions, parses it, type-checks
// it and prints it back, and returns the printed source.
func compile(n int) ([]byte, error) {
	var src bytes.Buffer
	src.WriteString("package gen\n\ntype pair struct{ a, b int }\n\n")
	for k := 0; k < n; k++ {
		fmt.Fprintf(&src, `func f%d(a, b int, p *pair, s []int) (int, error) {
x := a*%d + b
if x > %d { x -= p.a } else { x += p.b }
for i := 0; i < len(s) && i < %d; i++ { x ^= s[i] << uint(i%%7) }
switch x %% 3 { case 0: p.a = x; case 1: p.b = -x; default: s = append(s, x) }
m := map[string]int{"k": x, "v": len(s)}
return x + m["k"] - m["v"], nil
}

`, k, k%97+1, k*3, k%5+1)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "gen.go", src.Bytes(), parser.ParseComments)
	if err != nil {
		return nil, err
	}
	info := &types.Info{Types: make(map[ast.Expr]types.TypeAndValue), Defs: make(map[*ast.Ident]types.Object)}
	if _, err := (&types.Config{}).Check("gen", fset, []*ast.File{f}, info); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := format.Node(&out, fset, f); err != nil {
		return nil, err
	}
	fmt.Fprintf(&out, "// %d types, %d defs\n", len(info.Types), len(info.Defs))
	return out.Bytes(), nil
}
