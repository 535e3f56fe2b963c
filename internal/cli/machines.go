// SPDX-License-Identifier: MIT

package cli

import (
	"os"

	"github.com/offload-nix/offload/pkg/spec"
)

type machinesCmd struct {
	JSON bool `help:"Print JSON: one object per builder."`
}

func (c machinesCmd) Help() string {
	return `Lists the builders as Nix reads them, with where each is defined, and
warns about lines that are likely mistakes or that older Nix reads
differently.

Example:
  offload machines
  offload machines --builders 'ssh://b1 aarch64-linux,x86_64-linux - 8 2 kvm' --json`
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
	if c.JSON {
		return spec.WriteJSON(rc.env.Stdout, ms)
	}
	return spec.WriteTable(rc.env.Stdout, ms)
}
