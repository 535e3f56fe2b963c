// SPDX-License-Identifier: MIT

// Command fakebuilder is a hostile `nix-store --serve --write`, or with
// --stdio a hostile `nix-daemon --stdio`, for the end-to-end tests
// (internal/e2e/hostile_test.go): the test runs it as a builder's
// remote-program behind a real sshd, for ssh:// and ssh-ng:// builders. It
// answers the serve or daemon protocol's handshake and commands well
// enough for the hook to accept and build, and then misbehaves in the way
// -scenario names:
//
//	good          a well-formed output (a file "fake output\n")
//	huge-string   a path length of 2⁶² in the QueryPathInfos reply
//	huge-list     a reference list of 2⁴⁰ entries
//	dotdot        a NAR with an entry named ".."
//	slash         a NAR with an entry named "a/b"
//	symlink       a NAR with a symlink "a" to -target, then a directory
//	              "a" holding a file "x" (written through the link if
//	              the unpacker followed it)
//	root-symlink  the output itself a symlink to -target
//	bad-hash      a NAR whose hash differs from the path info's
//	other-path    path info for another path than the one asked for
//	extra-path    path info for the asked path and one more
//	missing-ref   a reference to a path the client's store lacks
//	short-nar     a narSize larger than the NAR sent, then silence
//	stall-nar     a NAR that stops in the middle of the file, then
//	              silence (the unpacker cannot see an end)
//	silent-build  no build log and no build result, ever
//	endless-log   a build log that never ends, and no build result
//
// other-path and extra-path are serve protocol cases only: the daemon's
// path info does not name its path. With --serve it writes what it
// received to stderr only in the endless-log scenario, where stderr is the
// build log; with --stdio the log goes inside the protocol.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/offload-nix/offload/pkg/wire"
)

const (
	magic1  = 0x390c9deb
	magic2  = 0x5452eecb
	version = 0x207
)

func main() {
	scenario := flag.String("scenario", "good", "how to misbehave")
	target := flag.String("target", "/tmp", "where symlinks point")
	flag.Bool("serve", false, "ignored (nix-store --serve)")
	flag.Bool("write", false, "ignored (nix-store --serve --write)")
	stdio := flag.Bool("stdio", false, "speak the daemon protocol (nix-daemon --stdio)")
	flag.Parse()
	run := serve
	if *stdio {
		run = daemon
	}
	if err := run(*scenario, *target); err != nil && err != io.EOF {
		fmt.Fprintf(os.Stderr, "fakebuilder: %v\n", err)
		os.Exit(1)
	}
}

