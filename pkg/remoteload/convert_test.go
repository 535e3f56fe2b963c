// SPDX-License-Identifier: MIT

package remoteload_test

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/remoteload"
	"github.com/offload-nix/offload/pkg/slots"
)

// TestConvert pins that remoteload.Reading, slots.Reading and pick.Reading
// stay convertible into each other (the hook's wiring depends on it: the
// conversions below stop compiling when one of them changes alone), and
// that they agree on what unknown is.
func TestConvert(t *testing.T) {
	r := remoteload.Reading{Time: time.Unix(1_700_000_000, 0), CPUs: 8, Load1: 7910, Load5: 1, Load15: 2,
		CPUPressure: 3, MemoryPressure: 4100, IOPressure: remoteload.Unknown, MemAvailable: 5, MemTotal: 6,
		StoreFree: 7, StoreSize: 8, Builds: 9}
	s := slots.Reading(r)
	p := pick.Reading(s)
	if back := remoteload.Reading(p); back != r {
		t.Errorf("round trip: %+v, want %+v", back, r)
	}
	for _, u := range []int{slots.ReadingUnknown, pick.ReadingUnknown} {
		if u != remoteload.Unknown {
			t.Errorf("unknown is %d, want %d as in remoteload", u, remoteload.Unknown)
		}
	}
}

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
