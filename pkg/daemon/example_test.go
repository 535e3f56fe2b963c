// SPDX-License-Identifier: MIT

package daemon_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/offload-nix/offload/pkg/daemon"
	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/store"
)

// Building a derivation through a `nix-daemon --stdio`, with its log
// passed on as it arrives and the builder's limits set first.
func Example() {
	cmd := exec.Command("nix-daemon", "--stdio")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close() // nix-daemon exits at EOF

	c, err := daemon.New(stdout, stdin, daemon.Options{
		Host:  "local",
		Log:   func(line []byte) { fmt.Fprintf(os.Stderr, "%s\n", line) },
		Phase: func(phase string) { fmt.Fprintf(os.Stderr, "phase: %s\n", phase) },
	})
	if err != nil {
		log.Fatal(err)
	}
	if known, trusted := c.Trusted(); known && !trusted {
		log.Print("not trusted: uploads must be signed")
	}
	if err := c.SetOptions(daemon.Settings{
		Build:     store.BuildOptions{MaxSilentTime: time.Hour, Timeout: 10 * time.Hour},
		Verbosity: daemon.LvlInfo,
	}); err != nil {
		log.Fatal(err)
	}
	const drvPath = "/nix/store/7c5ya5h5sxbl6vw1cdsixqnxc8f7wb4q-hello.drv"
	d, err := drv.ReadFile(drvPath)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.BuildDerivation(drvPath, d, nil)
	if errors.Is(err, daemon.ErrNotTrusted) {
		log.Fatal(err) // the message says how to fix the builder
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, res.ErrorMsg)
}
