// SPDX-License-Identifier: MIT

package pick_test

import (
	"os"
	"time"

	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/spec"
)

// The Nix manual's machines, a kvm build, and one busy machine.
func ExampleChoose() {
	ms := []spec.Machine{
		{URI: "ssh://nix@scratchy", Name: "scratchy", Systems: []string{"i686-linux"}, MaxJobs: 8, SpeedFactor: 1,
			SupportedFeatures: []string{"kvm"}},
		{URI: "ssh://nix@itchy", Name: "itchy", Systems: []string{"i686-linux"}, MaxJobs: 8, SpeedFactor: 2},
		{URI: "ssh://nix@poochie", Name: "poochie", Systems: []string{"i686-linux"}, MaxJobs: 1, SpeedFactor: 2,
			SupportedFeatures: []string{"kvm"}, MandatoryFeatures: []string{"benchmark"}},
	}
	loads := []pick.Load{{Busy: 3}}
	req := pick.Request{System: "i686-linux", Features: []string{"kvm"}}
	local := pick.Local{System: "aarch64-linux", SpeedFactor: 1}

	var d pick.Decision // reuse across requests
	pick.Choose(&d, ms, loads, req, local, pick.Options{}, time.Now())
	d.WriteText(os.Stdout)
	// Output:
	// accept ssh://nix@scratchy
	// why: scratchy: chosen, 3/8 slots busy, speed 1, score 3
	// * scratchy: chosen, 3/8 slots busy, speed 1, score 3
	//   itchy: lacks feature kvm
	//   poochie: mandatory feature benchmark not requested
}
