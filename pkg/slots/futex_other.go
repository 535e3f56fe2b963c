// SPDX-License-Identifier: MIT

//go:build !linux

package slots

import (
	"sync/atomic"
	"time"
)

// futexSleep polls *addr every 10ms for at most d where there is no futex.
func futexSleep(addr *uint32, val uint32, d time.Duration) {
	const step = 10 * time.Millisecond
	for d > 0 && atomic.LoadUint32(addr) == val {
		time.Sleep(min(d, step))
		d -= step
	}
}

func futexWakeAll(addr *uint32) {}
