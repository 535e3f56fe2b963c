// SPDX-License-Identifier: MIT

package hook

import (
	"context"
	"errors"

	"github.com/offload-nix/offload/pkg/spec"
)

// connectNG connects to an ssh-ng:// builder: `nix-daemon --stdio` over
// SSH, spoken with pkg/daemon.
func (h *hook) connectNG(ctx context.Context, m *spec.Machine) (*conn, error) {
	return nil, errors.New("ssh-ng:// builders are not supported yet")
}
