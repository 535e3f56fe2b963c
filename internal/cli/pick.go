// SPDX-License-Identifier: MIT

package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/pick"
)

type pickCmd struct {
	System       string   `help:"The derivation's system, e.g. aarch64-linux (required without --drv)." placeholder:"SYSTEM"`
	Features     []string `help:"Features it requires, comma-separated (requiredSystemFeatures)." placeholder:"FEATURE"`
	LocalWilling bool     `help:"Nix is willing to build it locally (max-jobs above 0), so a faster local machine keeps it."`
	Name         string   `help:"The derivation's name without hash (e.g. hello-2.12), to apply what offload remembers of it: a build that failed under emulation lately goes to native builders first." placeholder:"NAME"`
	Drv          string   `help:"A derivation's store path: its system, required features and name are read from it, and the builders that built its inputs lately rank first among equals." placeholder:"DRV"`
	JSON         bool     `help:"Print the decision as JSON: answer, builder, and reasons [{uri, eligible, why, score…}]."`
}

func (pickCmd) Help() string {
	return `Shows what the hook would answer for a derivation of this system and these
features right now, and why, builder by builder: the same machines, the
same shared builder load (read from the slot file; none means idle),
offload's settings, OFFLOAD_ONLY and OFFLOAD_AVOID. The local machine is
described from Nix's configuration (system, extra-platforms,
system-features) and its load from /proc/loadavg.

The exit code is 0 whenever a decision was made, whatever it is (read
the answer from the first word, or from "answer" with --json), and 2 on
bad input or configuration.

Example:
  offload pick --system aarch64-linux --features kvm
  offload pick --drv /nix/store/…-hello-2.12.drv
  offload pick --system x86_64-linux --local-willing --json`
}

func (c pickCmd) Run(rc *runContext) error {
	req := pick.Request{System: strings.TrimSpace(c.System), LocalWilling: c.LocalWilling, DrvName: c.Name}
	var dv *drv.Derivation
	if c.Drv != "" {
		var err error
		if dv, err = drv.ReadFile(c.Drv); err != nil {
			return usageErr(fmt.Errorf("pick: --drv: %w", err), "")
		}
		if req.System == "" {
			req.System = dv.Platform
		}
		if req.DrvName == "" {
			req.DrvName = decide.DrvName(c.Drv)
		}
		if len(c.Features) == 0 {
			req.Features = strings.Fields(dv.Getenv("requiredSystemFeatures"))
		}
		req.DrvPath = c.Drv
	}
	if req.System == "" || strings.ContainsAny(req.System, " \t,") {
		return usageErr(errors.New("pick: --system wants one system, e.g. aarch64-linux (or give --drv)"), "")
	}
	for _, f := range c.Features {
		for _, w := range strings.Fields(f) {
			req.Features = append(req.Features, w)
		}
	}
	ms, warnings, _, err := rc.builders(true)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		rc.warnf("%s: %s", w.Source, w.Msg)
	}
	settings, err := rc.settings()
	if err != nil {
		return err
	}
	opts, err := decide.Options(settings, rc.env.Getenv)
	if err != nil {
		return usageErr(err, "see `offload config` for every setting and its default")
	}
	over, err := decide.SystemExec(settings)
	if err != nil {
		return usageErr(err, "see `offload config` for every setting and its default")
	}
	local, err := rc.localMachine(settings.LocalSpeedFactor())
	if err != nil {
		return err
	}
	loads := rc.loads(ms, &req, over, settings.Duration("emulation-failure-memory"), dv)
	var d pick.Decision
	pick.Choose(&d, ms, loads, req, local, opts, time.Now())
	if c.JSON {
		err = d.WriteJSON(rc.env.Stdout)
	} else {
		err = d.WriteText(rc.env.Stdout)
	}
	if err != nil {
		return failed(err, "")
	}
	return nil
}
