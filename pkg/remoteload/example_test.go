// SPDX-License-Identifier: MIT

package remoteload_test

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/offload-nix/offload/pkg/remoteload"
)

// Run the script on this machine, as a hook runs it on a builder over an
// SSH session (ssh.Client.Start(ctx, []string{remoteload.Command})).
func ExampleRun() {
	cmd := exec.Command(remoteload.Command)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Println(err)
		return
	}
	r, err := remoteload.Run(stdin, stdout, nil)
	cmd.Wait()
	r.Time = time.Now()
	fmt.Println(err == nil, r.CPUs > 0)
	// Output: true true
}
