// SPDX-License-Identifier: MIT

// Command offload is a build hook for Nix that sends derivation builds to
// other machines over SSH. Run `offload --help` for its commands.
package main

import (
	"context"
	"os"

	"github.com/offload-nix/offload/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args, cli.OSEnv()))
}
