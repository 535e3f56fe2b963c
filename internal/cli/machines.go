// SPDX-License-Identifier: MIT

package cli

import (
	"errors"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

type machinesCmd struct {
	JSON bool `help:"Print JSON: one object per builder."`
}

func (c machinesCmd) Help() string {
	return `Lists the builders as Nix reads them, with where each is defined, and
warns about lines that are likely mistakes or that older Nix reads
differently. A second table says how each builder runs each of its
systems: native, emulated (through qemu-user, say), or unknown, and how
offload knows: the system-exec setting, the builder's last probe
(` + "`offload check`" + ` and every build probe it), or the presumption that an x86
builder emulates the non-x86 Linux systems it lists.

With no builders it says where it looked and exits 1.

Example:
  offload machines
  offload machines --builders 'ssh://b1 aarch64-linux,x86_64-linux - 8 2 kvm' --json`
}

// systemExec is how one builder runs one system, and how offload knows.
type systemExec struct {
	System string
	Exec   pick.Exec
	Via    string
	// Source: "system-exec", "probe", "presumed" or "" (nothing known).
	Source string
	Probed time.Time
}

func (e systemExec) runs() string {
	s := e.Exec.String()
	if e.Via != "" {
		s += " (" + e.Via + ")"
	}
	return s
}

func (c machinesCmd) Run(rc *runContext) error {
	ms, warnings, _, err := rc.builders(false)
	if err != nil {
		return err
	}
	warnings = append(warnings, spec.Lint(ms, os.Stat)...)
	for _, w := range warnings {
		rc.warnf("%s: %s", w.Source, w.Msg)
	}
	if len(ms) == 0 {
		if c.JSON {
			rc.env.Stdout.Write([]byte("[]\n"))
		}
		return rc.noBuilders("machines")
	}
	execs := rc.systemExecs(ms)
	if c.JSON {
		out := make([]map[string]any, len(ms))
		for i := range ms {
			out[i] = map[string]any{}
			for _, e := range execs[i] {
				o := map[string]any{"runs": e.Exec.String(), "via": e.Via, "source": e.Source}
				if !e.Probed.IsZero() {
					o["probed"] = e.Probed.UTC().Format(time.RFC3339)
				}
				out[i][e.System] = o
			}
		}
		return spec.WriteJSONExec(rc.env.Stdout, ms, out)
	}
	if err := spec.WriteTable(rc.env.Stdout, ms); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(rc.env.Stdout, 0, 8, 2, ' ', 0)
	tw.Write([]byte("\nBUILDER\tSYSTEM\tRUNS\tKNOWN FROM\n"))
	now := time.Now()
	for i := range ms {
		for _, e := range execs[i] {
			from := e.Source
			switch e.Source {
			case "":
				from = "not probed yet (offload check)"
			case "probe":
				from = "probe " + string(pick.AppendAge(nil, now.Sub(e.Probed))) + " ago"
			case "presumed":
				from = "presumed: lists an x86 system"
			}
			tw.Write([]byte(printable(label(&ms[i])) + "\t" + printable(e.System) + "\t" + e.runs() + "\t" + from + "\n"))
		}
	}
	return tw.Flush()
}

// systemExecs says how each machine runs each of its systems, from the
// system-exec setting, the shared state (read-only; missing: nothing
// probed) and pick's presumption.
func (rc *runContext) systemExecs(ms []spec.Machine) [][]systemExec {
	var over []config.ExecEntry
	if settings, err := rc.settings(); err == nil {
		over, _ = decide.SystemExec(settings)
	}
	var snap []slots.Builder
	if f, err := rc.openSlots(ms, true); err == nil {
		snap = f.Snapshot(nil)
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		rc.warnf("builder probes unknown: %v", errors.Unwrap(err))
	}
	out := make([][]systemExec, len(ms))
	for i := range ms {
		m := &ms[i]
		var b *slots.Builder
		for k := range snap {
			if snap[k].URI == m.URI {
				b = &snap[k]
			}
		}
		for _, sys := range m.Systems {
			e := systemExec{System: sys}
			e.Exec, e.Via = decide.ExecOf(m, nil, sys, over)
			switch {
			case e.Exec != pick.Unknown:
				e.Source = "system-exec"
			case b != nil && !b.ExecProbed().IsZero():
				e.Exec, e.Via = decide.ExecOf(m, b, sys, nil)
				e.Source, e.Probed = "probe", b.ExecProbed()
				if e.Exec == pick.Unknown {
					if e.Exec = pick.Presumed(m, sys); e.Exec != pick.Unknown {
						e.Source = "presumed"
					}
				}
			default:
				if e.Exec = pick.Presumed(m, sys); e.Exec != pick.Unknown {
					e.Source = "presumed"
				}
			}
			out[i] = append(out[i], e)
		}
	}
	return out
}

func label(m *spec.Machine) string {
	if m.Name != "" {
		return m.Name
	}
	return m.URI
}
