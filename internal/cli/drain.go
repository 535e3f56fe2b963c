// SPDX-License-Identifier: MIT

package cli

import (
	"fmt"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

type drainCmd struct {
	Builder string `arg:"" help:"Builder name (e.g. b1) or URI (e.g. ssh://root@b1)."`
}

func (drainCmd) Help() string {
	return `Stops sending new builds to a builder, for every hook on this machine
(also under nix-daemon); builds already running there finish. Undo it with
offload undrain.

Example:
  offload drain b1`
}

func (c drainCmd) Run(rc *runContext) error { return rc.setDrained(c.Builder, true) }

type undrainCmd struct {
	Builder string `arg:"" help:"Builder name or URI."`
}

func (undrainCmd) Help() string {
	return `Sends builds to a drained builder again.

Example:
  offload undrain b1`
}

func (c undrainCmd) Run(rc *runContext) error { return rc.setDrained(c.Builder, false) }

func (rc *runContext) setDrained(name string, on bool) error {
	ms, _, _, err := rc.builders(true)
	if err != nil {
		return err
	}
	i, err := spec.Find(ms, name)
	if err != nil {
		return usageErr(err, "`offload machines` lists the builders by name and URI")
	}
	what := "drain"
	if !on {
		what = "undrain"
	}
	f, err := rc.openForChange(ms, what, "offload "+what+" "+name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.SetDrained(ms[i].URI, on); err != nil {
		return failed(err, "")
	}
	word := "drained"
	if !on {
		word = "undrained"
	}
	fmt.Fprintf(rc.env.Stdout, "%s %s\n", word, ms[i].URI)
	return nil
}

// openSlots opens the slot file the hooks of this user use.
func (rc *runContext) openSlots(ms []spec.Machine, readOnly bool) (*slots.File, error) {
	c, err := rc.settings()
	if err != nil {
		return nil, err
	}
	f, err := decide.OpenSlots(c.StateDir(), ms, slots.Options{Logf: rc.warnf, ReadOnly: readOnly, Getenv: rc.env.Getenv})
	if err != nil {
		return nil, usageErr(fmt.Errorf("opening the builder state: %w", err), "run as the user the hooks run as (root under nix-daemon)")
	}
	return f, nil
}

// openForChange opens, for writing, the slot file the hooks read, for a
// command (what, typed as typed) that changes shared state: the file that
// exists (the shared one, else this user's own of a single-user Nix), else
// the shared one, created. Never a new file of this user's own, which no
// hook would read (under nix-daemon the hooks run as root): when the file
// the hooks read cannot be written, the command fails (exit 2) and says
// so.
func (rc *runContext) openForChange(ms []spec.Machine, what, typed string) (*slots.File, error) {
	c, err := rc.settings()
	if err != nil {
		return nil, err
	}
	path := decide.SlotPath(c.StateDir())
	ro, err := decide.OpenSlots(c.StateDir(), ms, slots.Options{ReadOnly: true, Getenv: rc.env.Getenv})
	if err == nil {
		path = ro.Path()
		ro.Close()
	}
	f, err := slots.Open(path, ms, slots.Options{Logf: rc.warnf})
	if err != nil {
		hint := "the hooks read " + path + "; run this as the user they run as (root under nix-daemon): sudo " + typed
		return nil, usageErr(fmt.Errorf("%s: cannot change the builder state: %w", what, err), hint)
	}
	return f, nil
}
