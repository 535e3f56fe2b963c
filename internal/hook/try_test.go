// SPDX-License-Identifier: MIT

package hook

import (
	"testing"

	"github.com/offload-nix/offload/pkg/pick"
)

func TestSlotMayFree(t *testing.T) {
	tests := []struct {
		rejects []pick.Reject
		want    bool
	}{
		{nil, false},
		{[]pick.Reject{pick.RejectFull}, true},
		{[]pick.Reject{pick.RejectUnhealthy}, false},
		{[]pick.Reject{pick.RejectUnhealthy, pick.RejectSystem}, false},
		{[]pick.Reject{pick.RejectUnhealthy, pick.RejectFull}, true},
		{[]pick.Reject{pick.RejectDrained, pick.RejectUnreachable}, false},
	}
	for _, tt := range tests {
		d := &pick.Decision{Answer: pick.Postpone}
		for _, r := range tt.rejects {
			d.Reasons = append(d.Reasons, pick.Reason{Reject: r})
		}
		if got := slotMayFree(d); got != tt.want {
			t.Errorf("slotMayFree(%v) = %v, want %v", tt.rejects, got, tt.want)
		}
	}
}
