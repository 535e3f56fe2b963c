// SPDX-License-Identifier: MIT

package slots

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// An owner word names a process: pid<<42 | start time in clock ticks since
// boot (low 42 bits; at 100 Hz that lasts 1393 years of uptime). Linux pids
// are below 1<<22 (PID_MAX_LIMIT), so the word is never 0 and a pid reused by
// a later process gives a different word.
const (
	startBits = 42
	startMask = 1<<startBits - 1
)

func ownerWord(pid int, start uint64) uint64 {
	return uint64(pid)<<startBits | start&startMask
}

func ownerPID(w uint64) int { return int(w >> startBits) }

// procStat returns the start time and state of process pid from
// /proc/<pid>/task/<pid>/stat. The task path and not /proc/<pid>/stat:
// qemu-user answers reads of its own /proc/<pid>/stat with values it makes
// up, while other processes see the kernel's; the task directory of the main
// thread carries the same start time and is passed through for everyone.
func procStat(pid int) (start uint64, state byte, ok bool) {
	p := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may contain
	// anything; the fields after the last ')' start with the state (3).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	const startField = 22 - 3 // field 22 is starttime
	if len(f) <= startField || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(string(f[startField]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, f[0][0], true
}

// selfOwner is the owner word of this process.
func selfOwner() uint64 {
	pid := os.Getpid()
	start, _, _ := procStat(pid)
	return ownerWord(pid, start)
}

// alive reports whether the process named by owner word w still runs. When
// /proc cannot tell, a process that kill(2) finds is taken as alive: a slot
// is never freed on a guess.
func alive(w uint64) bool {
	pid := ownerPID(w)
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); err == unix.ESRCH {
		return false
	}
	start, state, ok := procStat(pid)
	if !ok {
		return true
	}
	if state == 'Z' || state == 'X' {
		return false // killed, not yet reaped
	}
	return w&startMask == 0 || start&startMask == w&startMask
}
