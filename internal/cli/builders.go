// SPDX-License-Identifier: MIT

package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/offload-nix/offload/pkg/config"
	"github.com/offload-nix/offload/pkg/nixconf"
	"github.com/offload-nix/offload/pkg/spec"
)

// builders returns the machines the way Nix resolves them: the --builders
// flag if given, else Nix's builders setting from its configuration files
// (whose default is @/etc/nix/machines, or NIX_REMOTE_SYSTEMS).
func (rc *runContext) builders(lenient bool) ([]spec.Machine, []spec.Warning, string, error) {
	setting, origin := rc.global.Builders, "--builders"
	system := ""
	if setting == "" {
		conf, err := nixconf.Load(rc.env.Getenv)
		if err != nil {
			return nil, nil, "", usageErr(fmt.Errorf("reading Nix's configuration: %w", err), "fix the line it names, or pass --builders")
		}
		setting, origin = conf.Builders(rc.env.Getenv)
		if v, _, ok := conf.Get("system"); ok {
			system = v
		}
	}
	ms, warnings, err := spec.ParseBuilders(setting, spec.Options{LocalSystem: system, Lenient: lenient})
	if err != nil {
		return nil, nil, origin, usageErr(err, "Nix's own hook fails every build on such a line; fix it or comment it out")
	}
	return ms, warnings, origin, nil
}

// noBuilders is the error of a command that found no builders: it says
// where it looked (the builders setting, where that comes from, and the
// files it names) and what to do, with a failure's exit code.
func (rc *runContext) noBuilders(command string) error {
	setting, origin := rc.global.Builders, "--builders"
	confDir := nixconf.ConfDir(rc.env.Getenv)
	if setting == "" {
		conf, err := nixconf.Load(rc.env.Getenv)
		if err != nil {
			return usageErr(fmt.Errorf("reading Nix's configuration: %w", err), "fix the line it names, or pass --builders")
		}
		setting, origin = conf.Builders(rc.env.Getenv)
		confDir = conf.ConfDir
	}
	nixConf := filepath.Join(confDir, "nix.conf")
	var where string
	switch {
	case origin == "default":
		where = "builders is not set in Nix's configuration (" + nixConf + ")"
	case strings.TrimSpace(setting) == "":
		where = "builders is empty (" + origin + ")"
	default:
		where = fmt.Sprintf("builders = %s (%s)", strings.Join(strings.Fields(setting), " "), origin)
	}
	// Nix reads the entries of builders split at newlines and ";"; one
	// that starts with @ names a machines file.
	for _, e := range strings.FieldsFunc(setting, func(r rune) bool { return r == '\n' || r == ';' }) {
		f, ok := strings.CutPrefix(strings.TrimSpace(e), "@")
		if !ok {
			continue
		}
		what := f
		if origin == "default" {
			what += ", Nix's default,"
		}
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			where += ", and " + what + " does not exist"
		} else {
			where += ", and " + what + " lists none"
		}
	}
	machines := filepath.Join(confDir, "machines")
	return failed(fmt.Errorf("%s: no builders: %s", command, where),
		fmt.Sprintf("add builders to %s or set builders = … in %s; see `offload setup`", machines, nixConf))
}

// settings loads offload's own settings.
func (rc *runContext) settings() (*config.Config, error) {
	c, err := config.Load(rc.env.Getenv)
	if err != nil {
		return nil, usageErr(err, "see `offload config` for every setting and its default")
	}
	return c, nil
}
