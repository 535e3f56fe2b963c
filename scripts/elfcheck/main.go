// SPDX-License-Identifier: MIT

// Command elfcheck fails unless every named file is a statically linked
// ELF executable: no program interpreter and no needed shared libraries.
package main

import (
	"debug/elf"
	"fmt"
	"os"
)

func main() {
	bad := false
	for _, name := range os.Args[1:] {
		if err := check(name); err != nil {
			fmt.Fprintf(os.Stderr, "elfcheck: %s: %v\n", name, err)
			bad = true
		}
	}
	if bad {
		os.Exit(1)
	}
}

func check(name string) error {
	f, err := elf.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("has an ELF interpreter: not statically linked")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	if len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v", libs)
	}
	return nil
}
