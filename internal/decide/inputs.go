// SPDX-License-Identifier: MIT

package decide

import (
	"strings"

	"github.com/offload-nix/offload/pkg/drv"
	"github.com/offload-nix/offload/pkg/pick"
	"github.com/offload-nix/offload/pkg/slots"
	"github.com/offload-nix/offload/pkg/spec"
)

// InputsThere counts, per machine of ms, the input derivations of d that
// were accepted for that machine in ring (slots.File.Decisions); nil when
// none was. The hook and `offload pick --drv` both use it.
func InputsThere(ring []slots.Decision, ms []spec.Machine, d *drv.Derivation) []int {
	accepts := 0
	for i := range ring {
		if ring[i].Answer == pick.Accept && ring[i].Builder != "" {
			accepts++
		}
	}
	if accepts == 0 || len(d.InputDrvs) == 0 {
		return nil
	}
	counts := make([]int, len(ms))
	any := false
	for _, in := range d.InputDrvs {
		name := DrvName(in.Path)
		for i := range ms {
			if builtOn(ring, name, ms[i].URI) {
				counts[i]++
				any = true
			}
		}
	}
	if !any {
		return nil
	}
	return counts
}

// builtOn reports whether ring has an accepted decision for derivation
// name on the builder uri (cut as the ring cuts it).
func builtOn(ring []slots.Decision, name, uri string) bool {
	for i := range ring {
		d := &ring[i]
		if d.Answer != pick.Accept || d.Drv != name {
			continue
		}
		if d.Builder == uri || len(d.Builder) >= 56 && strings.HasPrefix(uri, d.Builder) {
			return true
		}
	}
	return false
}

// DrvName is the name of the derivation at store path p, without hash and
// ".drv": "hello-2.12".
func DrvName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if i := strings.IndexByte(p, '-'); i >= 0 {
		p = p[i+1:]
	}
	return strings.TrimSuffix(p, ".drv")
}