func serve(scenario, target string) error {
	r := wire.NewReader(bufio.NewReader(os.Stdin))
	w := wire.NewWriter(os.Stdout)
	if err := hello(r, w, magic1, magic2, version); err != nil {
		return err
	}
	for {
		cmd, err := r.Uint64()
		if err != nil {
			return err
		}
		switch cmd {
		case 1: // QueryValidPaths: everything is valid here but the outputs to build
			r.Bool()
			r.Bool()
			paths, err := r.Strings()
			if err != nil {
				return err
			}
			w.Strings(valid(paths))
		case 8: // BuildDerivation
			if err := readBuild(r); err != nil {
				return err
			}
			switch scenario {
			case "endless-log":
				line := strings.Repeat("the log goes on and on ", 3) + "\n"
				for {
					if _, err := os.Stderr.WriteString(line); err != nil {
						return err
					}
				}
			case "silent-build":
				return hangUp(w)
			}
			built(w)
		case 2: // QueryPathInfos
			paths, err := r.Strings()
			if err != nil {
				return err
			}
			if err := pathInfos(w, scenario, target, paths); err != nil {
				return err
			}
		case 3: // DumpStorePath
			p, err := r.String()
			if err != nil {
				return err
			}
			if done, err := sendNar(w, scenario, target, p); done {
				return err
			}
		default:
			return fmt.Errorf("command %d not supported", cmd)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// sendNar sends the NAR of p as the scenario has it; done says the
// session is over (the rest never comes).
func sendNar(w *wire.Writer, scenario, target, p string) (done bool, err error) {
	nar := narFor(scenario, target, p)
	switch scenario {
	case "short-nar":
		w.Raw(nar)
	case "stall-nar":
		w.Raw(nar[:len(nar)-16])
	default:
		w.Raw(nar)
		return false, nil
	}
	return true, hangUp(w)
}

// hangUp flushes w and then sends nothing more: it waits for the client
// to hang up, while the builder's sshd goes on answering keepalives.
func hangUp(w *wire.Writer) error {
	w.Flush()
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// readBuild reads a BuildDerivation request at protocol 2.7.
func readBuild(r *wire.Reader) error {
	if err := readDrv(r); err != nil {
		return err
	}
	for range 4 { // maxSilentTime, buildTimeout, maxLogSize, nrRepeats
		if _, err := r.Uint64(); err != nil {
			return err
		}
	}
	r.Bool()           // enforceDeterminism
	_, err := r.Bool() // keepFailed
	return err
}

// readDrv reads the derivation's path and the basic derivation that
// begin BuildDerivation in both protocols.
func readDrv(r *wire.Reader) error {
	if _, err := r.String(); err != nil { // drvPath
		return err
	}
	return readBasic(r)
}

// readBasic reads a basic derivation, as both protocols send it.
func readBasic(r *wire.Reader) error {
	n, err := r.Uint64()
	if err != nil {
		return err
	}
	for range n * 4 { // name, path, hashAlgo, hash
		if _, err := r.String(); err != nil {
			return err
		}
	}
	if _, err := r.Strings(); err != nil { // inputSrcs
		return err
	}
	r.String()  // platform
	r.String()  // builder
	r.Strings() // args
	n, err = r.Uint64()
	if err != nil {
		return err
	}
	for range n * 2 {
		if _, err := r.String(); err != nil {
			return err
		}
	}
	return nil
}

func pathInfos(w *wire.Writer, scenario, target string, paths []string) error {
	switch scenario {
	case "huge-string":
		w.Uint64(1 << 62)
		return nil
	case "huge-list":
		w.String(paths[0])
		w.String("")
		w.Uint64(1 << 40)
		return nil
	}
	for _, p := range paths {
		size, sum, refs := infoFor(scenario, target, p)
		if scenario == "other-path" {
			p = sibling(p, "evil")
		}
		info(w, p, refs, size, sum)
		if scenario == "extra-path" {
			info(w, sibling(p, "extra"), refs, size, sum)
		}
	}
	w.String("")
	return nil
}

func info(w *wire.Writer, p string, refs []string, size uint64, sum [32]byte) {
	w.String(p)
	w.String("") // deriver
	w.Strings(refs)
	w.Uint64(size) // downloadSize
	w.Uint64(size)
	w.String("sha256:" + hex.EncodeToString(sum[:]))
	w.String("") // ca
	w.Strings(nil)
}

// hello answers a client's handshake: its magic number and version, then
// the server's.
func hello(r *wire.Reader, w *wire.Writer, clientMagic, serverMagic, version uint64) error {
	if m, err := r.Uint64(); err != nil || m != clientMagic {
		return fmt.Errorf("bad magic %#x: %v", m, err)
	}
	if _, err := r.Uint64(); err != nil {
		return err
	}
	w.Uint64(serverMagic)
	w.Uint64(version)
	return w.Flush()
}

// valid returns the paths that are valid here: all but the outputs to
// build.
func valid(paths []string) []string {
	valid := paths[:0]
	for _, p := range paths {
		if !strings.Contains(p, "-hostile-") {
			valid = append(valid, p)
		}
	}
	return valid
}

// built writes a BuildResult with status Built, as both protocols send it
// at the versions the fake builder speaks.
func built(w *wire.Writer) {
	w.Uint64(0) // Built
	w.String("")
	w.Uint64(1)   // timesBuilt
	w.Bool(false) // isNonDeterministic
	w.Uint64(0)   // startTime
	w.Uint64(0)   // stopTime
	w.Uint64(0)   // builtOutputs
}

// infoFor returns the narSize, NAR hash and references the scenario
// claims for path p.
func infoFor(scenario, target, p string) (size uint64, sum [32]byte, refs []string) {
	nar := narFor(scenario, target, p)
	sum = sha256.Sum256(nar)
	size = uint64(len(nar))
	refs = []string{}
	switch scenario {
	case "bad-hash":
		sum = sha256.Sum256(append(nar, 'x'))
	case "missing-ref":
		refs = []string{sibling(p, "not-in-the-client-store")}
	case "short-nar":
		size += 4096
	}
	return size, sum, refs
}

// sibling returns a store path in p's store with another hash and name.
func sibling(p, name string) string {
	dir := p[:strings.LastIndexByte(p, '/')]
	return dir + "/" + strings.Repeat("0", 32) + "-" + name
}

// narFor returns the NAR the scenario sends for path p.
func narFor(scenario, target, p string) []byte {
	var n narWriter
	n.str("nix-archive-1")
	switch scenario {
	case "dotdot":
		n.dir(func() { n.entry("..", func() { n.file("dotdot\n") }) })
	case "slash":
		n.dir(func() { n.entry("a/b", func() { n.file("slash\n") }) })
	case "symlink":
		n.dir(func() {
			n.entry("a", func() { n.symlink(target) })
			n.entry("a", func() { n.dir(func() { n.entry("x", func() { n.file("written through the link\n") }) }) })
		})
	case "root-symlink":
		n.symlink(target)
	default:
		n.file("fake output\n")
	}
	return n.b
}

type narWriter struct{ b []byte }

func (n *narWriter) str(s string) {
	var l [8]byte
	for i := range 8 {
		l[i] = byte(uint64(len(s)) >> (8 * i))
	}
	n.b = append(n.b, l[:]...)
	n.b = append(n.b, s...)
	for len(n.b)%8 != 0 {
		n.b = append(n.b, 0)
	}
}

func (n *narWriter) file(contents string) {
	n.str("(")
	n.str("type")
	n.str("regular")
	n.str("contents")
	n.str(contents)
	n.str(")")
}

func (n *narWriter) symlink(target string) {
	n.str("(")
	n.str("type")
	n.str("symlink")
	n.str("target")
	n.str(target)
	n.str(")")
}

func (n *narWriter) dir(entries func()) {
	n.str("(")
	n.str("type")
	n.str("directory")
	entries()
	n.str(")")
}

func (n *narWriter) entry(name string, node func()) {
	n.str("entry")
	n.str("(")
	n.str("name")
	n.str(name)
	n.str("node")
	node()
	n.str(")")
}
