// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/offload-nix/offload/pkg/wire"
)

// The daemon protocol, as far as the hook uses it.
const (
	daemonMagic1   = 0x6e697863
	daemonMagic2   = 0x6478696f
	daemonVersion  = 1<<8 | 32 // no version string or trust in the handshake
	stderrNext     = 0x6f6c6d67
	stderrLast     = 0x616c7473
	opAddTempRoot  = 11
	opSetOptions   = 19
	opQueryPathInf = 26
	opQueryValid   = 31
	opBuildDrv     = 36
	opNarFromPath  = 38
)

// daemon is serve for `nix-daemon --stdio`.
func daemon(scenario, target string) error {
	r := wire.NewReader(bufio.NewReader(os.Stdin))
	w := wire.NewWriter(os.Stdout)
	if err := hello(r, w, daemonMagic1, daemonMagic2, daemonVersion); err != nil {
		return err
	}
	for range 2 { // CPU affinity, reserveSpace
		if _, err := r.Uint64(); err != nil {
			return err
		}
	}
	w.Uint64(stderrLast)
	if err := w.Flush(); err != nil {
		return err
	}
	for {
		op, err := r.Uint64()
		if err != nil {
			return err
		}
		switch op {
		case opQueryValid: // everything is valid here but the outputs to build
			paths, err := r.Strings()
			if err != nil {
				return err
			}
			r.Bool() // substitute
			w.Uint64(stderrLast)
			w.Strings(valid(paths))
		case opAddTempRoot:
			if _, err := r.String(); err != nil {
				return err
			}
			w.Uint64(stderrLast)
			w.Uint64(1)
		case opSetOptions:
			for range 12 {
				if _, err := r.Uint64(); err != nil {
					return err
				}
			}
			n, err := r.Uint64()
			if err != nil {
				return err
			}
			for range 2 * n {
				if _, err := r.String(); err != nil {
					return err
				}
			}
			w.Uint64(stderrLast)
		case opBuildDrv:
			if err := readDrv(r); err != nil {
				return err
			}
			if _, err := r.Uint64(); err != nil { // buildMode
				return err
			}
			switch scenario {
			case "endless-log":
				line := strings.Repeat("the log goes on and on ", 3)
				for {
					w.Uint64(stderrNext)
					w.String(line)
					if err := w.Flush(); err != nil {
						return err
					}
				}
			case "silent-build":
				return hangUp(w)
			}
			w.Uint64(stderrLast)
			built(w)
		case opQueryPathInf:
			p, err := r.String()
			if err != nil {
				return err
			}
			w.Uint64(stderrLast)
			daemonPathInfo(w, scenario, target, p)
		case opNarFromPath:
			p, err := r.String()
			if err != nil {
				return err
			}
			w.Uint64(stderrLast)
			if done, err := sendNar(w, scenario, target, p); done {
				return err
			}
		default:
			return fmt.Errorf("operation %d not supported", op)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// daemonPathInfo writes QueryPathInfo's reply for p at daemonVersion.
func daemonPathInfo(w *wire.Writer, scenario, target, p string) {
	w.Bool(true) // valid
	switch scenario {
	case "huge-string":
		w.Uint64(1 << 62) // the deriver's length
		return
	case "huge-list":
		w.String("")
		w.String(strings.Repeat("0", 64))
		w.Uint64(1 << 40) // references
		return
	}
	size, sum, refs := infoFor(scenario, target, p)
	w.String("") // deriver
	w.String(hex.EncodeToString(sum[:]))
	w.Strings(refs)
	w.Uint64(0) // registrationTime
	w.Uint64(size)
	w.Bool(false)  // ultimate
	w.Strings(nil) // sigs
	w.String("")   // ca
}
