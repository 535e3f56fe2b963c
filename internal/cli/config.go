// SPDX-License-Identifier: MIT

package cli

import "github.com/offload-nix/offload/pkg/config"

type configCmd struct{}

func (configCmd) Help() string {
	return `Prints every offload setting, its value and where the value came from:
the default, /etc/nix/offload.conf (or the file named by OFFLOAD_CONF), or
an OFFLOAD_<NAME> environment variable.

Example:
  offload config
  OFFLOAD_CONNECT_TIMEOUT=20s offload config`
}

func (configCmd) Run(rc *runContext) error {
	c, err := rc.settings()
	if err != nil {
		return err
	}
	return config.WriteTable(rc.env.Stdout, c)
}
