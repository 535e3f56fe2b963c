// SPDX-License-Identifier: MIT

package slots

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Shared (not FUTEX_PRIVATE) operations: the word lives in a MAP_SHARED file
// mapping and the waiters are other processes.
const (
	futexWait = 0
	futexWake = 1
)

// futexSleep waits at most d while *addr == val.
func futexSleep(addr *uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWakeAll wakes every process waiting on addr.
func futexWakeAll(addr *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, uintptr(int32(^uint32(0)>>1)), 0, 0, 0)
}
