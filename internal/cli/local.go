// SPDX-License-Identifier: MIT

package cli

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/offload-nix/offload/internal/decide"
	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/nixconf"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

// loadavgPath is read for the local machine's load; tests replace it.
var loadavgPath = decide.Loadavg

// localMachine describes this machine as the hook would see it: Nix sends
// the hook its system, extra-platforms and system-features settings; a
// command people type reads them from Nix's configuration files instead,
// with Nix's defaults where the files set nothing (src/libstore/globals.cc:
// extra-platforms gains i686-linux on x86_64-linux, system-features are
// nixos-test, benchmark and big-parallel, plus kvm when /dev/kvm can be
// opened).
func (rc *runContext) localMachine(speed float64) (pick.Local, error) {
	conf, err := nixconf.Load(rc.env.Getenv)
	if err != nil {
		return pick.Local{}, usageErr(err, "fix the line it names")
	}
	system := spec.LocalSystem()
	if v, _, ok := conf.Get("system"); ok && strings.TrimSpace(v) != "" {
		system = strings.TrimSpace(v)
	}
	var extra []string
	if system == "x86_64-linux" {
		extra = []string{"i686-linux"}
	}
	features := []string{"nixos-test", "benchmark", "big-parallel"}
	if syscall.Access("/dev/kvm", 6) == nil { // R_OK|W_OK
		features = append(features, "kvm")
	}
	return pick.Local{
		System:         system,
		ExtraPlatforms: listSetting(conf, "extra-platforms", extra),
		Features:       listSetting(conf, "system-features", features),
		SpeedFactor:    speed,
		LoadPerCPU:     decide.LoadPerCPU(loadavgPath),
	}, nil
}

// listSetting is Nix's list setting key: def unless an entry sets key, then
// every "extra-key" entry appended.
func listSetting(conf *nixconf.Conf, key string, def []string) []string {
	if _, _, ok := conf.Get(key); ok {
		return conf.List(key)
	}
	words := def
	for _, e := range conf.Entries {
		if e.Key == "extra-"+key {
			words = append(words, strings.Fields(e.Value)...)
		}
	}
	return words
}

// loads reads the shared builder state for ms, read-only, as the hook's
// decision for req sees it: one Load per machine, with how each runs
// req.System, how many inputs of d (if not nil) it built lately, and
// whether req's derivation failed under emulation lately.
// A missing slot file means every builder is idle and healthy; an
// unreadable one is said once and counts as missing.
func (rc *runContext) loads(ms []spec.Machine, req *pick.Request, over []config.ExecEntry, failureMemory time.Duration, d *drv.Derivation) []pick.Load {
	loads := make([]pick.Load, len(ms))
	execs := make([]pick.SystemExec, len(ms))
	if len(ms) == 0 {
		return loads
	}
	now := time.Now()
	f, err := rc.openSlots(ms, true)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			rc.warnf("builder load unknown, taking every builder as idle: %v", errors.Unwrap(err))
		}
		decide.Loads(loads, execs, ms, nil, req.System, over, now)
		return loads
	}
	defer f.Close()
	decide.Loads(loads, execs, ms, f.Snapshot(nil), req.System, over, now)
	if d != nil {
		if in := decide.InputsThere(f.Decisions(nil), ms, d); in != nil {
			for i := range loads {
				loads[i].InputsThere = in[i]
			}
		}
	}
	req.EmulationFailed = decide.EmulationFailed(f, req.DrvName, failureMemory, now)
	return loads
}
